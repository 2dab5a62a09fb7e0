/**
 * The reference interpreter: plain loops over typed arrays that DEFINE what
 * every op of `spec/ops.ts` computes. The tfjs lowering is tested against it.
 *
 * It favours obviousness over speed. In `float64` precision it is accurate
 * enough for central finite differences, which is what the gradient tests use
 * it for; in `float32` precision each op computes in doubles and rounds its
 * output once, the best a float32 implementation can do.
 *
 * @module
 */
import { describeError } from "../spec/errors.ts";
import { bodyFeeds, bodyOutputs, type Graph, type Node, walkGraph } from "../spec/graph.ts";
import { type DType, inferShape, type Op, type Shape } from "../spec/ops.ts";
import type { OpBackend } from "../spec/ops_builder.ts";

/** Arithmetic precision of the interpreter's float tensors. */
export type Precision = "float32" | "float64";

/** A tensor of the interpreter: a shape, a dtype and row-major data. */
export interface RefTensor {
  /** Static shape, row-major. */
  readonly shape: Shape;
  /** Element type; float data may be stored at float64 precision. */
  readonly dtype: DType;
  /** Int32Array for int32; Float32Array or Float64Array for float32; Int8Array for q8. */
  readonly data: Float32Array | Float64Array | Int32Array | Int8Array;
  /** q8 only: the float32 scale of each channel (row or column, as its `dequantize` reads it). */
  readonly scales?: Float32Array;
}

/** How the interpreter evaluates: float precision and train/eval mode. */
export interface RefCtx {
  /** Storage precision of float results. */
  readonly precision: Precision;
  /** Training mode; only dropout looks at it. */
  readonly training: boolean;
}

/** The value the spec gives masked attention scores (see `causalMask`). */
export const MASKED: number = -1e9;

const sizeOf = (s: Shape): number => s.reduce((a, b) => a * b, 1);

const stridesOf = (s: Shape): number[] => {
  const st = new Array<number>(s.length);
  let acc = 1;
  for (let i = s.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
};

const floatArray = (n: number, p: Precision): Float32Array | Float64Array =>
  p === "float64" ? new Float64Array(n) : new Float32Array(n);

const arrayFor = (n: number, dtype: DType, p: Precision): RefTensor["data"] =>
  dtype === "int32" ? new Int32Array(n) : floatArray(n, p);

/**
 * A tensor from a shape and values; float data is stored at `precision`.
 *
 * @example
 * ```ts
 * import { refTensor } from "./reference.ts";
 * const ids = refTensor([2], [3, 1], { dtype: "int32" });
 * ```
 */
export const refTensor = (
  shape: Shape,
  values: ArrayLike<number>,
  opts: { dtype?: DType; precision?: Precision } = {},
): RefTensor => {
  const dtype = opts.dtype ?? "float32";
  if (values.length !== sizeOf(shape)) {
    throw new RangeError(`refTensor: ${values.length} values for shape [${shape.join(", ")}]`);
  }
  const data = arrayFor(values.length, dtype, opts.precision ?? "float32");
  data.set(values);
  return { shape: [...shape], dtype, data };
};

/** Elementwise map into a fresh float tensor of the same shape. */
const map1 = (x: RefTensor, p: Precision, f: (v: number) => number): RefTensor => {
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

const binary = (
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

const matmul = (
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

const softmax = (x: RefTensor, p: Precision): RefTensor =>
  byRow(x, p, (out, o, len, m, s) => {
    for (let j = 0; j < len; j++) out[o + j] = Math.exp(x.data[o + j] - m) / s;
  });

const logSoftmax = (x: RefTensor, p: Precision): RefTensor =>
  byRow(x, p, (out, o, len, m, s) => {
    const lse = m + Math.log(s);
    for (let j = 0; j < len; j++) out[o + j] = x.data[o + j] - lse;
  });

const layerNorm = (
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

const embedding = (table: RefTensor, ids: RefTensor, outShape: Shape, p: Precision): RefTensor => {
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

const transpose = (
  x: RefTensor,
  perm: readonly number[],
  outShape: Shape,
  p: Precision,
): RefTensor => {
  const inStrides = stridesOf(x.shape);
  return gather(x, outShape, p, (d, c) => c * inStrides[perm[d]]);
};

const concat = (
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

const slice = (
  x: RefTensor,
  begin: readonly number[],
  outShape: Shape,
  p: Precision,
): RefTensor => {
  const inStrides = stridesOf(x.shape);
  return gather(x, outShape, p, (d, c) => (c + begin[d]) * inStrides[d]);
};

const mean = (x: RefTensor, axis: number, outShape: Shape, p: Precision): RefTensor => {
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
const causalMask = (x: RefTensor, p: Precision): RefTensor =>
  perMatrixEntry(
    x,
    p,
    (row, i, j, s, t) => j > i + (t - s) ? x.data[row + j] + MASKED : x.data[row + j],
  );

const relShift = (x: RefTensor, p: Precision): RefTensor =>
  perMatrixEntry(x, p, (row, i, j, s, t) => {
    const src = j + s - 1 - i;
    return src < t ? x.data[row + src] : 0;
  });

const crossEntropy = (logits: RefTensor, targets: RefTensor, p: Precision): RefTensor => {
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

const copyAs = (x: RefTensor, shape: Shape, p: Precision): RefTensor => {
  const out = withData(x, shape, x.data.length, p);
  out.data.set(x.data);
  return out;
};

/**
 * Evaluate one op on reference tensors. Shapes are checked with the spec's
 * `inferShape`, so a mismatch throws its `ShapeError`.
 *
 * `input` ops are not evaluable (their values are fed; see
 * {@linkcode interpret}). Dropout is the identity when not training or when
 * `rate` is 0; with training on it throws, because random masks have no
 * reference value to compare against.
 *
 * @example
 * ```ts
 * import { evalRef, refTensor } from "./reference.ts";
 * const y = evalRef({ _tag: "relu" }, [refTensor([3], [-1, 0, 2])], {
 *   precision: "float32",
 *   training: false,
 * });
 * console.log([...y.data]); // [0, 0, 2]
 * ```
 */
export const evalRef = (op: Op, inputs: readonly RefTensor[], ctx: RefCtx): RefTensor => {
  const { shape } = inferShape(op, inputs);
  const p = ctx.precision;
  const [x, y] = inputs;
  switch (op._tag) {
    case "input":
      throw new Error(`input '${op.name}' has no value of its own: feed it to interpret()`);
    case "constant":
      return refTensor(op.shape, op.values, { precision: p });
    case "matmul":
      return matmul(x, y, op, shape, p);
    case "add":
      return binary(x, y, shape, p, (a, b) => a + b);
    case "sub":
      return binary(x, y, shape, p, (a, b) => a - b);
    case "mul":
      return binary(x, y, shape, p, (a, b) => a * b);
    case "scale":
      return map1(x, p, (v) => v * op.factor);
    case "relu":
      return map1(x, p, (v) => Math.max(v, 0));
    case "sigmoid":
      return map1(x, p, (v) => 1 / (1 + Math.exp(-v)));
    case "tanh":
      return map1(x, p, Math.tanh);
    case "modrelu":
      // Math.sign(0) is 0, so modReLU(0, b) = 0 even when b > 0.
      return binary(x, y, shape, p, (v, b) => Math.sign(v) * Math.max(Math.abs(v) + b, 0));
    case "softmax":
      return softmax(x, p);
    case "logSoftmax":
      return logSoftmax(x, p);
    case "layerNorm":
      return layerNorm(x, y, inputs[2], op.eps, p);
    case "embedding":
      return embedding(x, y, shape, p);
    case "reshape":
      return copyAs(x, shape, p);
    case "transpose":
      return transpose(x, op.perm, shape, p);
    case "concat":
      return concat(inputs, op.axis, shape, p);
    case "slice":
      return slice(x, op.begin, shape, p);
    case "mean":
      return mean(x, op.axis, shape, p);
    case "causalMask":
      return causalMask(x, p);
    case "relShift":
      return relShift(x, p);
    case "crossEntropy":
      return crossEntropy(x, y, p);
    case "dropout":
      if (ctx.training && op.rate > 0) {
        throw new Error(
          "dropout: the reference interpreter has no random masks; evaluate with training off",
        );
      }
      return copyAs(x, shape, p);
    case "stopGradient":
      return copyAs(x, shape, p);
    case "sample": {
      const [n, v] = x.shape;
      const out = new Int32Array(n);
      for (let r = 0; r < n; r++) {
        out[r] = drawToken(x.data.subarray(r * v, (r + 1) * v), op, y.data[r]);
      }
      return { shape: [n], dtype: "int32", data: out };
    }
    case "dequantize": {
      const [r, c] = x.shape;
      const sc = x.scales;
      if (
        !(x.data instanceof Int8Array) || sc === undefined || sc.length !== (op.axis === 1 ? c : r)
      ) {
        throw new Error(
          `dequantize: a q8 tensor [${r}, ${c}] needs int8 data and ${
            op.axis === 1 ? c : r
          } scales`,
        );
      }
      const out = floatArray(r * c, p);
      for (let i = 0; i < r; i++) {
        for (let j = 0; j < c; j++) out[i * c + j] = x.data[i * c + j] * sc[op.axis === 1 ? j : i];
      }
      return { shape: x.shape, dtype: "float32", data: out };
    }
    case "fused":
      // A fused node means its body (its further outputs are read by `part` within a graph).
      return runBody(op, inputs, ctx)[0];
    case "part":
      throw new Error("part: reads a fused node's outputs; evaluate it within its graph");
  }
};

/** The `sample` op for one row of logits (see spec/ops.ts), in float64. */
export const drawToken = (
  x: ArrayLike<number>,
  opts: { readonly temperature: number; readonly topK: number },
  u: number,
): number => {
  const v = x.length, k = opts.topK;
  if (opts.temperature <= 0 || k === 1) {
    let best = 0;
    for (let i = 1; i < v; i++) if (x[i] > x[best]) best = i;
    return best;
  }
  let threshold = -Infinity, ties = v;
  if (k > 0 && k < v) {
    threshold = Float64Array.from(x).sort()[v - k];
    let above = 0;
    for (let i = 0; i < v; i++) if (x[i] > threshold) above++;
    ties = k - above;
  }
  let m = -Infinity;
  for (let i = 0; i < v; i++) m = Math.max(m, x[i]);
  const w = new Float64Array(v);
  let sum = 0;
  for (let i = 0; i < v; i++) {
    let take = x[i] > threshold;
    if (!take && x[i] === threshold && ties > 0) {
      take = true;
      ties--;
    }
    if (take) sum += w[i] = Math.exp((x[i] - m) / opts.temperature);
  }
  let target = u * sum, last = 0;
  for (let i = 0; i < v; i++) {
    if (w[i] > 0) {
      last = i;
      target -= w[i];
      if (target < 0) return i;
    }
  }
  return last;
};

/** Every output of a fused node, by interpreting its body. */
const runBody = (
  op: Extract<Op, { _tag: "fused" }>,
  inputs: readonly RefTensor[],
  ctx: RefCtx,
): RefTensor[] => bodyOutputs(op.body, walkGraph(op.body, bodyFeeds(inputs), evaluator(ctx)));

/** The interpreter as a graph evaluator: feeds are checked against their input node and copied. */
const evaluator = (ctx: RefCtx) => ({
  feed: (node: Node, fed: RefTensor | undefined): RefTensor => {
    if (node.op._tag !== "input") throw new Error("internal: feed of a non-input node");
    if (fed === undefined) throw new Error(`interpret: no feed for input '${node.op.name}'`);
    if (
      fed.dtype !== node.dtype || fed.shape.length !== node.shape.length ||
      fed.shape.some((d, i) => d !== node.shape[i])
    ) {
      throw new Error(
        `interpret: feed '${node.op.name}' is [${fed.shape.join(", ")}] ${fed.dtype}, ` +
          `the graph wants [${node.shape.join(", ")}] ${node.dtype}`,
      );
    }
    // A q8 weight is read, never written: it keeps its int8 values and scales.
    return fed.dtype === "q8" ? fed : copyAs(fed, fed.shape, ctx.precision);
  },
  apply: (node: Node, inputs: readonly RefTensor[]): RefTensor | RefTensor[] =>
    node.op._tag === "fused" ? runBody(node.op, inputs, ctx) : evalRef(node.op, inputs, ctx),
});

/**
 * Run a traced graph on the interpreter. `feeds` holds a value for every
 * `input` node, keyed by its name; the result holds `graph.outputs`.
 * Training mode is off (dropout is the identity).
 *
 * @example
 * ```ts
 * import { Tracer } from "../spec/graph.ts";
 * import { interpret, refTensor } from "./reference.ts";
 * const tr = new Tracer();
 * const x = tr.input("x", "data", [2]);
 * const g = tr.finish({ y: tr.ops().tanh(x) });
 * const { y } = interpret(g, { x: refTensor([2], [0, 1]) });
 * ```
 */
export const interpret = (
  graph: Graph,
  feeds: Readonly<Record<string, RefTensor>>,
  opts: { precision?: Precision } = {},
): Record<string, RefTensor> =>
  walkGraph(graph, feeds, evaluator({ precision: opts.precision ?? "float32", training: false }));

/**
 * The interpreter as an {@linkcode OpBackend}, so model stages written
 * against `Ops` can run eagerly on plain arrays.
 *
 * @example
 * ```ts
 * import { Ops } from "../spec/ops_builder.ts";
 * import { RefBackend, refTensor } from "./reference.ts";
 * const ops = new Ops(new RefBackend({ precision: "float64" }));
 * const y = ops.softmax(refTensor([3], [1, 2, 3]));
 * ```
 */
export class RefBackend implements OpBackend<RefTensor> {
  /** Evaluation settings every op of this backend uses. */
  readonly ctx: RefCtx;

  /** Defaults: float32, not training. */
  constructor(opts: { precision?: Precision; training?: boolean } = {}) {
    this.ctx = { precision: opts.precision ?? "float32", training: opts.training ?? false };
  }

  /** Evaluate `op`; errors carry `path`. */
  apply(op: Op, inputs: readonly RefTensor[], path: string): RefTensor {
    try {
      return evalRef(op, inputs, this.ctx);
    } catch (e) {
      const why = describeError(e);
      throw new Error(`${path}: ${op._tag}: ${why}`, { cause: e });
    }
  }

  /** The tensor's shape. */
  shape(t: RefTensor): Shape {
    return t.shape;
  }
}
