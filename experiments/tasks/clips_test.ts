import assert from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import { override } from "../overrides.ts";
import type { ClipTable } from "../data/smarthome.ts";
import { withSampleClips } from "../../tests/_clips.ts";
import type { SmarthomeExperiment } from "./clips_experiment.ts";
import { smarthomePreset } from "./clips_presets.ts";
import { runSmarthome, type SmarthomeResults } from "./clips.ts";

const F = 6, CLASSES = 3;

/** A tiny experiment on `dataDir`: 8 steps of 8 clips, K = 3 segments of 4 frames. */
const tiny = (dataDir: string): SmarthomeExperiment =>
  override(smarthomePreset("smarthome", { quick: true }), {
    name: "tiny",
    model: {
      dModel: 16,
      nHeads: 2,
      dFF: 32,
      nLayers: 1,
      segmentLen: 4,
      dropout: 0.1,
      input: { _tag: "features", dim: F },
      readout: { _tag: "classifier", nClasses: CLASSES, pool: "memory" },
      memory: { dMemory: 16 },
    },
    data: { dir: dataDir, clipFrames: 12 },
    training: {
      batchSize: 8,
      epochs: 2,
      warmupSteps: 2,
      validEvery: 4,
      checkpointEvery: 3,
      logEvery: 2,
      maxSeconds: null,
    },
    evaluation: { batchSize: 16, test: true },
  });

const withData = (f: (dir: string, table: ClipTable) => Promise<void>): Promise<void> =>
  withSampleClips("crt-sh-run-", {
    clips: 60,
    dim: F,
    classes: CLASSES,
    minFrames: 10,
    maxFrames: 20,
    seed: 2,
  }, f);

const completed = (r: Awaited<ReturnType<typeof runSmarthome>>): SmarthomeResults => {
  if (E.isLeft(r)) assert.fail(r.left.message);
  if (r.right._tag !== "Completed") assert.fail("interrupted");
  return r.right.results;
};

Deno.test("runSmarthome writes results, confusion matrices (CSV, SVG), curve and metrics", async () => {
  await withData(async (dir) => {
    const exp = tiny(join(dir, "data"));
    const runDir = join(dir, "run");
    const r = completed(await runSmarthome(exp, { runDir, progress: false, log: () => {} }));
    const train = Math.round(r.epochs * r.train_clips);
    assert.equal(r.train_steps, Math.ceil((2 * r.train_clips) / 8));
    assert.equal(r.train_draws, r.train_steps * 8);
    assert.ok(Math.abs(train - r.train_draws) <= 8);
    assert.equal(r.segments_per_clip, 3);
    assert.equal(r.flops_per_clip_forward, 12 * r.flops_per_frame_forward);
    assert.equal(r.classes.length, CLASSES);
    assert.equal(r.per_class_set, "test");
    assert.equal(r.per_class.reduce((n, c) => n + c.clips, 0), r.test_clips);
    const saved = JSON.parse(await Deno.readTextFile(join(runDir, "results.json")));
    assert.deepEqual(saved, JSON.parse(JSON.stringify(r)));
    for (const f of r.files) assert.ok((await Deno.stat(join(runDir, f))).isFile, f);
    const csv = (await Deno.readTextFile(join(runDir, "confusion_test.csv"))).trim().split("\n");
    assert.equal(csv.length, 1 + CLASSES);
    const counts = csv.slice(1).map((l) => l.split(",").slice(1).map(Number));
    assert.equal(counts.flat().reduce((a, b) => a + b, 0), r.test_clips);
    const right = counts.reduce((n, row, i) => n + row[i], 0);
    assert.ok(Math.abs(right / r.test_clips! - r.test_accuracy!) < 1e-12);
    assert.ok((await Deno.readTextFile(join(runDir, "confusion_valid.svg"))).startsWith("<svg"));
    const records = (await Deno.readTextFile(join(runDir, "metrics.jsonl"))).trim().split("\n")
      .map((l) => JSON.parse(l));
    assert.ok(records.some((x) => x.kind === "train" && x.frames_per_second > 0));
    assert.ok(records.some((x) => x.kind === "valid" && x.step === 4));
    const config = JSON.parse(await Deno.readTextFile(join(runDir, "config.json")));
    assert.equal(config._tag, "smarthome");
    assert.equal(config.data.dir, join(dir, "data"));
    // The folder is taken now.
    const again = await runSmarthome(exp, { runDir, progress: false, log: () => {} });
    assert.ok(E.isLeft(again) && again.left._tag === "BadInput");
    assert.match(again.left.message, /already holds a run; resume it with --resume/);
  });
});

Deno.test("runSmarthome: interrupted at step 5 and resumed, it ends exactly as the uninterrupted run", async () => {
  await withData(async (dir, table) => {
    const exp = tiny(join(dir, "data"));
    const whole = completed(
      await runSmarthome(exp, { runDir: join(dir, "a"), table, progress: false, log: () => {} }),
    );
    const stop = new AbortController();
    const first = await runSmarthome(exp, {
      runDir: join(dir, "b"),
      table,
      progress: false,
      log: () => {},
      signal: stop.signal,
      onStep: ({ step }) => step === 5 && stop.abort(),
    });
    assert.ok(E.isRight(first) && first.right._tag === "Interrupted" && first.right.step === 5);
    const resumed = completed(
      await runSmarthome(exp, {
        runDir: join(dir, "b"),
        table,
        resume: true,
        progress: false,
        log: () => {},
      }),
    );
    assert.equal(resumed.train_steps, whole.train_steps);
    assert.equal(resumed.final_train_loss, whole.final_train_loss);
    assert.equal(resumed.test_loss, whole.test_loss);
    assert.deepEqual(resumed.per_class, whole.per_class);
  });
});

Deno.test("runSmarthome: a dataset that does not fit the model is bad input naming the fix", async () => {
  await withData(async (dir, table) => {
    const exp = tiny(join(dir, "data"));
    const run = (e: SmarthomeExperiment, name: string) =>
      runSmarthome(e, { runDir: join(dir, name), table, progress: false, log: () => {} });
    const wrongF = await run(
      override(exp, { model: { input: { _tag: "features", dim: 9 } } }),
      "f",
    );
    assert.ok(E.isLeft(wrongF) && wrongF.left._tag === "BadInput");
    assert.equal(
      wrongF.left.message,
      `model.input.dim: 9, but the clips in ${join(dir, "data")} have ${F} features per frame ` +
        `(set --set model.input.dim=${F})`,
    );
    const wrongK = await run(
      override(exp, { model: { readout: { _tag: "classifier", nClasses: 5, pool: "memory" } } }),
      "k",
    );
    assert.ok(E.isLeft(wrongK) && wrongK.left._tag === "BadInput");
    assert.match(
      wrongK.left.message,
      /^model\.readout\.nClasses: 5, but protocol cross-subject .* has 3 classes/,
    );
    const noDir = await runSmarthome({ ...exp, data: { ...exp.data, dir: null } }, {
      runDir: join(dir, "n"),
      progress: false,
      log: () => {},
    });
    assert.ok(E.isLeft(noDir) && noDir.left._tag === "BadInput");
    assert.match(noDir.left.message, /no dataset: pass --data DIR \(or set CRT_SMARTHOME_DIR\)/);
  });
});
