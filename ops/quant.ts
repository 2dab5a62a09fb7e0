/**
 * Int8 weights at run time: the packed layout the kernels read.
 *
 * A weight matrix W [K, N] used as `x · W` is stored int8 with one float32
 * scale per output column (W ≈ q · scale[j]). The kernels (kernels/gemv.c)
 * read q in blocks of 16 columns, each block holding the K rows in quads —
 * 16 columns × 4 rows = 64 bytes per quad, as four 16-byte vectors of 4
 * columns × 4 rows (byte 4c + t of vector v: column 4v + c, row 4q + t) — so
 * that one relaxed-SIMD 8-bit dot product multiplies a vector by four
 * activations, or two 16-bit ones (SIMD128) by its sign-extended halves.
 * Columns are padded with zeros to a multiple of 16 and rows to a multiple
 * of 4; N must be a multiple of 4. On tfjs (which has no int8 dtype) the
 * bytes live in an int32 tensor, followed by the scales and the column sums
 * Σᵢ qᵢⱼ (which the relaxed kernel's zero point needs), N₁₆ floats each.
 *
 * @module
 */

/** N rounded up to the packing's block of 16 columns. */
export const paddedColumns = (n: number): number => Math.ceil(n / 16) * 16;

/** K rounded up to the packing's quads of rows. */
const paddedRows = (k: number): number => Math.ceil(k / 4) * 4;

/** Whether a [K, N] matrix can be packed: N a multiple of 4. */
export const packable = (k: number, n: number): boolean =>
  Number.isInteger(k) && k > 0 && n > 0 && n % 4 === 0;

/** Byte of q[i, j] in the packed layout of K rows. */
const packedAt = (k: number, i: number, j: number): number =>
  (j & ~15) * paddedRows(k) + (i >> 2) * 64 + (j & 15) * 4 + (i & 3);

/**
 * Pack row-major int8 values q [K, N] into the kernels' layout: K₄ · N₁₆
 * bytes (see the module doc).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { packQ8, unpackQ8 } from "./quant.ts";
 * const q = Int8Array.from({ length: 6 * 20 }, (_, i) => (i % 255) - 127);
 * assert.deepEqual(unpackQ8(packQ8(q, 6, 20), 6, 20), q);
 * ```
 */
export const packQ8 = (q: Int8Array, k: number, n: number): Uint8Array => {
  if (!packable(k, n)) throw new RangeError(`packQ8: [${k}, ${n}] needs K > 0 and N % 4 = 0`);
  const out = new Int8Array(paddedRows(k) * paddedColumns(n));
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < n; j++) out[packedAt(k, i, j)] = q[i * n + j];
  }
  return new Uint8Array(out.buffer);
};

/** The inverse of {@linkcode packQ8}: row-major int8 [K, N]. */
export const unpackQ8 = (packed: Uint8Array, k: number, n: number): Int8Array => {
  const src = new Int8Array(packed.buffer, packed.byteOffset, packed.byteLength);
  const out = new Int8Array(k * n);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < n; j++) out[i * n + j] = src[packedAt(k, i, j)];
  }
  return out;
};

/**
 * How a q8 weight lies in one int32 tfjs tensor: its int8 values in the
 * layout its axis wants — packed for the products ({@linkcode packQ8}) when
 * scaled per column (axis 1, a matrix used as x · W), row-major when scaled
 * per row (axis 0, a lookup table) — padded to a whole word, then its
 * float32 scales — for axis 1 C₁₆ of them (zero past C), then C₁₆ column
 * sums of the values.
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
  if (axis === 1) {
    const np = paddedColumns(c);
    const valueBytes = paddedRows(r) * np;
    return { valueBytes, scales: c, words: valueBytes / 4 + 2 * np };
  }
  const valueBytes = Math.ceil((r * c) / 4) * 4;
  return { valueBytes, scales: r, words: valueBytes / 4 + r };
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
  if (axis === 1) {
    // The column sums, after the padded scales.
    const np = paddedColumns(c), sums = new Float32Array(words.buffer, lay.valueBytes + 4 * np, c);
    for (let i = 0; i < r; i++) {
      for (let j = 0; j < c; j++) sums[j] += q.values[i * c + j];
    }
  }
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
