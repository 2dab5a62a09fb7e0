/**
 * The experiment runner: trains an {@linkcode Experiment} on word-level PTB,
 * evaluates it and writes a run folder. A function of its inputs that returns
 * its outcome (no `Deno.exit`); `cli.ts` maps outcomes to exit codes.
 *
 * A run folder holds:
 *
 * | file | content |
 * | --- | --- |
 * | `config.json` | the experiment as run (data directory resolved) |
 * | `metrics.jsonl` | one JSON record per line: `train` every `logEvery` steps (step, loss, ppl, lr, tokens/s, elapsed), `valid` at each validation, `error` if a step fails |
 * | `results.json` | {@linkcode Results}: valid and test perplexity, parameters, FLOPs per token, tokens, throughput, time |
 * | `curve.svg` | train loss and valid perplexity against step |
 * | `checkpoints/` | the last checkpoints (atomic: temp file + rename), for `--resume` |
 *
 * Training reads the training split as B ordered streams in windows of K·S
 * tokens, carrying the memory from window to window (reset at each epoch)
 * and cutting its gradient at the window's start. Every checkpoint holds the
 * parameters, the optimizer state (NC-GRU's float64 state losslessly), the
 * carried memory, the dropout generator's state and the data position, so a
 * resumed run computes exactly the losses the uninterrupted run would have.
 *
 * @example Train a tiny model on a generated corpus
 * ```ts
 * import { join } from "node:path";
 * import { tinyExperiment, writeCorpus } from "../tests/_corpus.ts";
 * import { runExperiment } from "./run.ts";
 *
 * const dir = await writeCorpus({ test: true }); // ptb.{train,valid,test}.txt
 * const r = await runExperiment(tinyExperiment(dir, { steps: 10 }), {
 *   runDir: join(dir, "run"),
 *   progress: false,
 * });
 * if (r._tag === "Right" && r.right._tag === "Completed") console.log(r.right.results.valid_ppl);
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import type { Program } from "../core/program.ts";
import { compile } from "../core/compile.ts";
import {
  disposeTraining,
  NonFiniteLoss,
  startTraining,
  trainOn,
  type TrainState,
} from "../core/train.ts";
import {
  type BackendInfo,
  type BackendName,
  type MatmulChoice,
  startBackend,
} from "../ops/backend.ts";
import { tf } from "../ops/tf.ts";
import { adaptiveGeometry, tailFlopsPerRow } from "../spec/adaptive.ts";
import type { Either } from "../spec/either.ts";
import type { ModelSpec } from "../spec/types.ts";
import { type Checkpoint, readLatestCheckpoint, writeCheckpoint } from "./checkpoint.ts";
import {
  batchify,
  type Corpus,
  countWindows,
  dataDirFromEnvironment,
  type DataPosition,
  exists,
  loadPtb,
  segmentWindows,
  type Streams,
} from "./data.ts";
import { evaluateSplit, type SplitScore } from "./evaluate.ts";
import { loadWt103, type ReadProgress, wt103DirFromEnvironment } from "./wt103.ts";
import {
  decodeExperiment,
  type Experiment,
  learningRate,
  tokensPerStep,
  totalSteps,
} from "./experiment.ts";
import { createProgress, type Progress } from "./progress.ts";
import { unigramBias, withReadoutBias } from "./readout_bias.ts";
import { createRng, restoreRng, type Rng } from "./rng.ts";
import { restoreTraining, snapshotTraining } from "./snapshot.ts";
import { type CurvePoint, learningCurveSvg } from "./svg.ts";

// ---------------------------------------------------------------------------
// Outcomes

/**
 * What a finished run reports (`results.json`). Perplexities are over the
 * whole split read as a stream; FLOPs count 2 per multiply-add.
 *
 * @example
 * ```ts
 * import type { Results } from "./run.ts";
 * const line = (r: Results) => `${r.experiment}: valid ppl ${r.valid_ppl.toFixed(1)}`;
 * ```
 */
export interface Results {
  /** The experiment's name. */
  readonly experiment: string;
  /** Model kind: `crt`, `transformer` or `xl`. */
  readonly model: string;
  /** S: tokens per segment. */
  readonly segment_len: number;
  /** Perplexity on the whole valid split. */
  readonly valid_ppl: number;
  /** Mean NLL (nats) on the whole valid split. */
  readonly valid_loss: number;
  /** Predictions scored on the valid split. */
  readonly valid_tokens: number;
  /** Perplexity on the whole test split; `null` when it was not evaluated (see `test_note`). */
  readonly test_ppl: number | null;
  /** Mean NLL on the test split, or `null`. */
  readonly test_loss: number | null;
  /** Predictions scored on the test split, or `null`. */
  readonly test_tokens: number | null;
  /** Why the test split was not evaluated (`test split absent: skipped`), else `null`. */
  readonly test_note: string | null;
  /** Scalars in the model's trained parameters. */
  readonly params: number;
  /** FLOPs per token of a forward pass. */
  readonly flops_per_token_forward: number;
  /** FLOPs per token of a training step (forward and backward). */
  readonly flops_per_token_train: number;
  /** Tokens trained on. */
  readonly train_tokens: number;
  /** Optimizer steps taken. */
  readonly train_steps: number;
  /** What ended training: the token budget, or the `maxSeconds` guard. */
  readonly stopped_by: "tokens" | "maxSeconds";
  /** Mean training loss over the last logged interval. */
  readonly final_train_loss: number | null;
  /** Training throughput: train_tokens over the seconds spent in training steps. */
  readonly tokens_per_second: number;
  /** Seconds spent in training steps. */
  readonly train_seconds: number;
  /** Seconds spent in the final evaluation. */
  readonly eval_seconds: number;
  /** Wall-clock seconds of the whole run (all sessions of a resumed run). */
  readonly wall_seconds: number;
  /** The compute backend, e.g. `wasm simd, matmul blas`. */
  readonly backend: string;
  /** The data directory read. */
  readonly data_dir: string;
  /** SHA-256 of the split files read. */
  readonly data_sha256: Corpus["sha256"];
  /**
   * Adaptive softmax only (else `null`). `flops_per_token_*` above count
   * every tail cluster for every token — the cost of the full distribution,
   * what `forward` computes, and an upper bound for training. Training and
   * evaluation compute a tail cluster only for the tokens whose target is
   * in it: these figures count that, at the training split's shares
   * (the padding of each cluster's rows to a gather size is not included;
   * it adds at most 25 % of a cluster's rows above 32 rows, 7 rows below).
   */
  readonly adaptive_softmax: {
    readonly cutoffs: readonly number[];
    /** Share of the training split's targets in each tail cluster. */
    readonly tail_shares: readonly number[];
    readonly flops_per_token_forward_gathered: number;
    readonly flops_per_token_train_gathered: number;
  } | null;
}

/**
 * Why a run could not be done. `BadInput` (exit 2): a problem with the
 * experiment, the data or the run folder, named in `message`. `RunFailed`
 * (exit 1): something went wrong while running (a non-finite loss, an I/O
 * error, the backend).
 *
 * @example
 * ```ts
 * import type { RunError } from "./run.ts";
 * const exitCode = (e: RunError) => (e._tag === "BadInput" ? 2 : 1);
 * ```
 */
export type RunError =
  | { readonly _tag: "BadInput"; readonly message: string }
  | { readonly _tag: "RunFailed"; readonly message: string; readonly cause?: unknown };

/**
 * How a run ended: completed with results, or interrupted (by the abort
 * signal) after saving a checkpoint it can resume from.
 *
 * @example
 * ```ts
 * import type { RunOutcome } from "./run.ts";
 * const say = (o: RunOutcome) =>
 *   o._tag === "Completed" ? `valid ppl ${o.results.valid_ppl}` : `stopped at step ${o.step}`;
 * ```
 */
export type RunOutcome =
  | { readonly _tag: "Completed"; readonly runDir: string; readonly results: Results }
  | {
    readonly _tag: "Interrupted";
    readonly runDir: string;
    /** Steps done (and saved). */
    readonly step: number;
    /** `interrupted; resume with --resume RUN_DIR`. */
    readonly message: string;
  };

/**
 * One training step, as reported to {@linkcode RunOptions.onStep}.
 *
 * @example
 * ```ts
 * import type { StepReport } from "./run.ts";
 * const losses: number[] = [];
 * const onStep = (r: StepReport) => void losses.push(r.loss);
 * ```
 */
export interface StepReport {
  /** 1-based step just taken. */
  readonly step: number;
  /** Its training loss (mean NLL over the window, with dropout). */
  readonly loss: number;
  /** Its learning rate. */
  readonly lr: number;
  /** Gradient norm before clipping. */
  readonly gradNorm: number;
}

/**
 * Options of {@linkcode runExperiment}.
 *
 * @example
 * ```ts
 * import type { RunOptions } from "./run.ts";
 * const controller = new AbortController();
 * const opts: RunOptions = { runDir: "runs/ptb-test", signal: controller.signal, progress: false };
 * ```
 */
export interface RunOptions {
  /** The run folder (created when missing; must not hold a run unless `resume`). */
  readonly runDir: string;
  /** Continue from the newest valid checkpoint in `runDir`. */
  readonly resume?: boolean;
  /** tfjs backend. Default `wasm`. */
  readonly backend?: BackendName;
  /** The wasm matmul tier. Default `auto` (native BLAS when it loads). */
  readonly matmul?: MatmulChoice;
  /** An already loaded corpus (its `dir` is recorded); else read from `experiment.data.dir`. */
  readonly corpus?: Corpus;
  /** When aborted, the run finishes its current step, saves a checkpoint and returns `Interrupted`. */
  readonly signal?: AbortSignal;
  /** Messages for the user (default: stderr). */
  readonly log?: (message: string) => void;
  /** Progress bars: `false` for none; else where to write them (default stderr). */
  readonly progress?: false | { readonly write?: (s: string) => void; readonly isTty?: boolean };
  /** Called after every training step. */
  readonly onStep?: (report: StepReport) => void;
  /**
   * This invocation's training guard in seconds, in place of
   * `training.maxSeconds` (a sweep's time budget lends its members time this
   * way). Not part of the experiment: `config.json` keeps `training.maxSeconds`.
   */
  readonly maxSeconds?: number;
}

// ---------------------------------------------------------------------------
// Helpers

/** An error's message, or the thrown value as text. */
export const describe = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** A `BadInput` run error (exit 2). */
export const badInput = (message: string): E.Either<RunError, never> =>
  E.left({ _tag: "BadInput", message });

/** A `RunFailed` run error (exit 1). */
export const failed = (message: string, cause?: unknown): E.Either<RunError, never> =>
  E.left({ _tag: "RunFailed", message, cause });

/** Lets signal handlers run, at most every 100 ms (timers are clamped when nested). */
const makeYielder = () => {
  let last = performance.now();
  return async (): Promise<void> => {
    const now = performance.now();
    if (now - last < 100) return;
    await new Promise((resolve) => setTimeout(resolve, 0));
    last = performance.now();
  };
};

/** Writes a file atomically: temporary name in the same folder, then rename. */
export const writeAtomic = async (file: string, text: string): Promise<void> => {
  const tmp = `${file}.${crypto.randomUUID()}.tmp`;
  await Deno.writeTextFile(tmp, text);
  await Deno.rename(tmp, file);
};

/**
 * A fresh run folder path `<outDir>/<name>-<YYYYMMDD-HHMMSS>` (with a
 * numeric suffix if taken). Does not create it.
 *
 * @example
 * ```ts
 * import { newRunDir } from "./run.ts";
 * const dir = await newRunDir("runs", "ptb-quick"); // e.g. runs/ptb-quick-20250101-120000
 * ```
 */
export async function newRunDir(outDir: string, name: string, now = new Date()): Promise<string> {
  const p2 = (n: number) => String(n).padStart(2, "0");
  const stamp = `${now.getFullYear()}${p2(now.getMonth() + 1)}${p2(now.getDate())}-` +
    `${p2(now.getHours())}${p2(now.getMinutes())}${p2(now.getSeconds())}`;
  const base = join(outDir, `${name}-${stamp}`);
  let dir = base;
  for (let i = 2; await exists(dir); i++) dir = `${base}-${i}`;
  return dir;
}

/**
 * A short description of the started backend for progress lines and
 * results: backend, SIMD, and which matmul kernel runs.
 *
 * @example
 * ```ts
 * import { backendLabel } from "./run.ts";
 * console.log(backendLabel({ name: "wasm", simd: true, matmul: "native" })); // wasm simd, matmul native
 * ```
 */
export function backendLabel(info: BackendInfo): string {
  return `${info.name}${info.simd ? " simd" : ""}, matmul ${info.matmul}`;
}

/**
 * Reads the corpus an experiment names: `data.dir`, else `$CRT_DATA_DIR`,
 * else the cache folder (downloading into it when online). `Left` is a
 * readable message naming the file or folder and where to put the files.
 *
 * @example
 * ```ts
 * import { loadExperimentData } from "./run.ts";
 * import { presetExperiment } from "./presets.ts";
 * const exp = presetExperiment("ptb");
 * const r = await loadExperimentData({ ...exp, data: { dir: "data/ptb" } });
 * if (r._tag === "Right") console.log(r.right.vocab.words.length); // 10000
 * ```
 */
export async function loadExperimentData(
  exp: Experiment,
  log: (message: string) => void = (m) => console.error(m),
): Promise<Either<string, Corpus>> {
  if (exp.data.dataset === "wt103") {
    const dir = wt103DirFromEnvironment(exp.data.dir ?? undefined);
    if (E.isLeft(dir)) return E.left(dir.left.message);
    const corpus = await loadWt103(dir.right, { log, onProgress: readProgressLog(log) });
    return E.isLeft(corpus) ? E.left(corpus.left.message) : corpus;
  }
  const dir = dataDirFromEnvironment(exp.data.dir ?? undefined);
  if (E.isLeft(dir)) return E.left(dir.left.message);
  const corpus = await loadPtb(dir.right, { log });
  return E.isLeft(corpus) ? E.left(corpus.left.message) : corpus;
}

/**
 * Logs a long read's progress: a line per 10 % of each file over 64 MiB
 * (WikiText-103's training file takes 20–40 s), nothing for small files.
 */
const readProgressLog = (log: (message: string) => void) => {
  let file = "", next = 0, started = 0, tokens = 0;
  return (p: ReadProgress): void => {
    if (p.totalBytes < 64 * 2 ** 20) return;
    if (p.file !== file) {
      file = p.file;
      next = 0.1;
      started = performance.now();
      tokens = 0;
    }
    tokens += p.tokens;
    const done = p.bytes / p.totalBytes;
    if (done < next && done < 1) return;
    next = Math.floor(done * 10) / 10 + 0.1;
    const secs = (performance.now() - started) / 1000;
    log(
      `reading ${p.file} (${p.phase}): ${(100 * done).toFixed(0)} %, ` +
        `${(tokens / 1e6).toFixed(1)} M tokens in ${secs.toFixed(0)} s`,
    );
  };
};

/**
 * Parameter count and FLOPs per token of an experiment's model, as
 * `--dry-run` prints them. Needs a started backend (the compiler checks
 * kernels against it). With an adaptive softmax the FLOPs count every tail
 * cluster for every token, and `adaptive_tails` gives each cluster's cost
 * per token it is computed for, so the cost at any cluster frequencies is
 * the total minus (1 − share_i) × that (see `Results.adaptive_softmax`).
 *
 * @example
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { ensureBackend } from "../ops/backend.ts";
 * import { presetExperiment } from "./presets.ts";
 * import { modelCosts } from "./run.ts";
 * await ensureBackend();
 * const c = modelCosts(presetExperiment("ptb"));
 * if (E.isRight(c)) console.log(c.right.params); // about 7.1 M
 * ```
 */
export function modelCosts(exp: Experiment): Either<
  string,
  {
    params: number;
    flops_per_token_forward: number;
    flops_per_token_train: number;
    adaptive_tails?: { ids: [number, number]; width: number; forward: number; train: number }[];
  }
> {
  const p = compile(exp.model);
  if (E.isLeft(p)) return E.left(`model: cannot compile (${p.left.stage}): ${p.left.message}`);
  const readout = exp.model.readout;
  const geom = readout._tag === "adaptive" ? adaptiveGeometry(readout, exp.model) : null;
  return E.right({
    params: p.right.paramCount,
    flops_per_token_forward: p.right.flops.forwardPerToken,
    flops_per_token_train: p.right.flops.trainPerToken,
    ...(geom === null ? {} : {
      adaptive_tails: tailFlopsPerRow(geom).map((f, i) => ({
        ids: [geom.tails[i].lo, geom.tails[i].hi] as [number, number],
        width: geom.tails[i].dim,
        ...f,
      })),
    }),
  });
}

/**
 * The adaptive softmax's FLOPs per token when each tail cluster runs only for
 * the tokens in it, at the shares of `tokens` (see `Results.adaptive_softmax`);
 * `null` for other readouts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adaptiveCosts } from "./run.ts";
 * import { referenceCrt } from "../spec/reference_specs.ts";
 *
 * const model = { ...referenceCrt, readout: { _tag: "adaptive", cutoffs: [5000], divValue: 4 } } as const;
 * const c = adaptiveCosts(model, { forwardPerToken: 20e6, trainPerToken: 60e6 }, new Int32Array(100));
 * assert.deepEqual(c?.tail_shares, [0]); // every token is in the head: no tail cost at all
 * assert.equal(c?.flops_per_token_forward_gathered, 20e6 - 2 * (256 * 64 + 64 * 5000));
 * ```
 */
export function adaptiveCosts(
  model: ModelSpec,
  flops: { readonly forwardPerToken: number; readonly trainPerToken: number },
  tokens: Int32Array,
): Results["adaptive_softmax"] {
  if (model.readout._tag !== "adaptive") return null;
  const geom = adaptiveGeometry(model.readout, model);
  const counts = new Float64Array(geom.tails.length);
  // Targets are the tokens after the first; over a whole split the difference is nil.
  for (let i = 1; i < tokens.length; i++) {
    const t = tokens[i];
    if (t < geom.shortlist) continue;
    let c = 0;
    while (t >= geom.tails[c].hi) c++;
    counts[c]++;
  }
  const shares = Array.from(counts, (n) => n / Math.max(1, tokens.length - 1));
  const tail = tailFlopsPerRow(geom);
  const saved = (kind: "forward" | "train") =>
    tail.reduce((s, f, i) => s + f[kind] * (1 - shares[i]), 0);
  return {
    cutoffs: model.readout.cutoffs,
    tail_shares: shares,
    flops_per_token_forward_gathered: flops.forwardPerToken - saved("forward"),
    flops_per_token_train_gathered: flops.trainPerToken - saved("train"),
  };
}

/** Everything in `exp` except the data directory, for comparing a run folder's config. */
/**
 * Checks a run folder before a run: a fresh run needs one without
 * `config.json`; a resumed one needs the same experiment in it, data folder
 * aside (the data may have moved).
 */
export const checkRunFolder = async <X extends { readonly data: { readonly dir: string | null } }>(
  runDir: string,
  exp: X,
  resume: boolean,
  decode: (u: unknown) => E.Either<{ readonly message: string }, X>,
): Promise<E.Either<RunError, void>> => {
  const configFile = join(runDir, "config.json");
  const withoutDataDir = (x: X) => JSON.stringify({ ...x, data: { ...x.data, dir: null } });
  if (!resume) {
    return (await exists(configFile))
      ? badInput(`${runDir} already holds a run; resume it with --resume ${runDir}`)
      : E.right(undefined);
  }
  if (!(await exists(configFile))) {
    return badInput(`${runDir}: not a run folder (no config.json) — nothing to resume`);
  }
  let saved: unknown;
  try {
    saved = JSON.parse(await Deno.readTextFile(configFile));
  } catch (e) {
    return badInput(`${configFile}: cannot read: ${describe(e)}`);
  }
  const prev = decode(saved);
  if (E.isLeft(prev)) return badInput(`${configFile}: ${prev.left.message}`);
  if (withoutDataDir(prev.right) !== withoutDataDir(exp)) {
    return badInput(`${configFile}: the run folder holds a different experiment`);
  }
  return E.right(undefined);
};

/**
 * Creates a run's checkpoint folder and, for a fresh run, writes its
 * resolved `config.json` (atomically); a resumed run keeps the one it has.
 */
export const prepareRunFolder = async (
  runDir: string,
  config: unknown,
  resume: boolean,
): Promise<E.Either<RunError, void>> => {
  try {
    await Deno.mkdir(join(runDir, "checkpoints"), { recursive: true });
    if (!resume) {
      await writeAtomic(join(runDir, "config.json"), JSON.stringify(config, null, 2) + "\n");
    }
    return E.right(undefined);
  } catch (e) {
    return failed(`${runDir}: cannot write: ${describe(e)}`, e);
  }
};

/**
 * The newest valid checkpoint of a run, restored into a training state.
 * Skipped (corrupt or cut-off) files are logged; a checkpoint whose meta is
 * not `isMeta` or names another experiment is `BadInput`.
 */
export const resumeTraining = async <M extends { readonly experiment: string }>(
  program: Program,
  runDir: string,
  experiment: string,
  isMeta: (u: unknown) => u is M,
  log: (message: string) => void,
): Promise<
  E.Either<RunError, { ts: TrainState; checkpoint: Checkpoint; meta: M; file: string }>
> => {
  const latest = await readLatestCheckpoint(join(runDir, "checkpoints"));
  if (E.isLeft(latest)) return badInput(latest.left.message);
  for (const s of latest.right.skipped) log(`skipped checkpoint ${s.file}: ${s.reason}`);
  const { checkpoint, file } = latest.right;
  const meta = checkpoint.meta;
  if (!isMeta(meta) || meta.experiment !== experiment) {
    return badInput(`${file}: not a checkpoint of ${experiment}`);
  }
  const restored = restoreTraining(program, checkpoint, checkpoint.step);
  if (E.isLeft(restored)) return badInput(`${file}: ${restored.left}`);
  return E.right({ ts: restored.right, checkpoint, meta, file });
};

/**
 * Starts the backend a run asks for and compiles its model: a failed start
 * or a missing kernel is a `RunFailed`, a spec that does not compile `BadInput`.
 */
export const startProgram = async (
  opts: Pick<RunOptions, "backend" | "matmul">,
  model: ModelSpec,
): Promise<E.Either<RunError, { backend: string; program: Program }>> => {
  const started = await startBackend({
    ...(opts.backend === undefined ? {} : { backend: opts.backend }),
    ...(opts.matmul === undefined ? {} : { matmul: opts.matmul }),
  });
  if (E.isLeft(started)) return failed(started.left.message, started.left);
  const compiled = compile(model);
  if (E.isLeft(compiled)) {
    const msg = `model: cannot compile (${compiled.left.stage}): ${compiled.left.message}`;
    return compiled.left.stage === "kernels" ? failed(msg) : badInput(msg);
  }
  return E.right({ backend: backendLabel(started.right), program: compiled.right });
};

/** A metrics.jsonl record. */
type MetricsRecord =
  | {
    readonly kind: "train";
    readonly step: number;
    readonly epoch: number;
    readonly loss: number;
    readonly ppl: number;
    readonly lr: number;
    readonly grad_norm: number;
    readonly tokens: number;
    readonly tokens_per_second: number;
    readonly elapsed: number;
  }
  | {
    readonly kind: "valid";
    readonly step: number;
    readonly loss: number;
    readonly ppl: number;
    readonly tokens: number;
    readonly whole_split: boolean;
    readonly elapsed: number;
  }
  | { readonly kind: "error"; readonly step: number; readonly message: string };

const curvePoint = (r: MetricsRecord): CurvePoint | null =>
  r.kind === "train"
    ? { step: r.step, trainLoss: r.loss }
    : r.kind === "valid"
    ? { step: r.step, validPpl: r.ppl }
    : null;

/**
 * Reads metrics.jsonl, keeping the records of steps ≤ `upTo` (a resumed run
 * writes the rest again). With `evaluated`, training had finished: the final
 * whole-split validation at `upTo` is dropped, as it will be redone.
 */
export const readMetrics = async <R extends { readonly kind: string; readonly step: number }>(
  file: string,
  upTo: number,
  evaluated = false,
): Promise<R[]> => {
  if (!(await exists(file))) return [];
  const out: R[] = [];
  for (const line of (await Deno.readTextFile(file)).split("\n")) {
    if (line.trim() === "") continue;
    try {
      const r = JSON.parse(line) as R & { readonly whole_split?: boolean };
      if (typeof r.step !== "number" || r.step > upTo || r.kind === "error") continue;
      if (evaluated && r.kind === "valid" && r.step === upTo && r.whole_split) continue;
      out.push(r);
    } catch {
      // A line cut off by a crash: dropped.
    }
  }
  return out;
};

/** Checkpoint metadata: the clocks and counters of the run so far. */
interface RunMeta {
  readonly experiment: string;
  readonly elapsedSeconds: number;
  readonly trainSeconds: number;
  readonly trainTokens: number;
  readonly trainingDone: boolean;
  readonly stoppedBy: "tokens" | "maxSeconds" | null;
  readonly lastTrainLoss: number | null;
  /** The open logging interval (steps since the last `train` record), so records resume exactly. */
  readonly interval?: LogInterval;
}

/** Sums over the steps since the last `train` record. */
interface LogInterval {
  loss: number;
  count: number;
  tokens: number;
  seconds: number;
  gradNorm: number;
}

const isRunMeta = (u: unknown): u is RunMeta => {
  if (typeof u !== "object" || u === null) return false;
  const m = u as Record<string, unknown>;
  return typeof m.experiment === "string" && typeof m.elapsedSeconds === "number" &&
    typeof m.trainSeconds === "number" && typeof m.trainTokens === "number" &&
    typeof m.trainingDone === "boolean";
};

// ---------------------------------------------------------------------------
// The runner

/**
 * Trains and evaluates one experiment into `opts.runDir`. Resolves to
 * `Right(Completed | Interrupted)` or `Left(RunError)`; never exits the
 * process. The experiment is decoded again first, so an unchecked value is
 * reported as `BadInput` rather than run.
 *
 * @example Interrupt after step 5, then resume
 * ```ts
 * import assert from "node:assert/strict";
 * import { join } from "node:path";
 * import { tinyExperiment, writeCorpus } from "../tests/_corpus.ts";
 * import { runExperiment } from "./run.ts";
 *
 * const dir = await writeCorpus();
 * const exp = tinyExperiment(dir, { steps: 10 });
 * const runDir = join(dir, "run");
 * const stop = new AbortController();
 * const first = await runExperiment(exp, {
 *   runDir,
 *   progress: false,
 *   signal: stop.signal,
 *   onStep: ({ step }) => step === 5 && stop.abort(),
 * });
 * assert(first._tag === "Right" && first.right._tag === "Interrupted" && first.right.step === 5);
 * const second = await runExperiment(exp, { runDir, resume: true, progress: false });
 * assert(second._tag === "Right" && second.right._tag === "Completed");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function runExperiment(
  experiment: Experiment,
  opts: RunOptions,
): Promise<Either<RunError, RunOutcome>> {
  const sessionStart = performance.now();
  const log = opts.log ?? ((m: string) => console.error(m));
  const decoded = decodeExperiment(experiment);
  if (E.isLeft(decoded)) return badInput(decoded.left.message);
  const exp = decoded.right;
  const runDir = opts.runDir;
  const ckptDir = join(runDir, "checkpoints");
  const metricsFile = join(runDir, "metrics.jsonl");

  // The run folder: fresh, or the one being resumed.
  const folder = await checkRunFolder(runDir, exp, opts.resume === true, decodeExperiment);
  if (E.isLeft(folder)) return folder;

  // Data first (its errors are the user's to fix, and cheap to find), then backend and program.
  let corpus: Corpus;
  if (opts.corpus !== undefined) {
    corpus = opts.corpus;
  } else {
    const c = await loadExperimentData(exp, log);
    if (E.isLeft(c)) return badInput(c.left);
    corpus = c.right;
  }
  const vocab = corpus.vocab.words.length;
  if (vocab > exp.model.vocabSize) {
    return badInput(
      `model.vocabSize: ${exp.model.vocabSize} is smaller than the vocabulary of ` +
        `${corpus.dir} (${vocab} words)`,
    );
  }
  const started = await startProgram(opts, exp.model);
  if (E.isLeft(started)) return started;
  const { backend, program } = started.right;
  const B = exp.training.batchSize;
  const K = exp.training.bpttSegments;
  const S = exp.model.segmentLen;
  let streams: Streams;
  try {
    streams = batchify(corpus.train, B);
  } catch (e) {
    return badInput(`training.batchSize: ${describe(e)}`);
  }
  const windowOpts = { segmentLen: S, bpttSegments: K };
  if (countWindows(streams, windowOpts) === 0) {
    return badInput(
      `training: the training split (${corpus.train.length} tokens) has no full window of ` +
        `batchSize·bpttSegments·segmentLen = ${B * K * S} tokens`,
    );
  }

  const prepared = await prepareRunFolder(
    runDir,
    { ...exp, data: { ...exp.data, dir: corpus.dir } },
    opts.resume === true,
  );
  if (E.isLeft(prepared)) return prepared;

  // Training state: fresh or restored.
  let ts: TrainState;
  let rng: Rng;
  let pos: DataPosition;
  let meta: RunMeta;
  if (opts.resume) {
    const resumed = await resumeTraining(program, runDir, exp.name, isRunMeta, log);
    if (E.isLeft(resumed)) return resumed;
    const { checkpoint: ck, file } = resumed.right;
    const dropout = ck.rng.dropout;
    if (dropout === undefined) {
      disposeTraining(program, resumed.right.ts);
      return badInput(`${file}: no dropout RNG state`);
    }
    ts = resumed.right.ts;
    rng = restoreRng(dropout);
    pos = ck.data;
    meta = resumed.right.meta;
    log(`resuming ${runDir} at step ${ck.step} from ${file}`);
  } else {
    const fresh = program.init(exp.seed);
    const params = exp.training.readoutBias === "unigram"
      ? withReadoutBias(fresh, unigramBias(exp.model, corpus.train))
      : fresh;
    ts = startTraining(program, { seed: exp.seed, batchSize: B, params });
    rng = createRng(exp.seed);
    pos = { epoch: 0, position: 0 };
    meta = {
      experiment: exp.name,
      elapsedSeconds: 0,
      trainSeconds: 0,
      trainTokens: 0,
      trainingDone: false,
      stoppedBy: null,
      lastTrainLoss: null,
    };
  }

  const records = await readMetrics<MetricsRecord>(metricsFile, ts.step, meta.trainingDone);
  if (meta.trainingDone) log(`${exp.name}: training was complete; evaluating`);
  try {
    await writeAtomic(metricsFile, records.map((r) => JSON.stringify(r) + "\n").join(""));
  } catch (e) {
    disposeTraining(program, ts);
    return failed(`${metricsFile}: cannot write: ${describe(e)}`, e);
  }
  const session = {
    elapsedAtStart: meta.elapsedSeconds,
    trainSeconds: meta.trainSeconds,
    trainTokens: meta.trainTokens,
  };
  const elapsed = () => session.elapsedAtStart + (performance.now() - sessionStart) / 1000;

  const metrics = await Deno.open(metricsFile, { append: true, create: true });
  const encoder = new TextEncoder();
  const appendRecord = async (r: MetricsRecord): Promise<void> => {
    records.push(r);
    const bytes = encoder.encode(JSON.stringify(r) + "\n");
    for (let done = 0; done < bytes.length;) done += await metrics.write(bytes.subarray(done));
  };
  // The curve's valid panel shows one measure: periodic validations read only a
  // prefix of the split unless validTokens is null, so the whole-split final
  // score joins the line only when the periodic ones are whole-split too.
  const periodicWhole = exp.training.validTokens === null ||
    exp.training.validTokens >= corpus.valid.length;
  const writeCurve = (finalPpl?: number) =>
    writeAtomic(
      join(runDir, "curve.svg"),
      learningCurveSvg(
        records
          .filter((r) => r.kind !== "valid" || r.whole_split === periodicWhole)
          .map(curvePoint)
          .filter((p): p is CurvePoint => p !== null),
        {
          title: `${exp.name}: ${exp.model._tag}, S = ${S}` +
            (periodicWhole ? "" : `; valid curve on the first ${exp.training.validTokens} tokens`) +
            (finalPpl === undefined ? "" : `; final valid ppl ${finalPpl.toFixed(1)}`),
        },
      ),
    );
  const progressOf = (total: number, label: string): Progress =>
    opts.progress === false ? { update: () => {}, done: () => {} } : createProgress({
      total,
      label,
      ...(opts.progress?.write === undefined ? {} : { write: opts.progress.write }),
      ...(opts.progress?.isTty === undefined ? {} : { isTty: opts.progress.isTty }),
    });

  const interval: LogInterval = meta.interval === undefined
    ? { loss: 0, count: 0, tokens: 0, seconds: 0, gradNorm: 0 }
    : { ...meta.interval };
  const currentMeta = (): RunMeta => ({
    ...meta,
    interval: { ...interval },
    elapsedSeconds: elapsed(),
    trainSeconds: session.trainSeconds,
    trainTokens: session.trainTokens,
  });
  const save = async (): Promise<E.Either<RunError, string>> => {
    const snap = snapshotTraining(program, ts);
    const w = await writeCheckpoint(ckptDir, {
      step: ts.step,
      data: pos,
      rng: { dropout: rng.state() },
      optimizer: snap.optimizer,
      params: snap.params,
      carry: snap.carry,
      meta: currentMeta(),
    }, { keep: exp.output.keepCheckpoints });
    return E.isLeft(w) ? failed(w.left.message, w.left) : E.right(w.right.file);
  };
  const interrupted = (step: number): E.Either<RunError, RunOutcome> =>
    E.right({
      _tag: "Interrupted",
      runDir,
      step,
      message: `interrupted; resume with --resume ${runDir}`,
    });
  const cleanup = () => {
    disposeTraining(program, ts);
    metrics.close();
  };

  try {
    const trained = await trainLoop();
    if (E.isLeft(trained) || trained.right !== "done") {
      return E.isLeft(trained) ? trained : interrupted(ts.step);
    }
    return await evaluateAndReport();
  } finally {
    cleanup();
  }

  // -------------------------------------------------------------------------

  async function trainLoop(): Promise<E.Either<RunError, "done" | "interrupted">> {
    const steps = totalSteps(exp);
    const perStep = tokensPerStep(exp);
    const maxSeconds = opts.maxSeconds ?? exp.training.maxSeconds;
    const pause = makeYielder();
    if (meta.trainingDone) return E.right("done");
    const bar = progressOf(steps, `train [${backend}]`);
    bar.update({ step: ts.step, tokens: 0 });
    let windows = segmentWindows(streams, { ...windowOpts, from: pos.position });
    let stoppedBy: "tokens" | "maxSeconds" = "tokens";
    while (ts.step < steps) {
      if (opts.signal?.aborted) {
        bar.done();
        const s = await save();
        return E.isLeft(s) ? s : E.right("interrupted");
      }
      if (maxSeconds !== null && elapsed() >= maxSeconds) {
        stoppedBy = "maxSeconds";
        log(`maxSeconds (${maxSeconds} s) reached at step ${ts.step} of ${steps}: training stops`);
        break;
      }
      let next = windows.next();
      if (next.done) {
        // A new epoch: the streams start over, so does the memory.
        pos = { epoch: pos.epoch + 1, position: 0 };
        windows = segmentWindows(streams, windowOpts);
        next = windows.next();
        program.disposeState(ts.memory);
        ts = { ...ts, memory: program.initState(B) };
      }
      if (next.done) throw new Error("internal: an epoch without windows");
      const w = next.value;
      const step = ts.step + 1;
      const lr = learningRate(exp.training, { step, totalSteps: steps });
      const seed = rng.next();
      const t0 = performance.now();
      const batch = {
        tokens: tf.tensor2d(w.tokens, [B, w.windowLen], "int32"),
        targets: tf.tensor2d(w.targets, [B, w.windowLen], "int32"),
      };
      let out: ReturnType<typeof trainOn>;
      try {
        out = trainOn(program, ts, batch, {
          lr,
          bpttSegments: K,
          seed,
          adamw: {
            beta1: exp.training.beta1,
            beta2: exp.training.beta2,
            eps: exp.training.eps,
            weightDecay: exp.training.weightDecay,
            clipNorm: exp.training.clipNorm,
            cayleyRefresh: exp.training.cayleyRefresh,
          },
        });
      } catch (e) {
        bar.done();
        const message = e instanceof NonFiniteLoss
          ? `step ${e.step}: the training loss is ${e.loss}; training stopped before the ` +
            `parameters were updated (nothing was saved for this step)`
          : `step ${step} failed: ${describe(e)}`;
        await appendRecord({ kind: "error", step, message });
        return failed(message, e);
      } finally {
        batch.tokens.dispose();
        batch.targets.dispose();
      }
      const dt = (performance.now() - t0) / 1000;
      ts = out.next;
      pos = { epoch: pos.epoch, position: w.nextPosition };
      session.trainSeconds += dt;
      session.trainTokens += perStep;
      interval.loss += out.loss;
      interval.gradNorm = out.gradNorm;
      interval.count++;
      interval.tokens += perStep;
      interval.seconds += dt;
      opts.onStep?.({ step, loss: out.loss, lr, gradNorm: out.gradNorm });
      bar.update({ step, loss: out.loss, tokens: perStep });
      if (step % exp.training.logEvery === 0 || step === steps) {
        const loss = interval.loss / interval.count;
        meta = { ...meta, lastTrainLoss: loss };
        await appendRecord({
          kind: "train",
          step,
          epoch: pos.epoch,
          loss,
          ppl: Math.exp(loss),
          lr,
          grad_norm: interval.gradNorm,
          tokens: session.trainTokens,
          tokens_per_second: interval.tokens / interval.seconds,
          elapsed: elapsed(),
        });
        Object.assign(interval, { loss: 0, count: 0, tokens: 0, seconds: 0 });
      }
      const every = exp.training.validEvery;
      if (every > 0 && step % every === 0 && step < steps) {
        const score = await evaluateSplit(program, ts.params, corpus.valid, {
          batchSize: exp.evaluation.batchSize,
          ...(exp.training.validTokens === null ? {} : { maxTokens: exp.training.validTokens }),
          ...(opts.signal === undefined ? {} : { signal: opts.signal }),
        });
        if (score !== null) {
          await appendRecord({
            kind: "valid",
            step,
            loss: score.loss,
            ppl: score.ppl,
            tokens: score.tokens,
            whole_split: exp.training.validTokens === null ||
              exp.training.validTokens >= corpus.valid.length,
            elapsed: elapsed(),
          });
          await writeCurve();
        }
      }
      const ckEvery = exp.training.checkpointEvery;
      if (ckEvery > 0 && step % ckEvery === 0 && step < steps) {
        const s = await save();
        if (E.isLeft(s)) return s;
      }
      await pause();
    }
    bar.done();
    meta = { ...meta, trainingDone: true, stoppedBy };
    const s = await save();
    return E.isLeft(s) ? s : E.right("done");
  }

  async function evaluateAndReport(): Promise<E.Either<RunError, RunOutcome>> {
    const evalStart = performance.now();
    const score = async (split: Int32Array, label: string): Promise<SplitScore | null> => {
      let bar: Progress | null = null;
      const r = await evaluateSplit(program, ts.params, split, {
        batchSize: exp.evaluation.batchSize,
        onWindow: (done, total, tokens) => {
          bar ??= progressOf(total, `eval ${label} [${backend}]`);
          bar.update({ step: done, tokens });
        },
        ...(opts.signal === undefined ? {} : { signal: opts.signal }),
      });
      (bar as Progress | null)?.done();
      return r;
    };
    const valid = await score(corpus.valid, "valid");
    if (valid === null) return interrupted(ts.step);
    log(`${exp.name}: valid ppl ${valid.ppl.toFixed(2)} (${valid.tokens} tokens)`);
    let test: SplitScore | null = null;
    let testNote: string | null = null;
    if (!exp.evaluation.test) {
      testNote = "test evaluation off (evaluation.test = false): skipped";
    } else if (corpus.test === null) {
      testNote = "test split absent: skipped";
    } else {
      test = await score(corpus.test, "test");
      if (test === null) return interrupted(ts.step);
      log(`${exp.name}: test ppl ${test.ppl.toFixed(2)} (${test.tokens} tokens)`);
    }
    if (testNote !== null) log(`${exp.name}: ${testNote}`);
    const evalSeconds = (performance.now() - evalStart) / 1000;
    await appendRecord({
      kind: "valid",
      step: ts.step,
      loss: valid.loss,
      ppl: valid.ppl,
      tokens: valid.tokens,
      whole_split: true,
      elapsed: elapsed(),
    });
    const results: Results = {
      experiment: exp.name,
      model: exp.model._tag,
      segment_len: S,
      valid_ppl: valid.ppl,
      valid_loss: valid.loss,
      valid_tokens: valid.tokens,
      test_ppl: test?.ppl ?? null,
      test_loss: test?.loss ?? null,
      test_tokens: test?.tokens ?? null,
      test_note: testNote,
      params: program.paramCount,
      flops_per_token_forward: program.flops.forwardPerToken,
      flops_per_token_train: program.flops.trainPerToken,
      train_tokens: session.trainTokens,
      train_steps: ts.step,
      stopped_by: meta.stoppedBy ?? "tokens",
      final_train_loss: meta.lastTrainLoss,
      tokens_per_second: session.trainSeconds > 0 ? session.trainTokens / session.trainSeconds : 0,
      train_seconds: session.trainSeconds,
      eval_seconds: evalSeconds,
      wall_seconds: elapsed(),
      backend,
      data_dir: corpus.dir,
      data_sha256: corpus.sha256,
      adaptive_softmax: adaptiveCosts(exp.model, program.flops, corpus.train),
    };
    try {
      await writeAtomic(join(runDir, "results.json"), JSON.stringify(results, null, 2) + "\n");
      await writeCurve(valid.ppl);
    } catch (e) {
      return failed(`${runDir}: cannot write results: ${describe(e)}`, e);
    }
    return E.right({ _tag: "Completed", runDir, results });
  }
}
