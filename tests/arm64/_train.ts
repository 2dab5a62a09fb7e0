/**
 * Run by the x64 Deno for `deno task test:arm64`: a tiny corpus and a
 * 10-step training run on it, whose folder the task exports and generates
 * from on both architectures. Prints the run folder.
 *
 * @module
 */
import { join } from "node:path";
import { runExperiment } from "../../experiments/tasks/language_model.ts";
import { tinyExperiment, writeCorpus } from "../_corpus.ts";

const dataDir = await writeCorpus();
const runDir = join(dataDir, "run");
const trained = await runExperiment(tinyExperiment(dataDir, { steps: 10 }), {
  runDir,
  progress: false,
  log: () => {},
});
if (trained._tag === "Left") {
  console.error(`tests/arm64/_train.ts: ${trained.left.message}`);
  Deno.exit(1);
}
console.log(runDir);
