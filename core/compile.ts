/**
 * The compiler's front door: spec → trace → verify → passes → kernel check →
 * lower → a {@linkcode Program} (core/program.ts).
 *
 * `compile` validates the spec, runs the pipeline (core/pipeline.ts) once at
 * full size as a probe, checks every kernel the lowering needs against the
 * active tfjs backend, counts parameters and FLOPs, and composes the program
 * from the segment runner (core/segments.ts), the streaming runner
 * (core/stream.ts) and the parameter initialiser (core/params.ts).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type { Either } from "../spec/either.ts";
import type { ModelSpec } from "../spec/types.ts";
import { decodeModelSpec } from "../spec/codecs.ts";
import { paramLayout } from "../spec/layout.ts";
import { isParamSpec, numel } from "../spec/params.ts";
import { flatten } from "../spec/tree.ts";
import { checkKernels } from "../ops/lower.ts";
import { tf } from "../ops/tf.ts";
import { countFlops } from "./flops.ts";
import { initParams } from "./params.ts";
import { defaultPasses } from "./passes.ts";
import { buildSegment, compileError, executables, type GraphKey } from "./pipeline.ts";
import type { CompileError, CompileOptions, Program } from "./program.ts";
import { segmentRunner } from "./segments.ts";
import { disposeState, initialState, streamRunner } from "./stream.ts";
import { decoderRunner } from "./decoder.ts";

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
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import { compile } from "./compile.ts";
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
  const quantized = opts.quantized ?? {};
  const probeBatch = opts.batchSize ?? 1;
  // A spec built in code has only its static type checked: validate it like a
  // decoded one, so a bad size is named here and never surfaces inside tfjs.
  const valid = decodeModelSpec(spec);
  if (E.isLeft(valid)) return compileError("spec", valid.left.message);

  const xlCache = spec._tag === "xl" ? spec.memLen : 0;
  const full = (withLoss: boolean, training: boolean): GraphKey => ({
    batchSize: probeBatch,
    segmentLen: spec.segmentLen,
    cacheLen: xlCache,
    withLoss,
    training,
  });
  // Probe: the training graph at full length (the biggest kernel set), checked
  // against the active backend before anything runs.
  const probe = buildSegment(spec, full(true, spec.dropout > 0), passes, quantized);
  if (E.isLeft(probe)) return probe;
  const kernels = checkKernels(probe.right.optimized, tf.getBackend());
  if (E.isLeft(kernels)) return compileError("kernels", kernels.left.message);
  const forwardProbe = buildSegment(spec, full(false, false), passes, quantized);
  if (E.isLeft(forwardProbe)) return forwardProbe;
  // The forward graph can use ops the loss graph does not (the adaptive softmax's logSoftmax).
  const forwardKernels = checkKernels(forwardProbe.right.optimized, tf.getBackend(), {
    gradients: false,
  });
  if (E.isLeft(forwardKernels)) return compileError("kernels", forwardKernels.left.message);
  const tokensPerProbe = probeBatch * spec.segmentLen;
  const fwd = countFlops(forwardProbe.right.optimized);
  const trn = countFlops(probe.right.optimized);
  const layout = paramLayout(spec);
  const paramCount = flatten(layout, isParamSpec)
    .filter(([, p]) => p.role === "graph")
    .reduce((s, [, p]) => s + numel(p.shape), 0);

  const exes = executables(spec, passes, quantized);
  const segments = segmentRunner(spec, exes, probeBatch);
  const streams = streamRunner(spec, exes, segments);
  const openDecoder = decoderRunner(spec, exes, { ...streams, disposeState });
  return E.right({
    spec,
    layout,
    paramCount,
    flops: {
      forwardPerToken: fwd.forward / tokensPerProbe,
      trainPerToken: trn.train / tokensPerProbe,
    },
    stages: ({ batchSize, segmentLen, withLoss }) => {
      const g = buildSegment(
        spec,
        {
          batchSize,
          segmentLen: segmentLen ?? spec.segmentLen,
          cacheLen: xlCache,
          withLoss: withLoss ?? false,
          training: false,
        },
        passes,
        quantized,
      );
      if (E.isLeft(g)) throw new Error(g.left.message);
      return g.right;
    },
    init: (seed) => initParams(layout, seed),
    initState: (batchSize) => initialState(spec, batchSize),
    forward: segments.forward,
    loss: segments.loss,
    trainStep: segments.trainStep,
    openStream: streams.openStream,
    inferStep: streams.inferStep,
    drawStep: streams.drawStep,
    openDecoder,
    disposeState,
  });
};
