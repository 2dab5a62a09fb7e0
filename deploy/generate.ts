/**
 * Sampling text from a loaded model: temperature, top-k, a seed and a token
 * limit. Web APIs only.
 *
 * @module
 */
import { seeded } from "../core/random.ts";
import type { LoadedModel } from "./loaded.ts";

/**
 * Options of {@linkcode generate}.
 *
 * @example
 * ```ts
 * import type { GenerateOptions } from "./generate.ts";
 * const reproducible: GenerateOptions = { maxTokens: 40, temperature: 0.8, topK: 50, seed: 7 };
 * ```
 */
export interface GenerateOptions {
  /** Tokens to sample (a non-negative integer). */
  readonly maxTokens: number;
  /** Softmax temperature ≥ 0 (default 1); 0 picks the most likely token every time. */
  readonly temperature?: number;
  /** Sample among the k most likely tokens only (default 0: all of them). */
  readonly topK?: number;
  /** Seed of the sampler (a uint32); the same seed, prompt and options give the same text. Default: random. */
  readonly seed?: number;
  /** Called with each sampled token as soon as it is drawn. */
  readonly onToken?: (id: number, word: string) => void;
}

/**
 * Draw one token id from next-token probabilities `probs` with temperature
 * and top-k, using `uniform` (a draw in [0, 1)). Exposed for tests and
 * custom loops.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sampleToken } from "./generate.ts";
 *
 * const p = Float32Array.of(0.1, 0.6, 0.3);
 * assert.equal(sampleToken(p, { temperature: 0 }, () => 0.99), 1); // greedy
 * assert.equal(sampleToken(p, { topK: 1 }, () => 0.99), 1); // only the best remains
 * assert.equal(sampleToken(p, {}, () => 0.05), 0); // inverse CDF: 0.05 < 0.1
 * ```
 */
export const sampleToken = (
  probs: Float32Array,
  opts: { readonly temperature?: number; readonly topK?: number },
  uniform: () => number,
): number => {
  const v = probs.length;
  const temperature = opts.temperature ?? 1;
  const k = opts.topK ?? 0;
  if (temperature === 0 || k === 1) {
    let best = 0;
    for (let i = 1; i < v; i++) if (probs[i] > probs[best]) best = i;
    return best;
  }
  // Candidates: all ids, or the k most likely (ties broken by the lower id).
  let ids: Int32Array;
  if (k > 0 && k < v) {
    const sorted = Float32Array.from(probs).sort();
    const threshold = sorted[v - k];
    let above = 0;
    for (let i = 0; i < v; i++) if (probs[i] > threshold) above++;
    ids = new Int32Array(k);
    let n = 0, ties = k - above;
    for (let i = 0; i < v && n < k; i++) {
      if (probs[i] > threshold) ids[n++] = i;
      else if (probs[i] === threshold && ties > 0) {
        ids[n++] = i;
        ties--;
      }
    }
  } else {
    ids = Int32Array.from({ length: v }, (_, i) => i);
  }
  // p^(1/T) = softmax(logits / T) up to normalisation; in the log domain for small T.
  const w = new Float64Array(ids.length);
  let max = -Infinity;
  for (let j = 0; j < ids.length; j++) {
    w[j] = Math.log(probs[ids[j]]) / temperature;
    if (w[j] > max) max = w[j];
  }
  if (max === -Infinity) return ids[0]; // every candidate underflowed to 0
  let sum = 0;
  for (let j = 0; j < w.length; j++) sum += w[j] = Math.exp(w[j] - max);
  let u = uniform() * sum;
  for (let j = 0; j < w.length; j++) {
    u -= w[j];
    if (u < 0) return ids[j];
  }
  // Rounding left u ≥ 0 after the last weight: the last candidate with weight.
  for (let j = w.length - 1; j >= 0; j--) if (w[j] > 0) return ids[j];
  return ids[0];
};

const checkOptions = (opts: GenerateOptions, vocabSize: number): void => {
  const fail = (what: string, got: unknown) => {
    throw new RangeError(`generate: ${what}, got ${String(got)}`);
  };
  if (!Number.isInteger(opts.maxTokens) || opts.maxTokens < 0) {
    fail("maxTokens must be a non-negative integer", opts.maxTokens);
  }
  const t = opts.temperature;
  if (t !== undefined && !(Number.isFinite(t) && t >= 0)) {
    fail("temperature must be a finite number ≥ 0", t);
  }
  const k = opts.topK;
  if (k !== undefined && !(Number.isInteger(k) && k >= 0)) {
    fail(`topK must be an integer in [0, ${vocabSize}] (0: no limit)`, k);
  }
  const s = opts.seed;
  if (s !== undefined && !(Number.isInteger(s) && s >= 0 && s <= 0xffffffff)) {
    fail("seed must be an integer in [0, 2³² − 1]", s);
  }
};

/**
 * Sample a continuation of `prompt` (text, or token ids). The prompt is fed
 * in one step (an empty one starts from `<eos>`, a sentence start in PTB);
 * then each sampled token is fed back in, one at a time. Returns the
 * sampled ids (the prompt excluded) and their text. With a `seed` the
 * result is reproducible on the same backend.
 *
 * @example
 * ```ts
 * import type { LoadedModel } from "./loaded.ts";
 * import { generate } from "./generate.ts";
 *
 * const continue40 = (model: LoadedModel) =>
 *   generate(model, "the company said", {
 *     maxTokens: 40,
 *     temperature: 0.8,
 *     topK: 40,
 *     seed: 1,
 *     onToken: (_id, word) => console.log(word),
 *   }).text;
 * ```
 */
export function generate(
  model: LoadedModel,
  prompt: string | Int32Array,
  opts: GenerateOptions,
): { ids: Int32Array; text: string } {
  checkOptions(opts, model.program.spec.vocabSize);
  let context = typeof prompt === "string" ? model.encode(prompt) : prompt;
  if (context.length === 0) {
    const eos = model.file.vocab.indexOf("<eos>");
    context = Int32Array.of(eos >= 0 ? eos : 0);
  }
  const seed = opts.seed ?? crypto.getRandomValues(new Uint32Array(1))[0];
  const rng = seeded(seed);
  const out = new Int32Array(opts.maxTokens);
  const stream = model.openStream();
  try {
    let probs = opts.maxTokens > 0 ? stream.feed(context) : new Float32Array(0);
    for (let i = 0; i < opts.maxTokens; i++) {
      const id = sampleToken(probs, opts, rng.uniform);
      out[i] = id;
      opts.onToken?.(id, model.decode([id]));
      if (i + 1 < opts.maxTokens) probs = stream.feed([id]);
    }
  } finally {
    stream.dispose();
  }
  return { ids: out, text: model.decode(out) };
}
