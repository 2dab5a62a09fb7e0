/**
 * What a compiled model is: the {@linkcode Program} that `compile`
 * (core/compile.ts) returns, and the values its functions take and give.
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
import type { ModelSpec } from "../spec/types.ts";
import type { State } from "../spec/stages.ts";
import type { ModelParams } from "../spec/layout.ts";
import type { ParamSpec } from "../spec/params.ts";
import type { Graph } from "../spec/graph.ts";
import type { Tensor as TfTensor } from "../ops/tf.ts";
import type { Pass } from "./passes.ts";
import type { QuantizedParams } from "./trace.ts";
import type { Decoder } from "./decoder.ts";

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
export type Tensor = TfTensor;

/**
 * Model parameters: the {@linkcode ModelParams} tree with a tensor at each
 * leaf.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import { type Params } from "./program.ts";
 * import { compile } from "./compile.ts";
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
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import { type ModelState } from "./program.ts";
 * import { compile } from "./compile.ts";
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
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import { type Grads } from "./program.ts";
 * import { compile } from "./compile.ts";
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
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import type { Graph } from "../spec/graph.ts";
 * import { compile } from "./compile.ts";
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
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import { defaultPasses } from "./passes.ts";
 * import { type CompileOptions } from "./program.ts";
 * import { compile } from "./compile.ts";
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
  /**
   * Parameter leaves given as q8 weights (int8 values with per-channel
   * scales, in an int32 tensor laid out by ops/quant.ts), by path, with the
   * axis of their scales: the program reads them as int8 at run time
   * (inference only; `init` still draws float32 values). Default: none.
   */
  readonly quantized?: QuantizedParams;
}

/**
 * The stages of one compiled segment graph, for printing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import { type Stages } from "./program.ts";
 * import { compile } from "./compile.ts";
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
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import { type LossOptions } from "./program.ts";
 * import { compile } from "./compile.ts";
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
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import { type Stream } from "./program.ts";
 * import { compile } from "./compile.ts";
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
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import { type InferOptions } from "./program.ts";
 * import { compile } from "./compile.ts";
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
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import { type Program } from "./program.ts";
 * import { compile } from "./compile.ts";
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
  /**
   * Feed tokens [B, n] like `inferStep` and draw each stream's next token
   * from its last logits in the same step (the `sample` op; see
   * {@linkcode DrawOptions}): only B ids come back, not B·V logits.
   */
  drawStep(
    params: Params,
    stream: Stream,
    tokens: Int32Array,
    draw: DrawOptions,
  ): { tokens: Int32Array; stream: Stream };
  /**
   * A decode loop over `params`: one stream (batch 1) that owns its state
   * and is fed a token at a time (core/decoder.ts). Its logits and draws are
   * `inferStep`'s and `drawStep`'s, bit for bit; on the wasm backend a
   * single token runs a step planned once for its position onto the
   * decoder's own buffers, without making a tensor. `params` must outlive
   * it.
   */
  openDecoder(params: Params): Decoder;
  /** Dispose a state or stream's tensors. */
  disposeState(state: ModelState): void;
}

/**
 * How {@linkcode Program}'s `drawStep` draws: softmax temperature (0:
 * the most likely token), the k most likely candidates only (0: all), and
 * one uniform in [0, 1) per stream, which makes the draw reproducible.
 *
 * @example
 * ```ts
 * import type { DrawOptions } from "./program.ts";
 * const draw: DrawOptions = { temperature: 0.8, topK: 40, uniforms: Float32Array.of(0.25) };
 * console.log(draw.topK);
 * ```
 */
export interface DrawOptions {
  /** Softmax temperature ≥ 0; 0 picks the largest logit. */
  readonly temperature: number;
  /** Candidates: the k largest logits (0: every token). */
  readonly topK: number;
  /** One uniform in [0, 1) per stream. */
  readonly uniforms: Float32Array;
}
