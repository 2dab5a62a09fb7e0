/**
 * The loops of the reference interpreter (`ops/reference.ts`): one plain
 * function per kind of op of `spec/ops.ts` — elementwise maps, broadcasting
 * binaries, products, row-wise softmaxes, normalisation, gathers, masks —
 * over the data of reference tensors, with the array helpers they share.
 * Each computes in doubles and stores its result at the given precision.
 *
 * @module
 */
import type { DType, Shape } from "../spec/ops.ts";
import type { Precision, RefTensor } from "./reference.ts";

/** The value the spec gives masked attention scores (see `causalMask`). */
export const MASKED: number = -1e9;

/** Elements of a tensor of shape `s`. */
export const sizeOf = (s: Shape): number => s.reduce((a, b) => a * b, 1);

const stridesOf = (s: Shape): number[] => {
  const st = new Array<number>(s.length);
  let acc = 1;
  for (let i = s.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
};

/** A zeroed float array of `n` elements at precision `p`. */
export const floatArray = (n: number, p: Precision): Float32Array | Float64Array =>
  p === "float64" ? new Float64Array(n) : new Float32Array(n);

/** A zeroed data array of `n` elements for `dtype`: int32, else float at `p`. */
export const arrayFor = (n: number, dtype: DType, p: Precision): RefTensor["data"] =>
  dtype === "int32" ? new Int32Array(n) : floatArray(n, p);

/** Elementwise map into a fresh float tensor of the same shape. */
export const map1 = (x: RefTensor, p: Precision, f: (v: number) => number): RefTensor => {
  const out = floatArray(x.data.length, p);
  for (let i = 0; i < out.length; i++) out[i] = f(x.data[i]);
  return { shape: x.shape, dtype: "float32", data: out };
};

/**
 * For each flat index of `outShape`, the flat index into a tensor of shape
 * `inShape` that numpy broadcasting reads (trailing-aligned, size-1 axes
 * repeat).
 */
const broadcastIndex = (inShape: Shape, outShape: Shape): Int32Array => {
  const inStrides = stridesOf(inShape);
  const offset = outShape.length - inShape.length;
  return sourceIndex(outShape, (d, c) => {
    const di = d - offset;
    return di >= 0 && inShape[di] !== 1 ? c * inStrides[di] : 0;
  });
};

/**
 * For each flat index of `outShape`, the flat source index Σ_d step(d, c_d),
 * c_d its coordinate on axis d: the walk broadcasting, transpose and slice share.
 */
const sourceIndex = (outShape: Shape, step: (d: number, c: number) => number): Int32Array => {
  const n = sizeOf(outShape);
  const idx = new Int32Array(n);
  const outStrides = stridesOf(outShape);
  for (let f = 0; f < n; f++) {
    let rem = f, src = 0;
    for (let d = 0; d < outShape.length; d++) {
      const c = Math.floor(rem / outStrides[d]);
      rem -= c * outStrides[d];
      src += step(d, c);
    }
    idx[f] = src;
  }
  return idx;
};

/** A tensor of `outShape` whose element f is x's element at `sourceIndex(outShape, step)[f]`. */
const gather = (
  x: RefTensor,
  outShape: Shape,
  p: Precision,
  step: (d: number, c: number) => number,
): RefTensor => {
  const idx = sourceIndex(outShape, step);
  const out = withData(x, outShape, idx.length, p);
  for (let f = 0; f < idx.length; f++) out.data[f] = x.data[idx[f]];
  return out;
};

/** The elementwise `f` of a and b, numpy-broadcast to `outShape`. */
export const binary = (
  a: RefTensor,
  b: RefTensor,
  outShape: Shape,
  p: Precision,
  f: (x: number, y: number) => number,
): RefTensor => {
  const ia = broadcastIndex(a.shape, outShape);
  const ib = broadcastIndex(b.shape, outShape);
  const out = floatArray(ia.length, p);
  for (let i = 0; i < out.length; i++) out[i] = f(a.data[ia[i]], b.data[ib[i]]);
  return { shape: outShape, dtype: "float32", data: out };
};

/** The tensor as rows of its last axis: how many, and how long. */
const lastAxisRows = (shape: Shape): { rows: number; len: number } => {
  const len = shape[shape.length - 1] ?? 1;
  return { rows: len === 0 ? 0 : sizeOf(shape) / len, len };
};

/**
 * The row `data[o, o + len)`'s maximum m and Σ exp(x − m): the stable start
 * of softmax, log-softmax and cross-entropy.
 */
const maxAndExpSum = (
  data: RefTensor["data"],
  o: number,
  len: number,
): { m: number; s: number } => {
  let m = -Infinity;
  for (let j = 0; j < len; j++) m = Math.max(m, data[o + j]);
  let s = 0;
  for (let j = 0; j < len; j++) s += Math.exp(data[o + j] - m);
  return { m, s };
};

/** The batched product op(A)·op(B) of the `matmul` op, summed in doubles. */
export const matmul = (
  a: RefTensor,
  b: RefTensor,
  op: { transposeA: boolean; transposeB: boolean },
  outShape: Shape,
  p: Precision,
): RefTensor => {
  const r = a.shape.length;
  const [ar, ac] = [a.shape[r - 2], a.shape[r - 1]];
  const [br, bc] = [b.shape[r - 2], b.shape[r - 1]];
  const m = op.transposeA ? ac : ar;
  const k = op.transposeA ? ar : ac;
  const n = op.transposeB ? br : bc;
  const batch = sizeOf(a.shape.slice(0, r - 2));
  const out = floatArray(batch * m * n, p);
  // Element (i, l) of op(A) and (l, j) of op(B), in each matrix's own layout.
  const aAt = op.transposeA
    ? (i: number, l: number) => l * ac + i
    : (i: number, l: number) => i * ac + l;
  const bAt = op.transposeB
    ? (l: number, j: number) => j * bc + l
    : (l: number, j: number) => l * bc + j;
  for (let t = 0; t < batch; t++) {
    const aOff = t * ar * ac, bOff = t * br * bc, oOff = t * m * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let l = 0; l < k; l++) s += a.data[aOff + aAt(i, l)] * b.data[bOff + bAt(l, j)];
        out[oOff + i * n + j] = s;
      }
    }
  }
  return { shape: outShape, dtype: "float32", data: out };
};

/** Each row of x's last axis written by `fill` from the row's max m and Σ exp(x − m). */
const byRow = (
  x: RefTensor,
  p: Precision,
  fill: (out: Float32Array | Float64Array, o: number, len: number, m: number, s: number) => void,
): RefTensor => {
  const { rows, len } = lastAxisRows(x.shape);
  const out = floatArray(x.data.length, p);
  for (let r = 0; r < rows; r++) {
    const o = r * len;
    const { m, s } = maxAndExpSum(x.data, o, len);
    fill(out, o, len, m, s);
  }
  return { shape: x.shape, dtype: "float32", data: out };
};

/** Softmax along the last axis. */
export const softmax = (x: RefTensor, p: Precision): RefTensor =>
  byRow(x, p, (out, o, len, m, s) => {
    for (let j = 0; j < len; j++) out[o + j] = Math.exp(x.data[o + j] - m) / s;
  });

/** Log-softmax along the last axis. */
export const logSoftmax = (x: RefTensor, p: Precision): RefTensor =>
  byRow(x, p, (out, o, len, m, s) => {
    const lse = m + Math.log(s);
    for (let j = 0; j < len; j++) out[o + j] = x.data[o + j] - lse;
  });

/** Layer normalisation along the last axis, gain `g` and bias `b`. */
export const layerNorm = (
  x: RefTensor,
  g: RefTensor,
  b: RefTensor,
  eps: number,
  p: Precision,
): RefTensor => {
  const { rows, len } = lastAxisRows(x.shape);
  const out = floatArray(x.data.length, p);
  for (let r = 0; r < rows; r++) {
    const o = r * len;
    let mu = 0;
    for (let j = 0; j < len; j++) mu += x.data[o + j];
    mu /= len;
    let v = 0;
    for (let j = 0; j < len; j++) v += (x.data[o + j] - mu) ** 2;
    // Biased variance, eps inside the square root (as in the LayerNorm paper).
    const inv = 1 / Math.sqrt(v / len + eps);
    for (let j = 0; j < len; j++) out[o + j] = (x.data[o + j] - mu) * inv * g.data[j] + b.data[j];
  }
  return { shape: x.shape, dtype: "float32", data: out };
};

/** The rows of `table` at `ids`; an id outside the table throws a RangeError. */
export const embedding = (
  table: RefTensor,
  ids: RefTensor,
  outShape: Shape,
  p: Precision,
): RefTensor => {
  const [v, d] = table.shape;
  const out = floatArray(ids.data.length * d, p);
  for (let i = 0; i < ids.data.length; i++) {
    const id = ids.data[i];
    if (!Number.isInteger(id) || id < 0 || id >= v) {
      throw new RangeError(`embedding: id ${id} at position ${i} is outside [0, ${v})`);
    }
    for (let j = 0; j < d; j++) out[i * d + j] = table.data[id * d + j];
  }
  return { shape: outShape, dtype: "float32", data: out };
};

/** Copy preserving dtype; float data is re-stored at `p`. */
const withData = (x: RefTensor, shape: Shape, n: number, p: Precision): RefTensor => ({
  shape,
  dtype: x.dtype,
  data: arrayFor(n, x.dtype, p),
});

/** x with its axes permuted by `perm`. */
export const transpose = (
  x: RefTensor,
  perm: readonly number[],
  outShape: Shape,
  p: Precision,
): RefTensor => {
  const inStrides = stridesOf(x.shape);
  return gather(x, outShape, p, (d, c) => c * inStrides[perm[d]]);
};

/** The tensors `xs` joined along `axis`. */
export const concat = (
  xs: readonly RefTensor[],
  axis: number,
  outShape: Shape,
  p: Precision,
): RefTensor => {
  const out = withData(xs[0], outShape, sizeOf(outShape), p);
  const outer = sizeOf(outShape.slice(0, axis));
  const inner = sizeOf(outShape.slice(axis + 1));
  let pos = 0;
  for (let o = 0; o < outer; o++) {
    for (const x of xs) {
      const block = x.shape[axis] * inner;
      for (let j = 0; j < block; j++) out.data[pos++] = x.data[o * block + j];
    }
  }
  return out;
};

/** The block of x of `outShape` from `begin`. */
export const slice = (
  x: RefTensor,
  begin: readonly number[],
  outShape: Shape,
  p: Precision,
): RefTensor => {
  const inStrides = stridesOf(x.shape);
  return gather(x, outShape, p, (d, c) => (c + begin[d]) * inStrides[d]);
};

/** The mean along `axis`. */
export const mean = (x: RefTensor, axis: number, outShape: Shape, p: Precision): RefTensor => {
  const outer = sizeOf(x.shape.slice(0, axis));
  const len = x.shape[axis];
  const inner = sizeOf(x.shape.slice(axis + 1));
  const out = floatArray(outer * inner, p);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let s = 0;
      for (let a = 0; a < len; a++) s += x.data[(o * len + a) * inner + i];
      out[o * inner + i] = s / len;
    }
  }
  return { shape: outShape, dtype: "float32", data: out };
};

/**
 * A float tensor of x's shape, [..., S, T], whose entry (i, j) of each
 * matrix [S, T] of the last two axes is `entry(row, i, j, s, t)`, where
 * `row` is the flat index of that matrix's row i in x.
 */
const perMatrixEntry = (
  x: RefTensor,
  p: Precision,
  entry: (row: number, i: number, j: number, s: number, t: number) => number,
): RefTensor => {
  const r = x.shape.length;
  const count = sizeOf(x.shape.slice(0, r - 2)), s = x.shape[r - 2], t = x.shape[r - 1];
  const out = floatArray(x.data.length, p);
  for (let c = 0; c < count; c++) {
    for (let i = 0; i < s; i++) {
      const row = (c * s + i) * t;
      for (let j = 0; j < t; j++) out[row + j] = entry(row, i, j, s, t);
    }
  }
  return { shape: x.shape, dtype: "float32", data: out };
};

// Added, not assigned: identical in float32 for |x| < 32 (the ulp of 1e9 is
// 64) and it is what the tfjs lowering can do in one kernel, which fixes the
// gradient at masked entries to pass through.
/** {@linkcode MASKED} added to the entries above the (bottom-aligned) diagonal of each matrix. */
export const causalMask = (x: RefTensor, p: Precision): RefTensor =>
  perMatrixEntry(
    x,
    p,
    (row, i, j, s, t) => j > i + (t - s) ? x.data[row + j] + MASKED : x.data[row + j],
  );

/**
 * The relative-position shift of each matrix of the last two axes (zeros
 * where it reads past the end).
 */
export const relShift = (x: RefTensor, p: Precision): RefTensor =>
  perMatrixEntry(x, p, (row, i, j, s, t) => {
    const src = j + s - 1 - i;
    return src < t ? x.data[row + src] : 0;
  });

/**
 * Per-row cross-entropy of `logits` [N, V] at `targets` [N]; a target
 * outside [0, V) throws a RangeError.
 */
export const crossEntropy = (logits: RefTensor, targets: RefTensor, p: Precision): RefTensor => {
  const [n, v] = logits.shape;
  const out = floatArray(n, p);
  for (let r = 0; r < n; r++) {
    const o = r * v;
    const t = targets.data[r];
    if (!Number.isInteger(t) || t < 0 || t >= v) {
      throw new RangeError(`crossEntropy: target ${t} of row ${r} is outside [0, ${v})`);
    }
    const { m, s } = maxAndExpSum(logits.data, o, v);
    out[r] = m + Math.log(s) - logits.data[o + t];
  }
  return { shape: [n], dtype: "float32", data: out };
};

/** A copy of x with `shape`, dtype kept; float data is re-stored at `p`. */
export const copyAs = (x: RefTensor, shape: Shape, p: Precision): RefTensor => {
  const out = withData(x, shape, x.data.length, p);
  out.data.set(x.data);
  return out;
};
