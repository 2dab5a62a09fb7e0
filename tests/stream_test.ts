/**
 * Streaming with the key/value cache (spec/stream.ts through
 * `Program.inferStep`): the same logits and carried state as the
 * segment-at-once forward pass for every model variant, whatever the feed
 * sizes, and no tensor left behind.
 */
import assert from "node:assert/strict";
import { ensureBackend } from "../ops/backend.ts";
import { tf } from "../ops/tf.ts";
import type { CrtSpec, ModelSpec } from "../spec/codecs.ts";
import { canStream, openShapes } from "../spec/stream.ts";
import { randomTokens, tinyCrtGru, tinyModels, tinyXl } from "./_tiny.ts";
import { compiled, maxDiff, streamIn } from "./_program.ts";

await ensureBackend();

const tinyCrtSlot: CrtSpec = {
  ...tinyCrtGru,
  positional: "sinusoidal",
  memory: { ...tinyCrtGru.memory, rnnInput: "slot" },
};
const variants: Record<string, ModelSpec> = {
  ...tinyModels,
  "CRT (slot)": tinyCrtSlot,
  "Transformer-XL, cache shorter than a segment": { ...tinyXl, memLen: 2 },
};

Deno.test("inferStep (cached): equals forward for every model variant, batch 2, any feed sizes", () => {
  for (const [name, spec] of Object.entries(variants)) {
    assert.ok(canStream(spec), name);
    const p = compiled(spec);
    const params = p.init(3);
    const b = 2, len = 3 * spec.segmentLen; // whole segments: the final states must agree too
    const tokens = randomTokens(b * len, spec.vocabSize, 11);
    const tok = tf.tensor2d(tokens, [b, len], "int32");
    const init = p.initState(b);
    const ref = p.forward(params, init, tok);
    for (const sizes of [[1], [2, 1], [len], [4, 2, 3]]) {
      const { logits, stream } = streamIn(p, params, tokens, b, sizes);
      const d = maxDiff(ref.logits, logits);
      assert.ok(d <= 1e-5, `${name}, feeds of ${sizes}: logits differ by ${d}`);
      for (const [k, t] of Object.entries(ref.state)) {
        const ds = maxDiff(t, stream.state[k]);
        assert.ok(ds <= 1e-5, `${name}, feeds of ${sizes}: state ${k} differs by ${ds}`);
      }
      assert.equal(stream.open.length, 0);
      assert.equal(Object.keys(stream.state).some((k) => k.startsWith("open:")), false);
      logits.dispose();
      p.disposeState(stream.state);
    }
    tok.dispose();
    ref.logits.dispose();
    p.disposeState(ref.state);
    p.disposeState(init);
  }
});

Deno.test("inferStep: switching between cached and recompute mid-segment gives the same logits", () => {
  for (const spec of Object.values(tinyModels)) {
    const p = compiled(spec);
    const params = p.init(5);
    const len = 4 * spec.segmentLen + 1;
    const tokens = randomTokens(len, spec.vocabSize, 2);
    const cached = streamIn(p, params, tokens, 1, [1]);
    const mixed = streamIn(p, params, tokens, 1, [1, 2], { recomputeEvery: 2 });
    const d = maxDiff(cached.logits, mixed.logits);
    assert.ok(d <= 1e-5, `${spec._tag}: mixed streaming differs by ${d}`);
    for (const s of [cached, mixed]) {
      s.logits.dispose();
      p.disposeState(s.stream.state);
    }
  }
});

Deno.test("inferStep: readout last gives the last row of readout all", () => {
  const p = compiled(tinyCrtGru);
  const params = p.init(1);
  const tokens = randomTokens(8, tinyCrtGru.vocabSize, 4);
  for (const recompute of [false, true]) {
    const s0 = p.openStream(1);
    const all = p.inferStep(params, s0, tokens, { recompute });
    const last = p.inferStep(params, s0, tokens, { readout: "last", recompute });
    assert.deepEqual(last.logits.shape, [1, 1, tinyCrtGru.vocabSize]);
    const tail = tf.slice(all.logits, [0, 7, 0], [1, 1, -1]);
    assert.ok(maxDiff(tail, last.logits) <= 1e-6);
    for (const t of [tail, all.logits, last.logits]) t.dispose();
    for (const s of [s0, all.stream, last.stream]) p.disposeState(s.state);
  }
});

Deno.test("inferStep: the open caches are bounded by the segment and nothing leaks", () => {
  const spec = tinyCrtGru;
  const p = compiled(spec);
  const params = p.init(0);
  let stream = p.openStream(1);
  const tokens = randomTokens(10 * spec.segmentLen, spec.vocabSize, 1);
  // Warm up the step graphs of every open length, then count.
  for (let i = 0; i < spec.segmentLen; i++) {
    const out = p.inferStep(params, stream, tokens.subarray(i, i + 1), { readout: "last" });
    out.logits.dispose();
    p.disposeState(stream.state);
    stream = out.stream;
  }
  const before = tf.memory().numTensors;
  for (let i = spec.segmentLen; i < tokens.length; i++) {
    const out = p.inferStep(params, stream, tokens.subarray(i, i + 1), { readout: "last" });
    out.logits.dispose();
    p.disposeState(stream.state);
    stream = out.stream;
    const shapes = openShapes(spec, { batchSize: 1, start: stream.open.length });
    assert.deepEqual(
      Object.keys(stream.state).filter((k) => k.startsWith("open:")).sort(),
      Object.keys(shapes).map((k) => `open:${k}`).sort(),
    );
    for (const [k, s] of Object.entries(shapes)) {
      assert.deepEqual(stream.state[`open:${k}`].shape, s, k);
    }
  }
  assert.equal(tf.memory().numTensors, before);
  p.disposeState(stream.state);
});

Deno.test("inferStep: bad token ids and empty feeds are named", () => {
  const p = compiled(tinyCrtGru);
  const params = p.init(0);
  const s = p.openStream(1);
  assert.throws(
    () => p.inferStep(params, s, Int32Array.of(1, 7)),
    /token 7 at index 1 is outside the vocabulary \[0, 7\)/,
  );
  assert.throws(() => p.inferStep(params, s, new Int32Array(0)), /non-empty rows/);
  p.disposeState(s.state);
});
