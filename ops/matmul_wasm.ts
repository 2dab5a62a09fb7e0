/**
 * What the replacement `BatchMatMul` kernels (`ops/matmul.ts`) use of
 * tfjs-backend-wasm — the fields of its backend they rely on, the C++ entry
 * point of the stock kernel — and how a call is read as a product
 * ({@linkcode planOf}), shared by the native and the portable tier.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";

/**
 * The parts of tfjs-backend-wasm's `BackendWasm` the kernels rely on (fields
 * its typings mark private included), checked against version 4.22.
 */
export interface WasmBackend {
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
export type RawBatchMatMul = (
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

/** The arguments tfjs passes a `BatchMatMul` kernel. */
export interface Args {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}

/** A product the replacement handles, as rank-3 operands with batches `batchA`, `batchB`. */
export interface Plan {
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

/** The number of elements of a tensor of shape `s`. */
export const sizeOf = (s: readonly number[]): number => s.reduce((p, d) => p * d, 1);

/** The product as rank-3 batches, or null when the stock kernel should take it. */
export const planOf = (args: Args): Plan | null => {
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
export const zeros = (backend: WasmBackend, shape: number[]): tf.TensorInfo => {
  const out = backend.makeOutput(shape, "float32");
  const at = backend.dataIdMap.get(out.dataId).memoryOffset >>> 2;
  backend.wasm.HEAPF32.fill(0, at, at + sizeOf(shape));
  return out;
};
