/**
 * The model spec types: plain readonly data describing CRT and its baselines,
 * one comment per field. Every switch of the paper is a field, so
 * alternatives run side by side as experiments. Training settings (batch
 * size, `bpttSegments`, optimiser) are not part of a model spec.
 *
 * This module declares types only. Their io-ts codecs, the cross-field rules
 * and the reference specs are in `codecs.ts`, which also re-exports each type
 * under its codec's name (`CrtSpec` is both there). The types are declared
 * here, apart from the codecs, because `deno doc` documents every declaration
 * of an exported name: a same-named codec would drag its io-ts type into the
 * public docs of the type. `mod.ts` exports the types from here.
 *
 * @example A spec is plain data
 * ```ts
 * import type { CrtSpec } from "./types.ts";
 *
 * const tiny: CrtSpec = {
 *   _tag: "crt",
 *   vocabSize: 100,
 *   dModel: 32,
 *   nHeads: 2,
 *   dFF: 64,
 *   nLayers: 1,
 *   dropout: 0,
 *   segmentLen: 8,
 *   readout: { _tag: "lm", tie: false },
 *   positional: "learned",
 *   memory: {
 *     cell: "gru",
 *     dMemory: 32,
 *     injection: "prependToken",
 *     rnnInput: "mean",
 *     orthogonal: "candidate",
 *   },
 * };
 * console.log(tiny.memory.cell); // gru
 * ```
 *
 * @module
 */

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
 * import assert from "node:assert/strict";
 * import type { Positional } from "./types.ts";
 *
 * const positional: Positional = "sinusoidal";
 * assert.equal(positional, "sinusoidal");
 * ```
 */
export type Positional = "learned" | "sinusoidal";

/**
 * The language-model head: logits [B, S, V] = W_out · LN(h) for every token.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { LmReadout } from "./types.ts";
 *
 * const tied: LmReadout = { _tag: "lm", tie: true };
 * assert.equal(tied.tie, true);
 * ```
 */
export interface LmReadout {
  /** Readout kind. */
  readonly _tag: "lm";
  /**
   * Tie the output matrix W_out [V, D] to the token embedding (Press & Wolf).
   * Needs no other constraint: the embedding already has width dModel.
   * Default false (the reference model has an untied output layer).
   */
  readonly tie: boolean;
}

/**
 * The classification head (video classification on Toyota Smarthome in the
 * paper): a linear layer to K classes on the final memory or pooled outputs.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ClassifierReadout } from "./types.ts";
 *
 * const smarthome: ClassifierReadout = { _tag: "classifier", nClasses: 31, pool: "memory" };
 * assert.equal(smarthome.nClasses, 31);
 * ```
 */
export interface ClassifierReadout {
  /** Readout kind. */
  readonly _tag: "classifier";
  /** Number of classes K (31 for Toyota Smarthome); at least 2. No default. */
  readonly nClasses: number;
  /**
   * What the linear classifier reads. `memory`: the final memory vector m_N
   * [B, M] (the paper's readout; needs a crt model). `mean`: the mean of the
   * last segment's token outputs [B, D]. Default `memory`.
   */
  readonly pool: "memory" | "mean";
}

/**
 * The adaptive softmax of Grave et al. (2017), as Transformer-XL uses it on
 * WikiText-103: a language-model head for large vocabularies whose ids are
 * sorted by decreasing frequency. The `cutoffs` split the vocabulary into a
 * head (ids below `cutoffs[0]`, the shortlist) and tail clusters
 * [cutoffs[i−1], cutoffs[i]) and [cutoffs[last], V). The head is a softmax
 * over the shortlist plus one logit per tail cluster; tail cluster i
 * (i = 1, 2, …) projects h [D] to D / divValue^i (rounded down) and has its
 * own output matrix over its words. Every word gets a log-probability: the
 * head's log-probability of its cluster plus the cluster's log-probability
 * of the word (a shortlist word: its head log-probability).
 *
 * Training and evaluation compute a tail cluster only for the tokens whose
 * target lies in it (rows gathered, padded to a few fixed sizes); the full
 * distribution (`forward`, `inferStep`) computes every cluster for every
 * token. With no cutoffs it is exactly a full softmax (an untied `lm` head).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { AdaptiveReadout } from "./types.ts";
 *
 * const wt103: AdaptiveReadout = { _tag: "adaptive", cutoffs: [20000, 40000, 200000], divValue: 4 };
 * assert.equal(wt103.cutoffs.length + 1, 4); // a head and three tail clusters
 * ```
 */
export interface AdaptiveReadout {
  /** Readout kind. */
  readonly _tag: "adaptive";
  /**
   * Strictly increasing ids in (0, vocabSize) where the clusters start: the
   * head holds ids below `cutoffs[0]`. Transformer-XL on WikiText-103:
   * [20000, 40000, 200000]. Empty: one cluster, the full softmax.
   */
  readonly cutoffs: readonly number[];
  /**
   * Width divisor per tail cluster (≥ 1): tail cluster i projects to
   * floor(dModel / divValue^i), which must be at least 1. Default 4.
   */
  readonly divValue: number;
}

/**
 * Readout: a language-model head (`lm`), an adaptive softmax (`adaptive`) or
 * a classifier (`classifier`), told apart by `_tag`. Weight tying exists
 * only on the `lm` readout, so a classifier with a `tie` field is rejected
 * as an unknown field.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Readout } from "./types.ts";
 *
 * const outputs = (r: Readout): number => r._tag === "classifier" ? r.nClasses : 10000;
 * assert.equal(outputs({ _tag: "classifier", nClasses: 31, pool: "memory" }), 31);
 * ```
 */
export type Readout = LmReadout | AdaptiveReadout | ClassifierReadout;

/**
 * CRT's persistent memory: one vector m [B, M] per stream, updated by an RNN
 * from each segment's outputs and fed into the next segment.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { MemorySpec } from "./types.ts";
 *
 * const ncgru: MemorySpec = {
 *   cell: "ncgru",
 *   dMemory: 256,
 *   injection: "prependToken",
 *   rnnInput: "mean",
 *   orthogonal: "candidateAndReset",
 * };
 * assert.equal(ncgru.dMemory % 2, 0); // NC-GRU needs an even width
 * ```
 */
export interface MemorySpec {
  /**
   * Recurrent cell updating the memory. `gru`: a standard GRU. `ncgru`: the
   * NC-GRU of Mucllari et al. 2022, whose candidate recurrent matrix stays
   * orthogonal (Cayley transform of a skew-symmetric A). Default `gru`.
   */
  readonly cell: "gru" | "ncgru";
  /**
   * Memory width M (the RNN hidden size). Must be even for `ncgru`: its A
   * initialises as 2×2 rotation blocks. Default 256 (= dModel).
   */
  readonly dMemory: number;
  /**
   * How m_{n-1} enters segment n, after the projection W_m [M, D].
   * `prependToken`: one extra token at position 0 that every token attends to
   * (the paper's memory token). `addToEmbeddings`: added to every token's
   * embedding (no extra token). Default `prependToken`.
   */
  readonly injection: "prependToken" | "addToEmbeddings";
  /**
   * What the RNN reads from the segment's outputs h [B, S, D]. `tokens`: each
   * token output in order (S RNN steps). `mean`: their mean (one step).
   * `slot`: the output at the memory token (one step; needs injection
   * `prependToken`). Default `mean`.
   */
  readonly rnnInput: "tokens" | "mean" | "slot";
  /**
   * NC-GRU only: which recurrent matrices are kept orthogonal. `candidate`:
   * U_c (NC-GRU(U_c)). `candidateAndReset`: U_c and U_r (NC-GRU(U_c, U_r)).
   * Required for both cells so a spec keeps one shape; a `gru` cell accepts
   * either value and ignores it. Default `candidate`.
   */
  readonly orthogonal: "candidate" | "candidateAndReset";
}

/**
 * Token input (the default): int32 ids [B, S] looked up in the embedding
 * table [V, D].
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { TokenInput } from "./types.ts";
 *
 * const tokens: TokenInput = { _tag: "tokens" };
 * assert.equal(tokens._tag, "tokens");
 * ```
 */
export interface TokenInput {
  /** Input kind. */
  readonly _tag: "tokens";
}

/**
 * Continuous input: each position is a feature vector (a video frame's
 * features, say), float32 [B, S, F], mapped to the model width by a linear
 * projection x W_in + b_in, W_in [F, D], in place of the token embedding.
 * Positions, memory token and blocks are as for tokens. Needs a classifier
 * readout (there are no next tokens to predict); `vocabSize` is then unused.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { FeatureInput } from "./types.ts";
 *
 * const i3d: FeatureInput = { _tag: "features", dim: 1024 }; // I3D per-frame features
 * assert.equal(i3d.dim, 1024);
 * ```
 */
export interface FeatureInput {
  /** Input kind. */
  readonly _tag: "features";
  /** Width F of each position's feature vector. No default. */
  readonly dim: number;
}

/**
 * What a model reads at each position: token ids (`tokens`) or feature
 * vectors (`features`), told apart by `_tag`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { InputSpec } from "./types.ts";
 *
 * const width = (i: InputSpec | undefined): string => i?._tag === "features" ? `${i.dim}` : "ids";
 * assert.equal(width(undefined), "ids"); // absent: tokens
 * assert.equal(width({ _tag: "features", dim: 64 }), "64");
 * ```
 */
export type InputSpec = TokenInput | FeatureInput;

/**
 * Fields every Transformer-family spec shares: vocabulary, block sizes,
 * dropout, segment length and readout.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { BlockFields } from "./types.ts";
 *
 * const headWidth = (spec: BlockFields): number => spec.dModel / spec.nHeads;
 * const blocks: BlockFields = {
 *   vocabSize: 10000,
 *   dModel: 256,
 *   nHeads: 4,
 *   dFF: 1024,
 *   nLayers: 2,
 *   dropout: 0.1,
 *   segmentLen: 35,
 *   readout: { _tag: "lm", tie: false },
 * };
 * assert.equal(headWidth(blocks), 64);
 * ```
 */
export interface BlockFields {
  /** Vocabulary size V (word-level PTB: 10,000 including `<unk>`); at least 2. */
  readonly vocabSize: number;
  /** Model width D: embeddings and residual stream. Default 256. */
  readonly dModel: number;
  /** Attention heads H; must divide dModel (head width D / H). Default 4. */
  readonly nHeads: number;
  /** Hidden width of each block's ReLU feed-forward layer. Default 1024. */
  readonly dFF: number;
  /** Number L of pre-LN Transformer blocks (the paper's shallow stack). Default 2. */
  readonly nLayers: number;
  /** Drop probability in [0, 1), applied in training only. Default 0.1. */
  readonly dropout: number;
  /**
   * Tokens per segment S, not counting the memory token. Default 35 for CRT
   * and Transformer-XL, 70 for the full-length Transformer.
   */
  readonly segmentLen: number;
  /** Output head: language model or classifier. Default `{ _tag: "lm", tie: false }`. */
  readonly readout: Readout;
  /**
   * What each position is: token ids or feature vectors. Optional: absent
   * means `{ _tag: "tokens" }`, so specs written before this field existed
   * keep their meaning.
   */
  readonly input?: InputSpec;
}

/**
 * Compact Recurrent Transformer: a shallow Transformer over short segments
 * plus one persistent memory vector carried between segments by an RNN.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { CrtSpec } from "./types.ts";
 * import { referenceCrt } from "./reference_specs.ts";
 *
 * const short: CrtSpec = { ...referenceCrt, segmentLen: 17 };
 * assert.equal(short.memory.cell, "gru");
 * ```
 */
export interface CrtSpec extends BlockFields {
  /** Model kind. */
  readonly _tag: "crt";
  /** Positions inside a segment. Default `learned`. */
  readonly positional: Positional;
  /** The persistent memory. */
  readonly memory: MemorySpec;
}

/**
 * Full-length Transformer baseline: the same blocks, no memory; segments of
 * the full length processed independently.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { TransformerSpec } from "./types.ts";
 * import { referenceTransformer } from "./reference_specs.ts";
 *
 * const sinusoidal: TransformerSpec = { ...referenceTransformer, positional: "sinusoidal" };
 * assert.equal(sinusoidal.segmentLen, 70);
 * ```
 */
export interface TransformerSpec extends BlockFields {
  /** Model kind. */
  readonly _tag: "transformer";
  /** Positions inside a segment. Default `learned`. */
  readonly positional: Positional;
}

/**
 * Transformer-XL baseline: the hidden states of the previous segment are
 * cached (without gradient) and attended with relative positions and the
 * u, v biases.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { XlSpec } from "./types.ts";
 * import { referenceXl } from "./reference_specs.ts";
 *
 * const noCache: XlSpec = { ...referenceXl, memLen: 0 };
 * assert.equal(noCache.memLen, 0);
 * ```
 */
export interface XlSpec extends BlockFields {
  /** Model kind. */
  readonly _tag: "xl";
  /**
   * Cached positions M_len per layer from the previous segment, attended
   * without gradient; 0 turns the cache off. Default 35 (= segmentLen).
   */
  readonly memLen: number;
}

/**
 * Any model spec, told apart by `_tag`: `crt`, `transformer` or `xl`. A value
 * of this type is only structurally valid; decode untrusted specs with
 * `decodeModelSpec` (`codecs.ts`), which also checks sizes and the
 * cross-field rules.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ModelSpec } from "./types.ts";
 * import { referenceCrt, referenceXl } from "./reference_specs.ts";
 *
 * const cells = (specs: readonly ModelSpec[]): string[] =>
 *   specs.map((s) => s._tag === "crt" ? s.memory.cell : "none");
 * assert.deepEqual(cells([referenceCrt, referenceXl]), ["gru", "none"]);
 * ```
 */
export type ModelSpec = CrtSpec | TransformerSpec | XlSpec;
