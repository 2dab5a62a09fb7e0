/**
 * crt: the Compact Recurrent Transformer (CRT, arXiv:2505.00929) and its
 * baselines on TensorFlow.js, for CPU-only machines.
 *
 * A model is typed data: a {@linkcode ModelSpec} (CRT, the full-length
 * Transformer or Transformer-XL), validated by {@linkcode decodeModelSpec}.
 * {@linkcode compile} traces one segment of it into a small graph IR,
 * verifies it, rewrites it with passes, checks every kernel it needs against
 * the active tfjs backend and returns a {@linkcode Program}: functions over
 * explicit parameters and carried state (`init`, `forward`, `loss`,
 * `trainStep`, `inferStep`). The training step ({@linkcode trainOn}) applies
 * AdamW with NC-GRU's Cayley update and owns its tensors.
 *
 * Failures at the boundaries (decoding, compiling, backend start-up) come
 * back as an {@linkcode Either} told apart by `_tag`; it is structurally
 * fp-ts's, so fp-ts functions accept it.
 *
 * New model stages are written against {@linkcode Ops}, the abstract op set,
 * and run unchanged on the tracer, eager tfjs and the reference interpreter.
 *
 * @example From a JSON spec to one training step
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   compile,
 *   decodeModelSpec,
 *   referenceCrt,
 *   startBackend,
 *   startTraining,
 *   tokenBatch,
 *   trainOn,
 * } from "./mod.ts";
 *
 * // 1. The backend ("wasm" by default; "cpu" starts faster for a small example).
 * const backend = await startBackend({ backend: "cpu" });
 * if (backend._tag === "Left") throw backend.left;
 *
 * // 2. A spec, decoded as if read from a file: a small CRT.
 * const json = JSON.stringify({
 *   ...referenceCrt,
 *   vocabSize: 50,
 *   dModel: 16,
 *   nHeads: 2,
 *   dFF: 32,
 *   nLayers: 1,
 *   segmentLen: 4,
 *   memory: { ...referenceCrt.memory, dMemory: 16 },
 * });
 * const spec = decodeModelSpec(JSON.parse(json));
 * if (spec._tag === "Left") throw spec.left;
 *
 * // 3. Compile and initialise.
 * const compiled = compile(spec.right);
 * if (compiled._tag === "Left") throw new Error(compiled.left.message);
 * const program = compiled.right;
 * console.log(program.paramCount, "parameters,", program.flops.forwardPerToken, "FLOPs/token");
 * const params = program.init(0);
 *
 * // 4. Forward 6 tokens of 2 streams: two segments, the memory carried between them.
 * const tokens = tokenBatch(Array.from({ length: 12 }, (_, i) => i), 2);
 * const { logits, state } = program.forward(params, program.initState(2), tokens);
 * assert.deepEqual(logits.shape, [2, 6, 50]); // [B, L, V]
 * tokens.dispose();
 * logits.dispose();
 * program.disposeState(state);
 *
 * // 5. One training step on a window of 2 segments (targets: the next tokens).
 * const ids = Array.from({ length: 18 }, (_, i) => (7 * i) % 50); // 2 streams of 9
 * const rows = [ids.slice(0, 9), ids.slice(9)];
 * const batch = {
 *   tokens: tokenBatch(rows.flatMap((r) => r.slice(0, 8)), 2),
 *   targets: tokenBatch(rows.flatMap((r) => r.slice(1)), 2),
 * };
 * const ts = startTraining(program, { seed: 0, batchSize: 2, params });
 * const step = trainOn(program, ts, batch, { lr: 1e-3, bpttSegments: 2, seed: 1 });
 * assert.ok(Number.isFinite(step.loss));
 * assert.equal(step.next.step, 1);
 * ```
 *
 * @module
 */

// The spec: model specs, parameter layouts, the op set.
export type { Either, Left, Right } from "./spec/either.ts";
export type {
  AdaptiveReadout,
  BlockFields,
  ClassifierReadout,
  CrtSpec,
  FeatureInput,
  InputSpec,
  LmReadout,
  MemorySpec,
  ModelSpec,
  Positional,
  Readout,
  TokenInput,
  TransformerSpec,
  XlSpec,
} from "./spec/types.ts";
export { decodeModelSpec } from "./spec/codecs.ts";
export { referenceCrt, referenceTransformer, referenceXl } from "./spec/reference_specs.ts";
export { SpecError } from "./spec/decode.ts";
export { type DenoErrorName, describeError } from "./spec/errors.ts";
export type { SpecIssue } from "./spec/decode.ts";
export { paramLayout } from "./spec/layout.ts";
export type {
  AttentionParams,
  BlockParams,
  FeedForwardParams,
  HeadParams,
  LayerNormParams,
  MemoryParams,
  ModelParams,
  RecurrentParams,
} from "./spec/layout.ts";
export type { State } from "./spec/stages.ts";
export type { Init, ParamSpec } from "./spec/params.ts";
export {
  adaptiveFeeds,
  adaptiveGeometry,
  planAdaptiveTargets,
  tailFlopsPerRow,
} from "./spec/adaptive.ts";
export type {
  AdaptiveGeometry,
  AdaptivePlan,
  ClusterParams,
  TailCluster,
} from "./spec/adaptive.ts";
export { Ops } from "./spec/ops_builder.ts";
export type { LinearOptions, OpBackend } from "./spec/ops_builder.ts";
export type { DType, FusedAttrs, Op, OpTag, Region, Shape } from "./spec/ops.ts";

// Backend start-up.
export { BackendError, startBackend } from "./ops/backend.ts";
export type { BackendInfo, BackendName, BackendOptions, MatmulChoice } from "./ops/backend.ts";
export type { KernelBuildChoice, KernelBuildName } from "./ops/heap.ts";
export type { Int8Dot, Int8DotChoice } from "./ops/q8_dot.ts";
export type { MatmulTier } from "./ops/matmul.ts";
export { matmulThreads, stopMatmulWorkers } from "./ops/matmul.ts";

// The compiler and the program it builds.
export { compile } from "./core/compile.ts";
export { tokenBatch } from "./core/segments.ts";
export type {
  CompileError,
  CompileOptions,
  DrawOptions,
  Grads,
  InferOptions,
  LossOptions,
  ModelState,
  Params,
  Program,
  Stages,
  Stream,
  Tensor,
} from "./core/program.ts";
export type { Decoder, LogitsAs } from "./core/decoder.ts";
export { printGraph } from "./spec/graph.ts";
export { printKernelPlan, printStages } from "./core/print.ts";
export type { Graph, Node } from "./spec/graph.ts";
export { countFlops } from "./core/flops.ts";
export type { GraphFlops } from "./core/flops.ts";
export { defaultPasses, runPasses } from "./core/passes.ts";
export type { Pass, PassError } from "./core/passes.ts";
export { verifyGraph } from "./core/verify.ts";
export type { VerifyError } from "./core/verify.ts";
export { traceSegment } from "./core/trace.ts";
export type { QuantizedParams, TracedSegment, TraceOptions } from "./core/trace.ts";

// Training.
export { disposeTraining, NonFiniteLoss, startTraining, trainOn } from "./core/train.ts";
export type { StepOptions, TrainState } from "./core/train.ts";
export { unigramBias, withReadoutBias } from "./experiments/tasks/readout_bias.ts";
export type { ReadoutBias } from "./experiments/tasks/readout_bias.ts";
export { applyAdamW, defaultAdamW, initOptimizer } from "./core/optim.ts";
export type { AdamWConfig, CayleyState, OptState } from "./core/optim.ts";

// On the device: model files, streams, sampling and scoring (web APIs only).
export {
  decodeModelFile,
  encodeModelFile,
  MODEL_FILE_VERSION,
  ModelFileError,
} from "./deploy/model_file.ts";
export type { ModelFile, ModelFileProblem, ModelTensor } from "./deploy/model_file.ts";
export { loadModel } from "./deploy/loaded.ts";
export type { LoadedModel, TokenStream } from "./deploy/loaded.ts";
export { generate, generateTokens, sampleToken } from "./deploy/generate.ts";
export type { GenerateOptions } from "./deploy/generate.ts";
export { scoreIds } from "./deploy/score.ts";
export type { TextScore } from "./deploy/score.ts";
export { Vocab } from "./deploy/vocab.ts";
export type { Tokenized } from "./deploy/vocab.ts";
export { dequantize, quantize } from "./deploy/quantize.ts";
export type { Int8Matrix } from "./deploy/quantize.ts";
