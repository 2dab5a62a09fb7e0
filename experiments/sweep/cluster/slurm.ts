/**
 * Talking to Slurm through its commands: submit a script with
 * `sbatch --parsable` ({@linkcode submitSbatch}), ask for an array's task
 * states with `squeue` ({@linkcode queryArrayTasks}) or, where the cluster
 * keeps accounting, `sacct` ({@linkcode queryAccounting}), and cancel tasks
 * with `scancel` ({@linkcode cancelTasks}). The user's `--sbatch "ARGS"`
 * becomes words with {@linkcode parseSbatchArgs}.
 *
 * No shell is involved: every command gets its arguments as an argv. Each
 * function returns an `Either`; a failure names the command, its arguments
 * and its stderr ({@linkcode SlurmError}).
 *
 * What Slurm remembers is short-lived: `squeue` forgets a finished job after
 * the cluster's `MinJobAge` (300 s by default), and `sacct` works only where
 * the cluster runs the accounting daemon (`slurmdbd`). The sweep's own run
 * folders (a finished marker per task) stay the record of what finished;
 * these queries say what is queued, running, or ended badly.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSbatchArgs, submitSbatch } from "./slurm.ts";
 * // Submits a sweep's script with the user's extra arguments, or says why not.
 * const submit = async (script: string, userArgs: string): Promise<string> => {
 *   const extra = parseSbatchArgs(userArgs);
 *   if (extra._tag === "Left") return extra.left.message;
 *   const job = await submitSbatch(script, { extraArgs: extra.right });
 *   return job._tag === "Right" ? `submitted job ${job.right.jobId}` : job.left.message;
 * };
 * // Refused before sbatch runs: the sweep sets the array itself.
 * assert.match(await submit("/tmp/sweep.sbatch", "--array=1"), /--array is not allowed/);
 * ```
 *
 * @module
 */
import { describeError } from "../../../spec/errors.ts";
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import { splitShellWords } from "./shell.ts";

/**
 * How running a Slurm command went wrong.
 *
 * @example
 * ```ts
 * import type { SlurmError } from "./slurm.ts";
 * const show = (e: SlurmError) => (e._tag === "SlurmCommandFailed" ? `${e.command}: ${e.stderr}` : e.message);
 * ```
 */
export type SlurmError =
  | {
    /** The command is not installed (not on PATH, or not in `bin`). */
    readonly _tag: "SlurmCommandMissing";
    readonly command: string;
    readonly message: string;
  }
  | {
    /** It ran and exited non-zero (e.g. sbatch refused the job), or could not be started. */
    readonly _tag: "SlurmCommandFailed";
    readonly command: string;
    readonly args: readonly string[];
    /** The exit code; `null` when it could not be started. */
    readonly exitCode: number | null;
    readonly stderr: string;
    readonly message: string;
  }
  | {
    /** It did not finish within the time limit (a controller that does not answer) and was killed. */
    readonly _tag: "SlurmCommandTimedOut";
    readonly command: string;
    readonly args: readonly string[];
    readonly timeoutMs: number;
    readonly message: string;
  }
  | {
    /** It succeeded but printed something this module cannot read. */
    readonly _tag: "SlurmOutputUnreadable";
    readonly command: string;
    readonly args: readonly string[];
    readonly stdout: string;
    readonly message: string;
  }
  | {
    /** The controller does not know the job (never existed, or finished more than `MinJobAge` ago). */
    readonly _tag: "SlurmJobUnknown";
    readonly command: string;
    readonly jobId: number;
    readonly stderr: string;
    readonly message: string;
  }
  | {
    /** The user's extra sbatch arguments cannot be used (shell syntax, or an option the sweep sets itself). */
    readonly _tag: "InvalidSbatchArgs";
    /** The text or word at fault. */
    readonly argument: string;
    readonly message: string;
  };

/**
 * Where the Slurm commands are and how they run.
 *
 * @example
 * ```ts
 * import type { SlurmOptions } from "./slurm.ts";
 * const opts: SlurmOptions = { env: { SLURM_CONF: "/tmp/cluster/slurm.conf" }, timeoutMs: 30_000 };
 * ```
 */
export interface SlurmOptions {
  /** Folder holding `sbatch`, `squeue`, …; default: looked up on PATH. */
  readonly bin?: string;
  /** Variables added to the commands' environment (e.g. `SLURM_CONF`). */
  readonly env?: Readonly<Record<string, string>>;
  /** Kill a command after this long; default 60 000 ms. */
  readonly timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 60_000;

const decoder = new TextDecoder();

/** Runs `command args` (no shell); its stdout, or the error. */
async function runSlurm(
  command: string,
  args: readonly string[],
  opts: SlurmOptions,
): Promise<E.Either<SlurmError, string>> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const path = opts.bin === undefined ? command : join(opts.bin, command);
  const signal = AbortSignal.timeout(timeoutMs);
  const shown = [command, ...args].join(" ");
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(path, {
      args: [...args],
      env: { ...opts.env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal,
    }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return E.left({
        _tag: "SlurmCommandMissing",
        command,
        message: `${command}: not found (${
          opts.bin === undefined ? "not on PATH" : `not in ${opts.bin}`
        }): is Slurm installed here?`,
      });
    }
    const why = describeError(e);
    return E.left({
      _tag: "SlurmCommandFailed",
      command,
      args,
      exitCode: null,
      stderr: "",
      message: `${shown}: could not start: ${why}`,
    });
  }
  if (signal.aborted) {
    return E.left({
      _tag: "SlurmCommandTimedOut",
      command,
      args,
      timeoutMs,
      message: `${shown}: no answer within ${timeoutMs} ms; killed`,
    });
  }
  const stderr = decoder.decode(out.stderr).trim();
  if (!out.success) {
    return E.left({
      _tag: "SlurmCommandFailed",
      command,
      args,
      exitCode: out.code,
      stderr,
      message: `${shown}: exit ${out.code}${stderr === "" ? "" : `: ${stderr}`}`,
    });
  }
  return E.right(decoder.decode(out.stdout));
}

// ---------------------------------------------------------------------------
// The user's extra arguments

/** sbatch's short options that take no argument (so more letters may follow in one word). */
const SHORT_FLAGS = new Set(["h", "H", "k", "O", "Q", "s", "u", "v", "V", "W"]);

/** Options the sweep's script sets and relies on: given again, they would break it. */
const RESERVED: ReadonlyArray<readonly [long: string, short: string | null, why: string]> = [
  ["array", "a", "the sweep sets which tasks run"],
  ["output", "o", "the sweep keeps task logs in its folder"],
  ["error", "e", "the sweep keeps task logs in its folder"],
  ["wrap", null, "the sweep submits its own script"],
];

/**
 * The user's `--sbatch "ARGS"` as words for sbatch's command line (split
 * without a shell, see `splitShellWords`), refusing what would break the
 * sweep: `--array`, `--output`, `--error` and `--wrap` (also abbreviated, or
 * as `-a`/`-o`/`-e`), and a bare `--`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSbatchArgs } from "./slurm.ts";
 * const ok = parseSbatchArgs(`-p gpu --account="my lab" --qos=long`);
 * assert(ok._tag === "Right");
 * assert.deepEqual(ok.right, ["-p", "gpu", "--account=my lab", "--qos=long"]);
 * const bad = parseSbatchArgs("--array=0-3");
 * assert(bad._tag === "Left" && bad.left._tag === "InvalidSbatchArgs");
 * ```
 */
export function parseSbatchArgs(text: string): E.Either<SlurmError, string[]> {
  const words = splitShellWords(text);
  if (E.isLeft(words)) {
    return E.left({
      _tag: "InvalidSbatchArgs",
      argument: text,
      message: `--sbatch: ${words.left.message}`,
    });
  }
  const refuse = (word: string, why: string): E.Either<SlurmError, string[]> =>
    E.left({ _tag: "InvalidSbatchArgs", argument: word, message: `--sbatch: ${word}: ${why}` });
  for (const word of words.right) {
    if (word === "--") return refuse(word, "would end sbatch's options before the sweep's script");
    if (word.startsWith("--")) {
      const name = word.slice(2).split("=")[0];
      const hit = RESERVED.find(([long]) => long.startsWith(name));
      if (hit !== undefined) return refuse(word, `--${hit[0]} is not allowed: ${hit[2]}`);
    } else if (word.startsWith("-") && word.length > 1) {
      // A cluster of short flags, up to the first option that takes an argument.
      for (const letter of word.slice(1)) {
        const hit = RESERVED.find(([, short]) => short === letter);
        if (hit !== undefined) {
          return refuse(word, `-${letter} (--${hit[0]}) is not allowed: ${hit[2]}`);
        }
        if (!SHORT_FLAGS.has(letter)) break;
      }
    }
  }
  return E.right(words.right);
}

// ---------------------------------------------------------------------------
// Submitting

/**
 * A submitted job.
 *
 * @example
 * ```ts
 * import type { SubmittedJob } from "./slurm.ts";
 * const show = (j: SubmittedJob) => `job ${j.jobId}${j.cluster === null ? "" : ` on ${j.cluster}`}`;
 * ```
 */
export interface SubmittedJob {
  /** The job id (an array's tasks are `<jobId>_<index>`). */
  readonly jobId: number;
  /** The cluster, when sbatch names one (federations and multi-cluster setups). */
  readonly cluster: string | null;
  /** The arguments sbatch was given. */
  readonly args: readonly string[];
}

/**
 * Submits `script` with `sbatch --parsable [extraArgs…] script` (extra
 * arguments on the command line override the script's `#SBATCH` lines) and
 * reads the job id.
 *
 * @example
 * ```ts
 * import { submitSbatch } from "./slurm.ts";
 * const submit = async (script: string) => {
 *   const job = await submitSbatch(script, { extraArgs: ["--partition=cpu"] });
 *   return job._tag === "Right" ? `submitted job ${job.right.jobId}` : job.left.message;
 * };
 * ```
 */
export async function submitSbatch(
  script: string,
  opts: SlurmOptions & {
    /** Words for sbatch's command line, e.g. from {@linkcode parseSbatchArgs}. */
    readonly extraArgs?: readonly string[];
  } = {},
): Promise<E.Either<SlurmError, SubmittedJob>> {
  const args = ["--parsable", ...(opts.extraArgs ?? []), script];
  const out = await runSlurm("sbatch", args, opts);
  if (E.isLeft(out)) return out;
  // `--parsable`: "<id>" or "<id>;<cluster>", after any warnings sbatch prints to stdout.
  const last = out.right.trim().split("\n").at(-1) ?? "";
  const m = /^(\d+)(?:;(\S+))?$/.exec(last.trim());
  if (m === null) {
    return E.left({
      _tag: "SlurmOutputUnreadable",
      command: "sbatch",
      args,
      stdout: out.right,
      message: `sbatch ${args.join(" ")}: expected a job id, got ${JSON.stringify(out.right)}`,
    });
  }
  return E.right({ jobId: Number(m[1]), cluster: m[2] ?? null, args });
}

// ---------------------------------------------------------------------------
// States

/**
 * Where a task stands, from its Slurm state: `waiting` (pending, requeued,
 * held), `running` (running, completing, suspended, …), `completed`
 * (exit 0), `ended` (cancelled, failed, timed out, preempted, out of
 * memory, node failure, …), `unknown` (a state this module does not know).
 *
 * @example
 * ```ts
 * import type { TaskPhase } from "./slurm.ts";
 * const done = (p: TaskPhase) => p === "completed" || p === "ended";
 * ```
 */
export type TaskPhase = "waiting" | "running" | "completed" | "ended" | "unknown";

const PHASES: Readonly<Record<string, TaskPhase>> = {
  PENDING: "waiting",
  REQUEUED: "waiting",
  REQUEUE_HOLD: "waiting",
  REQUEUE_FED: "waiting",
  RESV_DEL_HOLD: "waiting",
  CONFIGURING: "running",
  RUNNING: "running",
  COMPLETING: "running",
  SIGNALING: "running",
  STAGE_OUT: "running",
  SUSPENDED: "running",
  STOPPED: "running",
  RESIZING: "running",
  COMPLETED: "completed",
  CANCELLED: "ended",
  FAILED: "ended",
  TIMEOUT: "ended",
  PREEMPTED: "ended",
  NODE_FAIL: "ended",
  BOOT_FAIL: "ended",
  DEADLINE: "ended",
  OUT_OF_MEMORY: "ended",
  REVOKED: "ended",
  SPECIAL_EXIT: "ended",
};

/**
 * The phase of a Slurm state as `squeue` or `sacct` prints it
 * (`CANCELLED by 1000` and `COMPLETED+` are read by their first word).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { taskPhase } from "./slurm.ts";
 * assert.equal(taskPhase("PENDING"), "waiting");
 * assert.equal(taskPhase("CANCELLED by 0"), "ended");
 * assert.equal(taskPhase("OUT_OF_MEMORY"), "ended");
 * ```
 */
export function taskPhase(state: string): TaskPhase {
  const word = state.trim().split(/\s+/)[0].replace(/\+$/, "").toUpperCase();
  return PHASES[word] ?? "unknown";
}

/**
 * One array task as Slurm reports it.
 *
 * @example
 * ```ts
 * import type { TaskState } from "./slurm.ts";
 * const line = (t: TaskState) => `${t.arrayJobId}_${t.taskIndex}: ${t.state}`;
 * ```
 */
export interface TaskState {
  /** The array's job id (what sbatch printed). */
  readonly arrayJobId: number;
  /** The array index. */
  readonly taskIndex: number;
  /** The task's own job id once it has started (else the array's). */
  readonly jobId: number;
  /** Slurm's state word, e.g. `PENDING`, `RUNNING`, `COMPLETED`, `CANCELLED`. */
  readonly state: string;
  /** {@linkcode taskPhase} of the state. */
  readonly phase: TaskPhase;
  /** squeue's reason (`Resources`, `Priority`, …); `null` when none or from sacct. */
  readonly reason: string | null;
  /** sacct's exit code and signal (`0:15` → `{ code: 0, signal: 15 }`); `null` from squeue. */
  readonly exit: { readonly code: number; readonly signal: number } | null;
}

/**
 * The indices of an array index expression as Slurm prints it: `3`,
 * `[4-5,7]`, `0-9:2` (step 2), `[0-3%2]` (at most 2 at once); `null` when
 * it is not one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { expandIndices } from "./slurm.ts";
 * assert.deepEqual(expandIndices("[1-3,7%2]"), [1, 2, 3, 7]);
 * assert.deepEqual(expandIndices("0-6:3"), [0, 3, 6]);
 * assert.equal(expandIndices("N/A"), null);
 * ```
 */
export function expandIndices(text: string): number[] | null {
  const body = text.trim().replace(/^\[(.*)\]$/, "$1").replace(/%\d+$/, "");
  const out: number[] = [];
  for (const part of body.split(",")) {
    const m = /^(\d+)(?:-(\d+)(?::(\d+))?)?$/.exec(part);
    if (m === null) return null;
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    const step = m[3] === undefined ? 1 : Number(m[3]);
    if (to < from || step < 1 || to - from > 1_000_000) return null;
    for (let i = from; i <= to; i += step) out.push(i);
  }
  return out;
}

const jobUnknown = (command: string, jobId: number) => (e: SlurmError): SlurmError =>
  e._tag === "SlurmCommandFailed" && /invalid job id/i.test(e.stderr)
    ? {
      _tag: "SlurmJobUnknown",
      command,
      jobId,
      stderr: e.stderr,
      message: `${command}: job ${jobId} is unknown to the controller ` +
        "(it never existed, or it finished longer ago than the cluster's MinJobAge)",
    }
    : e;

const byIndex = (a: TaskState, b: TaskState) => a.taskIndex - b.taskIndex;

/**
 * Runs a query command and reads its lines with `parse` (the tasks a line
 * names, or null when it is unreadable), sorted by index; `SlurmJobUnknown`
 * when the command does not know the job or prints no line.
 */
async function queryTasks(
  command: "squeue" | "sacct",
  flags: readonly string[],
  jobId: number,
  opts: SlurmOptions,
  parse: (line: string) => TaskState[] | null,
): Promise<E.Either<SlurmError, TaskState[]>> {
  const args = [`--jobs=${jobId}`, "--noheader", ...flags];
  const out = await runSlurm(command, args, opts);
  if (E.isLeft(out)) return E.left(jobUnknown(command, jobId)(out.left));
  const tasks: TaskState[] = [];
  for (const line of out.right.split("\n").map((l) => l.trim()).filter((l) => l !== "")) {
    const read = parse(line);
    if (read === null) {
      return E.left({
        _tag: "SlurmOutputUnreadable",
        command,
        args,
        stdout: out.right,
        message: `${command} ${args.join(" ")}: cannot read the line ${JSON.stringify(line)}`,
      });
    }
    tasks.push(...read);
  }
  if (tasks.length === 0) {
    return E.left({
      _tag: "SlurmJobUnknown",
      command,
      jobId,
      stderr: "",
      message: `${command}: no record of job ${jobId}`,
    });
  }
  return E.right(tasks.sort(byIndex));
}

/**
 * The tasks of array job `jobId` that the controller still holds, by index,
 * from `squeue --array --states=all`: queued, running and recently ended
 * ones (for `MinJobAge` after they end). `SlurmJobUnknown` once it holds
 * none.
 *
 * @example
 * ```ts
 * import { queryArrayTasks } from "./slurm.ts";
 * const show = async (jobId: number) => {
 *   const tasks = await queryArrayTasks(jobId, { env: { SLURM_CONF: "/tmp/cluster/slurm.conf" } });
 *   return tasks._tag === "Left"
 *     ? tasks.left.message
 *     : tasks.right.map((t) => `${jobId}_${t.taskIndex} ${t.state}`).join("\n");
 * };
 * ```
 */
export async function queryArrayTasks(
  jobId: number,
  opts: SlurmOptions = {},
): Promise<E.Either<SlurmError, TaskState[]>> {
  const flags = ["--array", "--states=all", "--format=%F|%K|%A|%T|%r"];
  return await queryTasks("squeue", flags, jobId, opts, (line) => {
    const f = line.split("|");
    const indices = f.length === 5 ? expandIndices(f[1]) : null;
    if (indices === null || !/^\d+$/.test(f[0]) || !/^\d+$/.test(f[2])) return null;
    return indices.map((taskIndex) => ({
      arrayJobId: Number(f[0]),
      taskIndex,
      jobId: Number(f[2]),
      state: f[3],
      phase: taskPhase(f[3]),
      reason: f[4] === "" || f[4] === "None" ? null : f[4],
      exit: null,
    }));
  });
}

/**
 * The tasks of array job `jobId` from the accounting database (`sacct`),
 * with their exit codes; fails with `SlurmCommandFailed` where the cluster
 * keeps no accounting (no `slurmdbd`: "Slurm accounting storage is
 * disabled").
 *
 * @example
 * ```ts
 * import { queryAccounting } from "./slurm.ts";
 * const exitCodes = async (jobId: number) => {
 *   const tasks = await queryAccounting(jobId);
 *   return tasks._tag === "Left" ? tasks.left.message : tasks.right.map((t) => t.exit?.code);
 * };
 * ```
 */
export async function queryAccounting(
  jobId: number,
  opts: SlurmOptions = {},
): Promise<E.Either<SlurmError, TaskState[]>> {
  const flags = ["--allocations", "--parsable2", "--format=JobID,JobIDRaw,State,ExitCode"];
  return await queryTasks("sacct", flags, jobId, opts, (line) => {
    const f = line.split("|");
    const id = f.length === 4 ? /^(\d+)_(.+)$/.exec(f[0]) : null;
    const indices = id === null ? null : expandIndices(id[2]);
    const exit = f.length === 4 ? /^(\d+):(\d+)$/.exec(f[3]) : null;
    if (id === null || indices === null || exit === null || !/^\d+$/.test(f[1])) return null;
    return indices.map((taskIndex) => ({
      arrayJobId: Number(id[1]),
      taskIndex,
      jobId: Number(f[1]),
      state: f[2],
      phase: taskPhase(f[2]),
      reason: null,
      exit: { code: Number(exit[1]), signal: Number(exit[2]) },
    }));
  });
}

/**
 * Cancels tasks of array job `jobId` (`scancel <jobId>_<i> …`), or the
 * whole array when `taskIndices` is left out. Slurm sends the tasks
 * SIGTERM, then SIGKILL after the cluster's `KillWait`.
 *
 * @example
 * ```ts
 * import { cancelTasks } from "./slurm.ts";
 * const cancelSecond = (jobId: number) => cancelTasks(jobId, { taskIndices: [1] });
 * ```
 */
export async function cancelTasks(
  jobId: number,
  opts: SlurmOptions & {
    /** The array indices to cancel; default: the whole array. */
    readonly taskIndices?: readonly number[];
  } = {},
): Promise<E.Either<SlurmError, void>> {
  const ids = opts.taskIndices === undefined
    ? [`${jobId}`]
    : opts.taskIndices.map((i) => `${jobId}_${i}`);
  const out = await runSlurm("scancel", ids, opts);
  return E.isLeft(out) ? E.left(jobUnknown("scancel", jobId)(out.left)) : E.right(undefined);
}
