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
 * The lowerings that take more than one tfjs call live in
 * `ops/lower/lowerings.ts`, the gradients in `ops/lower/gradients.ts`; this
 * module holds the kernel inventory, the op dispatch, graph lowering, the
 * kernel check and the eager backend.
 *
 * Nothing here wraps work in `tf.tidy`: callers own every tensor created, so
 * gradients can flow through a whole lowered graph.
 *
 * @module
 */
import { describeError } from "../spec/errors.ts";
import * as tf from "@tensorflow/tfjs-core";
import { left, right } from "fp-ts/lib/Either.js";
import { bodyFeeds, bodyOutputs, type Graph, type Node, walkGraph } from "../spec/graph.ts";
import type { Either } from "../spec/either.ts";
import { inferShape, type Op, type OpTag, type Shape } from "../spec/ops.ts";
import type { OpBackend } from "../spec/ops_builder.ts";
import type { RefTensor } from "./reference.ts";
import { GATHER_ROWS, XENT, XENT_GRAD } from "./fused.ts";
import {
  fusedKernel,
  inferenceBindingOf,
  type KernelBinding,
  type KernelUse,
  type LowerCtx,
  runFusedKernel,
} from "./fusion.ts";
import { LAYER_NORM, LAYER_NORM_GRAD } from "./fusion/norm.ts";
import { DEQUANTIZE, dequantizeTensor } from "./fusion/q8.ts";
import { SAMPLE, sampleTokens } from "./fusion/sample.ts";
import { q8Layout } from "./quant.ts";
import {
  addSub,
  causalMask,
  concat,
  crossEntropy,
  dropout,
  embedding,
  identity,
  layerNorm,
  linear,
  logSoftmax,
  matmul,
  mean,
  modrelu,
  relShift,
  reshape,
  slice,
  stopGradient,
} from "./lower/lowerings.ts";
import type { Args } from "./lower/lowerings.ts";

export type { KernelUse, LowerCtx } from "./fusion.ts";
export { GRADIENT_KERNELS, registerGradients } from "./lower/gradients.ts";

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
  if (kernel !== undefined) return runFusedKernel(kernel, op, inputs, ctx);
  return bodyOutputs(op.body, walkGraph(op.body, bodyFeeds(inputs), tfEvaluator(ctx)));
};

/** A feed checked against its input node: its shape and dtype (a q8 weight's layout). */
const checkFeed = (node: Node, fed: tf.Tensor | undefined): tf.Tensor => {
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
};

/** The lowering as a graph evaluator: feeds are checked against their input node. */
const tfEvaluator = (ctx: LowerCtx) => ({
  feed: checkFeed,
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

/**
 * Called with the kernel's name on every kernel call of a direct executable
 * (`directGraph`), which the engine does not see: bench/_kernels.ts counts
 * them beside the engine's dispatches.
 */
export const directCallObservers: Set<(kernel: string) => void> = new Set();

/**
 * A graph made only of inputs and fused regions whose kernels are one tfjs
 * kernel call each (`FusedKernel.bind`) — a streaming step — run without
 * the engine on `backend`: each region's kernel function is called directly
 * on the backend's tensor data, the regions' intermediate results are
 * freed as soon as the graph has run, and only the graph's outputs become
 * tensors (the caller's to dispose; an output that is a feed is the feed).
 * Null when some node is not such a region, or the backend is not active.
 * The values are the lowering's, bit for bit: the same kernels run in the
 * same order on the same data; what goes is the engine's per-call work
 * (scopes, tracking, kernel lookup) and the graph walk's tensors.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { Tracer } from "../spec/graph.ts";
 * import { ensureBackend } from "./backend.ts";
 * import { directGraph } from "./lower.ts";
 * await ensureBackend({ backend: "cpu" });
 * const tr = new Tracer();
 * const g = tr.finish({ y: tr.ops().softmax(tr.input("x", "data", [2, 3])) });
 * console.log(directGraph(g, "cpu")); // null: softmax is not a fused region
 * ```
 */
export const directGraph = (graph: Graph, backend: string): DirectExecutable | null => {
  // The walk, planned once: per node, what it reads (value indices) and the kernel it calls.
  type Step =
    | { readonly tag: "input"; readonly node: Node; readonly name: string }
    | { readonly tag: "part"; readonly of: number; readonly index: number }
    | {
      readonly tag: "call";
      readonly node: Node;
      readonly b: KernelBinding;
      /** The binding's named inputs: kernel input name and value index. */
      readonly reads: readonly (readonly [string, number])[];
      /** The kernel takes its inputs as an array (Concat), in `reads` order. */
      readonly list?: boolean;
      f?: tf.KernelFunc;
    };
  const steps: Step[] = [];
  for (const node of graph.nodes) {
    const op = node.op;
    if (op._tag === "input") {
      steps.push({ tag: "input", node, name: op.name });
      continue;
    }
    if (op._tag === "part") {
      steps.push({ tag: "part", of: node.inputs[0], index: op.index });
      continue;
    }
    const call = directCall(node, backend);
    if (call === undefined) return null;
    const { b, list } = call;
    const reads = list
      ? node.inputs.map((j, i) => [String(i), j] as const)
      : b.inputs.flatMap((name, i) => name === null ? [] : [[name, node.inputs[i]] as const]);
    steps.push({ tag: "call", node, b, reads, list });
  }
  const outputs = Object.entries(graph.outputs).map(([name, id]) => ({
    name,
    id,
    isFeed: graph.nodes[id].op._tag === "input",
  }));
  // Feeds already checked against this graph: a model's parameters come again every step.
  const checked = new WeakSet<tf.Tensor>();
  const run = (
    feeds: Readonly<Record<string, tf.Tensor>>,
    fixed: readonly (tf.Tensor | undefined)[],
  ) => {
    if (tf.getBackend() !== backend) {
      throw new Error(`direct step: made for the ${backend} backend, ${tf.getBackend()} is active`);
    }
    const be = tf.backend();
    const made: tf.TensorInfo[] = [];
    // Per node its value; a fused node's is its first output, `outs` holds all of them.
    const values: tf.TensorInfo[] = new Array(steps.length);
    const outs: (readonly tf.TensorInfo[])[] = new Array(steps.length);
    try {
      for (let i = 0; i < steps.length; i++) {
        const st = steps[i];
        if (st.tag === "input") {
          const pinned = fixed[i];
          if (pinned !== undefined) {
            values[i] = pinned;
            continue;
          }
          const t = feeds[st.name];
          if (t === undefined || !checked.has(t)) checked.add(checkFeed(st.node, t));
          values[i] = t!;
          continue;
        }
        if (st.tag === "part") {
          const v = outs[st.of]?.[st.index];
          if (v === undefined) throw new Error(`part ${st.index} of %${st.of}: no such output`);
          values[i] = v;
          continue;
        }
        try {
          if (st.f === undefined) {
            const reg = tf.getKernel(st.b.kernel, backend);
            if (reg === undefined) {
              throw new Error(`direct step: kernel ${st.b.kernel} is not registered on ${backend}`);
            }
            st.f = reg.kernelFunc;
          }
          if (directCallObservers.size > 0) {
            for (const observe of directCallObservers) observe(st.b.kernel);
          }
          let inputs: Record<string, tf.TensorInfo> | tf.TensorInfo[];
          if (st.list === true) inputs = st.reads.map(([, j]) => values[j]);
          else {
            inputs = {};
            for (const [name, j] of st.reads) inputs[name] = values[j];
          }
          const out = st.f({
            inputs: inputs as tf.NamedTensorInfoMap,
            backend: be,
            attrs: st.b.attrs,
          }) as
            | tf.TensorInfo
            | tf.TensorInfo[];
          const all = Array.isArray(out) ? out : [out];
          for (const t of all) made.push(t);
          const kept = st.b.keep === undefined ? all : all.slice(0, st.b.keep);
          outs[i] = kept;
          values[i] = kept[0];
        } catch (e) {
          const op = st.node.op;
          const name = op._tag === "fused" ? `fused ${op.kind}` : op._tag;
          throw new Error(`${st.node.path}: ${name} (node %${st.node.id}): ${describeError(e)}`, {
            cause: e,
          });
        }
      }
    } catch (e) {
      for (const t of made) be.disposeData(t.dataId);
      throw e;
    }
    const result: Record<string, tf.Tensor> = {};
    // Each kernel output holds one reference to its data (a Reshape's shares its input's): an
    // output tensor takes over one, the rest are let go.
    const claims = new Map<object, number>();
    for (const o of outputs) {
      const info = values[o.id];
      if (o.isFeed) {
        result[o.name] = info as tf.Tensor; // a feed passed through
        continue;
      }
      claims.set(info.dataId, (claims.get(info.dataId) ?? 0) + 1);
      result[o.name] = tf.engine().makeTensorFromTensorInfo(info);
    }
    for (const t of made) {
      const c = claims.get(t.dataId) ?? 0;
      if (c > 0) claims.set(t.dataId, c - 1);
      else be.disposeData(t.dataId);
    }
    return result;
  };
  const none: (tf.Tensor | undefined)[] = [];
  const pinnings = new WeakMap<object, Executable>();
  const exe: Executable = (feeds) => run(feeds, none);
  return Object.assign(exe, {
    withFixed: (fixed: Readonly<Record<string, tf.Tensor>>): Executable => {
      const have = pinnings.get(fixed);
      if (have !== undefined) return have;
      // The inputs `fixed` names, looked up and checked now, once.
      const pinned = steps.map((st) => {
        if (st.tag !== "input" || !(st.name in fixed)) return undefined;
        return checkFeed(st.node, fixed[st.name]);
      });
      const e: Executable = (feeds) => run(feeds, pinned);
      pinnings.set(fixed, e);
      return e;
    },
  });
};

/**
 * The one tfjs kernel call a direct step makes for `node`: a fused region's
 * inference binding, or for the few plain ops a segment's first and last
 * step add (the memory token prepended, the mean the memory update reads)
 * the kernel their lowering runs with the same attributes — `reshape` (and
 * a one-input `concat`, an identity) is `Reshape`, a view of its input;
 * `concat` is `Concat`, which takes its inputs as an array (`list`);
 * `mean` is `Mean`. Undefined for any other node.
 */
const directCall = (
  node: Node,
  backend: string,
): { b: KernelBinding; list: boolean } | undefined => {
  const op = node.op;
  const one = (kernel: string, attrs: tf.NamedAttrMap) => ({
    b: { kernel, attrs, inputs: ["x"] },
    list: false,
  });
  switch (op._tag) {
    case "fused": {
      const k = fusedKernel(op.kind, backend);
      const b = k === undefined ? undefined : inferenceBindingOf(k, op);
      return b === undefined ? undefined : { b, list: false };
    }
    case "reshape":
      return one("Reshape", { shape: [...op.shape] });
    case "concat":
      return node.inputs.length === 1
        ? one("Reshape", { shape: [...node.shape] })
        : { b: { kernel: "Concat", attrs: { axis: op.axis }, inputs: [] }, list: true };
    case "mean":
      return one("Mean", { axis: op.axis, keepDims: false });
    default:
      return undefined;
  }
};

/**
 * A direct executable (`directGraph`), which can also have some of its
 * feeds fixed once: `withFixed(params)` looks up and checks the inputs
 * `params` names now, and its executable reads only the others from its
 * feeds — a streaming step's ~40 parameters are then neither looked up by
 * name nor checked per token. The fixed tensors must outlive its use
 * (memoized per `params` object).
 */
export type DirectExecutable = Executable & {
  readonly withFixed: (fixed: Readonly<Record<string, tf.Tensor>>) => Executable;
};

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
 * import { Ops } from "../spec/ops_builder.ts";
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
      const why = describeError(e);
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
