/**
 * Model specs: plain data describing CRT and its baselines.
 *
 * Each spec is an io-ts codec and a type of the same name
 * (`type CrtSpec = t.TypeOf<typeof CrtSpec>`). Every switch of the paper is a
 * field, so alternatives run side by side as experiments. Training settings
 * (batch size, `bpttSegments`, optimiser) are not part of a model spec.
 *
 * Read untrusted specs (JSON files, CLI overrides) with
 * {@linkcode decodeModelSpec}: it rejects unknown fields, checks every size,
 * and then runs the cross-field rules (`nHeads` divides `dModel`, ...),
 * naming the path of each problem. Specs built in TypeScript (e.g. by spreading
 * a reference spec) should go through it too before a model is built from
 * them: the static types say `number`, not "positive integer".
 *
 * @example Decode a spec read from JSON
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { decodeModelSpec, referenceCrt } from "./model.ts";
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
import {
  checkWith,
  decodeWith,
  intAtLeast,
  joinPath,
  NonNegativeInt,
  type NumberCodec,
  oneOf,
  type OneOfCodec,
  PositiveInt,
  Probability,
  type SpecError,
  type SpecIssue,
  strict,
  type StrictCodec,
  taggedUnion,
  type TaggedUnionCodec,
} from "./decode.ts";

// ---------------------------------------------------------------------------
// Codecs
//
// Each spec's fields are listed twice on purpose: once as a type of field
// codecs (`MemorySpecProps`, where the per-field comments live and which gives
// the exported codec an explicit type for `deno doc`), once as the codec
// values, passed as an explicit type argument of `strict` so that a field
// missing from either side, an extra field or a different literal list fails
// to compile.

/**
 * Positional encoding of token positions inside a segment. Positions restart
 * at every segment (the memory token, when prepended, takes no position).
 *
 * - `learned`: a trained table [S, D] added to the embeddings (reference).
 * - `sinusoidal`: the fixed sin/cos table of Vaswani et al.
 *
 * Transformer-XL has no such field: it uses relative positions.
 *
 * @example
 * ```ts
 * import { Positional } from "./model.ts";
 *
 * console.log(Positional.is("learned"), Positional.is("rotary")); // true false
 * ```
 */
export const Positional: OneOfCodec<"learned" | "sinusoidal"> = oneOf(
  ["learned", "sinusoidal"],
  "positional encoding",
);
/** Positional encoding: `"learned" | "sinusoidal"`. */
export type Positional = t.TypeOf<typeof Positional>;

/** Field codecs of {@linkcode LmReadout}. */
export type LmReadoutProps = {
  /** Readout kind. */
  readonly _tag: t.LiteralC<"lm">;
  /**
   * Tie the output matrix W_out [V, D] to the token embedding (Press & Wolf).
   * Needs no other constraint: the embedding already has width dModel.
   * Default false (the reference model has an untied output layer).
   */
  readonly tie: t.BooleanC;
};

/**
 * The language-model head: logits [B, S, V] = W_out · LN(h) for every token.
 *
 * @example
 * ```ts
 * import { LmReadout } from "./model.ts";
 *
 * console.log(LmReadout.is({ _tag: "lm", tie: true })); // true
 * ```
 */
export const LmReadout: StrictCodec<LmReadoutProps> = strict<LmReadoutProps>({
  _tag: t.literal("lm"),
  tie: t.boolean,
}, "LmReadout");
/** The language-model head. */
export type LmReadout = t.TypeOf<typeof LmReadout>;

/** Field codecs of {@linkcode ClassifierReadout}. */
export type ClassifierReadoutProps = {
  /** Readout kind. */
  readonly _tag: t.LiteralC<"classifier">;
  /** Number of classes K (31 for Toyota Smarthome); at least 2. No default. */
  readonly nClasses: NumberCodec;
  /**
   * What the linear classifier reads. `memory`: the final memory vector m_N
   * [B, M] (the paper's readout; needs a crt model). `mean`: the mean of the
   * last segment's token outputs [B, D]. Default `memory`.
   */
  readonly pool: OneOfCodec<"memory" | "mean">;
};

/**
 * The classification head (video classification on Toyota Smarthome in the
 * paper): a linear layer to K classes on the final memory or pooled outputs.
 *
 * @example
 * ```ts
 * import { ClassifierReadout } from "./model.ts";
 *
 * console.log(ClassifierReadout.is({ _tag: "classifier", nClasses: 31, pool: "memory" })); // true
 * ```
 */
export const ClassifierReadout: StrictCodec<ClassifierReadoutProps> = strict<
  ClassifierReadoutProps
>({
  _tag: t.literal("classifier"),
  nClasses: intAtLeast(2),
  pool: oneOf(["memory", "mean"], "pooling"),
}, "ClassifierReadout");
/** The classification head. */
export type ClassifierReadout = t.TypeOf<typeof ClassifierReadout>;

/**
 * Readout: a language-model head (`lm`) or a classifier (`classifier`),
 * told apart by `_tag`. Weight tying exists only on the `lm` readout, so a
 * classifier with a `tie` field is rejected as an unknown field.
 *
 * @example
 * ```ts
 * import { Readout } from "./model.ts";
 *
 * console.log(Readout.is({ _tag: "classifier", nClasses: 31, pool: "memory" })); // true
 * ```
 */
export const Readout: TaggedUnionCodec<{
  readonly lm: typeof LmReadout;
  readonly classifier: typeof ClassifierReadout;
}> = taggedUnion(
  { lm: LmReadout, classifier: ClassifierReadout },
  { name: "Readout", noun: "readout kind" },
);
/** Readout: a language-model head or a classifier. */
export type Readout = t.TypeOf<typeof Readout>;

/** Field codecs of {@linkcode MemorySpec}. */
export type MemorySpecProps = {
  /**
   * Recurrent cell updating the memory. `gru`: a standard GRU. `ncgru`: the
   * NC-GRU of Mucllari et al. 2022, whose candidate recurrent matrix stays
   * orthogonal (Cayley transform of a skew-symmetric A). Default `gru`.
   */
  readonly cell: OneOfCodec<"gru" | "ncgru">;
  /**
   * Memory width M (the RNN hidden size). Must be even for `ncgru`: its A
   * initialises as 2×2 rotation blocks. Default 256 (= dModel).
   */
  readonly dMemory: NumberCodec;
  /**
   * How m_{n-1} enters segment n, after the projection W_m [M, D].
   * `prependToken`: one extra token at position 0 that every token attends to
   * (the paper's memory token). `addToEmbeddings`: added to every token's
   * embedding (no extra token). Default `prependToken`.
   */
  readonly injection: OneOfCodec<"prependToken" | "addToEmbeddings">;
  /**
   * What the RNN reads from the segment's outputs h [B, S, D]. `tokens`: each
   * token output in order (S RNN steps). `mean`: their mean (one step).
   * `slot`: the output at the memory token (one step; needs injection
   * `prependToken`). Default `mean`.
   */
  readonly rnnInput: OneOfCodec<"tokens" | "mean" | "slot">;
  /**
   * NC-GRU only: which recurrent matrices are kept orthogonal. `candidate`:
   * U_c (NC-GRU(U_c)). `candidateAndReset`: U_c and U_r (NC-GRU(U_c, U_r)).
   * Required for both cells so a spec keeps one shape; a `gru` cell accepts
   * either value and ignores it. Default `candidate`.
   */
  readonly orthogonal: OneOfCodec<"candidate" | "candidateAndReset">;
};

/**
 * CRT's persistent memory: one vector m [B, M] per stream, updated by an RNN
 * from each segment's outputs and fed into the next segment.
 *
 * @example
 * ```ts
 * import { MemorySpec, referenceCrt } from "./model.ts";
 *
 * console.log(MemorySpec.is(referenceCrt.memory)); // true
 * ```
 */
export const MemorySpec: StrictCodec<MemorySpecProps> = strict<MemorySpecProps>({
  cell: oneOf(["gru", "ncgru"], "cell"),
  dMemory: PositiveInt,
  injection: oneOf(["prependToken", "addToEmbeddings"], "injection"),
  rnnInput: oneOf(["tokens", "mean", "slot"], "RNN input"),
  orthogonal: oneOf(["candidate", "candidateAndReset"], "orthogonality"),
}, "MemorySpec");
/** CRT's persistent memory. */
export type MemorySpec = t.TypeOf<typeof MemorySpec>;

/** Field codecs every Transformer-family spec shares (of {@linkcode BlockFields}). */
export type BlockProps = {
  /** Vocabulary size V (word-level PTB: 10,000 including `<unk>`); at least 2. */
  readonly vocabSize: NumberCodec;
  /** Model width D: embeddings and residual stream. Default 256. */
  readonly dModel: NumberCodec;
  /** Attention heads H; must divide dModel (head width D / H). Default 4. */
  readonly nHeads: NumberCodec;
  /** Hidden width of each block's ReLU feed-forward layer. Default 1024. */
  readonly dFF: NumberCodec;
  /** Number L of pre-LN Transformer blocks (the paper's shallow stack). Default 2. */
  readonly nLayers: NumberCodec;
  /** Drop probability in [0, 1), applied in training only. Default 0.1. */
  readonly dropout: NumberCodec;
  /**
   * Tokens per segment S, not counting the memory token. Default 35 for CRT
   * and Transformer-XL, 70 for the full-length Transformer.
   */
  readonly segmentLen: NumberCodec;
  /** Output head: language model or classifier. Default `{ _tag: "lm", tie: false }`. */
  readonly readout: typeof Readout;
};

const blockProps: BlockProps = {
  vocabSize: intAtLeast(2),
  dModel: PositiveInt,
  nHeads: PositiveInt,
  dFF: PositiveInt,
  nLayers: PositiveInt,
  dropout: Probability,
  segmentLen: PositiveInt,
  readout: Readout,
};

/**
 * Fields every Transformer-family spec shares: vocabulary, block sizes,
 * dropout, segment length and readout.
 *
 * @example
 * ```ts
 * import { BlockFields } from "./model.ts";
 *
 * console.log(Object.keys(BlockFields.props).join(", "));
 * // vocabSize, dModel, nHeads, dFF, nLayers, dropout, segmentLen, readout
 * ```
 */
export const BlockFields: StrictCodec<BlockProps> = strict(blockProps, "BlockFields");
/** Fields every Transformer-family spec shares. */
export type BlockFields = t.TypeOf<typeof BlockFields>;

/** Field codecs of {@linkcode CrtSpec}. */
export type CrtSpecProps =
  & {
    /** Model kind. */
    readonly _tag: t.LiteralC<"crt">;
  }
  & BlockProps
  & {
    /** Positions inside a segment. Default `learned`. */
    readonly positional: typeof Positional;
    /** The persistent memory. */
    readonly memory: typeof MemorySpec;
  };

/**
 * Compact Recurrent Transformer: a shallow Transformer over short segments
 * plus one persistent memory vector carried between segments by an RNN.
 *
 * @example
 * ```ts
 * import { CrtSpec, referenceCrt } from "./model.ts";
 *
 * console.log(CrtSpec.is({ ...referenceCrt, segmentLen: 17 })); // true
 * ```
 */
export const CrtSpec: StrictCodec<CrtSpecProps> = strict<CrtSpecProps>({
  _tag: t.literal("crt"),
  ...blockProps,
  positional: Positional,
  memory: MemorySpec,
}, "CrtSpec");
/** Compact Recurrent Transformer. */
export type CrtSpec = t.TypeOf<typeof CrtSpec>;

/** Field codecs of {@linkcode TransformerSpec}. */
export type TransformerSpecProps =
  & {
    /** Model kind. */
    readonly _tag: t.LiteralC<"transformer">;
  }
  & BlockProps
  & {
    /** Positions inside a segment. Default `learned`. */
    readonly positional: typeof Positional;
  };

/**
 * Full-length Transformer baseline: the same blocks, no memory; segments of
 * the full length processed independently.
 *
 * @example
 * ```ts
 * import { referenceTransformer, TransformerSpec } from "./model.ts";
 *
 * console.log(TransformerSpec.is(referenceTransformer)); // true
 * ```
 */
export const TransformerSpec: StrictCodec<TransformerSpecProps> = strict<TransformerSpecProps>({
  _tag: t.literal("transformer"),
  ...blockProps,
  positional: Positional,
}, "TransformerSpec");
/** Full-length Transformer: same blocks, no memory. */
export type TransformerSpec = t.TypeOf<typeof TransformerSpec>;

/** Field codecs of {@linkcode XlSpec}. */
export type XlSpecProps =
  & {
    /** Model kind. */
    readonly _tag: t.LiteralC<"xl">;
  }
  & BlockProps
  & {
    /**
     * Cached positions M_len per layer from the previous segment, attended
     * without gradient; 0 turns the cache off. Default 35 (= segmentLen).
     */
    readonly memLen: NumberCodec;
  };

/**
 * Transformer-XL baseline: the hidden states of the previous segment are
 * cached (without gradient) and attended with relative positions and the
 * u, v biases.
 *
 * @example
 * ```ts
 * import { referenceXl, XlSpec } from "./model.ts";
 *
 * console.log(XlSpec.is(referenceXl)); // true
 * ```
 */
export const XlSpec: StrictCodec<XlSpecProps> = strict<XlSpecProps>({
  _tag: t.literal("xl"),
  ...blockProps,
  memLen: NonNegativeInt,
}, "XlSpec");
/** Transformer-XL: cached previous-segment states, relative positions. */
export type XlSpec = t.TypeOf<typeof XlSpec>;

/**
 * Any model spec, told apart by `_tag`: `crt`, `transformer` or `xl`.
 * Structural only; {@linkcode decodeModelSpec} adds the cross-field rules.
 *
 * @example
 * ```ts
 * import { ModelSpec, referenceXl } from "./model.ts";
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
/** Any model spec. */
export type ModelSpec = t.TypeOf<typeof ModelSpec>;

// ---------------------------------------------------------------------------
// Cross-field rules

/**
 * The rules that relate fields of a structurally valid spec, each issue
 * naming the field at fault (paths start at `root`). Empty when the spec is
 * consistent. {@linkcode decodeModelSpec} runs this after decoding.
 *
 * @example
 * ```ts
 * import { checkModelSpec, referenceCrt } from "./model.ts";
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
  if (spec.readout._tag === "classifier" && spec.readout.pool === "memory" && spec._tag !== "crt") {
    issues.push({
      path: at("readout", "pool"),
      message: `"memory" reads the persistent memory, which only crt has ` +
        `(${at("_tag")} is "${spec._tag}"); use "mean"`,
    });
  }
  return issues;
}

/**
 * Decodes an untrusted value into a {@linkcode ModelSpec}: rejects unknown
 * fields, checks every size and enum, then runs {@linkcode checkModelSpec}.
 * All structural issues are reported together; the cross-field rules run
 * only once the structure is valid. Never throws on any input.
 *
 * @example
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { decodeModelSpec, referenceCrt } from "./model.ts";
 *
 * const r = decodeModelSpec({ ...referenceCrt, memory: { ...referenceCrt.memory, cell: "lstm" } });
 * if (E.isLeft(r)) console.log(r.left.message);
 * // model.memory.cell: unknown cell "lstm" (expected gru, ncgru)
 * ```
 */
export function decodeModelSpec(u: unknown, root = "model"): E.Either<SpecError, ModelSpec> {
  return pipe(
    decodeWith(ModelSpec, root, u),
    E.chain(checkWith((spec: ModelSpec) => checkModelSpec(spec, root))),
  );
}

// ---------------------------------------------------------------------------
// Reference specs

function deepFreeze<A>(a: A): A {
  if (typeof a === "object" && a !== null) {
    for (const v of Object.values(a)) deepFreeze(v);
    Object.freeze(a);
  }
  return a;
}

/**
 * The reference CRT of SUBSTRATE.md (≈ 7.1 M parameters): V = 10,000,
 * D = 256, 4 heads, FFN 1024, 2 pre-LN layers, dropout 0.1, learned
 * positions, segments of 35 tokens, one prepended memory token, a
 * GRU(256 → 256) fed the mean of the segment's outputs, untied output layer.
 * Deeply frozen; derive variants by spreading.
 *
 * @example
 * ```ts
 * import { referenceCrt, type CrtSpec } from "./model.ts";
 *
 * const nc: CrtSpec = { ...referenceCrt, memory: { ...referenceCrt.memory, cell: "ncgru" } };
 * console.log(nc.memory.cell); // ncgru
 * ```
 */
export const referenceCrt: CrtSpec = deepFreeze({
  _tag: "crt",
  vocabSize: 10000,
  dModel: 256,
  nHeads: 4,
  dFF: 1024,
  nLayers: 2,
  dropout: 0.1,
  segmentLen: 35,
  readout: { _tag: "lm", tie: false },
  positional: "learned",
  memory: {
    cell: "gru",
    dMemory: 256,
    injection: "prependToken",
    rnnInput: "mean",
    orthogonal: "candidate",
  },
});

/**
 * The full-length Transformer baseline of SUBSTRATE.md: the blocks of
 * {@linkcode referenceCrt} without memory, on segments of 70 tokens (twice
 * CRT's). Deeply frozen.
 *
 * @example
 * ```ts
 * import { referenceTransformer } from "./model.ts";
 *
 * console.log(referenceTransformer.segmentLen); // 70
 * ```
 */
export const referenceTransformer: TransformerSpec = deepFreeze({
  _tag: "transformer",
  vocabSize: 10000,
  dModel: 256,
  nHeads: 4,
  dFF: 1024,
  nLayers: 2,
  dropout: 0.1,
  segmentLen: 70,
  readout: { _tag: "lm", tie: false },
  positional: "learned",
});

/**
 * The Transformer-XL baseline: the blocks of {@linkcode referenceCrt} on
 * segments of 35 tokens, caching the previous 35 positions. Deeply frozen.
 *
 * @example
 * ```ts
 * import { referenceXl } from "./model.ts";
 *
 * console.log(referenceXl.memLen); // 35
 * ```
 */
export const referenceXl: XlSpec = deepFreeze({
  _tag: "xl",
  vocabSize: 10000,
  dModel: 256,
  nHeads: 4,
  dFF: 1024,
  nLayers: 2,
  dropout: 0.1,
  segmentLen: 35,
  readout: { _tag: "lm", tie: false },
  memLen: 35,
});
