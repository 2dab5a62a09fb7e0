/**
 * Perplexity of a token sequence under a loaded model, read as one stream
 * (batch 1): every token but the first is predicted from all before it, the
 * memory carried across segments. Web APIs only.
 *
 * @module
 */
import type { LoadedModel } from "./loaded.ts";

/**
 * What {@linkcode scoreIds} measured.
 *
 * @example
 * ```ts
 * import type { TextScore } from "./score.ts";
 * const line = (s: TextScore) => `${s.tokens} tokens, ppl ${s.ppl.toFixed(2)}`;
 * ```
 */
export interface TextScore {
  /** Predictions scored: the number of ids minus one. */
  readonly tokens: number;
  /** Mean negative log-likelihood per prediction, in nats. */
  readonly nll: number;
  /** exp(nll). */
  readonly ppl: number;
  /** Wall-clock seconds. */
  readonly seconds: number;
  /** tokens / seconds. */
  readonly tokensPerSecond: number;
}

/**
 * Score `ids` as one stream: the mean NLL of ids[i + 1] given ids[0 … i],
 * over i = 0 … N − 2 (the first id is context only), and its exp. Runs a
 * segment at a time; `onProgress` hears the predictions done so far after
 * every `progressEvery` (default 10,000) of them.
 *
 * @example
 * ```ts
 * import type { LoadedModel } from "./loaded.ts";
 * import { scoreIds } from "./score.ts";
 * const pplOf = (m: LoadedModel, text: string) => scoreIds(m, m.encode(text)).ppl;
 * ```
 */
export function scoreIds(
  model: LoadedModel,
  ids: Int32Array,
  opts: { onProgress?: (done: number, total: number) => void; progressEvery?: number } = {},
): TextScore {
  const total = ids.length - 1;
  if (total < 1) throw new RangeError(`scoreIds: ${ids.length} tokens leave nothing to predict`);
  const every = Math.max(1, opts.progressEvery ?? 10_000);
  const started = performance.now();
  const stream = model.openStream();
  let sum = 0; // float64
  try {
    for (let at = 0; at < total; at += every) {
      const n = Math.min(every, total - at);
      const lp = stream.logProbs(ids.subarray(at, at + n), ids.subarray(at + 1, at + n + 1));
      for (let i = 0; i < n; i++) sum -= lp[i];
      opts.onProgress?.(at + n, total);
    }
  } finally {
    stream.dispose();
  }
  const seconds = (performance.now() - started) / 1000;
  const nll = sum / total;
  return { tokens: total, nll, ppl: Math.exp(nll), seconds, tokensPerSecond: total / seconds };
}
