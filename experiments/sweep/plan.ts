/**
 * A sweep's tasks: each member with each of its seeds, in a fixed order
 * (a task's index is its Slurm array index), and each one's run folder.
 *
 * @module
 */
import { join } from "node:path";
import type { Experiment } from "../experiment.ts";
import { type Sweep, sweepSeeds } from "../sweep_spec.ts";

/**
 * One task of a sweep: one member trained with one seed.
 *
 * @example
 * ```ts
 * import type { SweepTask } from "./plan.ts";
 * const name = (t: SweepTask) => `${t.label} seed ${t.seed}`;
 * ```
 */
export interface SweepTask {
  /** Its place in the sweep's task list (a Slurm array index). */
  readonly index: number;
  /** The member's label. */
  readonly label: string;
  /** The seed. */
  readonly seed: number;
  /** The member's experiment with that seed. */
  readonly experiment: Experiment;
  /** Its run folder: `<sweepDir>/<label>/seed-<seed>`. */
  readonly runDir: string;
}

/**
 * A sweep's tasks, member by member, each member's seeds in order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { presetPlan } from "../presets.ts";
 * import { sweepTasks } from "./plan.ts";
 *
 * const plan = presetPlan("ptb-sweep", { quick: true });
 * if (plan._tag !== "sweep") throw new Error("not a sweep");
 * const tasks = sweepTasks({ ...plan.sweep, seeds: 2 }, "runs/s");
 * assert.equal(tasks.length, 2 * plan.sweep.members.length);
 * assert.equal(tasks[1].runDir, "runs/s/transformer-s140/seed-2");
 * ```
 */
export const sweepTasks = (sweep: Sweep, sweepDir: string): SweepTask[] =>
  sweep.members.flatMap((m) => sweepSeeds(sweep, m).map((seed) => ({ m, seed }))).map((
    { m, seed },
    index,
  ) => ({
    index,
    label: m.label,
    seed,
    experiment: { ...m.experiment, seed },
    runDir: join(sweepDir, m.label, `seed-${seed}`),
  }));
