/**
 * The per-op lowerings to tfjs-core that need more than one tfjs call:
 * shape-only gradients through `tf.customGrad` (reshape, slice, concat,
 * add/sub, ...), rank-4 matmul through rank 3, and the fused or
 * wasm-friendly forms of softmax, LayerNorm, embedding, cross-entropy,
 * masks and dropout. `evalTf` in ops/lower.ts dispatches to them.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { MASKED } from "../reference_ops.ts";
import { gatherRows, softmaxXent, softmaxXentGrad } from "../fused.ts";
import { dropoutMask } from "../dropout.ts";
import { LAYER_NORM, layerNormKernel } from "../fusion/norm.ts";
import { spread, sumTo } from "./gradients.ts";

export type Args = (tf.Tensor | tf.GradSaveFunc)[];

/**
 * A linear one-input op whose gradient is `adjoint(dy)`, which may close over
 * shapes but saves no tensor: tfjs's stock gradients of reshape, slice, pad
 * and friends copy their input just to learn its shape.
 */
export const linear = (
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

export const reshape = (x: tf.Tensor, shape: readonly number[]): tf.Tensor => {
  const from = x.shape;
  return linear(x, (t) => tf.reshape(t, [...shape]), (dy) => tf.reshape(dy, from));
};

export const slice = (
  x: tf.Tensor,
  begin: readonly number[],
  size: readonly number[],
): tf.Tensor => {
  const pads = x.shape.map((d, i): [number, number] => [begin[i], d - begin[i] - size[i]]);
  return linear(x, (t) => tf.slice(t, [...begin], [...size]), (dy) => tf.pad(dy, pads));
};

const padRight = (x: tf.Tensor, n: number): tf.Tensor => {
  const shape = x.shape;
  const pads = shape.map((_, i): [number, number] => [0, i === shape.length - 1 ? n : 0]);
  return linear(x, (t) => tf.pad(t, pads), (dy) => tf.slice(dy, shape.map(() => 0), shape));
};

/** Batched matmul; rank 4 goes through rank 3, which tfjs-wasm's kernel works in. */
export const matmul = (
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
export const addSub = (a: tf.Tensor, b: tf.Tensor, sign: 1 | -1): tf.Tensor => {
  const sa = a.shape, sb = b.shape;
  const db = (dy: tf.Tensor) => (sign === 1 ? sumTo(dy, sb) : tf.neg(sumTo(dy, sb)));
  return tf.customGrad((...args: Args) => {
    const [x, y] = args as [tf.Tensor, tf.Tensor];
    const value = sign === 1 ? tf.add(x, y) : tf.sub(x, y);
    return { value, gradFunc: (dy: tf.Tensor) => [sumTo(dy, sa), db(dy)] };
  })(a, b);
};

export const concat = (xs: readonly tf.Tensor[], axis: number): tf.Tensor => {
  const sizes = xs.map((t) => t.shape[axis]);
  return tf.customGrad((...args: Args) => ({
    value: tf.concat(args.slice(0, xs.length) as tf.Tensor[], axis),
    gradFunc: (dy: tf.Tensor) => tf.split(dy, sizes, axis),
  }))(...xs);
};

export const mean = (x: tf.Tensor, axis: number): tf.Tensor => {
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
export const modrelu = (x: tf.Tensor, b: tf.Tensor): tf.Tensor => {
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
export const logSoftmax = (x: tf.Tensor): tf.Tensor =>
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
export const layerNorm = (x: tf.Tensor, gain: tf.Tensor, bias: tf.Tensor, eps: number): tf.Tensor =>
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
export const embedding = (table: tf.Tensor, ids: tf.Tensor): tf.Tensor => {
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
export const crossEntropy = (logits: tf.Tensor, targets: tf.Tensor): tf.Tensor => {
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
export const identity = (x: tf.Tensor): tf.Tensor =>
  linear(x, (t) => tf.reshape(t, t.shape), (dy) => tf.reshape(dy, dy.shape));

/** Identity forward, zero gradient. */
export const stopGradient = (x: tf.Tensor): tf.Tensor =>
  linear(x, (t) => tf.reshape(t, t.shape), (dy) => tf.zeros(dy.shape));

/** The [S, T] additive mask: 0 where key j is visible to query i, MASKED elsewhere. */
const causalMaskValues = (s: number, t: number): Float32Array => {
  const m = new Float32Array(s * t);
  for (let i = 0; i < s; i++) {
    for (let j = i + (t - s) + 1; j < t; j++) m[i * t + j] = MASKED;
  }
  return m;
};

export const causalMask = (x: tf.Tensor): tf.Tensor => {
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
export const relShift = (x: tf.Tensor): tf.Tensor => {
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
export const dropout = (x: tf.Tensor, rate: number, seed: number): tf.Tensor => {
  const mask = dropoutMask(seed, rate, x.size);
  const shape = x.shape;
  return linear(
    x,
    (t) => tf.mul(t, tf.tensor(mask, shape, "float32")),
    (dy) => tf.mul(dy, tf.tensor(mask, shape, "float32")),
  );
};
