/**
 * The `attention` region in one kernel (kernels/attention.c): for every
 * batch row and head, softmax(q kᵀ / √E, causal) v, read from the
 * projections' own layouts — q [B, S, D], kv [B, T, 2D] — and written as the
 * merged heads [B, S, D]. The op-by-op path split the heads with transposes,
 * sliced the keys and values, and ran scale, mask, softmax and two batched
 * products as kernels of their own. The forward pass keeps P [B, H, S, T]
 * for the backward one, which computes dq and dkv in one more call.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { FusedKernel, FusedRegion } from "../fusion.ts";
import { offsetOf, scratch, type WasmBackend } from "../heap.ts";
import { blocks } from "./blocks.ts";

/** Kernel name of the forward pass: out, P. */
export const ATTENTION = "CrtAttention";
/** Kernel name of the backward pass: dq, dkv. */
export const ATTENTION_GRAD = "CrtAttentionGrad";

interface Args {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}

const geometry = (q: tf.TensorInfo, kv: tf.TensorInfo, heads: number) => {
  const [nb, s, d] = q.shape;
  const t = kv.shape[1];
  return { nb, s, t, d, nh: heads, e: d / heads, scale: 1 / Math.sqrt(d / heads) };
};

const forwardWasm = ({ inputs, backend, attrs }: Args): tf.TensorInfo[] => {
  const b = backend as WasmBackend;
  const { q, kv } = inputs as Record<string, tf.TensorInfo>;
  const g = geometry(q, kv, attrs!.heads as number);
  const out = b.makeOutput([g.nb, g.s, g.d], "float32");
  const probs = b.makeOutput([g.nb, g.nh, g.s, g.t], "float32");
  const k = blocks.on(b);
  const work = scratch(b, 4 * k.attention_work_floats(g.s, g.t));
  const at = (x: tf.TensorInfo) => offsetOf(b, x);
  k.attention_fwd(at(q), at(kv), g.nb, g.s, g.t, g.nh, g.e, g.scale, at(out), at(probs), work);
  return [out, probs];
};

const backwardWasm = ({ inputs, backend, attrs }: Args): tf.TensorInfo[] => {
  const b = backend as WasmBackend;
  const { q, kv, probs, dy } = inputs as Record<string, tf.TensorInfo>;
  const g = geometry(q, kv, attrs!.heads as number);
  const dq = b.makeOutput([...q.shape], "float32");
  const dkv = b.makeOutput([...kv.shape], "float32");
  const k = blocks.on(b);
  const work = scratch(b, 4 * k.attention_work_floats(g.s, g.t));
  const at = (x: tf.TensorInfo) => offsetOf(b, x);
  k.attention_bwd(
    at(q),
    at(kv),
    at(probs),
    at(dy),
    g.nb,
    g.s,
    g.t,
    g.nh,
    g.e,
    g.scale,
    at(dq),
    at(dkv),
    work,
  );
  return [dq, dkv];
};

type GradArgs = (tf.Tensor | tf.GradSaveFunc)[];

const run: FusedKernel["run"] = (op, inputs) => {
  const heads = op.attrs.heads as number;
  const f = tf.customGrad((...args: GradArgs) => {
    const [q, kv, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    const [out, probs] = tf.engine().runKernel(ATTENTION, { q, kv }, { heads }) as tf.Tensor[];
    save([q, kv, probs]);
    return {
      value: out,
      gradFunc: (dy: tf.Tensor, [qs, kvs, ps]: tf.Tensor[]) =>
        tf.engine().runKernel(ATTENTION_GRAD, { q: qs, kv: kvs, probs: ps, dy }, {
          heads,
        }) as tf.Tensor[],
    };
  });
  return [f(...inputs)];
};

/** One kernel takes the region: float32 q [B, S, D], kv [B, T, 2D], T ≥ S, no dropout on P. */
const supports = (r: FusedRegion): boolean => {
  if ((r.attrs.dropout ?? 0) !== 0) return false; // dropout's mask: the op-by-op path
  const [q, kv] = r.inputs;
  if (q.shape.length !== 3 || kv.shape.length !== 3) return false;
  const [nb, s, d] = q.shape;
  const heads = r.attrs.heads as number;
  return kv.shape[0] === nb && kv.shape[2] === 2 * d && kv.shape[1] >= s && d % heads === 0 &&
    (d / heads) % 4 === 0;
};

/** The kernel of `attention` regions, for ops/fusion.ts. */
export const attentionKernel: FusedKernel = {
  kind: "attention",
  backends: ["wasm"],
  supports,
  run,
  kernels: { forward: [ATTENTION, "Identity"], backward: [ATTENTION_GRAD] },
};

/** The tfjs kernels this module registers. */
export const attentionKernels: readonly tf.KernelConfig[] = [
  { kernelName: ATTENTION, backendName: "wasm", kernelFunc: forwardWasm as tf.KernelFunc },
  { kernelName: ATTENTION_GRAD, backendName: "wasm", kernelFunc: backwardWasm as tf.KernelFunc },
];
