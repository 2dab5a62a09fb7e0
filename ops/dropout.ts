/**
 * Dropout masks: the one generator every lowering of dropout draws from —
 * the op-by-op `dropout` (ops/lower.ts) and the fused kernels that apply
 * it inside their regions — so a fused region drops exactly the entries
 * its body would, for the same seed.
 *
 * @module
 */

/**
 * xorshift32's start state for `seed`, through an integer hash so that
 * nearby seeds diverge.
 */
const startState = (seed: number): number => {
  let h = Math.imul((seed | 0) ^ 0x5bd1e995, 0x27d4eb2d);
  h = Math.imul(h ^ (h >>> 15), 0x165667b1);
  return (h ^ (h >>> 13)) >>> 0 || 0x9e3779b9;
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
  const keep = 1 - rate, scale = 1 / keep;
  // An entry is kept when its uniform — xorshift32's next state / 2³², rounded to float32 — is
  // below `keep`. That rounding never decreases, so the test is `state < cut` for the least
  // state whose uniform is not below `keep`: found once, it leaves an integer loop.
  let lo = 0, hi = 4294967296;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (Math.fround(mid / 4294967296) < keep) lo = mid + 1;
    else hi = mid;
  }
  const cut = lo;
  const mask = new Float32Array(n);
  let st = startState(seed);
  for (let i = 0; i < n; i++) {
    st ^= st << 13;
    st ^= st >>> 17;
    st ^= st << 5;
    if ((st >>> 0) < cut) mask[i] = scale;
  }
  return mask;
};
