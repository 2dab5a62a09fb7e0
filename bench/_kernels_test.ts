import assert from "node:assert/strict";
import { startBackend } from "../ops/backend.ts";
import { tf } from "../ops/tf.ts";
import { countKernels } from "./_kernels.ts";

/** The cpu backend's way to hand a kernel's output back (not on the KernelBackend type). */
type MakesTensors = {
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: tf.TypedArray): tf.TensorInfo;
};

const started = await startBackend({ backend: "cpu" });
if (started._tag === "Left") throw started.left;

Deno.test("countKernels counts each op once, by name, and restores the engine", () => {
  const a = tf.ones([3, 3]);
  const c = countKernels(() =>
    tf.tidy(() => tf.sum(tf.relu(tf.add(tf.matMul(a, a), a))).arraySync())
  );
  assert.equal(c.calls, 4);
  assert.deepEqual(
    [...c.byName].sort(),
    [["Add", 1], ["BatchMatMul", 1], ["Relu", 1], ["Sum", 1]],
  );
  assert.equal(c.result, 9 * 4);
  assert.equal(Object.hasOwn(tf.engine(), "runKernel"), false);
  const after = countKernels(() => tf.tidy(() => tf.neg(a).dataSync()));
  assert.equal(after.calls, 1);
  a.dispose();
});

Deno.test("countKernels does not count what a kernel dispatches inside itself", () => {
  // A kernel built from two ops through the engine: one dispatch from outside.
  tf.registerKernel({
    kernelName: "CountTestSquarePlusOne",
    backendName: "cpu",
    kernelFunc: ({ inputs, backend }) => {
      const x = inputs.x as tf.Tensor;
      const sq = tf.mul(x, x);
      const out = tf.add(sq, 1);
      sq.dispose();
      const info = (backend as MakesTensors).makeTensorInfo(
        out.shape,
        out.dtype,
        out.dataSync(),
      );
      out.dispose();
      return info;
    },
  });
  try {
    const x = tf.tensor1d([1, 2]);
    const c = countKernels(() => {
      const y = tf.engine().runKernel("CountTestSquarePlusOne", { x }) as tf.Tensor;
      const z = tf.neg(y);
      const v = z.dataSync();
      tf.dispose([y, z]);
      return v;
    });
    assert.deepEqual([...c.result], [-2, -5]);
    assert.equal(c.calls, 2); // the kernel and Neg; its inner Multiply and Add are not dispatches
    x.dispose();
  } finally {
    tf.unregisterKernel("CountTestSquarePlusOne", "cpu");
  }
});

Deno.test("countKernels refuses to nest and restores the engine after a throw", () => {
  assert.throws(() => countKernels(() => countKernels(() => 0)), /already counting/);
  assert.throws(() =>
    countKernels(() => {
      throw new Error("boom");
    }), /boom/);
  assert.equal(Object.hasOwn(tf.engine(), "runKernel"), false);
});
