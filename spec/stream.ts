/**
 * Streaming inference as a model stage: feed the next n tokens of the open
 * segment and reuse what the earlier tokens of that segment already computed
 * (each layer's keys and values), instead of re-encoding the segment prefix.
 *
 * The segment encoder is causal, so the outputs at the open tokens do not
 * change when later tokens arrive: a step over tokens t0 … t0+n−1 needs only
 * their queries plus the keys and values of positions 0 … t0−1 (and of the
 * memory token, or of Transformer-XL's cached states). Each new token then
 * costs O(t) attention instead of a re-run of the whole prefix, and the
 * readout (the [D] × [D, V] output layer, ≈ 60 % of the FLOPs) runs only for
 * the rows the caller asks for. When the segment fills up, the step also
 * does what `runSegment` does at a segment's end: CRT's memory update (from
 * the cached final-LayerNorm outputs of all S tokens) or the new XL cache.
 *
 * The open state is bounded by the segment: memory does not grow with the
 * length of a stream. Written over {@linkcode Ops} like every stage, so the
 * compiler traces it and the reference interpreter can run it.
 *
 * Shape letters: B batch, n new tokens, r = n (+1 for CRT's memory token at
 * the start of a segment), P cached key rows, T = P + r keys, D width, H
 * heads, E = D / H, V vocabulary.
 *
 * @module
 */
import type { ModelSpec } from "./types.ts";
import {
  lmLogits,
  mergeHeads,
  newCache,
  sinusoid,
  splitHeads,
  type State,
  updateMemory,
} from "./stages.ts";
import type { AttentionParams, BlockParams, ModelParams } from "./layout.ts";
import type { Shape } from "./ops.ts";
import type { Ops } from "./ops_builder.ts";

/** Which rows of a step go through the output layer. */
export type StepReadout = "all" | "last" | "none";

/** Where a streaming step starts and what it reads out. */
export interface StepPlan {
  /** Tokens of the open segment already fed (t0), 0 ≤ t0 < segmentLen. */
  readonly start: number;
  /** Tokens fed by this step (n ≥ 1), with start + n ≤ segmentLen. */
  readonly count: number;
  /** `all`: logits for every fed token; `last`: only for the last; `none`: no readout. */
  readonly readout: StepReadout;
  /**
   * Draw the next token from the last row's logits (the `sample` op) instead
   * of giving the logits back: readout `last` only, with `StepInput.uniforms`.
   */
  readonly draw?: { readonly temperature: number; readonly topK: number };
}

/** What a streaming step takes. */
export interface StepInput<T> {
  /** The next tokens, [B, n] int32. */
  readonly tokens: T;
  /** The carried state at the last segment boundary (`memory`, `cache[l]`). */
  readonly state: State<T>;
  /** The open segment's caches from the previous step; empty when start = 0. */
  readonly open: State<T>;
  /** With `StepPlan.draw`: one uniform in [0, 1) per row, [B]. */
  readonly uniforms?: T;
}

/** What a streaming step gives back. */
export interface StepOutput<T> {
  /** [B, n, V] (`all`), [B, 1, V] (`last`), absent (`none` and with `draw`). */
  readonly logits?: T;
  /** With `StepPlan.draw`: the drawn ids [B] (int32). */
  readonly tokens?: T;
  /** The open segment's caches after this step; empty when the step closed the segment. */
  readonly open: State<T>;
  /** The new carried state, present only when the step closed the segment. */
  readonly state?: State<T>;
}

/**
 * Whether {@linkcode streamStep} can run `spec`: token input and an LM
 * readout, for CRT, the full-length Transformer and Transformer-XL.
 */
export const canStream = (spec: ModelSpec): boolean =>
  spec.readout._tag === "lm" && (spec.input === undefined || spec.input._tag === "tokens") &&
  (spec._tag === "crt" || spec._tag === "transformer" || spec._tag === "xl");

/** Key rows cached before the first query of a step at `start`. */
const prefixRows = (spec: ModelSpec, start: number, cacheLen: number): number => {
  if (spec._tag === "xl") return cacheLen + start;
  const slot = spec._tag === "crt" && spec.memory.injection === "prependToken";
  return start === 0 ? 0 : start + (slot ? 1 : 0);
};

/**
 * Names and shapes of the open-segment caches after `start` tokens (none at
 * 0): per layer `k[l]`, `v[l]` [B, H, P, E]; CRT `h` [B, t0, D] (the final
 * LayerNorm outputs the memory update reads) and, with `rnnInput: "slot"`,
 * `slot` [B, D]; Transformer-XL `x[l]` [B, t0, D] (the layer inputs its next
 * cache is cut from). `cacheLen` is XL's carried cache length.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { referenceCrt } from "./reference_specs.ts";
 * import { openShapes } from "./stream.ts";
 *
 * const s = openShapes(referenceCrt, { batchSize: 1, start: 3 });
 * assert.deepEqual(s["k[0]"], [1, 4, 4, 64]); // memory token + 3 tokens
 * assert.deepEqual(s.h, [1, 3, 256]);
 * ```
 */
export const openShapes = (
  spec: ModelSpec,
  at: { readonly batchSize: number; readonly start: number; readonly cacheLen?: number },
): Record<string, Shape> => {
  const { batchSize: b, start } = at;
  if (start === 0) return {};
  const d = spec.dModel, h = spec.nHeads;
  const p = prefixRows(spec, start, at.cacheLen ?? 0);
  const out: Record<string, Shape> = {};
  for (let l = 0; l < spec.nLayers; l++) {
    out[`k[${l}]`] = [b, h, p, d / h];
    out[`v[${l}]`] = [b, h, p, d / h];
    if (spec._tag === "xl") out[`x[${l}]`] = [b, start, d];
  }
  if (spec._tag === "crt") {
    out.h = [b, start, d];
    if (spec.memory.rnnInput === "slot") out.slot = [b, d];
  }
  return out;
};

/**
 * Feed the next `plan.count` tokens of the open segment (see the module
 * doc). Computes exactly what `runSegment` computes for those positions
 * (and, when the segment fills, the same next state), up to float rounding.
 *
 * @example Shapes of one step, traced on a shape-only backend
 * ```ts
 * import assert from "node:assert/strict";
 * import { Tracer } from "./graph.ts";
 * import { paramLayout, type ModelParams } from "./layout.ts";
 * import { referenceCrt } from "./reference_specs.ts";
 * import { isParamSpec, type ParamSpec } from "./params.ts";
 * import { openShapes, streamStep } from "./stream.ts";
 * import { mapTree } from "./tree.ts";
 *
 * const tr = new Tracer();
 * const params = mapTree<ParamSpec, unknown>(
 *   paramLayout(referenceCrt),
 *   isParamSpec,
 *   (p, path) => (p.role === "graph" ? tr.input(path, "param", p.shape) : undefined),
 * ) as ModelParams<ReturnType<Tracer["input"]>>;
 * const open = Object.fromEntries(
 *   Object.entries(openShapes(referenceCrt, { batchSize: 1, start: 5 }))
 *     .map(([n, s]) => [n, tr.input(`open:${n}`, "state", s)]),
 * );
 * const out = streamStep(tr.ops(), params, referenceCrt, {
 *   tokens: tr.input("tokens", "data", [1, 1], "int32"),
 *   state: { memory: tr.input("state:memory", "state", [1, 256]) },
 *   open,
 * }, { start: 5, count: 1, readout: "last" });
 * assert.deepEqual(out.logits?.shape, [1, 1, 10000]);
 * assert.deepEqual(out.open["k[1]"].shape, [1, 4, 7, 64]); // one more key row
 * ```
 */
export const streamStep = <T>(
  o: Ops<T>,
  p: ModelParams<T>,
  spec: ModelSpec,
  input: StepInput<T>,
  plan: StepPlan,
): StepOutput<T> => {
  if (!canStream(spec)) {
    throw new Error(`streamStep: ${spec._tag} with a ${spec.readout._tag} readout cannot stream`);
  }
  const { start, count: n } = plan;
  const sLen = spec.segmentLen;
  if (!(Number.isInteger(start) && start >= 0 && n >= 1 && start + n <= sLen)) {
    throw new RangeError(
      `streamStep: tokens ${start} … ${start + n - 1} do not fit a segment of ${sLen}`,
    );
  }
  if (plan.draw !== undefined && (plan.readout !== "last" || input.uniforms === undefined)) {
    throw new RangeError("streamStep: drawing a token needs readout last and uniforms");
  }
  const [b] = o.shape(input.tokens);
  const d = spec.dModel, h = spec.nHeads;
  const closes = start + n === sLen;

  // Embeddings at positions start … start+n−1 (positions restart every segment).
  let x: T;
  if (spec._tag !== "xl" && p.pos !== undefined) {
    // One region of kind `embed`: the rows of the token and position tables, added.
    const oe = o.at("embed");
    x = oe.region("embed", { start }, [p.embed, input.tokens, p.pos], ([table, ids, pos]) => [
      o.add(oe.embedding(table, ids), o.at("pos").slice(pos, [start, 0], [n, d])),
    ])[0]; // [B, n, D]
  } else {
    x = o.at("embed").embedding(p.embed, input.tokens); // [B, n, D]
    if (spec._tag !== "xl") {
      const pos = o.at("pos").constant(
        [n, d],
        sinusoid(Array.from({ length: n }, (_, i) => start + i), d),
      );
      x = o.add(x, pos); // [B, n, D]
    }
  }
  let slotRow = false;
  if (spec._tag === "crt") {
    const mem = p.memory!;
    // Paper: memory token e_0 = W_m · m_{n−1}.
    const tok = o.at("memory").linear(input.state.memory, mem.win, mem.bin); // [B, D]
    if (spec.memory.injection === "prependToken") {
      if (start === 0) {
        x = o.concat([o.reshape(tok, [b, 1, d]), x], 1); // [B, 1 + n, D]
        slotRow = true;
      }
    } else {
      x = o.add(x, o.reshape(tok, [b, 1, d])); // [B, n, D]
    }
  }
  const rows = o.shape(x)[1]; // r

  const cacheOf = (l: number): T | undefined =>
    spec._tag === "xl" ? input.state[`cache[${l}]`] : undefined;
  const cacheLen = cacheOf(0) === undefined ? 0 : o.shape(cacheOf(0)!)[1];
  const prefix = prefixRows(spec, start, cacheLen);
  const keys = prefix + rows; // T
  const relPos = spec._tag === "xl"
    ? o.at("relPos").constant(
      [keys, d],
      sinusoid(Array.from({ length: keys }, (_, i) => keys - 1 - i), d),
    ) // [T, D], distances T−1 … 0
    : undefined;

  const open: Record<string, T> = {};
  const layerInputs: T[] = [];
  p.blocks.forEach((bp, l) => {
    const ob = o.at(`blocks[${l}]`);
    if (spec._tag === "xl") {
      layerInputs.push(start === 0 ? x : o.concat([input.open[`x[${l}]`], x], 1)); // [B, t0 + n, D]
      const [y, k, v] = xlBlockStep(ob, bp, x, {
        heads: h,
        cached: start > 0 ? [input.open[`k[${l}]`], input.open[`v[${l}]`]] : undefined,
        cache: cacheOf(l),
        relPos: relPos!,
      });
      x = y;
      if (!closes) {
        open[`k[${l}]`] = k;
        open[`v[${l}]`] = v;
        open[`x[${l}]`] = layerInputs[l];
      }
      return;
    }
    const cached = start > 0 ? [input.open[`k[${l}]`], input.open[`v[${l}]`]] : [];
    const inputs = [x, ...cached, ...blockInputs(bp)];
    // One region of kind `decodeBlock`: the whole block for the fed rows, its caches extended.
    const outs = ob.region("decodeBlock", { heads: h, cached: start > 0 }, inputs, (ins) => {
      const [xi, kc, vc] = start > 0 ? ins : [ins[0]];
      const w = blockParams(ins.slice(start > 0 ? 3 : 1));
      const [y, k, v] = blockStep(ob, w, xi, {
        heads: h,
        cached: kc === undefined ? undefined : [kc, vc],
      });
      return closes ? [y] : [y, k, v];
    });
    x = outs[0];
    if (!closes) {
      open[`k[${l}]`] = outs[1];
      open[`v[${l}]`] = outs[2];
    }
  });
  const head = o.at("head");
  /** The final LayerNorm's rows of the fed tokens (not the slot's), and the readout of `plan`. */
  const readout = (xi: T, g: T, bias: T, w: T, hb: T): [T, T | undefined] => {
    const hf = o.at("lnF").layerNorm(xi, g, bias); // [B, r, D]
    const hTok = slotRow ? o.slice(hf, [0, 1, 0], [b, n, d]) : hf; // [B, n, D]
    if (plan.readout === "none") return [hTok, undefined];
    const rows = plan.readout === "all" ? hTok : o.slice(hTok, [0, n - 1, 0], [b, 1, d]);
    const [, k, dd] = o.shape(rows);
    const y = head.linear(o.reshape(rows, [b * k, dd]), w, hb); // [B·k, V]
    if (plan.draw !== undefined) return [hTok, head.sample(y, u!, plan.draw)]; // [B]
    return [hTok, o.reshape(y, [b, k, o.shape(y)[1]])]; // [B, k, V]
  };
  let u: T | undefined = input.uniforms;
  let hTok: T, logits: T | undefined, hAll: T | undefined, hf: T | undefined;
  const keepsRows = spec._tag === "crt";
  if (
    p.head.w !== undefined && spec.readout._tag === "lm" &&
    (!keepsRows || spec.memory.rnnInput !== "slot")
  ) {
    // One region of kind `lmHead`: the final LayerNorm, the readout of the asked rows and, for
    // CRT, the segment's normalised rows so far (the memory update reads them).
    const prev = keepsRows && start > 0 ? [input.open.h] : [];
    const drawn = plan.draw === undefined ? [] : [input.uniforms!];
    const attrs = {
      rows: plan.readout,
      slot: slotRow,
      keep: keepsRows,
      draw: plan.draw !== undefined,
      temperature: plan.draw?.temperature ?? 0,
      topK: plan.draw?.topK ?? 0,
    };
    const ins0 = [x, p.lnF.gain, p.lnF.bias, p.head.w, p.head.b, ...prev, ...drawn];
    const outs = head.region("lmHead", attrs, ins0, (ins) => {
      if (plan.draw !== undefined) u = ins[ins.length - 1];
      const [rows, y] = readout(ins[0], ins[1], ins[2], ins[3], ins[4]);
      const kept = keepsRows ? [prev.length > 0 ? o.concat([ins[5], rows], 1) : rows] : [];
      return [...(y === undefined ? [] : [y]), ...kept];
    });
    logits = plan.readout === "none" ? undefined : outs[0];
    hAll = keepsRows ? outs[outs.length - 1] : undefined;
    hTok = hAll!; // only read through hAll below
  } else {
    hf = o.at("lnF").layerNorm(x, p.lnF.gain, p.lnF.bias); // [B, r, D]
    hTok = slotRow ? o.slice(hf, [0, 1, 0], [b, n, d]) : hf; // [B, n, D]
    logits = plan.readout === "none"
      ? undefined
      : lmLogits(head, p, plan.readout === "all" ? hTok : o.slice(hTok, [0, n - 1, 0], [b, 1, d]));
    if (plan.draw !== undefined) {
      logits = head.sample(o.reshape(logits!, [b, spec.vocabSize]), input.uniforms!, plan.draw); // [B]
    }
  }

  const state: Record<string, T> = {};
  if (spec._tag === "crt") {
    hAll ??= start === 0 ? hTok : o.concat([input.open.h, hTok], 1); // [B, t0 + n, D]
    const slot = spec.memory.rnnInput !== "slot"
      ? undefined
      : slotRow
      ? o.reshape(o.slice(hf!, [0, 0, 0], [b, 1, d]), [b, d]) // [B, D]
      : input.open.slot;
    if (closes) {
      state.memory = updateMemory(
        o.at("memory"),
        p.memory!,
        spec,
        hAll,
        slot,
        input.state.memory,
      ); // [B, M]
    } else {
      open.h = hAll;
      if (slot !== undefined) open.slot = slot;
    }
  }
  if (spec._tag === "xl" && closes) {
    layerInputs.forEach((xs, l) => (state[`cache[${l}]`] = newCache(o, spec, cacheOf(l), xs)));
  }
  return {
    ...(logits === undefined ? {} : plan.draw !== undefined ? { tokens: logits } : { logits }),
    open,
    ...(closes ? { state } : {}),
  };
};

/** The block parameters a `decodeBlock` region reads, in the order it takes them. */
const blockInputs = <T>(p: BlockParams<T>): T[] => [
  p.ln1.gain,
  p.ln1.bias,
  p.attn.wq,
  p.attn.bq,
  p.attn.wkv,
  p.attn.bkv,
  p.attn.wo,
  p.attn.bo,
  p.ln2.gain,
  p.ln2.bias,
  p.ffn.w1,
  p.ffn.b1,
  p.ffn.w2,
  p.ffn.b2,
];

/** The inverse of {@linkcode blockInputs}: the parameters of a plain (non-XL) block. */
const blockParams = <T>(xs: readonly T[]): BlockParams<T> => {
  const [g1, b1, wq, bq, wkv, bkv, wo, bo, g2, b2, w1, f1, w2, f2] = xs;
  return {
    ln1: { gain: g1, bias: b1 },
    attn: { wq, bq, wkv, bkv, wo, bo },
    ln2: { gain: g2, bias: b2 },
    ffn: { w1, b1: f1, w2, b2: f2 },
  };
};

/** Keys and values [B, H, t, E] of normalised rows `a` [B, t, D]. */
const keysValues = <T>(o: Ops<T>, ap: AttentionParams<T>, a: T, h: number): [T, T] => {
  const [b, t, d] = o.shape(a);
  const kv = o.linear(a, ap.wkv, ap.bkv); // [B, t, 2D]
  return [
    splitHeads(o, o.slice(kv, [0, 0, 0], [b, t, d]), h), // [B, H, t, E]
    splitHeads(o, o.slice(kv, [0, 0, d], [b, t, d]), h), // [B, H, t, E]
  ];
};

/**
 * One block of CRT or the full-length Transformer over the fed rows x
 * [B, r, D], attending to the cached keys and values [B, H, P, E] (when
 * given) and its own: the new rows, and the keys and values extended by r
 * rows.
 */
const blockStep = <T>(
  ob: Ops<T>,
  bp: BlockParams<T>,
  x: T,
  opts: { readonly heads: number; readonly cached: readonly [T, T] | undefined },
): [T, T, T] => {
  const oa = ob.at("attn");
  const e = ob.shape(x)[2] / opts.heads;
  const { q, k, v } = blockStart(ob, bp, x, opts);
  return attendAndEnd(ob, bp, x, oa.matmul(q, k, { transposeB: true }), e, k, v);
};

/**
 * The end of a block's step from its attention scores [B, H, r, T]: the
 * causal softmax of scores / √E over the values, then {@linkcode blockEnd};
 * with the keys and values to cache.
 */
const attendAndEnd = <T>(
  ob: Ops<T>,
  bp: BlockParams<T>,
  x: T,
  scores: T,
  e: number,
  k: T,
  v: T,
): [T, T, T] => {
  const oa = ob.at("attn");
  // causalMask lets query i see key j ≤ i + (T − r): the whole prefix and itself.
  const probs = oa.softmax(oa.causalMask(oa.scale(scores, 1 / Math.sqrt(e)))); // [B, H, r, T]
  return [blockEnd(ob, bp, oa.matmul(probs, v), x), k, v];
};

/**
 * One Transformer-XL block over the fed rows: relative-position attention
 * to the carried cache's keys (at a segment's start), the open segment's
 * cached keys and its own.
 */
const xlBlockStep = <T>(
  ob: Ops<T>,
  bp: BlockParams<T>,
  x: T,
  opts: {
    readonly heads: number;
    readonly cached: readonly [T, T] | undefined;
    readonly cache: T | undefined;
    readonly relPos: T;
  },
): [T, T, T] => {
  const oa = ob.at("attn");
  const ap = bp.attn;
  const h = opts.heads;
  const [b, rows, d] = ob.shape(x);
  const e = d / h;
  let { q, k, v } = blockStart(ob, bp, x, opts);
  if (opts.cached === undefined && opts.cache !== undefined) {
    // At a segment start: the cached states' keys and values, computed once per segment.
    const [kc, vc] = keysValues(
      oa,
      ap,
      ob.at("ln1").layerNorm(opts.cache, bp.ln1.gain, bp.ln1.bias),
      h,
    );
    k = oa.concat([kc, k], 2);
    v = oa.concat([vc, v], 2);
  }
  const keys = oa.shape(k)[2];
  // Paper (Transformer-XL): content term (q + u)·kᵀ plus shifted position term (q + v)·rᵀ.
  const content = oa.matmul(oa.add(q, ap.u!), k, { transposeB: true }); // [B, H, r, T]
  const r = oa.transpose(oa.reshape(oa.matmul(opts.relPos, ap.wr!), [keys, h, e]), [1, 0, 2]); // [H, T, E]
  const qv = oa.reshape(oa.transpose(oa.add(q, ap.v!), [1, 0, 2, 3]), [h, b * rows, e]); // [H, B·r, E]
  const raw = oa.transpose(
    oa.reshape(oa.matmul(qv, r, { transposeB: true }), [h, b, rows, keys]),
    [1, 0, 2, 3],
  ); // [B, H, r, T]
  return attendAndEnd(ob, bp, x, oa.add(content, oa.relShift(raw)), e, k, v);
};

/**
 * The start of a block's step: LayerNorm, the fed rows' queries [B, H, r, E]
 * and their keys and values after the cached ones (when given).
 */
const blockStart = <T>(
  ob: Ops<T>,
  bp: BlockParams<T>,
  x: T,
  opts: { readonly heads: number; readonly cached: readonly [T, T] | undefined },
): { q: T; k: T; v: T } => {
  const oa = ob.at("attn");
  const a = ob.at("ln1").layerNorm(x, bp.ln1.gain, bp.ln1.bias); // [B, r, D]
  const q = splitHeads(oa, oa.linear(a, bp.attn.wq, bp.attn.bq), opts.heads); // [B, H, r, E]
  const [k, v] = keysValues(oa, bp.attn, a, opts.heads);
  if (opts.cached === undefined) return { q, k, v };
  return {
    q,
    k: oa.concat([opts.cached[0], k], 2), // [B, H, T, E]
    v: oa.concat([opts.cached[1], v], 2),
  };
};

/**
 * The rest of a block after its attention weights: the heads' values [B, H, r, E]
 * merged and projected onto the residual x, then the feed-forward sublayer.
 */
const blockEnd = <T>(ob: Ops<T>, bp: BlockParams<T>, values: T, x: T): T => {
  const oa = ob.at("attn");
  const x1 = oa.linear(mergeHeads(oa, values), bp.attn.wo, bp.attn.bo, { residual: x }); // [B, r, D]
  const f = ob.at("ffn");
  const ln2 = ob.at("ln2").layerNorm(x1, bp.ln2.gain, bp.ln2.bias);
  const hid = f.linear(ln2, bp.ffn.w1, bp.ffn.b1, { relu: true }); // [B, r, F]
  return f.linear(hid, bp.ffn.w2, bp.ffn.b2, { residual: x1 }); // [B, r, D]
};
