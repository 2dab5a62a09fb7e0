/**
 * A tiny trained run for the tests that need one (export, generate, the
 * arm64 task): the generated corpus and a 10-step language-model run on it,
 * checkpoints at steps 5 and 10.
 *
 * @module
 */
import { join } from "node:path";
import { runExperiment } from "../experiments/tasks/language_model.ts";
import { tinyExperiment, writeCorpus } from "./_corpus.ts";

/** Trains the tiny run; its data folder (a fresh temporary one) holds `run/`. Throws on failure. */
export const trainTinyRun = async (): Promise<{ dataDir: string; runDir: string }> => {
  const dataDir = await writeCorpus();
  const runDir = join(dataDir, "run");
  const trained = await runExperiment(tinyExperiment(dataDir, { steps: 10 }), {
    runDir,
    progress: false,
    log: () => {},
  });
  if (trained._tag === "Left") throw new Error(`tiny run: ${trained.left.message}`);
  return { dataDir, runDir };
};
