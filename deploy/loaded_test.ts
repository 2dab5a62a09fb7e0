import assert from "node:assert/strict";
import { ensureBackend } from "../ops/backend.ts";
import { tf } from "../ops/tf.ts";
import type { ModelSpec } from "../spec/types.ts";
import { randomTokens, tinyCrtGru, tinyCrtNcgru, tinyTransformer, tinyXl } from "../tests/_tiny.ts";
import { denoRun } from "../tests/_deno.ts";
import { tinyModelFile } from "./_testing.ts";
import { type LoadedModel, loadModel } from "./loaded.ts";
import { decodeModelFile, ModelFileError } from "./model_file.ts";

await ensureBackend();

/** Next-token probabilities [L, V] of the segment-at-once forward pass over `ids`, on the host. */
const forwardProbs = (m: LoadedModel, ids: Int32Array): Float32Array[] => {
  const p = m.program;
  const state = p.initState(1);
  const tokens = tf.tensor2d(ids, [1, ids.length], "int32");
  const out = p.forward(m.params, state, tokens);
  const softmax = tf.softmax(out.logits);
  const probs = softmax.dataSync() as Float32Array;
  softmax.dispose();
  tokens.dispose();
  out.logits.dispose();
  p.disposeState(out.state);
  p.disposeState(state);
  const v = p.spec.vocabSize;
  return Array.from({ length: ids.length }, (_, i) => probs.subarray(i * v, (i + 1) * v));
};

const maxDiff = (a: readonly Float32Array[], b: readonly Float32Array[]): number => {
  assert.equal(a.length, b.length);
  let d = 0;
  a.forEach((row, i) => row.forEach((x, j) => (d = Math.max(d, Math.abs(x - b[i][j])))));
  return d;
};

const models: Record<string, ModelSpec> = {
  "CRT (GRU)": tinyCrtGru,
  "CRT (NC-GRU)": tinyCrtNcgru,
  "full-length Transformer": tinyTransformer,
  "Transformer-XL": tinyXl,
};

Deno.test("TokenStream: token by token, in chunks and all at once equal the forward pass (1e-5)", async () => {
  for (const [name, spec] of Object.entries(models)) {
    const m = await loadModel((await tinyModelFile(spec, { seed: 4 })).bytes);
    const ids = randomTokens(4 * spec.segmentLen + 2, spec.vocabSize, 8);
    const ref = forwardProbs(m, ids);

    const one = m.openStream();
    const byToken = Array.from(ids, (id) => one.feed([id]));
    assert.equal(one.fed, ids.length);
    const d1 = maxDiff(byToken, ref);
    assert.ok(d1 <= 1e-5, `${name}: token by token differs by ${d1}`);

    const all = m.openStream();
    const d2 = maxDiff(all.feedAll(ids), ref);
    assert.ok(d2 <= 1e-5, `${name}: one feedAll differs by ${d2}`);

    const chunked = m.openStream();
    const got: Float32Array[] = [];
    for (let at = 0, k = 0; at < ids.length; k++) {
      const n = Math.min([2, 5, 1][k % 3], ids.length - at);
      got.push(...chunked.feedAll(ids.subarray(at, at + n)));
      at += n;
    }
    const d3 = maxDiff(got, ref);
    assert.ok(d3 <= 1e-5, `${name}: chunks differ by ${d3}`);

    // feed returns what feedAll gives for the last token; logProbs the log of the target's.
    const lp = m.openStream().logProbs(ids.subarray(0, -1), ids.subarray(1));
    lp.forEach((x, i) => {
      const want = Math.log(ref[i][ids[i + 1]]);
      assert.ok(Math.abs(x - want) <= 1e-4, `${name}: logProbs[${i}] ${x} vs ${want}`);
    });
    m.dispose(); // also disposes the streams still open
  }
  assert.equal(tf.memory().numTensors, 0, "loadModel and the streams leave no tensor behind");
});

Deno.test("TokenStream: 100,000 tokens keep the tensor count and the JS heap flat", async () => {
  // A child process, so that a full garbage collection can run before each heap reading.
  const script = new URL("./_stream_memory.ts", import.meta.url).pathname;
  const stdout = await denoRun([
    "run",
    "--v8-flags=--expose-gc",
    "--allow-read",
    "--allow-env",
    "--allow-ffi",
    "--allow-sys",
    script,
    "--tokens",
    "100000",
  ]);
  const r = JSON.parse(stdout) as {
    points: { tokens: number; tensors: number; heapBytes: number }[];
    seconds: number;
  };
  const [at10k, at100k] = r.points;
  assert.deepEqual([at10k.tokens, at100k.tokens], [10_000, 100_000]);
  const mb = (b: number) => (b / 1e6).toFixed(2);
  console.log(
    `100,000 tokens in ${r.seconds.toFixed(1)} s: tensors ${at10k.tensors} at 10k, ` +
      `${at100k.tensors} at 100k; heap ${mb(at10k.heapBytes)} MB at 10k, ` +
      `${mb(at100k.heapBytes)} MB at 100k`,
  );
  assert.equal(at100k.tensors, at10k.tensors, "live tensors");
  // A leak of 11 bytes per token would add 1 MB.
  const grew = at100k.heapBytes - at10k.heapBytes;
  assert.ok(grew < 1e6, `the heap grew by ${mb(grew)} MB from 10k to 100k tokens`);
});

Deno.test("TokenStream and LoadedModel: misuse is named", async () => {
  const m = await loadModel(await decodeModelFile((await tinyModelFile(tinyCrtGru)).bytes));
  const s = m.openStream();
  assert.throws(() => s.feed([]), /feed: no tokens given/);
  assert.throws(() => s.feed([1, 7]), /token 7 at index 1 is not an id of the vocabulary \[0, 7\)/);
  assert.throws(() => s.feed([1.5]), /token 1.5 at index 0/);
  assert.throws(() => s.logProbs([1, 2], [3]), /2 tokens but 1 targets/);
  s.dispose();
  assert.throws(() => s.feed([1]), /the stream was disposed/);
  m.dispose();
  assert.throws(() => m.openStream(), /the model was disposed/);
  // A corrupt file never reaches the backend.
  const bytes = (await tinyModelFile(tinyCrtGru)).bytes;
  bytes[100] ^= 1;
  await assert.rejects(loadModel(bytes), ModelFileError);
});

Deno.test("LoadedModel: encode and decode follow the PTB rules", async () => {
  const m = await loadModel((await tinyModelFile(tinyCrtGru)).bytes);
  // vocab: <eos> w1 … w5 <unk>
  assert.deepEqual(Array.from(m.encode(" w1 w2\nw3 zebra\n")), [1, 2, 0, 3, 6, 0]);
  assert.deepEqual(Array.from(m.encode("w4 w5")), [4, 5]); // no line break: no <eos>
  assert.equal(m.decode([1, 2, 0, 3, 6]), "w1 w2\nw3 <unk>");
  m.dispose();
});
