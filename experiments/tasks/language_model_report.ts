/**
 * Language modelling's final report: the whole valid and test splits scored
 * with the trained parameters, the curve, and `results.json`. The task
 * itself is in `language_model.ts`.
 *
 * @example
 * ```ts
 * import type { LmRecord } from "./language_model_report.ts";
 * const ppl = (r: LmRecord) => `${r.kind} ppl ${r.ppl.toFixed(1)} at step ${r.step}`;
 * ```
 *
 * @module
 */
import { describeError } from "../../spec/errors.ts";
import type { Program } from "../../core/program.ts";
import type { Either } from "../../spec/either.ts";
import type { Corpus } from "../data/ptb.ts";
import type { Experiment } from "../experiment.ts";
import type { Progress } from "../loop/progress.ts";
import { failed, type RunError } from "../loop/run_folder.ts";
import { type RunContext, type Task, testNote } from "../loop/task.ts";
import { evaluateSplit, type SplitScore } from "./evaluate.ts";
import { adaptiveCosts, type Results, type RunOutcome } from "./language_model.ts";
/** A metrics.jsonl record of a language model's run. */
export type LmRecord =
  | {
    readonly kind: "train";
    readonly step: number;
    readonly epoch: number;
    readonly loss: number;
    readonly ppl: number;
    readonly lr: number;
    readonly grad_norm: number;
    readonly tokens: number;
    readonly tokens_per_second: number;
    readonly elapsed: number;
  }
  | {
    readonly kind: "valid";
    readonly step: number;
    readonly loss: number;
    readonly ppl: number;
    readonly tokens: number;
    readonly whole_split: boolean;
    readonly elapsed: number;
  };

/** The final evaluation on the whole valid and test splits, and `results.json`. */
export async function evaluateAndReport(
  exp: Experiment,
  program: Program,
  backend: string,
  corpus: Corpus,
  run: RunContext<LmRecord>,
  task: Task<LmRecord>,
  signal: AbortSignal | undefined,
  log: (message: string) => void,
): Promise<Either<RunError, RunOutcome>> {
  const evalStart = performance.now();
  const params = run.ts().params;
  const score = async (split: Int32Array, label: string): Promise<SplitScore | null> => {
    let bar: Progress | null = null;
    const r = await evaluateSplit(program, params, split, {
      batchSize: exp.evaluation.batchSize,
      onWindow: (done, total, tokens) => {
        bar ??= run.progress(total, `eval ${label} [${backend}]`);
        bar.update({ step: done, tokens });
      },
      ...(signal === undefined ? {} : { signal }),
    });
    (bar as Progress | null)?.done();
    return r;
  };
  const valid = await score(corpus.valid, "valid");
  if (valid === null) return run.interrupted();
  log(`${exp.name}: valid ppl ${valid.ppl.toFixed(2)} (${valid.tokens} tokens)`);
  let test: SplitScore | null = null;
  const note = testNote(exp.evaluation.test, corpus.test !== null, "test split absent: skipped");
  if (note === null && corpus.test !== null) {
    test = await score(corpus.test, "test");
    if (test === null) return run.interrupted();
    log(`${exp.name}: test ppl ${test.ppl.toFixed(2)} (${test.tokens} tokens)`);
  }
  if (note !== null) log(`${exp.name}: ${note}`);
  const evalSeconds = (performance.now() - evalStart) / 1000;
  const step = run.ts().step;
  await run.appendRecord({
    kind: "valid",
    step,
    loss: valid.loss,
    ppl: valid.ppl,
    tokens: valid.tokens,
    whole_split: true,
    elapsed: run.elapsed(),
  });
  const meta = run.meta();
  const results: Results = {
    experiment: exp.name,
    model: exp.model._tag,
    segment_len: exp.model.segmentLen,
    valid_ppl: valid.ppl,
    valid_loss: valid.loss,
    valid_tokens: valid.tokens,
    test_ppl: test?.ppl ?? null,
    test_loss: test?.loss ?? null,
    test_tokens: test?.tokens ?? null,
    test_note: note,
    params: program.paramCount,
    flops_per_token_forward: program.flops.forwardPerToken,
    flops_per_token_train: program.flops.trainPerToken,
    train_tokens: meta.trainUnits,
    train_steps: step,
    stopped_by: meta.stoppedBy === "maxSeconds" ? "maxSeconds" : "tokens",
    final_train_loss: meta.lastTrainLoss,
    tokens_per_second: meta.trainSeconds > 0 ? meta.trainUnits / meta.trainSeconds : 0,
    train_seconds: meta.trainSeconds,
    eval_seconds: evalSeconds,
    wall_seconds: run.elapsed(),
    backend,
    data_dir: corpus.dir,
    data_sha256: corpus.sha256,
    adaptive_softmax: adaptiveCosts(exp.model, program.flops, corpus.train),
  };
  try {
    await run.writeCurve(task.curve(run.records, valid.ppl));
  } catch (e) {
    return failed(`${run.runDir}: cannot write results: ${describeError(e)}`, e);
  }
  return run.finish(results);
}
