/**
 * Which instruction sequence the relaxed-SIMD build's int8 products run
 * (kernels/gemv.c). Sixteen 8-bit multiply-adds into four int32 lanes are
 * either the 16-bit relaxed dot and a widening pairwise add (`dot16`, three
 * x86 instructions on any CPU with SSSE3), or the fused
 * `i32x4.relaxed_dot_i8x16_i7x16_add_s` (`dotadd`), which V8 lowers to one
 * `vpdpbusd` where the CPU has AVX-VNNI and to five instructions where it
 * has not. Wasm cannot ask the CPU which it has, so the backend's start
 * times both on one product (a few hundred microseconds) and keeps the
 * faster; both give the same integer sums, so the choice moves no result.
 * The SIMD128 build has one sequence and ignores it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { int8Dot, int8DotFlag } from "./q8_dot.ts";
 * assert.ok(["dot16", "dotadd"].includes(int8Dot()));
 * assert.equal(int8DotFlag(), int8Dot() === "dotadd" ? 1 : 0);
 * ```
 *
 * @module
 */

import type { BlocksExports } from "./fusion/blocks.ts";

/** The relaxed build's int8 dot sequences: 16-bit dot and widening, or the fused dot-add. */
export type Int8Dot = "dot16" | "dotadd";

/** How the dot sequence is picked: timed at start-up (`auto`), or named. */
export type Int8DotChoice = "auto" | Int8Dot;

let chosen: Int8Dot = "dot16";

/** The dot sequence int8 products run (`dot16` until a backend start chose). */
export const int8Dot = (): Int8Dot => chosen;

/** {@linkcode int8Dot} as the kernels' `dot` argument (0: `dot16`, 1: `dotadd`). */
export const int8DotFlag = (): 0 | 1 => (chosen === "dotadd" ? 1 : 0);

/** Fix the dot sequence (the backend start does; tests and benches compare the two). */
export const setInt8Dot = (d: Int8Dot): void => {
  chosen = d;
};

/** The kernel exports a timing needs: `gemv_q8` of kernels/gemv.c. */
export type Int8DotKernel = Pick<BlocksExports, "gemv_q8">;

/** The probe's product [K, N], and where its buffers lie from `base` (bytes). */
const PROBE_K = 256, PROBE_N = 1024;
const probeLayout = (base: number) => {
  const w = base, sc = w + PROBE_K * PROBE_N, x = sc + 8 * PROBE_N, y = x + 4 * PROBE_K;
  const work = y + 4 * PROBE_N;
  // The quantised x: a 16-byte header and 16 bytes per quad of rows (q8_work_bytes).
  return { w, sc, x, y, work, end: work + 16 + 4 * PROBE_K - base };
};

/** Bytes of heap {@linkcode timeInt8Dots} uses, from a 16-byte aligned base. */
export const INT8_DOT_PROBE_BYTES = ((): number => probeLayout(0).end)();

/** What {@linkcode timeInt8Dots} measured: the best µs per call of each sequence. */
export interface Int8DotTiming {
  readonly dot16: number;
  readonly dotadd: number;
  /** The faster, `dot16` unless `dotadd` wins by more than 5 %. */
  readonly faster: Int8Dot;
}

/**
 * The step of `performance.now()` in ms: the largest of a few observed
 * increments (a page that is not cross-origin isolated sees ~0.1 ms, with
 * jitter; Deno microseconds or less).
 */
const clockStep = (): number => {
  let step = 0;
  for (let k = 0; k < 5; k++) {
    const a = performance.now();
    let b = a;
    while (b === a) b = performance.now();
    step = Math.max(step, b - a);
  }
  return step;
};

/**
 * Time both dot sequences on a [256, 1024] int8 product (the size of a
 * decode block's FFN, in L2) laid out at `base` in `memory`
 * ({@linkcode INT8_DOT_PROBE_BYTES} bytes, overwritten): rounds that
 * alternate the two, the best sample of each, a sample long enough for
 * the clock to resolve 2 % (~3 ms in all in Deno, ~25 ms in a page whose
 * clock is coarse). Ties go to `dot16`, which is never slow.
 */
export const timeInt8Dots = (
  k: Int8DotKernel,
  memory: WebAssembly.Memory,
  base: number,
  rounds?: number,
): Int8DotTiming => {
  const K = PROBE_K, N = PROBE_N;
  const { w, sc, x, y, work } = probeLayout(base);
  const bytes = new Int8Array(memory.buffer, w, K * N);
  for (let i = 0; i < bytes.length; i++) bytes[i] = ((i * 7919) % 255) - 127;
  const f = new Float32Array(memory.buffer);
  f.fill(0.01, sc / 4, sc / 4 + 2 * N);
  for (let i = 0; i < K; i++) f[x / 4 + i] = Math.sin(i);
  const run = (dot: number, calls: number) => {
    for (let i = 0; i < calls; i++) k.gemv_q8(x, w, sc, K, N, N, y, 0, work, dot);
  };
  // Warm both up (V8 compiles a wasm function fast first and optimises it once it is hot), and
  // size a sample to 50 steps of the clock.
  run(0, 64);
  run(1, 64);
  // A call's time from enough calls that the clock moved four steps (at most 1,024 calls).
  const step = clockStep(), t0 = performance.now();
  let timed = 0;
  do {
    run(0, 64);
    timed += 64;
  } while (performance.now() - t0 < 4 * step && timed < 1024);
  const perCall = Math.max((performance.now() - t0) / timed, 1e-4);
  const calls = Math.min(4096, Math.max(32, Math.ceil((50 * step) / perCall)));
  const n = rounds ?? (step > 0.02 ? 6 : 12);
  const best = [Infinity, Infinity];
  for (let r = 0; r < n; r++) {
    for (const dot of [0, 1]) {
      const t = performance.now();
      run(dot, calls);
      best[dot] = Math.min(best[dot], (1000 * (performance.now() - t)) / calls);
    }
  }
  const [dot16, dotadd] = best;
  return { dot16, dotadd, faster: dotadd < 0.95 * dot16 ? "dotadd" : "dot16" };
};
