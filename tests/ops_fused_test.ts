/**
 * The fused kernels of ops/fused.ts (WebAssembly SIMD on wasm, JavaScript on
 * cpu) against float64 formulas, on both backends: softmax cross-entropy and
 * its gradient, AdamW, and the sum of squares behind gradient norms.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { ensureBackend } from "../ops/backend.ts";
import {
  adamwUpdate,
  gatherRows,
  softmaxXent,
  softmaxXentGrad,
  sumOfSquares,
} from "../ops/fused.ts";
import { sampler } from "./_ops_cases.ts";

const maxRel = (a: ArrayLike<number>, b: ArrayLike<number>, floor: number): number => {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), floor));
  }
  return worst;
};

/** Rows [n, v] at several scales, from near-uniform to near-one-hot softmaxes. */
const logitsOf = (n: number, v: number, seed: number): Float32Array => {
  const x = Float32Array.from(sampler(seed).values(n * v));
  for (let r = 0; r < n; r++) {
    const scale = [0.01, 1, 5, 30, 80][r % 5];
    for (let j = 0; j < v; j++) x[r * v + j] *= scale;
  }
  return x;
};

const refXent = (x: Float32Array, t: Int32Array, n: number, v: number) => {
  const lse = new Float64Array(n), nll = new Float64Array(n), p = new Float64Array(n * v);
  for (let r = 0; r < n; r++) {
    let m = -Infinity;
    for (let j = 0; j < v; j++) m = Math.max(m, x[r * v + j]);
    let s = 0;
    for (let j = 0; j < v; j++) s += Math.exp(x[r * v + j] - m);
    lse[r] = m + Math.log(s);
    nll[r] = lse[r] - x[r * v + t[r]];
    for (let j = 0; j < v; j++) p[r * v + j] = Math.exp(x[r * v + j] - lse[r]);
  }
  return { lse, nll, p };
};

for (const backend of ["wasm", "cpu"] as const) {
  Deno.test(`fused (${backend}): softmax cross-entropy and its gradient match float64`, async () => {
    await ensureBackend({ backend });
    // 1003 = 125·8 + 3: the SIMD loops and their scalar tails.
    for (const [n, v] of [[10, 1003], [3, 5], [7, 64]]) {
      const x = logitsOf(n, v, n + v);
      const t = Int32Array.from({ length: n }, (_, r) => (r * 7919) % v);
      const dy = Float32Array.from({ length: n }, (_, r) => (r % 3) - 0.75);
      const ref = refXent(x, t, n, v);
      tf.tidy(() => {
        const xt = tf.tensor2d(x, [n, v]), tt = tf.tensor1d(t, "int32");
        const fwd = softmaxXent(xt, tt);
        assert.ok(maxRel(fwd.nll.dataSync(), ref.nll, 1) < 2e-6, `nll ${n}x${v}`);
        const inv = fwd.inv.dataSync(), exps = fwd.exps.dataSync();
        for (let r = 0; r < n; r++) {
          for (let j = 0; j < v; j++) {
            const p = exps[r * v + j] * inv[r];
            assert.ok(Math.abs(p - ref.p[r * v + j]) < 1e-6, `softmax ${n}x${v} [${r}, ${j}]`);
          }
        }
        const g = softmaxXentGrad(fwd, tt, tf.tensor1d(dy)).dataSync();
        const want = new Float64Array(n * v);
        for (let r = 0; r < n; r++) {
          for (let j = 0; j < v; j++) {
            want[r * v + j] = (ref.p[r * v + j] - (j === t[r] ? 1 : 0)) * dy[r];
          }
        }
        // Absolute below 1e-6: softmax entries of e^-80 are 0 in float32.
        assert.ok(maxRel(g, want, 1e-6) < 1e-4, `grad ${n}x${v}: ${maxRel(g, want, 1e-6)}`);
      });
    }
  });

  Deno.test(`fused (${backend}): a target outside the vocabulary names its row`, async () => {
    await ensureBackend({ backend });
    tf.tidy(() => {
      const x = tf.zeros([3, 4]), t = tf.tensor1d([0, 4, 1], "int32");
      assert.throws(() => softmaxXent(x, t), /target 4 of row 1 is outside \[0, 4\)/);
    });
  });

  Deno.test(`fused (${backend}): AdamW matches the float64 update`, async () => {
    await ensureBackend({ backend });
    const n = 1031, s = sampler(5);
    const [p, g, m] = [0, 1, 2].map(() => Float32Array.from(s.values(n)));
    const v = Float32Array.from(s.values(n), (x) => x * x);
    const k = {
      lr: 3e-3,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      bc1: 1 - 0.9 ** 7,
      bc2: 1 - 0.999 ** 7,
      decay: 1 - 3e-3 * 0.01,
      clip: 0.5,
    };
    tf.tidy(() => {
      const [np, nm, nv] = adamwUpdate(
        tf.tensor1d(p),
        tf.tensor1d(g),
        tf.tensor1d(m),
        tf.tensor1d(v),
        k,
      ).map((t) => t.dataSync());
      const wp = new Float64Array(n), wm = new Float64Array(n), wv = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const gi = g[i] * k.clip;
        wm[i] = k.beta1 * m[i] + (1 - k.beta1) * gi;
        wv[i] = k.beta2 * v[i] + (1 - k.beta2) * gi * gi;
        wp[i] = k.decay * p[i] - k.lr * (wm[i] / k.bc1) / (Math.sqrt(wv[i] / k.bc2) + k.eps);
      }
      // Entries are O(1): float32 rounding of each product is ~1e-7 of that.
      assert.ok(maxRel(nm, wm, 1) < 1e-6, `m ${maxRel(nm, wm, 1)}`);
      assert.ok(maxRel(nv, wv, 1) < 1e-6, `v ${maxRel(nv, wv, 1)}`);
      assert.ok(maxRel(np, wp, 1) < 1e-6, `p ${maxRel(np, wp, 1)}`);
    });
  });

  Deno.test(`fused (${backend}): sum of squares over several tensors`, async () => {
    await ensureBackend({ backend });
    const a = Float32Array.from(sampler(9).values(100_003)), b = Float32Array.of(3, -4);
    let want = 25;
    for (const x of a) want += x * x;
    tf.tidy(() => {
      const got = sumOfSquares([tf.tensor1d(a), tf.tensor1d(b)]);
      assert.ok(Math.abs(got - want) / want < 1e-9, `${got} vs ${want}`);
    });
  });

  Deno.test(`fused (${backend}): row gather copies table rows and names a bad id`, async () => {
    await ensureBackend({ backend });
    const table = Float32Array.from({ length: 7 * 5 }, (_, i) => i);
    tf.tidy(() => {
      const t = tf.tensor2d(table, [7, 5]);
      const out = gatherRows(t, tf.tensor2d([[6, 0], [3, 3]], [2, 2], "int32"));
      assert.deepEqual(out.shape, [2, 2, 5]);
      const want = [6, 0, 3, 3].flatMap((r) => Array.from(table.subarray(r * 5, r * 5 + 5)));
      assert.deepEqual(Array.from(out.dataSync()), want);
      assert.throws(
        () => gatherRows(t, tf.tensor1d([1, 7], "int32")),
        /id 7 at position 1 is outside \[0, 7\)/,
      );
    });
  });
}

Deno.test("fused (wasm): Identity shares the buffer, so a saved tensor costs no copy", async () => {
  await ensureBackend({ backend: "wasm" });
  tf.tidy(() => {
    const x = tf.tensor2d([[1, 2], [3, 4]]);
    const before = tf.memory().numDataBuffers;
    const y = tf.clone(x); // runs Identity
    assert.equal(tf.memory().numDataBuffers, before, "no new buffer");
    x.dispose(); // y keeps the shared buffer alive
    assert.deepEqual(Array.from(y.dataSync()), [1, 2, 3, 4]);
  });
});
