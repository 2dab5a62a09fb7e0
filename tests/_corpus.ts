/**
 * A small generated corpus in the PTB file layout, and tiny experiments over
 * it, for tests of the experiment runner: learnable (each word has three
 * likely successors), a few thousand tokens, a vocabulary of ~40 words.
 *
 * @module
 */
import { join } from "node:path";
import type { Experiment } from "../experiments/experiment.ts";
import { presetExperiment } from "../experiments/presets.ts";
import { createRng } from "../experiments/loop/rng.ts";
import type { CrtSpec } from "../spec/codecs.ts";

/** Words of the generated corpus: `w0` … `w39`. */
export const CORPUS_WORDS = 40;

/**
 * Lines of a first-order Markov chain: word i is followed by one of
 * 3i+1, 3i+2, 3i+5 (mod 40) with probability 0.9, else by any word; lines of
 * 4–12 words.
 */
export const generateLines = (lines: number, seed: number): string => {
  const rng = createRng(seed);
  const out: string[] = [];
  for (let l = 0; l < lines; l++) {
    const n = 4 + rng.int(9);
    let w = rng.int(CORPUS_WORDS);
    const words: string[] = [];
    for (let i = 0; i < n; i++) {
      words.push(`w${w}`);
      const succ = [3 * w + 1, 3 * w + 2, 3 * w + 5].map((x) => x % CORPUS_WORDS);
      w = rng.float() < 0.9 ? succ[rng.int(3)] : rng.int(CORPUS_WORDS);
    }
    out.push(` ${words.join(" ")} `);
  }
  return out.join("\n") + "\n";
};

/**
 * Writes `ptb.train.txt` (~`trainLines` lines), `ptb.valid.txt` and, with
 * `test`, `ptb.test.txt` into a fresh temporary directory. Every word appears
 * in the training split, so valid and test read against its vocabulary.
 */
export const writeCorpus = async (
  opts: { trainLines?: number; validLines?: number; test?: boolean } = {},
): Promise<string> => {
  const dir = await Deno.makeTempDir({ prefix: "crt-corpus-" });
  // A first line with every word, so the vocabulary is always complete.
  const all = ` ${Array.from({ length: CORPUS_WORDS }, (_, i) => `w${i}`).join(" ")} \n`;
  await Deno.writeTextFile(
    join(dir, "ptb.train.txt"),
    all + generateLines(opts.trainLines ?? 150, 1),
  );
  await Deno.writeTextFile(join(dir, "ptb.valid.txt"), generateLines(opts.validLines ?? 40, 2));
  if (opts.test) await Deno.writeTextFile(join(dir, "ptb.test.txt"), generateLines(30, 3));
  return dir;
};

/** A tiny CRT for the generated corpus (vocabulary 41 with `<eos>`). */
export const tinyCorpusCrt: CrtSpec = {
  _tag: "crt",
  vocabSize: CORPUS_WORDS + 1,
  dModel: 16,
  nHeads: 2,
  dFF: 32,
  nLayers: 1,
  dropout: 0.1,
  segmentLen: 6,
  readout: { _tag: "lm", tie: false },
  positional: "learned",
  memory: {
    cell: "gru",
    dMemory: 8,
    injection: "prependToken",
    rnnInput: "mean",
    orthogonal: "candidate",
  },
};

/**
 * A tiny experiment on the corpus in `dir`: B = 4, K = 2, S = 6 (48 tokens
 * a step), `steps` steps, lr 2e-2 with 3 warm-up steps, validation and
 * checkpoints every 5 steps, no progress output.
 */
export const tinyExperiment = (
  dir: string,
  opts: { steps?: number; model?: CrtSpec; out?: string } = {},
): Experiment => {
  const base = presetExperiment("ptb", { quick: true });
  const model = opts.model ?? tinyCorpusCrt;
  const perStep = 4 * 2 * model.segmentLen;
  return {
    ...base,
    name: "tiny",
    model,
    data: { dir },
    training: {
      ...base.training,
      batchSize: 4,
      bpttSegments: 2,
      tokens: (opts.steps ?? 20) * perStep,
      maxSeconds: null,
      lr: 2e-2,
      warmupSteps: 3,
      validEvery: 5,
      validTokens: null,
      checkpointEvery: 5,
      logEvery: 1,
    },
    evaluation: { batchSize: 3, test: true },
    output: { dir: opts.out ?? join(dir, "runs"), keepCheckpoints: 2 },
  };
};
