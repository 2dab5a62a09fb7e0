/**
 * A replacement for tfjs-wasm's `BatchMatMul` kernel.
 *
 * The stock kernel uses XNNPACK only for an untransposed product of two
 * batch-1 operands; every transposed product (all matmul gradients) and
 * every batched one (attention) runs a scalar loop at ~1 GFLOP/s, which made
 * 90 % of a training step (docs/substrate.md). Registered under the same kernel
 * name, the replacement serves every `tf.matMul`, forward and in autograd,
 * with no change to the model. Two tiers:
 *
 * - `native`: `cblas_sgemm` (`ops/blas.ts`) straight on the operands in the
 *   wasm heap, transposes as CBLAS flags, one call per batch entry (or one
 *   call for the whole batch when B is shared). Needs `--allow-ffi` and a
 *   CBLAS library.
 * - `portable`: pure wasm, for browsers: the SIMD GEMM of `kernels/gemm.c`
 *   on two threads (`ops/gemm_pool.ts`): the calling thread works in place on
 *   the wasm heap, a worker on copies of its share in a shared memory;
 *   transposes are absorbed by the kernel's packing, a shared B folds the
 *   batch into the rows of A, and a batch (attention) is split between the
 *   threads. Small products stay on the calling thread. Where threads are
 *   unavailable (a browser page that is not cross-origin isolated) it runs
 *   on one thread and {@linkcode matmulThreads} says why. XNNPACK (tfjs's
 *   own, one thread) takes the untransposed products of 5 to 15 rows with
 *   a shared B — batch-1 inference over a prefix —, where it is faster
 *   because it keeps each weight packed, and everything when the kernel cannot be
 *   instantiated on tfjs's heap: transposed operands are then transposed
 *   explicitly with the wasm `Transpose` kernel first.
 *
 * Shapes the replacement does not handle (non-float32, batch dims that
 * broadcast other than from 1, mismatched inner dims) go to the stock kernel,
 * which keeps its behaviour and its error messages.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { type Either, left, right } from "fp-ts/lib/Either.js";
import { type Blas, type BlasError, loadBlas } from "./blas.ts";
import { DEFAULT_MIN_PARALLEL_WEIGHTS, type GemmPool, type GemmPoolStats } from "./gemm_pool.ts";
import { gemmThreads } from "./gemm_threads.ts";
import { poolOf, type Portable, portableKernel } from "./matmul_portable.ts";
import { type Args, planOf, sizeOf, type WasmBackend, zeros } from "./matmul_wasm.ts";

/**
 * Which replacement kernel runs: native BLAS or pure wasm.
 *
 * @example
 * ```ts
 * import type { MatmulTier } from "./matmul.ts";
 * const tier: MatmulTier = "native"; // cblas_sgemm through Deno FFI
 * console.log(tier);
 * ```
 */
export type MatmulTier = "native" | "portable";

/** The replacement could not be installed. */
export interface MatmulError {
  /** Discriminant. */
  readonly _tag: "MatmulError";
  /** Why, readable as is. */
  readonly reason: string;
}

/** Options of {@linkcode installMatmul}. */
export interface MatmulOptions {
  /**
   * Threads: OpenBLAS threads for the native tier (default: the machine's
   * logical cores); for the portable tier 1, or 2 for the calling thread
   * plus one worker (default 2 on a machine with two cores or more; more is
   * taken as 2).
   */
  readonly threads?: number;
  /** A CBLAS library to open instead of the default list (native tier). */
  readonly library?: string;
  /**
   * Native tier: OpenBLAS's kernel set, a core name ("SkylakeX", "Haswell",
   * …) or "detect" for OpenBLAS's own choice for this CPU, in place of what
   * the environment's `OPENBLAS_CORETYPE` says (default: as the
   * environment says). See `loadBlas`.
   */
  readonly blasCore?: string;
  /**
   * Portable tier: products of fewer FLOPs run on the calling thread alone
   * (default `DEFAULT_MIN_PARALLEL_FLOPS` of `ops/gemm_pool.ts`).
   */
  readonly minParallelFlops?: number;
  /**
   * Portable tier: products with fewer FLOPs per element of A, B and C run
   * on the calling thread alone (default `DEFAULT_MIN_INTENSITY` of
   * `ops/gemm_chunks.ts`).
   */
  readonly minIntensity?: number;
  /**
   * Both tiers: int8 matrix-vector products (batch-1 decoding with an int8
   * model file) of weights with fewer entries run on the calling thread
   * alone (default `DEFAULT_MIN_PARALLEL_WEIGHTS` of `ops/gemm_pool.ts`);
   * `Infinity` keeps them all there.
   */
  readonly minParallelWeights?: number;
  /**
   * Portable tier: `"gemm"` (default) runs the kernel of `ops/gemm_pool.ts`;
   * `"xnnpack"` runs tfjs's XNNPACK on one thread after explicit transposes,
   * the fallback, selectable for comparisons.
   */
  readonly portableKernel?: "gemm" | "xnnpack";
}

// --- native tier ---------------------------------------------------------------

const nativeKernel = (blas: Blas, stock: tf.KernelFunc): tf.KernelFunc => (args) => {
  const plan = planOf(args as Args);
  if (plan === null) return stock(args);
  const backend = args.backend as unknown as WasmBackend;
  if (plan.k === 0 || sizeOf(plan.outShape) === 0) return zeros(backend, plan.outShape);
  const { m, n, k, batchA, batchB, transposeA, transposeB } = plan;
  const batch = Math.max(batchA, batchB);
  const out = backend.makeOutput(plan.outShape, "float32");
  // After makeOutput: an allocation may have grown (and replaced) the heap.
  const heap = backend.wasm.HEAPF32;
  const offset = (t: tf.TensorInfo) => backend.dataIdMap.get(t.dataId).memoryOffset >>> 2;
  const a0 = offset(plan.a), b0 = offset(plan.b), c0 = offset(out);
  if (batchB === 1 && !transposeA) {
    // A shared B: the batch of A is just more rows, one call for all of it.
    const rows = batchA * m;
    blas.sgemm(
      heap.subarray(a0, a0 + rows * k),
      heap.subarray(b0, b0 + k * n),
      heap.subarray(c0, c0 + rows * n),
      { m: rows, n, k, transposeA, transposeB },
    );
    return out;
  }
  const shape = { m, n, k, transposeA, transposeB };
  const strideA = batchA === 1 ? 0 : m * k, strideB = batchB === 1 ? 0 : k * n;
  for (let i = 0; i < batch; i++) {
    const ai = a0 + i * strideA, bi = b0 + i * strideB, ci = c0 + i * m * n;
    blas.sgemm(
      heap.subarray(ai, ai + m * k),
      heap.subarray(bi, bi + k * n),
      heap.subarray(ci, ci + m * n),
      shape,
    );
  }
  return out;
};

// --- installation ----------------------------------------------------------------

/**
 * The one installed replacement. It mirrors tfjs's kernel registry, which is
 * global too; `stock` is the kernel found there before the first install.
 */
let installed: {
  tier: MatmulTier;
  stock: tf.KernelConfig;
  blas: Blas | null;
  /**
   * The wasm GEMM pool: the portable tier's products, and on both tiers the
   * int8 matrix-vector products of fused kernels ({@linkcode heapPool}).
   */
  portable: Portable | null;
} | null = null;

/** Release what an installed replacement holds: its BLAS library, its worker and workspace. */
const release = (i: NonNullable<typeof installed>): void => {
  i.blas?.close();
  i.portable?.pool?.pool.dispose();
};

const KERNEL = "BatchMatMul";
const BACKEND = "wasm";

const fail = (reason: string): Either<MatmulError, never> => left({ _tag: "MatmulError", reason });

/**
 * Register the replacement `BatchMatMul` kernel of `tier` for the wasm
 * backend. Idempotent: installing the tier already installed does nothing
 * (its BLAS threads stay as they were); installing the other tier switches.
 * The native tier opens the BLAS library first and fails (Left, with the
 * loader's reason) without touching the registry when it cannot.
 *
 * The wasm backend's kernels must be registered, i.e. tfjs-backend-wasm
 * imported (`startBackend` does this).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { ensureBackend } from "./backend.ts";
 * import { installMatmul, uninstallMatmul } from "./matmul.ts";
 * await ensureBackend({ backend: "wasm", matmul: "portable" });
 * const r = installMatmul("native", { threads: 1 });
 * console.log(r._tag === "Right" ? r.right : r.left.reason);
 * const y = tf.matMul(tf.ones([4, 3]), tf.ones([4, 3]), true); // [3, 3], every entry 4
 * uninstallMatmul();
 * ```
 */
export const installMatmul = (
  tier: MatmulTier,
  opts: MatmulOptions = {},
): Either<MatmulError | BlasError, MatmulTier> => {
  if (tier !== "native" && tier !== "portable") {
    return fail(`unknown matmul tier '${String(tier)}'; expected "native" or "portable"`);
  }
  if (installed?.tier === tier) return right(tier);
  if (opts.minParallelWeights !== undefined && !(opts.minParallelWeights >= 0)) {
    return fail(`minParallelWeights must be ≥ 0, got ${opts.minParallelWeights}`);
  }
  const stock = installed?.stock ?? tf.getKernel(KERNEL, BACKEND);
  const transpose = tf.getKernel("Transpose", BACKEND);
  if (stock === undefined || transpose === undefined) {
    return fail("the wasm backend's kernels are not registered: start the wasm backend first");
  }
  let blas: Blas | null = null;
  let portable: Portable | null = null;
  if (tier === "native") {
    const loaded = loadBlas({ ...opts, core: opts.blasCore });
    if (loaded._tag === "Left") return loaded;
    blas = loaded.right;
    // BLAS has no int8 products: those run on the pool, with as many threads as BLAS.
    const poolOpts = {
      threads: blas.threads === 1 ? 1 : undefined,
      minParallelWeights: opts.minParallelWeights,
    };
    portable = { opts: poolOpts, probe: gemmThreads(poolOpts), pool: null, failed: null };
  } else {
    const { threads, minParallelFlops, minIntensity, minParallelWeights } = opts;
    if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) {
      return fail(`threads must be a positive integer, got ${threads}`);
    }
    if (minParallelFlops !== undefined && !(minParallelFlops >= 0)) {
      return fail(`minParallelFlops must be ≥ 0, got ${minParallelFlops}`);
    }
    if (minIntensity !== undefined && !(minIntensity >= 0)) {
      return fail(`minIntensity must be ≥ 0, got ${minIntensity}`);
    }
    const poolOpts = { threads, minParallelFlops, minIntensity, minParallelWeights };
    const kernel = opts.portableKernel ?? "gemm";
    if (kernel !== "gemm" && kernel !== "xnnpack") {
      return fail(`unknown portableKernel '${String(kernel)}'; expected "gemm" or "xnnpack"`);
    }
    portable = kernel === "gemm"
      ? { opts: poolOpts, probe: gemmThreads(poolOpts), pool: null, failed: null }
      : {
        opts: poolOpts,
        probe: { threads: 1, reason: 'portableKernel: "xnnpack" was asked for' },
        pool: null,
        failed: 'portableKernel: "xnnpack" was asked for',
      };
  }
  const kernelFunc = blas !== null
    ? nativeKernel(blas, stock.kernelFunc)
    : portableKernel(stock.kernelFunc, transpose.kernelFunc, portable!);
  tf.unregisterKernel(KERNEL, BACKEND);
  // The stock setup stays: it binds the C++ entry the fallbacks call, and
  // runs again if the backend is ever re-initialised.
  tf.registerKernel({ ...stock, kernelFunc });
  if (installed !== null) release(installed);
  installed = { tier, stock, blas, portable };
  return right(tier);
};

/**
 * Put the stock `BatchMatMul` kernel back (and close the BLAS library, or
 * stop the portable tier's worker and free its workspace).
 * Does nothing when no replacement is installed.
 *
 * @example
 * ```ts
 * import { ensureBackend } from "./backend.ts";
 * import { installedMatmul, uninstallMatmul } from "./matmul.ts";
 * await ensureBackend({ matmul: "portable" });
 * uninstallMatmul();
 * console.log(installedMatmul()); // "stock"
 * ```
 */
export const uninstallMatmul = (): void => {
  if (installed === null) return;
  tf.unregisterKernel(KERNEL, BACKEND);
  tf.registerKernel(installed.stock);
  release(installed);
  installed = null;
};

/**
 * The `BatchMatMul` kernel the wasm backend runs now.
 *
 * @example
 * ```ts
 * import { installedMatmul } from "./matmul.ts";
 * console.log(installedMatmul()); // "stock" until installMatmul runs
 * ```
 */
export const installedMatmul = (): MatmulTier | "stock" => installed?.tier ?? "stock";

/**
 * The threads the installed kernel runs large products on, and why only one
 * when the portable tier cannot use two (no `SharedArrayBuffer` in a page
 * that is not cross-origin isolated, no `Worker`, `threads: 1`, one core,
 * or a worker that failed). Native: the BLAS threads it was opened with
 * (null when the library has no thread setter). Stock: 1.
 *
 * @example
 * ```ts
 * import { ensureBackend } from "./backend.ts";
 * import { matmulThreads } from "./matmul.ts";
 * await ensureBackend({ matmul: "portable" });
 * const { threads, reason } = matmulThreads();
 * console.log(threads, reason ?? "");
 * ```
 */
export const matmulThreads = (): { readonly threads: number | null; readonly reason?: string } => {
  if (installed === null) return { threads: 1 };
  if (installed.blas !== null) return { threads: installed.blas.threads };
  const p = installed.portable!;
  if (p.failed !== null) return { threads: 1, reason: p.failed };
  const pool = p.pool?.pool;
  if (pool === undefined) return p.probe;
  return pool.reason === undefined ? { threads: pool.threads } : {
    threads: pool.threads,
    reason: pool.reason,
  };
};

/**
 * Stop the wasm GEMM pool's worker now (the portable tier's products, and
 * on either tier the int8 matrix-vector products); the next large product starts it
 * again. Without this an idle worker retires by itself after 3 s (so a
 * Deno script ends at most that much later than its last product);
 * tests and short scripts call it to end at once. Does nothing when no
 * worker runs.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { ensureBackend } from "./backend.ts";
 * import { stopMatmulWorkers } from "./matmul.ts";
 * await ensureBackend({ matmul: "portable" });
 * tf.tidy(() => tf.matMul(tf.ones([256, 256]), tf.ones([256, 256])));
 * stopMatmulWorkers();
 * ```
 */
export const stopMatmulWorkers = (): void => installed?.portable?.pool?.pool.stopWorker();

/**
 * Start the wasm GEMM pool's worker now (the portable tier's products, and
 * on either tier the int8 matrix-vector products of fused kernels), on the
 * wasm backend's heap, and resolve once it takes jobs: true, or false when
 * the pool runs on one thread, no tier is installed, or the native tier
 * shares no int8 products (`minParallelWeights`, none by default).
 * Products never wait for the worker — they run on one thread while it
 * starts — so this is for benchmarks and tests that want the two-thread
 * path from their first product.
 *
 * @example
 * ```ts
 * import { ensureBackend } from "./backend.ts";
 * import { startMatmulWorkers, stopMatmulWorkers } from "./matmul.ts";
 * await ensureBackend({ matmul: "portable" });
 * console.log(await startMatmulWorkers()); // true on a 2-core machine
 * stopMatmulWorkers();
 * ```
 */
export const startMatmulWorkers = async (): Promise<boolean> => {
  const backend = tf.findBackend(BACKEND);
  const pool = backend == null ? null : heapPool(backend);
  return pool === null ? false : await pool.ready();
};

/**
 * What the wasm GEMM pool has done since it started (products on one
 * thread, split with the worker, run alone while the worker was starting,
 * workers started; int8 matrix-vector products shared, and the bytes of
 * the worker's copies of their weights), or null before its first use.
 *
 * @example
 * ```ts
 * import { matmulStats } from "./matmul.ts";
 * console.log(matmulStats()); // null until the portable tier runs a product
 * ```
 */
export const matmulStats = (): GemmPoolStats | null =>
  installed?.portable?.pool?.pool.stats() ?? null;

// --- products for kernels of our own ----------------------------------------------

/**
 * One row-major product on the wasm heap, for the kernels of fused regions
 * (ops/fusion/): `C = op(A)·op(B)`, or `C += op(A)·op(B)` with
 * `accumulate`; A, B, C are byte offsets of tight row-major matrices
 * (A [M, K], or [K, M] when `transposeA`; B [K, N], or [N, K] when
 * `transposeB`).
 */
export interface HeapProduct {
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly a: number;
  readonly transposeA: boolean;
  readonly b: number;
  readonly transposeB: boolean;
  readonly c: number;
  readonly accumulate: boolean;
}

/**
 * Compute `p` on `backend`'s heap with the installed tier: native BLAS, or
 * the portable tier's two-thread GEMM. False (nothing done) when no
 * replacement is installed or the portable pool cannot run on this heap;
 * the caller then falls back to its own path.
 */
export const heapGemm = (backend: unknown, p: HeapProduct): boolean => {
  if (installed === null) return false;
  const b = backend as WasmBackend;
  if (installed.blas !== null) {
    const heap = b.wasm.HEAPF32;
    const a0 = p.a >>> 2, b0 = p.b >>> 2, c0 = p.c >>> 2;
    installed.blas.sgemm(
      heap.subarray(a0, a0 + p.m * p.k),
      heap.subarray(b0, b0 + p.k * p.n),
      heap.subarray(c0, c0 + p.m * p.n),
      {
        m: p.m,
        n: p.n,
        k: p.k,
        transposeA: p.transposeA,
        transposeB: p.transposeB,
        beta: p.accumulate ? 1 : 0,
      },
    );
    return true;
  }
  const pool = poolOf(installed.portable!, b);
  if (pool === null) return false;
  pool.gemm({
    batch: 1,
    m: p.m,
    n: p.n,
    k: p.k,
    a: p.a,
    transposeA: p.transposeA,
    batchA: 1,
    b: p.b,
    transposeB: p.transposeB,
    batchB: 1,
    c: p.c,
    accumulate: p.accumulate,
  });
  return true;
};

/**
 * The wasm GEMM pool on `backend`'s heap, made on first use, for the int8
 * matrix-vector products of fused kernels (`GemmPool.gemvQ8`): the portable
 * tier's pool, or on the native tier one of its own. Null when no
 * replacement is installed or no pool can run here.
 */
export const heapPool = (backend: unknown): GemmPool | null => {
  const p = installed?.portable;
  if (p == null) return null;
  // The native tier's pool serves shared int8 products only: none unless asked for.
  const shares = (p.opts.minParallelWeights ?? DEFAULT_MIN_PARALLEL_WEIGHTS) < Infinity;
  if (installed!.blas !== null && !shares) return null;
  return poolOf(p, backend as WasmBackend);
};

/** The native tier's BLAS, or null on the portable tier (matrix-vector products then run in wasm). */
export const installedBlas = (): Blas | null => installed?.blas ?? null;
