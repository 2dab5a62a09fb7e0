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
import { describeError } from "../spec/errors.ts";
import * as tf from "@tensorflow/tfjs-core";
import { type Either, left, right } from "fp-ts/lib/Either.js";
import { type Blas, type BlasError, loadBlas } from "./blas.ts";
import {
  type GemmPool,
  type GemmPoolStats,
  type GemmThreads,
  gemmThreads,
  startGemmPool,
} from "./gemm_pool.ts";

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
   * Portable tier: products of fewer FLOPs run on the calling thread alone
   * (default `DEFAULT_MIN_PARALLEL_FLOPS` of `ops/gemm_pool.ts`).
   */
  readonly minParallelFlops?: number;
  /**
   * Portable tier: products with fewer FLOPs per element of A, B and C run
   * on the calling thread alone (default `DEFAULT_MIN_INTENSITY` of
   * `ops/gemm_pool.ts`).
   */
  readonly minIntensity?: number;
  /**
   * Portable tier: `"gemm"` (default) runs the kernel of `ops/gemm_pool.ts`;
   * `"xnnpack"` runs tfjs's XNNPACK on one thread after explicit transposes,
   * the fallback, selectable for comparisons.
   */
  readonly portableKernel?: "gemm" | "xnnpack";
}

// --- what the kernels use of tfjs-backend-wasm -------------------------------

/**
 * The parts of tfjs-backend-wasm's `BackendWasm` the kernels rely on (fields
 * its typings mark private included), checked against version 4.22.
 */
interface WasmBackend {
  readonly wasm: {
    /** Emscripten re-creates this view when memory grows: read it after every allocation. */
    readonly HEAPF32: Float32Array;
    readonly tfjs: {
      registerTensor(id: number, size: number, memoryOffset: number): void;
      disposeData(id: number): void;
    };
    cwrap(name: string, ret: null, args: string[]): (...args: unknown[]) => void;
    /** Emscripten's allocator on the heap (byte offsets). */
    _malloc(bytes: number): number;
    _free(offset: number): void;
    /** The exports of tfjs's own module; `memory` is its heap. */
    readonly asm?: { readonly memory?: WebAssembly.Memory };
  };
  /** Next free C++ tensor id; views of slices reserve ids from it so they never collide. */
  dataIdNextNumber: number;
  readonly dataIdMap: { get(dataId: unknown): { id: number; memoryOffset: number } };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: unknown): boolean;
}

/** The C++ entry point of the stock kernel, for XNNPACK on slice views. */
type RawBatchMatMul = (
  aId: number,
  aShape: Uint8Array,
  aRank: number,
  bId: number,
  bShape: Uint8Array,
  bRank: number,
  transposeA: number,
  transposeB: number,
  outId: number,
) => void;

interface Args {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}

/** A product the replacement handles, as rank-3 operands with batches `batchA`, `batchB`. */
interface Plan {
  readonly a: tf.TensorInfo;
  readonly b: tf.TensorInfo;
  readonly transposeA: boolean;
  readonly transposeB: boolean;
  readonly batchA: number;
  readonly batchB: number;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  /** tfjs's output shape: the broadcast batch dims, then [M, N]. */
  readonly outShape: number[];
}

const sizeOf = (s: readonly number[]): number => s.reduce((p, d) => p * d, 1);

/** The product as rank-3 batches, or null when the stock kernel should take it. */
const planOf = (args: Args): Plan | null => {
  const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const transposeA = args.attrs?.transposeA === true;
  const transposeB = args.attrs?.transposeB === true;
  if (a.dtype !== "float32" || b.dtype !== "float32") return null;
  const ra = a.shape.length, rb = b.shape.length;
  if (ra < 2 || rb < 2) return null;
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kb = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (k !== kb) return null;
  const outerA = a.shape.slice(0, -2), outerB = b.shape.slice(0, -2);
  const batchA = sizeOf(outerA), batchB = sizeOf(outerB);
  // Only equal batches or a batch of 1 flatten to one batch index; anything
  // else (e.g. [2, 1] against [1, 3]) stays with the stock kernel.
  if (batchA !== batchB && batchA !== 1 && batchB !== 1) return null;
  let outer: number[];
  try {
    outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
  } catch {
    return null;
  }
  return { a, b, transposeA, transposeB, batchA, batchB, m, n, k, outShape: [...outer, m, n] };
};

/**
 * An all-zero output: an empty sum (K = 0) or an empty result. The stock
 * kernel returns uninitialised memory for K = 0 on its XNNPACK path.
 */
const zeros = (backend: WasmBackend, shape: number[]): tf.TensorInfo => {
  const out = backend.makeOutput(shape, "float32");
  const at = backend.dataIdMap.get(out.dataId).memoryOffset >>> 2;
  backend.wasm.HEAPF32.fill(0, at, at + sizeOf(shape));
  return out;
};

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

// --- portable tier -------------------------------------------------------------

/** The portable tier's GEMM pool, made on the first product (it needs the backend's heap). */
interface Portable {
  readonly opts: {
    readonly threads?: number;
    readonly minParallelFlops?: number;
    readonly minIntensity?: number;
  };
  /** What the environment allows, found at installation (before any pool exists). */
  readonly probe: GemmThreads;
  pool: { readonly backend: WasmBackend; readonly pool: GemmPool } | null;
  /** Why the pool cannot run on this backend: the tier then runs XNNPACK. */
  failed: string | null;
}

/** The pool of `backend`, or null (and `p.failed` set) when it cannot be made. */
const poolOf = (p: Portable, backend: WasmBackend): GemmPool | null => {
  if (p.pool?.backend === backend) return p.pool.pool;
  if (p.failed !== null) return null;
  p.pool?.pool.dispose(); // a backend made anew (tf.removeBackend): start over on its heap
  p.pool = null;
  const memory = backend.wasm.asm?.memory;
  if (!(memory instanceof WebAssembly.Memory)) {
    p.failed = "tfjs-backend-wasm does not expose its memory (Module.asm.memory)";
  } else {
    try {
      const pool = startGemmPool({
        memory,
        alloc: (bytes) => backend.wasm._malloc(bytes) >>> 0,
        free: (at) => backend.wasm._free(at),
      }, p.opts);
      p.pool = { backend, pool };
      return pool;
    } catch (e) {
      p.failed = `the GEMM kernel cannot start: ${describeError(e)}`;
    }
  }
  console.warn(`portable matmul: running XNNPACK on one thread: ${p.failed}`);
  return null;
};

/** From 5 to this many rows − 1 (batch folded in) an untransposed product with a shared B runs XNNPACK. */
const FEW_ROWS = 16;

const portableKernel = (
  stock: tf.KernelFunc,
  transpose: tf.KernelFunc,
  portable: Portable,
): tf.KernelFunc => {
  const xnnpack = xnnpackKernel(stock, transpose);
  return (args) => {
    const plan = planOf(args as Args);
    if (plan === null) return stock(args);
    const backend = args.backend as unknown as WasmBackend;
    if (plan.k === 0 || sizeOf(plan.outShape) === 0) return zeros(backend, plan.outShape);
    const { m, n, k, batchA, batchB, transposeA, transposeB } = plan;
    // 5–15 rows times a shared, untransposed B (batch-1 inference over a prefix):
    // the kernel would spend about as much on packing B as on the product, while
    // XNNPACK packs a weight once and keeps it. (Up to 4 rows the kernel reads B
    // unpacked, faster than XNNPACK, and, unlike it, as fast on a B it has not seen.)
    const rows = batchA * m;
    const fewRows = !transposeA && !transposeB && batchB === 1 && rows > 4 && rows < FEW_ROWS;
    const pool = fewRows ? null : poolOf(portable, backend);
    if (pool === null) return xnnpack(args, plan);
    const out = backend.makeOutput(plan.outShape, "float32");
    // After makeOutput, which may have grown the heap: the offsets stay valid.
    const at = (t: tf.TensorInfo) => backend.dataIdMap.get(t.dataId).memoryOffset;
    const fold = batchB === 1 && !transposeA; // a shared B: A's batch is just more rows
    const batch = fold ? 1 : Math.max(batchA, batchB);
    pool.gemm({
      batch,
      m: fold ? batchA * m : m,
      n,
      k,
      a: at(plan.a),
      transposeA,
      batchA: fold ? 1 : batchA,
      b: at(plan.b),
      transposeB,
      batchB,
      c: at(out),
    });
    return out;
  };
};

/**
 * The fallback: XNNPACK, which wants untransposed operands, so transposed
 * ones are transposed explicitly with the wasm `Transpose` kernel first.
 */
const xnnpackKernel = (
  stock: tf.KernelFunc,
  transpose: tf.KernelFunc,
): (args: Parameters<tf.KernelFunc>[0], plan: Plan) => tf.TensorInfo | tf.TensorInfo[] => {
  let raw: { backend: WasmBackend; call: RawBatchMatMul } | null = null;
  const rawFor = (backend: WasmBackend): RawBatchMatMul => {
    if (raw === null || raw.backend !== backend) {
      const call = backend.wasm.cwrap("BatchMatMul", null, [
        "number",
        "array",
        "number",
        "number",
        "array",
        "number",
        "number",
        "number",
        "number",
      ]) as RawBatchMatMul;
      raw = { backend, call };
    }
    return raw.call;
  };

  return (args, plan) => {
    const backend = args.backend as unknown as WasmBackend;
    const { m, n, k, batchA, batchB, transposeA, transposeB } = plan;
    // The stock kernel already runs XNNPACK on this one (and caches B's packing by its id).
    if (!transposeA && !transposeB && batchA === 1 && batchB === 1) return stock(args);
    const temps: tf.TensorInfo[] = [];
    try {
      // Untransposed rank-3 operands: A [batchA, M, K], B [batchB, K, N].
      const upright = (
        t: tf.TensorInfo,
        batch: number,
        rows: number,
        cols: number,
        flip: boolean,
      ) => {
        if (!flip) return { dataId: t.dataId, shape: [batch, rows, cols], dtype: t.dtype };
        const stored = { dataId: t.dataId, shape: [batch, cols, rows], dtype: t.dtype };
        const y = transpose({
          inputs: { x: stored },
          backend: args.backend,
          attrs: { perm: [0, 2, 1] },
        }) as tf.TensorInfo;
        temps.push(y);
        return { dataId: y.dataId, shape: [batch, rows, cols], dtype: t.dtype };
      };
      const a = upright(plan.a, batchA, m, k, transposeA);
      const b = upright(plan.b, batchB, k, n, transposeB);
      const attrs = { transposeA: false, transposeB: false };
      if (batchB === 1) {
        // A shared B: fold A's batch into its rows, one XNNPACK product.
        const out = stock({
          inputs: { a: { ...a, shape: [1, batchA * m, k] }, b: { ...b, shape: [1, k, n] } },
          backend: args.backend,
          attrs,
        }) as tf.TensorInfo;
        out.shape = plan.outShape;
        return out;
      }
      const out = backend.makeOutput(plan.outShape, "float32");
      slices(backend, rawFor(backend), { a, b, out, batchA, batchB, m, n, k });
      return out;
    } finally {
      for (const t of temps) backend.disposeData(t.dataId);
    }
  };
};

/**
 * XNNPACK once per batch entry: each slice of A, B and the output gets a
 * C++ tensor id of its own pointing into its operand's memory (no copy), and
 * the stock C++ entry point runs on those batch-1 views. The views are
 * unregistered afterwards, which also frees XNNPACK's operator cached for
 * each B slice; their memory belongs to the operands and is never freed here.
 */
const slices = (
  backend: WasmBackend,
  raw: RawBatchMatMul,
  p: {
    a: tf.TensorInfo;
    b: tf.TensorInfo;
    out: tf.TensorInfo;
    batchA: number;
    batchB: number;
    m: number;
    n: number;
    k: number;
  },
): void => {
  const { m, n, k } = p;
  const tfjs = backend.wasm.tfjs;
  const a0 = backend.dataIdMap.get(p.a.dataId), b0 = backend.dataIdMap.get(p.b.dataId);
  const c0 = backend.dataIdMap.get(p.out.dataId);
  const shapeA = new Uint8Array(new Int32Array([1, m, k]).buffer);
  const shapeB = new Uint8Array(new Int32Array([1, k, n]).buffer);
  const views: number[] = [];
  const view = (memoryOffset: number, size: number): number => {
    const id = backend.dataIdNextNumber++;
    tfjs.registerTensor(id, size, memoryOffset);
    views.push(id);
    return id;
  };
  try {
    for (let i = 0; i < p.batchB; i++) {
      const ai = p.batchA === 1 ? a0.id : view(a0.memoryOffset + 4 * i * m * k, m * k);
      const bi = view(b0.memoryOffset + 4 * i * k * n, k * n);
      const ci = view(c0.memoryOffset + 4 * i * m * n, m * n);
      raw(ai, shapeA, 3, bi, shapeB, 3, 0, 0, ci);
    }
  } finally {
    for (const id of views) tfjs.disposeData(id);
  }
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
  const stock = installed?.stock ?? tf.getKernel(KERNEL, BACKEND);
  const transpose = tf.getKernel("Transpose", BACKEND);
  if (stock === undefined || transpose === undefined) {
    return fail("the wasm backend's kernels are not registered: start the wasm backend first");
  }
  let blas: Blas | null = null;
  let portable: Portable | null = null;
  if (tier === "native") {
    const loaded = loadBlas(opts);
    if (loaded._tag === "Left") return loaded;
    blas = loaded.right;
  } else {
    const { threads, minParallelFlops, minIntensity } = opts;
    if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) {
      return fail(`threads must be a positive integer, got ${threads}`);
    }
    if (minParallelFlops !== undefined && !(minParallelFlops >= 0)) {
      return fail(`minParallelFlops must be ≥ 0, got ${minParallelFlops}`);
    }
    if (minIntensity !== undefined && !(minIntensity >= 0)) {
      return fail(`minIntensity must be ≥ 0, got ${minIntensity}`);
    }
    const poolOpts = { threads, minParallelFlops, minIntensity };
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
 * Stop the portable tier's worker now; the next large product starts it
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
 * Start the portable tier's worker now, on the wasm backend's heap, and
 * resolve once it takes jobs: true, or false when the tier runs on one
 * thread (then {@linkcode matmulThreads} says why) or is not installed.
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
  const portable = installed?.portable;
  const backend = tf.findBackend(BACKEND) as unknown as WasmBackend | undefined;
  if (portable == null || backend == null) return false;
  const pool = poolOf(portable, backend);
  return pool === null ? false : await pool.ready();
};

/**
 * What the portable tier's pool has done since it started (products on one
 * thread, split with the worker, run alone while the worker was starting,
 * workers started), or null on another tier or before its first product.
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

/** The native tier's BLAS, or null on the portable tier (matrix-vector products then run in wasm). */
export const installedBlas = (): Blas | null => installed?.blas ?? null;
