/**
 * The portable tier of the replacement `BatchMatMul` kernel
 * (`ops/matmul.ts`): pure wasm, for browsers. Products run on the
 * two-thread SIMD GEMM of `ops/gemm_pool.ts`, made on the first product on
 * the backend's heap ({@linkcode poolOf}); a few rows times a shared B, and
 * everything when the pool cannot run, go to tfjs's XNNPACK on one thread,
 * with transposed operands transposed explicitly first.
 *
 * @module
 */
import { describeError } from "../spec/errors.ts";
import type * as tf from "@tensorflow/tfjs-core";
import { type GemmPool, startGemmPool } from "./gemm_pool.ts";
import type { GemmThreads } from "./gemm_threads.ts";
import {
  type Args,
  type Plan,
  planOf,
  type RawBatchMatMul,
  sizeOf,
  type WasmBackend,
  zeros,
} from "./matmul_wasm.ts";

/** The portable tier's GEMM pool, made on the first product (it needs the backend's heap). */
export interface Portable {
  readonly opts: {
    readonly threads?: number;
    readonly minParallelFlops?: number;
    readonly minIntensity?: number;
    readonly minParallelWeights?: number;
  };
  /** What the environment allows, found at installation (before any pool exists). */
  readonly probe: GemmThreads;
  pool: { readonly backend: WasmBackend; readonly pool: GemmPool } | null;
  /** Why the pool cannot run on this backend: the tier then runs XNNPACK. */
  failed: string | null;
}

/** The pool of `backend`, or null (and `p.failed` set) when it cannot be made. */
export const poolOf = (p: Portable, backend: WasmBackend): GemmPool | null => {
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

/**
 * The portable tier's kernel: the two-thread GEMM of `portable`'s pool, or
 * XNNPACK for a few rows times a shared B and when the pool cannot run;
 * what it does not handle goes to `stock`.
 */
export const portableKernel = (
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
