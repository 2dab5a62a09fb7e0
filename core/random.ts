/**
 * A small seeded generator for parameter initialisation (mulberry32), with
 * normal draws by Box–Muller. Deterministic for a given seed on any machine.
 *
 * @module
 */

/** A seeded source of uniform and normal draws. */
export interface Random {
  /** Uniform in [0, 1). */
  uniform(): number;
  /** Standard normal. */
  normal(): number;
  /** Uniform uint32. */
  uint32(): number;
}

/**
 * A generator seeded by `seed` (any integer).
 *
 * @example
 * ```ts
 * import { seeded } from "./random.ts";
 * const r = seeded(42);
 * const x = r.normal();
 * ```
 */
export const seeded = (seed: number): Random => {
  let s = seed >>> 0;
  const uint32 = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const uniform = () => uint32() / 4294967296;
  return {
    uint32,
    uniform,
    normal: () => {
      const u = 1 - uniform(); // (0, 1]: log stays finite
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform());
    },
  };
};

/** Mix two integers into a new seed (for per-step, per-node seeds). */
export const mixSeed = (a: number, b: number): number => {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x7f4a7c15, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x27d4eb2d);
  return (h ^ (h >>> 15)) >>> 0;
};
