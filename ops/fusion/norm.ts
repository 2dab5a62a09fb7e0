/**
 * LayerNorm in one kernel each way on the wasm backend (kernels/norm.c):
 * the forward pass keeps x̂ and each row's 1/√(σ² + eps) for the backward
 * one, which is the closed form of ops/lower.ts's `layerNorm` gradient. The
 * op-by-op composition ran seven kernels forward (mean, sub, square, mean,
 * add, rsqrt, mul, …) and as many back, each a pass over [B·S, D].
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { type KernelArgs, offsetOf, type WasmBackend } from "../heap.ts";
import { blocks } from "./blocks.ts";

/** Kernel name of the forward pass: y, x̂, inv. */
export const LAYER_NORM = "CrtLayerNorm";
/** Kernel name of the backward pass: dx, dgain, dbias. */
export const LAYER_NORM_GRAD = "CrtLayerNormGrad";

const rowsOf = (x: tf.TensorInfo): [number, number] => {
  const d = x.shape[x.shape.length - 1];
  return [tf.util.sizeFromShape(x.shape) / d, d];
};

const forwardWasm = ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] => {
  const b = backend as WasmBackend;
  const { x, gain, bias } = inputs as Record<string, tf.TensorInfo>;
  const [n, d] = rowsOf(x);
  const y = b.makeOutput([...x.shape], "float32");
  const xhat = b.makeOutput([...x.shape], "float32");
  const inv = b.makeOutput([n], "float32");
  const at = (t: tf.TensorInfo) => offsetOf(b, t);
  blocks.on(b).layernorm(
    at(x),
    at(gain),
    at(bias),
    n,
    d,
    attrs!.eps as number,
    at(y),
    at(xhat),
    at(inv),
  );
  return [y, xhat, inv];
};

const backwardWasm = ({ inputs, backend }: KernelArgs): tf.TensorInfo[] => {
  const b = backend as WasmBackend;
  const { dy, xhat, inv, gain } = inputs as Record<string, tf.TensorInfo>;
  const [n, d] = rowsOf(xhat);
  const dx = b.makeOutput([...xhat.shape], "float32");
  const dg = b.makeOutput([d], "float32"), db = b.makeOutput([d], "float32");
  const at = (t: tf.TensorInfo) => offsetOf(b, t);
  blocks.on(b).layernorm_grad(at(dy), at(xhat), at(inv), at(gain), n, d, at(dx), at(dg), at(db));
  return [dx, dg, db];
};

type GradArgs = (tf.Tensor | tf.GradSaveFunc)[];

/** LayerNorm over the last axis of x with gain and bias [D], differentiable, in our kernels. */
export const layerNormKernel = (
  x: tf.Tensor,
  gain: tf.Tensor,
  bias: tf.Tensor,
  eps: number,
): tf.Tensor =>
  tf.customGrad((...args: GradArgs) => {
    const [xi, gi, bi, save] = args as [tf.Tensor, tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    const [y, xhat, inv] = tf.engine().runKernel(
      LAYER_NORM,
      { x: xi, gain: gi, bias: bi },
      { eps },
    ) as tf.Tensor[];
    save([xhat, inv, gi]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, [xh, iv, g]: tf.Tensor[]) =>
        tf.engine().runKernel(LAYER_NORM_GRAD, { dy, xhat: xh, inv: iv, gain: g }) as tf.Tensor[],
    };
  })(x, gain, bias);

/** The tfjs kernels this module registers. */
export const layerNormKernels: readonly tf.KernelConfig[] = [
  { kernelName: LAYER_NORM, backendName: "wasm", kernelFunc: forwardWasm as tf.KernelFunc },
  { kernelName: LAYER_NORM_GRAD, backendName: "wasm", kernelFunc: backwardWasm as tf.KernelFunc },
];
