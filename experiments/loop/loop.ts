/**
 * The training loop, written once for every task. A task (language
 * modelling, clip classification, …) says what a batch is, what a `train`
 * and a `valid` record hold, how it validates and what its curve shows;
 * {@linkcode openRun} and `RunContext.train` do the rest: the
 * session clock, resume from the newest checkpoint, `metrics.jsonl`, the
 * progress line, the learning-rate schedule and AdamW, periodic validation
 * and checkpoints, the `maxSeconds` guard, the abort signal (a checkpoint,
 * then `Interrupted`), and a non-finite loss (an `error` record, `RunFailed`).
 *
 * A runner then reads the final scores and writes `results.json` with
 * `RunContext.finish`. Adding a task is a dataset reader plus a
 * task file that builds a `Task`; no loop is copied.
 *
 * The task interface (`Task`, `RunContext`, `TaskSetup`) is in `task.ts`.
 *
 * @example A task's optimizer settings, as the loop reads them
 * ```ts
 * import { adamwOf } from "./loop.ts";
 * import { presetExperiment } from "../presets.ts";
 * console.log(adamwOf(presetExperiment("ptb").training).beta2); // 0.999
 * ```
 *
 * @module
 */
import { describeError } from "../../spec/errors.ts";
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import type { Program } from "../../core/program.ts";
import type { AdamWConfig } from "../../core/optim.ts";
import { disposeTraining, NonFiniteLoss, trainOn, type TrainState } from "../../core/train.ts";
import { writeCheckpoint } from "./checkpoint.ts";
import { learningRate, type SharedTraining } from "../experiment.ts";
import { createProgress, type Progress } from "./progress.ts";
import { estimateTrainingMemory, memoryLimit, memoryProblem } from "./memory.ts";
import {
  checkedExperiment,
  checkRunFolder,
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
import type {
  LogInterval,
  LoopRecord,
  Outcome,
  RunContext,
  RunMeta,
  RunnableExperiment,
  Task,
  TaskSetup,
} from "./task.ts";

/** The loop's own record: a step that failed. */
interface ErrorRecord {
  readonly kind: "error";
  readonly step: number;
  readonly message: string;
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
    return failed(`${metricsFile}: cannot write: ${describeError(e)}`, e);
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
          : `step ${step} failed: ${describeError(e)}`;
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
        return failed(`${runDir}: cannot write results: ${describeError(e)}`, e);
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

/**
 * A task's runner, made from its experiment codec and its `prepare`: the
 * function a task exports (`runExperiment`, `runSmarthome`), which hands
 * {@linkcode runTask} the experiment, the options and `prepare` bound to them.
 *
 * @example
 * ```ts
 * import type { taskRunner } from "./loop.ts";
 * type Runner = ReturnType<typeof taskRunner>;
 * ```
 */
export function taskRunner<
  R extends LoopRecord,
  X,
  Exp extends RunnableExperiment,
  O extends SessionOptions,
>(
  decode: (u: unknown) => E.Either<{ readonly message: string }, Exp>,
  prepare: (
    exp: Exp,
    opts: O,
    log: (m: string) => void,
  ) => Promise<E.Either<RunError, TaskSetup<R, X>>>,
): (experiment: Exp, opts: O) => Promise<E.Either<RunError, Outcome<X>>> {
  return (experiment, opts) =>
    runTask(experiment, opts, decode, (exp, log) => prepare(exp, opts, log));
}
