/**
 * Merges what a sweep folder holds into one table: each finished task's
 * results (per seed, in `sweep.json`), each member's mean ± standard
 * deviation over its seeds (`sweep.md`), every member's validation curve
 * (`curves.svg`), and what is missing, unfinished or failed, with the path
 * of its log.
 *
 * @module
 */
import { describeError } from "../../spec/errors.ts";
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import type { Either } from "../../spec/either.ts";
import { adaptiveGeometry, tailFlopsPerRow } from "../../spec/adaptive.ts";
import type { ModelSpec } from "../../spec/types.ts";
import { exists } from "../data/_shared.ts";
import type { Sweep } from "../sweep_spec.ts";
import type { Results } from "../tasks/language_model.ts";
import { failed, type RunError, writeAtomic } from "../loop/run_folder.ts";
import {
  aggregateMembers,
  type MemberAggregate,
  memberTable,
  type SeedResult,
} from "./cluster/aggregate.ts";
import { type MemberCurves, sweepCurvesSvg } from "./curves.ts";
import { type SweepTask, sweepTasks } from "./plan.ts";

/**
 * FLOPs per token of the output layer: 2·D·V for a full softmax; the head
 * and every tail cluster for an adaptive one; 0 for a classifier, which
 * reads out once per sequence.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { outputLayerFlops } from "./collect.ts";
 * import { referenceCrt } from "../../spec/reference_specs.ts";
 * assert.equal(outputLayerFlops(referenceCrt), 2 * 256 * 10_000);
 * ```
 */
export function outputLayerFlops(model: ModelSpec): number {
  const r = model.readout;
  if (r._tag === "lm") return 2 * model.dModel * model.vocabSize;
  if (r._tag !== "adaptive") return 0;
  const g = adaptiveGeometry(r, model);
  const head = 2 * model.dModel * (g.shortlist + g.tails.length);
  return head + tailFlopsPerRow(g).reduce((s, f) => s + f.forward, 0);
}

/**
 * One sbatch submission of a sweep, as `slurm/submissions.json` lists them.
 *
 * @example
 * ```ts
 * import type { Submission } from "./collect.ts";
 * const s: Submission = { jobId: 12, indices: [0, 1, 2, 3], submitted: "2026-12-03T12:00:00Z", script: "slurm/sweep.sbatch" };
 * ```
 */
export interface Submission {
  readonly jobId: number;
  /** The array indices (task indices) it ran. */
  readonly indices: readonly number[];
  /** ISO time. */
  readonly submitted: string;
  /** The script, relative to the sweep folder. */
  readonly script: string;
}

/** `<sweepDir>/slurm`: the script, the submissions and the logs. */
export const slurmDir = (sweepDir: string): string => join(sweepDir, "slurm");

/**
 * The submissions a sweep folder records, oldest first (none when it never
 * went to Slurm).
 *
 * @example
 * ```ts
 * import { readSubmissions } from "./collect.ts";
 * const dir = await Deno.makeTempDir();
 * console.log(await readSubmissions(dir)); // []
 * await Deno.remove(dir);
 * ```
 */
export async function readSubmissions(sweepDir: string): Promise<Submission[]> {
  const file = join(slurmDir(sweepDir), "submissions.json");
  if (!(await exists(file))) return [];
  try {
    const v = JSON.parse(await Deno.readTextFile(file));
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
}

/**
 * Where one task stands.
 *
 * @example
 * ```ts
 * import type { TaskStatus } from "./collect.ts";
 * const line = (s: TaskStatus) => `${s.label} seed ${s.seed}: ${s.state}${s.log === null ? "" : ` (log ${s.log})`}`;
 * ```
 */
export interface TaskStatus {
  readonly index: number;
  readonly label: string;
  readonly seed: number;
  readonly runDir: string;
  /**
   * `finished` (results.json), `unfinished` (begun: a checkpoint or
   * records, not finished), `failed` (its Slurm task exited non-zero and
   * not from an interrupt), `missing` (never begun).
   */
  readonly state: "finished" | "unfinished" | "failed" | "missing";
  /** The last step it recorded; `null` when none. */
  readonly step: number | null;
  /** Its newest Slurm log (`slurm/slurm-<job>_<index>.out`), when it was submitted. */
  readonly log: string | null;
  /** The exit status its Slurm log ends with, when it has one. */
  readonly exitStatus: number | null;
}

/**
 * What {@linkcode collectSweep} merged.
 *
 * @example
 * ```ts
 * import type { Collected } from "./collect.ts";
 * const say = (c: Collected) => (c.complete ? c.table : c.problems.join("\n"));
 * ```
 */
export interface Collected {
  /** Every task finished. */
  readonly complete: boolean;
  readonly members: readonly MemberAggregate[];
  /** Each finished task's results. */
  readonly rows: readonly { readonly task: SweepTask; readonly results: Results }[];
  readonly statuses: readonly TaskStatus[];
  /** The markdown table (also in `sweep.md`). */
  readonly table: string;
  /** One line per task that has not finished, naming its state and log. */
  readonly problems: readonly string[];
}

interface MetricsRecord {
  readonly kind: string;
  readonly step: number;
  readonly ppl?: number;
  readonly whole_split?: boolean;
}

/** A run folder's metrics records (unreadable lines skipped). */
const readRecords = async (runDir: string): Promise<MetricsRecord[]> => {
  const file = join(runDir, "metrics.jsonl");
  if (!(await exists(file))) return [];
  return (await Deno.readTextFile(file)).split("\n").flatMap((line) => {
    try {
      const r = JSON.parse(line);
      return typeof r?.step === "number" && typeof r?.kind === "string" ? [r] : [];
    } catch {
      return [];
    }
  });
};

/** The periodic validation points (the whole-split ones when there are no others). */
const validCurve = (records: readonly MetricsRecord[]) => {
  const valid = records.filter((r) => r.kind === "valid" && typeof r.ppl === "number");
  const periodic = valid.filter((r) => r.whole_split === false);
  const chosen = periodic.length > 0 ? periodic : valid;
  const byStep = new Map(chosen.map((r) => [r.step, r.ppl as number]));
  return [...byStep.entries()].sort(([a], [b]) => a - b).map(([step, ppl]) => ({ step, ppl }));
};

/** The exit status in the last `crt: task … exited with status N` line of a log. */
const exitStatusOf = async (log: string): Promise<number | null> => {
  try {
    const lines = [...(await Deno.readTextFile(log)).matchAll(/exited with status (\d+)/g)];
    const last = lines.at(-1);
    return last === undefined ? null : Number(last[1]);
  } catch {
    return null;
  }
};

const mdCell = (s: string): string => s.replaceAll("|", "\\|");

/**
 * Reads every task's run folder, writes `sweep.json` (per-seed rows, member
 * aggregates, task states), `sweep.md` (the table and what is not finished)
 * and `curves.svg` into `sweepDir`, and returns them. A diverged or
 * unreadable result is reported by name rather than averaged in.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { join } from "node:path";
 * import { tinyExperiment, writeCorpus } from "../../tests/_corpus.ts";
 * import { collectSweep } from "./collect.ts";
 * import { openSweepFolder } from "./sweep.ts";
 *
 * const dir = await writeCorpus();
 * const sweep = { name: "t", description: "", members: [{ label: "a", experiment: tinyExperiment(dir) }] };
 * const sweepDir = join(dir, "sweep");
 * await openSweepFolder(sweep, sweepDir, { create: true });
 * const c = await collectSweep(sweep, sweepDir);
 * assert(c._tag === "Right" && !c.right.complete);
 * assert.match(c.right.problems[0], /^a seed 1: missing \(never started\)/);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function collectSweep(
  sweep: Sweep,
  sweepDir: string,
): Promise<Either<RunError, Collected>> {
  const tasks = sweepTasks(sweep, sweepDir);
  const submissions = await readSubmissions(sweepDir);
  const rows: { task: SweepTask; results: Results }[] = [];
  const statuses: TaskStatus[] = [];
  const curves = new Map<string, { step: number; ppl: number }[][]>();
  const problems: string[] = [];
  for (const task of tasks) {
    const records = await readRecords(task.runDir);
    const curve = validCurve(records);
    const list = curves.get(task.label) ?? [];
    if (curve.length > 0) list.push(curve);
    curves.set(task.label, list);
    const last = submissions.filter((s) => s.indices.includes(task.index)).at(-1);
    const log = last === undefined
      ? null
      : join(slurmDir(sweepDir), `slurm-${last.jobId}_${task.index}.out`);
    const exitStatus = log === null ? null : await exitStatusOf(log);
    const step = records.length === 0 ? null : Math.max(...records.map((r) => r.step));
    const resultsFile = join(task.runDir, "results.json");
    let state: TaskStatus["state"];
    if (await exists(resultsFile)) {
      try {
        rows.push({ task, results: JSON.parse(await Deno.readTextFile(resultsFile)) });
        state = "finished";
      } catch (e) {
        problems.push(`${task.label} seed ${task.seed}: ${resultsFile}: ${describeError(e)}`);
        state = "failed";
      }
    } else if (
      exitStatus !== null && exitStatus !== 0 && exitStatus !== 130 && exitStatus !== 143
    ) {
      state = "failed";
    } else if (step !== null || (await exists(join(task.runDir, "config.json")))) {
      state = "unfinished";
    } else {
      state = "missing";
    }
    statuses.push({ ...task, state, step, log, exitStatus });
    if (state === "finished") continue;
    const where = log === null ? "" : `; log ${log}`;
    const what = state === "failed"
      ? `failed${exitStatus === null ? "" : ` (exit status ${exitStatus})`}` +
        (step === null ? "" : ` at step ${step}`)
      : state === "unfinished"
      ? `unfinished${step === null ? "" : ` (last recorded step ${step})`}` +
        (exitStatus === 143 || exitStatus === 130 ? ", interrupted: re-submit to resume" : "")
      : "missing (never started)";
    if (!problems.some((p) => p.startsWith(`${task.label} seed ${task.seed}:`))) {
      problems.push(`${task.label} seed ${task.seed}: ${what}${where}`);
    }
  }
  const seedRows: SeedResult[] = rows.map(({ task, results: r }) => ({
    member: task.label,
    seed: task.seed,
    segmentLen: r.segment_len,
    params: r.params,
    flopsPerToken: r.flops_per_token_forward,
    flopsPerTokenCore: r.flops_per_token_forward - outputLayerFlops(task.experiment.model),
    validPpl: r.valid_ppl,
    testPpl: r.test_ppl,
    tokensPerSecond: r.tokens_per_second,
  }));
  // A diverged seed is named and left out, so that the others still make a table.
  const finite = seedRows.filter((row) => {
    const bad = [row.validPpl, row.testPpl, row.tokensPerSecond].some(
      (v) => v !== null && !Number.isFinite(v),
    );
    if (bad) problems.push(`${row.member} seed ${row.seed}: non-finite results, left out`);
    return !bad;
  });
  const aggregated = aggregateMembers(finite);
  if (E.isLeft(aggregated)) return failed(`${sweepDir}: ${aggregated.left.message}`, null);
  const members = aggregated.right;
  const table = memberTable(members);
  const complete = statuses.every((s) => s.state === "finished") && problems.length === 0;
  const md = `# ${sweep.name}\n\n${sweep.description}\n\n${table}` +
    (problems.length === 0
      ? ""
      : `\nNot finished (${problems.length} of ${tasks.length} tasks):\n\n` +
        problems.map((p) => `- ${mdCell(p)}`).join("\n") + "\n");
  const svg = sweepCurvesSvg(
    `${sweep.name}: valid perplexity, every member and seed`,
    sweep.members.map((m): MemberCurves => ({ label: m.label, seeds: curves.get(m.label) ?? [] })),
  );
  try {
    await writeAtomic(
      join(sweepDir, "sweep.json"),
      JSON.stringify(
        {
          sweep: sweep.name,
          description: sweep.description,
          seeds: sweep.seeds ?? 1,
          complete,
          members,
          rows: rows.map(({ task, results }) => ({
            member: task.label,
            seed: task.seed,
            runDir: task.runDir,
            flops_per_token_core: results.flops_per_token_forward -
              outputLayerFlops(task.experiment.model),
            results,
          })),
          tasks: statuses,
        },
        null,
        2,
      ) + "\n",
    );
    await writeAtomic(join(sweepDir, "sweep.md"), md);
    await writeAtomic(join(sweepDir, "curves.svg"), svg);
  } catch (e) {
    return failed(`${sweepDir}: cannot write the table: ${describeError(e)}`, e);
  }
  return E.right({ complete, members, rows, statuses, table, problems });
}
