/**
 * Whole-model behaviour: gradients against finite differences, stepwise
 * equals batched, the BPTT cut, NC-GRU orthogonality, no tensor leaks, FLOPs.
 */
import assert from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { ensureBackend } from "../ops/backend.ts";
import type { RefTensor } from "../ops/reference.ts";
import { tf } from "../ops/tf.ts";
import { compile } from "../core/compile.ts";
import { flattenParams, initValues } from "../core/params.ts";
import { disposeTraining, liveTensors, startTraining, trainOn } from "../core/train.ts";
import { orthogonalityError } from "../core/linalg.ts";
import { cayleyGradient } from "../core/optim.ts";
import { cayley, identityPlus, inverse } from "../core/linalg.ts";
import type { ModelSpec } from "../spec/codecs.ts";
import { compiled, disposeTrainStep, int2d, maxDiff, streamingGap } from "./_program.ts";
import {
  assertGradients,
  float64Values,
  referenceLmLoss,
  zeroReferenceState,
} from "./_reference.ts";
import {
  randomTokens,
  tinyCrtGru,
  tinyCrtNcgru,
  tinyModels,
  tinyTransformer,
  tinyXl,
} from "./_tiny.ts";

await ensureBackend();

Deno.test("Program.trainStep gradients of tiny whole models match central finite differences", async (t) => {
  // Tolerance: tfjs computes in float32 (relative rounding ~1e-7 per op, a few
  // hundred ops deep), the differences are float64 with h = 1e-5 (truncation
  // ~h² ≈ 1e-10, cancellation ~1e-16/h ≈ 1e-11). A correct gradient therefore
  // agrees to ~1e-5 relative; 2e-3 on the per-leaf norm leaves room while any
  // real error (a missing term, a wrong transpose) shows as O(1).
  for (const [name, spec] of Object.entries(tinyModels)) {
    await t.step(name, () => {
      const program = compiled(spec);
      const b = 2;
      // XL's cache carries no gradient by design, so its check runs one segment
      // behind a fixed cache; the other models unroll two segments.
      const k = spec._tag === "xl" ? 1 : 2;
      const len = k * spec.segmentLen;
      const tokens = randomTokens(b * len, spec.vocabSize, 11);
      const targets = randomTokens(b * len, spec.vocabSize, 12);
      const values = float64Values(program.layout, 3);
      const params = program.init(3);
      let state = program.initState(b);
      let state0: Record<string, RefTensor> = {};
      if (spec._tag === "xl") {
        const cache = randomTokens(b * 4 * spec.dModel, 1000, 5);
        for (let l = 0; l < spec.nLayers; l++) {
          const data = Float64Array.from(cache, (v) => v / 1000 - 0.5);
          state0[`cache[${l}]`] = { shape: [b, 4, spec.dModel], dtype: "float32", data };
        }
        state = Object.fromEntries(
          Object.entries(state0).map((
            [n, v],
          ) => [n, tf.tensor(Float32Array.from(v.data), [...v.shape])]),
        );
      } else {
        state0 = zeroReferenceState(state);
      }
      const tok = int2d(tokens, b), tgt = int2d(targets, b);
      const step = program.trainStep(params, state, { tokens: tok, targets: tgt }, {
        bpttSegments: k,
      });
      const loss = () => referenceLmLoss(spec, values, tokens, targets, b, state0);
      const base = loss();
      assert.ok(
        Math.abs(base - step.loss) < 1e-4 * Math.abs(base),
        `loss ${step.loss} vs reference ${base}`,
      );
      // Up to 24 entries per leaf, spread over it.
      assertGradients(step.grads, Object.keys(step.grads), values, 24, loss, `${name}: `);
      disposeTrainStep(program, params, state, step, [tok, tgt]);
    });
  }
});

Deno.test("Program.forward: 6 segments one call at a time equal 6 in one call (CRT, Transformer-XL)", () => {
  for (const spec of [tinyCrtGru, tinyCrtNcgru, tinyXl]) {
    const program = compiled(spec);
    const b = 2, n = 6, s = spec.segmentLen;
    const tokens = randomTokens(b * n * s, spec.vocabSize, 7);
    const params = program.init(1);
    const all = program.forward(params, program.initState(b), int2d(tokens, b));
    let state = program.initState(b);
    const pieces: tf.Tensor[] = [];
    for (let i = 0; i < n; i++) {
      const seg = new Int32Array(b * s);
      for (let r = 0; r < b; r++) {
        seg.set(tokens.subarray(r * n * s + i * s, r * n * s + (i + 1) * s), r * s);
      }
      const out = program.forward(params, state, int2d(seg, b));
      pieces.push(out.logits);
      state = out.state;
    }
    const stepwise = tf.concat(pieces, 1);
    assert.ok(maxDiff(all.logits, stepwise) <= 1e-6, `${spec._tag}: logits differ`);
    for (const name of Object.keys(all.state)) {
      assert.ok(
        maxDiff(all.state[name], state[name]) <= 1e-6,
        `${spec._tag}: state ${name} differs`,
      );
    }
    assert.ok(Object.keys(all.state).length > 0, "the model carries state");
  }
});

Deno.test("Program.inferStep: token-by-token streaming equals the segment-at-once forward pass", () => {
  for (const spec of [tinyCrtGru, tinyXl, tinyTransformer]) {
    const program = compiled(spec);
    const n = 2 * spec.segmentLen + 2;
    const tokens = randomTokens(n, spec.vocabSize, 9);
    const params = program.init(2);
    const diff = streamingGap(program, params, tokens);
    assert.ok(diff <= 1e-5, `${spec._tag}: streaming differs by ${diff}`);
  }
});

Deno.test("Program.loss: the gradient through the memory is cut before K segments, not within", () => {
  for (const spec of [tinyCrtGru, tinyCrtNcgru]) {
    const program = compiled(spec);
    const b = 2, k = 2;
    const params = program.init(4);
    const gradOfFinalMemory = (segments: number): number => {
      const len = segments * spec.segmentLen;
      const tokens = int2d(randomTokens(b * len, spec.vocabSize, 3), b);
      const targets = int2d(randomTokens(b * len, spec.vocabSize, 4), b);
      const m0 = tf.randomNormal([b, spec.memory.dMemory], 0, 1, "float32", 1);
      const g = tf.grad((m: tf.Tensor) => {
        const out = program.loss(params, { memory: m }, { tokens, targets }, {
          training: false,
          bpttSegments: k,
        });
        return tf.sum(out.state.memory);
      })(m0);
      return tf.max(tf.abs(g)).dataSync()[0];
    };
    assert.equal(gradOfFinalMemory(k + 1), 0, "K+1 segments back: exactly zero");
    assert.ok(gradOfFinalMemory(k) > 1e-6, "K segments back: not zero");
  }
});

Deno.test("NC-GRU: U stays orthogonal after 100 optimizer steps", () => {
  const program = compiled(tinyCrtNcgru);
  const b = 4, len = 2 * tinyCrtNcgru.segmentLen;
  let ts = startTraining(program, { seed: 0, batchSize: b });
  for (let i = 0; i < 100; i++) {
    const tokens = int2d(randomTokens(b * len, 7, 100 + i), b);
    const targets = int2d(randomTokens(b * len, 7, 200 + i), b);
    ts = trainOn(program, ts, { tokens, targets }, { lr: 1e-2, bpttSegments: 2, seed: i }).next;
    tokens.dispose();
    targets.dispose();
  }
  const flat = flattenParams(ts.params);
  for (const path of ["memory.rnn.uc", "memory.rnn.ur"]) {
    const u = flat[path].dataSync();
    const err = orthogonalityError(u, 6);
    assert.ok(err < 1e-4, `${path}: ‖UᵀU − I‖max = ${err}`);
  }
  // The generator moved: this was a real test of the update, not of the initial state.
  const a0 = initValues(program.layout, 0).get("memory.rnn.a")!;
  const a1 = flat["memory.rnn.a"].dataSync();
  assert.ok(a1.some((v, i) => Math.abs(v - a0[i]) > 1e-3), "A was updated");
  disposeTraining(program, ts);
});

Deno.test("cayleyGradient matches finite differences of L(U(A)) = Σ G ⊙ U(A)", () => {
  const n = 4;
  const a = new Float64Array(n * n);
  const pairs: [number, number, number][] = [[0, 1, 0.3], [2, 3, -0.7], [0, 2, 0.2], [1, 3, 0.5]];
  for (const [i, j, v] of pairs) {
    a[i * n + j] = v;
    a[j * n + i] = -v;
  }
  const d = Float64Array.from([-1, 1, 1, -1]);
  const g = Float64Array.from({ length: n * n }, (_, i) => Math.sin(i + 1));
  const lossOf = (x: Float64Array) => {
    const u = cayley(inverse(identityPlus(x, n), n), x, d, n);
    return u.reduce((s, v, i) => s + v * g[i], 0);
  };
  const analytic = cayleyGradient(g, { inv: inverse(identityPlus(a, n), n), a, d, n });
  const h = 1e-6;
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const up = Float64Array.from(a), dn = Float64Array.from(a);
      up[i * n + j] += h;
      up[j * n + i] -= h;
      dn[i * n + j] -= h;
      dn[j * n + i] += h;
      const fd = (lossOf(up) - lossOf(dn)) / (2 * h);
      // The formula gives the derivative along the skew basis direction E_ij − E_ji.
      const an = analytic[i * n + j];
      assert.ok(Math.abs(fd - an) < 1e-6, `(${i},${j}): ${an} vs ${fd}`);
    }
  }
});

Deno.test("core/train.trainOn: no tensor leak between step 10 and step 200", () => {
  const program = compiled(tinyCrtGru);
  const b = 2, len = 2 * tinyCrtGru.segmentLen;
  const tokens = int2d(randomTokens(b * len, 7, 1), b);
  const targets = int2d(randomTokens(b * len, 7, 2), b);
  let ts = startTraining(program, { seed: 0, batchSize: b });
  let at10 = -1;
  for (let i = 1; i <= 200; i++) {
    ts = trainOn(program, ts, { tokens, targets }, { lr: 1e-3, bpttSegments: 2, seed: i }).next;
    if (i === 10) at10 = liveTensors();
  }
  assert.equal(liveTensors(), at10);
  disposeTraining(program, ts);
  tokens.dispose();
  targets.dispose();
});

Deno.test("Program.flops equals the formula written out for a Transformer and a CRT", () => {
  // Per token, 2 FLOPs per multiply-add, matmuls only.
  {
    const spec = {
      ...tinyTransformer,
      vocabSize: 50,
      dModel: 16,
      nHeads: 4,
      dFF: 40,
      nLayers: 2,
      segmentLen: 10,
    };
    const { dModel: d, dFF: f, vocabSize: v, nLayers: l, segmentLen: s } = spec;
    // q (D²), kv (2D²), out (D²), FFN (2DF); scores and values over S keys (causal, computed in full).
    const forward = l * (2 * 4 * d * d + 2 * 2 * d * f + 2 * 2 * s * d) + 2 * d * v;
    const p = compiled(spec);
    assert.equal(p.flops.forwardPerToken, forward);
    assert.equal(p.flops.trainPerToken, 3 * forward); // every product needs both gradients
  }
  {
    const spec = {
      ...tinyCrtGru,
      vocabSize: 40,
      dModel: 12,
      nHeads: 3,
      dFF: 20,
      nLayers: 2,
      segmentLen: 6,
      memory: { ...tinyCrtGru.memory, dMemory: 10 },
    };
    const { dModel: d, dFF: f, vocabSize: v, nLayers: l, segmentLen: s } = spec;
    const m = spec.memory.dMemory;
    const t = s + 1; // the memory token is one more position
    const blocks = l * (t * (2 * 4 * d * d + 2 * 2 * d * f) + 2 * 2 * t * t * d);
    const readout = s * 2 * d * v;
    const memToken = 2 * m * d; // W_m · m
    const gruInput = 2 * d * 3 * m; // mean of outputs · W_x
    const gruRecurrent = 3 * 2 * m * m; // h · U_r, U_z, U_c
    const forward = (blocks + readout + memToken + gruInput + gruRecurrent) / s;
    // The incoming memory is cut from the graph: W_m and the U's get a weight gradient only.
    const train = (3 * (blocks + readout + gruInput) + 2 * (memToken + gruRecurrent)) / s;
    const p = compiled(spec);
    assert.ok(
      Math.abs(p.flops.forwardPerToken - forward) < 1e-9 * forward,
      `${p.flops.forwardPerToken} vs ${forward}`,
    );
    assert.ok(
      Math.abs(p.flops.trainPerToken - train) < 1e-9 * train,
      `${p.flops.trainPerToken} vs ${train}`,
    );
  }
});

Deno.test("compile: a kernel missing from the backend fails naming the op's spec path", () => {
  // The attention's softmax runs in the fused attention kernel on wasm, op by op elsewhere.
  const names = ["Softmax", "CrtAttention"];
  const kernels = names.map((n) => tf.getKernel(n, tf.getBackend()));
  kernels.forEach((k, i) => k !== undefined && tf.unregisterKernel(names[i], tf.getBackend()));
  try {
    const p = compile(tinyCrtGru);
    assert.ok(E.isLeft(p));
    assert.equal(p.left.stage, "kernels");
    assert.match(p.left.message, /Softmax|CrtAttention/);
    assert.match(p.left.message, /model\.blocks\[0\]\.attn/);
  } finally {
    for (const k of kernels) if (k !== undefined) tf.registerKernel(k);
  }
});

Deno.test("compile: a malformed spec built in code is named by field, never a tfjs stack trace", () => {
  const bad: [ModelSpec, RegExp][] = [
    [{ ...tinyCrtGru, nHeads: 3 }, /model\.nHeads: 3 does not divide model\.dModel \(8\)/],
    [{ ...tinyCrtGru, dModel: -8 }, /model\.dModel/],
    [{ ...tinyCrtGru, segmentLen: 0 }, /model\.segmentLen/],
    [
      { ...tinyCrtGru, memory: { ...tinyCrtGru.memory, cell: "lstm" as "gru" } },
      /model\.memory\.cell/,
    ],
    [{ ...tinyTransformer, extra: 1 } as ModelSpec, /model\.extra: unknown field/],
  ];
  for (const [spec, message] of bad) {
    const p = compile(spec);
    assert.ok(E.isLeft(p), `accepted ${JSON.stringify(spec)}`);
    assert.equal(p.left.stage, "spec");
    assert.match(p.left.message, message);
  }
});
