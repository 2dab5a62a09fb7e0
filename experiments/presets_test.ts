import assert from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { decodeExperiment, tokensPerStep } from "./experiment.ts";
import { decodeSweep } from "./sweep_spec.ts";
import { presetExperiment, presetNames, presetPlan, QUICK, resolvePreset } from "./presets.ts";
import { referenceCrt, referenceTransformer, referenceXl } from "../spec/reference_specs.ts";
import { decodeSmarthomeExperiment } from "./tasks/clips_experiment.ts";

Deno.test("presets: every preset, full and --quick, decodes", () => {
  assert.deepEqual(presetNames, [
    "ptb",
    "ptb-full",
    "ptb-xl",
    "ptb-sweep",
    "wt103",
    "wt103-full",
    "wt103-xl",
    "smarthome",
    "smarthome-full",
    "smarthome-cv1",
    "smarthome-cv2",
  ]);
  for (const name of presetNames) {
    for (const quick of [false, true]) {
      const plan = presetPlan(name, { quick });
      const r = plan._tag === "single"
        ? decodeExperiment(plan.experiment)
        : plan._tag === "smarthome"
        ? decodeSmarthomeExperiment(plan.experiment)
        : decodeSweep(plan.sweep);
      if (E.isLeft(r)) assert.fail(`${name}${quick ? " --quick" : ""}: ${r.left.message}`);
    }
  }
});

Deno.test("presets: the reference settings (docs/substrate.md)", () => {
  const exp = presetExperiment("ptb");
  assert.deepEqual(exp.model, referenceCrt);
  assert.equal(exp.training.batchSize, 20);
  assert.equal(exp.training.bpttSegments, 2);
  assert.equal(exp.training.lr, 1e-3);
  assert.equal(exp.training.warmupSteps, 200);
  assert.equal(exp.training.decay, "cosine");
  assert.equal(exp.training.clipNorm, 0.25);
  assert.equal(exp.evaluation.batchSize, 10);
  assert.deepEqual(presetExperiment("ptb-full").model, referenceTransformer);
  assert.equal(presetExperiment("ptb-full").training.bpttSegments, 1);
  assert.deepEqual(presetExperiment("ptb-xl").model, referenceXl);
  // Every single preset reads 1400 tokens a step, as the PyTorch reference does.
  for (const name of ["ptb", "ptb-full", "ptb-xl"]) {
    assert.equal(tokensPerStep(presetExperiment(name)), 1400, name);
  }
});

Deno.test("presets: --quick keeps the model and recipe, with a token budget and a time guard", () => {
  for (const name of ["ptb", "ptb-full", "ptb-xl"]) {
    const full = presetExperiment(name);
    const quick = presetExperiment(name, { quick: true });
    assert.equal(quick.name, `${name}-quick`);
    assert.equal(quick.training.tokens, QUICK.single.tokens);
    assert.equal(quick.training.maxSeconds, QUICK.single.maxSeconds);
    assert.equal(quick.training.lr, full.training.lr);
    assert.equal(quick.training.warmupSteps, full.training.warmupSteps);
    assert.equal(quick.model._tag, full.model._tag);
    assert.equal(quick.model.segmentLen, full.model.segmentLen);
  }
});

Deno.test("presets: ptb-sweep compares CRT at 1/2 and 1/4 of the full-length Transformers' segments, over seeds", () => {
  for (const quick of [false, true]) {
    const plan = presetPlan("ptb-sweep", { quick });
    assert.equal(plan._tag, "sweep");
    if (plan._tag !== "sweep") return;
    const members = plan.sweep.members;
    assert.deepEqual(
      members.map((m) => [m.label, m.experiment.model._tag, m.experiment.model.segmentLen]),
      [
        ["transformer-s140", "transformer", 140],
        ["transformer-s70", "transformer", 70],
        ["crt-s70", "crt", 70],
        ["crt-s35", "crt", 35],
        ["crt-s18", "crt", 18],
      ],
    );
    const first = members[0].experiment;
    for (const { experiment: e } of members) {
      // Same depth, width and token budget.
      assert.equal(e.model.dModel, first.model.dModel);
      assert.equal(e.model.nLayers, first.model.nLayers);
      assert.equal(e.model.dFF, first.model.dFF);
      assert.equal(e.training.tokens, first.training.tokens);
      // About 1400 tokens a step for every member: equal budgets, equal updates, one schedule.
      assert.ok(Math.abs(tokensPerStep(e) - 1400) <= 4, `${e.name}: ${tokensPerStep(e)}`);
      assert.equal(e.training.warmupSteps, first.training.warmupSteps);
      if (e.model._tag === "crt") assert.equal(e.training.bpttSegments, 2);
    }
    // Seeds: three for the full sweep, one for --quick (it must end within 15 minutes).
    assert.equal(plan.sweep.seeds, quick ? 1 : 3);
    assert.equal(plan.sweep.slurm?.timeLimitMinutes, quick ? 30 : 120);
  }
});

Deno.test("resolvePreset: an unknown name lists the known ones", () => {
  const r = resolvePreset("ptb-crt");
  if (E.isRight(r)) assert.fail("expected a Left");
  assert.equal(
    r.left.message,
    'unknown experiment "ptb-crt" (known: ptb, ptb-full, ptb-xl, ptb-sweep, wt103, wt103-full, ' +
      "wt103-xl, smarthome, smarthome-full, smarthome-cv1, smarthome-cv2)",
  );
  assert.ok(E.isLeft(resolvePreset("toString")));
});
