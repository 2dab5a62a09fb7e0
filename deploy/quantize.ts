/**
 * Symmetric int8 weights with one float32 scale per channel, for the model
 * file's `--int8` option. Web APIs only (no Deno): the loader runs in browsers.
 *
 * A matrix [R, C] is quantised along one axis: `axis: 1` keeps one scale per
 * column (an output channel of `x · W`, the layout of every weight matrix in
 * this project), `axis: 0` one per row (a row of a lookup table: a token's
 * embedding, which is also its output channel when the head is tied). The
 * scale of a channel is max |w| / 127 over it; values are stored as
 * round(w / scale) in [−127, 127] (−128 is never used, so the code is
 * symmetric) and read back as q · scale. The rounding error of a value is at
 * most scale / 2.
 *
 * @module
 */

/**
 * An int8 matrix and its per-channel scales.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dequantize, type Int8Matrix, quantize } from "./quantize.ts";
 *
 * const q: Int8Matrix = quantize(Float32Array.of(1, -2, 0.5, 4), [2, 2], 1);
 * assert.deepEqual(Array.from(q.scales), [1 / 127, 4 / 127].map(Math.fround));
 * assert.ok(dequantize(q).every((v, i) => Math.abs(v - [1, -2, 0.5, 4][i]) <= 2 / 127));
 * ```
 */
export interface Int8Matrix {
  /** [rows, cols]. */
  readonly shape: readonly [number, number];
  /** Which axis the scales index: 0 one per row, 1 one per column. */
  readonly axis: 0 | 1;
  /** rows · cols values, row-major. */
  readonly values: Int8Array;
  /** One scale per row (axis 0) or column (axis 1). */
  readonly scales: Float32Array;
}

/**
 * Quantise a row-major float32 matrix to int8 with one scale per channel
 * along `axis`. Non-finite values are refused (they have no int8 code).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { quantize } from "./quantize.ts";
 *
 * const q = quantize(Float32Array.of(0.5, 1, -1, 0), [2, 2], 0); // one scale per row
 * assert.deepEqual(Array.from(q.values), [64, 127, -127, 0]);
 * ```
 */
export const quantize = (
  data: Float32Array,
  shape: readonly [number, number],
  axis: 0 | 1,
): Int8Matrix => {
  const [rows, cols] = shape;
  if (data.length !== rows * cols) {
    throw new RangeError(`quantize: ${data.length} values do not fill [${rows}, ${cols}]`);
  }
  const channels = axis === 0 ? rows : cols;
  const maxAbs = new Float32Array(channels);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = data[r * cols + c];
      if (!Number.isFinite(v)) {
        throw new RangeError(`quantize: non-finite value ${v} at [${r}, ${c}]`);
      }
      const ch = axis === 0 ? r : c;
      const a = Math.abs(v);
      if (a > maxAbs[ch]) maxAbs[ch] = a;
    }
  }
  const scales = new Float32Array(channels);
  for (let ch = 0; ch < channels; ch++) scales[ch] = maxAbs[ch] / 127;
  const values = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const s = scales[axis === 0 ? r : c];
      if (s === 0) continue; // an all-zero channel stays 0
      const q = Math.round(data[r * cols + c] / s);
      values[r * cols + c] = q > 127 ? 127 : q < -127 ? -127 : q;
    }
  }
  return { shape: [rows, cols], axis, values, scales };
};

/**
 * The float32 matrix an int8 matrix stands for: q · scale of its channel.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dequantize } from "./quantize.ts";
 *
 * const m = dequantize({
 *   shape: [1, 2],
 *   axis: 1,
 *   values: Int8Array.of(127, -64),
 *   scales: Float32Array.of(0.5, 1),
 * });
 * assert.deepEqual(Array.from(m), [63.5, -64]);
 * ```
 */
export const dequantize = (m: Int8Matrix): Float32Array => {
  const [rows, cols] = m.shape;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    if (m.axis === 0) {
      const s = m.scales[r];
      for (let c = 0; c < cols; c++) out[base + c] = m.values[base + c] * s;
    } else {
      for (let c = 0; c < cols; c++) out[base + c] = m.values[base + c] * m.scales[c];
    }
  }
  return out;
};
