/**
 * The experiment runner: trains an {@linkcode Experiment} on word-level PTB,
 * evaluates it and writes a run folder. A function of its inputs that returns
 * its outcome (no `Deno.exit`); `cli.ts` maps outcomes to exit codes.
 *
 * A run folder holds:
 *
 * | file | content |
 * | --- | --- |
 * | `config.json` | the experiment as run (data directory resolved) |
 * | `metrics.jsonl` | one JSON record per line: `train` every `logEvery` steps (step, loss, ppl, lr, tokens/s, elapsed), `valid` at each validation, `error` if a step fails |
 * | `results.json` | {@linkcode Results}: valid and test perplexity, parameters, FLOPs per token, tokens, throughput, time |
 * | `curve.svg` | train loss and valid perplexity against step |
 * | `checkpoints/` | the last checkpoints (atomic: temp file + rename), for `--resume` |
 *
 * Training reads the training split as B ordered streams in windows of K·S
 * tokens, carrying the memory from window to window (reset at each epoch)
 * and cutting its gradient at the window's start. Every checkpoint holds the
 * parameters, the optimizer state (NC-GRU's float64 state losslessly), the
 * carried memory, the dropout generator's state and the data position, so a
 * resumed run computes exactly the losses the uninterrupted run would have.
 *
 * @example Train a tiny model on a generated corpus
 * ```ts
 * import { join } from "node:path";
 * import { tinyExperiment, writeCorpus } from "../../tests/_corpus.ts";
 * import { runExperiment } from "./language_model.ts";
 *
 * const dir = await writeCorpus({ test: true }); // ptb.{train,valid,test}.txt
 * const r = await runExperiment(tinyExperiment(dir, { steps: 10 }), {
 *   runDir: join(dir, "run"),
 *   progress: false,
 * });
 * if (r._tag === "Right" && r.right._tag === "Completed") console.log(r.right.results.valid_ppl);
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { describeError } from "../../spec/errors.ts";
import * as E from "fp-ts/lib/Either.js";
import type { Program } from "../../core/program.ts";
import { compile } from "../../core/compile.ts";
import { startTraining } from "../../core/train.ts";
import { tf } from "../../ops/tf.ts";
import { adaptiveGeometry, tailFlopsPerRow } from "../../spec/adaptive.ts";
import type { Either } from "../../spec/either.ts";
import type { ModelSpec } from "../../spec/types.ts";
import type { Checkpoint } from "../loop/checkpoint_format.ts";
import {
  batchify,
  countWindows,
  type DataPosition,
  segmentWindows,
  type Streams,
} from "../data/windows.ts";
import { type Corpus, dataDirFromEnvironment, PTB_FILES } from "../data/ptb.ts";
import { loadPtb } from "../data/ptb_download.ts";
import { evaluateSplit } from "./evaluate.ts";
import type { ReadProgress } from "../data/wt103_stream.ts";
import { WT103_FILES, wt103DirFromEnvironment } from "../data/wt103.ts";
import { loadWt103 } from "../data/wt103_download.ts";
import { decodeExperiment, type Experiment, tokensPerStep, totalSteps } from "../experiment.ts";
import { taskRunner } from "../loop/loop.ts";
import { evaluateAndReport, type LmRecord } from "./language_model_report.ts";
import type { Outcome, Task, TaskSetup } from "../loop/task.ts";
import { unigramBias, withReadoutBias } from "./readout_bias.ts";
import { createRng, restoreRng, type Rng } from "../loop/rng.ts";
import { badInput, type RunError, type SessionOptions, startProgram } from "../loop/run_folder.ts";
import { type CurvePoint, learningCurveSvg } from "../io/svg.ts";

// ---------------------------------------------------------------------------
// Outcomes

/**
 * What a finished run reports (`results.json`). Perplexities are over the
 * whole split read as a stream; FLOPs count 2 per multiply-add.
 *
 * @example
 * ```ts
 * import type { Results } from "./language_model.ts";
 * const line = (r: Results) => `${r.experiment}: valid ppl ${r.valid_ppl.toFixed(1)}`;
 * ```
 */
export interface Results {
  /** The experiment's name. */
  readonly experiment: string;
  /** Model kind: `crt`, `transformer` or `xl`. */
  readonly model: string;
  /** S: tokens per segment. */
  readonly segment_len: number;
  /** Perplexity on the whole valid split. */
  readonly valid_ppl: number;
  /** Mean NLL (nats) on the whole valid split. */
  readonly valid_loss: number;
  /** Predictions scored on the valid split. */
  readonly valid_tokens: number;
  /** Perplexity on the whole test split; `null` when it was not evaluated (see `test_note`). */
  readonly test_ppl: number | null;
  /** Mean NLL on the test split, or `null`. */
  readonly test_loss: number | null;
  /** Predictions scored on the test split, or `null`. */
  readonly test_tokens: number | null;
  /** Why the test split was not evaluated (`test split absent: skipped`), else `null`. */
  readonly test_note: string | null;
  /** Scalars in the model's trained parameters. */
  readonly params: number;
  /** FLOPs per token of a forward pass. */
  readonly flops_per_token_forward: number;
  /** FLOPs per token of a training step (forward and backward). */
  readonly flops_per_token_train: number;
  /** Tokens trained on. */
  readonly train_tokens: number;
  /** Optimizer steps taken. */
  readonly train_steps: number;
  /** What ended training: the token budget, or the `maxSeconds` guard. */
  readonly stopped_by: "tokens" | "maxSeconds";
  /** Mean training loss over the last logged interval. */
  readonly final_train_loss: number | null;
  /** Training throughput: train_tokens over the seconds spent in training steps. */
  readonly tokens_per_second: number;
  /** Seconds spent in training steps. */
  readonly train_seconds: number;
  /** Seconds spent in the final evaluation. */
  readonly eval_seconds: number;
  /** Wall-clock seconds of the whole run (all sessions of a resumed run). */
  readonly wall_seconds: number;
  /** The compute backend, e.g. `wasm simd, matmul blas`. */
  readonly backend: string;
  /** The data directory read. */
  readonly data_dir: string;
  /** SHA-256 of the split files read. */
  readonly data_sha256: Corpus["sha256"];
  /**
   * Adaptive softmax only (else `null`). `flops_per_token_*` above count
   * every tail cluster for every token — the cost of the full distribution,
   * what `forward` computes, and an upper bound for training. Training and
   * evaluation compute a tail cluster only for the tokens whose target is
   * in it: these figures count that, at the training split's shares
   * (the padding of each cluster's rows to a gather size is not included;
   * it adds at most 25 % of a cluster's rows above 32 rows, 7 rows below).
   */
  readonly adaptive_softmax: {
    readonly cutoffs: readonly number[];
    /** Share of the training split's targets in each tail cluster. */
    readonly tail_shares: readonly number[];
    readonly flops_per_token_forward_gathered: number;
    readonly flops_per_token_train_gathered: number;
  } | null;
}

/**
 * How a run ended: completed with results, or interrupted (by the abort
 * signal) after saving a checkpoint it can resume from.
 *
 * @example
 * ```ts
 * import type { RunOutcome } from "./language_model.ts";
 * const say = (o: RunOutcome) =>
 *   o._tag === "Completed" ? `valid ppl ${o.results.valid_ppl}` : `stopped at step ${o.step}`;
 * ```
 */
export type RunOutcome = Outcome<Results>;

/**
 * Options of {@linkcode runExperiment}: a training session's, plus a corpus
 * already read.
 *
 * @example
 * ```ts
 * import type { RunOptions } from "./language_model.ts";
 * const opts: RunOptions = { runDir: "runs/ptb-test", progress: false };
 * ```
 */
export interface RunOptions extends SessionOptions {
  /** An already loaded corpus (its `dir` is recorded); else read from `experiment.data.dir`. */
  readonly corpus?: Corpus;
}

/**
 * Reads the corpus an experiment names: `data.dir`, else `$CRT_DATA_DIR`,
 * else the cache folder (downloading into it when online). `Left` is a
 * readable message naming the file or folder and where to put the files.
 *
 * @example
 * ```ts
 * import { loadExperimentData } from "./language_model.ts";
 * import { presetExperiment } from "../presets.ts";
 * const exp = presetExperiment("ptb");
 * const r = await loadExperimentData({ ...exp, data: { dir: "data/ptb" } });
 * if (r._tag === "Right") console.log(r.right.vocab.words.length); // 10000
 * ```
 */
export async function loadExperimentData(
  exp: Experiment,
  log: (message: string) => void = (m) => console.error(m),
): Promise<Either<string, Corpus>> {
  if (exp.data.dataset === "wt103") {
    const dir = wt103DirFromEnvironment(exp.data.dir ?? undefined);
    if (E.isLeft(dir)) return E.left(dir.left.message);
    const corpus = await loadWt103(dir.right, { log, onProgress: readProgressLog(log) });
    return E.isLeft(corpus) ? E.left(corpus.left.message) : corpus;
  }
  const dir = dataDirFromEnvironment(exp.data.dir ?? undefined);
  if (E.isLeft(dir)) return E.left(dir.left.message);
  const corpus = await loadPtb(dir.right, { log });
  return E.isLeft(corpus) ? E.left(corpus.left.message) : corpus;
}

/**
 * Logs a long read's progress: a line per 10 % of each file over 64 MiB
 * (WikiText-103's training file takes 20–40 s), nothing for small files.
 */
const readProgressLog = (log: (message: string) => void) => {
  let file = "", next = 0, started = 0, tokens = 0;
  return (p: ReadProgress): void => {
    if (p.totalBytes < 64 * 2 ** 20) return;
    if (p.file !== file) {
      file = p.file;
      next = 0.1;
      started = performance.now();
      tokens = 0;
    }
    tokens += p.tokens;
    const done = p.bytes / p.totalBytes;
    if (done < next && done < 1) return;
    next = Math.floor(done * 10) / 10 + 0.1;
    const secs = (performance.now() - started) / 1000;
    log(
      `reading ${p.file} (${p.phase}): ${(100 * done).toFixed(0)} %, ` +
        `${(tokens / 1e6).toFixed(1)} M tokens in ${secs.toFixed(0)} s`,
    );
  };
};

/**
 * Parameter count and FLOPs per token of an experiment's model, as
 * `--dry-run` prints them. Needs a started backend (the compiler checks
 * kernels against it). With an adaptive softmax the FLOPs count every tail
 * cluster for every token, and `adaptive_tails` gives each cluster's cost
 * per token it is computed for, so the cost at any cluster frequencies is
 * the total minus (1 − share_i) × that (see `Results.adaptive_softmax`).
 *
 * @example
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { ensureBackend } from "../../ops/backend.ts";
 * import { presetExperiment } from "../presets.ts";
 * import { modelCosts } from "./language_model.ts";
 * await ensureBackend();
 * const c = modelCosts(presetExperiment("ptb"));
 * if (E.isRight(c)) console.log(c.right.params); // about 7.1 M
 * ```
 */
export function modelCosts(exp: Experiment): Either<
  string,
  {
    params: number;
    flops_per_token_forward: number;
    flops_per_token_train: number;
    adaptive_tails?: { ids: [number, number]; width: number; forward: number; train: number }[];
  }
> {
  const p = compile(exp.model);
  if (E.isLeft(p)) return E.left(`model: cannot compile (${p.left.stage}): ${p.left.message}`);
  const readout = exp.model.readout;
  const geom = readout._tag === "adaptive" ? adaptiveGeometry(readout, exp.model) : null;
  return E.right({
    params: p.right.paramCount,
    flops_per_token_forward: p.right.flops.forwardPerToken,
    flops_per_token_train: p.right.flops.trainPerToken,
    ...(geom === null ? {} : {
      adaptive_tails: tailFlopsPerRow(geom).map((f, i) => ({
        ids: [geom.tails[i].lo, geom.tails[i].hi] as [number, number],
        width: geom.tails[i].dim,
        ...f,
      })),
    }),
  });
}

/**
 * The adaptive softmax's FLOPs per token when each tail cluster runs only for
 * the tokens in it, at the shares of `tokens` (see `Results.adaptive_softmax`);
 * `null` for other readouts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adaptiveCosts } from "./language_model.ts";
 * import { referenceCrt } from "../../spec/reference_specs.ts";
 *
 * const model = { ...referenceCrt, readout: { _tag: "adaptive", cutoffs: [5000], divValue: 4 } } as const;
 * const c = adaptiveCosts(model, { forwardPerToken: 20e6, trainPerToken: 60e6 }, new Int32Array(100));
 * assert.deepEqual(c?.tail_shares, [0]); // every token is in the head: no tail cost at all
 * assert.equal(c?.flops_per_token_forward_gathered, 20e6 - 2 * (256 * 64 + 64 * 5000));
 * ```
 */
export function adaptiveCosts(
  model: ModelSpec,
  flops: { readonly forwardPerToken: number; readonly trainPerToken: number },
  tokens: Int32Array,
): Results["adaptive_softmax"] {
  if (model.readout._tag !== "adaptive") return null;
  const geom = adaptiveGeometry(model.readout, model);
  const counts = new Float64Array(geom.tails.length);
  // Targets are the tokens after the first; over a whole split the difference is nil.
  for (let i = 1; i < tokens.length; i++) {
    const t = tokens[i];
    if (t < geom.shortlist) continue;
    let c = 0;
    while (t >= geom.tails[c].hi) c++;
    counts[c]++;
  }
  const shares = Array.from(counts, (n) => n / Math.max(1, tokens.length - 1));
  const tail = tailFlopsPerRow(geom);
  const saved = (kind: "forward" | "train") =>
    tail.reduce((s, f, i) => s + f[kind] * (1 - shares[i]), 0);
  return {
    cutoffs: model.readout.cutoffs,
    tail_shares: shares,
    flops_per_token_forward_gathered: flops.forwardPerToken - saved("forward"),
    flops_per_token_train_gathered: flops.trainPerToken - saved("train"),
  };
}

// ---------------------------------------------------------------------------
// The runner

/**
 * Trains and evaluates one experiment into `opts.runDir`. Resolves to
 * `Right(Completed | Interrupted)` or `Left(RunError)`; never exits the
 * process. The experiment is decoded again first, so an unchecked value is
 * reported as `BadInput` rather than run.
 *
 * @example Interrupt after step 5, then resume
 * ```ts
 * import assert from "node:assert/strict";
 * import { join } from "node:path";
 * import { tinyExperiment, writeCorpus } from "../../tests/_corpus.ts";
 * import { runExperiment } from "./language_model.ts";
 *
 * const dir = await writeCorpus();
 * const exp = tinyExperiment(dir, { steps: 10 });
 * const runDir = join(dir, "run");
 * const stop = new AbortController();
 * const first = await runExperiment(exp, {
 *   runDir,
 *   progress: false,
 *   signal: stop.signal,
 *   onStep: ({ step }) => step === 5 && stop.abort(),
 * });
 * assert(first._tag === "Right" && first.right._tag === "Interrupted" && first.right.step === 5);
 * const second = await runExperiment(exp, { runDir, resume: true, progress: false });
 * assert(second._tag === "Right" && second.right._tag === "Completed");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export const runExperiment: (
  experiment: Experiment,
  opts: RunOptions,
) => Promise<Either<RunError, RunOutcome>> = taskRunner(decodeExperiment, prepareLanguageModel);

/**
 * Language modelling's part of a run: the corpus (data first: its errors
 * are the user's to fix, and cheap to find), the backend and program, the
 * training streams, and the task.
 */
async function prepareLanguageModel(
  exp: Experiment,
  opts: RunOptions,
  log: (m: string) => void,
): Promise<Either<RunError, TaskSetup<LmRecord, Results>>> {
  let corpus: Corpus;
  if (opts.corpus !== undefined) {
    corpus = opts.corpus;
  } else {
    const c = await loadExperimentData(exp, log);
    if (E.isLeft(c)) return badInput(c.left);
    corpus = c.right;
  }
  const vocab = corpus.vocab.words.length;
  if (vocab > exp.model.vocabSize) {
    return badInput(
      `model.vocabSize: ${exp.model.vocabSize} is smaller than the vocabulary of ` +
        `${corpus.dir} (${vocab} words)`,
    );
  }
  const started = await startProgram(opts, exp.model);
  if (E.isLeft(started)) return started;
  const { backend, program } = started.right;
  const B = exp.training.batchSize;
  const S = exp.model.segmentLen;
  let streams: Streams;
  try {
    streams = batchify(corpus.train, B);
  } catch (e) {
    return badInput(`training.batchSize: ${describeError(e)}`);
  }
  const windowOpts = { segmentLen: S, bpttSegments: exp.training.bpttSegments };
  if (countWindows(streams, windowOpts) === 0) {
    return badInput(
      `training: the training split (${corpus.train.length} tokens) has no full window of ` +
        `batchSize·bpttSegments·segmentLen = ${B * windowOpts.bpttSegments * S} tokens`,
    );
  }
  const files = exp.data.dataset === "wt103" ? WT103_FILES : PTB_FILES;
  return E.right({
    started: started.right,
    data: {
      dir: corpus.dir,
      sha256: {
        [files.train]: corpus.sha256.train,
        [files.valid]: corpus.sha256.valid,
        ...(corpus.sha256.test === null ? {} : { [files.test]: corpus.sha256.test }),
      },
    },
    batch: {
      rows: B,
      positions: windowOpts.bpttSegments * S,
      fields: "training.batchSize, training.bpttSegments",
    },
    fresh: () => {
      const fresh = program.init(exp.seed);
      const params = exp.training.readoutBias === "unigram"
        ? withReadoutBias(fresh, unigramBias(exp.model, corpus.train))
        : fresh;
      return startTraining(program, { seed: exp.seed, batchSize: B, params });
    },
    task: (run) => languageModelTask(exp, program, corpus, streams, run.resumed, opts.signal),
    evaluate: (run, task) =>
      evaluateAndReport(exp, program, backend, corpus, run, task, opts.signal, log),
  });
}

/**
 * Language modelling as a {@linkcode Task}: B ordered streams of the training
 * split read in windows of K·S tokens, the memory carried from window to
 * window and reset at each epoch; periodic validation on a prefix of the
 * valid split (or all of it); perplexity curves.
 */
function languageModelTask(
  exp: Experiment,
  program: Program,
  corpus: Corpus,
  streams: Streams,
  resumed: { readonly checkpoint: Checkpoint; readonly file: string } | null,
  signal: AbortSignal | undefined,
): Either<RunError, Task<LmRecord>> {
  const B = exp.training.batchSize;
  const K = exp.training.bpttSegments;
  const S = exp.model.segmentLen;
  const windowOpts = { segmentLen: S, bpttSegments: K };
  let rng: Rng;
  let pos: DataPosition;
  if (resumed !== null) {
    const dropout = resumed.checkpoint.rng.dropout;
    if (dropout === undefined) return badInput(`${resumed.file}: no dropout RNG state`);
    rng = restoreRng(dropout);
    pos = resumed.checkpoint.data;
  } else {
    rng = createRng(exp.seed);
    pos = { epoch: 0, position: 0 };
  }
  let windows = segmentWindows(streams, { ...windowOpts, from: pos.position });
  const perStep = tokensPerStep(exp);
  // The curve's valid panel shows one measure: periodic validations read only a
  // prefix of the split unless validTokens is null, so the whole-split final
  // score joins the line only when the periodic ones are whole-split too.
  const periodicWhole = exp.training.validTokens === null ||
    exp.training.validTokens >= corpus.valid.length;
  return E.right({
    steps: totalSteps(exp),
    budget: "tokens",
    bpttSegments: K,
    training: exp.training,
    next: (ts) => {
      let next = windows.next();
      if (next.done) {
        // A new epoch: the streams start over, so does the memory.
        pos = { epoch: pos.epoch + 1, position: 0 };
        windows = segmentWindows(streams, windowOpts);
        next = windows.next();
        program.disposeState(ts.memory);
        ts = { ...ts, memory: program.initState(B) };
      }
      if (next.done) throw new Error("internal: an epoch without windows");
      const w = next.value;
      pos = { epoch: pos.epoch, position: w.nextPosition };
      return Promise.resolve(E.right({
        ts,
        batch: {
          tokens: tf.tensor2d(w.tokens, [B, w.windowLen], "int32"),
          targets: tf.tensor2d(w.targets, [B, w.windowLen], "int32"),
          units: perStep,
          progress: perStep,
        },
      }));
    },
    dropoutSeed: () => rng.next(),
    trainRecord: (f) => ({
      kind: "train",
      step: f.step,
      epoch: pos.epoch,
      loss: f.loss,
      ppl: Math.exp(f.loss),
      lr: f.lr,
      grad_norm: f.gradNorm,
      tokens: f.units,
      tokens_per_second: f.unitsPerSecond,
      elapsed: f.elapsed,
    }),
    validate: async (step, params, elapsed) => {
      const score = await evaluateSplit(program, params, corpus.valid, {
        batchSize: exp.evaluation.batchSize,
        ...(exp.training.validTokens === null ? {} : { maxTokens: exp.training.validTokens }),
        ...(signal === undefined ? {} : { signal }),
      });
      if (score === null) return null;
      return {
        kind: "valid",
        step,
        loss: score.loss,
        ppl: score.ppl,
        tokens: score.tokens,
        whole_split: periodicWhole,
        elapsed: elapsed(),
      };
    },
    curve: (records, finalPpl) =>
      learningCurveSvg(
        records
          .filter((r) => r.kind !== "valid" || r.whole_split === periodicWhole)
          .map((r): CurvePoint =>
            r.kind === "train"
              ? { step: r.step, trainLoss: r.loss }
              : { step: r.step, validPpl: r.ppl }
          ),
        {
          title: `${exp.name}: ${exp.model._tag}, S = ${S}` +
            (periodicWhole ? "" : `; valid curve on the first ${exp.training.validTokens} tokens`) +
            (finalPpl === undefined ? "" : `; final valid ppl ${finalPpl.toFixed(1)}`),
        },
      ),
    checkpoint: () => ({ data: pos, rng: { dropout: rng.state() } }),
  });
}
