/**
 * Gradients of the tfjs lowering (wasm) against central finite differences
 * of the float64 reference interpreter.
 *
 * For each case the loss is `L = sum(w ⊙ op(x))` with a fixed random `w`;
 * tfjs's `tf.grads` gives ∂L/∂x in float32, and FD gives
 * `Σ_k w_k (y_k(x + h e_j) − y_k(x − h e_j)) / 2h` in float64 with h = 1e-3.
 *
 * Tolerance: `max |g_tf − g_fd| / max |g_fd|` ≤ 1e-3. The FD truncation error
 * is h²·|f'''|/6 ≈ 1e-7 for these O(1) inputs and its rounding error ~1e-13
 * (except next to causalMask's −1e9, where the perturbed entry's own rounding
 * gives ~6e-5); float32 autograd adds a few ulps per op (~1e-7 relative).
 * So a correct gradient lands near 1e-7–1e-5, and 1e-3 still fails any
 * wrong index, axis, sign or missing broadcast reduction by orders of
 * magnitude. Inputs stay ≥ 0.05 away from relu/modReLU kinks, beyond h.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { ensureBackend } from "../ops/backend.ts";
import { evalTf, type LowerCtx, toTensor } from "../ops/lower.ts";
import { evalRef, type RefTensor, refTensor } from "../ops/reference.ts";
import type { Op } from "../spec/ops.ts";
import { finiteDiff, normError, opCases, sampler, scoped } from "./_ops_cases.ts";

await ensureBackend();

const TOL = 1e-3;
const evalCtx: LowerCtx = { training: false, seed: () => 0 };

/** ∂ sum(w ⊙ op(inputs)) / ∂ inputs[k] for each k in `wrt`, by tfjs autograd. */
const tfGrads = (
  op: Op,
  inputs: readonly RefTensor[],
  w: Float64Array,
  wrt: readonly number[],
  ctx: LowerCtx = evalCtx,
): Float32Array[] =>
  scoped(() => {
    const ts = inputs.map(toTensor);
    const outShape = evalRef(op, inputs, { precision: "float32", training: false }).shape;
    const wt = tf.tensor(Float32Array.from(w), [...outShape]);
    const f = (...xs: tf.Tensor[]) => {
      const all = [...ts];
      wrt.forEach((k, i) => (all[k] = xs[i]));
      return tf.sum(tf.mul(wt, evalTf(op, all, ctx)));
    };
    return tf.grads(f)(wrt.map((k) => ts[k])).map((g) => Float32Array.from(g.dataSync()));
  });

Deno.test("ops grad: tfjs gradients match float64 finite differences", async (t) => {
  const cases = opCases().filter((c) => c.wrt.length > 0);
  for (const c of cases) {
    await t.step(c.name, () => {
      const n = evalRef(c.op, c.inputs, { precision: "float64", training: false }).data.length;
      const w = sampler(31).values(n);
      const before = tf.memory().numTensors;
      const got = tfGrads(c.op, c.inputs, w, c.wrt);
      assert.equal(tf.memory().numTensors, before, "tensors leaked");
      c.wrt.forEach((k, i) => {
        const fd = finiteDiff(c.op, c.inputs, w, k);
        const err = normError(got[i], fd);
        assert.ok(err <= TOL, `input ${k}: error ${err.toExponential(2)} > ${TOL}`);
      });
    });
  }
});

Deno.test("ops grad: the gradient of every differentiable op tag is checked", () => {
  const checked = new Set(opCases().filter((c) => c.wrt.length > 0).map((c) => c.op._tag));
  // input/constant have no inputs; stopGradient and training dropout are checked below.
  const expected = [
    "matmul",
    "add",
    "sub",
    "mul",
    "scale",
    "relu",
    "sigmoid",
    "tanh",
    "modrelu",
    "softmax",
    "logSoftmax",
    "layerNorm",
    "embedding",
    "reshape",
    "transpose",
    "concat",
    "slice",
    "mean",
    "causalMask",
    "relShift",
    "crossEntropy",
    "dropout",
  ] as const;
  assert.deepEqual(expected.filter((tag) => !checked.has(tag)), []);
});

Deno.test("ops grad: embedding sums the table gradient over repeated ids", () => {
  const table = refTensor([4, 2], [0, 0, 0, 0, 0, 0, 0, 0]);
  const ids = refTensor([5], [1, 3, 1, 1, 0], { dtype: "int32" });
  const w = Float64Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9, 10);
  const [g] = tfGrads({ _tag: "embedding" }, [table, ids], w, [0]);
  // Row 1 collects positions 0, 2, 3; row 3 position 1; row 0 position 4; row 2 nothing.
  assert.deepEqual([...g], [9, 10, 1 + 5 + 7, 2 + 6 + 8, 0, 0, 3, 4]);
});

Deno.test("ops grad: stopGradient passes values and cuts the gradient", () => {
  const x = sampler(3).normal([3, 4]);
  const w = sampler(4).values(12);
  const [g] = tfGrads({ _tag: "stopGradient" }, [x], w, [0]);
  assert.ok(g.every((v) => v === 0));
  // Through a sum with an unstopped path, only that path's gradient remains.
  const got = scoped(() => {
    const xt = toTensor(x);
    const f = (a: tf.Tensor) =>
      tf.sum(tf.add(tf.mul(a, 3), evalTf({ _tag: "stopGradient" }, [a], evalCtx)));
    return [...tf.grad(f)(xt).dataSync()];
  });
  assert.ok(got.every((v) => Math.abs(v - 3) < 1e-6));
});

Deno.test("ops grad: training dropout's gradient is its mask", () => {
  const x = sampler(5).normal([6, 7]);
  const w = sampler(6).values(42);
  const ctx: LowerCtx = { training: true, seed: () => 11 };
  const op: Op = { _tag: "dropout", rate: 0.4 };
  const y = scoped(() => [...evalTf(op, [toTensor(x)], ctx).dataSync()]);
  const [g] = tfGrads(op, [x], w, [0], ctx);
  // y = x ⊙ mask, so ∂ sum(w ⊙ y)/∂x = w ⊙ mask = w ⊙ y / x.
  for (let i = 0; i < g.length; i++) {
    const mask = y[i] / x.data[i];
    assert.ok(
      Math.abs(g[i] - w[i] * mask) <= 1e-5 * Math.max(1, Math.abs(w[i] * mask)),
      `entry ${i}`,
    );
  }
});

/**
 * The gradients this project registers for raw tfjs kernels that no op
 * lowers to but code around the graph uses under a tape (a loss averaged
 * with addN and div, say): each against FD of a float64 JS function.
 */
Deno.test("ops grad: registered gradients of raw tfjs kernels match finite differences", async (t) => {
  type Raw = {
    name: string;
    shapes: number[][];
    positive?: boolean;
    tfFn: (...xs: tf.Tensor[]) => tf.Tensor;
    ref: (xs: Float64Array[]) => ArrayLike<number>;
  };
  const ref64 = (op: Op, xs: Float64Array[], shapes: number[][]) =>
    evalRef(op, xs.map((d, i) => ({ shape: shapes[i], dtype: "float32" as const, data: d })), {
      precision: "float64",
      training: false,
    }).data;
  const map = (f: (v: number) => number) => (xs: Float64Array[]) => xs[0].map(f);
  const raws: Raw[] = [
    {
      name: "Add broadcast",
      shapes: [[2, 3], [3]],
      tfFn: tf.add,
      ref: (xs) => ref64({ _tag: "add" }, xs, [[2, 3], [3]]),
    },
    {
      name: "Sub broadcast",
      shapes: [[3], [2, 3]],
      tfFn: tf.sub,
      ref: (xs) => ref64({ _tag: "sub" }, xs, [[3], [2, 3]]),
    },
    {
      name: "AddN",
      shapes: [[2, 3], [2, 3], [2, 3]],
      tfFn: (...xs) => tf.addN(xs),
      ref: (xs) => xs[0].map((v, i) => v + xs[1][i] + xs[2][i]),
    },
    {
      name: "RealDiv",
      shapes: [[2, 3], [2, 3]],
      positive: true,
      tfFn: tf.div,
      ref: (xs) => xs[0].map((v, i) => v / xs[1][i]),
    },
    {
      name: "RealDiv by a number",
      shapes: [[2, 3]],
      tfFn: (x) => tf.div(x, 3),
      ref: map((v) => v / 3),
    },
    { name: "Neg", shapes: [[2, 3]], tfFn: tf.neg, ref: map((v) => -v) },
    { name: "Square", shapes: [[2, 3]], tfFn: tf.square, ref: map((v) => v * v) },
    { name: "Sqrt", shapes: [[2, 3]], positive: true, tfFn: tf.sqrt, ref: map(Math.sqrt) },
    { name: "Exp", shapes: [[2, 3]], tfFn: tf.exp, ref: map(Math.exp) },
    { name: "Log", shapes: [[2, 3]], positive: true, tfFn: tf.log, ref: map(Math.log) },
    {
      name: "Sum over axis 1",
      shapes: [[2, 3, 4]],
      tfFn: (x) => tf.sum(x, 1),
      ref: (xs) => ref64({ _tag: "mean", axis: 1 }, xs, [[2, 3, 4]]).map((v) => 3 * v),
    },
    {
      name: "Sum of all",
      shapes: [[2, 3]],
      tfFn: (x) => tf.sum(x),
      ref: (xs) => [xs[0].reduce((a, b) => a + b)],
    },
    {
      name: "Mean over axes 0 and 2",
      shapes: [[2, 3, 4]],
      tfFn: (x) => tf.mean(x, [0, 2]),
      ref: (xs) => {
        const m2 = ref64({ _tag: "mean", axis: 2 }, xs, [[2, 3, 4]]);
        return ref64({ _tag: "mean", axis: 0 }, [Float64Array.from(m2)], [[2, 3]]);
      },
    },
    { name: "Reshape", shapes: [[2, 3]], tfFn: (x) => tf.reshape(x, [3, 2]), ref: (xs) => xs[0] },
    { name: "ExpandDims", shapes: [[2, 3]], tfFn: (x) => tf.expandDims(x, 1), ref: (xs) => xs[0] },
    {
      name: "Concat",
      shapes: [[2, 1], [2, 3]],
      tfFn: (a, b) => tf.concat([a, b], 1),
      ref: (xs) => ref64({ _tag: "concat", axis: 1 }, xs, [[2, 1], [2, 3]]),
    },
    {
      name: "Slice",
      shapes: [[3, 4]],
      tfFn: (x) => tf.slice(x, [1, 1], [2, 2]),
      ref: (xs) => ref64({ _tag: "slice", begin: [1, 1], size: [2, 2] }, xs, [[3, 4]]),
    },
    {
      name: "PadV2",
      shapes: [[2, 2]],
      tfFn: (x) => tf.pad(x, [[1, 0], [0, 2]]),
      ref: (xs) => [0, 0, 0, 0, xs[0][0], xs[0][1], 0, 0, xs[0][2], xs[0][3], 0, 0],
    },
    { name: "Cast", shapes: [[2, 3]], tfFn: (x) => tf.cast(x, "float32"), ref: (xs) => xs[0] },
    { name: "Identity (clone)", shapes: [[2, 3]], tfFn: (x) => tf.clone(x), ref: (xs) => xs[0] },
  ];
  const h = 1e-3;
  for (const raw of raws) {
    await t.step(raw.name, () => {
      const r = sampler(77);
      const xs = raw.shapes.map((s) => {
        const v = r.normal(s).data;
        return Float64Array.from(v, (x) => (raw.positive ? Math.fround(0.5 + Math.abs(x)) : x));
      });
      const n = raw.ref(xs).length;
      const w = sampler(78).values(n);
      const got = scoped(() => {
        const ts = xs.map((d, i) => tf.tensor(Float32Array.from(d), raw.shapes[i]));
        const wt = tf.tensor(Float32Array.from(w));
        const f = (...a: tf.Tensor[]) => tf.sum(tf.mul(wt, tf.reshape(raw.tfFn(...a), [n])));
        return tf.grads(f)(ts).map((g) => Float32Array.from(g.dataSync()));
      });
      xs.forEach((x, k) => {
        const fd = new Float64Array(x.length);
        for (let j = 0; j < x.length; j++) {
          const x0 = x[j];
          x[j] = x0 + h;
          // Copied: identity-like refs return the perturbed array itself.
          const yp = Float64Array.from(raw.ref(xs));
          x[j] = x0 - h;
          const ym = Float64Array.from(raw.ref(xs));
          x[j] = x0;
          let s = 0;
          for (let i = 0; i < n; i++) s += w[i] * (yp[i] - ym[i]);
          fd[j] = s / (2 * h);
        }
        const err = normError(got[k], fd);
        assert.ok(err <= TOL, `input ${k}: error ${err.toExponential(2)}`);
      });
    });
  }
});
