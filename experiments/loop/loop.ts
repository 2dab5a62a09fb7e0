/**
 * The training loop, written once for every task. A task (language
 * modelling, clip classification, …) says what a batch is, what a `train`
 * and a `valid` record hold, how it validates and what its curve shows;
 * {@linkcode openRun} and {@linkcode RunContext.train} do the rest: the
 * session clock, resume from the newest checkpoint, `metrics.jsonl`, the
 * progress line, the learning-rate schedule and AdamW, periodic validation
 * and checkpoints, the `maxSeconds` guard, the abort signal (a checkpoint,
 * then `Interrupted`), and a non-finite loss (an `error` record, `RunFailed`).
 *
 * A runner then reads the final scores and writes `results.json` with
 * {@linkcode RunContext.finish}. Adding a task is a dataset reader plus a
 * task file that builds a {@linkcode Task}; no loop is copied.
 *
 * @example The shape of a runner
 * ```ts
 * import type { Task } from "./loop.ts";
 * type Rec = { kind: "train" | "valid"; step: number; loss: number };
 * const budget = (task: Task<Rec>) => `${task.steps} steps, then stopped by ${task.budget}`;
 * ```
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import type { Params, Program } from "../../core/program.ts";
import type { AdamWConfig } from "../../core/optim.ts";
import { disposeTraining, NonFiniteLoss, trainOn, type TrainState } from "../../core/train.ts";
import type { Tensor } from "../../ops/tf.ts";
import { writeCheckpoint } from "./checkpoint.ts";
import type { Checkpoint } from "./checkpoint_format.ts";
import { learningRate, type SharedTraining } from "../experiment.ts";
import { createProgress, type Progress } from "./progress.ts";
import type { ModelSpec } from "../../spec/types.ts";
import { estimateTrainingMemory, memoryLimit, memoryProblem } from "./memory.ts";
import {
  checkedExperiment,
  checkRunFolder,
  describe,
  failed,
  lockRunFolder,
  makeYielder,
  prepareRunFolder,
  readMetrics,
  resumeTraining,
  type RunError,
  type SessionOptions,
  writeAtomic,
} from "./run_folder.ts";
import { snapshotTraining } from "./snapshot.ts";

/**
 * A `metrics.jsonl` record: tasks define their `train` and `valid` records;
 * the loop adds `error` records of its own.
 *
 * @example
 * ```ts
 * import type { LoopRecord } from "./loop.ts";
 * const r: LoopRecord = { kind: "train", step: 10 };
 * ```
 */
export interface LoopRecord {
  /** `train`, `valid` or `error`. */
  readonly kind: string;
  /** The step it belongs to. */
  readonly step: number;
}

/** The loop's own record: a step that failed. */
interface ErrorRecord {
  readonly kind: "error";
  readonly step: number;
  readonly message: string;
}

/**
 * How a run ended: completed with results, or interrupted (by the abort
 * signal) after saving a checkpoint it can resume from.
 *
 * @example
 * ```ts
 * import type { Outcome } from "./loop.ts";
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
 * import type { LogInterval } from "./loop.ts";
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
 * import type { RunMeta } from "./loop.ts";
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
 * Reads checkpoint metadata, including that of runs written before the loop
 * was shared (`trainTokens` / `trainDraws`, interval `tokens` / `clips`).
 * `null` when `u` is not run metadata.
 *
 * @example
 * ```ts
 * import { runMetaOf } from "./loop.ts";
 * const old = { experiment: "ptb", elapsedSeconds: 1, trainSeconds: 1, trainTokens: 1400, trainingDone: false };
 * console.log(runMetaOf(old)?.trainUnits); // 1400
 * ```
 */
export function runMetaOf(u: unknown): RunMeta | null {
  if (typeof u !== "object" || u === null) return null;
  const m = u as Record<string, unknown>;
  const units = m.trainUnits ?? m.trainTokens ?? m.trainDraws;
  if (
    typeof m.experiment !== "string" || typeof m.elapsedSeconds !== "number" ||
    typeof m.trainSeconds !== "number" || typeof units !== "number" ||
    typeof m.trainingDone !== "boolean"
  ) return null;
  const iv = m.interval as Record<string, number> | undefined;
  return {
    experiment: m.experiment,
    elapsedSeconds: m.elapsedSeconds,
    trainSeconds: m.trainSeconds,
    trainUnits: units,
    trainingDone: m.trainingDone,
    stoppedBy: typeof m.stoppedBy === "string" ? m.stoppedBy : null,
    lastTrainLoss: typeof m.lastTrainLoss === "number" ? m.lastTrainLoss : null,
    ...(typeof m.dataSha256 === "object" && m.dataSha256 !== null
      ? { dataSha256: m.dataSha256 as Record<string, string> }
      : {}),
    ...(iv === undefined || typeof iv !== "object" ? {} : {
      interval: {
        loss: iv.loss,
        count: iv.count,
        units: iv.units ?? iv.tokens ?? iv.clips,
        seconds: iv.seconds,
        gradNorm: iv.gradNorm,
      },
    }),
  };
}

const isRunMeta = (u: unknown): u is RunMeta => runMetaOf(u) !== null;

/** The first file whose recorded hash differs from its hash now (files absent now are skipped). */
const changedData = (
  was: Readonly<Record<string, string>>,
  now: Readonly<Record<string, string>>,
): { file: string; was: string; now: string } | null => {
  for (const [file, hash] of Object.entries(was)) {
    const current = now[file];
    if (current !== undefined && current !== hash) return { file, was: hash, now: current };
  }
  return null;
};

/**
 * The AdamW settings of one step, from a task's training settings.
 *
 * @example
 * ```ts
 * import { adamwOf } from "./loop.ts";
 * import { presetExperiment } from "../presets.ts";
 * console.log(adamwOf(presetExperiment("ptb").training).clipNorm); // 0.25
 * ```
 */
export function adamwOf(training: SharedTraining): AdamWConfig {
  return {
    beta1: training.beta1,
    beta2: training.beta2,
    eps: training.eps,
    weightDecay: training.weightDecay,
    clipNorm: training.clipNorm,
    cayleyRefresh: training.cayleyRefresh,
  };
}

/**
 * Whether to score the test split: a note saying why not (it is recorded
 * in the results as `test_note`), or `null` to score it.
 *
 * @example
 * ```ts
 * import { testNote } from "./loop.ts";
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
 * import type { TaskBatch } from "./loop.ts";
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
 * import type { TrainFigures } from "./loop.ts";
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
 * import type { Task } from "./loop.ts";
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
 * import type { RunContext } from "./loop.ts";
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
 * Opens a run in a checked and prepared run folder: resumes the newest
 * checkpoint (`options.resume`) or starts from `fresh()`, and keeps the
 * records of `metrics.jsonl` up to the resumed step.
 *
 * @example
 * ```ts
 * import type { openRun } from "./loop.ts";
 * type Opened = Awaited<ReturnType<typeof openRun>>;
 * ```
 */
export async function openRun<R extends LoopRecord>(p: {
  readonly runDir: string;
  /** The experiment's name (a checkpoint of another one is refused). */
  readonly experiment: string;
  readonly program: Program;
  readonly options: SessionOptions;
  readonly keepCheckpoints: number;
  /** The training state of a fresh run (not called on resume). */
  readonly fresh: () => TrainState;
  /** The backend label, for progress lines. */
  readonly backend: string;
  /**
   * SHA-256 of each data file by name, as read now: recorded by a fresh run;
   * a resumed run refuses a file whose hash changed since.
   */
  readonly dataSha256: Readonly<Record<string, string>>;
  /** Where the data files are (for messages). */
  readonly dataDir: string;
}): Promise<E.Either<RunError, RunContext<R>>> {
  const sessionStart = performance.now();
  const { runDir, program, options: opts } = p;
  const log = opts.log ?? ((m: string) => console.error(m));
  const metricsFile = join(runDir, "metrics.jsonl");
  let ts: TrainState;
  let meta: RunMeta;
  let resumed: RunContext<R>["resumed"] = null;
  if (opts.resume) {
    const r = await resumeTraining(program, runDir, p.experiment, isRunMeta, log);
    if (E.isLeft(r)) return r;
    meta = runMetaOf(r.right.meta) as RunMeta;
    const changed = changedData(meta.dataSha256 ?? {}, p.dataSha256);
    if (changed !== null) {
      disposeTraining(program, r.right.ts);
      return E.left({
        _tag: "BadInput",
        message: `${join(p.dataDir, changed.file)} changed since the run started ` +
          `(SHA-256 was ${changed.was}, now ${changed.now}): resuming would train on other ` +
          `data than the checkpoint's; restore the file, or start a new run`,
      });
    }
    ts = r.right.ts;
    resumed = { checkpoint: r.right.checkpoint, file: r.right.file };
    log(`resuming ${runDir} at step ${r.right.checkpoint.step} from ${r.right.file}`);
  } else {
    ts = p.fresh();
    meta = {
      experiment: p.experiment,
      elapsedSeconds: 0,
      trainSeconds: 0,
      trainUnits: 0,
      trainingDone: false,
      stoppedBy: null,
      lastTrainLoss: null,
      dataSha256: p.dataSha256,
    };
  }
  // readMetrics drops `error` records: a resumed run redoes the step that failed.
  const records = await readMetrics<R>(metricsFile, ts.step, meta.trainingDone);
  if (meta.trainingDone) log(`${p.experiment}: training was complete; evaluating`);
  try {
    await writeAtomic(metricsFile, records.map((r) => JSON.stringify(r) + "\n").join(""));
  } catch (e) {
    disposeTraining(program, ts);
    return failed(`${metricsFile}: cannot write: ${describe(e)}`, e);
  }
  const metrics = await Deno.open(metricsFile, { append: true, create: true });
  const encoder = new TextEncoder();
  const elapsedAtStart = meta.elapsedSeconds;
  const session = { trainSeconds: meta.trainSeconds, trainUnits: meta.trainUnits };
  const interval: LogInterval = meta.interval === undefined
    ? { loss: 0, count: 0, units: 0, seconds: 0, gradNorm: 0 }
    : { ...meta.interval };
  const elapsed = () => elapsedAtStart + (performance.now() - sessionStart) / 1000;
  const currentMeta = (): RunMeta => ({
    ...meta,
    interval: { ...interval },
    elapsedSeconds: elapsed(),
    trainSeconds: session.trainSeconds,
    trainUnits: session.trainUnits,
  });
  const append = async (r: R | ErrorRecord): Promise<void> => {
    if (r.kind !== "error") records.push(r as R);
    const bytes = encoder.encode(JSON.stringify(r) + "\n");
    for (let done = 0; done < bytes.length;) done += await metrics.write(bytes.subarray(done));
  };
  const writeCurve = (svg: string) => writeAtomic(join(runDir, "curve.svg"), svg);
  const progress = (total: number, label: string, unit?: string): Progress =>
    opts.progress === false ? { update: () => {}, done: () => {} } : createProgress({
      total,
      label,
      ...(unit === undefined ? {} : { unit }),
      ...(opts.progress?.write === undefined ? {} : { write: opts.progress.write }),
      ...(opts.progress?.isTty === undefined ? {} : { isTty: opts.progress.isTty }),
    });
  const interrupted = <X>(): E.Either<RunError, Outcome<X>> =>
    E.right({
      _tag: "Interrupted",
      runDir,
      step: ts.step,
      message: `interrupted; resume with --resume ${runDir}`,
    });

  const train = async (task: Task<R>): Promise<E.Either<RunError, "done" | "interrupted">> => {
    if (meta.trainingDone) return E.right("done");
    const save = async (): Promise<E.Either<RunError, string>> => {
      const snap = snapshotTraining(program, ts);
      const w = await writeCheckpoint(join(runDir, "checkpoints"), {
        step: ts.step,
        ...task.checkpoint(session.trainUnits),
        optimizer: snap.optimizer,
        params: snap.params,
        memory: snap.memory,
        meta: currentMeta(),
      }, { keep: p.keepCheckpoints });
      return E.isLeft(w) ? failed(w.left.message, w.left) : E.right(w.right.file);
    };
    const { steps, training } = task;
    const maxSeconds = opts.maxSeconds ?? training.maxSeconds;
    const adamw = adamwOf(training);
    const pause = makeYielder();
    const bar = progress(steps, `train [${p.backend}]`, task.progressUnit);
    bar.update({ step: ts.step, tokens: 0 });
    let stoppedBy = task.budget;
    while (ts.step < steps) {
      if (opts.signal?.aborted) {
        bar.done();
        const s = await save();
        return E.isLeft(s) ? s : E.right("interrupted");
      }
      if (maxSeconds !== null && elapsed() >= maxSeconds) {
        stoppedBy = "maxSeconds";
        log(`maxSeconds (${maxSeconds} s) reached at step ${ts.step} of ${steps}: training stops`);
        break;
      }
      const step = ts.step + 1;
      const lr = learningRate(training, { step, totalSteps: steps });
      const t0 = performance.now();
      const drawn = await task.next(ts);
      if (E.isLeft(drawn)) {
        bar.done();
        await append({ kind: "error", step, message: drawn.left });
        return E.left({ _tag: "BadInput", message: drawn.left });
      }
      ts = drawn.right.ts;
      const { batch } = drawn.right;
      let out: ReturnType<typeof trainOn>;
      try {
        out = trainOn(program, ts, batch, {
          lr,
          bpttSegments: task.bpttSegments,
          seed: task.dropoutSeed(),
          adamw,
        });
      } catch (e) {
        bar.done();
        const message = e instanceof NonFiniteLoss
          ? `step ${e.step}: the training loss is ${e.loss}; training stopped before the ` +
            `parameters were updated (nothing was saved for this step)`
          : `step ${step} failed: ${describe(e)}`;
        await append({ kind: "error", step, message });
        return failed(message, e);
      } finally {
        batch.tokens.dispose();
        batch.targets.dispose();
      }
      const dt = (performance.now() - t0) / 1000;
      ts = out.next;
      session.trainSeconds += dt;
      session.trainUnits += batch.units;
      interval.loss += out.loss;
      interval.gradNorm = out.gradNorm;
      interval.count++;
      interval.units += batch.units;
      interval.seconds += dt;
      opts.onStep?.({ step, loss: out.loss, lr, gradNorm: out.gradNorm });
      bar.update({ step, loss: out.loss, tokens: batch.progress });
      if (step % training.logEvery === 0 || step === steps) {
        const loss = interval.loss / interval.count;
        meta = { ...meta, lastTrainLoss: loss };
        await append(task.trainRecord({
          step,
          loss,
          lr,
          gradNorm: interval.gradNorm,
          units: session.trainUnits,
          unitsPerSecond: interval.units / interval.seconds,
          elapsed: elapsed(),
        }));
        Object.assign(interval, { loss: 0, count: 0, units: 0, seconds: 0 });
      }
      if (training.validEvery > 0 && step % training.validEvery === 0 && step < steps) {
        const v = await task.validate(step, ts.params, elapsed);
        if (v !== null) {
          await append(v);
          await writeCurve(task.curve(records));
        }
      }
      const ckEvery = training.checkpointEvery;
      if (ckEvery > 0 && step % ckEvery === 0 && step < steps) {
        const s = await save();
        if (E.isLeft(s)) return s;
      }
      await pause();
    }
    bar.done();
    meta = { ...meta, trainingDone: true, stoppedBy };
    const s = await save();
    return E.isLeft(s) ? s : E.right("done");
  };

  return E.right({
    resumed,
    records,
    runDir,
    ts: () => ts,
    meta: currentMeta,
    elapsed,
    appendRecord: append,
    writeCurve,
    progress,
    train,
    interrupted,
    finish: async <X>(results: X): Promise<E.Either<RunError, Outcome<X>>> => {
      try {
        await writeAtomic(join(runDir, "results.json"), JSON.stringify(results, null, 2) + "\n");
      } catch (e) {
        return failed(`${runDir}: cannot write results: ${describe(e)}`, e);
      }
      return E.right({ _tag: "Completed", runDir, results });
    },
    close: () => {
      disposeTraining(program, ts);
      metrics.close();
    },
  });
}

/**
 * What {@linkcode runTask} reads of an experiment.
 *
 * @example
 * ```ts
 * import type { RunnableExperiment } from "./loop.ts";
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
 * import type { TaskSetup } from "./loop.ts";
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

/**
 * Runs a task in its folder, the same way for every task: decodes the
 * experiment again and takes a first look at the folder (a wrong `--resume`
 * is said before any data is read), lets the task read its data and compile
 * its model (`prepare`), refuses a model that cannot fit before anything is
 * allocated or written, locks the folder, writes `config.json`, resumes or
 * starts the run, trains, and evaluates; the lock and the training state are
 * released on every path.
 *
 * @example
 * ```ts
 * import type { runTask } from "./loop.ts";
 * type Ran = Awaited<ReturnType<typeof runTask>>;
 * ```
 */
export async function runTask<R extends LoopRecord, X, Exp extends RunnableExperiment>(
  experiment: Exp,
  options: SessionOptions,
  decode: (u: unknown) => E.Either<{ readonly message: string }, Exp>,
  prepare: (exp: Exp, log: (m: string) => void) => Promise<E.Either<RunError, TaskSetup<R, X>>>,
): Promise<E.Either<RunError, Outcome<X>>> {
  const log = options.log ?? ((m: string) => console.error(m));
  const checked = await checkedExperiment(experiment, decode, options);
  if (E.isLeft(checked)) return checked;
  const exp = checked.right;
  const setup = await prepare(exp, log);
  if (E.isLeft(setup)) return setup;
  const p = setup.right;
  const { program, backend } = p.started;
  const memory = memoryProblem(
    exp.model,
    estimateTrainingMemory(exp.model, program.paramCount, p.batch),
    memoryLimit(options.backend ?? "wasm"),
    p.batch.fields,
  );
  if (memory !== null) return E.left({ _tag: "BadInput", message: memory });
  // From here on the folder is this process's alone.
  const runDir = options.runDir;
  const lock = await lockRunFolder(runDir);
  if (E.isLeft(lock)) return lock;
  try {
    // Another run may have begun between the first look and the lock.
    const folder = await checkRunFolder(runDir, exp, options.resume === true, decode);
    if (E.isLeft(folder)) return folder;
    const config = { ...exp, data: { ...exp.data, dir: p.data.dir } };
    const prepared = await prepareRunFolder(runDir, config, options.resume === true);
    if (E.isLeft(prepared)) return prepared;
    const opened = await openRun<R>({
      runDir,
      experiment: exp.name,
      program,
      options,
      keepCheckpoints: exp.output.keepCheckpoints,
      fresh: p.fresh,
      backend,
      dataSha256: p.data.sha256,
      dataDir: p.data.dir,
    });
    if (E.isLeft(opened)) return opened;
    const run = opened.right;
    try {
      const task = p.task(run);
      if (E.isLeft(task)) return task;
      const trained = await run.train(task.right);
      if (E.isLeft(trained)) return trained;
      if (trained.right === "interrupted") return run.interrupted();
      return await p.evaluate(run, task.right);
    } finally {
      run.close();
    }
  } finally {
    await lock.right.release();
  }
}
