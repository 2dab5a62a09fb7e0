/**
 * Products for the kernels of fused regions, on tfjs-backend-wasm's heap:
 * matrix products through the installed matmul tier, and matrix-vector
 * products (a row or two times a weight matrix, as batch-1 decoding has)
 * through native BLAS's `sgemv` or our wasm kernels — float32 row-major
 * weights in place, or int8 weights in the packed layout of ops/quant.ts.
 *
 * @module
 */
import { heapGemm, heapPool, type HeapProduct, installedBlas } from "../matmul.ts";
import { SCRATCH, scratch, type WasmBackend } from "../heap.ts";
import { blocks } from "./blocks.ts";
import type { Q8Weight } from "../gemm_pool.ts";
import { int8DotFlag } from "../q8_dot.ts";

/**
 * `C (+)= op(A)·op(B)` on the heap: the installed tier's GEMM, else our
 * module's single-thread one.
 */
export const gemmOnHeap = (backend: WasmBackend, p: HeapProduct): void => {
  if (heapGemm(backend, p)) return;
  const k = blocks.on(backend);
  const work = scratch(backend, 4 * k.gemm_work_floats(), SCRATCH.gemm);
  k.gemm(
    p.m,
    p.n,
    p.k,
    p.a,
    p.transposeA ? 1 : p.k,
    p.transposeA ? p.m : 1,
    p.b,
    p.transposeB ? 1 : p.n,
    p.transposeB ? p.k : 1,
    p.c,
    p.n,
    p.accumulate ? 1 : 0,
    work,
  );
};

/** A weight matrix W [K, N] on the heap: float32 row-major, or packed int8 with column scales. */
export type HeapWeight =
  | { readonly kind: "f32"; readonly at: number; readonly k: number; readonly n: number }
  // Packed int8 (ops/quant.ts), keyed by its tensor's `dataId` for the pool's copy of it.
  | { readonly kind: "q8" } & Q8Weight;

/**
 * `y (+)= x·W` for `rows` rows of x [rows, K] into y [rows, N] (byte
 * offsets): one matrix-vector product per row — BLAS `sgemv` on the native
 * tier, our wasm kernels otherwise and for int8 weights; large int8 ones on
 * both threads of the wasm GEMM pool (`GemmPool.gemvQ8`).
 */
export const matvec = (
  backend: WasmBackend,
  w: HeapWeight,
  p: {
    readonly x: number;
    readonly y: number;
    readonly rows: number;
    readonly accumulate: boolean;
  },
): void => {
  const k = blocks.on(backend);
  if (w.kind === "q8") {
    const pool = heapPool(backend);
    const work = scratch(backend, k.q8_work_bytes(w.k), SCRATCH.matvec);
    const dot = int8DotFlag();
    for (let r = 0; r < p.rows; r++) {
      const x = p.x + 4 * r * w.k, y = p.y + 4 * r * w.n;
      if (pool !== null && pool.gemvQ8(w, x, y, p.accumulate)) continue;
      k.gemv_q8(
        x,
        w.at,
        w.scales,
        w.k,
        w.n,
        w.np,
        y,
        p.accumulate ? 1 : 0,
        work,
        dot,
      );
    }
    return;
  }
  const blas = installedBlas();
  if (blas !== null) {
    const heap = backend.wasm.HEAPF32;
    const wv = heap.subarray(w.at >>> 2, (w.at >>> 2) + w.k * w.n);
    for (let r = 0; r < p.rows; r++) {
      const x0 = (p.x >>> 2) + r * w.k, y0 = (p.y >>> 2) + r * w.n;
      blas.sgemv(heap.subarray(x0, x0 + w.k), wv, heap.subarray(y0, y0 + w.n), {
        k: w.k,
        n: w.n,
        transposeW: false,
        accumulate: p.accumulate,
      });
    }
    return;
  }
  for (let r = 0; r < p.rows; r++) {
    k.gemv_f32(p.x + 4 * r * w.k, w.at, w.k, w.n, p.y + 4 * r * w.n, p.accumulate ? 1 : 0);
  }
};
