/**
 * The model stages, written once over the abstract op set: a shallow segment
 * encoder, the memory update and the readout, composed into CRT, the
 * full-length Transformer and Transformer-XL.
 *
 * Every function here is generic in the tensor handle `T`, so the same
 * definition is traced into a graph (core/), run eagerly on tfjs, or run by the
 * reference interpreter (ops/). State is explicit: a segment takes the carried
 * state in and hands the new state back.
 *
 * Shape letters: B batch, S segment length, T keys (cache + segment), D model
 * width, H heads, E = D / H head width, M memory width, V vocabulary, C classes.
 *
 * @module
 */
import type { CrtSpec, ModelSpec, XlSpec } from "./types.ts";
import {
  adaptiveGeometry,
  adaptiveLogProbs,
  adaptiveLoss,
  type AdaptiveTargets,
} from "./adaptive.ts";
import type { Ops } from "./ops_builder.ts";
import type {
  AttentionParams,
  BlockParams,
  MemoryParams,
  ModelParams,
  RecurrentParams,
} from "./layout.ts";

/**
 * Carried state: named tensors (`memory` [B, M] for CRT, `cache[l]`
 * [B, Tc, D] for XL, nothing for the full-length Transformer).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type State, stateShapes } from "./stages.ts";
 * import { referenceCrt } from "./reference_specs.ts";
 *
 * const shapes: State<readonly number[]> = stateShapes(referenceCrt, 4);
 * assert.deepEqual(shapes, { memory: [4, 256] });
 * ```
 */
export type State<T> = Readonly<Record<string, T>>;
// ---------------------------------------------------------------------------
// Stages

/** Sinusoidal encodings for positions `positions[i]`: [n, D] row-major. */
export const sinusoid = (positions: readonly number[], d: number): Float32Array => {
  const out = new Float32Array(positions.length * d);
  positions.forEach((p, i) => {
    for (let k = 0; k < d / 2; k++) {
      const angle = p / Math.pow(10000, (2 * k) / d);
      out[i * d + k] = Math.sin(angle);
      out[i * d + d / 2 + k] = Math.cos(angle);
    }
  });
  return out;
};

/** What a block needs besides its parameters. */
interface BlockContext<T> {
  readonly nHeads: number;
  readonly dropout: number;
  /** XL: this layer's cached inputs from the previous segment, [B, Tc, D]. */
  readonly cache?: T;
  /** XL: sinusoidal encodings of distances T−1 … 0, [T, D]. */
  readonly relPos?: T;
}

/** [B, S, D] → [B, H, S, E]. */
export const splitHeads = <T>(o: Ops<T>, x: T, h: number): T => {
  const [b, s, d] = o.shape(x);
  return o.transpose(o.reshape(x, [b, s, h, d / h]), [0, 2, 1, 3]); // [B, H, S, E]
};

/** [B, H, S, E] → [B, S, D]. */
export const mergeHeads = <T>(o: Ops<T>, x: T): T => {
  const [b, h, s, e] = o.shape(x);
  return o.reshape(o.transpose(x, [0, 2, 1, 3]), [b, s, h * e]); // [B, S, D]
};

/**
 * The attention core, one region of kind `attention`: per head,
 * softmax(q kᵀ / √E, causal) v with the heads merged again.
 * q [B, S, D]; kv [B, T, 2D] holds the keys then the values (T ≥ S, the last
 * S key rows belong to the queries); returns [B, S, D].
 */
export const attentionCore = <T>(
  o: Ops<T>,
  q: T,
  kv: T,
  opts: { readonly heads: number; readonly dropout: number },
): T => {
  const [b, t, d2] = o.shape(kv);
  const d = d2 / 2, h = opts.heads, e = d / h;
  return o.region("attention", { heads: h, dropout: opts.dropout }, [q, kv], ([qi, kvi]) => {
    const qh = splitHeads(o, qi, h); // [B, H, S, E]
    const k = splitHeads(o, o.slice(kvi, [0, 0, 0], [b, t, d]), h); // [B, H, T, E]
    const v = splitHeads(o, o.slice(kvi, [0, 0, d], [b, t, d]), h); // [B, H, T, E]
    const scores = o.matmul(qh, k, { transposeB: true }); // [B, H, S, T]
    const probs = o.dropout(
      o.softmax(o.causalMask(o.scale(scores, 1 / Math.sqrt(e)))),
      opts.dropout,
    );
    return [mergeHeads(o, o.matmul(probs, v))]; // [B, S, D]
  })[0];
};

/**
 * Multi-head causal self-attention over `[cache; x]`, pre-normalised inputs:
 * the heads' outputs merged, [B, S, D], before the output projection.
 */
const attend = <T>(
  o: Ops<T>,
  p: AttentionParams<T>,
  aq: T, // [B, S, D] normalised queries' inputs
  akv: T, // [B, T, D] normalised keys' inputs (T ≥ S; the last S rows are aq)
  ctx: BlockContext<T>,
): T => {
  const [b, t, d] = o.shape(akv);
  const h = ctx.nHeads, e = d / h;
  const q2 = o.linear(aq, p.wq, p.bq); // [B, S, D]
  const kv = o.linear(akv, p.wkv, p.bkv); // [B, T, 2D]
  if (p.u === undefined || p.v === undefined || p.wr === undefined || ctx.relPos === undefined) {
    return attentionCore(o, q2, kv, { heads: h, dropout: ctx.dropout });
  }
  const q = splitHeads(o, q2, h); // [B, H, S, E]
  const k = splitHeads(o, o.slice(kv, [0, 0, 0], [b, t, d]), h); // [B, H, T, E]
  const v = splitHeads(o, o.slice(kv, [0, 0, d], [b, t, d]), h); // [B, H, T, E]
  // Paper (Transformer-XL): content term (q + u)·kᵀ plus shifted position term (q + v)·rᵀ.
  const s = o.shape(aq)[1];
  const content = o.matmul(o.add(q, p.u), k, { transposeB: true }); // [B, H, S, T]
  const r = o.transpose(o.reshape(o.matmul(ctx.relPos, p.wr), [t, h, e]), [1, 0, 2]); // [H, T, E]
  const qv = o.reshape(o.transpose(o.add(q, p.v), [1, 0, 2, 3]), [h, b * s, e]); // [H, B·S, E]
  const raw = o.transpose(o.reshape(o.matmul(qv, r, { transposeB: true }), [h, b, s, t]), [
    1,
    0,
    2,
    3,
  ]); // [B, H, S, T]
  const scores = o.add(content, o.relShift(raw));
  const probs = o.dropout(o.softmax(o.causalMask(o.scale(scores, 1 / Math.sqrt(e)))), ctx.dropout);
  return mergeHeads(o, o.matmul(probs, v)); // [B, S, D]
};

/** One pre-LN block: x + Attn(LN(x)), then + FFN(LN(·)). */
const block = <T>(o: Ops<T>, p: BlockParams<T>, x: T, ctx: BlockContext<T>): T => {
  const [b, s, d] = o.shape(x);
  const full = ctx.cache === undefined ? x : o.concat([ctx.cache, x], 1); // [B, T, D]
  const akv = o.at("ln1").layerNorm(full, p.ln1.gain, p.ln1.bias); // [B, T, D]
  const t = o.shape(akv)[1];
  const aq = t === s ? akv : o.slice(akv, [0, t - s, 0], [b, s, d]); // [B, S, D]
  const oa = o.at("attn");
  const a = attend(oa, p.attn, aq, akv, ctx); // [B, S, D]
  const x1 = oa.linear(a, p.attn.wo, p.attn.bo, { dropout: ctx.dropout, residual: x }); // [B, S, D]
  const f = o.at("ffn");
  const ln2 = o.at("ln2").layerNorm(x1, p.ln2.gain, p.ln2.bias);
  const hid = f.linear(ln2, p.ffn.w1, p.ffn.b1, { relu: true }); // [B, S, F]
  return f.linear(hid, p.ffn.w2, p.ffn.b2, { dropout: ctx.dropout, residual: x1 }); // [B, S, D]
};

/**
 * One recurrent step. GRU: c = tanh(x W_c + r ⊙ (h U_c)).
 * Paper (NC-GRU): c = modReLU(x W_c + r ⊙ (h U_c)) with U_c orthogonal.
 */
export const recurrentStep = <T>(
  o: Ops<T>,
  p: RecurrentParams<T>,
  x: T, // [B, Din]
  h: T, // [B, M]
): T => {
  const [b, m] = o.shape(h);
  const mod = p.modBias;
  const inputs = [x, h, p.wx, p.bx, p.ur, p.uz, p.uc, ...(mod === undefined ? [] : [mod])];
  // One region of kind `recurrent`: the cell's three products and its gates.
  return o.region("recurrent", { modrelu: mod !== undefined }, inputs, (ins) => {
    const [xi, hi, wx, bx, ur, uz, uc, mb] = ins;
    const gx = o.add(o.matmul(xi, wx), bx); // [B, 3M]
    const xr = o.slice(gx, [0, 0], [b, m]);
    const xz = o.slice(gx, [0, m], [b, m]);
    const xc = o.slice(gx, [0, 2 * m], [b, m]);
    const r = o.sigmoid(o.add(xr, o.matmul(hi, ur))); // [B, M]
    const z = o.sigmoid(o.add(xz, o.matmul(hi, uz))); // [B, M]
    const pre = o.add(xc, o.mul(r, o.matmul(hi, uc))); // [B, M]
    const c = mb === undefined ? o.tanh(pre) : o.modrelu(pre, mb);
    return [o.add(c, o.mul(z, o.sub(hi, c)))]; // z ⊙ h + (1 − z) ⊙ c, [B, M]
  })[0];
};

/**
 * What a segment takes: tokens [B, S] (int32) — or, with feature input,
 * frames [B, S, F] (float32) — the carried state, optional targets.
 */
export interface SegmentInput<T> {
  /** Token ids [B, S] (int32), or feature vectors [B, S, F] (float32) with feature input. */
  readonly tokens: T;
  readonly state: State<T>;
  /** LM: next tokens [B, S]; classifier: labels [B]. When given, `loss` is returned. */
  readonly targets?: T;
  /**
   * Adaptive softmax, with `targets`: the gather plan of the segment's rows
   * (spec/adaptive.ts, `planAdaptiveTargets`), over the B·S rows in
   * row-major order. The loss reads it instead of `targets`.
   */
  readonly adaptive?: AdaptiveTargets<T>;
}

/** What a segment gives back. */
export interface SegmentOutput<T> {
  /**
   * LM: [B, S, V]; adaptive softmax: log-probabilities [B, S, V], absent when
   * targets are given (the loss never builds the full distribution);
   * classifier: [B, C].
   */
  readonly logits?: T;
  readonly state: State<T>;
  /** Mean negative log-likelihood over the segment (scalar), when targets were given. */
  readonly loss?: T;
}

/** Options of one segment run. */
export interface SegmentOptions {
  /** Dropout active. */
  readonly training: boolean;
}

/**
 * Token embeddings (or projected feature vectors) plus absolute positions for
 * a segment of length S ≤ segmentLen. Positions restart at every segment
 * (Paper: CRT).
 */
const embedTokens = <T>(o: Ops<T>, p: ModelParams<T>, spec: ModelSpec, tokens: T): T => {
  const [b, s] = o.shape(tokens);
  const d = spec.dModel;
  // Feature input goes through a linear projection (the paper is silent on its video encoder).
  const e = spec.input?._tag === "features"
    ? o.at("embed").linear(tokens, p.embed, p.embedBias) // [B, S, D]
    : o.at("embed").embedding(p.embed, tokens); // [B, S, D]
  if (spec._tag === "xl") return e; // XL encodes positions inside attention.
  const pos = p.pos !== undefined
    ? o.at("pos").slice(p.pos, [0, 0], [s, d])
    : o.at("pos").constant([s, d], sinusoid(Array.from({ length: s }, (_, i) => i), d));
  void b;
  return o.add(e, pos); // [B, S, D]
};

/** The readout on final-normalised token states [B, S, D] → LM logits [B, S, V]. */
export const lmLogits = <T>(o: Ops<T>, p: ModelParams<T>, hf: T): T => {
  const [b, s, d] = o.shape(hf);
  const h2 = o.reshape(hf, [b * s, d]);
  const w = p.head.w;
  const logits = o.linear(h2, w ?? p.embed, p.head.b, { transposeW: w === undefined }); // [B·S, V]
  return o.reshape(logits, [b, s, o.shape(logits)[1]]); // [B, S, V]
};

const lmLoss = <T>(o: Ops<T>, logits: T, targets: T): T => {
  const [b, s, v] = o.shape(logits);
  const nll = o.crossEntropy(o.reshape(logits, [b * s, v]), o.reshape(targets, [b * s])); // [B·S]
  return o.mean(nll, 0); // []
};

/**
 * The memory update: m_n = RNN(inputs; init = m_{n−1}).
 * Paper: the RNN reads the segment's outputs; `rnnInput` picks every token in
 * order, their mean, or the output at the memory slot.
 */
export const updateMemory = <T>(
  o: Ops<T>,
  p: MemoryParams<T>,
  spec: CrtSpec,
  hTokens: T, // [B, S, D] final-normalised token outputs
  hSlot: T | undefined, // [B, D] output at the memory slot (prependToken only)
  memory: T, // [B, M]
): T => {
  const r = o.at("rnn");
  const [b, s, d] = o.shape(hTokens);
  switch (spec.memory.rnnInput) {
    case "mean":
      return recurrentStep(r, p.rnn, o.mean(hTokens, 1), memory);
    case "slot":
      if (hSlot === undefined) throw new Error("rnnInput slot needs injection prependToken");
      return recurrentStep(r, p.rnn, hSlot, memory);
    case "tokens": {
      let m = memory;
      for (let t = 0; t < s; t++) {
        m = recurrentStep(r, p.rnn, o.reshape(o.slice(hTokens, [0, t, 0], [b, 1, d]), [b, d]), m);
      }
      return m;
    }
  }
};

/**
 * The shallow segment encoder: embeddings (plus the memory token for CRT),
 * L causal pre-LN blocks and the final LayerNorm. Returns the normalised token
 * states, the slot state (CRT prependToken) and the new XL caches.
 */
export const encodeSegment = <T>(
  o: Ops<T>,
  p: ModelParams<T>,
  spec: ModelSpec,
  input: { readonly tokens: T; readonly state: State<T> },
  opts: SegmentOptions,
): { hTokens: T; hSlot?: T; caches: readonly T[] } => {
  const dropout = opts.training ? spec.dropout : 0;
  const [b, s] = o.shape(input.tokens);
  const d = spec.dModel;
  let x = embedTokens(o, p, spec, input.tokens); // [B, S, D]
  let slot = false;
  if (spec._tag === "crt") {
    const mem = p.memory!;
    const memory = input.state.memory;
    // Paper: memory token e_0 = W_m · m_{n−1}.
    const tok = o.at("memory").linear(memory, mem.win, mem.bin); // [B, D]
    if (spec.memory.injection === "prependToken") {
      x = o.concat([o.reshape(tok, [b, 1, d]), x], 1); // [B, 1 + S, D]
      slot = true;
    } else {
      x = o.add(x, o.reshape(tok, [b, 1, d])); // [B, S, D]
    }
  }
  x = o.dropout(x, dropout);
  const caches: T[] = [];
  let relPos: T | undefined;
  const cacheOf = (l: number): T | undefined =>
    spec._tag === "xl" ? input.state[`cache[${l}]`] : undefined;
  if (spec._tag === "xl") {
    const t = s + (cacheOf(0) === undefined ? 0 : o.shape(cacheOf(0)!)[1]);
    const dist = Array.from({ length: t }, (_, i) => t - 1 - i);
    relPos = o.at("relPos").constant([t, d], sinusoid(dist, d)); // [T, D]
  }
  p.blocks.forEach((bp, l) => {
    const cache = cacheOf(l);
    if (spec._tag === "xl") caches.push(newCache(o, spec, cache, x));
    x = block(o.at(`blocks[${l}]`), bp, x, {
      nHeads: spec.nHeads,
      dropout,
      ...(cache === undefined ? {} : { cache }),
      ...(relPos === undefined ? {} : { relPos }),
    });
  });
  const hf = o.at("lnF").layerNorm(x, p.lnF.gain, p.lnF.bias); // [B, (1+)S, D]
  if (!slot) return { hTokens: hf, caches };
  return {
    hTokens: o.slice(hf, [0, 1, 0], [b, s, d]), // [B, S, D]
    hSlot: o.reshape(o.slice(hf, [0, 0, 0], [b, 1, d]), [b, d]), // [B, D]
    caches,
  };
};

/** Paper (Transformer-XL): the next cache is the last memLen layer inputs, without gradient. */
export const newCache = <T>(o: Ops<T>, spec: XlSpec, cache: T | undefined, x: T): T => {
  const full = cache === undefined ? x : o.concat([cache, x], 1); // [B, Tc + S, D]
  const [b, t, d] = o.shape(full);
  const keep = Math.min(spec.memLen, t);
  const kept = keep === t ? full : o.slice(full, [0, t - keep, 0], [b, keep, d]);
  return o.at("cache").stopGradient(kept); // [B, min(memLen, Tc + S), D]
};

/**
 * One segment of any model: encode, update the memory, read out.
 *
 * @example
 * ```ts
 * import { runSegment } from "./stages.ts";
 * // Traced in core/trace.ts; run eagerly with an Ops over tfjs or the reference interpreter.
 * void runSegment;
 * ```
 */
export const runSegment = <T>(
  o: Ops<T>,
  p: ModelParams<T>,
  spec: ModelSpec,
  input: SegmentInput<T>,
  opts: SegmentOptions,
): SegmentOutput<T> => {
  const enc = encodeSegment(o, p, spec, input, opts);
  const state: Record<string, T> = {};
  if (spec._tag === "crt") {
    state.memory = updateMemory(
      o.at("memory"),
      p.memory!,
      spec,
      enc.hTokens,
      enc.hSlot,
      input.state.memory,
    );
  }
  enc.caches.forEach((c, l) => (state[`cache[${l}]`] = c));
  const readout = spec.readout;
  const h = o.at("head");
  if (readout._tag === "adaptive") {
    const [b, s, d] = o.shape(enc.hTokens);
    const rows = o.reshape(enc.hTokens, [b * s, d]); // [B·S, D]
    const geom = adaptiveGeometry(readout, spec);
    const head = { w: p.head.w!, b: p.head.b, clusters: p.head.clusters ?? [] };
    if (input.targets === undefined) {
      return {
        logits: h.reshape(adaptiveLogProbs(h, head, geom, rows), [b, s, spec.vocabSize]),
        state,
      };
    }
    if (input.adaptive === undefined) {
      throw new Error(
        "the adaptive softmax's loss needs the segment's gather plan (SegmentInput.adaptive, " +
          "from planAdaptiveTargets in spec/adaptive.ts)",
      );
    }
    return { state, loss: adaptiveLoss(h.at("loss"), head, geom, rows, input.adaptive) };
  }
  if (readout._tag === "lm") {
    const logits = lmLogits(h, p, enc.hTokens);
    return input.targets === undefined
      ? { logits, state }
      : { logits, state, loss: lmLoss(h.at("loss"), logits, input.targets) };
  }
  const feature = readout.pool === "memory" && spec._tag === "crt"
    ? state.memory // [B, M]
    : h.mean(enc.hTokens, 1); // [B, D]
  const logits = h.add(h.matmul(feature, p.head.w!), p.head.b); // [B, C]
  return input.targets === undefined ? { logits, state } : {
    logits,
    state,
    loss: h.mean(h.crossEntropy(logits, input.targets), 0),
  };
};

/** Names and shapes of the state a model carries, for batch size B and cache length Tc. */
export const stateShapes = (
  spec: ModelSpec,
  batchSize: number,
  cacheLen = 0,
): Record<string, readonly number[]> => {
  if (spec._tag === "crt") return { memory: [batchSize, spec.memory.dMemory] };
  if (spec._tag === "xl" && cacheLen > 0) {
    return Object.fromEntries(
      Array.from(
        { length: spec.nLayers },
        (_, l) => [`cache[${l}]`, [batchSize, cacheLen, spec.dModel]],
      ),
    );
  }
  return {};
};
