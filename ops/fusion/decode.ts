/**
 * The `decodeBlock` region — one whole pre-LN block for the one or two rows
 * a batch-1 streaming step feeds (spec/stream.ts) — in one kernel: LayerNorm,
 * the query and key/value products, attention over the open segment's
 * cached keys and values (kernels/decode.c, which also writes the extended
 * caches), the output product onto the residual, LayerNorm, the
 * feed-forward products with ReLU, and the last product onto the residual.
 * The products are matrix-vector products (products.ts): BLAS `sgemv` on
 * the native tier, our wasm kernels on the portable one and for int8
 * weights. Where the op-by-op step dispatched ~35 tfjs kernels per block,
 * this is one. Inference only: a streaming step has no gradient.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import type { Op } from "../../spec/ops.ts";
import { type FusedKernel, type FusedRegion, type KernelBinding, layerNormEps } from "../fusion.ts";
import { installedMatmul } from "../matmul.ts";
import { type KernelArgs, offsetOf, SCRATCH, scratch, type WasmBackend } from "../heap.ts";
import { blocks } from "./blocks.ts";
import { type HeapWeight, matvec } from "./products.ts";
import { heapWeight, quantizedWeight } from "./weights.ts";

/** Kernel name of the block step. */
export const DECODE_BLOCK = "CrtDecodeBlock";

/** The parameters a `decodeBlock` region reads after x (and the caches), in order. */
const PARAMS = [
  "g1",
  "b1",
  "wq",
  "bq",
  "wkv",
  "bkv",
  "wo",
  "bo",
  "g2",
  "b2",
  "w1",
  "f1",
  "w2",
  "f2",
] as const;

/**
 * One block step on the heap (byte offsets): `r` rows x [r, D] → xo [r, D],
 * attending to `p` cached rows per head (kc, vc, head stride `ps` rows; 0
 * when p = 0) and writing the extended caches to ko, vo (head stride `ts` ≥
 * p + r rows; ko = kc, vo = vc with ts = ps extends them in place). The
 * parameters are on the heap too: gains and biases by offset, the five
 * weight matrices as {@linkcode HeapWeight}s. `work` is scratch of
 * {@linkcode blockWorkBytes} bytes (default: the kernels' shared scratch).
 */
export interface BlockOnHeap {
  readonly x: number;
  readonly r: number;
  readonly p: number;
  readonly heads: number;
  readonly eps: number;
  readonly kc: number;
  readonly vc: number;
  readonly ps: number;
  readonly ko: number;
  readonly vo: number;
  readonly ts: number;
  readonly xo: number;
  /** g1, b1, bq, bkv, bo, g2, b2, f1, f2: offsets of the gains and biases. */
  readonly at: Readonly<Record<(typeof VECTORS)[number], number>>;
  readonly w: Readonly<Record<(typeof MATRICES)[number], HeapWeight>>;
  readonly work?: number;
}

/** The gains and biases a block reads, by input name. */
const VECTORS = ["g1", "b1", "bq", "bkv", "bo", "g2", "b2", "f1", "f2"] as const;
/** The weight matrices a block reads, by input name. */
const MATRICES = ["wq", "wkv", "wo", "w1", "w2"] as const;

/** Scratch of a block step (floats, 4-aligned each): a, q, kv, att, x1, a2, hid, scores. */
const workSizes = (r: number, p: number, d: number, f: number): number[] =>
  [
    r * d,
    r * d,
    2 * r * d,
    r * d,
    r * d,
    r * d,
    r * f,
    r * (p + r),
  ].map((n) => (n + 3) & ~3);

/** Bytes of scratch a block step of `r` rows over `p` cached ones needs (width d, FFN f). */
export const blockWorkBytes = (r: number, p: number, d: number, f: number): number =>
  4 * workSizes(r, p, d, f).reduce((s, n) => s + n, 0);

/** Run one block step on the heap (see {@linkcode BlockOnHeap}). */
export const blockOnHeap = (b: WasmBackend, c: BlockOnHeap): void => {
  const { r, p } = c;
  const d = c.w.wq.k, f = c.w.w1.n, e = d / c.heads;
  const base = c.work ?? scratch(b, blockWorkBytes(r, p, d, f), SCRATCH.kernel);
  const bufs: number[] = [];
  workSizes(r, p, d, f).reduce((off, n) => (bufs.push(off), off + 4 * n), base);
  const [a, q, kv, att, x1, a2, hid, scores] = bufs;
  const k = blocks.on(b);
  const at = c.at;
  const product = (wt: HeapWeight, bias: number, src: number, dst: number, residual = 0) => {
    k.bias_rows(dst, bias, residual, r, wt.n);
    matvec(b, wt, { x: src, y: dst, rows: r, accumulate: true });
  };
  k.layernorm(c.x, at.g1, at.b1, r, d, c.eps, a, 0, 0);
  product(c.w.wq, at.bq, a, q);
  product(c.w.wkv, at.bkv, a, kv);
  k.attention_step(
    q,
    kv,
    c.kc,
    c.vc,
    r,
    p,
    c.heads,
    e,
    1 / Math.sqrt(e),
    c.ko,
    c.vo,
    att,
    scores,
    c.ps,
    c.ts,
  );
  product(c.w.wo, at.bo, att, x1, c.x);
  k.layernorm(x1, at.g2, at.b2, r, d, c.eps, a2, 0, 0);
  product(c.w.w1, at.f1, a2, hid);
  k.relu_inplace(hid, r * f);
  product(c.w.w2, at.f2, hid, c.xo, x1);
};

/** The weights and vectors of a block's tfjs inputs, on the heap. */
export const blockParamsOnHeap = (
  b: WasmBackend,
  t: Readonly<Record<string, tf.TensorInfo>>,
): Pick<BlockOnHeap, "at" | "w"> => {
  const d = t.g1.shape[0], f = t.f1.shape[0];
  const dims: Record<(typeof MATRICES)[number], [number, number]> = {
    wq: [d, d],
    wkv: [d, 2 * d],
    wo: [d, d],
    w1: [d, f],
    w2: [f, d],
  };
  return {
    at: Object.fromEntries(VECTORS.map((n) => [n, offsetOf(b, t[n])])) as BlockOnHeap["at"],
    w: Object.fromEntries(
      MATRICES.map((n) => [n, heapWeight(b, t[n], ...dims[n])]),
    ) as BlockOnHeap["w"],
  };
};

const forwardWasm = ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] => {
  const b = backend as WasmBackend;
  const t = inputs as Record<string, tf.TensorInfo>;
  const heads = attrs!.heads as number, eps = attrs!.eps as number;
  const x = t.x, kc = t.kc, vc = t.vc;
  const r = x.shape[1], d = x.shape[2], e = d / heads;
  const p = kc === undefined ? 0 : kc.shape[2];
  const at = (u: tf.TensorInfo | undefined) => (u === undefined ? 0 : offsetOf(b, u));
  const xo = b.makeOutput([1, r, d], "float32");
  const ko = b.makeOutput([1, heads, p + r, e], "float32");
  const vo = b.makeOutput([1, heads, p + r, e], "float32");
  blockOnHeap(b, {
    x: at(x),
    r,
    p,
    heads,
    eps,
    kc: at(kc),
    vc: at(vc),
    ps: p,
    ko: at(ko),
    vo: at(vo),
    ts: p + r,
    xo: at(xo),
    ...blockParamsOnHeap(b, t),
  });
  return [xo, ko, vo];
};

/** How a decodeBlock region calls its kernel: x, then kc and vc when `cached`, then the parameters. */
const bind = (op: Extract<Op, { _tag: "fused" }>): KernelBinding => ({
  kernel: DECODE_BLOCK,
  inputs: ["x", ...(op.attrs.cached === true ? ["kc", "vc"] : []), ...PARAMS],
  attrs: { heads: op.attrs.heads as number, eps: layerNormEps(op) },
  // A step that closes the segment keeps no caches.
  keep: Object.keys(op.body.outputs).length === 1 ? 1 : 3,
});

/**
 * One kernel takes the step: batch 1, one or two rows, widths the kernels'
 * vectors divide, float32 (or int8 weights), no gradient.
 */
const supports = (r: FusedRegion, opts: { readonly gradients: boolean }): boolean => {
  if (opts.gradients || installedMatmul() === "stock") return false;
  const [x] = r.inputs;
  if (x.shape.length !== 3 || x.shape[0] !== 1 || x.shape[1] > 2) return false;
  const d = x.shape[2], heads = r.attrs.heads as number;
  if (d % 4 !== 0 || d % heads !== 0 || (d / heads) % 4 !== 0) return false;
  return r.inputs.every((i) => i.dtype === "float32" || quantizedWeight(i));
};

/** The kernel of `decodeBlock` regions, for ops/fusion.ts. */
export const decodeBlockKernel: FusedKernel = {
  kind: "decodeBlock",
  backends: ["wasm"],
  supports,
  bind,
  kernels: { forward: [DECODE_BLOCK], backward: [] },
};

/** The tfjs kernels this module registers. */
export const decodeKernels: readonly tf.KernelConfig[] = [
  { kernelName: DECODE_BLOCK, backendName: "wasm", kernelFunc: forwardWasm as tf.KernelFunc },
];
