/**
 * The one door to TensorFlow.js for the rest of the project: core/ and
 * experiments/ import tfjs through here so that only ops/ depends on
 * `@tensorflow/*` directly.
 *
 * @module
 */
import { engine, type Tensor as T } from "@tensorflow/tfjs-core";

export * as tf from "@tensorflow/tfjs-core";
export type { Tensor } from "@tensorflow/tfjs-core";

/**
 * A new handle on the same data as `t`, with no copy and no kernel call
 * (what a reshape to the same shape gives; `tf.clone` copies on the wasm
 * backend): disposing either leaves the other valid. `t` must live on the
 * active backend.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ensureBackend } from "./backend.ts";
 * import { shareHandle, tf } from "./tf.ts";
 * await ensureBackend({ backend: "cpu" });
 * const a = tf.tensor1d([1, 2, 3]);
 * const b = shareHandle(a);
 * a.dispose();
 * assert.deepEqual(Array.from(b.dataSync()), [1, 2, 3]);
 * b.dispose();
 * ```
 */
export const shareHandle = (t: T): T => {
  const e = engine();
  const h = e.makeTensorFromDataId(t.dataId, t.shape, t.dtype);
  e.backend.incRef(t.dataId);
  return h;
};
