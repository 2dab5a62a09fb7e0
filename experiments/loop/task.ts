/**
 * The task interface of the training loop: what a task gives the loop
 * ({@linkcode TaskSetup}, {@linkcode Task}), what the loop gives back while a
 * run is open ({@linkcode RunContext}), and how a run ends
 * ({@linkcode Outcome}). `loop.ts` holds the loop itself.
 *
 * @example A task's step budget, as the loop reads it
 * ```ts
 * import type { Task } from "./task.ts";
 * type Rec = { kind: "train" | "valid"; step: number; loss: number };
 * const budget = (task: Task<Rec>) => `${task.steps} steps, then stopped by ${task.budget}`;
 * ```
 *
 * @module
 */
import type * as E from "fp-ts/lib/Either.js";
import type { Params, Program } from "../../core/program.ts";
import type { TrainState } from "../../core/train.ts";
import type { Tensor } from "../../ops/tf.ts";
import type { ModelSpec } from "../../spec/types.ts";
import type { Checkpoint } from "./checkpoint_format.ts";
import type { SharedTraining } from "../experiment.ts";
import type { Progress } from "./progress.ts";
import type { RunError } from "./run_folder.ts";

/**
 * A `metrics.jsonl` record: tasks define their `train` and `valid` records;
 * the loop adds `error` records of its own.
 *
 * @example
 * ```ts
 * import type { LoopRecord } from "./task.ts";
 * const r: LoopRecord = { kind: "train", step: 10 };
 * ```
 */
export interface LoopRecord {
  /** `train`, `valid` or `error`. */
  readonly kind: string;
  /** The step it belongs to. */
  readonly step: number;
}

/**
 * How a run ended: completed with results, or interrupted (by the abort
 * signal) after saving a checkpoint it can resume from.
 *
 * @example
 * ```ts
 * import type { Outcome } from "./task.ts";
 * const say = (o: Outcome<{ valid_ppl: number }>) =>
 *   o._tag === "Completed" ? `valid ppl ${o.results.valid_ppl}` : `stopped at step ${o.step}`;
 * ```
 */
export type Outcome<Results> =
  | { readonly _tag: "Completed"; readonly runDir: string; readonly results: Results }
  | {
    readonly _tag: "Interrupted";
    readonly runDir: string;
    /** Steps done (and saved). */
    readonly step: number;
    /** `interrupted; resume with --resume RUN_DIR`. */
    readonly message: string;
  };

/**
 * Sums over the steps since the last `train` record (saved in checkpoints,
 * so that records resume exactly).
 *
 * @example
 * ```ts
 * import type { LogInterval } from "./task.ts";
 * const empty: LogInterval = { loss: 0, count: 0, units: 0, seconds: 0, gradNorm: 0 };
 * ```
 */
export interface LogInterval {
  /** Sum of the steps' losses. */
  loss: number;
  /** Steps. */
  count: number;
  /** Training units (tokens, clips) read. */
  units: number;
  /** Seconds in those steps. */
  seconds: number;
  /** The last step's gradient norm. */
  gradNorm: number;
}

/**
 * Checkpoint metadata: the clocks and counters of the run so far.
 *
 * @example
 * ```ts
 * import type { RunMeta } from "./task.ts";
 * const units = (m: RunMeta) => `${m.trainUnits} trained in ${m.trainSeconds.toFixed(0)} s`;
 * ```
 */
export interface RunMeta {
  /** The experiment's name. */
  readonly experiment: string;
  /** Wall-clock seconds of all sessions so far. */
  readonly elapsedSeconds: number;
  /** Seconds in training steps (batch reading included). */
  readonly trainSeconds: number;
  /** Training units read: tokens for language models, clips for classifiers. */
  readonly trainUnits: number;
  /** Training has ended; what remains is the final evaluation. */
  readonly trainingDone: boolean;
  /** What ended training: the task's budget, or `maxSeconds`; `null` while training. */
  readonly stoppedBy: string | null;
  /** Mean training loss over the last logged interval. */
  readonly lastTrainLoss: number | null;
  /** The open logging interval. */
  readonly interval?: LogInterval;
  /** SHA-256 of each data file the run reads, by file name (absent in older checkpoints). */
  readonly dataSha256?: Readonly<Record<string, string>>;
}

/**
 * Whether to score the test split: a note saying why not (it is recorded
 * in the results as `test_note`), or `null` to score it.
 *
 * @example
 * ```ts
 * import { testNote } from "./task.ts";
 * console.log(testNote(true, false, "test split absent: skipped")); // test split absent: skipped
 * console.log(testNote(true, true, "unused")); // null
 * ```
 */
export function testNote(enabled: boolean, present: boolean, absent: string): string | null {
  if (!enabled) return "test evaluation off (evaluation.test = false): skipped";
  return present ? null : absent;
}

/**
 * One step's batch, drawn by {@linkcode Task.next}.
 *
 * @example
 * ```ts
 * import type { TaskBatch } from "./task.ts";
 * const perStep = (b: TaskBatch) => b.units;
 * ```
 */
export interface TaskBatch {
  /** The model's input (token ids, or frames). The loop disposes it. */
  readonly tokens: Tensor;
  /** The targets. The loop disposes them. */
  readonly targets: Tensor;
  /** Training units in the batch (tokens, clips). */
  readonly units: number;
  /** What the progress line counts for it (tokens, frames). */
  readonly progress: number;
}

/**
 * The figures of a logged interval, from which a task builds its `train` record.
 *
 * @example
 * ```ts
 * import type { TrainFigures } from "./task.ts";
 * const rec = (f: TrainFigures) => ({ kind: "train", step: f.step, loss: f.loss });
 * ```
 */
export interface TrainFigures {
  /** The step just taken. */
  readonly step: number;
  /** Mean loss over the interval. */
  readonly loss: number;
  /** The step's learning rate. */
  readonly lr: number;
  /** The step's gradient norm before clipping. */
  readonly gradNorm: number;
  /** Training units read in the whole run so far. */
  readonly units: number;
  /** Units per second of training steps over the interval. */
  readonly unitsPerSecond: number;
  /** Wall-clock seconds of the run so far. */
  readonly elapsed: number;
}

/**
 * What the loop needs of a task.
 *
 * @example
 * ```ts
 * import type { Task } from "./task.ts";
 * const describeTask = (t: Task<{ kind: string; step: number }>) =>
 *   `${t.steps} steps of ${t.bpttSegments} segments`;
 * ```
 */
export interface Task<R extends LoopRecord> {
  /** Steps to take; the learning-rate schedule spans exactly these. */
  readonly steps: number;
  /** What ends training when the steps are done (`tokens`, `epochs`): results' `stopped_by`. */
  readonly budget: string;
  /** The progress line's unit (default `tokens`). */
  readonly progressUnit?: string;
  /** K: segments each step backpropagates through. */
  readonly bpttSegments: number;
  /** The schedule, optimizer and cadence. */
  readonly training: SharedTraining;
  /**
   * The next batch. Gets the training state and returns it, so that a task
   * may reset the carried memory (a new epoch, a fresh clip). `Left`: a
   * problem with the data, named (the run stops with `BadInput`).
   */
  next(ts: TrainState): Promise<E.Either<string, { ts: TrainState; batch: TaskBatch }>>;
  /** The dropout seed of the next step. */
  dropoutSeed(): number;
  /** The `train` record of a logged interval. */
  trainRecord(f: TrainFigures): R;
  /** A periodic validation's record, or `null` when the abort signal cut it short. */
  validate(step: number, params: Params, elapsed: () => number): Promise<R | null>;
  /** `curve.svg` from the records so far (`final`: the final validation score). */
  curve(records: readonly R[], final?: number): string;
  /** What a checkpoint records of the task: the data position and every generator's state. */
  checkpoint(trainUnits: number): Pick<Checkpoint, "data" | "rng">;
}

/**
 * An open run: its training state, clocks and records, and the operations
 * a runner needs around the loop. Call {@linkcode RunContext.close} at the end.
 *
 * @example
 * ```ts
 * import type { RunContext } from "./task.ts";
 * const steps = (ctx: RunContext<{ kind: string; step: number }>) => ctx.ts().step;
 * ```
 */
export interface RunContext<R extends LoopRecord> {
  /** The checkpoint resumed from and its file, or `null` for a fresh run. */
  readonly resumed: { readonly checkpoint: Checkpoint; readonly file: string } | null;
  /** The records of `metrics.jsonl` so far. */
  readonly records: readonly R[];
  /** The run folder. */
  readonly runDir: string;
  /** The current training state. */
  ts(): TrainState;
  /** The clocks and counters, as a checkpoint would record them now. */
  meta(): RunMeta;
  /** Wall-clock seconds of the run, all sessions. */
  elapsed(): number;
  /** Appends a record to `metrics.jsonl`. */
  appendRecord(r: R): Promise<void>;
  /** Writes `curve.svg` atomically. */
  writeCurve(svg: string): Promise<void>;
  /** A progress line (none when the options turn them off). */
  progress(total: number, label: string, unit?: string): Progress;
  /** Trains until the task's steps are done, `maxSeconds` passes, or the signal aborts. */
  train(task: Task<R>): Promise<E.Either<RunError, "done" | "interrupted">>;
  /** The `Interrupted` outcome at the current step. */
  interrupted<X>(): E.Either<RunError, Outcome<X>>;
  /** Writes `results.json` and returns `Completed`. */
  finish<X>(results: X): Promise<E.Either<RunError, Outcome<X>>>;
  /** Frees the training state and closes `metrics.jsonl`. */
  close(): void;
}

/**
 * What {@linkcode runTask} reads of an experiment.
 *
 * @example
 * ```ts
 * import type { RunnableExperiment } from "./task.ts";
 * const name = (x: RunnableExperiment) => x.name;
 * ```
 */
export interface RunnableExperiment {
  readonly name: string;
  readonly model: ModelSpec;
  readonly data: { readonly dir: string | null };
  readonly output: { readonly keepCheckpoints: number };
}

/**
 * What a task gives {@linkcode runTask} once its data is read and its model
 * compiled: everything the loop cannot know about the task.
 *
 * @example
 * ```ts
 * import type { TaskSetup } from "./task.ts";
 * const where = (s: TaskSetup<{ kind: string; step: number }, unknown>) => s.data.dir;
 * ```
 */
export interface TaskSetup<R extends LoopRecord, X> {
  /** The backend started and the model compiled (`startProgram` in `run_folder.ts`). */
  readonly started: { readonly program: Program; readonly backend: string };
  /**
   * The data folder (recorded in `config.json` as `data.dir`), and the
   * SHA-256 of the files a resumed run must find unchanged (see {@linkcode openRun}).
   */
  readonly data: { readonly dir: string; readonly sha256: Readonly<Record<string, string>> };
  /** A step's batch for the memory estimate, and the fields that size it (for the message). */
  readonly batch: { readonly rows: number; readonly positions: number; readonly fields: string };
  /** The training state of a fresh run. */
  readonly fresh: () => TrainState;
  /** The task, given the open run (its resumed checkpoint restores the task's generators). */
  readonly task: (run: RunContext<R>) => E.Either<RunError, Task<R>>;
  /** The final evaluation and results, once training is done. */
  readonly evaluate: (run: RunContext<R>, task: Task<R>) => Promise<E.Either<RunError, Outcome<X>>>;
}
