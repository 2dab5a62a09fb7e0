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

const forwardWasm = ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] => {
  const b = backend as WasmBackend;
  const t = inputs as Record<string, tf.TensorInfo>;
  const heads = attrs!.heads as number, eps = attrs!.eps as number;
  const x = t.x, kc = t.kc, vc = t.vc;
  const r = x.shape[1], d = x.shape[2], e = d / heads;
  const p = kc === undefined ? 0 : kc.shape[2];
  const at = (u: tf.TensorInfo | undefined) => (u === undefined ? 0 : offsetOf(b, u));
  const f = t.f1.shape[0];
  const dims: Record<string, [number, number]> = {
    wq: [d, d],
    wkv: [d, 2 * d],
    wo: [d, d],
    w1: [d, f],
    w2: [f, d],
  };
  const w = (name: string): HeapWeight => heapWeight(b, t[name], ...dims[name]);
  const w1 = w("w1");
  const xo = b.makeOutput([1, r, d], "float32");
  const ko = b.makeOutput([1, heads, p + r, e], "float32");
  const vo = b.makeOutput([1, heads, p + r, e], "float32");
  // Scratch, in floats: a, q, kv (2D), att, x1, a2 (r·D each but kv), hid (r·F), scores.
  const sizes = [r * d, r * d, 2 * r * d, r * d, r * d, r * d, r * f, r * (p + r)];
  const base = scratch(b, 4 * sizes.reduce((s, n) => s + ((n + 3) & ~3), 0), SCRATCH.kernel);
  const bufs: number[] = [];
  sizes.reduce((off, n) => (bufs.push(off), off + 4 * ((n + 3) & ~3)), base);
  const [a, q, kv, att, x1, a2, hid, scores] = bufs;
  const k = blocks.on(b);
  const product = (wt: HeapWeight, bias: string, src: number, dst: number, residual = 0) => {
    k.bias_rows(dst, at(t[bias]), residual, r, wt.n);
    matvec(b, wt, { x: src, y: dst, rows: r, accumulate: true });
  };
  k.layernorm(at(x), at(t.g1), at(t.b1), r, d, eps, a, 0, 0);
  product(w("wq"), "bq", a, q);
  product(w("wkv"), "bkv", a, kv);
  k.attention_step(
    q,
    kv,
    at(kc),
    at(vc),
    r,
    p,
    heads,
    e,
    1 / Math.sqrt(e),
    at(ko),
    at(vo),
    att,
    scores,
  );
  product(w("wo"), "bo", att, x1, at(x));
  k.layernorm(x1, at(t.g2), at(t.b2), r, d, eps, a2, 0, 0);
  product(w1, "f1", a2, hid);
  k.relu_inplace(hid, r * f);
  product(w("w2"), "f2", hid, at(xo), x1);
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
