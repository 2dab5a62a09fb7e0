/**
 * Lowering of every IR op to tfjs-core calls, the gradients those calls rely
 * on, the kernel inventory of each lowering, and a check of that inventory
 * against a backend.
 *
 * Rules the lowerings follow, because the wasm backend is slow or incomplete
 * otherwise (see docs/substrate.md): every tensor stays at rank ≤ 4; every kernel
 * run forward or backward is compiled wasm or a contiguous copy / metadata
 * change (Reshape, Slice and Concat at rank ≤ 4), never a per-element JS
 * loop (the one exception is dropout's random mask, drawn in JS as
 * `tf.randomUniform` also does); and no gradient needs a kernel wasm lacks
 * (`UnsortedSegmentSum`, `LogSoftmax`, `BroadcastTo`, ...).
 *
 * Gradients come from two places. Ops whose gradient needs saved values use
 * plain tfjs ops and the gradients {@linkcode registerGradients} installs
 * (tfjs-core registers none by itself). Ops whose gradient needs only shapes,
 * or a formula tfjs lacks, use `tf.customGrad` closing over the shapes:
 * tfjs saves (copies) a kernel's inputs just to learn their shapes.
 *
 * Nothing here wraps work in `tf.tidy`: callers own every tensor created, so
 * gradients can flow through a whole lowered graph.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { left, right } from "fp-ts/lib/Either.js";
import { bodyFeeds, bodyOutputs, type Graph, type Node, walkGraph } from "../spec/graph.ts";
import type { Either } from "../spec/either.ts";
import { inferShape, type Op, type OpBackend, type OpTag, type Shape } from "../spec/ops.ts";
import { MASKED, type RefTensor } from "./reference.ts";
import { GATHER_ROWS, gatherRows, softmaxXent, softmaxXentGrad, XENT, XENT_GRAD } from "./fused.ts";
import { dropoutMask } from "./dropout.ts";
import { fusedKernel, type KernelUse, type LowerCtx } from "./fusion.ts";
import { LAYER_NORM, LAYER_NORM_GRAD, layerNormKernel } from "./fusion/norm.ts";
import { DEQUANTIZE, dequantizeTensor } from "./fusion/q8.ts";
import { SAMPLE, sampleTokens } from "./fusion/sample.ts";
import { q8Layout } from "./quant.ts";

export type { KernelUse, LowerCtx } from "./fusion.ts";

/**
 * Every tfjs kernel each lowering can call, forward and in its gradient, over
 * all attribute values (e.g. `Reshape` only for rank-4 `matmul`, `Sum` only
 * when `add` broadcasts). Gradients are the ones {@linkcode registerGradients}
 * installs or the op's own `tf.customGrad`. `tests/ops_kernels_test.ts`
 * records the kernels each op actually runs and checks them against this.
 */
export const KERNELS: Readonly<Record<OpTag, KernelUse>> = {
  input: { forward: [], backward: [] },
  constant: { forward: [], backward: [] },
  matmul: { forward: ["BatchMatMul", "Reshape", "Identity"], backward: ["BatchMatMul", "Reshape"] },
  add: { forward: ["Add"], backward: ["Sum", "Reshape", "BatchMatMul"] },
  sub: { forward: ["Sub"], backward: ["Sum", "Reshape", "Neg", "BatchMatMul"] },
  mul: {
    forward: ["Multiply", "Identity"],
    backward: ["Multiply", "Sum", "Reshape", "BatchMatMul"],
  },
  scale: { forward: ["Multiply"], backward: ["Multiply"] },
  relu: { forward: ["Relu", "Identity"], backward: ["Step", "Multiply"] },
  sigmoid: { forward: ["Sigmoid", "Identity"], backward: ["Sub", "Multiply"] },
  tanh: { forward: ["Tanh", "Identity"], backward: ["Square", "Sub", "Multiply"] },
  modrelu: {
    forward: ["Sign", "Abs", "Add", "Relu", "Multiply", "Identity"],
    backward: ["Step", "Multiply", "Sum", "Reshape", "BatchMatMul"],
  },
  softmax: { forward: ["Softmax", "Identity"], backward: ["Multiply", "Sum", "Sub"] },
  logSoftmax: {
    forward: ["Max", "Sub", "Exp", "Sum", "Log", "Identity"],
    backward: ["Exp", "Sum", "Multiply", "Sub"],
  },
  layerNorm: {
    forward: ["Mean", "Sub", "Square", "Add", "Rsqrt", "Multiply", "Identity"],
    backward: ["Multiply", "Mean", "Sub", "Sum", "Reshape"],
  },
  embedding: { forward: [GATHER_ROWS, "Identity"], backward: ["Reshape", "ScatterNd"] },
  reshape: { forward: ["Reshape"], backward: ["Reshape"] },
  transpose: { forward: ["Transpose"], backward: ["Transpose"] },
  concat: { forward: ["Concat", "Reshape"], backward: ["SplitV", "Reshape"] },
  slice: { forward: ["Slice"], backward: ["PadV2"] },
  mean: { forward: ["Mean"], backward: ["Multiply", "Reshape", "Add"] },
  causalMask: { forward: ["Add"], backward: ["Reshape"] },
  relShift: { forward: ["Reshape", "PadV2", "Slice"], backward: ["Reshape", "Slice", "PadV2"] },
  crossEntropy: { forward: [XENT, "Identity"], backward: [XENT_GRAD] },
  dropout: { forward: ["Multiply", "Reshape"], backward: ["Multiply", "Reshape"] },
  stopGradient: { forward: ["Reshape"], backward: [] },
  dequantize: { forward: [DEQUANTIZE], backward: [] },
  sample: { forward: [SAMPLE], backward: [] },
  // A fused node's kernels depend on its kind: see kernelUse.
  fused: { forward: [], backward: [] },
  part: { forward: [], backward: [] },
};

/**
 * The tfjs kernels one node's lowering runs: {@linkcode KERNELS} by op, and
 * for a fused node its own kernel's (ops/fusion.ts), or the union over its
 * body when the active backend has no kernel for it.
 */
export const kernelUse = (op: Op, backendName: string = tf.getBackend()): KernelUse => {
  if (op._tag === "layerNorm" && tf.getKernel(LAYER_NORM, backendName) !== undefined) {
    return { forward: [LAYER_NORM, "Identity"], backward: [LAYER_NORM_GRAD] };
  }
  if (op._tag !== "fused") return KERNELS[op._tag];
  const k = fusedKernel(op.kind, backendName);
  if (k !== undefined) return k.kernels;
  const forward = new Set<string>(), backward = new Set<string>();
  for (const n of op.body.nodes) {
    const u = kernelUse(n.op, backendName);
    u.forward.forEach((x) => forward.add(x));
    u.backward.forEach((x) => backward.add(x));
  }
  return { forward: [...forward], backward: [...backward] };
};

/**
 * Kernels the autograd engine itself runs whatever the ops: `Add` sums the
 * gradients of a tensor that feeds several consumers.
 */
export const AUTOGRAD_KERNELS: readonly string[] = ["Add"];

// --- gradients ---------------------------------------------------------------

/** Sum a broadcast gradient back down to `shape`; always a fresh tensor. */
const sumTo = (g: tf.Tensor, shape: readonly number[]): tf.Tensor => {
  const axes = tf.backend_util.getReductionAxes([...shape], g.shape);
  if (axes.length === 0) return tf.reshape(g, [...shape]);
  // A bias gradient sums leading axes (e.g. [B·S, V] → [V]). The wasm Sum
  // transposes such a tensor first (~100 ms for [700, 10000]); a ones-row
  // matmul does the same reduction on the fast matmul path.
  if (axes.every((a, i) => a === i)) {
    const rows = axes.reduce((n, a) => n * g.shape[a], 1);
    const cols = g.size / rows;
    const summed = tf.matMul(tf.ones([1, rows]), tf.reshape(g, [rows, cols]));
    return tf.reshape(summed, [...shape]);
  }
  return tf.reshape(tf.sum(g, axes), [...shape]);
};

/** `g` (reduced over `axes` of `shape`) repeated back to `shape`, without BroadcastTo. */
const spread = (g: tf.Tensor, shape: readonly number[], axes: readonly number[]): tf.Tensor => {
  const kept = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  // A broadcasting Add onto zeros: wasm's Tile is ~50× slower (26 ms for [20, 35, 256]).
  return tf.add(tf.zeros([...shape]), tf.reshape(g, kept));
};

const reductionAxes = (axis: unknown, shape: readonly number[]): number[] =>
  tf.util.parseAxisParam(axis as number | number[], [...shape]);

const two = (): tf.Tensor => tf.scalar(2);
const one = (): tf.Tensor => tf.scalar(1);

/**
 * Gradients for the kernels the lowerings (and code around them, like a loss
 * averaged with `tf.addN` / `tf.div`) run under a gradient tape. tfjs-core
 * ships none: its gradients are registered by the `@tensorflow/tfjs` union
 * package from ESM files Deno cannot load. Each formula is written to use
 * only compiled wasm kernels.
 */
const GRADIENTS: readonly tf.GradConfig[] = [
  {
    kernelName: "Add",
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b]) => ({
      a: () => sumTo(dy as tf.Tensor, a.shape),
      b: () => sumTo(dy as tf.Tensor, b.shape),
    }),
  },
  {
    kernelName: "Sub",
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b]) => ({
      a: () => sumTo(dy as tf.Tensor, a.shape),
      b: () => tf.neg(sumTo(dy as tf.Tensor, b.shape)),
    }),
  },
  {
    kernelName: "Multiply",
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b]) => ({
      a: () => sumTo(tf.mul(dy as tf.Tensor, b), a.shape),
      b: () => sumTo(tf.mul(dy as tf.Tensor, a), b.shape),
    }),
  },
  {
    kernelName: "RealDiv",
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b]) => ({
      a: () => sumTo(tf.div(dy as tf.Tensor, b), a.shape),
      b: () => tf.neg(sumTo(tf.div(tf.mul(dy as tf.Tensor, a), tf.square(b)), b.shape)),
    }),
  },
  {
    kernelName: "AddN",
    saveAllInputs: true,
    gradFunc: (dy, saved) =>
      Object.fromEntries(
        saved.map((_, i) => [i, () => tf.reshape(dy as tf.Tensor, (dy as tf.Tensor).shape)]),
      ),
  },
  { kernelName: "Neg", gradFunc: (dy) => ({ x: () => tf.neg(dy as tf.Tensor) }) },
  {
    kernelName: "Square",
    inputsToSave: ["x"],
    gradFunc: (dy, [x]) => ({ x: () => tf.mul(dy as tf.Tensor, tf.mul(x, two())) }),
  },
  {
    kernelName: "Sqrt",
    outputsToSave: [true],
    gradFunc: (dy, [y]) => ({ x: () => tf.div(dy as tf.Tensor, tf.mul(y, two())) }),
  },
  {
    kernelName: "Exp",
    outputsToSave: [true],
    gradFunc: (dy, [y]) => ({ x: () => tf.mul(dy as tf.Tensor, y) }),
  },
  {
    kernelName: "Log",
    inputsToSave: ["x"],
    gradFunc: (dy, [x]) => ({ x: () => tf.div(dy as tf.Tensor, x) }),
  },
  {
    kernelName: "Relu",
    inputsToSave: ["x"],
    gradFunc: (dy, [x]) => ({ x: () => tf.mul(dy as tf.Tensor, tf.step(x)) }),
  },
  {
    kernelName: "Sigmoid",
    outputsToSave: [true],
    gradFunc: (dy, [y]) => ({ x: () => tf.mul(dy as tf.Tensor, tf.mul(y, tf.sub(one(), y))) }),
  },
  {
    kernelName: "Tanh",
    outputsToSave: [true],
    gradFunc: (dy, [y]) => ({ x: () => tf.mul(dy as tf.Tensor, tf.sub(one(), tf.square(y))) }),
  },
  {
    kernelName: "Softmax",
    outputsToSave: [true],
    gradFunc: (dy, [y], attrs) => ({
      logits: () => {
        const g = tf.mul(dy as tf.Tensor, y);
        return tf.sub(g, tf.mul(tf.sum(g, attrs.dim as number, true), y));
      },
    }),
  },
  {
    kernelName: "Sum",
    inputsToSave: ["x"],
    gradFunc: (dy, [x], attrs) => ({
      x: () => spread(dy as tf.Tensor, x.shape, reductionAxes(attrs.axis, x.shape)),
    }),
  },
  {
    kernelName: "Mean",
    inputsToSave: ["x"],
    gradFunc: (dy, [x], attrs) => ({
      x: () => {
        const axes = reductionAxes(attrs.axis, x.shape);
        const n = axes.reduce((acc, a) => acc * x.shape[a], 1);
        return spread(tf.mul(dy as tf.Tensor, tf.scalar(1 / n)), x.shape, axes);
      },
    }),
  },
  {
    kernelName: "Reshape",
    inputsToSave: ["x"],
    gradFunc: (dy, [x]) => ({ x: () => tf.reshape(dy as tf.Tensor, x.shape) }),
  },
  {
    kernelName: "ExpandDims",
    // This kernel names its input `input`, not `x`.
    inputsToSave: ["input"],
    gradFunc: (dy, [x]) => ({ input: () => tf.reshape(dy as tf.Tensor, x.shape) }),
  },
  {
    kernelName: "Transpose",
    gradFunc: (dy, _saved, attrs) => {
      const perm = attrs.perm as number[];
      const undo = perm.map((_, i) => perm.indexOf(i));
      return { x: () => tf.transpose(dy as tf.Tensor, undo) };
    },
  },
  {
    kernelName: "Concat",
    saveAllInputs: true,
    gradFunc: (dy, saved, attrs) => {
      const axis = reductionAxes(attrs.axis, saved[0].shape)[0];
      const parts = tf.split(dy as tf.Tensor, saved.map((t) => t.shape[axis]), axis);
      return Object.fromEntries(parts.map((p, i) => [i, () => p]));
    },
  },
  {
    kernelName: "Slice",
    inputsToSave: ["x"],
    gradFunc: (dy, [x], attrs) => {
      const [begin, size] = tf.slice_util.parseSliceParams(
        x,
        attrs.begin as number[],
        attrs.size as number[],
      );
      const pads = x.shape.map((d, i): [number, number] => [begin[i], d - begin[i] - size[i]]);
      return { x: () => tf.pad(dy as tf.Tensor, pads) };
    },
  },
  {
    kernelName: "PadV2",
    inputsToSave: ["x"],
    gradFunc: (dy, [x], attrs) => {
      const begin = (attrs.paddings as [number, number][]).map((p) => p[0]);
      return { x: () => tf.slice(dy as tf.Tensor, begin, x.shape) };
    },
  },
  {
    kernelName: "BatchMatMul",
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b], attrs) => {
      const g = dy as tf.Tensor;
      const tA = attrs.transposeA as boolean, tB = attrs.transposeB as boolean;
      // y = op(A)·op(B); each case is dA, dB written with transposes folded in.
      const [da, db] = !tA && !tB
        ? [() => tf.matMul(g, b, false, true), () => tf.matMul(a, g, true, false)]
        : !tA && tB
        ? [() => tf.matMul(g, b, false, false), () => tf.matMul(g, a, true, false)]
        : tA && !tB
        ? [() => tf.matMul(b, g, false, true), () => tf.matMul(a, g, false, false)]
        : [() => tf.matMul(b, g, true, true), () => tf.matMul(g, a, true, true)];
      // Batch broadcasting (not used by the IR) would leave extra leading axes.
      const fit = (
        t: tf.Tensor,
        shape: number[],
      ) => (t.rank === shape.length ? t : sumTo(t, shape));
      return { a: () => fit(da(), a.shape), b: () => fit(db(), b.shape) };
    },
  },
  {
    kernelName: "Cast",
    gradFunc: (dy) => ({ x: () => tf.reshape(dy as tf.Tensor, (dy as tf.Tensor).shape) }),
  },
  {
    kernelName: "Identity",
    gradFunc: (dy) => ({ x: () => tf.reshape(dy as tf.Tensor, (dy as tf.Tensor).shape) }),
  },
];

/** Kernels whose gradient {@linkcode registerGradients} installs. */
export const GRADIENT_KERNELS: readonly string[] = GRADIENTS.map((g) => g.kernelName);

/**
 * Install this module's gradients in tfjs's (global) gradient registry,
 * replacing any registered before so that {@linkcode KERNELS} stays true.
 * Idempotent; `startBackend` calls it.
 */
export const registerGradients = (): void => {
  for (const g of GRADIENTS) {
    if (tf.getGradient(g.kernelName) !== g) tf.registerGradient(g);
  }
};

// --- lowerings -------------------------------------------------------------

type Args = (tf.Tensor | tf.GradSaveFunc)[];

/**
 * A linear one-input op whose gradient is `adjoint(dy)`, which may close over
 * shapes but saves no tensor: tfjs's stock gradients of reshape, slice, pad
 * and friends copy their input just to learn its shape.
 */
const linear = (
  x: tf.Tensor,
  f: (x: tf.Tensor) => tf.Tensor,
  adjoint: (dy: tf.Tensor) => tf.Tensor,
): tf.Tensor => {
  const op = tf.customGrad((...args: Args) => {
    const xi = args[0] as tf.Tensor;
    return { value: f(xi), gradFunc: (dy: tf.Tensor) => [adjoint(dy)] };
  });
  return op(x);
};

const reshape = (x: tf.Tensor, shape: readonly number[]): tf.Tensor => {
  const from = x.shape;
  return linear(x, (t) => tf.reshape(t, [...shape]), (dy) => tf.reshape(dy, from));
};

const slice = (x: tf.Tensor, begin: readonly number[], size: readonly number[]): tf.Tensor => {
  const pads = x.shape.map((d, i): [number, number] => [begin[i], d - begin[i] - size[i]]);
  return linear(x, (t) => tf.slice(t, [...begin], [...size]), (dy) => tf.pad(dy, pads));
};

const padRight = (x: tf.Tensor, n: number): tf.Tensor => {
  const shape = x.shape;
  const pads = shape.map((_, i): [number, number] => [0, i === shape.length - 1 ? n : 0]);
  return linear(x, (t) => tf.pad(t, pads), (dy) => tf.slice(dy, shape.map(() => 0), shape));
};

/** Batched matmul; rank 4 goes through rank 3, which tfjs-wasm's kernel works in. */
const matmul = (
  a: tf.Tensor,
  b: tf.Tensor,
  transposeA: boolean,
  transposeB: boolean,
): tf.Tensor => {
  if (a.rank <= 3) return tf.matMul(a, b, transposeA, transposeB);
  const sa: number[] = a.shape, sb: number[] = b.shape;
  const [p, q] = sa;
  const a3 = reshape(a, [p * q, sa[2], sa[3]]);
  const b3 = reshape(b, [p * q, sb[2], sb[3]]);
  const y = tf.matMul(a3, b3, transposeA, transposeB); // [p·q, M, N]
  const sy: number[] = y.shape;
  return reshape(y, [p, q, sy[1], sy[2]]);
};

/** Broadcasting add or subtract whose gradient closes over the input shapes instead of saving the inputs. */
const addSub = (a: tf.Tensor, b: tf.Tensor, sign: 1 | -1): tf.Tensor => {
  const sa = a.shape, sb = b.shape;
  const db = (dy: tf.Tensor) => (sign === 1 ? sumTo(dy, sb) : tf.neg(sumTo(dy, sb)));
  return tf.customGrad((...args: Args) => {
    const [x, y] = args as [tf.Tensor, tf.Tensor];
    const value = sign === 1 ? tf.add(x, y) : tf.sub(x, y);
    return { value, gradFunc: (dy: tf.Tensor) => [sumTo(dy, sa), db(dy)] };
  })(a, b);
};

const concat = (xs: readonly tf.Tensor[], axis: number): tf.Tensor => {
  const sizes = xs.map((t) => t.shape[axis]);
  return tf.customGrad((...args: Args) => ({
    value: tf.concat(args.slice(0, xs.length) as tf.Tensor[], axis),
    gradFunc: (dy: tf.Tensor) => tf.split(dy, sizes, axis),
  }))(...xs);
};

const mean = (x: tf.Tensor, axis: number): tf.Tensor => {
  const shape = x.shape, n = x.shape[axis];
  return linear(
    x,
    (t) => tf.mean(t, axis),
    (dy) => spread(tf.mul(dy, tf.scalar(1 / n)), shape, [axis]),
  );
};

/**
 * modReLU with its exact gradient away from the kinks: d/dx = relu'(|x| + b)
 * (sign(x)² = 1) and d/db = sign(x) · relu'(|x| + b), summed over the axes b
 * broadcasts along.
 */
const modrelu = (x: tf.Tensor, b: tf.Tensor): tf.Tensor => {
  const sb = b.shape;
  return tf.customGrad((...args: Args) => {
    const [xi, bi, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    const s = tf.sign(xi);
    const z = tf.add(tf.abs(xi), bi); // |x| + b
    save([s, z]);
    return {
      value: tf.mul(s, tf.relu(z)),
      gradFunc: (dy: tf.Tensor, [sg, zg]: tf.Tensor[]) => {
        const g = tf.mul(dy, tf.step(zg)); // dy · relu'(|x| + b)
        return [g, sumTo(tf.mul(g, sg), sb)];
      },
    };
  })(x, b);
};

/**
 * log softmax over the last axis, shifted by the row max, from compiled
 * kernels (wasm has no LogSoftmax). Only the output is saved: the gradient
 * dy − softmax · Σ dy recomputes the softmax as exp(y).
 */
const logSoftmax = (x: tf.Tensor): tf.Tensor =>
  tf.customGrad((...args: Args) => {
    const [xi, save] = args as [tf.Tensor, tf.GradSaveFunc];
    const z = tf.sub(xi, tf.max(xi, -1, true)); // [..., V], ≤ 0
    const y = tf.sub(z, tf.log(tf.sum(tf.exp(z), -1, true)));
    save([y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, [yg]: tf.Tensor[]) => [
        tf.sub(dy, tf.mul(tf.exp(yg), tf.sum(dy, -1, true))),
      ],
    };
  })(x);

/**
 * LayerNorm over the last axis with the closed-form gradient
 * dx = inv · (g − mean(g) − x̂ · mean(g · x̂)), g = dy · gain, instead of
 * autograd through mean, variance and rsqrt, which would save every
 * intermediate and run twice the kernels.
 */
const layerNorm = (x: tf.Tensor, gain: tf.Tensor, bias: tf.Tensor, eps: number): tf.Tensor =>
  tf.getKernel(LAYER_NORM, tf.getBackend()) !== undefined
    ? layerNormKernel(x, gain, bias, eps) // one kernel each way (ops/fusion/norm.ts)
    : layerNormOps(x, gain, bias, eps);

const layerNormOps = (x: tf.Tensor, gain: tf.Tensor, bias: tf.Tensor, eps: number): tf.Tensor =>
  tf.customGrad((...args: Args) => {
    const [xi, gi, bi, save] = args as [tf.Tensor, tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    const mu = tf.mean(xi, -1, true); // [..., 1]
    const xc = tf.sub(xi, mu);
    const variance = tf.mean(tf.square(xc), -1, true); // biased, [..., 1]
    const inv = tf.rsqrt(tf.add(variance, tf.scalar(eps))); // eps inside the root
    const xhat = tf.mul(xc, inv);
    save([xhat, inv, gi]);
    return {
      value: tf.add(tf.mul(xhat, gi), bi),
      gradFunc: (dy: tf.Tensor, [xh, iv, g]: tf.Tensor[]) => {
        const gx = tf.mul(dy, g); // ∂L/∂x̂
        const m1 = tf.mean(gx, -1, true);
        const m2 = tf.mean(tf.mul(gx, xh), -1, true);
        const dx = tf.mul(iv, tf.sub(tf.sub(gx, m1), tf.mul(xh, m2)));
        const lead = xh.shape.slice(0, -1).map((_, i) => i);
        // Rank-1 x has no rows to sum over.
        const dGain = lead.length > 0 ? tf.sum(tf.mul(dy, xh), lead) : tf.mul(dy, xh);
        const dBias = lead.length > 0 ? tf.sum(dy, lead) : tf.reshape(dy, dy.shape);
        return [dx, dGain, dBias];
      },
    };
  })(x, gain, bias);

/**
 * Row gather whose gradient scatters with `ScatterNd`, which on wasm sums
 * duplicate ids; tfjs's own gather gradient needs `UnsortedSegmentSum`,
 * which wasm lacks.
 */
const embedding = (table: tf.Tensor, ids: tf.Tensor): tf.Tensor => {
  const [v, d] = table.shape, n = ids.size, idShape = ids.shape;
  return tf.customGrad((...args: Args) => {
    const [t, i, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    save([i]);
    return {
      value: gatherRows(t, i), // [...ids, D]
      gradFunc: (dy: tf.Tensor, [ig]: tf.Tensor[]) => [
        tf.scatterND(tf.reshape(ig, [n, 1]), tf.reshape(dy, [n, d]), [v, d]),
        // Ids are not differentiable, but tfjs wants a float32 gradient of their shape.
        tf.zeros(idShape),
      ],
    };
  })(table, ids);
};

/**
 * Per-row NLL −log softmax(x)_t, fused (`ops/fused.ts`): the forward is one
 * kernel that keeps the exponentials e^(x − max) and each row's 1 / Σ e, and
 * the gradient (softmax − onehot)·dy is one multiply pass over them. A
 * composition of stock kernels ran eight full passes over [B·S, V] (wasm has
 * no LogSoftmax, and its OneHot ignores a float32 dtype).
 */
const crossEntropy = (logits: tf.Tensor, targets: tf.Tensor): tf.Tensor => {
  const tShape = targets.shape;
  return tf.customGrad((...args: Args) => {
    const [x, t, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    const fwd = softmaxXent(x, t);
    save([t, fwd.inv, fwd.exps]);
    return {
      value: fwd.nll,
      gradFunc: (dy: tf.Tensor, [ts, inv, exps]: tf.Tensor[]) => [
        softmaxXentGrad({ inv, exps }, ts, dy),
        tf.zeros(tShape),
      ],
    };
  })(logits, targets);
};

/**
 * A fresh handle on the same data. Lowered ops never return their input
 * object: tfjs cannot differentiate a function that returns its argument,
 * and a caller disposing an output would dispose a feed. Reshape shares the
 * data, so this costs one dispatch.
 */
const identity = (x: tf.Tensor): tf.Tensor =>
  linear(x, (t) => tf.reshape(t, t.shape), (dy) => tf.reshape(dy, dy.shape));

/** Identity forward, zero gradient. */
const stopGradient = (x: tf.Tensor): tf.Tensor =>
  linear(x, (t) => tf.reshape(t, t.shape), (dy) => tf.zeros(dy.shape));

/** The [S, T] additive mask: 0 where key j is visible to query i, MASKED elsewhere. */
const causalMaskValues = (s: number, t: number): Float32Array => {
  const m = new Float32Array(s * t);
  for (let i = 0; i < s; i++) {
    for (let j = i + (t - s) + 1; j < t; j++) m[i * t + j] = MASKED;
  }
  return m;
};

const causalMask = (x: tf.Tensor): tf.Tensor => {
  const s = x.shape[x.rank - 2], t = x.shape[x.rank - 1];
  // The mask is made inside the forward function, whose tidy disposes it.
  return linear(
    x,
    (xi) => tf.add(xi, tf.tensor2d(causalMaskValues(s, t), [s, t])),
    (dy) => tf.reshape(dy, dy.shape),
  );
};

/**
 * Transformer-XL's shift without a rank-5 tensor or a gather: flatten each
 * [S, T] matrix padded with S zero columns, drop the first S − 1 entries,
 * and re-read it with row stride T + S − 1. Entry (i, j) then lands on input
 * (i, j + S − 1 − i), or on padding (0) when that column is ≥ T. Autograd
 * runs the same steps backwards (slice ↔ pad, reshape ↔ reshape).
 */
const relShift = (x: tf.Tensor): tf.Tensor => {
  const s = x.shape[x.rank - 2], t = x.shape[x.rank - 1];
  const b = x.size / (s * t);
  const padded = padRight(reshape(x, [b, s, t]), s); // [B, S, T + S]
  const flat = reshape(padded, [b, s * (t + s)]);
  const cut = slice(flat, [0, s - 1], [b, s * (t + s - 1)]);
  const rows = reshape(cut, [b, s, t + s - 1]);
  return reshape(slice(rows, [0, 0, 0], [b, s, t]), x.shape);
};

/**
 * Inverted dropout with the mask drawn in JS (as tf.randomUniform also
 * does): one Multiply kernel instead of tf.dropout's four, and the gradient
 * reuses the JS mask rather than a saved copy of it.
 */
const dropout = (x: tf.Tensor, rate: number, seed: number): tf.Tensor => {
  const mask = dropoutMask(seed, rate, x.size);
  const shape = x.shape;
  return linear(
    x,
    (t) => tf.mul(t, tf.tensor(mask, shape, "float32")),
    (dy) => tf.mul(dy, tf.tensor(mask, shape, "float32")),
  );
};

/**
 * Evaluate one op with tfjs. Inputs are assumed valid for the op (the graph
 * verifier or {@linkcode TfBackend} checks shapes first). No `tf.tidy`:
 * the caller owns every tensor created, including constants.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { ensureBackend } from "./backend.ts";
 * import { evalTf } from "./lower.ts";
 * await ensureBackend({ backend: "cpu" });
 * const y = tf.tidy(() =>
 *   evalTf({ _tag: "softmax" }, [tf.tensor([1, 2, 3])], { training: false, seed: () => 0 })
 * );
 * ```
 */
export const evalTf = (op: Op, inputs: readonly tf.Tensor[], ctx: LowerCtx): tf.Tensor => {
  const [x, y] = inputs;
  switch (op._tag) {
    case "input":
      throw new Error(`input '${op.name}' has no value of its own: feed it to the executable`);
    case "constant":
      return tf.tensor(op.values, [...op.shape], "float32");
    case "matmul":
      return matmul(x, y, op.transposeA, op.transposeB);
    case "add":
      return addSub(x, y, 1);
    case "sub":
      return addSub(x, y, -1);
    case "mul":
      return tf.mul(x, y);
    case "scale":
      return linear(
        x,
        (t) => tf.mul(t, tf.scalar(op.factor)),
        (dy) => tf.mul(dy, tf.scalar(op.factor)),
      );
    case "relu":
      return tf.relu(x);
    case "sigmoid":
      return tf.sigmoid(x);
    case "tanh":
      return tf.tanh(x);
    case "modrelu":
      return modrelu(x, y);
    case "softmax":
      return tf.softmax(x);
    case "logSoftmax":
      return logSoftmax(x);
    case "layerNorm":
      return layerNorm(x, y, inputs[2], op.eps);
    case "embedding":
      return embedding(x, y);
    case "reshape":
      return reshape(x, op.shape);
    case "transpose":
      return tf.transpose(x, [...op.perm]);
    case "concat":
      // tf.concat of one tensor is a copy through Identity.
      return inputs.length === 1 ? identity(x) : concat(inputs, op.axis);
    case "slice":
      return slice(x, op.begin, op.size);
    case "mean":
      return mean(x, op.axis);
    case "causalMask":
      return causalMask(x);
    case "relShift":
      return relShift(x);
    case "crossEntropy":
      return crossEntropy(x, y);
    case "dropout":
      return ctx.training && op.rate > 0 ? dropout(x, op.rate, ctx.seed()) : identity(x);
    case "stopGradient":
      return stopGradient(x);
    case "sample": {
      // Drawn ids carry no gradient: zeros for the logits and the uniforms.
      const xs = x.shape, ys = y.shape;
      return tf.customGrad((...args: Args) => ({
        value: sampleTokens(args[0] as tf.Tensor, args[1] as tf.Tensor, op),
        gradFunc: () => [tf.zeros(xs), tf.zeros(ys)],
      }))(x, y);
    }
    case "dequantize":
      throw new Error("dequantize: a q8 weight's shape is its node's: evaluate it within a graph");
    case "fused":
      return runFused(op, inputs, ctx)[0];
    case "part":
      throw new Error("part: reads a fused node's outputs; evaluate it within its graph");
  }
};

/**
 * Every output of a fused node: its kernel's (ops/fusion.ts) when the active
 * backend has one, else its body lowered op by op — the same values, by
 * definition, up to float rounding.
 */
const runFused = (
  op: Extract<Op, { _tag: "fused" }>,
  inputs: readonly tf.Tensor[],
  ctx: LowerCtx,
): tf.Tensor[] => {
  const kernel = fusedKernel(op.kind, tf.getBackend());
  if (kernel !== undefined) return kernel.run(op, inputs, ctx);
  return bodyOutputs(op.body, walkGraph(op.body, bodyFeeds(inputs), tfEvaluator(ctx)));
};

/** The lowering as a graph evaluator: feeds are checked against their input node. */
const tfEvaluator = (ctx: LowerCtx) => ({
  feed: (node: Node, fed: tf.Tensor | undefined): tf.Tensor => {
    if (node.op._tag !== "input") throw new Error("internal: feed of a non-input node");
    if (fed === undefined) throw new Error(`lowered graph: no feed for input '${node.op.name}'`);
    if (node.dtype === "q8") {
      // A q8 weight lies in an int32 tensor of its layout's words (ops/quant.ts).
      const [r, c] = node.shape;
      const words = [q8Layout(r, c, 0).words, q8Layout(r, c, 1).words];
      if (fed.dtype !== "int32" || fed.rank !== 1 || !words.includes(fed.size)) {
        throw new Error(
          `lowered graph: feed '${node.op.name}' is [${fed.shape.join(", ")}] ${fed.dtype}, ` +
            `the graph wants a q8 weight [${r}, ${c}] (int32, ${words.join(" or ")} words)`,
        );
      }
      return fed;
    }
    if (
      fed.dtype !== node.dtype || fed.rank !== node.shape.length ||
      fed.shape.some((d, i) => d !== node.shape[i])
    ) {
      throw new Error(
        `lowered graph: feed '${node.op.name}' is [${fed.shape.join(", ")}] ${fed.dtype}, ` +
          `the graph wants [${node.shape.join(", ")}] ${node.dtype}`,
      );
    }
    return fed;
  },
  apply: (node: Node, inputs: readonly tf.Tensor[]): tf.Tensor | tf.Tensor[] =>
    node.op._tag === "fused"
      ? runFused(node.op, inputs, ctx)
      : node.op._tag === "dequantize"
      ? dequantizeTensor(inputs[0], node.shape, node.op.axis)
      : evalTf(node.op, inputs, ctx),
});

// --- graphs ----------------------------------------------------------------

/**
 * A lowered graph: feeds by input name in, named outputs out. Every call
 * creates its tensors afresh (constants and masks included; nothing is
 * cached) and disposes none of them: run it inside `tf.tidy` or
 * `tf.valueAndGrads`, which own them. An output that is an input node is the
 * feed itself.
 */
export type Executable = (
  feeds: Readonly<Record<string, tf.Tensor>>,
  ctx: LowerCtx,
) => Record<string, tf.Tensor>;

/**
 * Lower a traced graph to a function of its feeds. Nodes run in graph
 * order; a failing op is reported with its spec path.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { Tracer } from "../spec/graph.ts";
 * import { ensureBackend } from "./backend.ts";
 * import { lowerGraph } from "./lower.ts";
 * await ensureBackend({ backend: "cpu" });
 * const tr = new Tracer();
 * const x = tr.input("x", "data", [2, 3]);
 * const run = lowerGraph(tr.finish({ y: tr.ops().softmax(x) }));
 * const y = tf.tidy(() => run({ x: tf.ones([2, 3]) }, { training: false, seed: () => 0 }).y);
 * ```
 */
export const lowerGraph = (graph: Graph): Executable => (feeds, ctx) =>
  walkGraph(graph, feeds, tfEvaluator(ctx));

// --- kernel check ----------------------------------------------------------

/** One kernel a graph needs that the backend does not register. */
export interface MissingKernel {
  /** Spec path of the node that needs it (`<autograd>` for the engine's own). */
  readonly path: string;
  /** The node's op tag (empty for the engine's own kernels). */
  readonly op: OpTag | "";
  /** The registered kernel name that is missing. */
  readonly kernel: string;
  /** Whether the op's forward lowering or its gradient needs it. */
  readonly phase: "forward" | "gradient";
}

/** The backend lacks kernels the graph's lowering would run. */
export interface MissingKernels {
  /** Discriminant. */
  readonly _tag: "MissingKernels";
  /** The backend that was checked. */
  readonly backend: string;
  /** Every missing (node, kernel, phase), in graph order. */
  readonly missing: readonly MissingKernel[];
  /** One line per missing kernel, readable as is. */
  readonly message: string;
}

/**
 * Check that `backendName` registers every kernel the lowering of `graph`
 * runs, forward and (unless `gradients` is false) in its gradient. Fails with
 * each missing kernel and the spec path of the node that needs it.
 *
 * @example
 * ```ts
 * import { Tracer } from "../spec/graph.ts";
 * import { checkKernels } from "./lower.ts";
 * const tr = new Tracer();
 * const g = tr.finish({ y: tr.ops().tanh(tr.input("x", "data", [2])) });
 * const r = checkKernels(g, "nonexistent");
 * if (r._tag === "Left") console.log(r.left.message);
 * ```
 */
export const checkKernels = (
  graph: Graph,
  backendName: string,
  opts: { gradients?: boolean } = {},
): Either<MissingKernels, void> => {
  const gradients = opts.gradients ?? true;
  const has = (k: string) => tf.getKernel(k, backendName) !== undefined;
  const missing: MissingKernel[] = [];
  for (const node of graph.nodes) {
    const use = kernelUse(node.op, backendName);
    for (const k of use.forward) {
      if (!has(k)) missing.push({ path: node.path, op: node.op._tag, kernel: k, phase: "forward" });
    }
    if (!gradients) continue;
    for (const k of use.backward) {
      if (!has(k)) {
        missing.push({ path: node.path, op: node.op._tag, kernel: k, phase: "gradient" });
      }
    }
  }
  if (gradients) {
    for (const k of AUTOGRAD_KERNELS) {
      if (!has(k)) missing.push({ path: "<autograd>", op: "", kernel: k, phase: "gradient" });
    }
  }
  if (missing.length === 0) return right(undefined);
  const lines = missing.map((m) =>
    `  ${m.path}: ${m.op || "autograd"} needs '${m.kernel}' (${m.phase})`
  );
  return left({
    _tag: "MissingKernels",
    backend: backendName,
    missing,
    message: `backend '${backendName}' lacks ${missing.length} kernel use(s):\n${lines.join("\n")}`,
  });
};

// --- eager backend and conversions -------------------------------------------

/**
 * Eager tfjs as an {@linkcode OpBackend}: model stages written against `Ops`
 * run op by op on the active tfjs backend. Shapes are checked with the spec's
 * `inferShape` first, so errors name the spec path.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { Ops } from "../spec/ops.ts";
 * import { ensureBackend } from "./backend.ts";
 * import { TfBackend } from "./lower.ts";
 * await ensureBackend({ backend: "cpu" });
 * const ops = new Ops(new TfBackend({ training: false, seed: () => 0 }));
 * const y = tf.tidy(() => ops.relu(tf.tensor([-1, 2])));
 * ```
 */
export class TfBackend implements OpBackend<tf.Tensor> {
  /** Wrap eager tfjs; `ctx` (train/eval mode, dropout seeds) applies to every op. */
  constructor(readonly ctx: LowerCtx) {}

  /** Check shapes, then lower `op` eagerly; errors carry `path`. */
  apply(op: Op, inputs: readonly tf.Tensor[], path: string): tf.Tensor {
    try {
      inferShape(
        op,
        inputs.map((t) => ({ shape: t.shape, dtype: t.dtype === "int32" ? "int32" : "float32" })),
      );
      return evalTf(op, inputs, this.ctx);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      throw new Error(`${path}: ${op._tag}: ${why}`, { cause: e });
    }
  }

  /** The tensor's shape. */
  shape(t: tf.Tensor): Shape {
    return t.shape;
  }
}

/**
 * A tfjs tensor holding a reference tensor's values (float64 data is rounded
 * to float32). The caller owns the result.
 */
export const toTensor = (r: RefTensor): tf.Tensor =>
  r.dtype === "int32"
    ? tf.tensor(Int32Array.from(r.data), [...r.shape], "int32")
    : tf.tensor(Float32Array.from(r.data), [...r.shape], "float32");

/** A reference tensor with a tfjs tensor's values (a synchronous download). */
export const fromTensor = (t: tf.Tensor): RefTensor => {
  if (t.dtype !== "float32" && t.dtype !== "int32") {
    throw new TypeError(`fromTensor: unsupported dtype ${t.dtype}`);
  }
  const data = t.dataSync();
  return {
    shape: [...t.shape],
    dtype: t.dtype,
    data: t.dtype === "int32" ? Int32Array.from(data) : Float32Array.from(data),
  };
};
