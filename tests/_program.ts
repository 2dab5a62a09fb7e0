/**
 * Helpers shared by the tests that run whole programs: compile or throw,
 * int32 batches, streaming in pieces.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type { Params, Program, Stream } from "../core/program.ts";
import { compile } from "../core/compile.ts";
import { flattenParams } from "../core/params.ts";
import { tf } from "../ops/tf.ts";
import type { ModelSpec } from "../spec/codecs.ts";

/** The compiled program of `spec`; a compile failure throws its message. */
export const compiled = (spec: ModelSpec): Program => {
  const p = compile(spec);
  if (E.isLeft(p)) throw new Error(p.left.message);
  return p.right;
};

/** Row-major int32 data as a [b, data.length / b] tensor. */
export const int2d = (data: Int32Array, b: number): tf.Tensor2D =>
  tf.tensor2d(data, [b, data.length / b], "int32");

/** max |a − b| over every entry (no tensor left behind). */
export const maxDiff = (a: tf.Tensor, b: tf.Tensor): number =>
  tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);

/**
 * Feed `tokens` ([B, L] row-major) through `inferStep` in pieces of the given
 * sizes (cycled; `recomputeEvery` r: recompute on every r-th piece, from the
 * second); the logits [B, L, V] and the final stream.
 */
export const streamIn = (
  p: Program,
  params: Params,
  tokens: Int32Array,
  b: number,
  sizes: readonly number[],
  opts: { recomputeEvery?: number } = {},
): { logits: tf.Tensor; stream: Stream } => {
  const len = tokens.length / b;
  let stream = p.openStream(b);
  const got: tf.Tensor[] = [];
  let at = 0, k = 0;
  while (at < len) {
    const n = Math.min(sizes[k % sizes.length], len - at);
    const chunk = new Int32Array(b * n);
    for (let r = 0; r < b; r++) chunk.set(tokens.subarray(r * len + at, r * len + at + n), r * n);
    const recompute = opts.recomputeEvery !== undefined && k % opts.recomputeEvery === 1;
    const out = p.inferStep(params, stream, chunk, { recompute });
    got.push(out.logits);
    p.disposeState(stream.state);
    stream = out.stream;
    at += n;
    k++;
  }
  const logits = tf.concat(got, 1);
  for (const g of got) g.dispose();
  return { logits, stream };
};

/**
 * max |logits − streamed| between the segment-at-once forward pass over
 * `tokens` (one row) and `inferStep` fed one token at a time.
 */
export const streamingGap = (p: Program, params: Params, tokens: Int32Array): number => {
  const ref = p.forward(params, p.initState(1), int2d(tokens, 1)).logits;
  return maxDiff(ref, streamIn(p, params, tokens, 1, [1]).logits);
};

/**
 * Dispose what a `trainStep` check holds: `tensors`, the step's gradients
 * and state, the state it started from, and the parameters.
 */
export const disposeTrainStep = (
  p: Program,
  params: Params,
  state: ReturnType<Program["initState"]>,
  step: ReturnType<Program["trainStep"]>,
  tensors: readonly tf.Tensor[] = [],
): void => {
  for (const x of [...tensors, ...Object.values(step.grads)]) x.dispose();
  p.disposeState(step.state);
  p.disposeState(state);
  for (const x of Object.values(flattenParams(params))) x.dispose();
};
