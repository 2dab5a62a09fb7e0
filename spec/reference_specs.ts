/**
 * The reference specs: the model of the project's measurements and its two
 * baselines at the same sizes, deeply frozen. Derive variants by spreading,
 * then check them with `decodeModelSpec` (spec/codecs.ts).
 *
 * @module
 */
import type * as types from "./types.ts";

function deepFreeze<A>(a: A): A {
  if (typeof a === "object" && a !== null) {
    for (const v of Object.values(a)) deepFreeze(v);
    Object.freeze(a);
  }
  return a;
}

/** The block sizes all three reference specs share (docs/substrate.md). */
const blocks = {
  vocabSize: 10000,
  dModel: 256,
  nHeads: 4,
  dFF: 1024,
  nLayers: 2,
  dropout: 0.1,
} as const;

/**
 * The fields after `_tag` that all three reference specs share, in their
 * order: the block sizes, segments of `segmentLen` tokens and an untied
 * language-model head (a fresh object per spec, frozen with it).
 */
const lmBlocks = (segmentLen: number): types.BlockFields => ({
  ...blocks,
  segmentLen,
  readout: { _tag: "lm", tie: false },
});

/**
 * The reference CRT (docs/substrate.md; ≈ 7.1 M parameters): V = 10,000,
 * D = 256, 4 heads, FFN 1024, 2 pre-LN layers, dropout 0.1, learned
 * positions, segments of 35 tokens, one prepended memory token, a
 * GRU(256 → 256) fed the mean of the segment's outputs, untied output layer.
 * Deeply frozen; derive variants by spreading.
 *
 * @example Derive a variant and check it
 * ```ts
 * import assert from "node:assert/strict";
 * import { type CrtSpec, decodeModelSpec } from "./codecs.ts";
 * import { referenceCrt } from "./reference_specs.ts";
 *
 * const nc: CrtSpec = { ...referenceCrt, memory: { ...referenceCrt.memory, cell: "ncgru" } };
 * assert.equal(decodeModelSpec(nc)._tag, "Right");
 * assert.throws(() => ((referenceCrt as { dModel: number }).dModel = 512)); // frozen
 * ```
 */
export const referenceCrt: types.CrtSpec = deepFreeze({
  _tag: "crt",
  ...lmBlocks(35),
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
 * The full-length Transformer baseline (docs/substrate.md): the blocks of
 * {@linkcode referenceCrt} without memory, on segments of 70 tokens (twice
 * CRT's). Deeply frozen.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { referenceCrt, referenceTransformer } from "./reference_specs.ts";
 *
 * assert.equal(referenceTransformer.segmentLen, 2 * referenceCrt.segmentLen);
 * ```
 */
export const referenceTransformer: types.TransformerSpec = deepFreeze({
  _tag: "transformer",
  ...lmBlocks(70),
  positional: "learned",
});

/**
 * The Transformer-XL baseline: the blocks of {@linkcode referenceCrt} on
 * segments of 35 tokens, caching the previous 35 positions. Deeply frozen.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { referenceXl } from "./reference_specs.ts";
 *
 * assert.equal(referenceXl.memLen, referenceXl.segmentLen);
 * ```
 */
export const referenceXl: types.XlSpec = deepFreeze({
  _tag: "xl",
  ...lmBlocks(35),
  memLen: 35,
});
