/**
 * Int8 weights at run time: the packed layout the kernels read.
 *
 * A weight matrix W [K, N] used as `x · W` is stored int8 with one float32
 * scale per output column (W ≈ q · scale[j]). The kernels (kernels/gemv.c)
 * read q in blocks of 16 columns, each block holding the K rows in pairs —
 * 16 columns × 2 rows = 32 bytes per pair — so one 16-byte load widens to
 * two int16 vectors that multiply a pair of activations (i32x4.dot_i16x8_s).
 * Columns are padded with zeros to a multiple of 16; K must be even and N a
 * multiple of 4. On tfjs (which has no int8 dtype) the bytes live in an
 * int32 tensor of K · N₁₆ / 4 elements.
 *
 * @module
 */

/** N rounded up to the packing's block of 16 columns. */
export const paddedColumns = (n: number): number => Math.ceil(n / 16) * 16;

/** Whether a [K, N] matrix can be packed: K even, N a multiple of 4. */
export const packable = (k: number, n: number): boolean => k % 2 === 0 && n % 4 === 0 && k > 0;

/**
 * Pack row-major int8 values q [K, N] into the kernels' layout: K · N₁₆
 * bytes (see the module doc).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { packQ8, unpackQ8 } from "./quant.ts";
 * const q = Int8Array.from({ length: 4 * 20 }, (_, i) => (i % 255) - 127);
 * assert.deepEqual(unpackQ8(packQ8(q, 4, 20), 4, 20), q);
 * ```
 */
export const packQ8 = (q: Int8Array, k: number, n: number): Uint8Array => {
  if (!packable(k, n)) throw new RangeError(`packQ8: [${k}, ${n}] needs an even K and N % 4 = 0`);
  const np = paddedColumns(n);
  const out = new Int8Array(k * np);
  for (let i = 0; i < k; i++) {
    const pair = i >> 1, t = i & 1;
    for (let j = 0; j < n; j++) {
      const jb = j & ~15, c = j & 15;
      out[jb * k + pair * 32 + c * 2 + t] = q[i * n + j];
    }
  }
  return new Uint8Array(out.buffer);
};

/** The inverse of {@linkcode packQ8}: row-major int8 [K, N]. */
export const unpackQ8 = (packed: Uint8Array, k: number, n: number): Int8Array => {
  const src = new Int8Array(packed.buffer, packed.byteOffset, packed.byteLength);
  const out = new Int8Array(k * n);
  for (let i = 0; i < k; i++) {
    const pair = i >> 1, t = i & 1;
    for (let j = 0; j < n; j++) {
      const jb = j & ~15, c = j & 15;
      out[i * n + j] = src[jb * k + pair * 32 + c * 2 + t];
    }
  }
  return out;
};

/**
 * How a q8 weight lies in one int32 tfjs tensor: its int8 values in the
 * layout its axis wants — packed for the products ({@linkcode packQ8}) when
 * scaled per column (axis 1, a matrix used as x · W), row-major when scaled
 * per row (axis 0, a lookup table) — padded to a whole word, then its
 * float32 scales.
 */
export interface Q8Layout {
  /** Bytes of values (a multiple of 4). */
  readonly valueBytes: number;
  /** Scales: C (axis 1) or R (axis 0). */
  readonly scales: number;
  /** Int32 words in all. */
  readonly words: number;
}

/** The layout of a q8 [R, C] weight scaled along `axis` (see {@linkcode Q8Layout}). */
export const q8Layout = (r: number, c: number, axis: 0 | 1): Q8Layout => {
  const valueBytes = axis === 1 ? r * paddedColumns(c) : Math.ceil((r * c) / 4) * 4;
  const scales = axis === 1 ? c : r;
  return { valueBytes, scales, words: valueBytes / 4 + scales };
};

/**
 * A q8 weight as the int32 words of its tfjs tensor: values row-major
 * [R, C] and scales along `axis`. Axis 1 needs a packable shape.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeQ8, encodeQ8 } from "./quant.ts";
 * const values = Int8Array.from({ length: 2 * 8 }, (_, i) => i - 8);
 * const scales = Float32Array.of(0.5, 0.25);
 * const back = decodeQ8(encodeQ8({ values, scales }, 2, 8, 0), 2, 8, 0);
 * assert.deepEqual([back.values, back.scales], [values, scales]);
 * ```
 */
export const encodeQ8 = (
  q: { readonly values: Int8Array; readonly scales: Float32Array },
  r: number,
  c: number,
  axis: 0 | 1,
): Int32Array => {
  const lay = q8Layout(r, c, axis);
  if (q.values.length !== r * c || q.scales.length !== lay.scales) {
    throw new RangeError(
      `encodeQ8: [${r}, ${c}] axis ${axis} wants ${r * c} values and ${lay.scales} scales, ` +
        `got ${q.values.length} and ${q.scales.length}`,
    );
  }
  const words = new Int32Array(lay.words);
  const bytes = new Uint8Array(words.buffer);
  bytes.set(
    axis === 1
      ? packQ8(q.values, r, c)
      : new Uint8Array(q.values.buffer, q.values.byteOffset, r * c),
  );
  new Float32Array(words.buffer, lay.valueBytes, lay.scales).set(q.scales);
  return words;
};

/** The inverse of {@linkcode encodeQ8}. */
export const decodeQ8 = (
  words: Int32Array,
  r: number,
  c: number,
  axis: 0 | 1,
): { values: Int8Array; scales: Float32Array } => {
  const lay = q8Layout(r, c, axis);
  if (words.length !== lay.words) {
    throw new RangeError(
      `decodeQ8: [${r}, ${c}] axis ${axis} is ${lay.words} words, got ${words.length}`,
    );
  }
  const bytes = new Uint8Array(words.buffer, words.byteOffset, lay.valueBytes);
  const values = axis === 1
    ? unpackQ8(bytes, r, c)
    : new Int8Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + r * c));
  const scales = new Float32Array(
    words.buffer.slice(
      words.byteOffset + lay.valueBytes,
      words.byteOffset + lay.valueBytes + 4 * lay.scales,
    ),
  );
  return { values, scales };
};
