/**
 * Sweeps: members × seeds, each one run in its own folder inside the sweep
 * folder, by one member runner that the local form (every task one after
 * another, {@linkcode runSweep}) and a Slurm array task (`--member NAME
 * --seed N`) share.
 *
 * A sweep folder holds:
 *
 * - `config.json`: the sweep, as resolved;
 * - `<label>/seed-<seed>/`: one run folder per member and seed (a run
 *   folder as `deno task experiment` writes it: `config.json`,
 *   `checkpoints/`, `metrics.jsonl`, `results.json`, …);
 * - `slurm/`: the `sbatch` script, what was submitted (`submissions.json`)
 *   and the tasks' logs, when the sweep went to Slurm;
 * - `sweep.json`, `sweep.md`, `curves.svg`: the merged table (see
 *   `collect.ts`).
 *
 * @module
 */

import { describeError } from "../../spec/errors.ts";
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import type { Either } from "../../spec/either.ts";
import { readLatestCheckpoint } from "../loop/checkpoint.ts";
import type { Corpus } from "../data/ptb.ts";
import { exists } from "../data/_shared.ts";
import { decodeSweep, type Sweep } from "../sweep_spec.ts";
import {
  loadExperimentData,
  type Results,
  runExperiment,
  type RunOptions,
} from "../tasks/language_model.ts";
import {
  badInput,
  canonicalJson,
  failed,
  lockRunFolder,
  type RunError,
  writeAtomic,
} from "../loop/run_folder.ts";
import { type Collected, collectSweep } from "./collect.ts";
import { type SweepTask, sweepTasks } from "./plan.ts";

/** The sweep compared without what may change between sessions: data folders and seed count. */
const sweepIdentity = (s: Sweep): string =>
  canonicalJson({
    ...s,
    seeds: null,
    members: s.members.map((m) => ({
      ...m,
      experiment: { ...m.experiment, data: { ...m.experiment.data, dir: null } },
    })),
  });

/**
 * Opens a sweep folder for `sweep`: creates it with its `config.json` when
 * it has none (`create`), else checks that it holds the same sweep (data
 * folders and the seed count aside). A different seed count is written
 * into `config.json`: `--seeds 5` on a 3-seed sweep folder adds two seeds.
 * Returns the sweep as the folder now holds it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { join } from "node:path";
 * import { tinyExperiment, writeCorpus } from "../../tests/_corpus.ts";
 * import { openSweepFolder } from "./sweep.ts";
 *
 * const dir = await writeCorpus();
 * const sweep = { name: "t", description: "", members: [{ label: "a", experiment: tinyExperiment(dir) }] };
 * const sweepDir = join(dir, "sweep");
 * assert((await openSweepFolder(sweep, sweepDir, { create: true }))._tag === "Right");
 * const other = { ...sweep, name: "u" };
 * const r = await openSweepFolder(other, sweepDir, { create: false });
 * assert(r._tag === "Left" && r.left.message.includes("holds a different sweep"));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function openSweepFolder(
  sweep: Sweep,
  sweepDir: string,
  opts: { readonly create: boolean },
): Promise<Either<RunError, Sweep>> {
  const configFile = join(sweepDir, "config.json");
  const write = async (s: Sweep): Promise<Either<RunError, Sweep>> => {
    try {
      await Deno.mkdir(sweepDir, { recursive: true });
      await writeAtomic(configFile, JSON.stringify(s, null, 2) + "\n");
      return E.right(s);
    } catch (e) {
      return failed(`${sweepDir}: cannot write: ${describeError(e)}`, e);
    }
  };
  if (!(await exists(configFile))) {
    return opts.create
      ? await write(sweep)
      : badInput(`${sweepDir}: not a sweep folder (no config.json)`);
  }
  let saved: Sweep;
  try {
    const d = decodeSweep(JSON.parse(await Deno.readTextFile(configFile)));
    if (E.isLeft(d)) return badInput(`${configFile}: ${d.left.message}`);
    saved = d.right;
  } catch (e) {
    return badInput(`${configFile}: cannot read: ${describeError(e)}`);
  }
  if (sweepIdentity(saved) !== sweepIdentity(sweep)) {
    return badInput(
      `${configFile}: the folder holds a different sweep ("${saved.name}", members ` +
        `${saved.members.map((m) => m.label).join(", ")})`,
    );
  }
  return (saved.seeds ?? 1) === (sweep.seeds ?? 1) ? E.right(sweep) : await write(sweep);
}

/**
 * How one task ended: finished (now, or `kept` from an earlier session),
 * or interrupted after saving a checkpoint.
 *
 * @example
 * ```ts
 * import type { TaskOutcome } from "./sweep.ts";
 * const say = (o: TaskOutcome) => (o._tag === "Finished" ? `ppl ${o.results.valid_ppl}` : o.message);
 * ```
 */
export type TaskOutcome =
  | { readonly _tag: "Finished"; readonly results: Results; readonly kept: boolean }
  | { readonly _tag: "Interrupted"; readonly step: number; readonly message: string };

/**
 * Runs one task into its run folder: does nothing when it has finished
 * (`results.json`), resumes it from its newest checkpoint when it has one,
 * and otherwise starts it afresh (a folder a run left before its first
 * checkpoint is cleared, unless a live process holds it).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { join } from "node:path";
 * import { tinyExperiment, writeCorpus } from "../../tests/_corpus.ts";
 * import { sweepTasks } from "./plan.ts";
 * import { runTaskOf } from "./sweep.ts";
 *
 * const dir = await writeCorpus();
 * const sweep = { name: "t", description: "", members: [{ label: "a", experiment: tinyExperiment(dir) }] };
 * const [task] = sweepTasks(sweep, join(dir, "sweep"));
 * const first = await runTaskOf(task, { progress: false, log: () => {} });
 * assert(first._tag === "Right" && first.right._tag === "Finished" && !first.right.kept);
 * const again = await runTaskOf(task, { progress: false, log: () => {} });
 * assert(again._tag === "Right" && again.right._tag === "Finished" && again.right.kept);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function runTaskOf(
  task: SweepTask,
  opts: Omit<RunOptions, "runDir" | "resume">,
): Promise<Either<RunError, TaskOutcome>> {
  const { runDir } = task;
  const resultsFile = join(runDir, "results.json");
  const readResults = async (): Promise<Either<RunError, Results>> => {
    try {
      return E.right(JSON.parse(await Deno.readTextFile(resultsFile)) as Results);
    } catch (e) {
      return badInput(`${resultsFile}: cannot read: ${describeError(e)}`);
    }
  };
  if (await exists(resultsFile)) {
    return E.map((results: Results): TaskOutcome => ({ _tag: "Finished", results, kept: true }))(
      await readResults(),
    );
  }
  let resume = false;
  if (await exists(join(runDir, "config.json"))) {
    const latest = await readLatestCheckpoint(join(runDir, "checkpoints"));
    if (E.isRight(latest)) {
      resume = true;
    } else {
      // Begun but never checkpointed: start again, unless a live run holds the folder.
      const probe = await lockRunFolder(runDir);
      if (E.isLeft(probe)) return probe;
      await probe.right.release();
      try {
        await Deno.remove(runDir, { recursive: true });
      } catch (e) {
        return failed(`${runDir}: cannot clear: ${describeError(e)}`, e);
      }
    }
  }
  const r = await runExperiment(task.experiment, { ...opts, runDir, resume });
  if (E.isLeft(r)) return r;
  return E.right(
    r.right._tag === "Completed"
      ? { _tag: "Finished", results: r.right.results, kept: false }
      : { _tag: "Interrupted", step: r.right.step, message: r.right.message },
  );
}

/** Seconds a sweep task is assumed to spend outside training until one has been measured. */
export const SWEEP_OUTSIDE_TRAINING_SECONDS = 30;

/**
 * Task `index`'s training guard under the sweep's time budget (see
 * `Sweep.maxSeconds`, per seed): its share of the time left, less the time
 * a task spends outside training, when that is more than its own
 * `training.maxSeconds`; `undefined` when its own guard stands (no budget,
 * no own guard, or a share no larger).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { presetPlan } from "../presets.ts";
 * import { sweepTasks } from "./plan.ts";
 * import { taskGuard } from "./sweep.ts";
 *
 * const plan = presetPlan("ptb-sweep", { quick: true });
 * if (plan._tag !== "sweep") throw new Error("not a sweep");
 * const tasks = sweepTasks(plan.sweep, "runs/s");
 * const budget = plan.sweep.maxSeconds ?? 0;
 * // The first of 5 tasks: its share (budget / 5 − 30 s) is less than its own 175 s.
 * assert.equal(taskGuard(plan.sweep, tasks, 0, { elapsed: 0, outside: 30 }), undefined);
 * // The second, after a first task that took 100 s, 16 of them outside training:
 * assert.equal(taskGuard(plan.sweep, tasks, 1, { elapsed: 100, outside: 16 }), (budget - 100) / 4 - 16);
 * ```
 */
export const taskGuard = (
  sweep: Sweep,
  tasks: readonly SweepTask[],
  index: number,
  clock: { readonly elapsed: number; readonly outside: number },
): number | undefined => {
  const own = tasks[index].experiment.training.maxSeconds;
  if (sweep.maxSeconds === undefined || own === null) return undefined;
  const budget = sweep.maxSeconds * (sweep.seeds ?? 1);
  const share = (budget - clock.elapsed) / (tasks.length - index) - clock.outside;
  return share > own ? share : undefined;
};

/**
 * How a local sweep ended: every task finished and the table was merged,
 * or interrupted (resume with `--resume SWEEP_DIR`).
 *
 * @example
 * ```ts
 * import type { SweepOutcome } from "./sweep.ts";
 * const show = (o: SweepOutcome) => (o._tag === "Completed" ? o.collected.table : o.message);
 * ```
 */
export type SweepOutcome =
  | { readonly _tag: "Completed"; readonly sweepDir: string; readonly collected: Collected }
  | {
    readonly _tag: "Interrupted";
    readonly sweepDir: string;
    /** The task that was running, e.g. `crt-s35 seed 2`. */
    readonly task: string;
    /** `interrupted; resume with --resume SWEEP_DIR`. */
    readonly message: string;
  };

/**
 * Runs a sweep's tasks (or those of one member, or one task: `only`) one
 * after another on this machine, each with {@linkcode runTaskOf} (finished
 * ones are kept, interrupted ones resume), then merges the table
 * (`collect.ts`). `opts.resume` opens an existing sweep folder; otherwise
 * one is created (a folder that already holds a sweep is only reused with
 * `resume`).
 *
 * @example Two tiny members, two seeds each
 * ```ts
 * import { join } from "node:path";
 * import { tinyExperiment, writeCorpus } from "../../tests/_corpus.ts";
 * import { runSweep } from "./sweep.ts";
 *
 * const dir = await writeCorpus();
 * const a = tinyExperiment(dir, { steps: 3 });
 * const b = { ...a, model: { ...a.model, segmentLen: 3 } };
 * const r = await runSweep({
 *   name: "tiny",
 *   description: "segment 6 against segment 3",
 *   members: [{ label: "s6", experiment: a }, { label: "s3", experiment: b }],
 *   seeds: 2,
 * }, { sweepDir: join(dir, "sweep"), progress: false, log: () => {} });
 * if (r._tag === "Right" && r.right._tag === "Completed") console.log(r.right.collected.table);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function runSweep(
  sweep: Sweep,
  opts: Omit<RunOptions, "runDir" | "onStep"> & {
    readonly sweepDir: string;
    /** Run only this member's tasks, or only this one task. */
    readonly only?: { readonly member: string; readonly seed: number | null };
  },
): Promise<Either<RunError, SweepOutcome>> {
  const log = opts.log ?? ((m: string) => console.error(m));
  const { sweepDir } = opts;
  if (!opts.resume && (await exists(join(sweepDir, "config.json")))) {
    return badInput(`${sweepDir} already holds a sweep; resume it with --resume ${sweepDir}`);
  }
  const opened = await openSweepFolder(sweep, sweepDir, { create: true });
  if (E.isLeft(opened)) return opened;
  const all = sweepTasks(opened.right, sweepDir);
  const selected = selectTasks(opened.right, all, opts.only);
  if (E.isLeft(selected)) return selected;
  const tasks = selected.right;
  const corpora = new Map<string | null, Corpus>();
  if (opts.corpus !== undefined) corpora.set(null, opts.corpus);
  const start = performance.now();
  let outside = SWEEP_OUTSIDE_TRAINING_SECONDS; // the most a task spent outside training
  let measured = false;
  for (const [i, task] of tasks.entries()) {
    const name = `${task.label} seed ${task.seed}`;
    let corpus = opts.corpus ?? corpora.get(task.experiment.data.dir);
    if (corpus === undefined && !(await exists(join(task.runDir, "results.json")))) {
      const c = await loadExperimentData(task.experiment, log);
      if (E.isLeft(c)) return badInput(c.left);
      corpus = c.right;
      corpora.set(task.experiment.data.dir, corpus);
    }
    log(`sweep ${sweep.name}: task ${i + 1}/${tasks.length}: ${name} (${task.runDir})`);
    // A single task (`--member --seed`) keeps its own guard: the budget is the whole sweep's.
    const guard = tasks.length === all.length
      ? taskGuard(opened.right, tasks, i, {
        elapsed: (performance.now() - start) / 1000,
        outside,
      })
      : undefined;
    if (guard !== undefined) {
      log(
        `${name}: training guard ${guard.toFixed(0)} s (own ` +
          `${task.experiment.training.maxSeconds} s; the sweep's budget lends the rest)`,
      );
    }
    const r = await runTaskOf(task, {
      ...opts,
      ...(corpus === undefined ? {} : { corpus }),
      ...(guard === undefined ? {} : { maxSeconds: guard }),
    });
    if (E.isLeft(r)) return E.left({ ...r.left, message: `${name}: ${r.left.message}` });
    if (r.right._tag === "Interrupted") {
      const resumeWith = opts.only === undefined
        ? `--resume ${sweepDir}`
        : `--resume ${sweepDir} --member ${opts.only.member}` +
          (opts.only.seed === null ? "" : ` --seed ${opts.only.seed}`);
      return E.right({
        _tag: "Interrupted",
        sweepDir,
        task: name,
        message: `${name}: interrupted at step ${r.right.step}; resume with ${resumeWith}`,
      });
    }
    if (r.right.kept) {
      log(`${name}: finished earlier, kept`);
      continue;
    }
    const spent = r.right.results.wall_seconds - r.right.results.train_seconds;
    outside = measured ? Math.max(outside, spent) : spent;
    measured = true;
  }
  const collected = await collectSweep(opened.right, sweepDir);
  if (E.isLeft(collected)) return collected;
  return E.right({ _tag: "Completed", sweepDir, collected: collected.right });
}

/** The tasks `only` names (all without it), or the error naming the member or seed. */
const selectTasks = (
  sweep: Sweep,
  tasks: readonly SweepTask[],
  only: { readonly member: string; readonly seed: number | null } | undefined,
): Either<RunError, readonly SweepTask[]> => {
  if (only === undefined) return E.right(tasks);
  const ofMember = tasks.filter((t) => t.label === only.member);
  if (ofMember.length === 0) {
    return badInput(
      `--member ${only.member}: sweep ${sweep.name} has no such member (members: ` +
        `${sweep.members.map((m) => m.label).join(", ")})`,
    );
  }
  if (only.seed === null) return E.right(ofMember);
  const one = ofMember.filter((t) => t.seed === only.seed);
  return one.length > 0 ? E.right(one) : badInput(
    `--seed ${only.seed}: member ${only.member} trains with seeds ` +
      `${ofMember.map((t) => t.seed).join(", ")}`,
  );
};
