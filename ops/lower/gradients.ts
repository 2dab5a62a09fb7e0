/**
 * The gradients the lowerings (ops/lower.ts) rely on: tfjs-core registers
 * none by itself, so {@linkcode registerGradients} installs these, each
 * written with compiled wasm kernels only; and the helpers that sum or
 * spread a gradient back to an input's shape.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";

/** Sum a broadcast gradient back down to `shape`; always a fresh tensor. */
export const sumTo = (g: tf.Tensor, shape: readonly number[]): tf.Tensor => {
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
export const spread = (
  g: tf.Tensor,
  shape: readonly number[],
  axes: readonly number[],
): tf.Tensor => {
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
