/**
 * The compiler's front door: spec → trace → verify → passes → kernel check →
 * lower → a {@linkcode Program}.
 *
 * A program is a set of pure-ish functions over explicit values: parameters
 * (a readonly tree of tensors), carried state (named tensors) and token
 * tensors. It never holds model state itself; it only caches the executables
 * it lowered, keyed by shape.
 *
 * Memory ownership: every function returns fresh tensors and never disposes
 * its inputs. The caller disposes what it no longer needs (see
 * `core/train.ts` for a loop that does so).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type { Either } from "../spec/either.ts";
import type { ModelSpec } from "../spec/model_types.ts";
import { decodeModelSpec } from "../spec/model.ts";
import { type ModelParams, paramLayout, type State, stateShapes } from "../spec/models.ts";
import { adaptiveFeeds, adaptiveGeometry, planAdaptiveTargets } from "../spec/adaptive.ts";
import { isParamSpec, numel, type ParamSpec } from "../spec/params.ts";
import { canStream, type StepReadout } from "../spec/stream.ts";
import { flatten, mapTree } from "../spec/tree.ts";
import { checkKernels, evalTf, type LowerCtx, lowerGraph } from "../ops/lower.ts";
import { tf } from "../ops/tf.ts";
import { type Graph, inputsReaching } from "./graph.ts";
import { countFlops } from "./flops.ts";
import { cayley, identityPlus, inverse } from "./linalg.ts";
import { defaultPasses, type Pass, runPasses } from "./passes.ts";
import { mixSeed, seeded } from "./random.ts";
import { type StepKey, traceStreamStep } from "./stream.ts";
import { dataInputName, traceSegment } from "./trace.ts";
import { verifyGraph } from "./verify.ts";

/**
 * A tfjs tensor: parameters, state, tokens and logits are all tensors of the
 * active tfjs backend. Whoever receives one from a program owns it and
 * disposes it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { tf } from "../ops/tf.ts";
 * import type { Tensor } from "./program.ts";
 *
 * await startBackend({ backend: "cpu" });
 * const tokens: Tensor = tf.tensor2d([[3, 1, 4, 1]], [1, 4], "int32"); // [B, L]
 * assert.deepEqual(tokens.shape, [1, 4]);
 * tokens.dispose();
 * ```
 */
export type Tensor = tf.Tensor;

/**
 * Model parameters: the {@linkcode ModelParams} tree with a tensor at each
 * leaf.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { referenceCrt } from "../spec/model.ts";
 * import { compile, type Params } from "./program.ts";
 *
 * await startBackend({ backend: "cpu" });
 * const spec = {
 *   ...referenceCrt,
 *   vocabSize: 50,
 *   dModel: 16,
 *   nHeads: 2,
 *   dFF: 32,
 *   nLayers: 1,
 *   segmentLen: 4,
 *   memory: { ...referenceCrt.memory, dMemory: 16 },
 * };
 * const program = compile(spec);
 * if (program._tag === "Left") throw new Error(program.left.message);
 * const params: Params = program.right.init(0);
 * assert.deepEqual(params.blocks[0].attn.wq.shape, [16, 16]);
 * ```
 */
export type Params = ModelParams<Tensor>;

/**
 * The state a model carries from segment to segment, as named tensors:
 * `memory` [B, M] for CRT, `cache[l]` [B, Tc, D] for Transformer-XL, nothing
 * for the full-length Transformer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { referenceCrt } from "../spec/model.ts";
 * import { compile, type ModelState } from "./program.ts";
 *
 * await startBackend({ backend: "cpu" });
 * const spec = {
 *   ...referenceCrt,
 *   vocabSize: 50,
 *   dModel: 16,
 *   nHeads: 2,
 *   dFF: 32,
 *   nLayers: 1,
 *   segmentLen: 4,
 *   memory: { ...referenceCrt.memory, dMemory: 16 },
 * };
 * const program = compile(spec);
 * if (program._tag === "Left") throw new Error(program.left.message);
 * const state: ModelState = program.right.initState(3);
 * assert.deepEqual(state.memory.shape, [3, 16]);
 * program.right.disposeState(state);
 * ```
 */
export type ModelState = State<Tensor>;

/**
 * Gradients of the graph parameters, keyed by parameter path
 * (`blocks[0].attn.wq`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { tf } from "../ops/tf.ts";
 * import { referenceCrt } from "../spec/model.ts";
 * import { compile, type Grads } from "./program.ts";
 *
 * await startBackend({ backend: "cpu" });
 * const spec = {
 *   ...referenceCrt,
 *   vocabSize: 50,
 *   dModel: 16,
 *   nHeads: 2,
 *   dFF: 32,
 *   nLayers: 1,
 *   segmentLen: 4,
 *   memory: { ...referenceCrt.memory, dMemory: 16 },
 * };
 * const program = compile(spec);
 * if (program._tag === "Left") throw new Error(program.left.message);
 * const p = program.right;
 * const tokens = tf.tensor2d([[1, 2, 3, 4, 5, 6, 7, 8]], [1, 8], "int32");
 * const step = p.trainStep(p.init(0), p.initState(1), { tokens, targets: tokens }, {});
 * const grads: Grads = step.grads;
 * assert.deepEqual(grads["blocks[0].attn.wq"].shape, [16, 16]);
 * ```
 */
export type Grads = Readonly<Record<string, Tensor>>;

/**
 * Why compilation failed, naming the spec path of the culprit where there is
 * one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { referenceCrt } from "../spec/model.ts";
 * import type { Graph } from "./graph.ts";
 * import { compile } from "./program.ts";
 *
 * await startBackend({ backend: "cpu" });
 * // A broken pass is caught by the verifier that runs after every pass.
 * const dropAll = { name: "drop-all", run: (g: Graph) => ({ ...g, nodes: [] }) };
 * const r = compile(referenceCrt, { passes: [dropAll] });
 * if (r._tag === "Right") throw new Error("expected a CompileError");
 * assert.equal(r.left.stage, "passes");
 * assert.match(r.left.message, /^pass drop-all produced a malformed graph/);
 * ```
 */
export interface CompileError {
  /** Discriminant. */
  readonly _tag: "CompileError";
  /** The compiler stage that failed. */
  readonly stage: "spec" | "trace" | "verify" | "passes" | "kernels";
  /** What went wrong, starting with the spec path where there is one. */
  readonly message: string;
}

/**
 * Options of {@linkcode compile}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { referenceCrt } from "../spec/model.ts";
 * import { defaultPasses } from "./passes.ts";
 * import { compile, type CompileOptions } from "./program.ts";
 *
 * await startBackend({ backend: "cpu" });
 * const spec = {
 *   ...referenceCrt,
 *   vocabSize: 50,
 *   dModel: 16,
 *   nHeads: 2,
 *   dFF: 32,
 *   nLayers: 1,
 *   segmentLen: 4,
 *   memory: { ...referenceCrt.memory, dMemory: 16 },
 * };
 * const noPasses: CompileOptions = { passes: [] };
 * const plain = compile(spec, noPasses);
 * const optimized = compile(spec, { passes: defaultPasses });
 * if (plain._tag === "Left" || optimized._tag === "Left") throw new Error("compile failed");
 * // Passes never change what the graph computes, so the FLOPs agree.
 * assert.equal(plain.right.flops.forwardPerToken, optimized.right.flops.forwardPerToken);
 * ```
 */
export interface CompileOptions {
  /** Batch size of the probe trace used for checks and FLOPs (default 1). */
  readonly batchSize?: number;
  /** Graph passes in order (default {@linkcode defaultPasses}). */
  readonly passes?: readonly Pass[];
}

/**
 * The stages of one compiled segment graph, for printing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { referenceCrt } from "../spec/model.ts";
 * import { compile, type Stages } from "./program.ts";
 *
 * await startBackend({ backend: "cpu" });
 * const spec = {
 *   ...referenceCrt,
 *   vocabSize: 50,
 *   dModel: 16,
 *   nHeads: 2,
 *   dFF: 32,
 *   nLayers: 1,
 *   segmentLen: 4,
 *   memory: { ...referenceCrt.memory, dMemory: 16 },
 * };
 * const program = compile(spec);
 * if (program._tag === "Left") throw new Error(program.left.message);
 * const stages: Stages = program.right.stages({ batchSize: 1 });
 * assert.ok(stages.optimized.nodes.length <= stages.traced.nodes.length);
 * ```
 */
export interface Stages {
  /** The segment graph as traced from the spec. */
  readonly traced: Graph;
  /** The same graph after the compile passes. */
  readonly optimized: Graph;
}

/**
 * Options of a loss evaluation over a window of segments
 * ({@linkcode Program}'s `loss`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { tf } from "../ops/tf.ts";
 * import { referenceCrt } from "../spec/model.ts";
 * import { compile, type LossOptions } from "./program.ts";
 *
 * await startBackend({ backend: "cpu" });
 * const spec = {
 *   ...referenceCrt,
 *   vocabSize: 50,
 *   dModel: 16,
 *   nHeads: 2,
 *   dFF: 32,
 *   nLayers: 1,
 *   segmentLen: 4,
 *   memory: { ...referenceCrt.memory, dMemory: 16 },
 * };
 * const program = compile(spec);
 * if (program._tag === "Left") throw new Error(program.left.message);
 * const p = program.right;
 * const tokens = tf.tensor2d([[1, 2, 3, 4, 5, 6, 7, 8]], [1, 8], "int32");
 * const evaluation: LossOptions = { training: false, bpttSegments: 2 };
 * const { loss } = p.loss(p.init(0), p.initState(1), { tokens, targets: tokens }, evaluation);
 * assert.ok(Math.abs(loss.dataSync()[0] - Math.log(50)) < 1); // about ln V at initialisation
 * ```
 */
export interface LossOptions {
  /** Dropout active. */
  readonly training: boolean;
  /** Gradients through the carried state are cut every this many segments. */
  readonly bpttSegments: number;
  /** Seed of this step's dropout noise. */
  readonly seed?: number;
}

/**
 * A streaming inference state: carried state at the last segment boundary
 * plus the tokens of the open segment. Tokens can be fed one at a time;
 * the state advances each time a segment fills up.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { referenceCrt } from "../spec/model.ts";
 * import { compile, type Stream } from "./program.ts";
 *
 * await startBackend({ backend: "cpu" });
 * const spec = {
 *   ...referenceCrt,
 *   vocabSize: 50,
 *   dModel: 16,
 *   nHeads: 2,
 *   dFF: 32,
 *   nLayers: 1,
 *   segmentLen: 4,
 *   memory: { ...referenceCrt.memory, dMemory: 16 },
 * };
 * const program = compile(spec);
 * if (program._tag === "Left") throw new Error(program.left.message);
 * const p = program.right;
 * const params = p.init(0);
 * let stream: Stream = p.openStream(1);
 * for (const token of [7, 8, 9]) {
 *   const step = p.inferStep(params, stream, Int32Array.of(token));
 *   assert.deepEqual(step.logits.shape, [1, 1, 50]); // [B, n, V]
 *   step.logits.dispose();
 *   p.disposeState(stream.state);
 *   stream = step.stream;
 * }
 * assert.equal(stream.open.length, 3); // 3 of segmentLen 4 tokens are open
 * ```
 */
export interface Stream {
  /**
   * The carried state at the last segment boundary (`memory`, `cache[l]`)
   * and, under names starting `open:`, the open segment's caches: each
   * layer's keys and values and what the segment's end needs (see
   * `openShapes` in spec/stream.ts). All of it is bounded by the segment
   * length; `disposeState` disposes all of it.
   */
  readonly state: ModelState;
  /** Tokens of the open segment, [B, t] row-major, t < segmentLen. */
  readonly open: Int32Array;
  /** Number of parallel streams B. */
  readonly batchSize: number;
}

/**
 * Options of a streaming step ({@linkcode Program}'s `inferStep`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { referenceCrt } from "../spec/model.ts";
 * import { compile, type InferOptions } from "./program.ts";
 *
 * await startBackend({ backend: "cpu" });
 * const spec = {
 *   ...referenceCrt,
 *   vocabSize: 50,
 *   dModel: 16,
 *   nHeads: 2,
 *   dFF: 32,
 *   nLayers: 1,
 *   segmentLen: 4,
 *   memory: { ...referenceCrt.memory, dMemory: 16 },
 * };
 * const program = compile(spec);
 * if (program._tag === "Left") throw new Error(program.left.message);
 * const p = program.right;
 * const params = p.init(0);
 * const stream = p.openStream(1);
 * // A prompt of 6 tokens: only the last one's next-token logits are read out.
 * const lastOnly: InferOptions = { readout: "last" };
 * const step = p.inferStep(params, stream, Int32Array.of(1, 2, 3, 4, 5, 6), lastOnly);
 * assert.deepEqual(step.logits.shape, [1, 1, 50]);
 * assert.equal(step.stream.open.length, 2); // one segment closed, 2 tokens open
 * p.disposeState(stream.state);
 * p.disposeState(step.stream.state);
 * step.logits.dispose();
 * ```
 */
export interface InferOptions {
  /**
   * `all` (default): logits for every fed token, [B, n, V]; `last`: only for
   * the last fed token, [B, 1, V] — the output layer runs for that row only.
   */
  readonly readout?: "all" | "last";
  /**
   * Re-run the open segment's prefix with every step instead of reusing its
   * cached keys and values: the behaviour before the cache, kept as the
   * baseline of `bench/stream_bench.ts`. Models whose readout is not an LM
   * (classifiers) always recompute. Default false.
   */
  readonly recompute?: boolean;
}

/**
 * A compiled model: its layout, sizes and FLOPs, and functions over explicit
 * parameters and state. It never holds model state itself; every function
 * returns fresh tensors and never disposes its inputs.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { tf } from "../ops/tf.ts";
 * import { referenceCrt } from "../spec/model.ts";
 * import { compile, type Program } from "./program.ts";
 *
 * await startBackend({ backend: "cpu" });
 * const spec = {
 *   ...referenceCrt,
 *   vocabSize: 50,
 *   dModel: 16,
 *   nHeads: 2,
 *   dFF: 32,
 *   nLayers: 1,
 *   segmentLen: 4,
 *   memory: { ...referenceCrt.memory, dMemory: 16 },
 * };
 * const compiled = compile(spec);
 * if (compiled._tag === "Left") throw new Error(compiled.left.message);
 * const program: Program = compiled.right;
 * const params = program.init(0);
 * const tokens = tf.tensor2d([[1, 2, 3, 4, 5, 6]], [1, 6], "int32"); // two segments, one short
 * const { logits, state } = program.forward(params, program.initState(1), tokens);
 * assert.deepEqual(logits.shape, [1, 6, 50]); // [B, L, V]
 * assert.deepEqual(state.memory.shape, [1, 16]); // [B, M]
 * ```
 */
export interface Program {
  /** The spec this program was compiled from. */
  readonly spec: ModelSpec;
  /** The parameter tree: shapes and initialisers. */
  readonly layout: ModelParams<ParamSpec>;
  /** Scalars in graph parameters (NC-GRU's U counted as a full matrix). */
  readonly paramCount: number;
  /** FLOPs per predicted token (2 per multiply-add, matmuls only; see core/flops.ts). */
  readonly flops: { readonly forwardPerToken: number; readonly trainPerToken: number };
  /** Trace, verify and optimise one segment graph without lowering it, for printing. */
  stages(opts: { batchSize: number; segmentLen?: number; withLoss?: boolean }): Stages;
  /** Fresh parameters drawn from `seed`. */
  init(seed: number): Params;
  /** The state a stream starts from. */
  initState(batchSize: number): ModelState;
  /**
   * Logits for tokens [B, L] (int32) — or frames [B, L, F] (float32) with
   * feature input — run segment by segment, and the state after them. LM:
   * logits [B, L, V]; classifier: [B, C] from the last segment.
   */
  forward(params: Params, state: ModelState, tokens: Tensor): { logits: Tensor; state: ModelState };
  /**
   * Mean NLL over tokens [B, L] (or frames [B, L, F] with feature input) with
   * targets [B, L] (LM) or [B] (classifier, scored on the last segment).
   * Differentiable in `params`: call it inside `tf.grad`. Returns the state
   * after the window.
   */
  loss(
    params: Params,
    state: ModelState,
    batch: { tokens: Tensor; targets: Tensor },
    opts: LossOptions,
  ): { loss: Tensor; state: ModelState };
  /** Loss and gradients of every graph parameter for one window of K = L / S segments. */
  trainStep(
    params: Params,
    state: ModelState,
    batch: { tokens: Tensor; targets: Tensor },
    opts: { bpttSegments?: number; seed?: number },
  ): { loss: number; grads: Grads; state: ModelState };
  /** Open a stream for batch size B. */
  openStream(batchSize: number): Stream;
  /**
   * Feed tokens [B, n] into a stream: logits [B, n, V] for each fed token
   * ([B, 1, V] with `readout: "last"`) and the new stream. LM models reuse
   * the open segment's cached keys and values, so a token costs O(t)
   * attention plus one readout row (see spec/stream.ts). Token input only: a
   * feature-input model streams its frames through `forward`, passing the
   * returned state on.
   */
  inferStep(
    params: Params,
    stream: Stream,
    tokens: Int32Array,
    opts?: InferOptions,
  ): { logits: Tensor; stream: Stream };
  /** Dispose a state or stream's tensors. */
  disposeState(state: ModelState): void;
}

const isTensor = (x: unknown): x is Tensor => x instanceof tf.Tensor;

/** Prefix of a stream state's open-segment caches. */
const OPEN = "open:";

/** Streaming step graphs a program keeps (least recently used dropped first). */
const STEP_GRAPHS = 256;

/** Parameter leaves of a tensor tree, by path. */
export const flattenParams = (params: Params): Record<string, Tensor> =>
  Object.fromEntries(flatten(params, isTensor));

/** Build a parameter tree of the layout's structure from leaves by path. */
export const unflattenParams = (
  layout: ModelParams<ParamSpec>,
  leaves: Readonly<Record<string, Tensor>>,
): Params =>
  mapTree(layout, isParamSpec, (_p, path) => {
    const t = leaves[path];
    if (t === undefined) throw new Error(`no tensor for parameter ${path}`);
    return t;
  }) as Params;

const hashPath = (s: string): number => {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
};

/** Draw the initial values of every leaf. Aux leaves first: Cayley leaves read them. */
export const initValues = (
  layout: ModelParams<ParamSpec>,
  seed: number,
): Map<string, Float32Array> => {
  const leaves = flatten(layout, isParamSpec);
  const values = new Map<string, Float32Array>();
  const draw = (path: string, p: ParamSpec): Float32Array => {
    const n = numel(p.shape);
    const out = new Float32Array(n);
    const r = seeded(mixSeed(seed, hashPath(path)));
    const init = p.init;
    switch (init._tag) {
      case "normal":
        for (let i = 0; i < n; i++) out[i] = init.std * r.normal();
        return out;
      case "zeros":
        return out;
      case "ones":
        return out.fill(1);
      case "uniform":
        for (let i = 0; i < n; i++) out[i] = (2 * r.uniform() - 1) * init.limit;
        return out;
      case "skewBlocks": {
        const m = p.shape[0];
        for (let i = 0; i + 1 < m; i += 2) {
          const t = Math.tan((r.uniform() * Math.PI / 2) / 2); // θ ~ U(0, π/2), t = tan(θ/2)
          out[i * m + i + 1] = t;
          out[(i + 1) * m + i] = -t;
        }
        return out;
      }
      case "signs": {
        const half = Math.floor(n / 2);
        for (let i = 0; i < n; i++) out[i] = i < half ? -1 : 1;
        return out;
      }
      case "cayley": {
        const m = p.shape[0];
        const a = Float64Array.from(values.get(init.a)!);
        const d = values.get(init.d)!;
        return Float32Array.from(cayley(inverse(identityPlus(a, m), m), a, d, m));
      }
    }
  };
  for (const [path, p] of leaves) if (p.init._tag !== "cayley") values.set(path, draw(path, p));
  for (const [path, p] of leaves) if (p.init._tag === "cayley") values.set(path, draw(path, p));
  return values;
};

/** What one compiled segment graph is specialised to. */
interface GraphKey {
  readonly batchSize: number;
  readonly segmentLen: number;
  readonly cacheLen: number;
  readonly withLoss: boolean;
  readonly training: boolean;
  /** Adaptive softmax loss graphs: rows per tail cluster (absent: all rows). */
  readonly clusterCapacity?: readonly number[];
}

interface Lowered {
  readonly run: (feeds: Record<string, Tensor>, ctx: LowerCtx) => Record<string, Tensor>;
  readonly graph: Graph;
}

/**
 * Compile a model spec into a program: trace one segment, verify it, run the
 * passes, check every kernel the lowering needs (forward and gradient)
 * against the active tfjs backend, and count parameters and FLOPs. Fails
 * (Left) when one of those stages fails; the message names the spec path.
 *
 * The tfjs backend must be started first (`startBackend`): the kernel check
 * runs against the active backend. Decode untrusted specs with
 * `decodeModelSpec` first: compile trusts the field ranges.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { referenceCrt } from "../spec/model.ts";
 * import { compile } from "./program.ts";
 *
 * await startBackend({ backend: "cpu" });
 * const program = compile(referenceCrt);
 * if (program._tag === "Left") throw new Error(program.left.message);
 * console.log(program.right.paramCount, program.right.flops.forwardPerToken);
 * assert.ok(program.right.flops.trainPerToken > 2 * program.right.flops.forwardPerToken);
 * ```
 */
export const compile = (
  spec: ModelSpec,
  opts: CompileOptions = {},
): Either<CompileError, Program> => {
  const passes = opts.passes ?? defaultPasses;
  const probeBatch = opts.batchSize ?? 1;
  const fail = (stage: CompileError["stage"], message: string) =>
    E.left<CompileError>({ _tag: "CompileError", stage, message });
  // A spec built in code has only its static type checked: validate it like a
  // decoded one, so a bad size is named here and never surfaces inside tfjs.
  const valid = decodeModelSpec(spec);
  if (E.isLeft(valid)) return fail("spec", valid.left.message);

  const build = (
    key: GraphKey,
  ): Either<CompileError, { traced: Graph; optimized: Graph }> => {
    let traced: Graph;
    try {
      traced = traceSegment(spec, key).graph;
    } catch (e) {
      return fail("trace", e instanceof Error ? e.message : String(e));
    }
    const v = verifyGraph(traced);
    if (E.isLeft(v)) return fail("verify", v.left.message);
    const o = runPasses(traced, passes);
    if (E.isLeft(o)) return fail("passes", o.left.message);
    return E.right({ traced, optimized: o.right });
  };

  // Probe: the training graph at full length (the biggest kernel set), checked
  // against the active backend before anything runs.
  const xlCache = spec._tag === "xl" ? spec.memLen : 0;
  const probe = build({
    batchSize: probeBatch,
    segmentLen: spec.segmentLen,
    cacheLen: xlCache,
    withLoss: true,
    training: spec.dropout > 0,
  });
  if (E.isLeft(probe)) return probe;
  const kernels = checkKernels(probe.right.optimized, tf.getBackend());
  if (E.isLeft(kernels)) return fail("kernels", kernels.left.message);
  const forwardProbe = build({
    batchSize: probeBatch,
    segmentLen: spec.segmentLen,
    cacheLen: xlCache,
    withLoss: false,
    training: false,
  });
  if (E.isLeft(forwardProbe)) return forwardProbe;
  // The forward graph can use ops the loss graph does not (the adaptive softmax's logSoftmax).
  const forwardKernels = checkKernels(forwardProbe.right.optimized, tf.getBackend(), {
    gradients: false,
  });
  if (E.isLeft(forwardKernels)) return fail("kernels", forwardKernels.left.message);
  const tokensPerProbe = probeBatch * spec.segmentLen;
  const fwd = countFlops(forwardProbe.right.optimized);
  const trn = countFlops(probe.right.optimized);
  const layout = paramLayout(spec);
  const graphLeaves = flatten(layout, isParamSpec).filter(([, p]) => p.role === "graph");
  const paramCount = graphLeaves.reduce((s, [, p]) => s + numel(p.shape), 0);

  // Executables by shape; owned by this program, never module-level.
  const cache = new Map<string, Lowered>();
  const lowered = (
    key: GraphKey,
  ): Lowered => {
    const k = JSON.stringify(key);
    const hit = cache.get(k);
    if (hit !== undefined) return hit;
    const g = build(key);
    // The probe already passed these stages at full size; a failure here is a bug.
    if (E.isLeft(g)) throw new Error(`internal: ${g.left.stage}: ${g.left.message}`);
    const l: Lowered = { run: lowerGraph(g.right.optimized), graph: g.right.optimized };
    cache.set(k, l);
    return l;
  };

  const adaptive = spec.readout._tag === "adaptive" ? adaptiveGeometry(spec.readout, spec) : null;

  const cacheLenOf = (state: ModelState): number =>
    spec._tag === "xl" && state["cache[0]"] !== undefined ? state["cache[0]"].shape[1]! : 0;

  const dataName = dataInputName(spec);
  const featureDim = spec.input?._tag === "features" ? spec.input.dim : null;
  /** Rejects a data tensor of the wrong kind with a message naming both. */
  const checkData = (x: Tensor, what: string): void => {
    const ok = featureDim === null
      ? x.rank === 2 && x.dtype === "int32"
      : x.rank === 3 && x.dtype === "float32" && x.shape[2] === featureDim;
    if (!ok) {
      const want = featureDim === null
        ? "token ids [B, L] int32"
        : `frames [B, L, ${featureDim}] float32 (model.input.dim = ${featureDim})`;
      throw new TypeError(
        `${what}: the model reads ${want}, got [${x.shape.join(", ")}] ${x.dtype}`,
      );
    }
  };
  /** Positions [start, start + len) of data [B, L] or [B, L, F]. */
  const sliceTime = (x: Tensor, start: number, len: number): Tensor =>
    x.rank === 3
      ? tf.slice(x, [0, start, 0], [x.shape[0]!, len, x.shape[2]!])
      : tf.slice(x, [0, start], [x.shape[0]!, len]);

  /** Run one segment. Returns every output of the graph. */
  const segment = (
    flat: Record<string, Tensor>,
    state: ModelState,
    tokens: Tensor,
    targets: Tensor | undefined,
    ctx: LowerCtx,
  ): Record<string, Tensor> => {
    const [b, s] = tokens.shape as [number, number];
    // Adaptive softmax: a tail cluster runs only for the rows whose target is in it.
    const plan = targets !== undefined && adaptive !== null
      ? planAdaptiveTargets(adaptive, targets.dataSync() as Int32Array)
      : null;
    const exe = lowered({
      batchSize: b,
      segmentLen: s,
      cacheLen: cacheLenOf(state),
      withLoss: targets !== undefined,
      training: ctx.training,
      ...(plan === null ? {} : { clusterCapacity: plan.capacities }),
    });
    const feeds: Record<string, Tensor> = { ...flat, [dataName]: tokens };
    if (targets !== undefined) feeds.targets = targets;
    if (plan !== null) {
      for (const [name, data] of Object.entries(adaptiveFeeds(plan))) {
        feeds[name] = tf.tensor1d(data, data instanceof Int32Array ? "int32" : "float32");
      }
    }
    for (const [name, t] of Object.entries(state)) feeds[`state:${name}`] = t;
    return exe.run(feeds, ctx);
  };

  const stateOf = (out: Record<string, Tensor>): ModelState =>
    Object.fromEntries(
      Object.entries(out).filter(([k]) => k.startsWith("state:")).map(([k, v]) => [k.slice(6), v]),
    );

  const chunks = (len: number): [number, number][] => {
    const out: [number, number][] = [];
    for (let start = 0; start < len; start += spec.segmentLen) {
      out.push([start, Math.min(spec.segmentLen, len - start)]);
    }
    return out;
  };

  const evalCtx: LowerCtx = { training: false, seed: () => 0 };

  const forward: Program["forward"] = (params, state, tokens) =>
    tf.tidy(() => {
      checkData(tokens, "forward");
      const flat = flattenParams(params);
      const len = tokens.shape[1]!;
      let st = state;
      const logits: Tensor[] = [];
      for (const [start, s] of chunks(len)) {
        const tok = sliceTime(tokens, start, s);
        const out = segment(flat, st, tok, undefined, evalCtx);
        logits.push(out.logits);
        st = stateOf(out);
      }
      // One segment needs no concat (wasm's Concat of one tensor copies it: 7 ms for [20, 35, 10000]).
      const all = spec.readout._tag === "classifier" || logits.length === 1
        ? logits[logits.length - 1]
        : tf.concat(logits, 1);
      return { logits: all, state: st };
    });

  const loss: Program["loss"] = (params, state, batch, opts) => {
    checkData(batch.tokens, "loss");
    const flat = flattenParams(params);
    const [b, len] = batch.tokens.shape as [number, number];
    let counter = 0;
    const ctx: LowerCtx = {
      training: opts.training,
      seed: () => mixSeed(opts.seed ?? 0, counter++),
    };
    let st = state;
    const losses: Tensor[] = [];
    const weights: number[] = [];
    const segs = chunks(len);
    segs.forEach(([start, s], k) => {
      if (k > 0 && k % opts.bpttSegments === 0) {
        // Truncated BPTT: the state keeps its value but no gradient flows back past here.
        st = Object.fromEntries(
          Object.entries(st).map(([n, t]) => [n, evalTf({ _tag: "stopGradient" }, [t], ctx)]),
        );
      }
      const tok = sliceTime(batch.tokens, start, s);
      const last = k === segs.length - 1;
      const tgt = spec.readout._tag !== "classifier"
        ? tf.slice(batch.targets, [0, start], [b, s])
        : last
        ? batch.targets
        : undefined;
      const out = segment(flat, st, tok, tgt, ctx);
      if (out.loss !== undefined) losses.push(out.loss);
      weights.push(s);
      st = stateOf(out);
    });
    // Mean over tokens: segments may differ in length at the end of a split. The
    // arithmetic goes through lowered ops so that it carries their gradients.
    if (spec.readout._tag === "classifier") return { loss: losses[0], state: st };
    const scaled = losses.map((l, i) =>
      evalTf({ _tag: "scale", factor: weights[i] / len }, [l], ctx)
    );
    const total = scaled.reduce((a, c) => evalTf({ _tag: "add" }, [a, c], ctx));
    return { loss: total, state: st };
  };

  const graphPaths = graphLeaves.map(([p]) => p);

  /**
   * Parameters the loss of a K-segment window depends on. tfjs refuses to
   * differentiate with respect to an unconnected input, and with K = 1 the
   * memory update of CRT only shapes the next window: those get zero gradients.
   */
  const trainedPaths = (k: number, bpttSegments: number): string[] => {
    const g = lowered({
      batchSize: probeBatch,
      segmentLen: spec.segmentLen,
      cacheLen: xlCache,
      withLoss: true,
      training: false,
    }).graph;
    const direct = inputsReaching(g, g.outputs.loss);
    const viaState = new Set<string>();
    if (Math.min(k, bpttSegments) > 1) {
      for (const [name, id] of Object.entries(g.outputs)) {
        if (name.startsWith("state:") && direct.has(name)) {
          for (const p of inputsReaching(g, id)) viaState.add(p);
        }
      }
    }
    return graphPaths.filter((p) => direct.has(p) || viaState.has(p));
  };

  const trainStep: Program["trainStep"] = (params, state, batch, opts) => {
    const flat = flattenParams(params);
    let kept: ModelState = {};
    const k = Math.ceil(batch.tokens.shape[1]! / spec.segmentLen);
    const trained = trainedPaths(k, opts.bpttSegments ?? k);
    const others = Object.fromEntries(
      Object.entries(flat).filter(([p]) => !trained.includes(p)),
    );
    const f = (...xs: Tensor[]): tf.Scalar => {
      const leaves: Record<string, Tensor> = { ...others };
      trained.forEach((p, i) => (leaves[p] = xs[i]));
      const out = loss(unflattenParams(layout, leaves), state, batch, {
        training: true,
        bpttSegments: opts.bpttSegments ?? k,
        ...(opts.seed === undefined ? {} : { seed: opts.seed }),
      });
      kept = Object.fromEntries(Object.entries(out.state).map(([n, t]) => [n, tf.keep(t)]));
      return out.loss as tf.Scalar;
    };
    const { value, grads } = tf.valueAndGrads(f)(trained.map((p) => flat[p]));
    const lossValue = value.dataSync()[0];
    value.dispose();
    const g: Record<string, Tensor> = {};
    for (const p of graphPaths) {
      const i = trained.indexOf(p);
      g[p] = i >= 0 ? grads[i] : tf.zerosLike(flat[p]);
    }
    return { loss: lossValue, grads: g, state: kept };
  };

  const initState: Program["initState"] = (batchSize) =>
    Object.fromEntries(
      Object.entries(stateShapes(spec, batchSize)).map(([n, s]) => [n, tf.zeros(s as number[])]),
    );

  const openStream: Program["openStream"] = (batchSize) => ({
    state: initState(batchSize),
    open: new Int32Array(0),
    batchSize,
  });

  const inferStep: Program["inferStep"] = (params, stream, tokens, opts = {}) => {
    if (featureDim !== null) {
      throw new TypeError(
        "inferStep streams token ids; this model reads frames (model.input is features): " +
          "call forward on each chunk of frames and pass the returned state on",
      );
    }
    const b = stream.batchSize;
    const n = tokens.length / b;
    if (!Number.isInteger(n) || n === 0) {
      throw new RangeError(
        `inferStep: ${tokens.length} tokens do not split into ${b} non-empty rows`,
      );
    }
    for (let i = 0; i < tokens.length; i++) {
      const id = tokens[i];
      if (!(id >= 0 && id < spec.vocabSize)) {
        throw new RangeError(
          `inferStep: token ${id} at index ${i} is outside the vocabulary [0, ${spec.vocabSize})`,
        );
      }
    }
    const readout = opts.readout ?? "all";
    const { carried, open } = splitStream(stream.state);
    if (opts.recompute === true || !canStream(spec)) {
      return recomputeStep(params, { ...stream, state: carried }, tokens, n, readout);
    }
    const flat = flattenParams(params);
    const sLen = spec.segmentLen;
    const inputs = new Set<Tensor>(Object.values(stream.state));
    /** Dispose the tensors of `s` this call created (never the caller's). */
    const release = (s: Record<string, Tensor>): void => {
      for (const t of Object.values(s)) if (!inputs.has(t)) t.dispose();
    };
    let state = carried;
    let caches = open;
    let openIds = stream.open;
    let t0 = openIds.length / b;
    if (t0 > 0 && Object.keys(caches).length === 0) {
      // Open tokens but no caches (the stream was advanced with `recompute`): rebuild them once.
      caches = prefixed(
        cachedStep(flat, state, {}, openIds, { start: 0, count: t0 }, "none"),
        OPEN,
      );
    }
    const pieces: Tensor[] = [];
    let fed = 0;
    while (fed < n) {
      const take = Math.min(n - fed, sLen - t0);
      const ids = new Int32Array(b * take); // tokens[:, fed : fed + take]
      for (let r = 0; r < b; r++) {
        ids.set(tokens.subarray(r * n + fed, r * n + fed + take), r * take);
      }
      const rows = readout === "all" ? "all" : fed + take === n ? "last" : "none";
      const out = cachedStep(flat, state, caches, ids, { start: t0, count: take }, rows);
      if (out.logits !== undefined) pieces.push(out.logits);
      release(caches);
      const t1 = t0 + take;
      if (t1 === sLen) {
        // The segment closed: its state becomes the carried state.
        release(state);
        state = prefixed(out, "state:");
        caches = {};
        openIds = new Int32Array(0);
        t0 = 0;
      } else {
        caches = prefixed(out, OPEN);
        const grown = new Int32Array(b * t1); // open ++ ids, row by row
        for (let r = 0; r < b; r++) {
          grown.set(openIds.subarray(r * t0, (r + 1) * t0), r * t1);
          grown.set(ids.subarray(r * take, (r + 1) * take), r * t1 + t0);
        }
        openIds = grown;
        t0 = t1;
      }
      fed += take;
    }
    const logits = pieces.length === 1 ? pieces[0] : tf.concat(pieces, 1);
    if (pieces.length > 1) { for (const p of pieces) p.dispose(); }
    // What did not change is still the caller's: hand back new handles on the same data.
    const fresh = (t: Tensor): Tensor => (inputs.has(t) ? tf.clone(t) : t);
    const next: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(state)) next[k] = fresh(t);
    for (const [k, t] of Object.entries(caches)) next[`${OPEN}${k}`] = fresh(t);
    return { logits, stream: { state: next, open: openIds, batchSize: b } };
  };

  /** The carried state and the open segment's caches (`open:` names) of a stream's state. */
  const splitStream = (
    s: ModelState,
  ): { carried: Record<string, Tensor>; open: Record<string, Tensor> } => {
    const carried: Record<string, Tensor> = {};
    const open: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(s)) {
      if (k.startsWith(OPEN)) open[k.slice(OPEN.length)] = t;
      else carried[k] = t;
    }
    return { carried, open };
  };

  /** The entries of `out` whose names start with `prefix`, without it. */
  const prefixed = (out: Record<string, Tensor>, prefix: string): Record<string, Tensor> =>
    Object.fromEntries(
      Object.entries(out).filter(([k]) => k.startsWith(prefix)).map((
        [k, t],
      ) => [k.slice(prefix.length), t]),
    );

  // Streaming step executables by shape (open length, feed size, readout),
  // owned by this program like `cache`. Feeds of every size could make
  // S(S + 1) of them: the least recently used go beyond STEP_GRAPHS, so a
  // long stream's memory stays bounded whatever it is fed.
  const stepCache = new Map<string, Lowered>();
  const loweredStep = (key: StepKey): Lowered => {
    const k = JSON.stringify(key);
    const hit = stepCache.get(k);
    if (hit !== undefined) {
      stepCache.delete(k); // most recently used last
      stepCache.set(k, hit);
      return hit;
    }
    // The step reuses the segment's ops, whose kernels the probe checked: a failure is a bug.
    const traced = traceStreamStep(spec, key);
    const v = verifyGraph(traced);
    if (E.isLeft(v)) throw new Error(`internal: streaming step: ${v.left.message}`);
    const o = runPasses(traced, passes);
    if (E.isLeft(o)) throw new Error(`internal: streaming step: ${o.left.message}`);
    const l: Lowered = { run: lowerGraph(o.right), graph: o.right };
    stepCache.set(k, l);
    if (stepCache.size > STEP_GRAPHS) stepCache.delete(stepCache.keys().next().value!);
    return l;
  };

  /**
   * One step of spec/stream.ts: `ids` [B, count] at position `start` of the
   * open segment. Returns the graph's outputs (`logits`, `open:*`, `state:*`),
   * all fresh tensors.
   */
  const cachedStep = (
    flat: Record<string, Tensor>,
    state: Record<string, Tensor>,
    open: Record<string, Tensor>,
    ids: Int32Array,
    at: { start: number; count: number },
    readout: StepReadout,
  ): Record<string, Tensor> =>
    tf.tidy(() => {
      const b = ids.length / at.count;
      const exe = loweredStep({ batchSize: b, ...at, cacheLen: cacheLenOf(state), readout });
      const feeds: Record<string, Tensor> = {
        ...flat,
        tokens: tf.tensor2d(ids, [b, at.count], "int32"),
      };
      for (const [name, t] of Object.entries(state)) feeds[`state:${name}`] = t;
      for (const [name, t] of Object.entries(open)) feeds[`open:${name}`] = t;
      const fed = new Set(Object.values(feeds));
      const out = exe.run(feeds, evalCtx);
      // An output that is a feed (a cache passed on unchanged) is the caller's tensor: new handle.
      return Object.fromEntries(
        Object.entries(out).map(([name, t]) => [name, fed.has(t) ? tf.clone(t) : t]),
      );
    });

  /**
   * The step without caches: re-run the open segment's prefix with the new
   * tokens (`InferOptions.recompute`, and models `streamStep` cannot run).
   */
  const recomputeStep = (
    params: Params,
    stream: Stream,
    tokens: Int32Array,
    n: number,
    readout: "all" | "last",
  ): { logits: Tensor; stream: Stream } => {
    const b = stream.batchSize;
    const flat = flattenParams(params);
    const sLen = spec.segmentLen;
    let state = stream.state;
    let open = stream.open;
    const pieces: Tensor[] = [];
    let fed = 0;
    while (fed < n) {
      const t0 = open.length / b;
      const take = Math.min(n - fed, sLen - t0);
      // open ++ tokens[:, fed : fed + take]
      const t1 = t0 + take;
      const buf = new Int32Array(b * t1);
      for (let r = 0; r < b; r++) {
        buf.set(open.subarray(r * t0, (r + 1) * t0), r * t1);
        buf.set(tokens.subarray(r * n + fed, r * n + fed + take), r * t1 + t0);
      }
      const last = fed + take === n;
      const out = tf.tidy(() => {
        const tok = tf.tensor2d(buf, [b, t1], "int32");
        const o = segment(flat, state, tok, undefined, evalCtx);
        const logits = spec.readout._tag === "classifier"
          ? o.logits
          : readout === "all"
          ? tf.slice(o.logits, [0, t0, 0], [b, take, -1])
          : last
          ? tf.slice(o.logits, [0, t1 - 1, 0], [b, 1, -1])
          : undefined;
        return { ...(logits === undefined ? {} : { logits }), state: stateOf(o) };
      });
      if (out.logits !== undefined) pieces.push(out.logits);
      if (t1 === sLen) {
        // The segment closed: its state becomes the carried state.
        if (state !== stream.state) disposeState(state);
        state = out.state;
        open = new Int32Array(0);
      } else {
        disposeState(out.state);
        open = buf;
      }
      fed += take;
    }
    const logits = pieces.length === 1
      ? pieces[0]
      : spec.readout._tag !== "classifier"
      ? tf.concat(pieces, 1)
      : tf.clone(pieces[pieces.length - 1]);
    if (pieces.length > 1) { for (const p of pieces) p.dispose(); }
    return {
      logits,
      stream: { state: state === stream.state ? cloneState(state) : state, open, batchSize: b },
    };
  };

  const cloneState = (s: ModelState): ModelState =>
    Object.fromEntries(Object.entries(s).map(([k, t]) => [k, tf.clone(t)]));

  const disposeState = (s: ModelState): void => {
    for (const t of Object.values(s)) t.dispose();
  };

  return E.right({
    spec,
    layout,
    paramCount,
    flops: {
      forwardPerToken: fwd.forward / tokensPerProbe,
      trainPerToken: trn.train / tokensPerProbe,
    },
    stages: ({ batchSize, segmentLen, withLoss }) => {
      const g = build({
        batchSize,
        segmentLen: segmentLen ?? spec.segmentLen,
        cacheLen: xlCache,
        withLoss: withLoss ?? false,
        training: false,
      });
      if (E.isLeft(g)) throw new Error(g.left.message);
      return g.right;
    },
    init: (seed) => {
      const values = initValues(layout, seed);
      return mapTree(
        layout,
        isParamSpec,
        (p, path) => tf.tensor(values.get(path)!, p.shape as number[]),
      ) as Params;
    },
    initState,
    forward,
    loss,
    trainStep,
    openStream,
    inferStep,
    disposeState,
  });
};

/**
 * Token ids as the int32 tensor [B, L] a program reads: `ids` holds B rows of
 * L tokens, row-major.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { tokenBatch } from "./program.ts";
 * await startBackend({ backend: "cpu" });
 * const t = tokenBatch([1, 2, 3, 4, 5, 6], 2);
 * assert.deepEqual(t.shape, [2, 3]);
 * t.dispose();
 * ```
 */
export const tokenBatch = (ids: ArrayLike<number>, batchSize: number): Tensor => {
  const len = ids.length / batchSize;
  if (!Number.isInteger(len)) {
    throw new RangeError(`tokenBatch: ${ids.length} ids do not split into ${batchSize} rows`);
  }
  return tf.tensor2d(Int32Array.from(ids), [batchSize, len], "int32");
};
