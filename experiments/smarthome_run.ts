/**
 * The clip-classification runner: trains a {@linkcode SmarthomeExperiment}
 * on a dataset of per-frame features, evaluates it and writes a run folder.
 * A function of its inputs that returns its outcome (no `Deno.exit`);
 * `cli.ts` maps outcomes to exit codes.
 *
 * A run folder holds:
 *
 * | file | content |
 * | --- | --- |
 * | `config.json` | the experiment as run (data directory resolved) |
 * | `metrics.jsonl` | `train` records every `logEvery` steps (loss, lr, clips/s, frames/s), `valid` at each validation (accuracy, mean per-class accuracy, loss), `error` if a step fails |
 * | `results.json` | {@linkcode SmarthomeResults}: valid and test mean per-class and overall accuracy, per-class accuracy, parameters, FLOPs, throughput, time |
 * | `confusion_valid.csv`, `confusion_test.csv` | confusion matrices (rows true, columns predicted) |
 * | `confusion_valid.svg`, `confusion_test.svg` | the same as pictures |
 * | `curve.svg` | train loss and valid mean per-class accuracy against step |
 * | `checkpoints/` | the last checkpoints, for `--resume` |
 *
 * Each step draws B training clips (class-balanced by default), reads each
 * as `clipFrames` frames (resampled, standardised), runs them segment by
 * segment from a fresh memory and takes the cross-entropy of the classifier
 * on the state after the last segment, backpropagating through every
 * segment of the clip. A checkpoint holds the parameters, the optimizer,
 * and the batch and dropout generators, so a resumed run draws the batches
 * the uninterrupted one would have.
 *
 * @example Train on a generated dataset
 * ```ts
 * import { join } from "node:path";
 * import { override } from "./args.ts";
 * import { writeSampleDataset } from "./smarthome.ts";
 * import { smarthomePreset } from "./smarthome_experiment.ts";
 * import { runSmarthome } from "./smarthome_run.ts";
 *
 * const dir = await Deno.makeTempDir();
 * await writeSampleDataset(join(dir, "data"), { clips: 80, dim: 8, classes: 4, minFrames: 16, maxFrames: 24 });
 * const base = smarthomePreset("smarthome", { quick: true });
 * const exp = override(base, {
 *   model: { dModel: 16, nHeads: 2, dFF: 32, nLayers: 1, segmentLen: 4, input: { _tag: "features", dim: 8 },
 *     readout: { _tag: "classifier", nClasses: 4, pool: "memory" }, memory: { dMemory: 16 } },
 *   data: { dir: join(dir, "data"), clipFrames: 16 },
 *   training: { epochs: 1, batchSize: 8 },
 * });
 * const r = await runSmarthome(exp, { runDir: join(dir, "run"), progress: false, log: () => {} });
 * if (r._tag === "Right" && r.right._tag === "Completed") console.log(r.right.results.test_mean_class_accuracy);
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import type { Program } from "../core/program.ts";
import { compile } from "../core/compile.ts";
import {
  disposeTraining,
  NonFiniteLoss,
  startTraining,
  trainOn,
  type TrainState,
} from "../core/train.ts";
import { tf } from "../ops/tf.ts";
import type { Either } from "../spec/either.ts";
import { writeCheckpoint } from "./checkpoint.ts";
import {
  type ClassificationScore,
  type ClipPredictions,
  confusionCsv,
  confusionMatrix,
  predictClips,
  scoreConfusion,
} from "./classification.ts";
import { learningRate } from "./experiment.ts";
import { createProgress, type Progress } from "./progress.ts";
import { createRng, isRngState, restoreRng, type Rng } from "./rng.ts";
import {
  badInput,
  checkRunFolder,
  describe,
  failed,
  prepareRunFolder,
  readMetrics,
  resumeTraining,
  type RunError,
  type RunOptions,
  startProgram,
  writeAtomic,
} from "./run.ts";
import {
  classCounts,
  type ClipRecord,
  type ClipSplit,
  ClipStore,
  type ClipTable,
  drawBatch,
  featureStats,
  readClipTable,
  splitClips,
} from "./smarthome.ts";
import {
  classifierSteps,
  decodeSmarthomeExperiment,
  segmentsPerClip,
  type SmarthomeExperiment,
} from "./smarthome_experiment.ts";
import { snapshotTraining } from "./snapshot.ts";
import { confusionMatrixSvg, type CurvePoint, learningCurveSvg } from "./svg.ts";

/** The environment variable naming the dataset directory when `data.dir` is null. */
export const SMARTHOME_DIR_ENV = "CRT_SMARTHOME_DIR";

// ---------------------------------------------------------------------------
// Outcomes

/**
 * Per-class accuracy on one set, in `results.json`.
 *
 * @example
 * ```ts
 * import type { ClassResult } from "./smarthome_run.ts";
 * const r: ClassResult = { class: "Walk", clips: 40, accuracy: 0.9 };
 * ```
 */
export interface ClassResult {
  /** Class name. */
  readonly class: string;
  /** Clips of the class in the set. */
  readonly clips: number;
  /** Their accuracy, or `null` without clips. */
  readonly accuracy: number | null;
}

/**
 * What a finished run reports (`results.json`). Accuracies are fractions in
 * [0, 1]; the mean per-class accuracy averages over the classes present in
 * the set. FLOPs count 2 per multiply-add, per frame (a frame is a model
 * position) and per clip.
 *
 * @example
 * ```ts
 * import type { SmarthomeResults } from "./smarthome_run.ts";
 * const line = (r: SmarthomeResults) =>
 *   `${r.experiment}: test mean per-class ${((r.test_mean_class_accuracy ?? NaN) * 100).toFixed(1)} %`;
 * ```
 */
export interface SmarthomeResults {
  /** The experiment's name. */
  readonly experiment: string;
  /** Model kind: `crt`, `transformer` or `xl`. */
  readonly model: string;
  /** The protocol's name. */
  readonly protocol: string;
  /** Class names, in label order. */
  readonly classes: readonly string[];
  /** S: frames per segment. */
  readonly segment_len: number;
  /** L: frames per clip as the model reads it. */
  readonly clip_frames: number;
  /** K = L / S. */
  readonly segments_per_clip: number;
  /** Mean per-class accuracy on the validation set. */
  readonly valid_mean_class_accuracy: number;
  /** Overall accuracy on the validation set. */
  readonly valid_accuracy: number;
  /** Mean NLL of the true class on the validation set. */
  readonly valid_loss: number;
  /** Validation clips. */
  readonly valid_clips: number;
  /** Mean per-class accuracy on the test set, or `null` (see `test_note`). */
  readonly test_mean_class_accuracy: number | null;
  /** Overall accuracy on the test set, or `null`. */
  readonly test_accuracy: number | null;
  /** Mean NLL on the test set, or `null`. */
  readonly test_loss: number | null;
  /** Test clips, or `null`. */
  readonly test_clips: number | null;
  /** Why the test set was not evaluated, else `null`. */
  readonly test_note: string | null;
  /** Per-class accuracy on the test set (the validation set when there is no test). */
  readonly per_class: readonly ClassResult[];
  /** Which set `per_class` is from. */
  readonly per_class_set: "test" | "valid";
  /** Scalars in the trained parameters. */
  readonly params: number;
  /** FLOPs per frame of a forward pass. */
  readonly flops_per_frame_forward: number;
  /** FLOPs per frame of a training step. */
  readonly flops_per_frame_train: number;
  /** FLOPs to classify one clip (L frames). */
  readonly flops_per_clip_forward: number;
  /** Training clips (after validation was carved out). */
  readonly train_clips: number;
  /** Clips drawn for training (steps · B). */
  readonly train_draws: number;
  /** Optimizer steps taken. */
  readonly train_steps: number;
  /** train_draws / train_clips. */
  readonly epochs: number;
  /** How batches were drawn. */
  readonly balance: string;
  /** What ended training. */
  readonly stopped_by: "epochs" | "maxSeconds";
  /** Mean training loss over the last logged interval. */
  readonly final_train_loss: number | null;
  /** Training clips per second of training steps. */
  readonly clips_per_second: number;
  /** Training frames per second (clips/s · L). */
  readonly frames_per_second: number;
  /** Seconds in training steps (batch reading included). */
  readonly train_seconds: number;
  /** Seconds in the final evaluation. */
  readonly eval_seconds: number;
  /** Wall-clock seconds of the whole run (all sessions). */
  readonly wall_seconds: number;
  /** The compute backend. */
  readonly backend: string;
  /** The dataset directory. */
  readonly data_dir: string;
  /** F: features per frame. */
  readonly feature_dim: number;
  /** The files written beside `results.json`. */
  readonly files: readonly string[];
}

/**
 * How a run ended.
 *
 * @example
 * ```ts
 * import type { SmarthomeOutcome } from "./smarthome_run.ts";
 * const say = (o: SmarthomeOutcome) => o._tag === "Completed" ? o.results.test_accuracy : o.message;
 * ```
 */
export type SmarthomeOutcome =
  | { readonly _tag: "Completed"; readonly runDir: string; readonly results: SmarthomeResults }
  | {
    readonly _tag: "Interrupted";
    readonly runDir: string;
    /** Steps done (and saved). */
    readonly step: number;
    /** `interrupted; resume with --resume RUN_DIR`. */
    readonly message: string;
  };

/**
 * Options of {@linkcode runSmarthome}: those of the language-model runner,
 * with an already read dataset in place of a corpus.
 *
 * @example
 * ```ts
 * import type { SmarthomeRunOptions } from "./smarthome_run.ts";
 * const opts: SmarthomeRunOptions = { runDir: "runs/smarthome-test", progress: false };
 * ```
 */
export type SmarthomeRunOptions = Omit<RunOptions, "corpus"> & {
  /** An already read dataset; else read from `data.dir`. */
  readonly table?: ClipTable;
};

// ---------------------------------------------------------------------------
// Helpers

/** The dataset directory an experiment names: `data.dir`, else `$CRT_SMARTHOME_DIR`. */
function dataDir(exp: SmarthomeExperiment): Either<string, string> {
  if (exp.data.dir !== null) return E.right(exp.data.dir);
  const env = Deno.env.get(SMARTHOME_DIR_ENV);
  if (env !== undefined && env !== "") return E.right(env);
  return E.left(
    `no dataset: pass --data DIR (or set ${SMARTHOME_DIR_ENV}); DIR holds classes.txt, ` +
      `clips.csv and features/<clip_id>.npy (README.md, "Toyota Smarthome"; a generated ` +
      `one: deno task smarthome:sample DIR)`,
  );
}

/**
 * Reads and checks an experiment's dataset and splits it by its protocol,
 * checking that F and the class count fit the model. `Left`: a message
 * naming the file, line or field to fix.
 *
 * @example
 * ```ts
 * import { loadSmarthomeData } from "./smarthome_run.ts";
 * import { smarthomePreset } from "./smarthome_experiment.ts";
 * const exp = smarthomePreset("smarthome");
 * const r = await loadSmarthomeData({ ...exp, data: { ...exp.data, dir: "/nonexistent" } });
 * if (r._tag === "Left") console.log(r.left.split("\n")[0]);
 * ```
 */
export async function loadSmarthomeData(
  exp: SmarthomeExperiment,
  table?: ClipTable,
): Promise<Either<string, { table: ClipTable; split: ClipSplit }>> {
  let t = table;
  if (t === undefined) {
    const dir = dataDir(exp);
    if (E.isLeft(dir)) return dir;
    const read = await readClipTable(dir.right);
    if (E.isLeft(read)) return E.left(read.left.message);
    t = read.right;
  }
  const input = exp.model.input;
  if (input?._tag === "features" && input.dim !== t.featureDim) {
    return E.left(
      `model.input.dim: ${input.dim}, but the clips in ${t.dir} have ${t.featureDim} features ` +
        `per frame (set --set model.input.dim=${t.featureDim})`,
    );
  }
  const split = splitClips(t, exp.data.protocol, { seed: exp.seed });
  if (E.isLeft(split)) return split;
  const k = split.right.classes.length;
  if (exp.model.readout._tag === "classifier" && exp.model.readout.nClasses !== k) {
    return E.left(
      `model.readout.nClasses: ${exp.model.readout.nClasses}, but protocol ` +
        `${exp.data.protocol.name} on ${t.dir} has ${k} classes (set ` +
        `--set model.readout.nClasses=${k})`,
    );
  }
  return E.right({ table: t, split: split.right });
}

/**
 * Parameters and FLOPs of an experiment's model, per frame and per clip, as
 * `--dry-run` prints them. Needs a started backend.
 *
 * @example
 * ```ts
 * import { ensureBackend } from "../ops/backend.ts";
 * import { smarthomePreset } from "./smarthome_experiment.ts";
 * import { smarthomeCosts } from "./smarthome_run.ts";
 * await ensureBackend();
 * const c = smarthomeCosts(smarthomePreset("smarthome"));
 * if (c._tag === "Right") console.log(c.right.flops_per_clip_forward > 0); // true
 * ```
 */
export function smarthomeCosts(exp: SmarthomeExperiment): Either<
  string,
  {
    params: number;
    flops_per_frame_forward: number;
    flops_per_frame_train: number;
    flops_per_clip_forward: number;
    flops_per_clip_train: number;
    segments_per_clip: number;
  }
> {
  const p = compile(exp.model);
  if (E.isLeft(p)) return E.left(`model: cannot compile (${p.left.stage}): ${p.left.message}`);
  const l = exp.data.clipFrames;
  return E.right({
    params: p.right.paramCount,
    flops_per_frame_forward: p.right.flops.forwardPerToken,
    flops_per_frame_train: p.right.flops.trainPerToken,
    flops_per_clip_forward: p.right.flops.forwardPerToken * l,
    flops_per_clip_train: p.right.flops.trainPerToken * l,
    segments_per_clip: segmentsPerClip(exp),
  });
}

/** A metrics.jsonl record. */
type MetricsRecord =
  | {
    readonly kind: "train";
    readonly step: number;
    readonly epoch: number;
    readonly loss: number;
    readonly lr: number;
    readonly grad_norm: number;
    readonly clips: number;
    readonly clips_per_second: number;
    readonly frames_per_second: number;
    readonly elapsed: number;
  }
  | {
    readonly kind: "valid";
    readonly step: number;
    readonly loss: number;
    readonly accuracy: number;
    readonly mean_class_accuracy: number;
    readonly clips: number;
    readonly elapsed: number;
  }
  | { readonly kind: "error"; readonly step: number; readonly message: string };

/** Checkpoint metadata. */
interface RunMeta {
  readonly experiment: string;
  readonly elapsedSeconds: number;
  readonly trainSeconds: number;
  readonly trainDraws: number;
  readonly trainingDone: boolean;
  readonly stoppedBy: "epochs" | "maxSeconds" | null;
  readonly lastTrainLoss: number | null;
  /** The open logging interval, so that records resume exactly. */
  readonly interval?: LogInterval;
}

/** Sums over the steps since the last `train` record. */
interface LogInterval {
  loss: number;
  count: number;
  clips: number;
  seconds: number;
  gradNorm: number;
}

const isRunMeta = (u: unknown): u is RunMeta => {
  if (typeof u !== "object" || u === null) return false;
  const m = u as Record<string, unknown>;
  return typeof m.experiment === "string" && typeof m.elapsedSeconds === "number" &&
    typeof m.trainSeconds === "number" && typeof m.trainDraws === "number" &&
    typeof m.trainingDone === "boolean";
};

const pct = (x: number): string => `${(100 * x).toFixed(1)} %`;

// ---------------------------------------------------------------------------
// The runner

/**
 * Trains and evaluates one clip-classification experiment into
 * `opts.runDir`. Resolves to `Right(Completed | Interrupted)` or
 * `Left(RunError)`: `BadInput` for a problem with the experiment, the
 * dataset (every problem with its file and line) or the run folder;
 * `RunFailed` for a failure while running. Never exits the process.
 *
 * @example
 * ```ts
 * import { runSmarthome } from "./smarthome_run.ts";
 * import { smarthomePreset } from "./smarthome_experiment.ts";
 * const exp = smarthomePreset("smarthome", { quick: true });
 * const r = await runSmarthome({ ...exp, data: { ...exp.data, dir: "/nonexistent" } }, {
 *   runDir: await Deno.makeTempDir(), progress: false,
 * });
 * if (r._tag === "Left") console.log(r.left._tag); // BadInput
 * ```
 */
export async function runSmarthome(
  experiment: SmarthomeExperiment,
  opts: SmarthomeRunOptions,
): Promise<Either<RunError, SmarthomeOutcome>> {
  const sessionStart = performance.now();
  const log = opts.log ?? ((m: string) => console.error(m));
  const decoded = decodeSmarthomeExperiment(experiment);
  if (E.isLeft(decoded)) return badInput(decoded.left.message);
  const exp = decoded.right;
  const runDir = opts.runDir;
  const ckptDir = join(runDir, "checkpoints");
  const metricsFile = join(runDir, "metrics.jsonl");

  const folder = await checkRunFolder(runDir, exp, opts.resume === true, decodeSmarthomeExperiment);
  if (E.isLeft(folder)) return folder;

  // Data first: its problems are the user's to fix, and cheap to find.
  const loaded = await loadSmarthomeData(exp, opts.table);
  if (E.isLeft(loaded)) return badInput(loaded.left);
  const { table, split } = loaded.right;
  const classes = split.classes;
  const nClasses = classes.length;
  const trainCounts = classCounts(split.train, nClasses);
  const present = trainCounts.filter((n) => n > 0);
  log(
    `${exp.name}: ${table.dir}: ${table.clips.length} clips, F = ${table.featureDim}; ` +
      `protocol ${split.protocol}: ${nClasses} classes, ${split.train.length} train / ` +
      `${split.valid.length} valid / ${split.test.length} test clips; training clips per ` +
      `class ${Math.min(...present)}–${Math.max(...present)}` +
      (present.length < nClasses ? ` (${nClasses - present.length} classes have none)` : ""),
  );

  const started = await startProgram(opts, exp.model);
  if (E.isLeft(started)) return started;
  const { backend } = started.right;
  const program: Program = started.right.program;
  const B = exp.training.batchSize;
  const L = exp.data.clipFrames;
  const S = exp.model.segmentLen;
  const K = segmentsPerClip(exp);
  const F = table.featureDim;
  const steps = classifierSteps(exp, split.train.length);

  const store = new ClipStore(table, { clipFrames: L });
  try {
    if (exp.data.standardize) {
      const stats = await featureStats(store, split.train, { maxClips: 512, seed: exp.seed });
      store.standardize(stats);
    }
  } catch (e) {
    return badInput(describe(e));
  }

  const prepared = await prepareRunFolder(
    runDir,
    { ...exp, data: { ...exp.data, dir: table.dir } },
    opts.resume === true,
  );
  if (E.isLeft(prepared)) return prepared;

  // Training state: fresh or restored.
  let ts: TrainState;
  let batches: Rng;
  let dropout: Rng;
  let meta: RunMeta;
  if (opts.resume) {
    const resumed = await resumeTraining(program, runDir, exp.name, isRunMeta, log);
    if (E.isLeft(resumed)) return resumed;
    const { checkpoint: ck, file } = resumed.right;
    const b = ck.rng.batches, d = ck.rng.dropout;
    if (!isRngState(b) || !isRngState(d)) {
      disposeTraining(program, resumed.right.ts);
      return badInput(`${file}: no batch or dropout generator state`);
    }
    ts = resumed.right.ts;
    batches = restoreRng(b);
    dropout = restoreRng(d);
    meta = resumed.right.meta;
    log(`resuming ${runDir} at step ${ck.step} of ${steps} from ${file}`);
  } else {
    ts = startTraining(program, { seed: exp.seed, batchSize: B });
    batches = createRng(exp.seed * 2 + 1);
    dropout = createRng(exp.seed);
    meta = {
      experiment: exp.name,
      elapsedSeconds: 0,
      trainSeconds: 0,
      trainDraws: 0,
      trainingDone: false,
      stoppedBy: null,
      lastTrainLoss: null,
    };
  }

  const records = await readMetrics<MetricsRecord>(metricsFile, ts.step);
  try {
    await writeAtomic(metricsFile, records.map((r) => JSON.stringify(r) + "\n").join(""));
  } catch (e) {
    disposeTraining(program, ts);
    return failed(`${metricsFile}: cannot write: ${describe(e)}`, e);
  }
  const session = {
    elapsedAtStart: meta.elapsedSeconds,
    trainSeconds: meta.trainSeconds,
    trainDraws: meta.trainDraws,
  };
  const elapsed = () => session.elapsedAtStart + (performance.now() - sessionStart) / 1000;
  const metrics = await Deno.open(metricsFile, { append: true, create: true });
  const encoder = new TextEncoder();
  const appendRecord = async (r: MetricsRecord): Promise<void> => {
    records.push(r);
    const bytes = encoder.encode(JSON.stringify(r) + "\n");
    for (let done = 0; done < bytes.length;) done += await metrics.write(bytes.subarray(done));
  };
  const writeCurve = (final?: number) =>
    writeAtomic(
      join(runDir, "curve.svg"),
      learningCurveSvg(
        records.flatMap((r): CurvePoint[] =>
          r.kind === "train"
            ? [{ step: r.step, trainLoss: r.loss }]
            : r.kind === "valid"
            ? [{ step: r.step, validPpl: 100 * r.mean_class_accuracy }]
            : []
        ),
        {
          title: `${exp.name}: ${exp.model._tag}, S = ${S}, ${K} segments per clip` +
            (final === undefined ? "" : `; final valid mean per-class ${pct(final)}`),
          validLabel: "valid mean per-class accuracy (%)",
        },
      ),
    );
  const progressOf = (total: number, label: string, unit: string): Progress =>
    opts.progress === false ? { update: () => {}, done: () => {} } : createProgress({
      total,
      label,
      unit,
      ...(opts.progress?.write === undefined ? {} : { write: opts.progress.write }),
      ...(opts.progress?.isTty === undefined ? {} : { isTty: opts.progress.isTty }),
    });
  const interval: LogInterval = meta.interval === undefined
    ? { loss: 0, count: 0, clips: 0, seconds: 0, gradNorm: 0 }
    : { ...meta.interval };
  const currentMeta = (): RunMeta => ({
    ...meta,
    interval: { ...interval },
    elapsedSeconds: elapsed(),
    trainSeconds: session.trainSeconds,
    trainDraws: session.trainDraws,
  });
  const save = async (): Promise<E.Either<RunError, string>> => {
    const snap = snapshotTraining(program, ts);
    const w = await writeCheckpoint(ckptDir, {
      step: ts.step,
      data: { epoch: 0, position: session.trainDraws },
      rng: { batches: batches.state(), dropout: dropout.state() },
      optimizer: snap.optimizer,
      params: snap.params,
      carry: snap.carry,
      meta: currentMeta(),
    }, { keep: exp.output.keepCheckpoints });
    return E.isLeft(w) ? failed(w.left.message, w.left) : E.right(w.right.file);
  };
  const interrupted = (step: number): E.Either<RunError, SmarthomeOutcome> =>
    E.right({
      _tag: "Interrupted",
      runDir,
      step,
      message: `interrupted; resume with --resume ${runDir}`,
    });
  const evaluate = async (
    clips: readonly ClipRecord[],
    label: string | null,
  ): Promise<{ p: ClipPredictions; score: ClassificationScore } | null> => {
    let bar: Progress | null = null;
    let before = 0;
    const p = await predictClips(program, ts.params, store, clips, {
      batchSize: exp.evaluation.batchSize,
      ...(label === null ? {} : {
        onBatch: (done: number, total: number) => {
          bar ??= progressOf(total, `eval ${label} [${backend}]`, "clips");
          bar.update({ step: done, tokens: done - before });
          before = done;
        },
      }),
      ...(opts.signal === undefined ? {} : { signal: opts.signal }),
    });
    (bar as Progress | null)?.done();
    if (p === null) return null;
    return { p, score: scoreConfusion(confusionMatrix(p.truth, p.predicted, nClasses), classes) };
  };

  try {
    const trained = await trainLoop();
    if (E.isLeft(trained)) return trained;
    if (trained.right === "interrupted") return interrupted(ts.step);
    return await evaluateAndReport();
  } finally {
    disposeTraining(program, ts);
    metrics.close();
  }

  // -------------------------------------------------------------------------

  async function trainLoop(): Promise<E.Either<RunError, "done" | "interrupted">> {
    if (meta.trainingDone) {
      log(`${exp.name}: training was complete; evaluating`);
      return E.right("done");
    }
    const maxSeconds = exp.training.maxSeconds;
    const bar = progressOf(steps, `train [${backend}]`, "frames");
    bar.update({ step: ts.step, tokens: 0 });
    let stoppedBy: "epochs" | "maxSeconds" = "epochs";
    let lastYield = performance.now();
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
      const lr = learningRate(exp.training, { step, totalSteps: steps });
      const t0 = performance.now();
      const clips = drawBatch(split.train, nClasses, {
        balance: exp.training.balance,
        batchSize: B,
        rng: batches,
      });
      let frames: Float32Array;
      try {
        frames = await store.batch(clips);
      } catch (e) {
        bar.done();
        await appendRecord({ kind: "error", step, message: describe(e) });
        return badInput(describe(e));
      }
      // Every clip starts from a fresh memory.
      program.disposeState(ts.memory);
      ts = { ...ts, memory: program.initState(B) };
      const batch = {
        tokens: tf.tensor3d(frames, [B, L, F], "float32"),
        targets: tf.tensor1d(Int32Array.from(clips, (c) => c.label), "int32"),
      };
      let out: ReturnType<typeof trainOn>;
      try {
        out = trainOn(program, ts, batch, {
          lr,
          bpttSegments: K,
          seed: dropout.next(),
          adamw: {
            beta1: exp.training.beta1,
            beta2: exp.training.beta2,
            eps: exp.training.eps,
            weightDecay: exp.training.weightDecay,
            clipNorm: exp.training.clipNorm,
            cayleyRefresh: exp.training.cayleyRefresh,
          },
        });
      } catch (e) {
        bar.done();
        const message = e instanceof NonFiniteLoss
          ? `step ${e.step}: the training loss is ${e.loss}; training stopped before the ` +
            `parameters were updated (nothing was saved for this step)`
          : `step ${step} failed: ${describe(e)}`;
        await appendRecord({ kind: "error", step, message });
        return failed(message, e);
      } finally {
        batch.tokens.dispose();
        batch.targets.dispose();
      }
      ts = out.next;
      const dt = (performance.now() - t0) / 1000;
      session.trainSeconds += dt;
      session.trainDraws += B;
      Object.assign(interval, {
        loss: interval.loss + out.loss,
        count: interval.count + 1,
        clips: interval.clips + B,
        seconds: interval.seconds + dt,
        gradNorm: out.gradNorm,
      });
      opts.onStep?.({ step, loss: out.loss, lr, gradNorm: out.gradNorm });
      bar.update({ step, loss: out.loss, tokens: B * L });
      if (step % exp.training.logEvery === 0 || step === steps) {
        const loss = interval.loss / interval.count;
        meta = { ...meta, lastTrainLoss: loss };
        const cps = interval.clips / interval.seconds;
        await appendRecord({
          kind: "train",
          step,
          epoch: session.trainDraws / split.train.length,
          loss,
          lr,
          grad_norm: interval.gradNorm,
          clips: session.trainDraws,
          clips_per_second: cps,
          frames_per_second: cps * L,
          elapsed: elapsed(),
        });
        Object.assign(interval, { loss: 0, count: 0, clips: 0, seconds: 0 });
      }
      const every = exp.training.validEvery;
      if (every > 0 && step % every === 0 && step < steps) {
        const v = await evaluate(split.valid, null);
        if (v !== null) {
          await appendRecord({
            kind: "valid",
            step,
            loss: v.p.loss,
            accuracy: v.score.accuracy,
            mean_class_accuracy: v.score.meanClassAccuracy,
            clips: v.score.clips,
            elapsed: elapsed(),
          });
          await writeCurve();
        }
      }
      const ckEvery = exp.training.checkpointEvery;
      if (ckEvery > 0 && step % ckEvery === 0 && step < steps) {
        const s = await save();
        if (E.isLeft(s)) return s;
      }
      if (performance.now() - lastYield > 100) {
        await new Promise((resolve) => setTimeout(resolve, 0));
        lastYield = performance.now();
      }
    }
    bar.done();
    meta = { ...meta, trainingDone: true, stoppedBy };
    const s = await save();
    return E.isLeft(s) ? s : E.right("done");
  }

  async function evaluateAndReport(): Promise<E.Either<RunError, SmarthomeOutcome>> {
    const evalStart = performance.now();
    const files: string[] = [];
    const writeConfusion = async (
      set: "valid" | "test",
      score: ClassificationScore,
      p: ClipPredictions,
    ) => {
      const m = confusionMatrix(p.truth, p.predicted, nClasses);
      await writeAtomic(join(runDir, `confusion_${set}.csv`), confusionCsv(m, classes));
      await writeAtomic(
        join(runDir, `confusion_${set}.svg`),
        confusionMatrixSvg(m, classes, {
          title: `${exp.name}: ${set}, ${split.protocol} — mean per-class ` +
            `${pct(score.meanClassAccuracy)}, overall ${pct(score.accuracy)}`,
        }),
      );
      files.push(`confusion_${set}.csv`, `confusion_${set}.svg`);
    };
    const valid = await evaluate(split.valid, "valid");
    if (valid === null) return interrupted(ts.step);
    log(
      `${exp.name}: valid mean per-class accuracy ${pct(valid.score.meanClassAccuracy)}, ` +
        `overall ${pct(valid.score.accuracy)} (${valid.score.clips} clips)`,
    );
    let test: { p: ClipPredictions; score: ClassificationScore } | null = null;
    let testNote: string | null = null;
    if (!exp.evaluation.test) {
      testNote = "test evaluation off (evaluation.test = false): skipped";
    } else if (split.test.length === 0) {
      testNote = `protocol ${split.protocol} selects no test clips in ${table.dir}: skipped`;
    } else {
      test = await evaluate(split.test, "test");
      if (test === null) return interrupted(ts.step);
      log(
        `${exp.name}: test mean per-class accuracy ${pct(test.score.meanClassAccuracy)}, ` +
          `overall ${pct(test.score.accuracy)} (${test.score.clips} clips)`,
      );
    }
    if (testNote !== null) log(`${exp.name}: ${testNote}`);
    const evalSeconds = (performance.now() - evalStart) / 1000;
    await appendRecord({
      kind: "valid",
      step: ts.step,
      loss: valid.p.loss,
      accuracy: valid.score.accuracy,
      mean_class_accuracy: valid.score.meanClassAccuracy,
      clips: valid.score.clips,
      elapsed: elapsed(),
    });
    const perClassFrom = test ?? valid;
    const cps = session.trainSeconds > 0 ? session.trainDraws / session.trainSeconds : 0;
    try {
      await writeConfusion("valid", valid.score, valid.p);
      if (test !== null) await writeConfusion("test", test.score, test.p);
      await writeCurve(valid.score.meanClassAccuracy);
      files.push("curve.svg");
    } catch (e) {
      return failed(`${runDir}: cannot write results: ${describe(e)}`, e);
    }
    const results: SmarthomeResults = {
      experiment: exp.name,
      model: exp.model._tag,
      protocol: split.protocol,
      classes,
      segment_len: S,
      clip_frames: L,
      segments_per_clip: K,
      valid_mean_class_accuracy: valid.score.meanClassAccuracy,
      valid_accuracy: valid.score.accuracy,
      valid_loss: valid.p.loss,
      valid_clips: valid.score.clips,
      test_mean_class_accuracy: test?.score.meanClassAccuracy ?? null,
      test_accuracy: test?.score.accuracy ?? null,
      test_loss: test?.p.loss ?? null,
      test_clips: test?.score.clips ?? null,
      test_note: testNote,
      per_class: perClassFrom.score.perClass.map((c) => ({
        class: c.name,
        clips: c.clips,
        accuracy: c.accuracy,
      })),
      per_class_set: test === null ? "valid" : "test",
      params: program.paramCount,
      flops_per_frame_forward: program.flops.forwardPerToken,
      flops_per_frame_train: program.flops.trainPerToken,
      flops_per_clip_forward: program.flops.forwardPerToken * L,
      train_clips: split.train.length,
      train_draws: session.trainDraws,
      train_steps: ts.step,
      epochs: session.trainDraws / split.train.length,
      balance: exp.training.balance,
      stopped_by: meta.stoppedBy ?? "epochs",
      final_train_loss: meta.lastTrainLoss,
      clips_per_second: cps,
      frames_per_second: cps * L,
      train_seconds: session.trainSeconds,
      eval_seconds: evalSeconds,
      wall_seconds: elapsed(),
      backend,
      data_dir: table.dir,
      feature_dim: F,
      files: ["config.json", "metrics.jsonl", "results.json", ...files],
    };
    try {
      await writeAtomic(join(runDir, "results.json"), JSON.stringify(results, null, 2) + "\n");
    } catch (e) {
      return failed(`${runDir}: cannot write results: ${describe(e)}`, e);
    }
    return E.right({ _tag: "Completed", runDir, results });
  }
}
