/**
 * The training step that owns its tensors: compute loss and gradients, clip,
 * apply AdamW, carry the state, and dispose everything that was replaced.
 *
 * @module
 */
import { tf } from "../ops/tf.ts";
import {
  type AdamWConfig,
  applyAdamW,
  defaultAdamW,
  disposeOptimizer,
  initOptimizer,
  type OptState,
} from "./optim.ts";
import type { ModelState, Params, Program, Tensor } from "./program.ts";
import { flattenParams } from "./params.ts";

/**
 * Everything a training run carries from step to step. Owned by the run:
 * {@linkcode trainOn} consumes it and returns the next one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import { compile } from "./compile.ts";
 * import { disposeTraining, startTraining, type TrainState } from "./train.ts";
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
 * const program = compiled.right;
 * const ts: TrainState = startTraining(program, { seed: 0, batchSize: 4 });
 * assert.equal(ts.step, 0);
 * assert.deepEqual(ts.memory.memory.shape, [4, 16]); // one memory vector per stream
 * disposeTraining(program, ts);
 * ```
 */
export interface TrainState {
  /** The current parameters. */
  readonly params: Params;
  /** The optimizer's moments and NC-GRU state. */
  readonly opt: OptState;
  /** The carried model state (CRT memory, XL cache) of each of the B streams. */
  readonly memory: ModelState;
  /** Steps taken so far. */
  readonly step: number;
}

/**
 * Settings of one step.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultAdamW } from "./optim.ts";
 * import type { StepOptions } from "./train.ts";
 *
 * const step: StepOptions = {
 *   lr: 1e-3,
 *   bpttSegments: 2,
 *   seed: 7,
 *   adamw: { ...defaultAdamW, clipNorm: 1 },
 * };
 * assert.equal(step.adamw?.beta1, 0.9);
 * ```
 */
export interface StepOptions {
  /** Learning rate of this step. */
  readonly lr: number;
  /** Truncated BPTT: gradients through the carried state span at most this many segments. */
  readonly bpttSegments: number;
  /** Seed of this step's dropout noise. */
  readonly seed: number;
  /** Optimizer settings (default {@linkcode defaultAdamW}). */
  readonly adamw?: AdamWConfig;
}

/**
 * A fresh training state: parameters from `seed` (or the given `params`,
 * which it then owns), zero optimizer moments, initial memory for
 * `batchSize` streams.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import { compile } from "./compile.ts";
 * import { disposeTraining, startTraining } from "./train.ts";
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
 * const program = compiled.right;
 * const ts = startTraining(program, { seed: 0, batchSize: 20 });
 * assert.deepEqual(ts.params.embed.shape, [50, 16]);
 * disposeTraining(program, ts);
 * ```
 */
export const startTraining = (
  program: Program,
  opts: { seed: number; batchSize: number; params?: Params },
): TrainState => {
  const params = opts.params ?? program.init(opts.seed);
  return {
    params,
    opt: initOptimizer(program.layout, params),
    memory: program.initState(opts.batchSize),
    step: 0,
  };
};

/**
 * One optimisation step on a window of K segments: tokens and targets
 * [B, K·S] (int32). Consumes `ts`: every tensor of it that the new state does
 * not reuse is disposed, so the live tensor count stays flat across steps.
 * Throws {@linkcode NonFiniteLoss} (and applies nothing) when the loss is
 * NaN or infinite.
 *
 * @example A few steps on one batch
 * ```ts
 * import assert from "node:assert/strict";
 * import { tf } from "../ops/tf.ts";
 * import { startBackend } from "../ops/backend.ts";
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import { compile } from "./compile.ts";
 * import { disposeTraining, startTraining, trainOn } from "./train.ts";
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
 * const program = compiled.right;
 * // B = 2 streams, K = 2 segments of S = 4 tokens; the targets are the next tokens.
 * const ids = Int32Array.from({ length: 2 * 9 }, (_, i) => i % 50);
 * const all = tf.tensor2d(ids, [2, 9], "int32");
 * const tokens = tf.slice(all, [0, 0], [2, 8]);
 * const targets = tf.slice(all, [0, 1], [2, 8]);
 * let ts = startTraining(program, { seed: 0, batchSize: 2 });
 * const losses: number[] = [];
 * for (let i = 0; i < 3; i++) {
 *   const step = trainOn(program, ts, { tokens, targets }, { lr: 1e-2, bpttSegments: 2, seed: i });
 *   losses.push(step.loss);
 *   ts = step.next;
 * }
 * assert.ok(losses[2] < losses[0]);
 * disposeTraining(program, ts);
 * tf.dispose([all, tokens, targets]);
 * ```
 */
export const trainOn = (
  program: Program,
  ts: TrainState,
  batch: { tokens: Tensor; targets: Tensor },
  opts: StepOptions,
): { next: TrainState; loss: number; gradNorm: number } => {
  const { loss, grads, state } = program.trainStep(ts.params, ts.memory, batch, {
    bpttSegments: opts.bpttSegments,
    seed: opts.seed,
  });
  if (!Number.isFinite(loss)) {
    for (const g of Object.values(grads)) g.dispose();
    program.disposeState(state);
    throw new NonFiniteLoss(ts.step + 1, loss);
  }
  const upd = applyAdamW(program.layout, ts.params, grads, ts.opt, {
    lr: opts.lr,
    config: opts.adamw ?? defaultAdamW,
  });
  for (const g of Object.values(grads)) g.dispose();
  const fresh = new Set(Object.values(flattenParams(upd.params)));
  for (const t of Object.values(flattenParams(ts.params))) if (!fresh.has(t)) t.dispose();
  disposeOptimizer(ts.opt);
  program.disposeState(ts.memory);
  return {
    next: { params: upd.params, opt: upd.state, memory: state, step: ts.step + 1 },
    loss,
    gradNorm: upd.gradNorm,
  };
};

/**
 * Dispose every tensor of a training state: parameters, optimizer moments
 * and carried memory.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tf } from "../ops/tf.ts";
 * import { startBackend } from "../ops/backend.ts";
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import { compile } from "./compile.ts";
 * import { disposeTraining, startTraining } from "./train.ts";
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
 * const program = compiled.right;
 * const before = tf.memory().numTensors;
 * disposeTraining(program, startTraining(program, { seed: 0, batchSize: 2 }));
 * assert.equal(tf.memory().numTensors, before);
 * ```
 */
export const disposeTraining = (program: Program, ts: TrainState): void => {
  for (const t of Object.values(flattenParams(ts.params))) t.dispose();
  disposeOptimizer(ts.opt);
  program.disposeState(ts.memory);
};

/**
 * The loss became NaN or infinite: the step is not applied.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NonFiniteLoss } from "./train.ts";
 *
 * const e = new NonFiniteLoss(120, NaN);
 * assert.equal(e.message, "loss is NaN at step 120: stopping before the parameters are corrupted");
 * assert.ok(e instanceof Error);
 * ```
 */
export class NonFiniteLoss extends Error {
  /** Error class name, for stack traces. */
  override readonly name = "NonFiniteLoss";
  /**
   * The loss of step `step` was `loss`.
   *
   * @param step the step that failed (1-based, as `TrainState.step` after it)
   * @param loss the non-finite loss
   */
  constructor(readonly step: number, readonly loss: number) {
    super(`loss is ${loss} at step ${step}: stopping before the parameters are corrupted`);
  }
}

/** Live tensors right now (for leak checks). */
export const liveTensors = (): number => tf.memory().numTensors;
