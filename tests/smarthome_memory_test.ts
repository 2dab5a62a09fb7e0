/**
 * Clip classification needs the memory: on a generated dataset in the
 * documented layout whose class shows only in each clip's first segment
 * (noise after it), CRT — classifying from its memory after the last
 * segment — beats the memory-less full-length Transformer of the same
 * segment length, which sees only the last segment. Both go through the
 * whole pipeline: the dataset reader, the cross-subject protocol, the clip
 * store, class-balanced batches, training and the final evaluation.
 */
import assert from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import { ensureBackend } from "../ops/backend.ts";
import type { CrtSpec, TransformerSpec } from "../spec/codecs.ts";
import { override } from "../experiments/overrides.ts";
import { withSampleClips } from "./_clips.ts";
import type { SmarthomeExperiment } from "../experiments/tasks/clips_experiment.ts";
import { smarthomePreset } from "../experiments/tasks/clips_presets.ts";
import { runSmarthome, type SmarthomeResults } from "../experiments/tasks/clips.ts";
import { tinyCrtGru, tinyTransformer, wide } from "./_tiny.ts";

await ensureBackend();

const K = 4, S = 4, F = 8, CLASSES = 4;

/** The tiny models, widened, reading frames of F features into a CLASSES-way classifier. */
const input = { _tag: "features", dim: F } as const;
const crt: CrtSpec = {
  ...wide(tinyCrtGru, S),
  vocabSize: 2,
  input,
  readout: { _tag: "classifier", nClasses: CLASSES, pool: "memory" },
};
const transformer: TransformerSpec = {
  ...wide(tinyTransformer, S),
  vocabSize: 2,
  input,
  readout: { _tag: "classifier", nClasses: CLASSES, pool: "mean" },
};

Deno.test("smarthome: CRT classifies clips by their first segment; the Transformer of its segment length cannot", async () => {
  const started = performance.now();
  // 200 clips of 16–24 frames; the class shows in the first quarter (the first of K = 4
  // segments once resampled to 16 frames).
  await withSampleClips("crt-smarthome-", {
    clips: 200,
    dim: F,
    classes: CLASSES,
    minFrames: 16,
    maxFrames: 24,
    signalFraction: 1 / K,
    signal: 1.5,
    seed: 3,
  }, async (dir, table) => {
    const base = smarthomePreset("smarthome", { quick: true });
    const run = async (label: string, model: CrtSpec | TransformerSpec) => {
      const exp: SmarthomeExperiment = override(base, {
        name: `memory-${label}`,
        model,
        data: { dir: join(dir, "data"), clipFrames: K * S },
        training: {
          epochs: 20,
          batchSize: 16,
          lr: 3e-3,
          warmupSteps: 10,
          beta2: 0.99,
          validEvery: 0,
          checkpointEvery: 0,
          maxSeconds: null,
        },
        evaluation: { batchSize: 64, test: true },
      });
      const r = await runSmarthome(exp, {
        runDir: join(dir, label),
        table,
        progress: false,
        log: () => {},
      });
      if (E.isLeft(r)) throw new Error(r.left.message);
      if (r.right._tag !== "Completed") throw new Error("interrupted");
      return r.right.results;
    };
    const a: SmarthomeResults = await run("crt", crt);
    const b: SmarthomeResults = await run("transformer", transformer);
    const seconds = (performance.now() - started) / 1000;
    const pct = (x: number | null) => `${(100 * (x ?? NaN)).toFixed(1)} %`;
    console.log(
      `test mean per-class accuracy after ${a.train_steps} steps (${a.test_clips} clips): ` +
        `CRT ${pct(a.test_mean_class_accuracy)}, Transformer (S = ${S}) ` +
        `${pct(b.test_mean_class_accuracy)} (chance ${pct(1 / CLASSES)}), ${seconds.toFixed(1)} s`,
    );
    assert.ok(a.test_mean_class_accuracy! > 0.8, `CRT ${a.test_mean_class_accuracy}`);
    assert.ok(b.test_mean_class_accuracy! < 0.45, `Transformer ${b.test_mean_class_accuracy}`);
    assert.ok(seconds < 60, `took ${seconds} s`);
  });
});
