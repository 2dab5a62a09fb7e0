/**
 * Sampling text from a loaded model: temperature, top-k, a seed and a token
 * limit. Web APIs only.
 *
 * @module
 */
import { seeded } from "../core/random.ts";
import { drawToken } from "../ops/reference.ts";
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
  /**
   * Tokens to sample: an integer in [0, 2⁵³ − 1]. Nothing is sized by it —
   * {@linkcode generateTokens} draws them one at a time, and the caller may
   * stop early — so a huge limit means "until the consumer stops".
   */
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
  // The `sample` op's draw (ops/reference.ts) on log-probabilities: softmax(log p / T) ∝ p^(1/T).
  const logits = Float64Array.from(probs, (p) => Math.log(p));
  return drawToken(logits, { temperature: opts.temperature ?? 1, topK: opts.topK ?? 0 }, uniform());
};

const checkOptions = (opts: GenerateOptions, vocabSize: number): void => {
  const fail = (what: string, got: unknown) => {
    throw new RangeError(`generate: ${what}, got ${String(got)}`);
  };
  if (!Number.isSafeInteger(opts.maxTokens) || opts.maxTokens < 0) {
    fail("maxTokens must be an integer in [0, 2⁵³ − 1]", opts.maxTokens);
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
 * Sample a continuation of `prompt` (text, or token ids) lazily: each
 * `next()` draws one more token id, so the first ids come out as soon as
 * they are drawn and no buffer is sized by `maxTokens`. The prompt is fed in
 * one step (an empty one starts from `<eos>`, a sentence start in PTB); then
 * each drawn token is fed back in, one at a time. The options are checked at
 * the call (a RangeError names a bad one); the model's stream opens at the
 * first `next()` and closes when the iterator ends or is stopped early
 * (`break` out of a `for … of`, or `return()`). `onToken` is not called
 * (the caller sees every id). With a `seed` the ids are reproducible on the
 * same backend, and a prefix of a longer run equals a shorter one.
 *
 * @example Stream words as they are drawn, stopping at the first `<eos>`
 * ```ts
 * import type { LoadedModel } from "./loaded.ts";
 * import { generateTokens } from "./generate.ts";
 *
 * const sentence = (model: LoadedModel, print: (word: string) => void): void => {
 *   for (const id of generateTokens(model, "the company", { maxTokens: 1000, seed: 1 })) {
 *     if (model.file.vocab[id] === "<eos>") break; // stops the stream
 *     print(model.decode([id]));
 *   }
 * };
 * ```
 */
export function generateTokens(
  model: LoadedModel,
  prompt: string | Int32Array,
  opts: GenerateOptions,
): Generator<number, void, undefined> {
  checkOptions(opts, model.program.spec.vocabSize);
  let context = typeof prompt === "string" ? model.encode(prompt) : prompt;
  if (context.length === 0) {
    const eos = model.file.vocab.indexOf("<eos>");
    context = Int32Array.of(eos >= 0 ? eos : 0);
  }
  const rng = seeded(opts.seed ?? crypto.getRandomValues(new Uint32Array(1))[0]);
  const draw = { temperature: opts.temperature ?? 1, topK: opts.topK ?? 0 };
  const maxTokens = opts.maxTokens;
  const first: ArrayLike<number> = context;
  return (function* () {
    if (maxTokens === 0) return;
    const stream = model.openStream();
    try {
      // Each step feeds the last token and draws the next in the kernel: one id comes back.
      let feed = first;
      for (let i = 0; i < maxTokens; i++) {
        const id = stream.draw(feed, draw, rng.uniform());
        yield id;
        feed = [id];
      }
    } finally {
      stream.dispose();
    }
  })();
}

/**
 * Sample a continuation of `prompt` (text, or token ids) and collect it:
 * {@linkcode generateTokens} run to `maxTokens`, calling `onToken` with
 * each id as it is drawn. Returns the sampled ids (the prompt excluded) and
 * their text; memory grows with the tokens drawn, never up front. With a
 * `seed` the result is reproducible on the same backend.
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
  const ids: number[] = [];
  for (const id of generateTokens(model, prompt, opts)) {
    ids.push(id);
    opts.onToken?.(id, model.decode([id]));
  }
  const out = Int32Array.from(ids);
  return { ids: out, text: model.decode(out) };
}
