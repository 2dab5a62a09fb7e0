/**
 * The abstract op set every model stage is written against.
 *
 * An op is plain data (`Op`), a tagged union. Its semantics are defined by the
 * reference interpreter (`ops/reference.ts`), its tfjs lowering lives in
 * `ops/lower.ts`, and its output shape is given here by {@linkcode inferShape}
 * so that the tracer, the verifier and both evaluators agree on it.
 *
 * Model code never builds `Op` values by hand: it calls the sugar methods of
 * `Ops` (spec/ops_builder.ts), which forward to an `OpBackend`. Three backends
 * exist: the tracer (builds a graph), the reference interpreter and eager tfjs.
 *
 * @module
 */

/**
 * Element type of a tensor. Token ids are int32, activations float32; `q8`
 * is a quantised weight: int8 values with one float32 scale per channel of
 * the axis its `dequantize` names (the only op that reads one).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type DType, inferShape } from "./ops.ts";
 *
 * const ids: DType = "int32";
 * const out = inferShape({ _tag: "embedding" }, [
 *   { shape: [100, 8], dtype: "float32" },
 *   { shape: [2, 5], dtype: ids },
 * ]);
 * assert.equal(out.dtype, "float32");
 * ```
 */
export type DType = "float32" | "int32" | "q8";

/**
 * A static tensor shape. Every dimension is known when a graph is traced.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { broadcastShapes, type Shape } from "./ops.ts";
 *
 * const scores: Shape = [2, 4, 35, 36]; // [B, H, S, T]
 * assert.deepEqual(broadcastShapes(scores, [36]), [2, 4, 35, 36]);
 * ```
 */
export type Shape = readonly number[];

/**
 * One op of the IR. `_tag` names it; the other fields are its attributes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { inferShape, type Op } from "./ops.ts";
 *
 * const op: Op = { _tag: "matmul", transposeA: false, transposeB: true };
 * const out = inferShape(op, [
 *   { shape: [35, 64], dtype: "float32" },
 *   { shape: [36, 64], dtype: "float32" },
 * ]);
 * assert.deepEqual(out.shape, [35, 36]);
 * ```
 */
export type Op =
  /** A named graph input: a parameter, data (tokens, targets) or carried state. */
  | {
    readonly _tag: "input";
    readonly name: string;
    readonly role: "param" | "data" | "state";
    readonly shape: Shape;
    readonly dtype: DType;
  }
  /** A constant baked into the graph (sinusoidal positions). Row-major values. */
  | { readonly _tag: "constant"; readonly shape: Shape; readonly values: Float32Array }
  /**
   * Matrix product over the last two axes. Both inputs have the same rank (2, 3
   * or 4) and identical leading (batch) dimensions; no broadcasting.
   */
  | { readonly _tag: "matmul"; readonly transposeA: boolean; readonly transposeB: boolean }
  /** Elementwise binary ops with numpy broadcasting (trailing alignment). */
  | { readonly _tag: "add" }
  | { readonly _tag: "sub" }
  | { readonly _tag: "mul" }
  /** `x * factor`. */
  | { readonly _tag: "scale"; readonly factor: number }
  /** Elementwise unary activations. */
  | { readonly _tag: "relu" }
  | { readonly _tag: "sigmoid" }
  | { readonly _tag: "tanh" }
  /** modReLU(x, b) = sign(x) · relu(|x| + b); b broadcasts over x. Paper: NC-GRU. */
  | { readonly _tag: "modrelu" }
  /** Softmax over the last axis. */
  | { readonly _tag: "softmax" }
  /** log softmax over the last axis: x − max − log Σ exp(x − max), stable for any logits. */
  | { readonly _tag: "logSoftmax" }
  /** LayerNorm over the last axis: inputs x, gain [D], bias [D]. */
  | { readonly _tag: "layerNorm"; readonly eps: number }
  /** Row lookup: inputs table [V, D] (float32) and ids [...] (int32) → [..., D]. */
  | { readonly _tag: "embedding" }
  | { readonly _tag: "reshape"; readonly shape: Shape }
  | { readonly _tag: "transpose"; readonly perm: readonly number[] }
  | { readonly _tag: "concat"; readonly axis: number }
  | { readonly _tag: "slice"; readonly begin: readonly number[]; readonly size: readonly number[] }
  /** Mean over one axis, which is removed. */
  | { readonly _tag: "mean"; readonly axis: number }
  /**
   * Causal attention mask on scores [..., S, T]: query i may see key j iff
   * j ≤ i + (T − S). Masked entries become −1e9 (not −∞, so softmax of a fully
   * masked row stays finite).
   */
  | { readonly _tag: "causalMask" }
  /**
   * Transformer-XL's relative shift on [..., S, R] with R = T (keys): output
   * [i, j] = input[i, j + S − 1 − i] when that index is in range, else 0.
   * Input column r holds relative distance R − 1 − r.
   */
  | { readonly _tag: "relShift" }
  /** Per-row negative log-likelihood: inputs logits [N, V] and targets [N] (int32) → [N]. */
  | { readonly _tag: "crossEntropy" }
  /** Inverted dropout with keep-probability 1 − rate; identity when not training. */
  | { readonly _tag: "dropout"; readonly rate: number }
  /** Identity forward, zero gradient. Used to carry state without gradient. */
  | { readonly _tag: "stopGradient" }
  /**
   * A q8 weight [R, C] as float32: value · scale, one scale per column
   * (`axis` 1: a matrix used as x · W, scaled per output column) or per row
   * (`axis` 0: a lookup table, scaled per entry).
   */
  | { readonly _tag: "dequantize"; readonly axis: 0 | 1 }
  /**
   * Draw a token per row of logits [N, V] with uniforms u [N] in [0, 1) →
   * int32 ids [N]. Candidates: the `topK` largest logits (ties: the lower
   * ids), or all when topK is 0 or ≥ V; weights e^{(x − max)/temperature};
   * the id is the first candidate, by increasing id, at which the running
   * sum of weights exceeds u · Σ weights. Temperature 0 or topK 1: the
   * largest logit (the lowest id on ties).
   */
  | { readonly _tag: "sample"; readonly temperature: number; readonly topK: number }
  /**
   * A fused region: the ops of `body` computed by one kernel of the lowering
   * (see core/fuse.ts). Its meaning is its body's: the body's inputs
   * `in:0`, `in:1`, … take this node's inputs in order, and its outputs
   * `out:0`, `out:1`, … are this node's outputs. The node's own value is
   * `out:0`; a {@linkcode Op} `part` reads each further one.
   */
  | {
    readonly _tag: "fused";
    /** What the region computes (`linear`, `attention`, `decodeBlock`, …): names its kernel. */
    readonly kind: string;
    /** What the kernel needs to know without reading the body (e.g. `relu: true`). */
    readonly attrs: FusedAttrs;
    /** The region itself: the definition of what the node computes. */
    readonly body: Graph;
  }
  /** Output `index` (≥ 1) of the fused node it reads; its shape and dtype are recorded. */
  | { readonly _tag: "part"; readonly index: number; readonly shape: Shape; readonly dtype: DType };

/**
 * Attributes of a fused region: what its kernel needs beyond the input
 * shapes. Plain data, so a graph prints and compares as text.
 *
 * @example
 * ```ts
 * import type { FusedAttrs } from "./ops.ts";
 * const attrs: FusedAttrs = { bias: true, relu: true, residual: false };
 * console.log(attrs.relu);
 * ```
 */
export type FusedAttrs = Readonly<Record<string, number | boolean | string>>;

/**
 * One IR node: an op of the op set applied to earlier nodes.
 *
 * A node is an op, the ids of its inputs, its static shape and dtype, and
 * the spec path it came from. Graphs store nodes in topological order; a
 * node's id is its index. (The tracer that builds them is in `graph.ts`.)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Node } from "./ops.ts";
 * import { Tracer } from "./graph.ts";
 *
 * const t = new Tracer();
 * const x = t.input("x", "data", [2, 3]);
 * const g = t.finish({ y: t.ops("model.act").relu(x) });
 * const relu: Node = g.nodes[g.outputs.y];
 * assert.deepEqual([relu.op._tag, relu.inputs, relu.shape, relu.path], ["relu", [0], [2, 3], "model.act"]);
 * ```
 */
export interface Node {
  /** Its index in the graph's node list. */
  readonly id: number;
  /** What it computes. */
  readonly op: Op;
  /** Ids of its inputs, all smaller than `id`. */
  readonly inputs: readonly number[];
  /** Its static output shape. */
  readonly shape: Shape;
  /** Its output element type. */
  readonly dtype: DType;
  /** The spec path of what emitted this node, e.g. `model.blocks[1].attn.wq`. */
  readonly path: string;
}

/**
 * A region of a traced graph that the model code marked as one unit
 * (`Ops.region`): the nodes it emitted, from `first` on, computing
 * `outputs` from `inputs`. The fusion stage (core/fuse.ts) turns a region
 * into a `fused` node when the lowering has a kernel for its `kind`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Tracer } from "./graph.ts";
 *
 * const t = new Tracer();
 * const o = t.ops("model.ffn");
 * const [x, w] = [t.input("x", "data", [4, 8]), t.input("w", "param", [8, 8])];
 * o.region("linear", { relu: true }, [x, w], ([a, b]) => [o.relu(o.matmul(a, b))]);
 * const g = t.finish({});
 * assert.deepEqual(g.regions?.[0], {
 *   kind: "linear", attrs: { relu: true }, inputs: [0, 1], outputs: [3], first: 2, end: 4,
 *   path: "model.ffn",
 * });
 * ```
 */
export interface Region {
  /** What the region computes; the lowering's kernel of this name runs it. */
  readonly kind: string;
  /** What that kernel needs to know beyond the shapes. */
  readonly attrs: FusedAttrs;
  /** Ids of the values the region reads, in the order its kernel takes them. */
  readonly inputs: readonly number[];
  /** Ids of the values it gives, in order. */
  readonly outputs: readonly number[];
  /** Id of the first node the region emitted. */
  readonly first: number;
  /** One past the id of the last node it emitted: its nodes are `first … end − 1`. */
  readonly end: number;
  /** The spec path of the code that marked it. */
  readonly path: string;
}

/**
 * A traced graph: nodes in topological order, named outputs and the regions
 * the model code marked. Graph inputs are the `input` nodes, named by
 * parameter path, `tokens`, `targets` or `state:<name>`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Graph } from "./ops.ts";
 * import { Tracer } from "./graph.ts";
 *
 * const t = new Tracer();
 * const o = t.ops("model.head");
 * const h = t.input("h", "data", [2, 8]);
 * const w = t.input("head.w", "param", [8, 5]);
 * const graph: Graph = t.finish({ logits: o.matmul(h, w), "state:h": h });
 * assert.deepEqual(graph.nodes.map((n) => n.op._tag), ["input", "input", "matmul"]);
 * assert.deepEqual(graph.outputs, { logits: 2, "state:h": 0 });
 * ```
 */
export interface Graph {
  /** Every node, in topological order; a node's id is its index. */
  readonly nodes: readonly Node[];
  /** Named outputs, by node id. */
  readonly outputs: Readonly<Record<string, number>>;
  /** Regions the model code marked, for the fusion stage (absent: none, or already fused). */
  readonly regions?: readonly Region[];
}

/** Name of the i-th input of a fused region's body. */
export const regionInput = (i: number): string => `in:${i}`;
/** Name of the i-th output of a fused region's body. */
export const regionOutput = (i: number): string => `out:${i}`;

/**
 * The tag of an op: `"matmul"`, `"softmax"`, ...
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Op, OpTag } from "./ops.ts";
 *
 * const tagOf = (op: Op): OpTag => op._tag;
 * assert.equal(tagOf({ _tag: "relu" }), "relu");
 * ```
 */
export type OpTag = Op["_tag"];

/** Where an op's shapes disagree: carries a readable reason. */
export class ShapeError extends Error {
  override readonly name = "ShapeError";
}

const fmt = (s: Shape): string => `[${s.join(", ")}]`;
const size = (s: Shape): number => s.reduce((a, b) => a * b, 1);
const same = (a: Shape, b: Shape): boolean =>
  a.length === b.length && a.every((d, i) => d === b[i]);

/** Numpy-style broadcast of two shapes (aligned at the trailing axis). */
export const broadcastShapes = (a: Shape, b: Shape): Shape => {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new ShapeError(`cannot broadcast ${fmt(a)} with ${fmt(b)}`);
    }
    out.push(Math.max(da, db));
  }
  return out;
};

/** Input count each op takes. */
export const arity = (op: Op): number => {
  switch (op._tag) {
    case "input":
    case "constant":
      return 0;
    case "matmul":
    case "add":
    case "sub":
    case "mul":
    case "modrelu":
    case "embedding":
    case "crossEntropy":
    case "sample":
      return 2;
    case "layerNorm":
      return 3;
    case "concat":
    case "fused":
      return -1; // any number ≥ 1 (fused: as many as its body has inputs)
    default:
      return 1;
  }
};

/**
 * Output shape and dtype of `op` applied to inputs of the given shapes and
 * dtypes. Throws {@linkcode ShapeError} naming the mismatch.
 */
export const inferShape = (
  op: Op,
  inputs: readonly { readonly shape: Shape; readonly dtype: DType }[],
): { shape: Shape; dtype: DType } => {
  const n = arity(op);
  if (n >= 0 && inputs.length !== n) {
    throw new ShapeError(`${op._tag} takes ${n} inputs, got ${inputs.length}`);
  }
  const f32 = (shape: Shape) => ({ shape, dtype: "float32" as const });
  const needF32 = (i: number) => {
    if (inputs[i].dtype !== "float32") {
      throw new ShapeError(`${op._tag} input ${i} must be float32, got ${inputs[i].dtype}`);
    }
  };
  const x = inputs[0]?.shape ?? [];
  switch (op._tag) {
    case "input":
      return { shape: op.shape, dtype: op.dtype };
    case "constant":
      if (op.values.length !== size(op.shape)) {
        throw new ShapeError(`constant of shape ${fmt(op.shape)} has ${op.values.length} values`);
      }
      return f32(op.shape);
    case "matmul": {
      needF32(0);
      needF32(1);
      const a = x, b = inputs[1].shape;
      if (a.length !== b.length || a.length < 2 || a.length > 4) {
        throw new ShapeError(`matmul needs equal ranks 2..4, got ${fmt(a)} and ${fmt(b)}`);
      }
      const r = a.length;
      if (!same(a.slice(0, r - 2), b.slice(0, r - 2))) {
        throw new ShapeError(`matmul batch dims differ: ${fmt(a)} and ${fmt(b)}`);
      }
      const [m, ka] = op.transposeA ? [a[r - 1], a[r - 2]] : [a[r - 2], a[r - 1]];
      const [kb, nn] = op.transposeB ? [b[r - 1], b[r - 2]] : [b[r - 2], b[r - 1]];
      if (ka !== kb) {
        throw new ShapeError(
          `matmul inner dims differ: ${fmt(a)}${op.transposeA ? "ᵀ" : ""} · ${fmt(b)}${
            op.transposeB ? "ᵀ" : ""
          }`,
        );
      }
      return f32([...a.slice(0, r - 2), m, nn]);
    }
    case "add":
    case "sub":
    case "mul":
      needF32(0);
      needF32(1);
      return f32(broadcastShapes(x, inputs[1].shape));
    case "modrelu":
      needF32(0);
      needF32(1);
      if (!same(broadcastShapes(x, inputs[1].shape), x)) {
        throw new ShapeError(
          `modrelu bias ${fmt(inputs[1].shape)} does not broadcast to ${fmt(x)}`,
        );
      }
      return f32(x);
    case "scale":
    case "relu":
    case "sigmoid":
    case "tanh":
    case "softmax":
    case "logSoftmax":
    case "dropout":
    case "stopGradient":
      needF32(0);
      return f32(x);
    case "layerNorm": {
      needF32(0);
      const d = x[x.length - 1];
      for (const i of [1, 2]) {
        if (!same(inputs[i].shape, [d])) {
          throw new ShapeError(
            `layerNorm ${i === 1 ? "gain" : "bias"} must be [${d}], got ${fmt(inputs[i].shape)}`,
          );
        }
      }
      return f32(x);
    }
    case "embedding": {
      needF32(0);
      if (x.length !== 2) throw new ShapeError(`embedding table must be rank 2, got ${fmt(x)}`);
      if (inputs[1].dtype !== "int32") throw new ShapeError(`embedding ids must be int32`);
      return f32([...inputs[1].shape, x[1]]);
    }
    case "mean":
      needF32(0);
      if (op.axis < 0 || op.axis >= x.length) {
        throw new ShapeError(`mean axis ${op.axis} out of range for ${fmt(x)}`);
      }
      return f32(x.filter((_, i) => i !== op.axis));
    case "causalMask":
    case "relShift":
      needF32(0);
      if (x.length < 2) throw new ShapeError(`${op._tag} needs rank ≥ 2, got ${fmt(x)}`);
      if (x[x.length - 1] < x[x.length - 2]) {
        throw new ShapeError(`${op._tag} needs keys ≥ queries, got ${fmt(x)}`);
      }
      return f32(x);
    case "fused": {
      const body = op.body;
      const ins = body.nodes.filter((n) => n.op._tag === "input");
      if (ins.length !== inputs.length) {
        throw new ShapeError(
          `fused ${op.kind} takes ${ins.length} inputs, got ${inputs.length}`,
        );
      }
      ins.forEach((n, i) => {
        if (n.op._tag !== "input" || n.op.name !== regionInput(i)) {
          throw new ShapeError(`fused ${op.kind}: body input ${i} is not named ${regionInput(i)}`);
        }
        if (!same(n.shape, inputs[i].shape) || n.dtype !== inputs[i].dtype) {
          throw new ShapeError(
            `fused ${op.kind}: input ${i} is ${fmt(inputs[i].shape)} ${inputs[i].dtype}, ` +
              `its body reads ${fmt(n.shape)} ${n.dtype}`,
          );
        }
      });
      const first = body.outputs[regionOutput(0)];
      if (first === undefined) {
        throw new ShapeError(`fused ${op.kind}: body has no ${regionOutput(0)}`);
      }
      const out = body.nodes[first];
      return { shape: out.shape, dtype: out.dtype };
    }
    case "part":
      if (!(Number.isInteger(op.index) && op.index >= 1)) {
        throw new ShapeError(`part index ${op.index} must be an integer ≥ 1`);
      }
      return { shape: op.shape, dtype: op.dtype };
    case "sample": {
      const u = inputs[1];
      if (
        x.length !== 2 || inputs[0].dtype !== "float32" || u.dtype !== "float32" ||
        u.shape.length !== 1 || u.shape[0] !== x[0]
      ) {
        throw new ShapeError(
          `sample needs float32 logits [N, V] and uniforms [N], got ${fmt(x)} and ${fmt(u.shape)}`,
        );
      }
      if (!(op.temperature >= 0) || !(Number.isInteger(op.topK) && op.topK >= 0)) {
        throw new ShapeError(
          `sample: temperature ${op.temperature} and topK ${op.topK} out of range`,
        );
      }
      return { shape: [x[0]], dtype: "int32" };
    }
    case "dequantize":
      if (inputs[0].dtype !== "q8" || x.length !== 2 || (op.axis !== 0 && op.axis !== 1)) {
        throw new ShapeError(
          `dequantize needs a q8 matrix and axis 0 or 1, got ${fmt(x)} ${
            inputs[0].dtype
          }, axis ${op.axis}`,
        );
      }
      return f32(x);
    case "crossEntropy": {
      needF32(0);
      const t = inputs[1];
      if (x.length !== 2 || t.shape.length !== 1 || t.shape[0] !== x[0] || t.dtype !== "int32") {
        throw new ShapeError(
          `crossEntropy needs logits [N, V] and int32 targets [N], got ${fmt(x)} and ${
            fmt(t.shape)
          }`,
        );
      }
      return f32([x[0]]);
    }
    case "reshape":
    case "transpose":
    case "concat":
    case "slice":
      if (inputs.some((i) => i.dtype === "q8")) {
        throw new ShapeError(`${op._tag} cannot read a q8 weight: dequantize it first`);
      }
      return layoutShape(op, inputs);
  }
};

/** Output shape of the layout ops (reshape, transpose, concat, slice). */
const layoutShape = (
  op: Op,
  inputs: readonly { readonly shape: Shape; readonly dtype: DType }[],
): { shape: Shape; dtype: DType } => {
  const x = inputs[0]?.shape ?? [];
  switch (op._tag) {
    case "reshape": {
      if (size(op.shape) !== size(x)) {
        throw new ShapeError(`cannot reshape ${fmt(x)} (${size(x)} elements) to ${fmt(op.shape)}`);
      }
      return { shape: op.shape, dtype: inputs[0].dtype };
    }
    case "transpose": {
      const p = op.perm;
      if (p.length !== x.length || [...p].sort((a, b) => a - b).some((v, i) => v !== i)) {
        throw new ShapeError(`transpose perm [${p.join(", ")}] does not fit ${fmt(x)}`);
      }
      return { shape: p.map((i) => x[i]), dtype: inputs[0].dtype };
    }
    case "concat": {
      if (inputs.length < 1) throw new ShapeError("concat needs at least one input");
      const ax = op.axis;
      if (ax < 0 || ax >= x.length) {
        throw new ShapeError(`concat axis ${ax} out of range for ${fmt(x)}`);
      }
      let total = 0;
      for (const inp of inputs) {
        const s = inp.shape;
        if (s.length !== x.length || s.some((d, i) => i !== ax && d !== x[i])) {
          throw new ShapeError(`concat on axis ${ax}: ${fmt(x)} and ${fmt(s)} differ elsewhere`);
        }
        if (inp.dtype !== inputs[0].dtype) throw new ShapeError("concat inputs differ in dtype");
        total += s[ax];
      }
      return { shape: x.map((d, i) => (i === ax ? total : d)), dtype: inputs[0].dtype };
    }
    case "slice": {
      if (op.begin.length !== x.length || op.size.length !== x.length) {
        throw new ShapeError(`slice begin/size rank differs from ${fmt(x)}`);
      }
      op.begin.forEach((b, i) => {
        if (b < 0 || op.size[i] < 0 || b + op.size[i] > x[i]) {
          throw new ShapeError(
            `slice [${op.begin.join(", ")}] + [${op.size.join(", ")}] out of range for ${fmt(x)}`,
          );
        }
      });
      return { shape: op.size, dtype: inputs[0].dtype };
    }
    default:
      throw new ShapeError(`${op._tag} is not a layout op`);
  }
};
