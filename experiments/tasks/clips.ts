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
 * import { override } from "../overrides.ts";
 * import { writeSampleDataset } from "../data/smarthome_sample.ts";
 * import { smarthomePreset } from "./clips_presets.ts";
 * import { runSmarthome } from "./clips.ts";
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
import { describeError } from "../../spec/errors.ts";
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import { compile } from "../../core/compile.ts";
import { startTraining } from "../../core/train.ts";
import { tf } from "../../ops/tf.ts";
import type { Either } from "../../spec/either.ts";
import { sha256Hex } from "../io/sha256.ts";
import { taskRunner } from "../loop/loop.ts";
import type { Outcome, Task, TaskSetup } from "../loop/task.ts";
import { createRng, isRngState, restoreRng, type Rng } from "../loop/rng.ts";
import { badInput, type RunError, type SessionOptions, startProgram } from "../loop/run_folder.ts";
import { classCounts, type ClipSplit, splitClips } from "../data/smarthome_protocols.ts";
import { ClipStore, drawBatch, featureStats } from "../data/smarthome_store.ts";
import { type ClipTable, readClipTable } from "../data/smarthome.ts";
import {
  classifierSteps,
  decodeSmarthomeExperiment,
  segmentsPerClip,
  type SmarthomeExperiment,
} from "./clips_experiment.ts";
import {
  type ClipContext,
  type ClipRunRecord,
  evaluateAndReport,
  evaluateClips,
  pct,
} from "./clips_evaluate.ts";
import { type CurvePoint, learningCurveSvg } from "../io/svg.ts";

/** The environment variable naming the dataset directory when `data.dir` is null. */
export const SMARTHOME_DIR_ENV = "CRT_SMARTHOME_DIR";

// ---------------------------------------------------------------------------
// Outcomes

/**
 * Per-class accuracy on one set, in `results.json`.
 *
 * @example
 * ```ts
 * import type { ClassResult } from "./clips.ts";
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
 * import type { SmarthomeResults } from "./clips.ts";
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
 * import type { SmarthomeOutcome } from "./clips.ts";
 * const say = (o: SmarthomeOutcome) => o._tag === "Completed" ? o.results.test_accuracy : o.message;
 * ```
 */
export type SmarthomeOutcome = Outcome<SmarthomeResults>;

/**
 * Options of {@linkcode runSmarthome}: a training session's, plus an
 * already read dataset.
 *
 * @example
 * ```ts
 * import type { SmarthomeRunOptions } from "./clips.ts";
 * const opts: SmarthomeRunOptions = { runDir: "runs/smarthome-test", progress: false };
 * ```
 */
export type SmarthomeRunOptions = SessionOptions & {
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
 * import { loadSmarthomeData } from "./clips.ts";
 * import { smarthomePreset } from "./clips_presets.ts";
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
 * import { ensureBackend } from "../../ops/backend.ts";
 * import { smarthomePreset } from "./clips_presets.ts";
 * import { smarthomeCosts } from "./clips.ts";
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
 * import { runSmarthome } from "./clips.ts";
 * import { smarthomePreset } from "./clips_presets.ts";
 * const exp = smarthomePreset("smarthome", { quick: true });
 * const r = await runSmarthome({ ...exp, data: { ...exp.data, dir: "/nonexistent" } }, {
 *   runDir: await Deno.makeTempDir(), progress: false,
 * });
 * if (r._tag === "Left") console.log(r.left._tag); // BadInput
 * ```
 */
export const runSmarthome: (
  experiment: SmarthomeExperiment,
  opts: SmarthomeRunOptions,
) => Promise<Either<RunError, SmarthomeOutcome>> = taskRunner(
  decodeSmarthomeExperiment,
  prepareClips,
);

/**
 * Clip classification's part of a run: the clip table and its split, the
 * backend and program, the feature store (standardised on training clips),
 * and the task.
 */
async function prepareClips(
  exp: SmarthomeExperiment,
  opts: SmarthomeRunOptions,
  log: (m: string) => void,
): Promise<Either<RunError, TaskSetup<ClipRunRecord, SmarthomeResults>>> {
  const loaded = await loadSmarthomeData(exp, opts.table);
  if (E.isLeft(loaded)) return badInput(loaded.left);
  const { table, split } = loaded.right;
  const nClasses = split.classes.length;
  const present = classCounts(split.train, nClasses).filter((n) => n > 0);
  log(
    `${exp.name}: ${table.dir}: ${table.clips.length} clips, F = ${table.featureDim}; ` +
      `protocol ${split.protocol}: ${nClasses} classes, ${split.train.length} train / ` +
      `${split.valid.length} valid / ${split.test.length} test clips; training clips per ` +
      `class ${Math.min(...present)}–${Math.max(...present)}` +
      (present.length < nClasses ? ` (${nClasses - present.length} classes have none)` : ""),
  );

  const started = await startProgram(opts, exp.model);
  if (E.isLeft(started)) return started;
  const { backend, program } = started.right;
  const store = new ClipStore(table, { clipFrames: exp.data.clipFrames });
  try {
    if (exp.data.standardize) {
      const stats = await featureStats(store, split.train, { maxClips: 512, seed: exp.seed });
      store.standardize(stats);
    }
  } catch (e) {
    return badInput(describeError(e));
  }

  // The files that say which clips there are and what they are (the feature
  // files are too many to hash at every start; clips.csv holds their lengths).
  const dataSha256: Record<string, string> = {};
  for (const name of ["classes.txt", "clips.csv"]) {
    try {
      dataSha256[name] = await sha256Hex(await Deno.readFile(join(table.dir, name)));
    } catch {
      // A table given in memory has no files to hash.
    }
  }
  const shared = { exp, program, backend, store, split, table, signal: opts.signal };
  return E.right({
    started: started.right,
    data: { dir: table.dir, sha256: dataSha256 },
    batch: {
      rows: exp.training.batchSize,
      positions: exp.data.clipFrames,
      fields: "training.batchSize, data.clipFrames",
    },
    fresh: () => startTraining(program, { seed: exp.seed, batchSize: exp.training.batchSize }),
    task: (run) => clipTask({ ...shared, run }),
    evaluate: (run, task) => evaluateAndReport({ ...shared, run }, task, log),
  });
}

/**
 * Clip classification as a {@linkcode Task}: each step draws B training
 * clips (class-balanced by default) from the batch generator, runs each from
 * a fresh memory through all K segments of the clip, and takes the
 * classifier's loss on the state after the last; periodic validation reads
 * the whole validation set.
 */
function clipTask(c: ClipContext): Either<RunError, Task<ClipRunRecord>> {
  const { exp, program, split, run } = c;
  const B = exp.training.batchSize;
  const L = exp.data.clipFrames;
  const F = c.table.featureDim;
  const nClasses = split.classes.length;
  let batches: Rng;
  let dropout: Rng;
  if (run.resumed !== null) {
    const b = run.resumed.checkpoint.rng.batches, d = run.resumed.checkpoint.rng.dropout;
    if (!isRngState(b) || !isRngState(d)) {
      return badInput(`${run.resumed.file}: no batch or dropout generator state`);
    }
    batches = restoreRng(b);
    dropout = restoreRng(d);
  } else {
    batches = createRng(exp.seed * 2 + 1);
    dropout = createRng(exp.seed);
  }
  const K = segmentsPerClip(exp);
  return E.right({
    steps: classifierSteps(exp, split.train.length),
    budget: "epochs",
    progressUnit: "frames",
    bpttSegments: K,
    training: exp.training,
    next: async (ts) => {
      const clips = drawBatch(split.train, nClasses, {
        balance: exp.training.balance,
        batchSize: B,
        rng: batches,
      });
      let frames: Float32Array;
      try {
        frames = await c.store.batch(clips);
      } catch (e) {
        return E.left(describeError(e));
      }
      // Every clip starts from a fresh memory.
      program.disposeState(ts.memory);
      return E.right({
        ts: { ...ts, memory: program.initState(B) },
        batch: {
          tokens: tf.tensor3d(frames, [B, L, F], "float32"),
          targets: tf.tensor1d(Int32Array.from(clips, (clip) => clip.label), "int32"),
          units: B,
          progress: B * L,
        },
      });
    },
    dropoutSeed: () => dropout.next(),
    trainRecord: (f) => ({
      kind: "train",
      step: f.step,
      epoch: f.units / split.train.length,
      loss: f.loss,
      lr: f.lr,
      grad_norm: f.gradNorm,
      clips: f.units,
      clips_per_second: f.unitsPerSecond,
      frames_per_second: f.unitsPerSecond * L,
      elapsed: f.elapsed,
    }),
    validate: async (step, params, elapsed) => {
      const v = await evaluateClips(c, params, split.valid, null);
      if (v === null) return null;
      return {
        kind: "valid",
        step,
        loss: v.p.loss,
        accuracy: v.score.accuracy,
        mean_class_accuracy: v.score.meanClassAccuracy,
        clips: v.score.clips,
        elapsed: elapsed(),
      };
    },
    curve: (records, final) =>
      learningCurveSvg(
        records.map((r): CurvePoint =>
          r.kind === "train"
            ? { step: r.step, trainLoss: r.loss }
            : { step: r.step, validPpl: 100 * r.mean_class_accuracy }
        ),
        {
          title: `${exp.name}: ${exp.model._tag}, S = ${exp.model.segmentLen}, ${K} segments ` +
            `per clip` + (final === undefined ? "" : `; final valid mean per-class ${pct(final)}`),
          validLabel: "valid mean per-class accuracy (%)",
        },
      ),
    checkpoint: (draws) => ({
      data: { epoch: 0, position: draws },
      rng: { batches: batches.state(), dropout: dropout.state() },
    }),
  });
}
