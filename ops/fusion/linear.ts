/**
 * The `linear` region in one kernel: `y = residual + relu(x·W + b)` (each
 * part optional; `Ops.linear` in spec/ops_builder.ts marks it). The bias and the
 * residual are written into the output first and the product adds onto
 * them (BLAS with β = 1, or our GEMM accumulating), the ReLU runs in place
 * after: one pass over the output instead of an Add kernel per addend and a
 * ReLU kernel, each reading and writing it whole. A few rows (batch-1
 * decoding) take the matrix-vector path of products.ts.
 *
 * Backwards: dz = dy (masked by y > 0 after a ReLU, with the bias gradient
 * summed in the same pass), dx = dz·Wᵀ, dW = xᵀ·dz, db = Σ dz, dresidual = dz.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { bodyInputs, type FusedKernel, type FusedRegion } from "../fusion.ts";
import { dropoutMask } from "../dropout.ts";
import { installedMatmul } from "../matmul.ts";
import { type KernelArgs, offsetOf, type WasmBackend } from "../heap.ts";
import { blocks } from "./blocks.ts";
import { gemmOnHeap, type HeapWeight, matvec } from "./products.ts";
import { heapWeight } from "./weights.ts";

/** Kernel name of the forward pass. */
export const LINEAR = "CrtLinear";
/** Kernel name of the ReLU's backward pass (masked gradient and bias gradient). */
export const RELU_GRAD = "CrtReluGrad";

/** Rows up to which a product goes row by row through matrix-vector products. */
const MATVEC_ROWS = 2;

/**
 * y = x·W (+ bias) (+ residual), then ReLU, on the heap (byte offsets): x
 * [m, k] into out [m, n]; W [k, n] as a {@linkcode HeapWeight} (a float32
 * one may be stored [n, k], `transposeW`); `bias` [n] and `residual` [m, n]
 * are 0 when absent. Rows up to {@linkcode MATVEC_ROWS} go through
 * matrix-vector products, as every row of a q8 weight does.
 */
export interface LinearOnHeap {
  readonly x: number;
  readonly m: number;
  readonly w: HeapWeight;
  readonly transposeW: boolean;
  readonly bias: number;
  readonly residual: number;
  readonly relu: boolean;
  readonly out: number;
}

/** Run a linear step on the heap (see {@linkcode LinearOnHeap}); no ReLU with `relu` false. */
export const linearOnHeap = (b: WasmBackend, c: LinearOnHeap): void => {
  const { m, w } = c;
  const kx = blocks.on(b);
  const prefilled = c.bias !== 0 || c.residual !== 0;
  if (prefilled) kx.bias_rows(c.out, c.bias, c.residual, m, w.n);
  if (w.kind === "q8" || (m <= MATVEC_ROWS && !c.transposeW && w.n % 4 === 0)) {
    matvec(b, w, { x: c.x, y: c.out, rows: m, accumulate: prefilled });
  } else {
    gemmOnHeap(b, {
      m,
      n: w.n,
      k: w.k,
      a: c.x,
      transposeA: false,
      b: w.at,
      transposeB: c.transposeW,
      c: c.out,
      accumulate: prefilled,
    });
  }
  if (c.relu) kx.relu_inplace(c.out, m * w.n);
};

const linearWasm = ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo => {
  const b = backend as WasmBackend;
  const { x, w, bias, residual, mask } = inputs as Record<string, tf.TensorInfo | undefined>;
  const transposeW = attrs?.transposeW === true, relu = attrs?.relu === true;
  const [m, k] = x!.shape;
  const n = attrs!.n as number;
  const out = b.makeOutput([m, n], "float32");
  const at = (t: tf.TensorInfo | undefined) => (t === undefined ? 0 : offsetOf(b, t));
  // With dropout the residual comes after the mask (and the ReLU before it): only the bias is
  // prefilled then.
  linearOnHeap(b, {
    x: at(x),
    m,
    w: heapWeight(b, w!, k, n),
    transposeW,
    bias: at(bias),
    residual: mask === undefined ? at(residual) : 0,
    relu,
    out: at(out),
  });
  if (mask !== undefined) blocks.on(b).mask_add(at(out), at(mask), at(residual), m * n);
  return out;
};

const reluGradWasm = ({ inputs, backend }: KernelArgs): tf.TensorInfo[] => {
  const b = backend as WasmBackend;
  const { dy, y } = inputs as Record<string, tf.TensorInfo>;
  const [m, n] = y.shape;
  const dz = b.makeOutput([m, n], "float32"), db = b.makeOutput([n], "float32");
  blocks.on(b).relu_grad(offsetOf(b, dy), offsetOf(b, y), m, n, offsetOf(b, dz), offsetOf(b, db));
  return [dz, db];
};

/** Σ over rows of dz [M, N] → [N], through a ones-row product (the fast matmul path). */
const columnSums = (dz: tf.Tensor): tf.Tensor => {
  const [m, n] = dz.shape;
  return tf.reshape(tf.matMul(tf.ones([1, m]), dz), [n]);
};

type GradArgs = (tf.Tensor | tf.GradSaveFunc)[];

/** Run a linear region (inputs x, W, then b and the residual when its attributes say so). */
const run: FusedKernel["run"] = (op, inputs, ctx) => {
  const hasBias = op.attrs.bias === true, hasResidual = op.attrs.residual === true;
  const rate = (op.attrs.dropout as number | undefined) ?? 0;
  const relu = op.attrs.relu === true, transposeW = op.attrs.transposeW === true;
  const w = bodyInputs(op)[1];
  const n = transposeW ? w.shape[0] : w.shape[1];
  if (w.dtype === "q8") {
    // A q8 weight has no gradient: a model file's, run for inference.
    const named: Record<string, tf.Tensor> = { x: inputs[0], w: inputs[1] };
    if (hasBias) named.bias = inputs[2];
    if (hasResidual) named.residual = inputs[hasBias ? 3 : 2];
    return [tf.engine().runKernel(LINEAR, named, { relu, transposeW, n }) as tf.Tensor];
  }
  const f = tf.customGrad((...args: GradArgs) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const ts = args.slice(0, -1) as tf.Tensor[];
    const [x, w] = ts;
    const named: Record<string, tf.Tensor> = { x, w };
    if (hasBias) named.bias = ts[2];
    if (hasResidual) named.residual = ts[hasBias ? 3 : 2];
    if (ctx.training && rate > 0) {
      // The body's dropout draws its seed here, where the op-by-op path would.
      named.mask = tf.tensor(dropoutMask(ctx.seed(), rate, x.shape[0] * n), [x.shape[0], n]);
    }
    const value = tf.engine().runKernel(LINEAR, named, { relu, transposeW, n }) as tf.Tensor;
    save(relu ? [x, w, value] : named.mask !== undefined ? [x, w, named.mask] : [x, w]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ws] = saved;
        let dz = dy, db: tf.Tensor | undefined;
        if (relu) {
          [dz, db] = tf.engine().runKernel(RELU_GRAD, { dy, y: saved[2] }) as tf.Tensor[];
        } else if (named.mask !== undefined) {
          dz = tf.mul(dy, saved[2]); // through the dropout
        }
        const dx = tf.matMul(dz, ws, false, !transposeW);
        const dw = transposeW ? tf.matMul(dz, xs, true, false) : tf.matMul(xs, dz, true, false);
        const grads = [dx, dw];
        if (hasBias) grads.push(db ?? columnSums(dz));
        if (hasResidual) grads.push(tf.reshape(dy, dy.shape)); // the residual skips the dropout
        return grads;
      },
    };
  });
  return [f(...inputs)];
};

/**
 * Without a gradient a linear region is one call of its kernel: what `run`
 * computes with no tape and no dropout (directGraph's steps).
 */
const bindInference: FusedKernel["bindInference"] = (op) => {
  const hasBias = op.attrs.bias === true, hasResidual = op.attrs.residual === true;
  const relu = op.attrs.relu === true, transposeW = op.attrs.transposeW === true;
  const w = bodyInputs(op)[1];
  return {
    kernel: LINEAR,
    inputs: ["x", "w", ...(hasBias ? ["bias"] : []), ...(hasResidual ? ["residual"] : [])],
    attrs: { relu, transposeW, n: transposeW ? w.shape[0] : w.shape[1] },
  };
};

/** Whether one kernel takes this linear region. */
const supports = (r: FusedRegion, opts: { readonly gradients: boolean }): boolean => {
  if (installedMatmul() === "stock") return false;
  // Dropout after a ReLU would need the pre-dropout output: the op-by-op path (no model has it).
  if ((r.attrs.dropout ?? 0) !== 0 && r.attrs.relu === true) return false;
  const [x, w, ...rest] = r.inputs;
  if (x.dtype !== "float32" || rest.some((i) => i.dtype !== "float32")) return false;
  if (w.dtype === "q8") {
    // int8: inference only, x · W with W [K, N] in the packed layout (N a multiple of 4).
    return !opts.gradients && r.attrs.transposeW !== true && w.shape[1] % 4 === 0;
  }
  return w.dtype === "float32" && x.shape.length === 2 && w.shape.length === 2;
};

/** The kernel of `linear` regions, for ops/fusion.ts. */
export const linearKernel: FusedKernel = {
  kind: "linear",
  backends: ["wasm"],
  supports,
  run,
  bindInference,
  kernels: {
    forward: [LINEAR, "Identity"],
    backward: [RELU_GRAD, "BatchMatMul", "Reshape", "Multiply"],
  },
};

/** The tfjs kernels this module registers. */
export const linearKernels: readonly tf.KernelConfig[] = [
  { kernelName: LINEAR, backendName: "wasm", kernelFunc: linearWasm as tf.KernelFunc },
  { kernelName: RELU_GRAD, backendName: "wasm", kernelFunc: reluGradWasm as tf.KernelFunc },
];
