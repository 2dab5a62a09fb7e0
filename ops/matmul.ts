/**
 * A replacement for tfjs-wasm's `BatchMatMul` kernel.
 *
 * The stock kernel uses XNNPACK only for an untransposed product of two
 * batch-1 operands; every transposed product (all matmul gradients) and
 * every batched one (attention) runs a scalar loop at ~1 GFLOP/s, which made
 * 90 % of a training step (SUBSTRATE.md). Registered under the same kernel
 * name, the replacement serves every `tf.matMul`, forward and in autograd,
 * with no change to the model. Two tiers:
 *
 * - `native`: `cblas_sgemm` (`ops/blas.ts`) straight on the operands in the
 *   wasm heap, transposes as CBLAS flags, one call per batch entry (or one
 *   call for the whole batch when B is shared). Needs `--allow-ffi` and a
 *   CBLAS library.
 * - `portable`: pure wasm, for browsers. Transposed operands are transposed
 *   explicitly with the wasm `Transpose` kernel, then multiplied untransposed
 *   so that XNNPACK runs: a shared B folds the batch into the rows of A; a
 *   batched B runs XNNPACK once per batch entry on views of the slices.
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
  /** OpenBLAS threads for the native tier (default: the machine's logical cores). */
  readonly threads?: number;
  /** A CBLAS library to open instead of the default list (native tier). */
  readonly library?: string;
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

const portableKernel = (stock: tf.KernelFunc, transpose: tf.KernelFunc): tf.KernelFunc => {
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

  return (args) => {
    const plan = planOf(args as Args);
    if (plan === null) return stock(args);
    const backend = args.backend as unknown as WasmBackend;
    if (plan.k === 0 || sizeOf(plan.outShape) === 0) return zeros(backend, plan.outShape);
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
let installed: { tier: MatmulTier; stock: tf.KernelConfig; blas: Blas | null } | null = null;

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
  if (tier === "native") {
    const loaded = loadBlas(opts);
    if (loaded._tag === "Left") return loaded;
    blas = loaded.right;
  }
  const kernelFunc = blas !== null
    ? nativeKernel(blas, stock.kernelFunc)
    : portableKernel(stock.kernelFunc, transpose.kernelFunc);
  tf.unregisterKernel(KERNEL, BACKEND);
  // The stock setup stays: it binds the C++ entry the fallbacks call, and
  // runs again if the backend is ever re-initialised.
  tf.registerKernel({ ...stock, kernelFunc });
  installed?.blas?.close();
  installed = { tier, stock, blas };
  return right(tier);
};

/**
 * Put the stock `BatchMatMul` kernel back (and close the BLAS library).
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
  installed.blas?.close();
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
