/**
 * Watching and steering jobs on the test cluster of `_slurm.ts`: polling
 * with a deadline, an array job's tasks as `squeue` reports them, waiting
 * for tasks to reach states or the array to end, and cancelling one task
 * part-way through a run.
 *
 * @module
 */
import assert from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import {
  cancelTasks,
  queryArrayTasks,
  type SlurmOptions,
  type TaskState,
} from "../experiments/sweep/cluster/slurm.ts";

/** Polls `check` every `everyMs` until it returns non-null; at `deadline` fails naming `what` and `show()`. */
export const until = async <T>(
  what: string,
  deadline: number,
  check: () => Promise<T | null>,
  show: () => string,
  everyMs = 250,
): Promise<T> => {
  for (;;) {
    const v = await check();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; ${show()}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
};

/** An array job's tasks as `squeue` reports them; throws the query's error. */
export const queryTasks = async (jobId: number, slurm: SlurmOptions): Promise<TaskState[]> => {
  const r = await queryArrayTasks(jobId, slurm);
  if (E.isLeft(r)) throw new Error(r.left.message);
  return r.right;
};

/** Tasks as `JOB_INDEX=STATE …`, for progress lines and time-out messages. */
export const showTasks = (tasks: readonly TaskState[]): string =>
  tasks.map((t) => `${t.arrayJobId}_${t.taskIndex}=${t.state}`).join(" ");

/** Where a test watches an array job: its cluster options and the test's deadline. */
export interface Watch {
  readonly slurm: SlurmOptions;
  readonly deadline: number;
}

/**
 * Polls the tasks of array job `jobId` until `ready(tasks)` returns
 * non-null, and returns that; at the deadline fails naming `what` and the
 * tasks' last states.
 */
export const untilTasks = <T>(
  watch: Watch,
  what: string,
  jobId: number,
  ready: (tasks: TaskState[]) => Promise<T | null> | T | null,
): Promise<T> => {
  let tasks: TaskState[] = [];
  return until(what, watch.deadline, async () => {
    tasks = await queryTasks(jobId, watch.slurm);
    return await ready(tasks);
  }, () => showTasks(tasks));
};

/** Waits until all `count` tasks of array job `jobId` have ended (completed or not), and returns them. */
export const untilArrayEnds = (
  watch: Watch,
  what: string,
  jobId: number,
  count: number,
): Promise<TaskState[]> =>
  untilTasks(watch, what, jobId, (tasks) =>
    tasks.length === count &&
      tasks.every((t) => t.phase === "completed" || t.phase === "ended")
      ? tasks
      : null);

/**
 * Cancels task `victim` of array job `jobId` once `reached()` holds (waiting
 * for it as `what`), waits for all `count` tasks to end, and checks that
 * the victim was CANCELLED and every other task COMPLETED. Returns the
 * tasks' final states.
 */
export const cancelMidRun = async (
  watch: Watch,
  job: { readonly jobId: number; readonly count: number; readonly victim: number },
  what: string,
  reached: () => Promise<boolean> | boolean,
): Promise<TaskState[]> => {
  const { jobId, count, victim } = job;
  await untilTasks(watch, what, jobId, async () => (await reached()) ? true : null);
  const cancelled = await cancelTasks(jobId, { ...watch.slurm, taskIndices: [victim] });
  assert.ok(E.isRight(cancelled), JSON.stringify(cancelled));
  const tasks = await untilArrayEnds(watch, "the array to end", jobId, count);
  assert.deepEqual(
    tasks.map((t) => [t.taskIndex, t.state]),
    Array.from({ length: count }, (_, i) => [i, i === victim ? "CANCELLED" : "COMPLETED"]),
  );
  return tasks;
};
