import assert from "node:assert/strict";
import { join } from "node:path";
import { ensureBackend } from "../ops/backend.ts";
import { tf } from "../ops/tf.ts";
import { randomTokens, tinyCrtGru, tinyXl } from "../tests/_tiny.ts";
import { tinyModelFile, withFloat } from "./_testing.ts";
import { loadModel } from "./loaded.ts";
import { scoreIds } from "./score.ts";
import { main } from "./score_cli.ts";

await ensureBackend();

/** exp(mean NLL) of ids[1:] given ids[:-1] from one Program.forward call, in float64. */
const forwardNll = (m: Awaited<ReturnType<typeof loadModel>>, ids: Int32Array): number => {
  const p = m.program, v = p.spec.vocabSize, n = ids.length - 1;
  const state = p.initState(1);
  const tokens = tf.tensor2d(ids.subarray(0, n), [1, n], "int32");
  const out = p.forward(m.params, state, tokens);
  const logits = out.logits.dataSync() as Float32Array;
  [tokens, out.logits].forEach((t) => t.dispose());
  p.disposeState(state);
  p.disposeState(out.state);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const row = logits.subarray(i * v, (i + 1) * v);
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
    sum += lse - row[ids[i + 1]];
  }
  return sum / n;
};

Deno.test("scoreIds: ppl is exp(mean NLL) of the forward pass", async () => {
  for (const spec of [tinyCrtGru, tinyXl]) {
    const m = await loadModel((await tinyModelFile(spec, { seed: 2 })).bytes);
    const ids = randomTokens(7 * spec.segmentLen + 2, spec.vocabSize, 5);
    const want = forwardNll(m, ids);
    const progress: number[] = [];
    const s = scoreIds(m, ids, { progressEvery: 5, onProgress: (done) => progress.push(done) });
    assert.equal(s.tokens, ids.length - 1);
    assert.ok(Math.abs(s.nll - want) < 1e-5, `${spec._tag}: ${s.nll} vs ${want}`);
    assert.ok(Math.abs(s.ppl - Math.exp(want)) / Math.exp(want) < 1e-5);
    assert.equal(progress.at(-1), ids.length - 1);
    assert.throws(() => scoreIds(m, ids.subarray(0, 1)), /nothing to predict/);
    m.dispose();
  }
});

Deno.test("deno task score: PTB line rules, unknown words, JSON output, exit 2 on bad input", async () => {
  const dir = await Deno.makeTempDir({ prefix: "crt-score-" });
  const file = await tinyModelFile(tinyCrtGru, { seed: 2 });
  const model = join(dir, "model.crtm"), text = join(dir, "text.txt");
  await Deno.writeFile(model, file.bytes);
  // vocab: <eos> w1 … w5 <unk>; the last line has no line break but still ends in <eos>.
  await Deno.writeTextFile(text, " w1 w2 w3\n w4 zebra w5 w1\n w2 w3");
  const run = async (...args: string[]) => {
    const out: string[] = [], err: string[] = [];
    const code = await main(args, { stdout: (s) => out.push(s), stderr: (s) => err.push(s) });
    return { code, out: out.join(""), err: err.join("") };
  };
  const r = await run(model, text, "--json");
  assert.equal(r.code, 0, r.err);
  const got = JSON.parse(r.out);
  assert.equal(got.tokens, 12 - 1);
  assert.equal(got.unknown_words, 1);
  assert.match(r.err, /1 word\(s\) not in the vocabulary read as <unk> \(first: "zebra", line 2\)/);
  const m = await loadModel(file.bytes);
  const ids = Int32Array.of(1, 2, 3, 0, 4, 6, 5, 1, 0, 2, 3, 0);
  assert.ok(Math.abs(got.ppl - Math.exp(forwardNll(m, ids))) < 1e-6 * got.ppl);
  m.dispose();
  const human = await run(model, text);
  assert.match(
    human.out,
    /11 tokens scored \(1 unknown words\)\nNLL \d\.\d{4} nats\/token, ppl \d/,
  );

  await Deno.writeTextFile(text, "\n");
  assert.match((await run(model, text)).err, /fewer than 2 tokens/);
  await Deno.writeFile(text, Uint8Array.of(0x77, 0xff, 0x0a));
  assert.match((await run(model, text)).err, /not UTF-8 text/);
  assert.equal((await run(model)).code, 2);
  assert.equal((await run(join(dir, "none.crtm"), text)).code, 2);
  await Deno.writeTextFile(text, " w1 w2 w3\n");
  const core = await run(model, text, "--blas-core", "no such");
  assert.equal(core.code, 2);
  assert.match(
    core.err,
    /--blas-core: expected an OpenBLAS core name \(e\.g\. SkylakeX\) or detect/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("deno task score: a model file with a NaN weight is an error naming file and tensor, not ppl NaN", async () => {
  const dir = await Deno.makeTempDir({ prefix: "crt-score-nan-" });
  const file = await tinyModelFile(tinyCrtGru, { seed: 2 });
  const model = join(dir, "nan.crtm"), text = join(dir, "text.txt");
  await Deno.writeFile(model, await withFloat(file.bytes, "head.w", 4, NaN));
  await Deno.writeTextFile(text, "w1 w2 w3\nw4 w5 w1\n");
  const out: string[] = [], err: string[] = [];
  const code = await main([model, text], {
    stdout: (s) => out.push(s),
    stderr: (s) => err.push(s),
  });
  assert.equal(code, 2);
  assert.equal(out.join(""), "");
  const message = err.join("");
  assert.match(message, /nan\.crtm: header\.tensors\[\d+\] \(head\.w\): element 4 is NaN/);
  assert.doesNotMatch(message, /\n\s+at /); // no stack trace
  await Deno.remove(dir, { recursive: true });
});
