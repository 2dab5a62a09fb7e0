/**
 * The `sample` op's kernel: a token drawn per row of logits in the kernel
 * (kernels/sample.c on wasm, the interpreter's `drawToken` on cpu), so a
 * generating stream reads back one id instead of V probabilities. Also the
 * readout's last step inside the `lmHead` region's kernel (stream.ts).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import {
  type CpuBackend,
  type KernelArgs,
  offsetOf,
  SCRATCH,
  scratch,
  type WasmBackend,
} from "../heap.ts";
import { drawToken } from "../reference.ts";
import { blocks } from "./blocks.ts";

/** Kernel name of `sample`: logits [N, V], uniforms [N] (attrs temperature, topK) → ids [N]. */
export const SAMPLE = "CrtSample";

/** Draw one id per row of logits at `x` [n, v] on the heap into out[0 … n) (int32 heap view). */
export const drawOnHeap = (
  b: WasmBackend,
  p: {
    x: number;
    n: number;
    v: number;
    uniforms: ArrayLike<number>;
    temperature: number;
    topK: number;
  },
): Int32Array => {
  const k = blocks.on(b);
  const work = scratch(b, 4 * p.v, SCRATCH.matvec);
  const out = new Int32Array(p.n);
  for (let r = 0; r < p.n; r++) {
    out[r] = k.sample_token(p.x + 4 * r * p.v, p.v, p.topK, p.temperature, p.uniforms[r], work);
  }
  return out;
};

const sampleWasm = ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo => {
  const b = backend as WasmBackend;
  const { logits, uniforms } = inputs as Record<string, tf.TensorInfo>;
  const [n, v] = logits.shape;
  const uAt = offsetOf(b, uniforms) >>> 2;
  const u = b.wasm.HEAPF32.slice(uAt, uAt + n);
  const ids = drawOnHeap(b, {
    x: offsetOf(b, logits),
    n,
    v,
    uniforms: u,
    temperature: attrs!.temperature as number,
    topK: attrs!.topK as number,
  });
  const out = b.makeOutput([n], "int32");
  b.wasm.HEAP32.set(ids, offsetOf(b, out) >>> 2);
  return out;
};

const sampleCpu = ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo => {
  const b = backend as CpuBackend;
  const { logits, uniforms } = inputs as Record<string, tf.TensorInfo>;
  const [n, v] = logits.shape;
  const x = b.data.get(logits.dataId).values as Float32Array;
  const u = b.data.get(uniforms.dataId).values as Float32Array;
  const opts = { temperature: attrs!.temperature as number, topK: attrs!.topK as number };
  const out = Int32Array.from(
    { length: n },
    (_, r) => drawToken(x.subarray(r * v, (r + 1) * v), opts, u[r]),
  );
  return b.makeTensorInfo([n], "int32", out);
};

/** Ids [N] drawn from logits [N, V] with uniforms [N] (the `sample` op). */
export const sampleTokens = (
  logits: tf.Tensor,
  uniforms: tf.Tensor,
  opts: { readonly temperature: number; readonly topK: number },
): tf.Tensor => tf.engine().runKernel(SAMPLE, { logits, uniforms }, { ...opts }) as tf.Tensor;

/** The tfjs kernels this module registers. */
export const sampleKernels: readonly tf.KernelConfig[] = [
  { kernelName: SAMPLE, backendName: "wasm", kernelFunc: sampleWasm as tf.KernelFunc },
  { kernelName: SAMPLE, backendName: "cpu", kernelFunc: sampleCpu as tf.KernelFunc },
];
