import assert from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { applySets } from "./overrides.ts";
import {
  decodeExperiment,
  type Experiment,
  learningRate,
  tokensPerStep,
  totalSteps,
} from "./experiment.ts";
import { presetExperiment } from "./presets.ts";
import { decodeSweep } from "./sweep_spec.ts";

const base = presetExperiment("ptb");

function issues(u: unknown): string[] {
  const r = decodeExperiment(u);
  if (E.isRight(r)) assert.fail("expected a Left");
  return r.left.issues.map((i) => `${i.path}: ${i.message}`);
}

Deno.test("decodeExperiment: accepts the presets and returns an equal value", () => {
  for (const quick of [false, true]) {
    for (const name of ["ptb", "ptb-full", "ptb-xl"]) {
      const exp = presetExperiment(name, { quick });
      const r = decodeExperiment(JSON.parse(JSON.stringify(exp)));
      if (E.isLeft(r)) assert.fail(r.left.message);
      assert.deepEqual(r.right, exp);
    }
  }
});

Deno.test("decodeExperiment: paths read like --set paths, for experiment and model fields alike", () => {
  assert.deepEqual(issues({ ...base, training: { ...base.training, lr: "fast", lrr: 1 } }), [
    `training.lr: expected a positive number, got "fast" (string)`,
    `training.lrr: unknown field (expected one of batchSize, maxSeconds, lr, warmupSteps, ` +
    `decay, finalLrRatio, weightDecay, beta1, beta2, eps, clipNorm, cayleyRefresh, ` +
    `validEvery, checkpointEvery, logEvery, bpttSegments, tokens, validTokens, readoutBias)`,
  ]);
  assert.deepEqual(issues({ ...base, model: { ...base.model, nHeads: 3 } }), [
    "model.nHeads: 3 does not divide model.dModel (256)",
  ]);
  assert.deepEqual(
    issues({ ...base, model: { ...base.model, memory: { cell: "lstm" } } })[0],
    [
      `model.memory.cell: unknown cell "lstm" (expected gru, ncgru)`,
    ][0],
  );
  assert.deepEqual(issues({ ...base, training: { ...base.training, maxSeconds: -5 } }), [
    "training.maxSeconds: must be a positive number, got -5",
  ]);
  assert.deepEqual(issues({ ...base, data: { dir: 7 } }), [
    "data.dir: expected a string or null, got 7 (number)",
  ]);
  assert.deepEqual(issues({ ...base, name: "../up" }), [
    `name: expected a name of letters, digits, '.', '_' and '-', got "../up"`,
  ]);
  assert.deepEqual(issues(null), ["experiment: expected an object, got null"]);
  const { seed: _, ...noSeed } = base;
  assert.deepEqual(issues(noSeed), ["seed: missing field (expected a non-negative integer)"]);
});

Deno.test("decodeExperiment: cross-field rules", () => {
  assert.deepEqual(issues({ ...base, training: { ...base.training, tokens: 1399 } }), [
    "training.tokens: 1399 is less than one step (batchSize·bpttSegments·segmentLen = 1400)",
  ]);
  assert.deepEqual(
    issues({
      ...base,
      model: { ...base.model, readout: { _tag: "classifier", nClasses: 3, pool: "memory" } },
    }),
    [
      `model.readout._tag: word-level language modelling needs the "lm" or "adaptive" readout, ` +
      `got "classifier"`,
    ],
  );
  assert.deepEqual(issues({ ...base, training: { ...base.training, validTokens: 19 } }), [
    "training.validTokens: 19 gives fewer than 2 tokens to each of evaluation.batchSize (10) streams",
  ]);
});

Deno.test("decodeExperiment: null is accepted where documented", () => {
  const r = decodeExperiment({
    ...base,
    data: { dir: null },
    training: { ...base.training, maxSeconds: null, validTokens: null },
  });
  assert.ok(E.isRight(r));
});

Deno.test("--set reaches every field, and values are typed by the codec", () => {
  const set = (path: string, raw: string): Experiment => {
    const s = applySets(base, [{ path, raw }]);
    if (E.isLeft(s)) assert.fail(s.left.message);
    const d = decodeExperiment(s.right);
    if (E.isLeft(d)) assert.fail(d.left.message);
    return d.right;
  };
  assert.equal(set("training.maxSeconds", "600").training.maxSeconds, 600);
  assert.equal(set("training.maxSeconds", "null").training.maxSeconds, null);
  assert.equal(set("data.dir", "/data/ptb").data.dir, "/data/ptb");
  assert.equal(set("evaluation.test", "false").evaluation.test, false);
  const m = set("model.memory.cell", "ncgru").model;
  assert.ok(m._tag === "crt" && m.memory.cell === "ncgru");
  assert.equal(set("training.decay", "linear").training.decay, "linear");
});

Deno.test("tokensPerStep / totalSteps: B·K·S per step, the budget rounded up to whole steps", () => {
  assert.equal(tokensPerStep(base), 20 * 2 * 35);
  assert.equal(totalSteps({ ...base, training: { ...base.training, tokens: 1400 } }), 1);
  assert.equal(totalSteps({ ...base, training: { ...base.training, tokens: 1401 } }), 2);
});

Deno.test("learningRate: linear warm-up to lr, then decay to finalLrRatio·lr at the last step", () => {
  const tr = { lr: 1e-3, warmupSteps: 10, decay: "cosine", finalLrRatio: 0.1 } as const;
  const at = (step: number, decay: "cosine" | "linear" | "constant" = "cosine") =>
    learningRate({ ...tr, decay }, { step, totalSteps: 110 });
  assert.equal(at(1), 1e-4);
  assert.equal(at(10), 1e-3);
  assert.ok(Math.abs(at(60) - (1e-4 + 0.9e-3 / 2)) < 1e-15); // halfway down the cosine
  assert.ok(Math.abs(at(110) - 1e-4) < 1e-15);
  assert.ok(Math.abs(at(60, "linear") - 5.5e-4) < 1e-15);
  assert.equal(at(100, "constant"), 1e-3);
  for (let s = 11; s < 110; s++) assert.ok(at(s + 1) <= at(s), `not decreasing at ${s}`);
  // No warm-up: the first step already runs at the peak.
  assert.equal(learningRate({ ...tr, warmupSteps: 0 }, { step: 1, totalSteps: 1 }), 1e-4);
  assert.equal(
    learningRate({ ...tr, warmupSteps: 0 }, { step: 1, totalSteps: 100 }) > 9.9e-4,
    true,
  );
});

Deno.test("decodeSweep: members are checked like experiments; labels must be distinct", () => {
  const member = { label: "a", experiment: base };
  assert.ok(E.isRight(decodeSweep({ name: "s", description: "", members: [member] })));
  const r = decodeSweep({
    name: "s",
    description: "",
    members: [member, {
      label: "a",
      experiment: { ...base, training: { ...base.training, tokens: 1 } },
    }],
  });
  if (E.isRight(r)) assert.fail("expected a Left");
  assert.deepEqual(r.left.issues.map((i) => i.path), [
    "members[1].label",
    "members[1].experiment.training.tokens",
  ]);
});
