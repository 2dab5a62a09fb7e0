/**
 * The `sbatch` script of a sweep: one Slurm array task per (member × seed),
 * each running a command given as data, with its logs inside the sweep
 * folder.
 *
 * The script is self-contained (`sbatch SCRIPT` submits it by hand too):
 *
 * - `#SBATCH` lines: job name, `--array` (all tasks, or the ones still to
 *   run), CPUs and memory per task, optional time limit, logs
 *   `<logDir>/slurm-%A_%a.out` / `.err` (`%A` the array's job id, `%a` the
 *   task index), `--open-mode=append` (a requeued task adds to its log
 *   instead of truncating it), `--requeue` (preemption or a node failure
 *   puts the task back in the queue), and `--signal=B:TERM@<s>` (Slurm
 *   sends the batch shell SIGTERM that many seconds before the time limit).
 * - a `case` on `SLURM_ARRAY_TASK_ID` that picks the task's label and argv,
 *   every word single-quoted, so task index `i` always means `tasks[i]`
 *   whichever subset a submission runs;
 * - the command started in the background and waited for, with SIGTERM,
 *   SIGINT and SIGUSR1 handed to it as SIGTERM: the task's runner saves its
 *   checkpoint and exits, and the shell exits with the runner's status. `scancel` and preemption signal every process of the task (the
 *   runner then sees SIGTERM twice, once from Slurm and once from the
 *   shell); the time-limit warning reaches only the shell (`B:`).
 *
 * Resuming is the command's job: run again, it continues from its last
 * checkpoint or does nothing when it has finished. So re-submitting the
 * unfinished task indices (`arrayIndices`) resumes a sweep, and a requeued
 * task resumes by itself.
 *
 * Slurm does not create the log folder, and a task whose log file cannot be
 * opened fails without a word: {@linkcode writeSbatchScript} creates it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { renderSbatchScript } from "./sbatch.ts";
 * const script = renderSbatchScript({
 *   jobName: "ptb-sweep",
 *   workDir: "/home/me/crt",
 *   logDir: "/home/me/crt/runs/ptb-sweep-1",
 *   tasks: [
 *     { label: "crt-half seed 1", argv: ["deno", "task", "experiment", "ptb-sweep", "--member", "crt-half", "--seed", "1"] },
 *     { label: "crt-half seed 2", argv: ["deno", "task", "experiment", "ptb-sweep", "--member", "crt-half", "--seed", "2"] },
 *   ],
 *   cpusPerTask: 2,
 *   memoryMb: 4096,
 * });
 * assert(script._tag === "Right");
 * assert(script.right.includes("#SBATCH --array=0-1\n"));
 * assert(script.right.includes("#SBATCH --output=/home/me/crt/runs/ptb-sweep-1/slurm-%A_%a.out\n"));
 * ```
 *
 * @module
 */
import { describeError } from "../../../spec/errors.ts";
import * as E from "fp-ts/lib/Either.js";
import { isAbsolute, join } from "node:path";
import { quoteShell } from "./shell.ts";

/**
 * One array task: what it is called and what it runs.
 *
 * @example
 * ```ts
 * import type { SbatchTask } from "./sbatch.ts";
 * const t: SbatchTask = { label: "crt-half seed 1", argv: ["deno", "task", "experiment", "ptb-sweep", "--member", "crt-half", "--seed", "1"] };
 * ```
 */
export interface SbatchTask {
  /** Shown in the script and at the top of the task's log, e.g. `crt-half seed 1`. */
  readonly label: string;
  /** The command and its arguments, run in `workDir`; `argv[0]` is looked up on PATH. */
  readonly argv: readonly string[];
}

/**
 * Everything the script says.
 *
 * @example
 * ```ts
 * import type { SbatchSpec } from "./sbatch.ts";
 * const spec: SbatchSpec = {
 *   jobName: "ptb-sweep",
 *   workDir: "/home/me/crt",
 *   logDir: "/home/me/crt/runs/ptb-sweep-1",
 *   tasks: [{ label: "a seed 1", argv: ["true"] }],
 *   cpusPerTask: 2,
 *   memoryMb: 4096,
 *   timeLimitMinutes: 120,
 * };
 * ```
 */
export interface SbatchSpec {
  /** `--job-name`; characters other than letters, digits, `.`, `_` and `-` become `_`. */
  readonly jobName: string;
  /** Absolute folder the tasks run in (`cd` before the command). */
  readonly workDir: string;
  /** Absolute folder for the logs (`slurm-%A_%a.out`/`.err`); no blanks, quotes or backslashes. */
  readonly logDir: string;
  /** All tasks of the sweep, in index order: task `i` is array index `i`. */
  readonly tasks: readonly SbatchTask[];
  /** The array indices this submission runs (default: all), e.g. the unfinished ones. */
  readonly arrayIndices?: readonly number[];
  /** At most this many tasks run at once (`--array=…%N`); default: no limit. */
  readonly maxRunning?: number;
  /** `--cpus-per-task`: a positive integer. */
  readonly cpusPerTask: number;
  /** `--mem` per task, in MiB: a positive integer. */
  readonly memoryMb: number;
  /** `--time` per task, in minutes; default: the partition's limit. */
  readonly timeLimitMinutes?: number;
  /** `--signal=B:TERM@this`: seconds of warning before the time limit; default 60. */
  readonly warnSeconds?: number;
  /**
   * The extra `sbatch` arguments a submission adds on the command line
   * (which overrides the script's `#SBATCH` lines); recorded in a comment so
   * the script says how it was submitted. Default: none.
   */
  readonly submitArgs?: readonly string[];
}

/**
 * Why a script could not be written.
 *
 * @example
 * ```ts
 * import type { SbatchScriptError } from "./sbatch.ts";
 * const show = (e: SbatchScriptError) => `${e.field}: ${e.message}`;
 * ```
 */
export type SbatchScriptError =
  | {
    /** A field of the {@linkcode SbatchSpec} is out of range or unusable. */
    readonly _tag: "InvalidSbatchSpec";
    /** The field, e.g. `tasks[2].argv` or `logDir`. */
    readonly field: string;
    readonly message: string;
  }
  | {
    /** The log folder or the script could not be written. */
    readonly _tag: "SbatchWriteFailed";
    readonly field: "path" | "logDir";
    /** The file or folder. */
    readonly path: string;
    readonly message: string;
  };

const invalid = (field: string, message: string): E.Either<SbatchScriptError, never> =>
  E.left({ _tag: "InvalidSbatchSpec", field, message: `${field}: ${message}` });

const isPositiveInt = (n: number): boolean => Number.isSafeInteger(n) && n > 0;

/**
 * Array indices in Slurm's compact form: sorted, duplicates dropped, runs
 * of consecutive indices as `a-b`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compactIndices } from "./sbatch.ts";
 * assert.equal(compactIndices([5, 0, 1, 2, 7, 8, 2]), "0-2,5,7-8");
 * ```
 */
export function compactIndices(indices: readonly number[]): string {
  const sorted = [...new Set(indices)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(",");
}

// sbatch reads `#SBATCH` lines itself (no shell): a path there must not
// need quoting. In file names `%` starts a pattern (`%A`, `%a`, `%j`, …),
// written `%%` for a literal `%`, and a backslash turns patterns off.
const UNSAFE_DIRECTIVE_PATH = /[\s'"\\#]/;

const checkSpec = (spec: SbatchSpec): E.Either<SbatchScriptError, readonly number[]> => {
  if (spec.jobName.trim() === "") return invalid("jobName", "empty");
  for (const field of ["workDir", "logDir"] as const) {
    if (!isAbsolute(spec[field])) {
      return invalid(field, `must be an absolute path, got ${JSON.stringify(spec[field])}`);
    }
    if (spec[field].includes("\0")) return invalid(field, "holds a NUL byte");
  }
  if (UNSAFE_DIRECTIVE_PATH.test(spec.logDir)) {
    return invalid(
      "logDir",
      `${JSON.stringify(spec.logDir)} holds a blank, quote, '#' or backslash, ` +
        "which an #SBATCH line cannot carry: choose a sweep folder without them",
    );
  }
  if (spec.tasks.length === 0) return invalid("tasks", "no tasks");
  for (const [i, t] of spec.tasks.entries()) {
    if (t.argv.length === 0 || t.argv[0] === "") return invalid(`tasks[${i}].argv`, "no command");
    const nul = t.argv.findIndex((w) => w.includes("\0"));
    if (nul >= 0) return invalid(`tasks[${i}].argv[${nul}]`, "holds a NUL byte");
    if (/[\0\n\r]/.test(t.label)) return invalid(`tasks[${i}].label`, "holds a line break");
  }
  if (!isPositiveInt(spec.cpusPerTask)) {
    return invalid("cpusPerTask", `must be a positive integer, got ${spec.cpusPerTask}`);
  }
  if (!isPositiveInt(spec.memoryMb)) {
    return invalid("memoryMb", `must be a positive integer (MiB), got ${spec.memoryMb}`);
  }
  const optionalPositive = [
    ["timeLimitMinutes", spec.timeLimitMinutes],
    ["maxRunning", spec.maxRunning],
    ["warnSeconds", spec.warnSeconds],
  ] as const;
  for (const [field, value] of optionalPositive) {
    if (value !== undefined && !isPositiveInt(value)) {
      return invalid(field, `must be a positive integer, got ${value}`);
    }
  }
  const indices = spec.arrayIndices ?? spec.tasks.map((_, i) => i);
  if (indices.length === 0) return invalid("arrayIndices", "no tasks to run");
  const bad = indices.find((i) => !Number.isSafeInteger(i) || i < 0 || i >= spec.tasks.length);
  if (bad !== undefined) {
    return invalid("arrayIndices", `${bad} is not a task index (0 … ${spec.tasks.length - 1})`);
  }
  return E.right(indices);
};

/**
 * The `sbatch` script for `spec` (see the module doc for what it holds), or
 * which field is unusable.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { renderSbatchScript } from "./sbatch.ts";
 * const r = renderSbatchScript({
 *   jobName: "demo",
 *   workDir: "/tmp",
 *   logDir: "/tmp/demo",
 *   tasks: [{ label: "a", argv: ["echo", "a"] }, { label: "b", argv: ["echo", "it's b"] }],
 *   arrayIndices: [1],
 *   cpusPerTask: 1,
 *   memoryMb: 100,
 * });
 * assert(r._tag === "Right");
 * assert(r.right.includes("#SBATCH --array=1\n"));
 * assert(r.right.includes(`cmd=('echo' 'it'\\''s b')`));
 * const bad = renderSbatchScript({ jobName: "demo", workDir: "/tmp", logDir: "runs/x", tasks: [], cpusPerTask: 1, memoryMb: 1 });
 * assert(bad._tag === "Left" && bad.left._tag === "InvalidSbatchSpec" && bad.left.field === "logDir");
 * ```
 */
export function renderSbatchScript(spec: SbatchSpec): E.Either<SbatchScriptError, string> {
  const checked = checkSpec(spec);
  if (E.isLeft(checked)) return checked;
  const indices = checked.right;
  const logs = spec.logDir.replaceAll("%", "%%");
  const throttle = spec.maxRunning === undefined ? "" : `%${spec.maxRunning}`;
  const warn = spec.warnSeconds ?? 60;
  const lines = [
    "#!/bin/bash",
    `#SBATCH --job-name=${spec.jobName.replace(/[^A-Za-z0-9._-]/g, "_")}`,
    `#SBATCH --array=${compactIndices(indices)}${throttle}`,
    "#SBATCH --ntasks=1",
    `#SBATCH --cpus-per-task=${spec.cpusPerTask}`,
    `#SBATCH --mem=${spec.memoryMb}M`,
    ...(spec.timeLimitMinutes === undefined ? [] : [`#SBATCH --time=${spec.timeLimitMinutes}`]),
    `#SBATCH --output=${logs}/slurm-%A_%a.out`,
    `#SBATCH --error=${logs}/slurm-%A_%a.err`,
    "#SBATCH --open-mode=append",
    "#SBATCH --requeue",
    `#SBATCH --signal=B:TERM@${warn}`,
    // sbatch reads #SBATCH lines only up to the first command: they come first.
    `# Written by crt: ${spec.tasks.length} array tasks, one per sweep member and seed.`,
    ...(spec.submitArgs === undefined || spec.submitArgs.length === 0
      ? []
      : [`# Submitted with these sbatch arguments: ${quoteShell(spec.submitArgs)}`]),
    "# Task index, label:",
    ...spec.tasks.map((t, i) => `#   ${i}  ${t.label}`),
    "set -u",
    'case "${SLURM_ARRAY_TASK_ID:-}" in',
    ...spec.tasks.map((t, i) =>
      `  ${i}) label=${quoteShell([t.label])}; cmd=(${quoteShell(t.argv)}) ;;`
    ),
    '  *) echo "crt: no task ${SLURM_ARRAY_TASK_ID:-(unset)} in this script" >&2; exit 2 ;;',
    "esac",
    'echo "crt: task ${SLURM_ARRAY_TASK_ID} (${label}), job ${SLURM_JOB_ID:-?}, on $(hostname)," \\',
    '  "restart ${SLURM_RESTART_COUNT:-0}, at $(date -Is)"',
    `cd -- ${quoteShell([spec.workDir])} || exit 1`,
    '"${cmd[@]}" &',
    "child=$!",
    "# Hand Slurm's signals to the runner as SIGTERM (it saves a checkpoint and exits);",
    "# not SIGINT itself: bash starts background commands with SIGINT ignored.",
    `trap 'kill -s TERM "$child" 2>/dev/null' TERM INT USR1`,
    "# A trapped signal ends `wait` early: wait again until the runner has exited, then",
    "# once more for its status (bash keeps the status of a reaped background job).",
    'while kill -0 "$child" 2>/dev/null; do wait "$child"; done',
    'wait "$child"',
    "status=$?",
    'echo "crt: task ${SLURM_ARRAY_TASK_ID} (${label}) exited with status ${status} at $(date -Is)"',
    'exit "$status"',
  ];
  return E.right(lines.join("\n") + "\n");
}

/**
 * Renders the script for `spec`, creates `spec.logDir` (Slurm would not,
 * and a task without a log file fails silently) and writes the script to
 * `path` (through a temporary file renamed over it), executable.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { writeSbatchScript } from "./sbatch.ts";
 * const dir = await Deno.makeTempDir();
 * const r = await writeSbatchScript(`${dir}/sweep.sbatch`, {
 *   jobName: "demo",
 *   workDir: dir,
 *   logDir: `${dir}/logs`,
 *   tasks: [{ label: "a", argv: ["true"] }],
 *   cpusPerTask: 1,
 *   memoryMb: 100,
 * });
 * assert(r._tag === "Right" && Deno.statSync(`${dir}/logs`).isDirectory);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeSbatchScript(
  path: string,
  spec: SbatchSpec,
): Promise<E.Either<SbatchScriptError, string>> {
  const script = renderSbatchScript(spec);
  if (E.isLeft(script)) return script;
  const failed = (field: "path" | "logDir", at: string, e: unknown) =>
    E.left<SbatchScriptError>({
      _tag: "SbatchWriteFailed",
      field,
      path: at,
      message: `${at}: ${describeError(e)}`,
    });
  try {
    await Deno.mkdir(spec.logDir, { recursive: true });
  } catch (e) {
    return failed("logDir", spec.logDir, e);
  }
  const tmp = join(path, "..", `.${crypto.randomUUID()}.tmp`);
  try {
    await Deno.writeTextFile(tmp, script.right, { mode: 0o755 });
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    return failed("path", path, e);
  }
  return E.right(script.right);
}
