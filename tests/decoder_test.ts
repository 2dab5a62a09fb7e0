/**
 * The decode loop (`Program.openDecoder`, core/decoder.ts): the logits and
 * draws of `inferStep` / `drawStep` to the bit for every model variant,
 * whichever path each token takes, on both matmul tiers; a token inside a
 * segment makes no tensor and runs one kernel per region; bad input named.
 */
import assert from "node:assert/strict";
import { ensureBackend } from "../ops/backend.ts";
import { installMatmul } from "../ops/matmul.ts";
import { loadBlas } from "../ops/blas.ts";
import { directCallObservers } from "../ops/lower.ts";
import { tf } from "../ops/tf.ts";
import type { ModelSpec } from "../spec/codecs.ts";
import type { Program } from "../core/program.ts";
import { randomTokens, tinyCrtGru, tinyModels, tinyXl } from "./_tiny.ts";
import { compiled } from "./_program.ts";

await ensureBackend();
const tiers = (loadBlas()._tag === "Right" ? ["native", "portable"] : ["portable"]) as (
  | "native"
  | "portable"
)[];

// A vocabulary the readout kernel takes (a multiple of 4), so its steps have a plan.
const longCrt: ModelSpec = { ...tinyCrtGru, vocabSize: 8, segmentLen: 6 };
const variants: Record<string, ModelSpec> = {
  ...tinyModels,
  ...Object.fromEntries(
    Object.entries(tinyModels).map(([n, s]) => [`${n}, V = 8`, { ...s, vocabSize: 8 }]),
  ),
  "CRT (slot)": { ...tinyCrtGru, memory: { ...tinyCrtGru.memory, rnnInput: "slot" } },
  "CRT, S = 6": longCrt,
  "Transformer-XL, cache shorter than a segment": { ...tinyXl, memLen: 2 },
};

/** The same feeds through `inferStep` / `drawStep` on a stream of tensors. */
const tensorStream = (p: Program, params: ReturnType<Program["init"]>) => {
  let s = p.openStream(1);
  return {
    logits: (ids: Int32Array, readout: "last" | "all"): Float32Array => {
      const r = p.inferStep(params, s, ids, { readout });
      const out = r.logits.dataSync() as Float32Array;
      r.logits.dispose();
      p.disposeState(s.state);
      s = r.stream;
      return out;
    },
    draw: (ids: Int32Array, temperature: number, topK: number, u: number): number => {
      const r = p.drawStep(params, s, ids, { temperature, topK, uniforms: Float32Array.of(u) });
      p.disposeState(s.state);
      s = r.stream;
      return r.tokens[0];
    },
    dispose: () => p.disposeState(s.state),
  };
};

for (const tier of tiers) {
  Deno.test(`openDecoder (${tier} matmul): inferStep's logits and drawStep's draws, to the bit`, () => {
    assert.equal(installMatmul(tier)._tag, "Right");
    for (const [name, spec] of Object.entries(variants)) {
      const p = compiled(spec);
      const params = p.init(4);
      const before = tf.memory().numTensors;
      const dec = p.openDecoder(params), ref = tensorStream(p, params);
      const ids = randomTokens(40 + 2 * spec.segmentLen, spec.vocabSize, 9);
      // Single tokens across segment ends, a few at once mid-segment, every row read out.
      const feeds = [1, 1, 1, 1, 2, 1, 1, 3, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1];
      let at = 0;
      feeds.forEach((n, i) => {
        const chunk = ids.subarray(at, at + n);
        const readout = i === 7 ? "all" : "last";
        assert.deepEqual(
          dec.logits(chunk, readout),
          ref.logits(chunk, readout),
          `${name}, feed ${i}`,
        );
        at += n;
      });
      for (let i = 0; i < 2 * spec.segmentLen; i++) {
        const chunk = ids.subarray(at, at + 1);
        const [t, k, u] = [i % 3 === 0 ? 0 : 0.9, i % 2 === 0 ? 0 : 3, ((i * 37) % 100) / 100];
        assert.equal(
          dec.draw(chunk, { temperature: t, topK: k }, u),
          ref.draw(chunk, t, k, u),
          `${name}, draw ${i}`,
        );
        at++;
      }
      assert.equal(dec.fed, at);
      dec.dispose();
      ref.dispose();
      assert.equal(tf.memory().numTensors, before, `${name}: tensors left`);
    }
  });
}

Deno.test("openDecoder: single tokens make no tensor, a segment's ends included; one kernel per region", () => {
  const p = compiled(longCrt);
  const params = p.init(1);
  const dec = p.openDecoder(params);
  const s = longCrt.segmentLen;
  const ids = randomTokens(4 * s, longCrt.vocabSize, 2);
  for (let i = 0; i < s + 2; i++) dec.logits(ids.subarray(i, i + 1)); // plans made, state on the heap
  const calls: string[][] = [];
  const observe = (k: string) => calls[calls.length - 1].push(k);
  directCallObservers.add(observe);
  const { numTensors, numBytes } = tf.memory();
  for (let i = s + 2; i < 3 * s + 2; i++) {
    calls.push([]);
    assert.equal(dec.logits(ids.subarray(i, i + 1)).length, longCrt.vocabSize);
  }
  directCallObservers.delete(observe);
  if (tf.getBackend() === "wasm") {
    assert.equal(tf.memory().numTensors, numTensors);
    assert.equal(tf.memory().numBytes, numBytes);
    assert.deepEqual(calls[0], ["CrtEmbed", "CrtDecodeBlock", "CrtLmHead"]); // one layer, mid-segment
    // The token that closes a segment (position S − 1) and the one that opens the next.
    assert.deepEqual(calls[s - 3], [
      "CrtEmbed",
      "CrtDecodeBlock",
      "CrtLmHead",
      "Mean",
      "CrtRecurrent",
    ]);
    assert.deepEqual(calls[s - 2], [
      "CrtEmbed",
      "CrtLinear",
      "Concat",
      "CrtDecodeBlock",
      "CrtLmHead",
    ]);
  }
  dec.dispose();
});

Deno.test("openDecoder: bad tokens, uniforms and options are named; a disposed decoder says so", () => {
  const p = compiled(longCrt);
  const params = p.init(1);
  const dec = p.openDecoder(params);
  dec.logits(Int32Array.of(1, 2));
  assert.throws(() => dec.logits(Int32Array.of(longCrt.vocabSize)), /token 8 at index 0/);
  assert.throws(() => dec.logits(new Int32Array(0)), /no tokens given/);
  assert.throws(() => dec.draw(Int32Array.of(1), { temperature: 1, topK: 0 }, 1), /uniform 1/);
  assert.throws(
    () => dec.draw(Int32Array.of(1), { temperature: -1, topK: 0 }, 0.5),
    /temperature -1/,
  );
  assert.throws(() => dec.draw(Int32Array.of(1), { temperature: 1, topK: 1.5 }, 0.5), /topK 1.5/);
  assert.equal(dec.fed, 2, "a refused feed feeds nothing");
  dec.dispose();
  dec.dispose(); // idempotent
  assert.throws(() => dec.logits(Int32Array.of(1)), /disposed/);
});
