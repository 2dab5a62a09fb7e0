/**
 * The reference interpreter: plain loops over typed arrays that DEFINE what
 * every op of `spec/ops.ts` computes. The tfjs lowering is tested against it.
 *
 * It favours obviousness over speed. In `float64` precision it is accurate
 * enough for central finite differences, which is what the gradient tests use
 * it for; in `float32` precision each op computes in doubles and rounds its
 * output once, the best a float32 implementation can do. The loops of the
 * ops themselves are in `ops/reference_ops.ts`; this module evaluates ops,
 * graphs and fused bodies with them.
 *
 * @module
 */
import { describeError } from "../spec/errors.ts";
import { bodyFeeds, bodyOutputs, type Graph, type Node, walkGraph } from "../spec/graph.ts";
import { type DType, inferShape, type Op, type Shape } from "../spec/ops.ts";
import type { OpBackend } from "../spec/ops_builder.ts";
import {
  arrayFor,
  binary,
  causalMask,
  concat,
  copyAs,
  crossEntropy,
  embedding,
  floatArray,
  layerNorm,
  logSoftmax,
  map1,
  matmul,
  mean,
  relShift,
  sizeOf,
  slice,
  softmax,
  transpose,
} from "./reference_ops.ts";

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
