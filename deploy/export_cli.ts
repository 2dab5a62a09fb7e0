/**
 * `deno task export <RUN_DIR> [--out FILE] [--int8] [--checkpoint PATH] [--data DIR]`
 *
 * Writes a run's trained model as one model file (deploy/model_file.ts):
 * the parameters of the run's latest valid checkpoint (or `--checkpoint`),
 * the spec from its `config.json`, and the vocabulary. A run folder does
 * not store the vocabulary, so it is rebuilt from the run's training file
 * exactly as training built it (experiments/data/ptb.ts), from `--data`, else
 * the data directory the run recorded; the file's SHA-256 must equal the one
 * in `results.json`, so the ids mean what they meant in training. (A
 * `vocab.json` in the run folder, a JSON array of words, is used instead
 * when present.) `results.json`'s valid perplexity and the source go into
 * the file's `meta`.
 *
 * Output: `<RUN_DIR>/model.crtm` (`model-int8.crtm` with `--int8`) unless
 * `--out` says otherwise; written to a temporary file and renamed.
 * Exit status: 0 written (and `--help`), 2 bad input (run folder, files,
 * options), 1 any other failure.
 *
 * @example
 * ```ts
 * import { main } from "./export_cli.ts";
 * const status = await main(["--help"]);
 * console.log(status); // 0
 * ```
 *
 * @module
 */
import { describeError } from "../spec/errors.ts";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import * as E from "fp-ts/lib/Either.js";
import { readCheckpoint, readLatestCheckpoint } from "../experiments/loop/checkpoint.ts";
import type { Checkpoint } from "../experiments/loop/checkpoint_format.ts";
import { exists } from "../experiments/data/_shared.ts";
import { readCorpus } from "../experiments/data/ptb.ts";
import { decodeExperiment, type Experiment } from "../experiments/experiment.ts";
import {
  BadInput,
  type CliIo,
  type CommandLine,
  defaultIo,
  EXIT,
  megabytes,
  readBytes,
  runCommandLine,
} from "./_cli.ts";
import { encodeModelFile, ModelFileError } from "./model_file.ts";

const USAGE =
  `usage: deno task export <RUN_DIR> [--out FILE] [--int8] [--checkpoint PATH] [--data DIR]

  RUN_DIR            a run folder of \`deno task experiment\` (config.json, checkpoints/)
  --out FILE         where to write (default RUN_DIR/model.crtm, or model-int8.crtm)
  --int8             store weight matrices as int8 with per-channel scales (≈ 4× smaller)
  --checkpoint PATH  a checkpoint file instead of the run's latest valid one
  --data DIR         where the run's training file is, when not where the run recorded it
  -h, --help         this text`;

const OPTIONS = {
  out: { type: "string" },
  int8: { type: "boolean", default: false },
  checkpoint: { type: "string" },
  data: { type: "string" },
  help: { type: "boolean", short: "h", default: false },
} as const;

const COMMAND_LINE: CommandLine<typeof OPTIONS> = {
  options: OPTIONS,
  usage: USAGE,
  positionals: { count: 1, missing: "missing the run folder", wrong: "give one run folder" },
};

const readJson = async (file: string, what: string): Promise<unknown> => {
  const text = new TextDecoder().decode(await readBytes(file, what));
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new BadInput(`${what} ${file}: not JSON (${describeError(e)})`);
  }
};

/** What a run's results.json says that the export uses; all optional. */
interface RunResults {
  readonly validPpl: number | null;
  readonly trainSha256: string | null;
  readonly dataDir: string | null;
  readonly trainTokens: number | null;
}

const readResults = async (runDir: string): Promise<RunResults | null> => {
  const file = join(runDir, "results.json");
  if (!(await exists(file))) return null;
  const r = await readJson(file, "results");
  const o = (typeof r === "object" && r !== null ? r : {}) as Record<string, unknown>;
  const num = (x: unknown) => (typeof x === "number" && Number.isFinite(x) ? x : null);
  const str = (x: unknown) => (typeof x === "string" ? x : null);
  const sha =
    (typeof o.data_sha256 === "object" && o.data_sha256 !== null ? o.data_sha256 : {}) as Record<
      string,
      unknown
    >;
  return {
    validPpl: num(o.valid_ppl),
    trainSha256: str(sha.train),
    dataDir: str(o.data_dir),
    trainTokens: num(o.train_tokens),
  };
};

/** The checkpoint to export and its file. */
const readTheCheckpoint = async (
  runDir: string,
  flag: string | undefined,
  log: (m: string) => void,
): Promise<{ checkpoint: Checkpoint; file: string }> => {
  if (flag !== undefined) {
    const r = await readCheckpoint(flag);
    if (E.isLeft(r)) throw new BadInput(r.left.message);
    return { checkpoint: r.right, file: flag };
  }
  const r = await readLatestCheckpoint(join(runDir, "checkpoints"));
  if (E.isLeft(r)) throw new BadInput(`${r.left.message} (is ${runDir} a run folder?)`);
  for (const s of r.right.skipped) log(`skipped ${s.file}: ${s.reason}`);
  return { checkpoint: r.right.checkpoint, file: r.right.file };
};

/**
 * The run's vocabulary: `vocab.json` in the run folder, else rebuilt from
 * the training file, whose SHA-256 must match the run's record.
 */
const readVocab = async (
  runDir: string,
  exp: Experiment,
  results: RunResults | null,
  dataFlag: string | undefined,
  log: (m: string) => void,
): Promise<{ words: readonly string[]; source: string; trainSha256: string | null }> => {
  const stored = join(runDir, "vocab.json");
  if (await exists(stored)) {
    const v = await readJson(stored, "vocabulary");
    if (!Array.isArray(v) || !v.every((w) => typeof w === "string")) {
      throw new BadInput(`vocabulary ${stored}: expected a JSON array of words`);
    }
    return { words: v, source: stored, trainSha256: results?.trainSha256 ?? null };
  }
  const recorded = dataFlag ?? exp.data.dir ?? results?.dataDir ?? null;
  if (recorded === null) {
    throw new BadInput(
      `${runDir} records no data directory and holds no vocab.json: ` +
        `give the run's training data with --data DIR`,
    );
  }
  // A relative directory was relative to where the run was started: the
  // current directory, or the folder that holds the runs folder.
  const candidates = isAbsolute(recorded)
    ? [recorded]
    : [resolve(recorded), resolve(dirname(dirname(resolve(runDir))), recorded)];
  let dir: string | null = null;
  for (const c of candidates) {
    if (await exists(join(c, "ptb.train.txt"))) {
      dir = c;
      break;
    }
  }
  if (dir === null) {
    throw new BadInput(
      `the run's training file is not at ${
        candidates.map((c) => join(c, "ptb.train.txt")).join(" nor ")
      }: give its folder with --data DIR`,
    );
  }
  const corpus = await readCorpus(dir);
  if (E.isLeft(corpus)) throw new BadInput(corpus.left.message);
  const sha = corpus.right.sha256.train;
  const want = results?.trainSha256 ?? null;
  if (want === null) {
    log(
      `warning: ${runDir} records no training-file SHA-256 (no results.json): ` +
        `the vocabulary from ${dir} is not checked against the run`,
    );
  } else if (want !== sha) {
    throw new BadInput(
      `${join(dir, "ptb.train.txt")} has SHA-256 ${sha}, the run trained on ${want}: ` +
        `a different file would give different word ids; give the run's data with --data DIR`,
    );
  }
  log(`vocabulary: ${corpus.right.vocab.words.length} words rebuilt from ${dir} (SHA-256 checked)`);
  return { words: corpus.right.vocab.words, source: dir, trainSha256: sha };
};

/**
 * The export command. Returns the exit status.
 *
 * @example
 * ```ts
 * import { main } from "./export_cli.ts";
 * const lines: string[] = [];
 * const status = await main(["/nonexistent/run"], {
 *   stdout: (s) => lines.push(s),
 *   stderr: (s) => lines.push(s),
 * });
 * console.log(status, lines.join("")); // 2, .../config.json: not found
 * ```
 */
export async function main(args: readonly string[], io: CliIo = defaultIo): Promise<number> {
  const log = (m: string) => io.stderr(`${m}\n`);
  return await runCommandLine(io, args, COMMAND_LINE, async ({ values, positionals }) => {
    const runDir = positionals[0];
    const configFile = join(runDir, "config.json");
    const exp = decodeExperiment(await readJson(configFile, "run config"));
    if (E.isLeft(exp)) throw new BadInput(`${configFile}: ${exp.left.message}`);
    const results = await readResults(runDir);
    const { checkpoint, file } = await readTheCheckpoint(runDir, values.checkpoint, log);
    log(`checkpoint: ${file} (step ${checkpoint.step})`);
    const vocab = await readVocab(runDir, exp.right, results, values.data, log);
    const meta = {
      source: basename(resolve(runDir)),
      experiment: exp.right.name,
      checkpoint: basename(file),
      step: checkpoint.step,
      valid_ppl: results?.validPpl ?? null,
      train_tokens: results?.trainTokens ?? null,
      train_sha256: vocab.trainSha256,
      created: new Date().toISOString(),
    };
    const t0 = performance.now();
    const bytes = await encodeModelFile(
      {
        spec: exp.right.model,
        vocab: vocab.words,
        params: Object.fromEntries(
          Object.entries(checkpoint.params).map((
            [k, t],
          ) => [k, { shape: [...t.shape], data: t.data }]),
        ),
        meta,
      },
      { int8: values.int8 },
    );
    const out = values.out ?? join(runDir, values.int8 ? "model-int8.crtm" : "model.crtm");
    const tmp = join(dirname(resolve(out)), `.${basename(out)}.${Date.now()}.tmp`);
    try {
      await Deno.writeFile(tmp, bytes);
      await Deno.rename(tmp, out);
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw new BadInput(`cannot write ${out}: ${describeError(e)}`);
    }
    const seconds = (performance.now() - t0) / 1000;
    io.stdout(
      `${out}: ${megabytes(bytes.length)}, ${values.int8 ? "int8" : "f32"} weights, ` +
        `${exp.right.model._tag} (${exp.right.model.vocabSize} words), ${meta.source} step ` +
        `${meta.step}, valid ppl ${meta.valid_ppl?.toFixed(1) ?? "not recorded"} ` +
        `(${seconds.toFixed(1)} s)\n`,
    );
    return EXIT.ok;
  }, (e) => e instanceof ModelFileError);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
