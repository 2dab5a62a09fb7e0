/**
 * The continuous-input encoder: feature vectors [B, S, F] projected to the
 * model width in place of the token embedding, with a classifier readout.
 * Gradients against finite differences of the float64 reference
 * interpreter, whole-clip equals segment-by-segment, FLOPs of the
 * projection, and the errors a wrong input gets.
 */
import assert from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { ensureBackend } from "../ops/backend.ts";
import type { RefTensor } from "../ops/reference.ts";
import { tf } from "../ops/tf.ts";
import {
  type CrtSpec,
  decodeModelSpec,
  type ModelSpec,
  type TransformerSpec,
} from "../spec/codecs.ts";
import { referenceCrt } from "../spec/reference_specs.ts";
import { paramLayout } from "../spec/layout.ts";
import { compiled, disposeTrainStep } from "./_program.ts";
import {
  assertGradients,
  float64Values,
  referenceSegment,
  segmentRows,
  zeroReferenceState,
} from "./_reference.ts";
import { tinyCrtGru, tinyTransformer } from "./_tiny.ts";

await ensureBackend();

const F = 5;

/** The tiny models of ./_tiny.ts reading frames of F features into a 4-class classifier. */
const crt: CrtSpec = {
  ...tinyCrtGru,
  vocabSize: 2,
  readout: { _tag: "classifier", nClasses: 4, pool: "memory" },
  input: { _tag: "features", dim: F },
};
const transformer: TransformerSpec = {
  ...tinyTransformer,
  vocabSize: 2,
  readout: { _tag: "classifier", nClasses: 4, pool: "mean" },
  input: { _tag: "features", dim: F },
  positional: "sinusoidal",
};

/** Deterministic frames in [-1, 1). */
const frames = (n: number, seed: number): Float64Array => {
  let s = seed >>> 0;
  return Float64Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
};

/** The classifier loss of a clip under the float64 reference interpreter, segment by segment. */
const referenceLoss = (
  spec: ModelSpec,
  values: Map<string, Float64Array>,
  x: Float64Array,
  labels: Int32Array,
  b: number,
  state0: Record<string, RefTensor>,
): number => {
  const s = spec.segmentLen, len = x.length / (b * F);
  let state = state0;
  let loss = NaN;
  for (let start = 0; start < len; start += s) {
    const last = start + s >= len;
    const data: Record<string, RefTensor> = {
      frames: { shape: [b, s, F], dtype: "float32", data: segmentRows(x, b, len, start, s, F) },
    };
    if (last) data.targets = { shape: [b], dtype: "int32", data: labels };
    const r = referenceSegment(spec, values, state, {
      batchSize: b,
      segmentLen: s,
      withLoss: last,
    }, data);
    if (last) loss = r.out.loss.data[0];
    state = r.state;
  }
  return loss;
};

Deno.test("feature input: trainStep gradients match finite differences of the reference (CRT over 3 segments, Transformer)", async (t) => {
  for (const [name, spec, k] of [["CRT", crt, 3], ["Transformer", transformer, 1]] as const) {
    await t.step(name, () => {
      const program = compiled(spec);
      const b = 2, len = k * spec.segmentLen;
      const x = frames(b * len * F, 9);
      const labels = Int32Array.of(1, 3);
      const values = float64Values(program.layout, 5);
      const params = program.init(5);
      const state = program.initState(b);
      const state0 = zeroReferenceState(state);
      const xs = tf.tensor3d(Float32Array.from(x), [b, len, F], "float32");
      const ys = tf.tensor1d(labels, "int32");
      const step = program.trainStep(params, state, { tokens: xs, targets: ys }, {
        bpttSegments: k,
      });
      // The frames as float32, as the program saw them.
      const x32 = Float64Array.from(Float32Array.from(x));
      const loss = () => referenceLoss(spec, values, x32, labels, b, state0);
      const base = loss();
      assert.ok(Math.abs(base - step.loss) < 1e-4 * Math.abs(base), `${step.loss} vs ${base}`);
      assert.ok(step.grads.embed !== undefined && step.grads.embedBias !== undefined);
      assertGradients(step.grads, Object.keys(step.grads), values, 12, loss, `${name}: `);
      disposeTrainStep(program, params, state, step, [xs, ys]);
    });
  }
});

Deno.test("feature input: a clip in one call equals its segments one call at a time", () => {
  const program = compiled(crt);
  const b = 2, n = 4, s = crt.segmentLen;
  const x = Float32Array.from(frames(b * n * s * F, 3));
  const params = program.init(2);
  const all = program.forward(params, program.initState(b), tf.tensor3d(x, [b, n * s, F]));
  assert.deepEqual(all.logits.shape, [b, 4]); // [B, C], from the last segment
  let state = program.initState(b);
  let last: tf.Tensor | null = null;
  for (let i = 0; i < n; i++) {
    const seg = new Float32Array(b * s * F);
    for (let r = 0; r < b; r++) {
      seg.set(x.subarray((r * n * s + i * s) * F, (r * n * s + (i + 1) * s) * F), r * s * F);
    }
    const out = program.forward(params, state, tf.tensor3d(seg, [b, s, F]));
    last = out.logits;
    state = out.state;
  }
  const diff = tf.max(tf.abs(tf.sub(all.logits, last!))).dataSync()[0];
  assert.ok(diff <= 1e-6, `logits differ by ${diff}`);
  const mem = tf.max(tf.abs(tf.sub(all.state.memory, state.memory))).dataSync()[0];
  assert.ok(mem <= 1e-6, `memory differs by ${mem}`);
});

Deno.test("feature input: the projection [F, D] and its bias replace the embedding, and cost 2·F·D FLOPs a frame", () => {
  const layout = paramLayout(crt);
  assert.deepEqual(layout.embed.shape, [F, 8]);
  assert.deepEqual(layout.embedBias?.shape, [8]);
  assert.equal(paramLayout(referenceCrt).embedBias, undefined);
  // The same classifier reading token ids (a lookup: no FLOPs) from a vocabulary of 50.
  const withTokens = compiled({ ...crt, input: { _tag: "tokens" }, vocabSize: 50 });
  const f5 = compiled(crt);
  assert.equal(f5.flops.forwardPerToken - withTokens.flops.forwardPerToken, 2 * F * 8);
  assert.equal(f5.paramCount - withTokens.paramCount, F * 8 + 8 - 50 * 8);
});

Deno.test("feature input: specs without `input` read tokens; bad inputs are named by field", () => {
  assert.equal(decodeModelSpec(JSON.parse(JSON.stringify(referenceCrt)))._tag, "Right");
  assert.equal(decodeModelSpec({ ...referenceCrt, input: { _tag: "tokens" } })._tag, "Right");
  const message = (u: unknown) => {
    const r = decodeModelSpec(u);
    if (E.isRight(r)) assert.fail("expected a Left");
    return r.left.message;
  };
  assert.equal(
    message({ ...referenceCrt, input: { _tag: "features", dim: 64 } }),
    'model.input: feature-vector input has no next tokens to predict: it needs model.readout { _tag: "classifier" } (got "lm")',
  );
  assert.equal(
    message({ ...crt, input: { _tag: "features", dim: 0 } }),
    "model.input.dim: must be a positive integer, got 0",
  );
  assert.equal(
    message({ ...crt, input: { _tag: "pixels" } }),
    'model.input._tag: unknown input kind "pixels" (expected tokens, features)',
  );
  assert.match(
    message({ ...crt, input: { _tag: "features" } }),
    /^model\.input\.dim: missing field/,
  );
});

Deno.test("feature input: a program refuses token ids, and streaming by tokens", () => {
  const program = compiled(crt);
  const params = program.init(0);
  const ids = tf.tensor2d([[1, 2, 3]], [1, 3], "int32");
  assert.throws(
    () => program.forward(params, program.initState(1), ids),
    /forward: the model reads frames \[B, L, 5\] float32 \(model\.input\.dim = 5\), got \[1, 3\] int32/,
  );
  const wrongF = tf.zeros([1, 3, 4]);
  assert.throws(
    () =>
      program.loss(params, program.initState(1), {
        tokens: wrongF,
        targets: tf.tensor1d([0], "int32"),
      }, {
        training: false,
        bpttSegments: 1,
      }),
    /loss: the model reads frames \[B, L, 5\].*got \[1, 3, 4\] float32/,
  );
  assert.throws(
    () => program.inferStep(params, program.openStream(1), Int32Array.of(1)),
    /inferStep streams token ids; this model reads frames/,
  );
  const tokens = compiled({ ...crt, input: { _tag: "tokens" }, vocabSize: 50 });
  assert.throws(
    () => tokens.forward(tokens.init(0), tokens.initState(1), tf.zeros([1, 3, 4])),
    /the model reads token ids \[B, L\] int32, got \[1, 3, 4\] float32/,
  );
});
