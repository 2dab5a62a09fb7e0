/**
 * The run folder and the pieces every runner shares around it: run errors,
 * the options of a training session, atomic writes, fresh folder names,
 * checking a folder before a run, resuming its newest checkpoint, starting
 * the backend and the program, and reading back `metrics.jsonl`.
 *
 * @module
 */
import { describeError } from "../../spec/errors.ts";
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import type { Program } from "../../core/program.ts";
import { compile } from "../../core/compile.ts";
import type { TrainState } from "../../core/train.ts";
import {
  type BackendInfo,
  type BackendName,
  type MatmulChoice,
  startBackend,
} from "../../ops/backend.ts";
import type { ModelSpec } from "../../spec/types.ts";
import { readLatestCheckpoint } from "./checkpoint.ts";
import type { Checkpoint } from "./checkpoint_format.ts";
import { exists } from "../data/_shared.ts";
import { restoreTraining } from "./snapshot.ts";

/**
 * Why a run could not be done. `BadInput` (exit 2): a problem with the
 * experiment, the data or the run folder, named in `message`. `RunFailed`
 * (exit 1): something went wrong while running (a non-finite loss, an I/O
 * error, the backend).
 *
 * @example
 * ```ts
 * import type { RunError } from "./run_folder.ts";
 * const exitCode = (e: RunError) => (e._tag === "BadInput" ? 2 : 1);
 * ```
 */
export type RunError =
  | { readonly _tag: "BadInput"; readonly message: string }
  | { readonly _tag: "RunFailed"; readonly message: string; readonly cause?: unknown };

/**
 * One training step, as reported to {@linkcode SessionOptions.onStep}.
 *
 * @example
 * ```ts
 * import type { StepReport } from "./run_folder.ts";
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
 * Options of a training session (every runner takes these).
 *
 * @example
 * ```ts
 * import type { SessionOptions } from "./run_folder.ts";
 * const controller = new AbortController();
 * const opts: SessionOptions = { runDir: "runs/ptb-test", signal: controller.signal, progress: false };
 * ```
 */
export interface SessionOptions {
  /** The run folder (created when missing; must not hold a run unless `resume`). */
  readonly runDir: string;
  /** Continue from the newest valid checkpoint in `runDir`. */
  readonly resume?: boolean;
  /** tfjs backend. Default `wasm`. */
  readonly backend?: BackendName;
  /** The wasm matmul tier. Default `auto` (native BLAS when it loads). */
  readonly matmul?: MatmulChoice;
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

/** A `BadInput` run error (exit 2). */
export const badInput = (message: string): E.Either<RunError, never> =>
  E.left({ _tag: "BadInput", message });

/** A `RunFailed` run error (exit 1). */
export const failed = (message: string, cause?: unknown): E.Either<RunError, never> =>
  E.left({ _tag: "RunFailed", message, cause });

/** Lets signal handlers run, at most every 100 ms (timers are clamped when nested). */
export const makeYielder = () => {
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
 * Creates a fresh run folder `<outDir>/<name>-<YYYYMMDD-HHMMSS>` (with a
 * numeric suffix if taken) and returns its path. The folder is created
 * exclusively, so two runs started in the same second get two folders.
 *
 * @example
 * ```ts
 * import { newRunDir } from "./run_folder.ts";
 * const out = await Deno.makeTempDir();
 * const [a, b] = await Promise.all([newRunDir(out, "ptb"), newRunDir(out, "ptb")]);
 * console.log(a !== b); // true
 * ```
 */
export async function newRunDir(outDir: string, name: string, now = new Date()): Promise<string> {
  const p2 = (n: number) => String(n).padStart(2, "0");
  const stamp = `${now.getFullYear()}${p2(now.getMonth() + 1)}${p2(now.getDate())}-` +
    `${p2(now.getHours())}${p2(now.getMinutes())}${p2(now.getSeconds())}`;
  const base = join(outDir, `${name}-${stamp}`);
  await Deno.mkdir(outDir, { recursive: true });
  for (let i = 1;; i++) {
    const dir = i === 1 ? base : `${base}-${i}`;
    try {
      await Deno.mkdir(dir);
      return dir;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
  }
}

/**
 * A short description of the started backend for progress lines and
 * results: backend, SIMD, and which matmul kernel runs.
 *
 * @example
 * ```ts
 * import { backendLabel } from "./run_folder.ts";
 * console.log(backendLabel({ name: "wasm", simd: true, matmul: "native" })); // wasm simd, matmul native
 * ```
 */
export function backendLabel(info: BackendInfo): string {
  return `${info.name}${info.simd ? " simd" : ""}, matmul ${info.matmul}`;
}

/**
 * JSON with every object's keys sorted, so that key order does not matter.
 *
 * @example
 * ```ts
 * import { canonicalJson } from "./run_folder.ts";
 * console.log(canonicalJson({ b: 1, a: [{ d: 2, c: 3 }] })); // {"a":[{"c":3,"d":2}],"b":1}
 * ```
 */
export const canonicalJson = (x: unknown): string =>
  JSON.stringify(
    x,
    (_k, v: unknown) =>
      v !== null && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
        : v,
  );

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
  // Compared with keys sorted: a config written before a field moved compares equal.
  const withoutDataDir = (x: X) => canonicalJson({ ...x, data: { ...x.data, dir: null } });
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
    return badInput(`${configFile}: cannot read: ${describeError(e)}`);
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
    return failed(`${runDir}: cannot write: ${describeError(e)}`, e);
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
  opts: Pick<SessionOptions, "backend" | "matmul">,
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

/**
 * A run folder held by this process: an exclusive advisory lock (`flock`)
 * on `run.lock` in it, which names the holder. The operating system drops
 * the lock when the process ends in any way (even SIGKILL), so a lock can
 * never be left stale.
 *
 * @example
 * ```ts
 * import type { RunLock } from "./run_folder.ts";
 * const done = (lock: RunLock) => lock.release();
 * ```
 */
export interface RunLock {
  /** The lock file. */
  readonly file: string;
  /** Drops the lock (once; later calls do nothing). The file stays, empty. */
  release(): Promise<void>;
}

/** What `run.lock` holds while a process has it. */
interface LockHolder {
  readonly pid: number;
  readonly hostname: string;
  readonly started: string;
}

const hostname = (): string => {
  try {
    return Deno.hostname();
  } catch {
    return "unknown";
  }
};

/**
 * Takes a run folder for this process, creating the folder when missing.
 * Of two processes starting on one folder exactly one gets it; the other
 * gets `BadInput` naming the holder's pid and host.
 *
 * @example
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { lockRunFolder } from "./run_folder.ts";
 * const dir = await Deno.makeTempDir();
 * const first = await lockRunFolder(dir);
 * const second = await lockRunFolder(dir);
 * console.log(E.isRight(first), E.isLeft(second)); // true true
 * if (E.isRight(first)) await first.right.release();
 * ```
 */
export async function lockRunFolder(runDir: string): Promise<E.Either<RunError, RunLock>> {
  const file = join(runDir, "run.lock");
  let handle: Deno.FsFile;
  try {
    await Deno.mkdir(runDir, { recursive: true });
    handle = await Deno.open(file, { read: true, write: true, create: true });
  } catch (e) {
    return failed(`${file}: cannot create: ${describeError(e)}`, e);
  }
  let held: boolean;
  try {
    held = await handle.tryLock(true);
  } catch (e) {
    handle.close();
    return failed(`${file}: cannot lock: ${describeError(e)}`, e);
  }
  if (!held) {
    handle.close();
    let holder: Partial<LockHolder> = {};
    try {
      holder = JSON.parse(await Deno.readTextFile(file));
    } catch {
      // The holder is still writing its name.
    }
    return badInput(
      `${runDir} is in use by process ${holder.pid ?? "?"} on ${holder.hostname ?? "?"} ` +
        `(since ${holder.started ?? "?"}; ${file}): wait for that run to end, or stop it ` +
        `(Ctrl-C saves a checkpoint)`,
    );
  }
  const me: LockHolder = { pid: Deno.pid, hostname: hostname(), started: new Date().toISOString() };
  await handle.truncate(0);
  await handle.write(new TextEncoder().encode(JSON.stringify(me) + "\n"));
  let released = false;
  return E.right({
    file,
    release: async () => {
      if (released) return;
      released = true;
      try {
        await handle.truncate(0);
        await handle.unlock();
      } finally {
        handle.close();
      }
    },
  });
}

/**
 * The first steps of every runner: decode the experiment again (an
 * unchecked value is `BadInput`, not run) and take a read-only first look at
 * its run folder, so that a wrong `--resume` is said before any data is read.
 *
 * @example
 * ```ts
 * import { decodeExperiment } from "../experiment.ts";
 * import { presetExperiment } from "../presets.ts";
 * import { checkedExperiment } from "./run_folder.ts";
 * const r = await checkedExperiment(presetExperiment("ptb"), decodeExperiment, {
 *   runDir: await Deno.makeTempDir(),
 * });
 * console.log(r._tag); // Right
 * ```
 */
export async function checkedExperiment<
  X extends { readonly data: { readonly dir: string | null } },
>(
  experiment: X,
  decode: (u: unknown) => E.Either<{ readonly message: string }, X>,
  opts: Pick<SessionOptions, "runDir" | "resume">,
): Promise<E.Either<RunError, X>> {
  const decoded = decode(experiment);
  if (E.isLeft(decoded)) return badInput(decoded.left.message);
  const folder = await checkRunFolder(opts.runDir, decoded.right, opts.resume === true, decode);
  return E.isLeft(folder) ? folder : E.right(decoded.right);
}
