/**
 * Tiny model specs shared by the cross-module tests: small enough for exact
 * finite differences and sub-second training steps.
 *
 * @module
 */
import type { CrtSpec, ModelSpec, TransformerSpec, XlSpec } from "../spec/codecs.ts";

const blocks = {
  vocabSize: 7,
  dModel: 8,
  nHeads: 2,
  dFF: 12,
  nLayers: 1,
  dropout: 0,
  segmentLen: 3,
  readout: { _tag: "lm", tie: false },
} as const;

/** CRT with a GRU memory. */
export const tinyCrtGru: CrtSpec = {
  _tag: "crt",
  ...blocks,
  positional: "learned",
  memory: {
    cell: "gru",
    dMemory: 6,
    injection: "prependToken",
    rnnInput: "mean",
    orthogonal: "candidate",
  },
};

/** CRT with an NC-GRU memory (orthogonal candidate and reset matrices), tokens fed in order. */
export const tinyCrtNcgru: CrtSpec = {
  ...tinyCrtGru,
  positional: "sinusoidal",
  readout: { _tag: "lm", tie: true },
  memory: {
    cell: "ncgru",
    dMemory: 6,
    injection: "addToEmbeddings",
    rnnInput: "tokens",
    orthogonal: "candidateAndReset",
  },
};

/** The full-length Transformer. */
export const tinyTransformer: TransformerSpec = {
  _tag: "transformer",
  ...blocks,
  positional: "learned",
};

/** Transformer-XL with a cache of 4 states (longer than a segment). */
export const tinyXl: XlSpec = { _tag: "xl", ...blocks, memLen: 4 };

/** All tiny models by name. */
export const tinyModels: Record<string, ModelSpec> = {
  "CRT (GRU)": tinyCrtGru,
  "CRT (NC-GRU)": tinyCrtNcgru,
  "full-length Transformer": tinyTransformer,
  "Transformer-XL": tinyXl,
};

/** Deterministic int32 tokens in [0, vocab). */
export const randomTokens = (n: number, vocab: number, seed: number): Int32Array => {
  const out = new Int32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s >>> 8) % vocab;
  }
  return out;
};

/**
 * `spec` widened to learn the memory tasks in seconds: width 32, FFN 64, a
 * 32-wide memory for CRT, segments of `segmentLen`.
 */
export const wide = <S extends CrtSpec | TransformerSpec>(spec: S, segmentLen: number): S =>
  spec._tag === "crt"
    ? { ...spec, dModel: 32, dFF: 64, segmentLen, memory: { ...spec.memory, dMemory: 32 } }
    : { ...spec, dModel: 32, dFF: 64, segmentLen };
