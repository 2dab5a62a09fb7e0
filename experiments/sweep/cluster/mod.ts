/**
 * The pieces a sweep uses to run on a Slurm cluster: the `sbatch` array
 * script (one task per member × seed), submitting and querying jobs with
 * Slurm's commands, shell words, and the table of means ± standard
 * deviations over seeds.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { aggregateMembers, memberTable, renderSbatchScript } from "./mod.ts";
 * const script = renderSbatchScript({
 *   jobName: "demo",
 *   workDir: "/srv/crt",
 *   logDir: "/srv/crt/runs/demo",
 *   tasks: [{ label: "a seed 1", argv: ["deno", "task", "experiment", "demo", "--member", "a", "--seed", "1"] }],
 *   cpusPerTask: 2,
 *   memoryMb: 2048,
 * });
 * assert(script._tag === "Right");
 * const members = aggregateMembers([]);
 * assert(members._tag === "Right" && memberTable(members.right).startsWith("| member |"));
 * ```
 *
 * @module
 */
export * from "./aggregate.ts";
export * from "./sbatch.ts";
export * from "./shell.ts";
export * from "./slurm.ts";
