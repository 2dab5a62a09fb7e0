/**
 * A language-model split as training and evaluation read it: B ordered
 * streams (Transformer-XL style batches) and the windows of K·S tokens one
 * training step reads, for any corpus of token ids.
 *
 * - **Windows**: token at stream column j is the input whose target is column
 *   j + 1, so a stream of N tokens has N − 1 predictions; windows tile those
 *   predictions left to right without overlap (see {@linkcode segmentWindows}).
 *
 * @module
 */

/**
 * B parallel contiguous streams of one split, row-major `[B, N]`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { batchify, type Streams } from "./windows.ts";
 * const s: Streams = batchify(new Int32Array(100), 4);
 * assert(s.streams.length === s.batchSize * s.streamLen);
 * ```
 */
export interface Streams {
  /** `[batchSize, streamLen]`, row-major: stream b is `streams[b*N .. (b+1)*N)`. */
  readonly streams: Int32Array;
  /** B: number of parallel streams. */
  readonly batchSize: number;
  /** N: tokens per stream. */
  readonly streamLen: number;
}

/**
 * Cuts a token sequence into `batchSize` contiguous streams of equal length
 * (Transformer-XL ordered batches): stream b holds tokens
 * `[b·N, (b+1)·N)` with `N = floor(len / batchSize)`; the last `len mod B`
 * tokens are dropped. Throws a RangeError when a stream would have fewer
 * than 2 tokens (no prediction to make).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { batchify } from "./windows.ts";
 * const s = batchify(Int32Array.from([0, 1, 2, 3, 4, 5, 6]), 2);
 * assert(s.streamLen === 3);
 * assert(Array.from(s.streams).join(",") === "0,1,2,3,4,5");
 * ```
 */
export function batchify(tokens: Int32Array, batchSize: number): Streams {
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`batchify: batchSize must be a positive integer, got ${batchSize}`);
  }
  const streamLen = Math.floor(tokens.length / batchSize);
  if (streamLen < 2) {
    throw new RangeError(
      `batchify: ${tokens.length} tokens give streams of ${streamLen} tokens at batchSize ${batchSize}; need at least 2`,
    );
  }
  return { streams: tokens.slice(0, batchSize * streamLen), batchSize, streamLen };
}

/**
 * Where a run stands in the training data, as saved in a checkpoint: resume
 * with `segmentWindows(streams, { ..., from: position })` in epoch `epoch`.
 *
 * @example
 * ```ts
 * import type { DataPosition } from "./windows.ts";
 * const start: DataPosition = { epoch: 0, position: 0 };
 * ```
 */
export interface DataPosition {
  /** Passes over the training split completed before the current one. */
  readonly epoch: number;
  /** A window's `nextPosition`: the stream column the next window starts at. */
  readonly position: number;
}

/**
 * Options for {@linkcode segmentWindows}. W = bpttSegments · segmentLen.
 *
 * @example
 * ```ts
 * import type { WindowOptions } from "./windows.ts";
 * const train: WindowOptions = { segmentLen: 70, bpttSegments: 2 };
 * const evaluate: WindowOptions = { ...train, remainder: "pad" };
 * ```
 */
export interface WindowOptions {
  /** S: tokens per segment. */
  readonly segmentLen: number;
  /** K: segments per window (gradients flow through the memory across them). */
  readonly bpttSegments: number;
  /** Stream column to start at: 0, or a saved `nextPosition` to resume. Default 0. */
  readonly from?: number;
  /**
   * What to do with the last predictions that do not fill a window: `drop`
   * them (training: every window has the same shape) or `pad` the last window
   * to W with `padId` and report its `length` (evaluation: every token counts;
   * padding sits after the real tokens, so a causal model's real outputs are
   * unaffected and the caller masks columns ≥ length). Default `drop`.
   */
  readonly remainder?: "drop" | "pad";
  /** Token used for padding. Default 0 (`<eos>`). */
  readonly padId?: number;
}

/**
 * One training/evaluation window: inputs and next-token targets, both `[B, W]`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { batchify, segmentWindows, type Window } from "./windows.ts";
 * const s = batchify(new Int32Array(50), 2);
 * const windows: Window[] = [...segmentWindows(s, { segmentLen: 4, bpttSegments: 2 })];
 * assert(windows.length === 3 && windows[0].windowLen === 8); // 24 predictions per stream
 * ```
 */
export interface Window {
  /** `[B, W]` row-major: `tokens[b, j] = streams[b, position + j]`. */
  readonly tokens: Int32Array;
  /** `[B, W]` row-major: `targets[b, j] = streams[b, position + j + 1]`. */
  readonly targets: Int32Array;
  /** Stream column of `tokens[:, 0]`. */
  readonly position: number;
  /** Where the next window starts; save it (with the epoch) to resume exactly after this window. */
  readonly nextPosition: number;
  /** Columns holding real data: W, or fewer for a padded last window. */
  readonly length: number;
  /** W = K·S. */
  readonly windowLen: number;
}

function windowLenOf(streams: Streams, opts: WindowOptions): { W: number; from: number } {
  const { segmentLen, bpttSegments } = opts;
  if (!Number.isInteger(segmentLen) || segmentLen < 1) {
    throw new RangeError(
      `segmentWindows: segmentLen must be a positive integer, got ${segmentLen}`,
    );
  }
  if (!Number.isInteger(bpttSegments) || bpttSegments < 1) {
    throw new RangeError(
      `segmentWindows: bpttSegments must be a positive integer, got ${bpttSegments}`,
    );
  }
  const from = opts.from ?? 0;
  const predictions = streams.streamLen - 1;
  if (!Number.isInteger(from) || from < 0 || from > predictions) {
    throw new RangeError(
      `segmentWindows: from must be an integer in [0, ${predictions}], got ${from}`,
    );
  }
  return { W: segmentLen * bpttSegments, from };
}

/**
 * The number of windows {@linkcode segmentWindows} yields with these options
 * (e.g. the progress bar's total).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { batchify, countWindows } from "./windows.ts";
 * const s = batchify(new Int32Array(21), 2); // N = 10, 9 predictions per stream
 * assert(countWindows(s, { segmentLen: 2, bpttSegments: 2 }) === 2);
 * assert(countWindows(s, { segmentLen: 2, bpttSegments: 2, remainder: "pad" }) === 3);
 * ```
 */
export function countWindows(streams: Streams, opts: WindowOptions): number {
  const { W, from } = windowLenOf(streams, opts);
  const left = streams.streamLen - 1 - from;
  return opts.remainder === "pad" ? Math.ceil(left / W) : Math.floor(left / W);
}

/**
 * Yields consecutive windows of W = K·S columns over all B streams, inputs and
 * targets shifted by one, from column `from` to the end. The windows tile the
 * `N − 1` predictions of each stream without overlap or gap, so window i + 1
 * continues exactly where window i stopped: the caller carries the memory
 * from one window to the next (and resets it at an epoch boundary if it
 * wants to). Each window is a fresh copy.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { batchify, segmentWindows } from "./windows.ts";
 * const s = batchify(Int32Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), 2); // [[0..4], [5..9]]
 * const [w] = segmentWindows(s, { segmentLen: 2, bpttSegments: 1 });
 * assert(Array.from(w.tokens).join(",") === "0,1,5,6");
 * assert(Array.from(w.targets).join(",") === "1,2,6,7");
 * assert(w.nextPosition === 2);
 * ```
 */
export function* segmentWindows(
  streams: Streams,
  opts: WindowOptions,
): Generator<Window, void, undefined> {
  const { W, from } = windowLenOf(streams, opts);
  const { batchSize: B, streamLen: N } = streams;
  const predictions = N - 1;
  const pad = opts.remainder === "pad";
  const padId = opts.padId ?? 0;
  for (let position = from; position < predictions; position += W) {
    const length = Math.min(W, predictions - position);
    if (length < W && !pad) return;
    const tokens = new Int32Array(B * W);
    const targets = new Int32Array(B * W);
    if (length < W && padId !== 0) {
      tokens.fill(padId);
      targets.fill(padId);
    }
    for (let b = 0; b < B; b++) {
      const row = b * N + position;
      tokens.set(streams.streams.subarray(row, row + length), b * W);
      targets.set(streams.streams.subarray(row + 1, row + 1 + length), b * W);
    }
    yield { tokens, targets, position, nextPosition: position + length, length, windowLen: W };
  }
}
