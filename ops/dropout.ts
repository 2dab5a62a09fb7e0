/**
 * Dropout masks: the one generator every lowering of dropout draws from —
 * the op-by-op `dropout` (ops/lower.ts) and the fused kernels that apply
 * it inside their regions — so a fused region drops exactly the entries
 * its body would, for the same seed.
 *
 * @module
 */

/** Uniforms in [0, 1) from xorshift32, seeded through an integer hash so nearby seeds diverge. */
const uniforms = (seed: number, n: number): Float32Array => {
  let h = Math.imul((seed | 0) ^ 0x5bd1e995, 0x27d4eb2d);
  h = Math.imul(h ^ (h >>> 15), 0x165667b1);
  let st = (h ^ (h >>> 13)) >>> 0 || 0x9e3779b9;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    st ^= st << 13;
    st ^= st >>> 17;
    st ^= st << 5;
    out[i] = (st >>> 0) / 4294967296;
  }
  return out;
};

/**
 * The inverted-dropout mask of `n` entries for `seed`: 1 / (1 − rate)
 * where an entry is kept (probability 1 − rate), 0 where it is dropped.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dropoutMask } from "./dropout.ts";
 * const m = dropoutMask(7, 0.5, 1000);
 * assert.ok(m.every((x) => x === 0 || x === 2));
 * assert.deepEqual(m, dropoutMask(7, 0.5, 1000)); // the same seed, the same mask
 * ```
 */
export const dropoutMask = (seed: number, rate: number, n: number): Float32Array => {
  if (!(rate >= 0 && rate < 1)) throw new RangeError(`dropout rate ${rate} is outside [0, 1)`);
  const keep = 1 - rate;
  const mask = uniforms(seed, n);
  for (let i = 0; i < mask.length; i++) mask[i] = mask[i] < keep ? 1 / keep : 0;
  return mask;
};
