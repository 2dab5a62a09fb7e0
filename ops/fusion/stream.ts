/**
 * The two ends of a streaming step, one kernel each (inference only): the
 * `embed` region — token rows plus position rows, from float32 or q8
 * tables, where the op-by-op step ran a gather, a dequantise of the
 * position table, a slice and an add — and the `lmHead` region: the final
 * LayerNorm, the readout of the asked rows (all, or each stream's last) and,
 * for CRT, the segment's normalised rows so far, which the memory update
 * reads at the segment's end.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import { bodyInputs, type FusedKernel, type FusedRegion, layerNormEps } from "../fusion.ts";
import { installedMatmul } from "../matmul.ts";
import { type KernelArgs, offsetOf, SCRATCH, scratch, type WasmBackend } from "../heap.ts";
import { q8Layout } from "../quant.ts";
import { blocks } from "./blocks.ts";
import { gemmOnHeap, type HeapWeight, matvec } from "./products.ts";
import { drawOnHeap } from "./sample.ts";
import { heapWeight } from "./weights.ts";

/** Kernel name of the embedding step. */
export const EMBED = "CrtEmbed";
/** Kernel name of the readout step. */
export const LM_HEAD = "CrtLmHead";

/** A table [R, D] on the heap: its data and, for a q8 one, its row scales (else 0). */
const table = (b: WasmBackend, t: tf.TensorInfo, rows: number, d: number): [number, number] => {
  const at = offsetOf(b, t);
  return t.dtype === "float32" ? [at, 0] : [at, at + q8Layout(rows, d, 0).valueBytes];
};

/**
 * Token rows plus position rows on the heap (byte offsets): ids [nb, n]
 * int32 at positions start … start + n − 1 into out [nb, n, D], from
 * `table` [V, D] and `pos` [S, D] (each its data and, for q8, its row
 * scales, else 0). The ids must be in [0, V): the kernel reads what they
 * index.
 */
export const embedOnHeap = (
  b: WasmBackend,
  c: {
    readonly table: readonly [number, number];
    readonly pos: readonly [number, number];
    readonly ids: number;
    readonly nb: number;
    readonly n: number;
    readonly d: number;
    readonly start: number;
    readonly out: number;
  },
): void =>
  blocks.on(b).embed_rows(
    c.table[0],
    c.table[1],
    c.ids,
    c.nb,
    c.n,
    c.d,
    c.pos[0],
    c.pos[1],
    c.start,
    c.out,
  );

/**
 * The heap offsets of an embedding step's tables: token rows [V, D] and
 * position rows [S, D] (the sizes are the binding's attributes: a q8
 * table's tensor is its packed bytes).
 */
export const embedTables = (
  b: WasmBackend,
  t: { readonly table: tf.TensorInfo; readonly pos: tf.TensorInfo },
  attrs: tf.NamedAttrMap,
): { table: [number, number]; pos: [number, number] } => {
  const v = attrs.vocab as number, d = attrs.width as number, s = attrs.positions as number;
  return { table: table(b, t.table, v, d), pos: table(b, t.pos, s, d) };
};

const embedWasm = ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo => {
  const b = backend as WasmBackend;
  const { table: tt, ids, pos } = inputs as Record<string, tf.TensorInfo>;
  const v = attrs!.vocab as number, d = attrs!.width as number;
  const [nb, n] = ids.shape;
  const idAt = offsetOf(b, ids) >>> 2;
  const heap = b.wasm.HEAP32;
  for (let i = 0; i < nb * n; i++) {
    const id = heap[idAt + i];
    if (!(id >= 0 && id < v)) {
      throw new RangeError(`embedding: id ${id} at position ${i} is outside [0, ${v})`);
    }
  }
  const out = b.makeOutput([nb, n, d], "float32");
  embedOnHeap(b, {
    ...embedTables(b, { table: tt, pos }, attrs!),
    ids: offsetOf(b, ids),
    nb,
    n,
    d,
    start: attrs!.start as number,
    out: offsetOf(b, out),
  });
  return out;
};

const embedKernel: FusedKernel = {
  kind: "embed",
  backends: ["wasm"],
  supports: (r: FusedRegion, opts) => {
    if (opts.gradients) return false;
    const [t, ids, pos] = r.inputs;
    return ids.dtype === "int32" && ids.shape.length === 2 && t.shape.length === 2 &&
      pos.shape.length === 2 && t.dtype !== "int32" && pos.dtype !== "int32";
  },
  bind: (op) => {
    const [t, , pos] = bodyInputs(op);
    return {
      kernel: EMBED,
      inputs: ["table", "ids", "pos"],
      attrs: {
        vocab: t.shape[0],
        width: t.shape[1],
        positions: pos.shape[0],
        start: op.attrs.start as number,
      },
    };
  },
  kernels: { forward: [EMBED], backward: [] },
};

/**
 * One readout step on the heap (byte offsets): the final LayerNorm of x [nb,
 * r, D] (r = n fed rows, +1 before them for CRT's memory-token slot); with
 * `keep`, the segment's normalised rows so far extended — `prev` [nb, t0, D]
 * then the n new rows into `kept` [nb, t0 + n, D] (kept = prev at nb = 1
 * extends in place: only the new rows are written); the readout of the
 * asked rows into `logits` [nb, k, V] (k = n for `all`, else 1) and, with
 * `draw`, one id per stream drawn from them (returned). `work` is scratch
 * of {@linkcode headWorkBytes} bytes (default: the kernels' shared scratch).
 */
export interface HeadOnHeap {
  readonly x: number;
  readonly nb: number;
  readonly r: number;
  readonly slot: boolean;
  readonly rows: "all" | "last" | "none";
  readonly eps: number;
  readonly g: number;
  readonly b: number;
  readonly w: HeapWeight;
  readonly hb: number;
  readonly keep?: { readonly prev: number; readonly t0: number; readonly kept: number };
  /** Where the logits go; 0 with `draw` puts them in the work area. */
  readonly logits: number;
  readonly draw?: {
    readonly uniforms: ArrayLike<number>;
    readonly temperature: number;
    readonly topK: number;
  };
  readonly work?: number;
}

/** Rows a readout step reads out: n for `all`, 1 for `last`, 0 for `none`. */
const readRows = (rows: HeadOnHeap["rows"], n: number): number =>
  rows === "all" ? n : rows === "last" ? 1 : 0;

/** Bytes of scratch a readout step needs (nb streams, r rows, width d, vocabulary v). */
export const headWorkBytes = (
  c: Pick<HeadOnHeap, "nb" | "r" | "slot" | "rows" | "logits" | "draw">,
  d: number,
  v: number,
): number => {
  const k = Math.max(1, readRows(c.rows, c.r - (c.slot ? 1 : 0)));
  return 4 *
    (c.nb * c.r * d + c.nb * k * d + (c.draw !== undefined && c.logits === 0 ? c.nb * k * v : 0));
};

/** Run one readout step on the heap (see {@linkcode HeadOnHeap}); the drawn ids, with `draw`. */
export const headOnHeap = (b: WasmBackend, c: HeadOnHeap): Int32Array | undefined => {
  const { nb, r } = c;
  const d = c.w.k, v = c.w.n;
  const n = r - (c.slot ? 1 : 0);
  const k = Math.max(1, readRows(c.rows, n));
  const hf = c.work ?? scratch(b, headWorkBytes(c, d, v), SCRATCH.kernel);
  const sel = hf + 4 * nb * r * d;
  const logits = c.logits !== 0 ? c.logits : sel + 4 * nb * k * d;
  const kx = blocks.on(b);
  kx.layernorm(c.x, c.g, c.b, nb * r, d, c.eps, hf, 0, 0);
  const heap = () => b.wasm.HEAPF32;
  const row = (bi: number, i: number) => (hf >>> 2) + (bi * r + i + (c.slot ? 1 : 0)) * d;
  if (c.keep !== undefined) {
    const { t0 } = c.keep;
    const h = heap(), ko = c.keep.kept >>> 2, po = c.keep.prev >>> 2;
    const inPlace = ko === po && nb === 1;
    for (let bi = 0; bi < nb; bi++) {
      if (t0 > 0 && !inPlace) {
        h.copyWithin(ko + bi * (t0 + n) * d, po + bi * t0 * d, po + (bi + 1) * t0 * d);
      }
      for (let i = 0; i < n; i++) {
        h.copyWithin(ko + (bi * (t0 + n) + t0 + i) * d, row(bi, i), row(bi, i) + d);
      }
    }
  }
  if (c.rows === "none") return undefined;
  const h = heap(), s0 = sel >>> 2;
  for (let bi = 0; bi < nb; bi++) {
    for (let j = 0; j < k; j++) {
      const i = c.rows === "all" ? j : n - 1;
      h.copyWithin(s0 + (bi * k + j) * d, row(bi, i), row(bi, i) + d);
    }
  }
  const m = nb * k;
  kx.bias_rows(logits, c.hb, 0, m, v);
  if (c.w.kind === "q8" || m <= 2) {
    matvec(b, c.w, { x: sel, y: logits, rows: m, accumulate: true });
  } else {
    gemmOnHeap(b, {
      m,
      n: v,
      k: d,
      a: sel,
      transposeA: false,
      b: c.w.at,
      transposeB: false,
      c: logits,
      accumulate: true,
    });
  }
  if (c.draw === undefined) return undefined;
  return drawOnHeap(b, { x: logits, n: nb, v, ...c.draw });
};

const headWasm = ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] => {
  const b = backend as WasmBackend;
  const t = inputs as Record<string, tf.TensorInfo | undefined>;
  const x = t.x!, prev = t.prev;
  const rows = attrs!.rows as "all" | "last" | "none";
  const slot = attrs!.slot === true, keep = attrs!.keep === true;
  const v = attrs!.vocab as number, eps = attrs!.eps as number;
  const [nb, r, d] = x.shape;
  const n = r - (slot ? 1 : 0), t0 = prev === undefined ? 0 : prev.shape[1];
  const at = (u: tf.TensorInfo | undefined) => (u === undefined ? 0 : offsetOf(b, u));
  const draw = attrs!.draw === true;
  const outs: tf.TensorInfo[] = [];
  // Drawing a token: the logits stay in scratch and only the ids [B] go out.
  const tokens = draw ? b.makeOutput([nb], "int32") : undefined;
  const logitsOut = rows === "none" || draw
    ? undefined
    : b.makeOutput([nb, readRows(rows, n), v], "float32");
  if (tokens !== undefined) outs.push(tokens);
  if (logitsOut !== undefined) outs.push(logitsOut);
  const kept = keep ? b.makeOutput([nb, t0 + n, d], "float32") : undefined;
  if (kept !== undefined) outs.push(kept);
  const uAt = at(t.u) >>> 2;
  const ids = headOnHeap(b, {
    x: at(x),
    nb,
    r,
    slot,
    rows,
    eps,
    g: at(t.g),
    b: at(t.b),
    w: heapWeight(b, t.w!, d, v),
    hb: at(t.hb),
    ...(kept === undefined ? {} : { keep: { prev: at(prev), t0, kept: at(kept) } }),
    logits: at(logitsOut),
    ...(draw
      ? {
        draw: {
          uniforms: b.wasm.HEAPF32.slice(uAt, uAt + nb),
          temperature: attrs!.temperature as number,
          topK: attrs!.topK as number,
        },
      }
      : {}),
  });
  if (tokens !== undefined) b.wasm.HEAP32.set(ids!, at(tokens) >>> 2);
  return outs;
};

const headKernel: FusedKernel = {
  kind: "lmHead",
  backends: ["wasm"],
  supports: (r: FusedRegion, opts) => {
    if (opts.gradients || installedMatmul() === "stock") return false;
    const [x, , , w] = r.inputs;
    if (x.shape.length !== 3 || w.shape.length !== 2 || x.shape[2] % 4 !== 0) return false;
    if (r.attrs.draw === true && r.attrs.rows !== "last") return false;
    return w.dtype === "q8" ? w.shape[1] % 4 === 0 : w.dtype === "float32" && w.shape[1] % 4 === 0;
  },
  bind: (op) => {
    const draw = op.attrs.draw === true;
    // x, the final LayerNorm's gain and bias, the readout's weight and bias, then the segment's
    // rows so far (after its first token) and the uniforms (when drawing).
    const n = bodyInputs(op).length;
    const prev = n - 5 - (draw ? 1 : 0) > 0;
    return {
      kernel: LM_HEAD,
      inputs: ["x", "g", "b", "w", "hb", ...(prev ? ["prev"] : []), ...(draw ? ["u"] : [])],
      attrs: {
        rows: op.attrs.rows as string,
        slot: op.attrs.slot === true,
        keep: op.attrs.keep === true,
        draw,
        temperature: op.attrs.temperature as number,
        topK: op.attrs.topK as number,
        vocab: bodyInputs(op)[3].shape[1],
        eps: layerNormEps(op),
      },
    };
  },
  kernels: { forward: [LM_HEAD], backward: [] },
};

/** The fused kernels of this module, for ops/fusion/mod.ts. */
export const streamFusedKernels: readonly FusedKernel[] = [embedKernel, headKernel];

/** The tfjs kernels this module registers. */
export const streamKernels: readonly tf.KernelConfig[] = [
  { kernelName: EMBED, backendName: "wasm", kernelFunc: embedWasm as tf.KernelFunc },
  { kernelName: LM_HEAD, backendName: "wasm", kernelFunc: headWasm as tf.KernelFunc },
];
