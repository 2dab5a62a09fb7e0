/**
 * A small seedable PRNG (xoshiro128**, seeded by splitmix32) whose whole
 * state is four uint32 words, so it can be written into a checkpoint and a
 * resumed run draws exactly the numbers the uninterrupted run would have.
 *
 * Not cryptographic. One generator per purpose (dropout seeds, data order):
 * sharing one between purposes couples them, so changing one changes both.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createRng, restoreRng } from "./rng.ts";
 * const a = createRng(42);
 * a.next();
 * const saved = a.state(); // e.g. stored in a checkpoint
 * const b = restoreRng(saved);
 * assert(a.next() === b.next());
 * ```
 *
 * @module
 */

/**
 * The serialisable state of an {@linkcode Rng}: four uint32 words, not all zero.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createRng, type RngState } from "./rng.ts";
 * const saved: RngState = createRng(1).state();
 * assert(JSON.stringify(saved).startsWith("["));
 * ```
 */
export type RngState = readonly [number, number, number, number];

/**
 * A seedable generator. `next`, `float` and `int` advance the state.
 *
 * @example
 * ```ts
 * import { createRng, type Rng } from "./rng.ts";
 * const rng: Rng = createRng(3);
 * const keep = rng.float() >= 0.1; // a dropout decision
 * ```
 */
export interface Rng {
  /** The next uint32, uniform on [0, 2^32). */
  next(): number;
  /** A float uniform on [0, 1), with 32 random bits. */
  float(): number;
  /** An integer uniform on [0, bound), without modulo bias; `bound` an integer in [1, 2^32]. */
  int(bound: number): number;
  /** A copy of the current state; {@linkcode restoreRng} of it continues the same sequence. */
  state(): RngState;
}

const TWO_32 = 4294967296;

/** splitmix32 finaliser: spreads any uint32 over the whole state space. */
function mix32(x: number): number {
  let z = (x + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
  z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
  return (z ^ (z >>> 15)) >>> 0;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

function isUint32(x: unknown): x is number {
  return typeof x === "number" && Number.isInteger(x) && x >= 0 && x < TWO_32;
}

/**
 * Checks that a value (e.g. read from a checkpoint header) is a valid {@linkcode RngState}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isRngState } from "./rng.ts";
 * assert(isRngState([1, 2, 3, 4]));
 * assert(!isRngState([0, 0, 0, 0])); // the all-zero state is a fixed point
 * ```
 */
export function isRngState(x: unknown): x is RngState {
  return Array.isArray(x) && x.length === 4 && x.every(isUint32) && x.some((w) => w !== 0);
}

/**
 * A generator continuing from a saved state. Throws a RangeError on an invalid
 * state (check data from files with {@linkcode isRngState} first).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { restoreRng } from "./rng.ts";
 * const r = restoreRng([1, 2, 3, 4]);
 * assert(r.next() === 11520); // xoshiro128** reference output
 * ```
 */
export function restoreRng(state: RngState): Rng {
  if (!isRngState(state)) {
    throw new RangeError(
      `restoreRng: state must be four uint32 words, not all zero; got ${JSON.stringify(state)}`,
    );
  }
  let [s0, s1, s2, s3] = state;
  const next = (): number => {
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = rotl(s3, 11);
    // Keep the words as uint32 so state() is directly JSON-serialisable.
    s0 >>>= 0;
    s1 >>>= 0;
    s2 >>>= 0;
    s3 >>>= 0;
    return result;
  };
  return {
    next,
    float: () => next() / TWO_32,
    int: (bound: number): number => {
      if (!Number.isInteger(bound) || bound < 1 || bound > TWO_32) {
        throw new RangeError(`Rng.int: bound must be an integer in [1, 2^32], got ${bound}`);
      }
      // Rejection sampling: accept only the largest multiple of bound below 2^32.
      const limit = TWO_32 - (TWO_32 % bound);
      for (;;) {
        const r = next();
        if (r < limit) return r % bound;
      }
    },
    state: () => [s0, s1, s2, s3],
  };
}

/**
 * A generator seeded from an integer. Equal seeds give equal sequences; any
 * safe integer is accepted (the high and low 32 bits both count).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createRng } from "./rng.ts";
 * const r = createRng(7);
 * const u = r.float();
 * assert(u >= 0 && u < 1);
 * assert(createRng(7).next() === createRng(7).next());
 * ```
 */
export function createRng(seed: number): Rng {
  if (!Number.isSafeInteger(seed)) {
    throw new RangeError(`createRng: seed must be a safe integer, got ${seed}`);
  }
  const lo = seed >>> 0;
  const hi = Math.floor(seed / TWO_32) >>> 0;
  // splitmix32 stream over a starting point that depends on both halves.
  let x = (lo ^ mix32(hi)) >>> 0;
  const words: number[] = [];
  for (let i = 0; i < 4; i++) {
    x = (x + 0x9e3779b9) >>> 0;
    words.push(mix32(x));
  }
  // mix32 is a bijection and the four inputs differ, so at most one word is zero.
  return restoreRng([words[0], words[1], words[2], words[3]]);
}

/**
 * Shuffles `xs` in place (Fisher–Yates), drawing from `rng`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createRng, shuffle } from "./rng.ts";
 * const xs = [1, 2, 3, 4, 5];
 * shuffle(xs, createRng(1));
 * assert.deepEqual([...xs].sort(), [1, 2, 3, 4, 5]);
 * ```
 */
export function shuffle<A>(xs: A[], rng: Rng): void {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
}
