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
import {
  flattenParams,
  type ModelState,
  type Params,
  type Program,
  type Tensor,
} from "./program.ts";

/** Everything a training run carries from step to step. */
export interface TrainState {
  readonly params: Params;
  readonly opt: OptState;
  /** The carried model state (CRT memory, XL cache) of each of the B streams. */
  readonly memory: ModelState;
  readonly step: number;
}

/** Settings of one step. */
export interface StepOptions {
  readonly lr: number;
  readonly bpttSegments: number;
  /** Seed of this step's dropout noise. */
  readonly seed: number;
  readonly adamw?: AdamWConfig;
}

/**
 * A fresh training state: parameters from `seed`, zero optimizer moments,
 * initial memory for `batchSize` streams.
 *
 * @example
 * ```ts
 * import { startTraining } from "./train.ts";
 * // const ts = startTraining(program, { seed: 0, batchSize: 20 });
 * void startTraining;
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
 * One optimisation step on a window of K segments. Consumes `ts`: every tensor
 * of it that the new state does not reuse is disposed, so the live tensor
 * count stays flat across steps.
 *
 * @example
 * ```ts
 * import { trainOn } from "./train.ts";
 * // const { next, loss } = trainOn(program, ts, { tokens, targets }, { lr: 1e-3, bpttSegments: 2, seed: 1 });
 * void trainOn;
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

/** Dispose every tensor of a training state. */
export const disposeTraining = (program: Program, ts: TrainState): void => {
  for (const t of Object.values(flattenParams(ts.params))) t.dispose();
  disposeOptimizer(ts.opt);
  program.disposeState(ts.memory);
};

/** The loss became NaN or infinite: the step is not applied. */
export class NonFiniteLoss extends Error {
  override readonly name = "NonFiniteLoss";
  constructor(readonly step: number, readonly loss: number) {
    super(`loss is ${loss} at step ${step}: stopping before the parameters are corrupted`);
  }
}

/** Live tensors right now (for leak checks). */
export const liveTensors = (): number => tf.memory().numTensors;
