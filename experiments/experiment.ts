/**
 * Experiments as data: an {@linkcode Experiment} holds everything a run
 * needs — the model spec, where the data is, the training recipe, how to
 * evaluate and where to write — as one plain, JSON-serialisable value.
 * Presets (`presets.ts`) build them with `override(base, patch)`; the command
 * line patches them with `--config FILE.json` and `--set path=value`; the
 * result always goes through {@linkcode decodeExperiment} before it runs, so a
 * typo or a wrongly typed value is an error naming its path
 * (`training.lr: expected a positive number, got "fast" (string)`).
 *
 * A {@linkcode Sweep} is a named list of experiments run one after another
 * and compared in one table.
 *
 * @example Decode an experiment read from JSON
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { decodeExperiment } from "./experiment.ts";
 * import { presetExperiment } from "./presets.ts";
 *
 * const exp = presetExperiment("ptb", { quick: true });
 * const r = decodeExperiment({ ...exp, training: { ...exp.training, lr: -1 } });
 * if (E.isLeft(r)) console.log(r.left.message); // training.lr: must be a positive number, got -1
 * ```
 *
 * @module
 */
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import { decodeWith, SpecError, type SpecIssue } from "../spec/decode.ts";
import {
  type FieldCodecs,
  NonNegativeInt,
  NonNegativeNumber,
  oneOf,
  optional,
  PositiveInt,
  PositiveNumber,
  Probability,
  strict,
  type StrictCodec,
} from "../spec/combinators.ts";
import type { Either } from "../spec/either.ts";
import type { ModelSpec } from "../spec/codecs.ts";
import { ModelSpecField, Name, nullable, UnitInterval } from "./fields.ts";

// ---------------------------------------------------------------------------
// Settings: each an interface with a comment per field, and its codec

/**
 * Where the corpus is.
 *
 * @example
 * ```ts
 * import type { DataSettings } from "./experiment.ts";
 *
 * const fromEnvironment: DataSettings = { dir: null };
 * ```
 */
export interface DataSettings {
  /**
   * The corpus: `ptb` (word-level Penn Treebank, `data/ptb.ts`) or `wt103`
   * (WikiText-103, `data/wt103.ts`). Optional: absent means `ptb`, so configs
   * written before this field existed keep their meaning.
   */
  readonly dataset?: "ptb" | "wt103";
  /**
   * Directory holding the split files: `ptb.train.txt`, `ptb.valid.txt` and
   * optionally `ptb.test.txt`, or `wiki.train.tokens`, `wiki.valid.tokens`
   * and optionally `wiki.test.tokens`. `null`: `$CRT_DATA_DIR`, else the
   * cache folder (`$XDG_CACHE_HOME/crt/<dataset>` or
   * `~/.cache/crt/<dataset>`), downloaded into when missing. `--data DIR`
   * sets it; the run's `config.json` records the directory actually read.
   */
  readonly dir: string | null;
}

/**
 * Decodes {@linkcode DataSettings}.
 *
 * @example
 * ```ts
 * import { DataSettingsCodec } from "./experiment.ts";
 *
 * console.log(DataSettingsCodec.is({ dir: null }), DataSettingsCodec.is({ dir: 3 })); // true false
 * ```
 */
export const DataSettingsCodec: StrictCodec<FieldCodecs<DataSettings>> = strict<
  FieldCodecs<DataSettings>
>({
  dataset: optional(oneOf(["ptb", "wt103"], "dataset")),
  dir: nullable(t.string),
}, "DataSettings");

/**
 * The training fields every task shares: batch size, the wall-clock guard,
 * AdamW with warm-up and decay, clipping, NC-GRU's refresh, and the
 * validation, checkpoint and logging cadence. Each task's training settings
 * extend it ({@linkcode TrainingSettings}, the clip classifier's
 * `ClassifierTraining`) and its codec spreads {@linkcode sharedTrainingFields}.
 *
 * @example
 * ```ts
 * import type { SharedTraining } from "./experiment.ts";
 * import { presetExperiment } from "./presets.ts";
 *
 * const tr: SharedTraining = presetExperiment("ptb").training;
 * console.log(tr.lr, tr.clipNorm); // 0.001 0.25
 * ```
 */
export interface SharedTraining {
  /** B: the batch — parallel ordered streams (language models), clips (classifiers). */
  readonly batchSize: number;
  /**
   * Wall-clock safety stop: training ends once this many seconds have passed
   * since the run started (periodic validation included, the final
   * evaluation not), even if the budget is not spent. `null`: no limit. The
   * schedule is not rescaled: size the budget to finish first and keep this
   * as a guard.
   */
  readonly maxSeconds: number | null;
  /** Peak AdamW learning rate, reached at the end of warm-up (reference CRT: 1e-3). */
  readonly lr: number;
  /** Linear warm-up from lr/warmupSteps to lr over this many steps. */
  readonly warmupSteps: number;
  /** Decay after warm-up, down to `finalLrRatio`·lr at the last step. */
  readonly decay: "cosine" | "linear" | "constant";
  /** The learning rate at the last step as a fraction of `lr`, in [0, 1]. */
  readonly finalLrRatio: number;
  /** AdamW decoupled weight decay on matrices (not biases or gains). Default 0.01. */
  readonly weightDecay: number;
  /** Adam β1, in [0, 1). Default 0.9. */
  readonly beta1: number;
  /** Adam β2, in [0, 1). Default 0.999. */
  readonly beta2: number;
  /** Adam ε. Default 1e-8. */
  readonly eps: number;
  /** Clip gradients to this global L2 norm; 0 turns clipping off. */
  readonly clipNorm: number;
  /** NC-GRU only: recompute (I + A)⁻¹ exactly every this many steps. Default 100. */
  readonly cayleyRefresh: number;
  /** Validate every this many steps (0: only the final evaluation). */
  readonly validEvery: number;
  /** Write a checkpoint every this many steps (0: only at the end of training and on Ctrl-C). */
  readonly checkpointEvery: number;
  /** Append a `train` record (mean loss since the last one) to `metrics.jsonl` every this many steps. */
  readonly logEvery: number;
}

/**
 * The codecs of {@linkcode SharedTraining}'s fields, spread into each task's
 * training codec.
 *
 * @example
 * ```ts
 * import { sharedTrainingFields } from "./experiment.ts";
 * console.log(sharedTrainingFields.clipNorm.is(-1)); // false
 * ```
 */
export const sharedTrainingFields: FieldCodecs<SharedTraining> = {
  batchSize: PositiveInt,
  maxSeconds: nullable(PositiveNumber),
  lr: PositiveNumber,
  warmupSteps: NonNegativeInt,
  decay: oneOf(["cosine", "linear", "constant"], "decay"),
  finalLrRatio: UnitInterval,
  weightDecay: NonNegativeNumber,
  beta1: Probability,
  beta2: Probability,
  eps: PositiveNumber,
  clipNorm: NonNegativeNumber,
  cayleyRefresh: PositiveInt,
  validEvery: NonNegativeInt,
  checkpointEvery: NonNegativeInt,
  logEvery: PositiveInt,
};

/**
 * AdamW's settings every preset uses: decoupled weight decay 0.01, β1 0.9,
 * β2 0.999, ε 1e-8.
 *
 * @example
 * ```ts
 * import { ADAMW_DEFAULTS } from "./experiment.ts";
 * console.log(ADAMW_DEFAULTS.beta2); // 0.999
 * ```
 */
export const ADAMW_DEFAULTS = { weightDecay: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8 } as const;

/**
 * A language model's training recipe: the shared fields, plus BPTT windows,
 * the token budget, the periodic validation's length and the output bias.
 *
 * @example
 * ```ts
 * import type { TrainingSettings } from "./experiment.ts";
 * import { presetExperiment } from "./presets.ts";
 *
 * const tr: TrainingSettings = presetExperiment("ptb").training;
 * console.log(tr.batchSize * tr.bpttSegments); // 40
 * ```
 */
export interface TrainingSettings extends SharedTraining {
  /**
   * K: segments per training window; gradients flow back through the carried
   * state across them and are cut at the window's start. A step reads
   * B·K·S tokens. Reference 2 for CRT (1 for the full-length Transformer,
   * which carries no state, so that its step also reads B·S = 1400 tokens).
   */
  readonly bpttSegments: number;
  /**
   * Training budget in tokens; the run takes ⌈tokens / (B·K·S)⌉ steps (the
   * learning-rate schedule spans exactly those), going on into further
   * epochs when the budget exceeds the split (memory reset at each epoch).
   */
  readonly tokens: number;
  /**
   * Periodic validation reads only the first this many tokens of the valid
   * split (as a stream, memory carried), to stay cheap. `null`: the whole
   * split. The final evaluation always reads the whole split.
   */
  readonly validTokens: number | null;
  /**
   * How a fresh run sets the output bias: `unigram`, the log-frequencies of
   * the training split's words (add-one smoothed), so training starts at the
   * unigram model's loss instead of ln V (experiments/tasks/readout_bias.ts);
   * `zeros`, the model's own initialiser. Reference `unigram`.
   */
  readonly readoutBias: "unigram" | "zeros";
}

/**
 * Decodes {@linkcode TrainingSettings}.
 *
 * @example
 * ```ts
 * import { TrainingSettingsCodec } from "./experiment.ts";
 * import { presetExperiment } from "./presets.ts";
 *
 * console.log(TrainingSettingsCodec.is(presetExperiment("ptb").training)); // true
 * ```
 */
export const TrainingSettingsCodec: StrictCodec<FieldCodecs<TrainingSettings>> = strict<
  FieldCodecs<TrainingSettings>
>({
  ...sharedTrainingFields,
  bpttSegments: PositiveInt,
  tokens: PositiveInt,
  validTokens: nullable(PositiveInt),
  readoutBias: oneOf(["unigram", "zeros"], "readout bias"),
}, "TrainingSettings");

/**
 * How the final evaluation reads the valid and test splits.
 *
 * @example
 * ```ts
 * import type { EvaluationSettings } from "./experiment.ts";
 *
 * const reference: EvaluationSettings = { batchSize: 10, test: true };
 * ```
 */
export interface EvaluationSettings {
  /**
   * B_eval: the split is read as this many parallel streams, each from its
   * start with a fresh memory, in windows of one segment with the memory
   * carried. Reference 10. Fewer when the split is too short.
   */
  readonly batchSize: number;
  /** Evaluate the test split when `ptb.test.txt` is present (else it is reported as skipped). */
  readonly test: boolean;
}

/**
 * Decodes {@linkcode EvaluationSettings}.
 *
 * @example
 * ```ts
 * import { EvaluationSettingsCodec } from "./experiment.ts";
 *
 * console.log(EvaluationSettingsCodec.is({ batchSize: 10, test: true })); // true
 * ```
 */
export const EvaluationSettingsCodec: StrictCodec<FieldCodecs<EvaluationSettings>> = strict<
  FieldCodecs<EvaluationSettings>
>({ batchSize: PositiveInt, test: t.boolean }, "EvaluationSettings");

/**
 * Where and what a run writes.
 *
 * @example
 * ```ts
 * import type { OutputSettings } from "./experiment.ts";
 *
 * const out: OutputSettings = { dir: "runs", keepCheckpoints: 2 };
 * ```
 */
export interface OutputSettings {
  /** Folder that run folders are created in (`<dir>/<name>-<time>`). `--out DIR` sets it. */
  readonly dir: string;
  /** Checkpoints kept in a run folder, newest first. Default 2. */
  readonly keepCheckpoints: number;
}

/**
 * Decodes {@linkcode OutputSettings}.
 *
 * @example
 * ```ts
 * import { OutputSettingsCodec } from "./experiment.ts";
 *
 * console.log(OutputSettingsCodec.is({ dir: "runs", keepCheckpoints: 0 })); // false
 * ```
 */
export const OutputSettingsCodec: StrictCodec<FieldCodecs<OutputSettings>> = strict<
  FieldCodecs<OutputSettings>
>({ dir: t.string, keepCheckpoints: PositiveInt }, "OutputSettings");

/**
 * One experiment: model, data, training, evaluation and output settings,
 * all plain data. Build variants with `override(base, patch)` (`args.ts`).
 *
 * @example
 * ```ts
 * import { override } from "./overrides.ts";
 * import type { Experiment } from "./experiment.ts";
 * import { presetExperiment } from "./presets.ts";
 *
 * const slower: Experiment = override(presetExperiment("ptb"), { training: { lr: 3e-4 } });
 * console.log(slower.training.lr, slower.training.batchSize); // 0.0003 20
 * ```
 */
export interface Experiment {
  /** Names the run folder and the results (`ptb`, `ptb-quick`, ...). */
  readonly name: string;
  /** One line saying what the experiment is for. */
  readonly description: string;
  /** Seeds the parameters and the dropout generator; equal seeds give equal runs. */
  readonly seed: number;
  /** The model, decoded with the model codec and its cross-field rules. */
  readonly model: ModelSpec;
  /** Where the corpus is. */
  readonly data: DataSettings;
  /** The training recipe. */
  readonly training: TrainingSettings;
  /** The final evaluation. */
  readonly evaluation: EvaluationSettings;
  /** Where results go. */
  readonly output: OutputSettings;
}

/**
 * Decodes an {@linkcode Experiment}, structure only;
 * {@linkcode decodeExperiment} adds the cross-field rules.
 *
 * @example
 * ```ts
 * import { ExperimentCodec } from "./experiment.ts";
 * import { presetExperiment } from "./presets.ts";
 *
 * console.log(ExperimentCodec.is(presetExperiment("ptb-full"))); // true
 * ```
 */
export const ExperimentCodec: StrictCodec<FieldCodecs<Experiment>> = strict<
  FieldCodecs<Experiment>
>({
  name: Name,
  description: t.string,
  seed: NonNegativeInt,
  model: ModelSpecField,
  data: DataSettingsCodec,
  training: TrainingSettingsCodec,
  evaluation: EvaluationSettingsCodec,
  output: OutputSettingsCodec,
}, "Experiment");

// ---------------------------------------------------------------------------
// Derived quantities

/**
 * Tokens one training step reads: B·K·S.
 *
 * @example
 * ```ts
 * import { tokensPerStep } from "./experiment.ts";
 * import { presetExperiment } from "./presets.ts";
 *
 * console.log(tokensPerStep(presetExperiment("ptb"))); // 1400
 * ```
 */
export function tokensPerStep(exp: Experiment): number {
  return exp.training.batchSize * exp.training.bpttSegments * exp.model.segmentLen;
}

/**
 * Steps the token budget buys: ⌈tokens / (B·K·S)⌉.
 *
 * @example
 * ```ts
 * import { totalSteps } from "./experiment.ts";
 * import { presetExperiment } from "./presets.ts";
 *
 * const exp = presetExperiment("ptb");
 * console.log(totalSteps({ ...exp, training: { ...exp.training, tokens: 14_001 } })); // 11
 * ```
 */
export function totalSteps(exp: Experiment): number {
  return Math.ceil(exp.training.tokens / tokensPerStep(exp));
}

/**
 * The learning rate of step `step` (1-based) of `totalSteps`: linear warm-up
 * to `lr` over `warmupSteps`, then `decay` down to `finalLrRatio`·lr at the
 * last step. A pure function of the step, so a resumed run follows the same
 * schedule.
 *
 * @example
 * ```ts
 * import { learningRate } from "./experiment.ts";
 * import { presetExperiment } from "./presets.ts";
 *
 * const tr = presetExperiment("ptb").training; // lr 1e-3, 200 warm-up steps, cosine
 * console.log(learningRate(tr, { step: 100, totalSteps: 1000 })); // 0.0005
 * console.log(learningRate(tr, { step: 1000, totalSteps: 1000 })); // 0
 * ```
 */
export function learningRate(
  training: Pick<TrainingSettings, "lr" | "warmupSteps" | "decay" | "finalLrRatio">,
  at: { readonly step: number; readonly totalSteps: number },
): number {
  const { lr, warmupSteps, decay, finalLrRatio } = training;
  const { step, totalSteps } = at;
  if (step <= warmupSteps) return (lr * step) / warmupSteps;
  const floor = lr * finalLrRatio;
  const span = totalSteps - warmupSteps;
  const progress = span <= 0 ? 1 : Math.min(1, (step - warmupSteps) / span);
  switch (decay) {
    case "constant":
      return lr;
    case "linear":
      return floor + (lr - floor) * (1 - progress);
    case "cosine":
      return floor + (lr - floor) * 0.5 * (1 + Math.cos(Math.PI * progress));
  }
}

// ---------------------------------------------------------------------------
// Decoding

/**
 * Paths of a decode rooted at "" start with "."; drops it so they read like
 * `--set` paths (the root itself reads `experiment`).
 *
 * @example
 * ```ts
 * import { rootless } from "./experiment.ts";
 * import { SpecError } from "../spec/decode.ts";
 * console.log(rootless(new SpecError([{ path: ".training.lr", message: "bad" }])).issues[0].path); // training.lr
 * ```
 */
export function rootless(e: SpecError): SpecError {
  return new SpecError(e.issues.map((i) => ({
    path: i.path === "" ? "experiment" : i.path.replace(/^\./, ""),
    message: i.message,
  })));
}

/**
 * The rules that relate fields of a structurally valid experiment (paths as
 * `--set` writes them; the model's own rules run in its codec): a
 * language-model readout (`lm` or `adaptive`), a budget of at least one step
 * and a validation sample of at least two tokens per stream.
 *
 * @example
 * ```ts
 * import { checkExperiment } from "./experiment.ts";
 * import { presetExperiment } from "./presets.ts";
 *
 * const exp = presetExperiment("ptb");
 * console.log(checkExperiment({ ...exp, training: { ...exp.training, tokens: 10 } })[0].path);
 * // training.tokens
 * ```
 */
export function checkExperiment(exp: Experiment): readonly SpecIssue[] {
  const issues: SpecIssue[] = [];
  if (exp.model.readout._tag === "classifier") {
    issues.push({
      path: "model.readout._tag",
      message: `word-level language modelling needs the "lm" or "adaptive" readout, ` +
        `got "${exp.model.readout._tag}"`,
    });
  }
  const perStep = tokensPerStep(exp);
  if (exp.training.tokens < perStep) {
    issues.push({
      path: "training.tokens",
      message:
        `${exp.training.tokens} is less than one step (batchSize·bpttSegments·segmentLen = ${perStep})`,
    });
  }
  const vt = exp.training.validTokens;
  if (vt !== null && vt < 2 * exp.evaluation.batchSize) {
    issues.push({
      path: "training.validTokens",
      message:
        `${vt} gives fewer than 2 tokens to each of evaluation.batchSize (${exp.evaluation.batchSize}) streams`,
    });
  }
  return issues;
}

/**
 * Decodes an untrusted value (a preset after `--config`/`--set`, a run's
 * `config.json`) into an {@linkcode Experiment}: unknown fields are
 * rejected, every number and choice is checked, then
 * {@linkcode checkExperiment} runs. Issue paths read like `--set` paths
 * (`training.lr`, `model.memory.cell`). Never throws.
 *
 * @example
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { decodeExperiment } from "./experiment.ts";
 * import { presetExperiment } from "./presets.ts";
 *
 * const exp = presetExperiment("ptb");
 * const r = decodeExperiment({ ...exp, training: { ...exp.training, lrr: 1 } });
 * if (E.isLeft(r)) console.log(r.left.issues[0].path); // training.lrr
 * ```
 */
export function decodeExperiment(u: unknown): Either<SpecError, Experiment> {
  const d = decodeWith(ExperimentCodec, "", u);
  if (E.isLeft(d)) return E.left(rootless(d.left));
  const issues = checkExperiment(d.right);
  return issues.length === 0 ? d : E.left(new SpecError(issues));
}

// Every codec here is typed `strict<FieldCodecs<T>>`, so it decodes exactly T by construction
// (a missing, extra or differently typed field does not compile).
