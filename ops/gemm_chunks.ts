/**
 * How the two-thread GEMM (`ops/gemm_pool.ts`) shares a product: the
 * product on the heap ({@linkcode GemmProduct}), the cut into chunks the
 * two threads claim ({@linkcode chunksOf}), the strides the kernel reads an
 * operand with, and the copies of operand blocks between the heap and the
 * worker's shared memory ({@linkcode moveBlock}).
 *
 * @module
 */

/**
 * One (batched) product `C[t] = op(A[t])·op(B[t])` (or `+=` with
 * `accumulate`), all operands row-major float32 on the heap. `op(A)` is
 * M×K: A is stored [M, K], or [K, M] when `transposeA`; `op(B)` is K×N: B is
 * stored [K, N], or [N, K] when `transposeB`. C is [M, N].
 *
 * @example
 * ```ts
 * import type { GemmProduct } from "./gemm_chunks.ts";
 * // 80 attention products Q·Kᵀ: [80, 35, 64] · [80, 36, 64]ᵀ → [80, 35, 36].
 * const p: GemmProduct = {
 *   batch: 80, m: 35, n: 36, k: 64,
 *   a: 0, transposeA: false, batchA: 80,
 *   b: 80 * 35 * 64 * 4, transposeB: true, batchB: 80,
 *   c: 80 * (35 + 36) * 64 * 4,
 * };
 * console.log(2 * p.batch * p.m * p.n * p.k, "FLOPs");
 * ```
 */
export interface GemmProduct {
  /** Number of products (≥ 1). */
  readonly batch: number;
  /** Rows of op(A) and C. */
  readonly m: number;
  /** Columns of op(B) and C. */
  readonly n: number;
  /** Columns of op(A), rows of op(B). */
  readonly k: number;
  /** Byte offset of A. */
  readonly a: number;
  /** A is stored [K, M]. */
  readonly transposeA: boolean;
  /** Entries of A: `batch`, or 1 to share one A across the batch. */
  readonly batchA: number;
  /** Byte offset of B. */
  readonly b: number;
  /** B is stored [N, K]. */
  readonly transposeB: boolean;
  /** Entries of B: `batch`, or 1 to share one B across the batch. */
  readonly batchB: number;
  /** Byte offset of C, `batch` entries of [M, N]. */
  readonly c: number;
  /** Add to C instead of overwriting it (default false). */
  readonly accumulate?: boolean;
}

/**
 * Below this many FLOPs per element of A, B and C a product is not shared:
 * a product of a few rows reads B once, and copying half of B for the
 * worker costs as much as the half of the work it would take over
 * (`bench/gemm.ts`: [1, 256]·[256, 10,000] ran at 0.7× on two
 * threads; intensity 2). The reference model's products have 28 (attention)
 * to 370 (the output layer).
 */
export const DEFAULT_MIN_INTENSITY = 16;

const MR = 5, NR = 8; // the kernel's register tile (kernels/gemm.c)

/**
 * How a product is cut into chunks that the two threads claim: chunk i
 * holds batch entries, rows or columns `bounds[i]` … `bounds[i + 1] − 1`.
 * The calling thread starts at the front and the worker (which holds copies
 * of chunks `first` onwards) at the back, and chunks shrink towards the
 * middle (halves of what is left: ½, ¼, ⅛ … of each half), so that whoever
 * finishes first takes small chunks from the other's side and neither
 * waits long for the other's last one — a worker slowed by a busy machine
 * costs at most a small chunk.
 */
export interface Chunks {
  /** What a chunk holds: batch entries, rows of C (and A), or columns of C (and B). */
  readonly kind: "batch" | "rows" | "cols";
  /** Chunk boundaries, from 0 to the total, increasing (2 to 8 chunks). */
  readonly bounds: readonly number[];
  /** The first chunk of the worker's half. */
  readonly first: number;
}

/**
 * Sizes that cover `total` units, largest first: halves of what is left,
 * multiples of `grain`, at most 4 pieces, none below `min` (but the last).
 */
const halving = (total: number, grain: number, min: number): number[] => {
  const sizes: number[] = [];
  let left = total;
  while (sizes.length < 3 && left / 2 >= min) {
    const s = Math.ceil(left / 2 / grain) * grain;
    if (s >= left) break;
    sizes.push(s);
    left -= s;
  }
  if (left > 0) sizes.push(left);
  return sizes;
};

/** Front half largest-first, back half smallest-first; null when it would be one chunk. */
const chunked = (kind: Chunks["kind"], total: number, grain: number, min: number) => {
  const front = Math.floor(total / 2 / grain) * grain;
  if (front < grain || total - front < grain) return null;
  const sizes = [...halving(front, grain, min), ...halving(total - front, grain, min).reverse()];
  const bounds = [0];
  for (const size of sizes) bounds.push(bounds[bounds.length - 1] + size);
  return { kind, bounds, first: halving(front, grain, min).length };
};

/**
 * How to cut `p` into chunks, or null when it is not worth sharing: one
 * register tile, or fewer than `minIntensity` FLOPs per element of A, B
 * and C (see {@linkcode DEFAULT_MIN_INTENSITY}). A batch of ≥ 4 is cut by
 * entries (attention). Otherwise along whichever of M and N has more
 * register tiles, at tile boundaries: rows (each chunk packs B anew, so
 * none below 32 rows) or columns (none below 64).
 */
export const chunksOf = (
  p: GemmProduct,
  minIntensity: number = DEFAULT_MIN_INTENSITY,
): Chunks | null => {
  const { m, n, k } = p;
  if (2 * m * n * k < minIntensity * (m * k + k * n + m * n)) return null;
  if (p.batch >= 4) return chunked("batch", p.batch, 1, 1);
  const tilesM = Math.ceil(m / MR), tilesN = Math.ceil(n / NR);
  return tilesM >= tilesN ? chunked("rows", m, MR, 32) : chunked("cols", n, NR, 64);
};

/** Strides (in floats) of a stored row-major operand read as op(X) of `rows`×`cols`. */
export const strides = (transposed: boolean, rows: number, cols: number): [number, number] =>
  transposed ? [1, rows] : [cols, 1];

/**
 * Where a block of a batch of row-major matrices sits in a float array:
 * entries of `size` floats from index `at`, rows of `ld` floats, the block
 * from row `r0` and column `c0`.
 */
export interface Place {
  readonly at: number;
  readonly size: number;
  readonly ld: number;
  readonly r0: number;
  readonly c0: number;
}

/**
 * Copy a `rows`×`cols` block of each of `entries` matrices from `src` at
 * `from` to `dst` at `to`: whole matrices in one copy, whole rows entry by
 * entry, else row by row.
 */
export const moveBlock = (
  src: Float32Array,
  from: Place,
  dst: Float32Array,
  to: Place,
  shape: { readonly entries: number; readonly rows: number; readonly cols: number },
): void => {
  const { entries, rows, cols } = shape;
  const move = (s: number, d: number, n: number) => dst.set(src.subarray(s, s + n), d);
  const origin = (p: Place) => p.at + p.r0 * p.ld + p.c0;
  const whole = (p: Place) => p.r0 === 0 && p.c0 === 0 && rows * cols === p.size;
  if (whole(from) && whole(to)) return move(from.at, to.at, entries * rows * cols);
  for (let t = 0; t < entries; t++) {
    const s = origin(from) + t * from.size, d = origin(to) + t * to.size;
    if (cols === from.ld && cols === to.ld) move(s, d, rows * cols);
    else for (let r = 0; r < rows; r++) move(s + r * from.ld, d + r * to.ld, cols);
  }
};
