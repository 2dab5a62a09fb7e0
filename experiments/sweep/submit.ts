/**
 * `--slurm`: a sweep's unfinished tasks as one Slurm array job. Each array
 * task runs `experiments/cli.ts <sweep> --resume SWEEP_DIR --member LABEL
 * --seed N` in this checkout, which does nothing when the task has
 * finished and resumes it from its checkpoint when it was interrupted
 * (cancelled, preempted and requeued, or out of time: Slurm's SIGTERM
 * makes the runner save one).
 *
 * @module
 */
import { describeError } from "../../spec/errors.ts";
import * as E from "fp-ts/lib/Either.js";
import { join, relative, resolve } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import type { Either } from "../../spec/either.ts";
import { SLURM_DEFAULTS, type Sweep } from "../sweep_spec.ts";
import { badInput, failed, type RunError, writeAtomic } from "../loop/run_folder.ts";
import { writeSbatchScript } from "./cluster/sbatch.ts";
import { type SlurmOptions, submitSbatch } from "./cluster/slurm.ts";
import { collectSweep, readSubmissions, slurmDir, type Submission } from "./collect.ts";
import { sweepTasks } from "./plan.ts";

/** The permissions an array task's runner gets: those of `deno task experiment`. */
export const TASK_PERMISSIONS: readonly string[] = [
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-ffi",
  "--allow-sys",
  "--allow-net",
];

/**
 * What a submission did.
 *
 * @example
 * ```ts
 * import type { Submitted } from "./submit.ts";
 * const say = (s: Submitted) => s.job === null ? "nothing to run" : `job ${s.job.jobId}`;
 * ```
 */
export interface Submitted {
  /** `null` when every task had finished: nothing was submitted. */
  readonly job: Submission | null;
  /** The script written. */
  readonly script: string;
  /** Tasks in the job, as `label seed N`. */
  readonly tasks: readonly string[];
}

/**
 * Writes `<sweepDir>/slurm/sweep.sbatch` for the tasks that have not
 * finished (one array task each, the resources of `sweep.slurm`), submits
 * it with `sbatch` (`sbatchArgs` added to its command line), and records
 * the job in `slurm/submissions.json`. The sweep folder must already hold
 * the sweep (`openSweepFolder`).
 *
 * @example
 * ```ts
 * import { submitSweep } from "./submit.ts";
 * import type { Sweep } from "../sweep_spec.ts";
 * const submit = async (sweep: Sweep, dir: string) => {
 *   const r = await submitSweep(sweep, dir, { sbatchArgs: ["--partition=cpu"] });
 *   return r._tag === "Right" ? r.right.job?.jobId : r.left.message;
 * };
 * ```
 */
export async function submitSweep(
  sweep: Sweep,
  sweepDir: string,
  opts: {
    readonly sbatchArgs?: readonly string[];
    /** Flags every task's runner gets, e.g. `["--matmul", "native"]`. */
    readonly runnerArgs?: readonly string[];
    readonly slurm?: SlurmOptions;
  } = {},
): Promise<Either<RunError, Submitted>> {
  const here = new URL("../cli.ts", import.meta.url);
  if (here.protocol !== "file:") {
    return badInput(`--slurm runs the tasks from a local checkout; this module is ${here.href}`);
  }
  const cli = fromFileUrl(here);
  const config = fromFileUrl(new URL("../../deno.json", import.meta.url));
  const absDir = resolve(sweepDir);
  const collected = await collectSweep(sweep, absDir);
  if (E.isLeft(collected)) return collected;
  const open = collected.right.statuses.filter((s) => s.state !== "finished");
  const script = join(slurmDir(absDir), "sweep.sbatch");
  const tasks = sweepTasks(sweep, absDir);
  const resources = sweep.slurm ?? SLURM_DEFAULTS;
  if (open.length === 0) return E.right({ job: null, script, tasks: [] });
  const names = open.map((s) => `${s.label} seed ${s.seed}`);
  const written = await writeSbatchScript(script, {
    jobName: sweep.name,
    workDir: Deno.cwd(),
    logDir: slurmDir(absDir),
    tasks: tasks.map((t) => ({
      label: `${t.label} seed ${t.seed}`,
      argv: [
        Deno.execPath(),
        "run",
        ...TASK_PERMISSIONS,
        `--config=${config}`,
        cli,
        sweep.name,
        "--resume",
        absDir,
        "--member",
        t.label,
        "--seed",
        `${t.seed}`,
        ...(opts.runnerArgs ?? []),
      ],
    })),
    arrayIndices: open.map((s) => s.index),
    cpusPerTask: resources.cpusPerTask,
    memoryMb: resources.memoryMb,
    ...(resources.timeLimitMinutes === null
      ? {}
      : { timeLimitMinutes: resources.timeLimitMinutes }),
    ...(opts.sbatchArgs === undefined ? {} : { submitArgs: opts.sbatchArgs }),
  });
  if (E.isLeft(written)) return failed(`${script}: ${written.left.message}`, written.left);
  const job = await submitSbatch(script, {
    ...opts.slurm,
    ...(opts.sbatchArgs === undefined ? {} : { extraArgs: opts.sbatchArgs }),
  });
  if (E.isLeft(job)) return failed(job.left.message, job.left);
  const submission: Submission = {
    jobId: job.right.jobId,
    indices: open.map((s) => s.index),
    submitted: new Date().toISOString(),
    script: relative(absDir, script),
  };
  try {
    const before = await readSubmissions(absDir);
    await writeAtomic(
      join(slurmDir(absDir), "submissions.json"),
      JSON.stringify([...before, submission], null, 2) + "\n",
    );
  } catch (e) {
    return failed(`${absDir}: job ${job.right.jobId} submitted, but: ${describeError(e)}`, e);
  }
  return E.right({ job: submission, script, tasks: names });
}
