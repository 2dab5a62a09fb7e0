/**
 * Clip classification experiments (Toyota Smarthome) as data: a
 * {@linkcode SmarthomeExperiment} holds the model, the dataset directory and
 * protocol, the clip length, the training recipe, the evaluation and the
 * output settings as one plain, JSON-serialisable value, decoded strictly
 * by {@linkcode decodeSmarthomeExperiment} (every problem names its path, as
 * `--set` writes it). The presets `smarthome`, `smarthome-full`,
 * `smarthome-cv1` and `smarthome-cv2` are built in `clips_presets.ts` and
 * listed in `presets.ts`.
 *
 * @example Decode an override
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { decodeSmarthomeExperiment } from "./clips_experiment.ts";
 * import { smarthomePreset } from "./clips_presets.ts";
 *
 * const exp = smarthomePreset("smarthome", { quick: true });
 * const r = decodeSmarthomeExperiment({ ...exp, data: { ...exp.data, clipFrames: 100 } });
 * if (E.isLeft(r)) console.log(r.left.message);
 * // data.clipFrames: 100 is not a whole number of segments of model.segmentLen (16)
 * ```
 *
 * @module
 */
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import type { Assert, MutuallyAssignable } from "../../spec/_assert.ts";
import { decodeWith, SpecError, type SpecIssue } from "../../spec/decode.ts";
import {
  type FieldCodecs,
  NonNegativeInt,
  numberWhere,
  oneOf,
  PositiveInt,
  PositiveNumber,
  strict,
  type StrictCodec,
  taggedUnion,
  type TaggedUnionCodec,
} from "../../spec/combinators.ts";
import type { Either } from "../../spec/either.ts";
import type { ModelSpec } from "../../spec/codecs.ts";
import {
  type OutputSettings,
  OutputSettingsCodec,
  type SharedTraining,
  sharedTrainingFields,
} from "../experiment.ts";
import { ModelSpecField, Name, nullable } from "../fields.ts";
import type { Balance } from "../data/smarthome_store.ts";
import type { ClipFilter, Protocol, ValidationSplit } from "../data/smarthome_protocols.ts";

// ---------------------------------------------------------------------------
// Settings

/**
 * Where the clips are and how they are read.
 *
 * @example
 * ```ts
 * import type { SmarthomeData } from "./clips_experiment.ts";
 * import { PROTOCOLS } from "../data/smarthome_protocols.ts";
 * const data: SmarthomeData = {
 *   dir: "/data/smarthome", protocol: PROTOCOLS["cross-subject"], clipFrames: 128, standardize: true,
 * };
 * ```
 */
export interface SmarthomeData {
  /**
   * The dataset directory (`classes.txt`, `clips.csv`, `features/`; see
   * `smarthome.ts`). `null`: `$CRT_SMARTHOME_DIR`. `--data DIR` sets it; the
   * run's `config.json` records the directory actually read.
   */
  readonly dir: string | null;
  /** Which clips train, validate and test, and which classes are used. */
  readonly protocol: Protocol;
  /**
   * L: frames per clip as the model reads it (nearest-frame resampling of
   * each clip's T frames), a whole number of segments. Default 128.
   */
  readonly clipFrames: number;
  /**
   * Standardise each feature to zero mean and unit variance, with the
   * statistics of (up to 512 of) the training clips. Default true.
   */
  readonly standardize: boolean;
}

/**
 * The training recipe of a classifier: batches of whole clips, a budget in
 * epochs, AdamW with warm-up and decay, clipping, balance, cadence.
 *
 * @example
 * ```ts
 * import { smarthomePreset } from "./clips_presets.ts";
 * console.log(smarthomePreset("smarthome").training.balance); // classBalanced
 * ```
 */
export interface ClassifierTraining extends SharedTraining {
  /**
   * Budget: the run takes ⌈epochs · N_train / B⌉ steps (N_train: training
   * clips after validation is carved out); fractions are fine. Each clip
   * starts from a fresh memory; periodic validation reads the whole
   * validation set.
   */
  readonly epochs: number;
  /**
   * How batches are drawn: `classBalanced` (a class uniformly, then one of
   * its clips; the default, for Smarthome's imbalance) or `uniform` (a clip
   * uniformly). The loss is unweighted either way.
   */
  readonly balance: Balance;
}

/**
 * The final evaluation.
 *
 * @example
 * ```ts
 * import type { ClassifierEvaluation } from "./clips_experiment.ts";
 * const e: ClassifierEvaluation = { batchSize: 32, test: true };
 * ```
 */
export interface ClassifierEvaluation {
  /** Clips per forward pass. Default 32. */
  readonly batchSize: number;
  /** Evaluate the test set (skipped, with a note, when the protocol selects no test clip). */
  readonly test: boolean;
}

/**
 * One clip-classification experiment.
 *
 * @example
 * ```ts
 * import { override } from "../overrides.ts";
 * import type { SmarthomeExperiment } from "./clips_experiment.ts";
 * import { smarthomePreset } from "./clips_presets.ts";
 * const longer: SmarthomeExperiment = override(smarthomePreset("smarthome"), { training: { epochs: 60 } });
 * console.log(longer.training.epochs); // 60
 * ```
 */
export interface SmarthomeExperiment {
  /** Experiment kind (tells a run folder's `config.json` apart from a language-model one). */
  readonly _tag: "smarthome";
  /** Names the run folder and the results. */
  readonly name: string;
  /** One line saying what the experiment is for. */
  readonly description: string;
  /** Seeds the parameters, the validation hold-out, the batches and dropout. */
  readonly seed: number;
  /** The model: feature input (`input.dim` = F) and a classifier readout. */
  readonly model: ModelSpec;
  /** The clips. */
  readonly data: SmarthomeData;
  /** The training recipe. */
  readonly training: ClassifierTraining;
  /** The final evaluation. */
  readonly evaluation: ClassifierEvaluation;
  /** Where results go. */
  readonly output: OutputSettings;
}

// ---------------------------------------------------------------------------
// Codecs

const Ids = nullable(t.readonlyArray(NonNegativeInt));

/**
 * Decodes a {@linkcode ClipFilter}.
 *
 * @example
 * ```ts
 * import { ClipFilterCodec } from "./clips_experiment.ts";
 * console.log(ClipFilterCodec.is({ subjects: null, cameras: [2] })); // true
 * ```
 */
export const ClipFilterCodec: StrictCodec<FieldCodecs<ClipFilter>> = strict<
  FieldCodecs<ClipFilter>
>({ subjects: Ids, cameras: Ids }, "ClipFilter");

const Fraction = numberWhere({
  name: "Fraction",
  expected: "a number in (0, 1)",
  accepts: (n) => n > 0 && n < 1,
});

type Holdout = Extract<ValidationSplit, { _tag: "holdout" }>;
type FilterSplit = Extract<ValidationSplit, { _tag: "filter" }>;

/**
 * Decodes a {@linkcode ValidationSplit} by `_tag` (`holdout` or `filter`).
 *
 * @example
 * ```ts
 * import { ValidationSplitCodec } from "./clips_experiment.ts";
 * console.log(ValidationSplitCodec.is({ _tag: "holdout", fraction: 0.1 })); // true
 * ```
 */
export const ValidationSplitCodec: TaggedUnionCodec<{
  readonly holdout: StrictCodec<FieldCodecs<Holdout>>;
  readonly filter: StrictCodec<FieldCodecs<FilterSplit>>;
}> = taggedUnion({
  holdout: strict<FieldCodecs<Holdout>>(
    { _tag: t.literal("holdout"), fraction: Fraction },
    "Holdout",
  ),
  filter: strict<FieldCodecs<FilterSplit>>(
    { _tag: t.literal("filter"), subjects: Ids, cameras: Ids },
    "FilterSplit",
  ),
}, { name: "ValidationSplit", noun: "validation split" });

/**
 * Decodes a {@linkcode Protocol}.
 *
 * @example
 * ```ts
 * import { ProtocolCodec } from "./clips_experiment.ts";
 * import { PROTOCOLS } from "../data/smarthome_protocols.ts";
 * console.log(ProtocolCodec.is(PROTOCOLS["cross-view-1"])); // true
 * ```
 */
export const ProtocolCodec: StrictCodec<FieldCodecs<Protocol>> = strict<FieldCodecs<Protocol>>({
  name: Name,
  train: ClipFilterCodec,
  valid: ValidationSplitCodec,
  test: ClipFilterCodec,
  classes: nullable(t.readonlyArray(t.string)),
}, "Protocol");

/**
 * Decodes {@linkcode SmarthomeData}.
 *
 * @example
 * ```ts
 * import { SmarthomeDataCodec } from "./clips_experiment.ts";
 * import { smarthomePreset } from "./clips_presets.ts";
 * console.log(SmarthomeDataCodec.is(smarthomePreset("smarthome").data)); // true
 * ```
 */
export const SmarthomeDataCodec: StrictCodec<FieldCodecs<SmarthomeData>> = strict<
  FieldCodecs<SmarthomeData>
>({
  dir: nullable(t.string),
  protocol: ProtocolCodec,
  clipFrames: PositiveInt,
  standardize: t.boolean,
}, "SmarthomeData");

/**
 * Decodes {@linkcode ClassifierTraining}.
 *
 * @example
 * ```ts
 * import { ClassifierTrainingCodec } from "./clips_experiment.ts";
 * import { smarthomePreset } from "./clips_presets.ts";
 * console.log(ClassifierTrainingCodec.is(smarthomePreset("smarthome").training)); // true
 * ```
 */
export const ClassifierTrainingCodec: StrictCodec<FieldCodecs<ClassifierTraining>> = strict<
  FieldCodecs<ClassifierTraining>
>({
  ...sharedTrainingFields,
  epochs: PositiveNumber,
  balance: oneOf(["classBalanced", "uniform"], "balance"),
}, "ClassifierTraining");

/**
 * Decodes {@linkcode ClassifierEvaluation}.
 *
 * @example
 * ```ts
 * import { ClassifierEvaluationCodec } from "./clips_experiment.ts";
 * console.log(ClassifierEvaluationCodec.is({ batchSize: 32, test: true })); // true
 * ```
 */
export const ClassifierEvaluationCodec: StrictCodec<FieldCodecs<ClassifierEvaluation>> = strict<
  FieldCodecs<ClassifierEvaluation>
>({ batchSize: PositiveInt, test: t.boolean }, "ClassifierEvaluation");

/**
 * Decodes a {@linkcode SmarthomeExperiment}, structure only;
 * {@linkcode decodeSmarthomeExperiment} adds the cross-field rules.
 *
 * @example
 * ```ts
 * import { SmarthomeExperimentCodec } from "./clips_experiment.ts";
 * import { smarthomePreset } from "./clips_presets.ts";
 * console.log(SmarthomeExperimentCodec.is(smarthomePreset("smarthome-cv2"))); // true
 * ```
 */
export const SmarthomeExperimentCodec: StrictCodec<FieldCodecs<SmarthomeExperiment>> = strict<
  FieldCodecs<SmarthomeExperiment>
>({
  _tag: t.literal("smarthome"),
  name: Name,
  description: t.string,
  seed: NonNegativeInt,
  model: ModelSpecField,
  data: SmarthomeDataCodec,
  training: ClassifierTrainingCodec,
  evaluation: ClassifierEvaluationCodec,
  output: OutputSettingsCodec,
}, "SmarthomeExperiment");

// Compile-time: the codecs typed `strict<FieldCodecs<T>>` decode exactly T by construction
// (a missing, extra or differently typed field does not compile); the others are asserted.
type _Split = Assert<MutuallyAssignable<t.TypeOf<typeof ValidationSplitCodec>, ValidationSplit>>;

/**
 * The rules between fields (paths as `--set` writes them): feature input and
 * a classifier readout; a clip of whole segments; a protocol class list
 * whose length is the classifier's class count.
 *
 * @example
 * ```ts
 * import { checkSmarthomeExperiment } from "./clips_experiment.ts";
 * import { smarthomePreset } from "./clips_presets.ts";
 * const exp = smarthomePreset("smarthome");
 * console.log(checkSmarthomeExperiment({ ...exp, model: { ...exp.model, input: undefined } })[0].path);
 * // model.input
 * ```
 */
export function checkSmarthomeExperiment(exp: SmarthomeExperiment): readonly SpecIssue[] {
  const issues: SpecIssue[] = [];
  const m = exp.model;
  if (m.input?._tag !== "features") {
    issues.push({
      path: "model.input",
      message: `clip classification reads per-frame feature vectors: set it to ` +
        `{ "_tag": "features", "dim": F } (got ${JSON.stringify(m.input ?? { _tag: "tokens" })})`,
    });
  }
  if (m.readout._tag !== "classifier") {
    issues.push({
      path: "model.readout._tag",
      message: `clip classification needs the "classifier" readout, got "${m.readout._tag}"`,
    });
  }
  if (exp.data.clipFrames % m.segmentLen !== 0) {
    issues.push({
      path: "data.clipFrames",
      message: `${exp.data.clipFrames} is not a whole number of segments of model.segmentLen ` +
        `(${m.segmentLen})`,
    });
  }
  const classes = exp.data.protocol.classes;
  if (
    classes !== null && m.readout._tag === "classifier" && classes.length !== m.readout.nClasses
  ) {
    issues.push({
      path: "model.readout.nClasses",
      message: `${m.readout.nClasses}, but data.protocol.classes lists ${classes.length} classes`,
    });
  }
  if (classes !== null) {
    const dup = classes.find((c, i) => classes.indexOf(c) !== i);
    if (dup !== undefined) {
      issues.push({ path: "data.protocol.classes", message: `"${dup}" is listed twice` });
    }
  }
  return issues;
}

/** Paths of a decode rooted at "" start with "."; drop it so they read like `--set` paths. */
function rootless(e: SpecError): SpecError {
  return new SpecError(e.issues.map((i) => ({
    path: i.path === "" ? "experiment" : i.path.replace(/^\./, ""),
    message: i.message,
  })));
}

/**
 * Decodes an untrusted value (a preset after `--config`/`--set`, a run's
 * `config.json`) into a {@linkcode SmarthomeExperiment}: unknown fields are
 * rejected, every number and choice is checked, then
 * {@linkcode checkSmarthomeExperiment} runs. Never throws.
 *
 * @example
 * ```ts
 * import { decodeSmarthomeExperiment } from "./clips_experiment.ts";
 * import { smarthomePreset } from "./clips_presets.ts";
 * const exp = smarthomePreset("smarthome");
 * const r = decodeSmarthomeExperiment({ ...exp, training: { ...exp.training, balance: "weighted" } });
 * if (r._tag === "Left") console.log(r.left.message);
 * // training.balance: unknown balance "weighted" (expected classBalanced, uniform)
 * ```
 */
export function decodeSmarthomeExperiment(u: unknown): Either<SpecError, SmarthomeExperiment> {
  const d = decodeWith(SmarthomeExperimentCodec, "", u);
  if (E.isLeft(d)) return E.left(rootless(d.left));
  const issues = checkSmarthomeExperiment(d.right);
  return issues.length === 0 ? d : E.left(new SpecError(issues));
}

/**
 * Whether a parsed `config.json` holds a clip-classification experiment
 * (its `_tag` is `smarthome`), for `--resume`.
 *
 * @example
 * ```ts
 * import { isSmarthomeConfig } from "./clips_experiment.ts";
 * console.log(isSmarthomeConfig({ _tag: "smarthome" }), isSmarthomeConfig({ name: "ptb" })); // true false
 * ```
 */
export function isSmarthomeConfig(u: unknown): boolean {
  return typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "smarthome";
}

// ---------------------------------------------------------------------------
// Derived quantities

/**
 * Segments per clip: K = clipFrames / segmentLen. Training backpropagates
 * through all of them (the memory carries the clip from its first segment
 * to the readout after the last).
 *
 * @example
 * ```ts
 * import { segmentsPerClip } from "./clips_experiment.ts";
 * import { smarthomePreset } from "./clips_presets.ts";
 * console.log(segmentsPerClip(smarthomePreset("smarthome"))); // 8
 * ```
 */
export function segmentsPerClip(exp: SmarthomeExperiment): number {
  return exp.data.clipFrames / exp.model.segmentLen;
}

/**
 * Steps an experiment takes on `trainClips` training clips:
 * ⌈epochs · trainClips / batchSize⌉.
 *
 * @example
 * ```ts
 * import { classifierSteps } from "./clips_experiment.ts";
 * import { smarthomePreset } from "./clips_presets.ts";
 * const exp = smarthomePreset("smarthome");
 * console.log(classifierSteps(exp, 1000) === Math.ceil(exp.training.epochs * 1000 / exp.training.batchSize)); // true
 * ```
 */
export function classifierSteps(exp: SmarthomeExperiment, trainClips: number): number {
  return Math.max(1, Math.ceil((exp.training.epochs * trainClips) / exp.training.batchSize));
}
