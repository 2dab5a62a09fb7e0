/**
 * Model specs: io-ts codecs for the spec types of `types.ts`, the
 * cross-field rules (the reference specs are in `reference_specs.ts`).
 *
 * Each spec type is re-exported here under the name of its codec
 * (`CrtSpec` is a type and a codec), so one import gives both. The types
 * themselves, with a comment per field, are declared in `types.ts`;
 * each codec is typed from its type ({@linkcode FieldCodecs}) and checked
 * against it at compile time, so the two cannot drift.
 *
 * Read untrusted specs (JSON files, CLI overrides) with
 * {@linkcode decodeModelSpec}: it rejects unknown fields, checks every size,
 * and then runs the cross-field rules (`nHeads` divides `dModel`, ...),
 * naming the path of each problem. Specs built in TypeScript (e.g. by spreading
 * a reference spec) should go through it too before a model is built from
 * them: the static types say `number`, not "positive integer".
 *
 * Public signatures here name the types as `types.CrtSpec` (the declaration in
 * `types.ts`), not through the re-exports: a re-export shares its name
 * with a codec, and `deno doc` would document the codec's io-ts type with it.
 *
 * @example Decode a spec read from JSON
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { decodeModelSpec } from "./codecs.ts";
 * import { referenceCrt } from "./reference_specs.ts";
 *
 * const json = JSON.stringify({ ...referenceCrt, nHeads: 3 });
 * const r = decodeModelSpec(JSON.parse(json));
 * if (E.isLeft(r)) console.log(r.left.message);
 * // model.nHeads: 3 does not divide model.dModel (256)
 * ```
 *
 * @module
 */
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import { pipe } from "fp-ts/lib/function.js";
import type { Assert, MutuallyAssignable } from "./_assert.ts";
import { checkWith, decodeWith, joinPath, type SpecError, type SpecIssue } from "./decode.ts";
import {
  type FieldCodecs,
  intAtLeast,
  NonNegativeInt,
  numberWhere,
  oneOf,
  type OneOfCodec,
  optional,
  PositiveInt,
  Probability,
  strict,
  type StrictCodec,
  taggedUnion,
  type TaggedUnionCodec,
} from "./combinators.ts";
import type { Either } from "./either.ts";
import type * as types from "./types.ts";

// ---------------------------------------------------------------------------
// Codecs
//
// Each record codec is `recordOf<T>({...})` for its type T, so a field
// missing from either side, an extra field or a different literal list fails
// to compile. Field order is message order.

/** The codec of a record type `A`: a {@linkcode strict} object of one codec per field of `A`. */
export type RecordCodec<A> = StrictCodec<FieldCodecs<A>>;

/** {@linkcode strict} typed from the record type `A` it decodes (see above). */
const recordOf = <A>(fields: FieldCodecs<A>, name: string): RecordCodec<A> => strict(fields, name);

/** Positional encoding: `"learned" | "sinusoidal"` (see `types.ts`). */
export type Positional = types.Positional;
/**
 * Decodes a {@linkcode Positional}.
 *
 * @example
 * ```ts
 * import { Positional } from "./codecs.ts";
 *
 * console.log(Positional.is("learned"), Positional.is("rotary")); // true false
 * ```
 */
export const Positional: OneOfCodec<Positional> = oneOf(
  ["learned", "sinusoidal"],
  "positional encoding",
);

/** The language-model head (see `types.ts`). */
export type LmReadout = types.LmReadout;
/**
 * Decodes an {@linkcode LmReadout}.
 *
 * @example
 * ```ts
 * import { LmReadout } from "./codecs.ts";
 *
 * console.log(LmReadout.is({ _tag: "lm", tie: true })); // true
 * ```
 */
export const LmReadout: RecordCodec<LmReadout> = recordOf<LmReadout>({
  _tag: t.literal("lm"),
  tie: t.boolean,
}, "LmReadout");

/** The classification head (see `types.ts`). */
export type ClassifierReadout = types.ClassifierReadout;
/**
 * Decodes a {@linkcode ClassifierReadout}.
 *
 * @example
 * ```ts
 * import { ClassifierReadout } from "./codecs.ts";
 *
 * console.log(ClassifierReadout.is({ _tag: "classifier", nClasses: 31, pool: "memory" })); // true
 * ```
 */
export const ClassifierReadout: RecordCodec<ClassifierReadout> = recordOf<ClassifierReadout>({
  _tag: t.literal("classifier"),
  nClasses: intAtLeast(2),
  pool: oneOf(["memory", "mean"], "pooling"),
}, "ClassifierReadout");

/** The adaptive softmax head (see `types.ts`). */
export type AdaptiveReadout = types.AdaptiveReadout;
/**
 * Decodes an {@linkcode AdaptiveReadout} (structure only; the cutoffs'
 * order and range against `vocabSize` and the cluster widths are checked by
 * {@linkcode checkModelSpec}).
 *
 * @example
 * ```ts
 * import { AdaptiveReadout } from "./codecs.ts";
 *
 * console.log(AdaptiveReadout.is({ _tag: "adaptive", cutoffs: [20000, 40000, 200000], divValue: 4 })); // true
 * ```
 */
export const AdaptiveReadout: RecordCodec<AdaptiveReadout> = recordOf<AdaptiveReadout>({
  _tag: t.literal("adaptive"),
  cutoffs: t.readonlyArray(PositiveInt),
  divValue: numberWhere({
    name: "DivValue",
    expected: "a number >= 1",
    accepts: (n) => Number.isFinite(n) && n >= 1,
  }),
}, "AdaptiveReadout");

/** Readout: a language-model head, an adaptive softmax or a classifier (see `types.ts`). */
export type Readout = types.Readout;
/**
 * Decodes a {@linkcode Readout}: reads `_tag` first, then validates only that
 * branch, so a classifier with a `tie` field is rejected as an unknown field.
 *
 * @example
 * ```ts
 * import { Readout } from "./codecs.ts";
 *
 * console.log(Readout.is({ _tag: "classifier", nClasses: 31, pool: "memory" })); // true
 * ```
 */
export const Readout: TaggedUnionCodec<{
  readonly lm: typeof LmReadout;
  readonly adaptive: typeof AdaptiveReadout;
  readonly classifier: typeof ClassifierReadout;
}> = taggedUnion(
  { lm: LmReadout, adaptive: AdaptiveReadout, classifier: ClassifierReadout },
  { name: "Readout", noun: "readout kind" },
);

/** Token input (see `types.ts`). */
export type TokenInput = types.TokenInput;
/**
 * Decodes a {@linkcode TokenInput}.
 *
 * @example
 * ```ts
 * import { TokenInput } from "./codecs.ts";
 *
 * console.log(TokenInput.is({ _tag: "tokens" })); // true
 * ```
 */
export const TokenInput: RecordCodec<TokenInput> = recordOf<TokenInput>({
  _tag: t.literal("tokens"),
}, "TokenInput");

/** Continuous (feature-vector) input (see `types.ts`). */
export type FeatureInput = types.FeatureInput;
/**
 * Decodes a {@linkcode FeatureInput}.
 *
 * @example
 * ```ts
 * import { FeatureInput } from "./codecs.ts";
 *
 * console.log(FeatureInput.is({ _tag: "features", dim: 1024 }), FeatureInput.is({ _tag: "features", dim: 0 })); // true false
 * ```
 */
export const FeatureInput: RecordCodec<FeatureInput> = recordOf<FeatureInput>({
  _tag: t.literal("features"),
  dim: PositiveInt,
}, "FeatureInput");

/** What each position is: token ids or feature vectors (see `types.ts`). */
export type InputSpec = types.InputSpec;
/**
 * Decodes an {@linkcode InputSpec} by `_tag`.
 *
 * @example
 * ```ts
 * import { InputSpec } from "./codecs.ts";
 *
 * console.log(InputSpec.is({ _tag: "tokens" }), InputSpec.is({ _tag: "pixels" })); // true false
 * ```
 */
export const InputSpec: TaggedUnionCodec<{
  readonly tokens: typeof TokenInput;
  readonly features: typeof FeatureInput;
}> = taggedUnion(
  { tokens: TokenInput, features: FeatureInput },
  { name: "InputSpec", noun: "input kind" },
);

/** CRT's persistent memory (see `types.ts`). */
export type MemorySpec = types.MemorySpec;
/**
 * Decodes a {@linkcode MemorySpec}.
 *
 * @example
 * ```ts
 * import { MemorySpec } from "./codecs.ts";
 * import { referenceCrt } from "./reference_specs.ts";
 *
 * console.log(MemorySpec.is(referenceCrt.memory)); // true
 * ```
 */
export const MemorySpec: RecordCodec<MemorySpec> = recordOf<MemorySpec>({
  cell: oneOf(["gru", "ncgru"], "cell"),
  dMemory: PositiveInt,
  injection: oneOf(["prependToken", "addToEmbeddings"], "injection"),
  rnnInput: oneOf(["tokens", "mean", "slot"], "RNN input"),
  orthogonal: oneOf(["candidate", "candidateAndReset"], "orthogonality"),
}, "MemorySpec");

/** Fields every Transformer-family spec shares (see `types.ts`). */
export type BlockFields = types.BlockFields;

const blockFields: FieldCodecs<BlockFields> = {
  vocabSize: intAtLeast(2),
  dModel: PositiveInt,
  nHeads: PositiveInt,
  dFF: PositiveInt,
  nLayers: PositiveInt,
  dropout: Probability,
  segmentLen: PositiveInt,
  readout: Readout,
  input: optional(InputSpec),
};

/**
 * Decodes {@linkcode BlockFields}; its `props` are spread into the codec of
 * each model kind.
 *
 * @example
 * ```ts
 * import { BlockFields } from "./codecs.ts";
 *
 * console.log(Object.keys(BlockFields.props).join(", "));
 * // vocabSize, dModel, nHeads, dFF, nLayers, dropout, segmentLen, readout, input
 * ```
 */
export const BlockFields: RecordCodec<BlockFields> = recordOf<BlockFields>(
  blockFields,
  "BlockFields",
);

/** Compact Recurrent Transformer (see `types.ts`). */
export type CrtSpec = types.CrtSpec;
/**
 * Decodes a {@linkcode CrtSpec} (structure only; {@linkcode decodeModelSpec}
 * adds the cross-field rules).
 *
 * @example
 * ```ts
 * import { CrtSpec } from "./codecs.ts";
 * import { referenceCrt } from "./reference_specs.ts";
 *
 * console.log(CrtSpec.is({ ...referenceCrt, segmentLen: 17 })); // true
 * ```
 */
export const CrtSpec: RecordCodec<CrtSpec> = recordOf<CrtSpec>({
  _tag: t.literal("crt"),
  ...blockFields,
  positional: Positional,
  memory: MemorySpec,
}, "CrtSpec");

/** Full-length Transformer: same blocks, no memory (see `types.ts`). */
export type TransformerSpec = types.TransformerSpec;
/**
 * Decodes a {@linkcode TransformerSpec} (structure only).
 *
 * @example
 * ```ts
 * import { TransformerSpec } from "./codecs.ts";
 * import { referenceTransformer } from "./reference_specs.ts";
 *
 * console.log(TransformerSpec.is(referenceTransformer)); // true
 * ```
 */
export const TransformerSpec: RecordCodec<TransformerSpec> = recordOf<TransformerSpec>({
  _tag: t.literal("transformer"),
  ...blockFields,
  positional: Positional,
}, "TransformerSpec");

/** Transformer-XL: cached previous-segment states (see `types.ts`). */
export type XlSpec = types.XlSpec;
/**
 * Decodes an {@linkcode XlSpec} (structure only).
 *
 * @example
 * ```ts
 * import { XlSpec } from "./codecs.ts";
 * import { referenceXl } from "./reference_specs.ts";
 *
 * console.log(XlSpec.is(referenceXl)); // true
 * ```
 */
export const XlSpec: RecordCodec<XlSpec> = recordOf<XlSpec>({
  _tag: t.literal("xl"),
  ...blockFields,
  memLen: NonNegativeInt,
}, "XlSpec");

/** Any model spec, told apart by `_tag` (see `types.ts`). */
export type ModelSpec = types.ModelSpec;
/**
 * Decodes a {@linkcode ModelSpec}: `crt`, `transformer` or `xl` by `_tag`.
 * Structural only; {@linkcode decodeModelSpec} adds the cross-field rules.
 *
 * @example
 * ```ts
 * import { ModelSpec } from "./codecs.ts";
 * import { referenceXl } from "./reference_specs.ts";
 *
 * console.log(ModelSpec.is(referenceXl), ModelSpec.is({ _tag: "rnn" })); // true false
 * ```
 */
export const ModelSpec: TaggedUnionCodec<{
  readonly crt: typeof CrtSpec;
  readonly transformer: typeof TransformerSpec;
  readonly xl: typeof XlSpec;
}> = taggedUnion(
  { crt: CrtSpec, transformer: TransformerSpec, xl: XlSpec },
  { name: "ModelSpec", noun: "model kind" },
);

// Compile-time: the codecs typed `strict<FieldCodecs<T>>` decode exactly T by construction
// (a missing, extra or differently typed field does not compile); the others are asserted.
type _Positional = Assert<MutuallyAssignable<t.TypeOf<typeof Positional>, Positional>>;
type _Readout = Assert<MutuallyAssignable<t.TypeOf<typeof Readout>, Readout>>;
type _InputSpec = Assert<MutuallyAssignable<t.TypeOf<typeof InputSpec>, InputSpec>>;
type _BlockFields = Assert<MutuallyAssignable<t.TypeOf<typeof BlockFields>, BlockFields>>;
type _ModelSpec = Assert<MutuallyAssignable<t.TypeOf<typeof ModelSpec>, ModelSpec>>;

// ---------------------------------------------------------------------------
// Cross-field rules

/**
 * The rules that relate fields of a structurally valid spec, each issue
 * naming the field at fault (paths start at `root`). Empty when the spec is
 * consistent. {@linkcode decodeModelSpec} runs this after decoding.
 *
 * @example
 * ```ts
 * import { checkModelSpec } from "./codecs.ts";
 * import { referenceCrt } from "./reference_specs.ts";
 *
 * console.log(checkModelSpec({ ...referenceCrt, nHeads: 3 }));
 * // [ { path: "model.nHeads", message: "3 does not divide model.dModel (256)" } ]
 * ```
 */
export function checkModelSpec(spec: ModelSpec, root = "model"): readonly SpecIssue[] {
  const at = (...keys: string[]): string => keys.reduce(joinPath, root);
  const issues: SpecIssue[] = [];
  if (spec.dModel % spec.nHeads !== 0) {
    issues.push({
      path: at("nHeads"),
      message: `${spec.nHeads} does not divide ${at("dModel")} (${spec.dModel})`,
    });
  }
  if (spec._tag === "crt") {
    const m = spec.memory;
    if (m.cell === "ncgru" && m.dMemory % 2 !== 0) {
      issues.push({
        path: at("memory", "dMemory"),
        message: `must be even for the ncgru cell (its skew-symmetric A initialises as 2×2 ` +
          `blocks), got ${m.dMemory}`,
      });
    }
    if (m.rnnInput === "slot" && m.injection !== "prependToken") {
      issues.push({
        path: at("memory", "rnnInput"),
        message: `"slot" reads the memory token's output, which needs ` +
          `${at("memory", "injection")} "prependToken" (got "${m.injection}")`,
      });
    }
  }
  if (spec.input?._tag === "features" && spec.readout._tag !== "classifier") {
    issues.push({
      path: at("input"),
      message: `feature-vector input has no next tokens to predict: it needs ` +
        `${at("readout")} { _tag: "classifier" } (got "${spec.readout._tag}")`,
    });
  }
  if (spec.readout._tag === "adaptive") issues.push(...checkAdaptive(spec, spec.readout, at));
  if (spec.readout._tag === "classifier" && spec.readout.pool === "memory" && spec._tag !== "crt") {
    issues.push({
      path: at("readout", "pool"),
      message: `"memory" reads the persistent memory, which only crt has ` +
        `(${at("_tag")} is "${spec._tag}"); use "mean"`,
    });
  }
  return issues;
}

/** The adaptive softmax's cutoffs lie strictly inside (0, V), increase, and leave every cluster a width ≥ 1. */
function checkAdaptive(
  spec: ModelSpec,
  readout: AdaptiveReadout,
  at: (...keys: string[]) => string,
): SpecIssue[] {
  const issues: SpecIssue[] = [];
  const { cutoffs, divValue } = readout;
  cutoffs.forEach((c, i) => {
    const path = `${at("readout", "cutoffs")}[${i}]`;
    if (c >= spec.vocabSize) {
      issues.push({
        path,
        message: `${c} leaves no words for its cluster: cutoffs must be below ` +
          `${at("vocabSize")} (${spec.vocabSize})`,
      });
    } else if (i > 0 && c <= cutoffs[i - 1]) {
      issues.push({
        path,
        message: `${c} must be greater than the cutoff before it (${cutoffs[i - 1]}): ` +
          `cutoffs increase strictly`,
      });
    }
  });
  const last = cutoffs.length;
  if (last > 0 && Math.floor(spec.dModel / Math.pow(divValue, last)) < 1) {
    issues.push({
      path: at("readout", "divValue"),
      message: `${divValue} leaves tail cluster ${last} a width of floor(${at("dModel")} ` +
        `(${spec.dModel}) / ${divValue}^${last}) = 0; use a smaller divValue or fewer cutoffs`,
    });
  }
  return issues;
}

/**
 * Decodes an untrusted value into a {@linkcode ModelSpec}: rejects unknown
 * fields, checks every size and enum, then runs {@linkcode checkModelSpec}.
 * All structural issues are reported together; the cross-field rules run
 * only once the structure is valid. Paths in the issues start at `root`
 * (`"experiment.model"` when the spec sits inside a bigger config). Never
 * throws on any input.
 *
 * @example Accept a spec, reject a typo with its path
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeModelSpec } from "./codecs.ts";
 * import { referenceCrt } from "./reference_specs.ts";
 *
 * const ok = decodeModelSpec(JSON.parse(JSON.stringify(referenceCrt)));
 * assert.equal(ok._tag, "Right");
 *
 * const bad = decodeModelSpec({ ...referenceCrt, memory: { ...referenceCrt.memory, cell: "lstm" } });
 * if (bad._tag === "Right") throw new Error("expected a Left");
 * assert.equal(bad.left.message, 'model.memory.cell: unknown cell "lstm" (expected gru, ncgru)');
 * ```
 */
export function decodeModelSpec(
  u: unknown,
  root = "model",
): Either<SpecError, types.ModelSpec> {
  return pipe(
    decodeWith(ModelSpec, root, u),
    E.chain(checkWith((spec: ModelSpec) => checkModelSpec(spec, root))),
  );
}
