/**
 * Weight matrices as fused kernels read them: a float32 tensor [K, N]
 * row-major, or a q8 weight — an int32 tensor holding its int8 values in
 * the products' packed layout, then its float32 column scales
 * (`q8Layout`, ops/quant.ts).
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import type { DType, Shape } from "../../spec/ops.ts";
import { offsetOf, type WasmBackend } from "../heap.ts";
import { paddedColumns, q8Layout } from "../quant.ts";
import type { HeapWeight } from "./products.ts";

/** Whether a region input is a q8 weight. */
export const quantizedWeight = (i: { readonly shape: Shape; readonly dtype: DType }): boolean =>
  i.dtype === "q8";

/**
 * A weight [K, N] on the heap: float32 when `t` is float32, else q8 (an
 * int32 tensor, scaled per column).
 */
export const heapWeight = (b: WasmBackend, t: tf.TensorInfo, k: number, n: number): HeapWeight => {
  const at = offsetOf(b, t);
  if (t.dtype === "float32") return { kind: "f32", at, k, n };
  return {
    kind: "q8",
    key: t.dataId,
    at,
    scales: at + q8Layout(k, n, 1).valueBytes,
    k,
    n,
    np: paddedColumns(n),
  };
};
