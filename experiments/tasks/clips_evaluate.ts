/**
 * Clip classification's evaluation: a set's predictions and scores, and the
 * final report of a run (validation and test scores, confusion matrices,
 * the curve and `results.json`). The task itself is in `clips.ts`.
 *
 * @example
 * ```ts
 * import { pct } from "./clips_evaluate.ts";
 * console.log(pct(0.4567)); // 45.7 %
 * ```
 *
 * @module
 */
import { describeError } from "../../spec/errors.ts";
import { join } from "node:path";
import type { Params, Program } from "../../core/program.ts";
import type { Either } from "../../spec/either.ts";
import {
  type ClassificationScore,
  type ClipPredictions,
  confusionCsv,
  confusionMatrix,
  predictClips,
  scoreConfusion,
} from "./classification.ts";
import { type RunContext, type Task, testNote } from "../loop/task.ts";
import type { Progress } from "../loop/progress.ts";
import { failed, type RunError, writeAtomic } from "../loop/run_folder.ts";
import type { ClipRecord, ClipTable } from "../data/smarthome.ts";
import type { ClipSplit } from "../data/smarthome_protocols.ts";
import type { ClipStore } from "../data/smarthome_store.ts";
import type { SmarthomeExperiment } from "./clips_experiment.ts";
import type { SmarthomeOutcome, SmarthomeResults } from "./clips.ts";
import { confusionMatrixSvg } from "../io/svg.ts";
/** A metrics.jsonl record of a classifier's run. */
export type ClipRunRecord =
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
  };

export const pct = (x: number): string => `${(100 * x).toFixed(1)} %`;

/** What the clip task and its final evaluation share. */
export interface ClipContext {
  readonly exp: SmarthomeExperiment;
  readonly program: Program;
  readonly backend: string;
  readonly store: ClipStore;
  readonly split: ClipSplit;
  readonly table: ClipTable;
  readonly run: RunContext<ClipRunRecord>;
  readonly signal: AbortSignal | undefined;
}

/** A set's predictions and scores, or `null` when the abort signal cut it short. */
export async function evaluateClips(
  c: ClipContext,
  params: Params,
  clips: readonly ClipRecord[],
  label: string | null,
): Promise<{ p: ClipPredictions; score: ClassificationScore } | null> {
  let bar: Progress | null = null;
  let before = 0;
  const p = await predictClips(c.program, params, c.store, clips, {
    batchSize: c.exp.evaluation.batchSize,
    ...(label === null ? {} : {
      onBatch: (done: number, total: number) => {
        bar ??= c.run.progress(total, `eval ${label} [${c.backend}]`, "clips");
        bar.update({ step: done, tokens: done - before });
        before = done;
      },
    }),
    ...(c.signal === undefined ? {} : { signal: c.signal }),
  });
  (bar as Progress | null)?.done();
  if (p === null) return null;
  const classes = c.split.classes;
  return {
    p,
    score: scoreConfusion(confusionMatrix(p.truth, p.predicted, classes.length), classes),
  };
}

/** The final evaluation on the validation and test sets, confusion matrices and `results.json`. */
export async function evaluateAndReport(
  c: ClipContext,
  task: Task<ClipRunRecord>,
  log: (message: string) => void,
): Promise<Either<RunError, SmarthomeOutcome>> {
  const { exp, program, split, run, table } = c;
  const classes = split.classes;
  const L = exp.data.clipFrames;
  const evalStart = performance.now();
  const params = run.ts().params;
  const files: string[] = [];
  const writeConfusion = async (
    set: "valid" | "test",
    score: ClassificationScore,
    p: ClipPredictions,
  ) => {
    const m = confusionMatrix(p.truth, p.predicted, classes.length);
    await writeAtomic(join(run.runDir, `confusion_${set}.csv`), confusionCsv(m, classes));
    await writeAtomic(
      join(run.runDir, `confusion_${set}.svg`),
      confusionMatrixSvg(m, classes, {
        title: `${exp.name}: ${set}, ${split.protocol} — mean per-class ` +
          `${pct(score.meanClassAccuracy)}, overall ${pct(score.accuracy)}`,
      }),
    );
    files.push(`confusion_${set}.csv`, `confusion_${set}.svg`);
  };
  const valid = await evaluateClips(c, params, split.valid, "valid");
  if (valid === null) return run.interrupted();
  log(
    `${exp.name}: valid mean per-class accuracy ${pct(valid.score.meanClassAccuracy)}, ` +
      `overall ${pct(valid.score.accuracy)} (${valid.score.clips} clips)`,
  );
  let test: { p: ClipPredictions; score: ClassificationScore } | null = null;
  const note = testNote(
    exp.evaluation.test,
    split.test.length > 0,
    `protocol ${split.protocol} selects no test clips in ${table.dir}: skipped`,
  );
  if (note === null) {
    test = await evaluateClips(c, params, split.test, "test");
    if (test === null) return run.interrupted();
    log(
      `${exp.name}: test mean per-class accuracy ${pct(test.score.meanClassAccuracy)}, ` +
        `overall ${pct(test.score.accuracy)} (${test.score.clips} clips)`,
    );
  } else {
    log(`${exp.name}: ${note}`);
  }
  const evalSeconds = (performance.now() - evalStart) / 1000;
  const step = run.ts().step;
  await run.appendRecord({
    kind: "valid",
    step,
    loss: valid.p.loss,
    accuracy: valid.score.accuracy,
    mean_class_accuracy: valid.score.meanClassAccuracy,
    clips: valid.score.clips,
    elapsed: run.elapsed(),
  });
  const perClassFrom = test ?? valid;
  const meta = run.meta();
  const cps = meta.trainSeconds > 0 ? meta.trainUnits / meta.trainSeconds : 0;
  try {
    await writeConfusion("valid", valid.score, valid.p);
    if (test !== null) await writeConfusion("test", test.score, test.p);
    await run.writeCurve(task.curve(run.records, valid.score.meanClassAccuracy));
    files.push("curve.svg");
  } catch (e) {
    return failed(`${run.runDir}: cannot write results: ${describeError(e)}`, e);
  }
  return run.finish<SmarthomeResults>({
    experiment: exp.name,
    model: exp.model._tag,
    protocol: split.protocol,
    classes,
    segment_len: exp.model.segmentLen,
    clip_frames: L,
    segments_per_clip: task.bpttSegments,
    valid_mean_class_accuracy: valid.score.meanClassAccuracy,
    valid_accuracy: valid.score.accuracy,
    valid_loss: valid.p.loss,
    valid_clips: valid.score.clips,
    test_mean_class_accuracy: test?.score.meanClassAccuracy ?? null,
    test_accuracy: test?.score.accuracy ?? null,
    test_loss: test?.p.loss ?? null,
    test_clips: test?.score.clips ?? null,
    test_note: note,
    per_class: perClassFrom.score.perClass.map((x) => ({
      class: x.name,
      clips: x.clips,
      accuracy: x.accuracy,
    })),
    per_class_set: test === null ? "valid" : "test",
    params: program.paramCount,
    flops_per_frame_forward: program.flops.forwardPerToken,
    flops_per_frame_train: program.flops.trainPerToken,
    flops_per_clip_forward: program.flops.forwardPerToken * L,
    train_clips: split.train.length,
    train_draws: meta.trainUnits,
    train_steps: step,
    epochs: meta.trainUnits / split.train.length,
    balance: exp.training.balance,
    stopped_by: meta.stoppedBy === "maxSeconds" ? "maxSeconds" : "epochs",
    final_train_loss: meta.lastTrainLoss,
    clips_per_second: cps,
    frames_per_second: cps * L,
    train_seconds: meta.trainSeconds,
    eval_seconds: evalSeconds,
    wall_seconds: run.elapsed(),
    backend: c.backend,
    data_dir: table.dir,
    feature_dim: table.featureDim,
    files: ["config.json", "metrics.jsonl", "results.json", ...files],
  });
}
