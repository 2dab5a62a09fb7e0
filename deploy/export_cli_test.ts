import assert from "node:assert/strict";
import { join } from "node:path";
import { readCheckpoint, readLatestCheckpoint } from "../experiments/loop/checkpoint.ts";
import { readCorpus } from "../experiments/data/ptb.ts";
import { tinyExperiment } from "../tests/_corpus.ts";
import { trainTinyRun } from "../tests/_tiny_run.ts";
import { main } from "./export_cli.ts";
import { loadModel } from "./loaded.ts";
import { decodeModelFile } from "./model_file.ts";
import { scoreIds } from "./score.ts";

// One tiny trained run shared by the tests (10 steps, checkpoints at 5 and 10).
const { dataDir, runDir } = await trainTinyRun();
const results = JSON.parse(await Deno.readTextFile(join(runDir, "results.json")));

const run = async (...args: string[]) => {
  const out: string[] = [], err: string[] = [];
  const code = await main(args, { stdout: (s) => out.push(s), stderr: (s) => err.push(s) });
  return { code, out: out.join(""), err: err.join("") };
};

Deno.test("deno task export: the latest checkpoint, the spec and the training vocabulary, verified", async () => {
  const r = await run(runDir);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /model\.crtm: .* MB, f32 weights, crt \(41 words\), run step 10/);
  assert.match(r.err, /vocabulary: 41 words rebuilt from .* \(SHA-256 checked\)/);
  const m = await decodeModelFile(await Deno.readFile(join(runDir, "model.crtm")));
  const corpus = await readCorpus(dataDir);
  if (corpus._tag === "Left") throw new Error(corpus.left.message);
  assert.deepEqual(m.vocab, corpus.right.vocab.words);
  assert.deepEqual(m.spec, tinyExperiment(dataDir).model);
  const ckpt = await readLatestCheckpoint(join(runDir, "checkpoints"));
  if (ckpt._tag === "Left") throw new Error(ckpt.left.message);
  for (const [path, t] of Object.entries(ckpt.right.checkpoint.params)) {
    assert.deepEqual(Array.from(m.params[path].data), Array.from(t.data), path);
  }
  assert.equal(m.meta.step, 10);
  assert.equal(m.meta.valid_ppl, results.valid_ppl);
  assert.equal(m.meta.train_sha256, results.data_sha256.train);
  // The exported model predicts the valid split about as well as the run's own evaluation.
  const model = await loadModel(m);
  const s = scoreIds(model, corpus.right.valid);
  model.dispose();
  assert.ok(
    Math.abs(Math.log(s.ppl / results.valid_ppl)) < 0.1,
    `${s.ppl} vs ${results.valid_ppl}`,
  );
});

Deno.test("deno task export --int8 --checkpoint --out: smaller, from the given step", async () => {
  const ckpt = join(runDir, "checkpoints", "ckpt-000000005.bin");
  const out = join(dataDir, "five.crtm");
  const r = await run(runDir, "--int8", "--checkpoint", ckpt, "--out", out);
  assert.equal(r.code, 0, r.err);
  const bytes = await Deno.readFile(out);
  const m = await decodeModelFile(bytes);
  assert.equal(m.quantization, "int8");
  assert.equal(m.meta.step, 5);
  const c = await readCheckpoint(ckpt);
  if (c._tag === "Left") throw new Error(c.left.message);
  const w = c.right.params["blocks[0].ffn.w1"].data;
  const back = m.params["blocks[0].ffn.w1"].data;
  const maxAbs = Math.max(...Array.from(w, Math.abs));
  assert.ok(w.every((x, i) => Math.abs(x - back[i]) <= maxAbs / 254 + 1e-7));
  assert.ok(bytes.length < (await Deno.stat(join(runDir, "model.crtm"))).size / 2);
});

Deno.test("deno task export: wrong training file, missing data, not a run folder → exit 2", async () => {
  // The recorded SHA-256 of the training file no longer matches.
  const file = join(runDir, "results.json");
  await Deno.writeTextFile(
    file,
    JSON.stringify({ ...results, data_sha256: { ...results.data_sha256, train: "ab".repeat(32) } }),
  );
  const sha = await run(runDir, "--out", join(dataDir, "x.crtm"));
  await Deno.writeTextFile(file, JSON.stringify(results));
  assert.equal(sha.code, 2);
  assert.match(sha.err, /ptb\.train\.txt has SHA-256 [0-9a-f]{64}, the run trained on (ab){32}/);

  const noData = await run(runDir, "--data", join(dataDir, "elsewhere"));
  assert.equal(noData.code, 2);
  assert.match(
    noData.err,
    /training file is not at .*elsewhere.*: give its folder with --data DIR/,
  );

  const notRun = await run(dataDir);
  assert.equal(notRun.code, 2);
  assert.match(notRun.err, /config\.json: not found/);
  assert.equal((await run()).code, 2);
  assert.equal((await run(runDir, "--checkpoint", join(dataDir, "nope.bin"))).code, 2);
  const help = await run("--help");
  assert.equal(help.code, 0);
  assert.match(help.out, /usage: deno task export <RUN_DIR>/);
});

Deno.test({
  name: "export tests: clean up",
  fn: async () => await Deno.remove(dataDir, { recursive: true }),
});
