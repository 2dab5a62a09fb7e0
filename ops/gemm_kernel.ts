/**
 * The two WebAssembly builds of the SIMD GEMM of `kernels/gemm.c` (with the
 * int8 matrix-vector product of `kernels/gemv.c`) that the
 * two-thread GEMM (`ops/gemm_pool.ts`) runs: one on tfjs-wasm's own heap,
 * for the calling thread, and one on a shared memory, for the worker. Each
 * is compiled once, ahead of use ({@linkcode compileGemm}) or on first use.
 *
 * @module
 */
import * as localGemm from "../kernels/gemm_wasm.ts";
import * as sharedGemm from "../kernels/gemm_shared_wasm.ts";
import { moduleBytes } from "./heap.ts";
// gemv.c is linked into both modules: its int8 product has one declaration.
import type { BlocksExports } from "./fusion/blocks.ts";

/** What `kernels/gemm.c` and `kernels/gemv.c` export; pointers are byte offsets. */
export interface GemmExports extends Pick<BlocksExports, "gemv_q8"> {
  gemm_work_floats(): number;
  /** Quantise x [K] for int8 products into `work` (`q8_work_bytes(k)` bytes); its scale. */
  q8_quantize(x: number, k: number, work: number, dot: number): number;
  gemm_chunk(desc: number, from: number, to: number): void;
  gemm_batched(
    batch: number,
    m: number,
    n: number,
    k: number,
    a: number,
    rsa: number,
    csa: number,
    sa: number,
    b: number,
    rsb: number,
    csb: number,
    sb: number,
    c: number,
    ldc: number,
    sc: number,
    accumulate: number,
    work: number,
  ): void;
}

let localModule: WebAssembly.Module | undefined;
let sharedModule: WebAssembly.Module | undefined;

/**
 * Compile both kernel modules ahead of use. Optional in Deno; needed on a
 * browser's main thread, which refuses to compile a module over 4 KB
 * synchronously, as `startGemmPool` (`ops/gemm_pool.ts`) otherwise would.
 *
 * @example
 * ```ts
 * import { compileGemm } from "./gemm_kernel.ts";
 * await compileGemm();
 * ```
 */
export const compileGemm = async (): Promise<void> => {
  localModule ??= await WebAssembly.compile(moduleBytes(localGemm) as BufferSource);
  sharedModule ??= await WebAssembly.compile(moduleBytes(sharedGemm) as BufferSource);
};

/** The calling thread's kernel module (on tfjs-wasm's heap), compiled on first use. */
export const compileLocal = (): WebAssembly.Module =>
  localModule ??= new WebAssembly.Module(moduleBytes(localGemm) as BufferSource);
/** The worker's kernel module (on a shared memory), compiled on first use. */
export const compileShared = (): WebAssembly.Module =>
  sharedModule ??= new WebAssembly.Module(moduleBytes(sharedGemm) as BufferSource);
