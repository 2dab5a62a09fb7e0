/**
 * The WikiText-103 experiment end to end on a generated corpus in the
 * release's format: presets, the command line, and a tiny adaptive-softmax
 * CRT trained and evaluated by the runner.
 */
import assert from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import { writeWt103Sample } from "../experiments/data/_wt103_fixture.ts";
import { main } from "../experiments/cli.ts";
import { decodeExperiment, type Experiment, tokensPerStep } from "../experiments/experiment.ts";
import { presetExperiment, WT103, WT103_QUICK } from "../experiments/presets.ts";
import { runExperiment } from "../experiments/tasks/language_model.ts";
import type { CrtSpec } from "../spec/codecs.ts";

Deno.test("wt103 presets: CRT, the full-length Transformer and Transformer-XL with the adaptive softmax", () => {
  const shapes: [string, string, number][] = [];
  for (const name of ["wt103", "wt103-full", "wt103-xl"]) {
    for (const quick of [false, true]) {
      const exp = presetExperiment(name, { quick });
      const r = decodeExperiment(exp);
      if (E.isLeft(r)) assert.fail(`${name}: ${r.left.message}`);
      assert.equal(exp.data.dataset, "wt103");
      assert.deepEqual(exp.model.readout, WT103.readout);
      assert.equal(exp.model.vocabSize, 267_735);
      assert.equal(tokensPerStep(exp), 2400, name);
      if (quick) {
        assert.equal(exp.name, `${name}-quick`);
        assert.equal(exp.training.tokens, WT103_QUICK.tokens);
      } else {
        assert.equal(exp.training.tokens, 103_227_021); // one epoch
        shapes.push([name, exp.model._tag, exp.model.segmentLen]);
      }
    }
  }
  assert.deepEqual(shapes, [["wt103", "crt", 75], ["wt103-full", "transformer", 150], [
    "wt103-xl",
    "xl",
    75,
  ]]);
});

const capture = () => {
  const out: string[] = [], err: string[] = [];
  return {
    io: { stdout: (s: string) => void out.push(s), stderr: (s: string) => void err.push(s) },
    out,
    err,
  };
};

Deno.test("experiment wt103 --dry-run prints the model's costs; a folder without the files is exit 2", async () => {
  const dir = await Deno.makeTempDir({ prefix: "crt-wt103-cli-" });
  try {
    const dry = capture();
    assert.equal(await main(["wt103", "--quick", "--data", dir, "--dry-run"], dry.io), 0);
    const plan = JSON.parse(dry.out.join(""));
    assert.equal(plan.experiment.data.dataset, "wt103");
    assert.ok(plan.params > 39e6, `${plan.params} parameters`); // the 267,735 × 128 embedding
    // Every tail cluster for every token: the head (5.1 M) and tails (4.1 M) dominate.
    assert.ok(plan.flops_per_token_forward > 9e6 && plan.flops_per_token_forward < 12e6);
    const run = capture();
    const status = await main(
      ["wt103", "--quick", "--data", dir, "--out", join(dir, "runs")],
      { ...run.io, onInterrupt: () => () => {} },
    );
    assert.equal(status, 2);
    assert.match(run.err.join(""), /wiki\.train\.tokens: file not found; put wiki\.train\.tokens/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runExperiment trains and evaluates an adaptive-softmax CRT on a generated WikiText-103", async () => {
  const dir = await Deno.makeTempDir({ prefix: "crt-wt103-run-" });
  try {
    await writeWt103Sample(dir, { trainTokens: 12_000, vocabSize: 400, seed: 9 });
    const model: CrtSpec = {
      ...WT103.crt,
      vocabSize: 420,
      readout: { _tag: "adaptive", cutoffs: [20, 100], divValue: 2 },
      dModel: 16,
      nHeads: 2,
      dFF: 32,
      nLayers: 1,
      segmentLen: 8,
      dropout: 0,
      memory: { ...WT103.crt.memory, dMemory: 16 },
    };
    const base = presetExperiment("wt103", { quick: true });
    const exp: Experiment = {
      ...base,
      name: "tiny-wt103",
      model,
      data: { dataset: "wt103", dir },
      training: {
        ...base.training,
        batchSize: 4,
        bpttSegments: 2,
        tokens: 30 * 64,
        maxSeconds: null,
        lr: 1e-2,
        warmupSteps: 3,
        checkpointEvery: 0,
        logEvery: 10,
      },
      evaluation: { batchSize: 4, test: true },
      output: { dir: join(dir, "runs"), keepCheckpoints: 1 },
    };
    const logs: string[] = [];
    // Interrupted at step 12, then resumed from its checkpoint with the same reader.
    const stop = new AbortController();
    const first = await runExperiment(exp, {
      runDir: join(dir, "run"),
      progress: false,
      log: (m) => logs.push(m),
      signal: stop.signal,
      onStep: ({ step }) => step === 12 && stop.abort(),
    });
    if (E.isLeft(first)) assert.fail(first.left.message);
    assert.equal(first.right._tag, "Interrupted");
    const config = JSON.parse(await Deno.readTextFile(join(dir, "run", "config.json")));
    assert.deepEqual(config.data, { dataset: "wt103", dir });
    const r = await runExperiment(exp, {
      runDir: join(dir, "run"),
      resume: true,
      progress: false,
      log: (m) => logs.push(m),
    });
    if (E.isLeft(r)) assert.fail(r.left.message);
    assert.equal(r.right._tag, "Completed");
    if (r.right._tag !== "Completed") return;
    const res = r.right.results;
    assert.equal(res.train_steps, 30);
    // A Zipf unigram source: far below the uniform 420 after 30 steps, and finite everywhere.
    assert.ok(res.valid_ppl > 1 && res.valid_ppl < 200, `valid ppl ${res.valid_ppl}`);
    assert.ok(res.test_ppl !== null && Number.isFinite(res.test_ppl));
    assert.ok(res.adaptive_softmax !== null);
    const shares = res.adaptive_softmax.tail_shares;
    assert.equal(shares.length, 2);
    assert.ok(shares[0] > 0 && shares[0] + shares[1] < 1);
    assert.ok(
      res.adaptive_softmax.flops_per_token_train_gathered < res.flops_per_token_train,
      "gathering saves work",
    );
    assert.match(logs.join("\n"), /building the vocabulary/);
    assert.match(logs.join("\n"), /vocabulary of \d+ words from the cache/); // the resumed read
    const saved = JSON.parse(await Deno.readTextFile(join(dir, "run", "results.json")));
    assert.deepEqual(saved.adaptive_softmax, res.adaptive_softmax);
    assert.equal(saved.data_sha256.train, res.data_sha256.train);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
