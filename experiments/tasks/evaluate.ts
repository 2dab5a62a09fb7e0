/**
 * Perplexity of a split read as a stream: B_eval parallel streams, each from
 * its start with a fresh state, in windows of one segment, the carried state
 * (CRT memory, XL cache) passed from each window to the next. Every
 * prediction of every stream counts once, including the shorter last window;
 * perplexity is exp(mean NLL) over all of them.
 *
 * @example
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { compile } from "../../core/compile.ts";
 * import { ensureBackend } from "../../ops/backend.ts";
 * import { evaluateSplit } from "./evaluate.ts";
 *
 * await ensureBackend();
 * const spec = {
 *   _tag: "transformer", vocabSize: 5, dModel: 8, nHeads: 2, dFF: 8, nLayers: 1, dropout: 0,
 *   segmentLen: 4, readout: { _tag: "lm", tie: false }, positional: "learned",
 * } as const;
 * const program = compile(spec);
 * if (E.isLeft(program)) throw new Error(program.left.message);
 * const params = program.right.init(0);
 * const r = await evaluateSplit(program.right, params, Int32Array.from({ length: 50 }, (_, i) => i % 5), {
 *   batchSize: 2,
 * });
 * console.log(r?.tokens, r !== null && r.ppl > 1); // 48 true
 * ```
 *
 * @module
 */
import type { ModelState, Params, Program } from "../../core/program.ts";
import { tf } from "../../ops/tf.ts";
import { batchify, countWindows, segmentWindows } from "../data/windows.ts";

/**
 * What {@linkcode evaluateSplit} measured.
 *
 * @example
 * ```ts
 * import type { SplitScore } from "./evaluate.ts";
 * const show = (s: SplitScore) => `ppl ${s.ppl.toFixed(1)} over ${s.tokens} tokens`;
 * ```
 */
export interface SplitScore {
  /** Mean negative log-likelihood per predicted token, in nats. */
  readonly loss: number;
  /** exp(loss). */
  readonly ppl: number;
  /** Predictions scored: B·(N − 1) for B streams of N tokens. */
  readonly tokens: number;
  /** Streams actually used (fewer than asked when the split is short). */
  readonly batchSize: number;
  /** Wall-clock seconds. */
  readonly seconds: number;
}

/**
 * Options of {@linkcode evaluateSplit}.
 *
 * @example
 * ```ts
 * import type { EvaluateOptions } from "./evaluate.ts";
 * const opts: EvaluateOptions = { batchSize: 10, maxTokens: 10_000 };
 * ```
 */
export interface EvaluateOptions {
  /** B_eval: parallel streams (reduced so that each stream has at least 2 tokens). */
  readonly batchSize: number;
  /** Read only the first this many tokens of the split (periodic validation). Default: all. */
  readonly maxTokens?: number;
  /** Called after each window with windows done and in all, and tokens scored by that window. */
  readonly onWindow?: (done: number, total: number, tokens: number) => void;
  /** Checked between windows: when aborted, the evaluation stops and returns `null`. */
  readonly signal?: AbortSignal;
}

/** Disposes the tensors of `old` that `next` does not carry over unchanged. */
function disposeReplaced(old: ModelState, next: ModelState): void {
  const kept = new Set(Object.values(next));
  for (const t of Object.values(old)) if (!kept.has(t)) t.dispose();
}

/** Lets signal handlers and timers run between windows. */
const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0));

/**
 * Scores a token sequence with the model in evaluation mode (no dropout),
 * as B_eval ordered streams with the state carried window to window.
 * Resolves to `null` only when `signal` aborts it. Leaves no tensors behind.
 *
 * @example
 * ```ts
 * import type { Params, Program } from "../../core/program.ts";
 * import { evaluateSplit } from "./evaluate.ts";
 *
 * async function validPpl(program: Program, params: Params, valid: Int32Array): Promise<number> {
 *   const r = await evaluateSplit(program, params, valid, { batchSize: 10 });
 *   return r === null ? NaN : r.ppl;
 * }
 * ```
 */
export async function evaluateSplit(
  program: Program,
  params: Params,
  tokens: Int32Array,
  opts: EvaluateOptions,
): Promise<SplitScore | null> {
  const started = performance.now();
  const split = opts.maxTokens === undefined || opts.maxTokens >= tokens.length
    ? tokens
    : tokens.subarray(0, opts.maxTokens);
  const b = Math.max(1, Math.min(opts.batchSize, Math.floor(split.length / 2)));
  const streams = batchify(split, b);
  const s = program.spec.segmentLen;
  const windowOpts = { segmentLen: s, bpttSegments: 1, remainder: "pad" } as const;
  const total = countWindows(streams, windowOpts);
  let state: ModelState = program.initState(b);
  let nll = 0; // float64 sum of per-token NLL
  let count = 0;
  let done = 0;
  try {
    for (const w of segmentWindows(streams, windowOpts)) {
      if (opts.signal?.aborted) return null;
      // The last window is shorter: feed only its real columns (the program
      // runs a short last segment), so no padding is ever scored.
      const cut = (a: Int32Array): Int32Array => {
        if (w.length === w.windowLen) return a;
        const out = new Int32Array(b * w.length);
        for (let r = 0; r < b; r++) {
          out.set(a.subarray(r * w.windowLen, r * w.windowLen + w.length), r * w.length);
        }
        return out;
      };
      const prev = state;
      const out = tf.tidy(() => {
        const batch = {
          tokens: tf.tensor2d(cut(w.tokens), [b, w.length], "int32"),
          targets: tf.tensor2d(cut(w.targets), [b, w.length], "int32"),
        };
        return program.loss(params, prev, batch, { training: false, bpttSegments: 1 });
      });
      const mean = (await out.loss.data())[0];
      out.loss.dispose();
      disposeReplaced(prev, out.state);
      state = out.state;
      nll += mean * b * w.length;
      count += b * w.length;
      done++;
      opts.onWindow?.(done, total, b * w.length);
      await yieldToEventLoop();
    }
  } finally {
    program.disposeState(state);
  }
  const loss = nll / count;
  return {
    loss,
    ppl: Math.exp(loss),
    tokens: count,
    batchSize: b,
    seconds: (performance.now() - started) / 1000,
  };
}
