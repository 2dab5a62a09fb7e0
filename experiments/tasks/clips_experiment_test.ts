import assert from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { main } from "../cli.ts";
import { presetNames, presetPlan } from "../presets.ts";
import { PROTOCOLS } from "../data/smarthome_protocols.ts";
import { SMARTHOME_CV_CLASSES } from "../data/smarthome.ts";
import { classifierSteps, decodeSmarthomeExperiment, segmentsPerClip } from "./clips_experiment.ts";
import { smarthomePreset, smarthomePresetNames } from "./clips_presets.ts";

const message = (u: unknown): string => {
  const r = decodeSmarthomeExperiment(u);
  if (E.isRight(r)) assert.fail("expected a Left");
  return r.left.message;
};

Deno.test("smarthome presets: every one, full and --quick, decodes and is listed by the CLI", () => {
  for (const name of smarthomePresetNames) {
    assert.ok(presetNames.includes(name), name);
    for (const quick of [false, true]) {
      const exp = smarthomePreset(name, { quick });
      const r = decodeSmarthomeExperiment(JSON.parse(JSON.stringify(exp)));
      if (E.isLeft(r)) assert.fail(`${name}: ${r.left.message}`);
      const plan = presetPlan(name, { quick });
      assert.equal(plan._tag, "smarthome");
    }
  }
  const cv = smarthomePreset("smarthome-cv2");
  assert.deepEqual(cv.data.protocol, PROTOCOLS["cross-view-2"]);
  assert.equal(cv.model.readout._tag === "classifier" && cv.model.readout.nClasses, 19);
  assert.deepEqual(cv.data.protocol.classes, SMARTHOME_CV_CLASSES);
  const full = smarthomePreset("smarthome-full");
  assert.equal(full.model.segmentLen, full.data.clipFrames); // one segment: the whole clip
  assert.equal(segmentsPerClip(smarthomePreset("smarthome")), 8);
  assert.equal(classifierSteps(smarthomePreset("smarthome"), 1000), Math.ceil((30 * 1000) / 16));
});

Deno.test("decodeSmarthomeExperiment names the field at fault", () => {
  const exp = smarthomePreset("smarthome");
  assert.equal(
    message({ ...exp, data: { ...exp.data, clipFrames: 100 } }),
    "data.clipFrames: 100 is not a whole number of segments of model.segmentLen (16)",
  );
  assert.match(
    message({ ...exp, model: { ...exp.model, input: undefined } }),
    /^model\.input: clip classification reads per-frame feature vectors/,
  );
  assert.match(
    message({ ...exp, model: { ...exp.model, readout: { _tag: "lm", tie: false } } }),
    /^model\.input: feature-vector input has no next tokens to predict/,
  );
  const cv = smarthomePreset("smarthome-cv1");
  assert.equal(
    message({
      ...cv,
      model: { ...cv.model, readout: { _tag: "classifier", nClasses: 31, pool: "memory" } },
    }),
    "model.readout.nClasses: 31, but data.protocol.classes lists 19 classes",
  );
  assert.equal(
    message({
      ...exp,
      data: {
        ...exp.data,
        protocol: { ...exp.data.protocol, valid: { _tag: "holdout", fraction: 1 } },
      },
    }),
    "data.protocol.valid.fraction: must be a number in (0, 1), got 1",
  );
  assert.equal(
    message({ ...exp, training: { ...exp.training, balance: "weighted" } }),
    'training.balance: unknown balance "weighted" (expected classBalanced, uniform)',
  );
  assert.equal(
    message({
      ...exp,
      data: {
        ...exp.data,
        protocol: { ...exp.data.protocol, train: { subjects: [-3], cameras: null } },
      },
    }),
    "data.protocol.train.subjects[0]: must be a non-negative integer, got -3",
  );
});

const capture = () => {
  const out: string[] = [], err: string[] = [];
  return {
    out,
    err,
    io: { stdout: (s: string) => out.push(s), stderr: (s: string) => err.push(s) },
  };
};

Deno.test("cli: smarthome --dry-run prints the experiment with FLOPs per frame and per clip", async () => {
  const c = capture();
  const status = await main(
    ["smarthome", "--quick", "--dry-run", "--backend", "cpu", "--set", "model.input.dim=64"],
    c.io,
  );
  assert.equal(status, 0, c.err.join(""));
  const plan = JSON.parse(c.out.join(""));
  assert.equal(plan.experiment.name, "smarthome-quick");
  assert.equal(plan.experiment.model.input.dim, 64);
  assert.equal(plan.segments_per_clip, 8);
  assert.equal(plan.flops_per_clip_forward, plan.flops_per_frame_forward * 128);
  assert.ok(plan.flops_per_frame_train > 2 * plan.flops_per_frame_forward);
});

Deno.test("cli: smarthome bad input exits 2 with the field or file named", async () => {
  const cases: [string[], RegExp][] = [
    [
      ["smarthome", "--set", "data.clipFrames=100", "--dry-run"],
      /^data\.clipFrames: 100 is not a whole number/,
    ],
    [["smarthome", "--set", "training.epoch=3", "--dry-run"], /--set training\.epoch: /],
    [["smarthome", "--data", "/nonexistent/sh"], /\/nonexistent\/sh\/classes\.txt: missing/],
  ];
  for (const [args, expected] of cases) {
    const c = capture();
    const status = await main(args, { ...c.io, onInterrupt: () => () => {} });
    assert.equal(status, 2, `${args.join(" ")}: ${c.err.join("")}`);
    assert.match(
      c.err.join("").split("\n").find((l) => expected.test(l)) ?? c.err.join(""),
      expected,
    );
  }
});
