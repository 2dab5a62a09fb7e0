/**
 * Sweeps: an experiment's members run one after another into one folder, and
 * the table that compares them.
 *
 * @module
 */

import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import type { Either } from "../../spec/either.ts";
import { readLatestCheckpoint } from "../loop/checkpoint.ts";
import { type Corpus, exists } from "../data/ptb.ts";
import type { Sweep } from "../experiment.ts";
import {
  loadExperimentData,
  type Results,
  runExperiment,
  type RunOptions,
} from "../tasks/language_model.ts";
import { badInput, describe, failed, type RunError, writeAtomic } from "../loop/run_folder.ts";

/**
 * One row of a sweep's table.
 *
 * @example
 * ```ts
 * import type { SweepRow } from "./sweep.ts";
 * const ppl = (r: SweepRow) => r.results.valid_ppl;
 * ```
 */
export interface SweepRow {
  /** The member's label. */
  readonly label: string;
  /** Its run folder. */
  readonly runDir: string;
  /** Its results. */
  readonly results: Results;
}

/**
 * How a sweep ended.
 *
 * @example
 * ```ts
 * import type { SweepOutcome } from "./sweep.ts";
 * const show = (o: SweepOutcome) => (o._tag === "Completed" ? o.table : o.message);
 * ```
 */
export type SweepOutcome =
  | {
    readonly _tag: "Completed";
    readonly sweepDir: string;
    readonly rows: readonly SweepRow[];
    /** The markdown table (also in `sweep.md`). */
    readonly table: string;
  }
  | {
    readonly _tag: "Interrupted";
    readonly sweepDir: string;
    /** The member that was running. */
    readonly label: string;
    /** `interrupted; resume with --resume SWEEP_DIR`. */
    readonly message: string;
  };

const fmtInt = (n: number): string => Math.round(n).toLocaleString("en-US");
const fmtPpl = (n: number | null): string => (n === null ? "–" : n.toFixed(1));

/**
 * The markdown table of a sweep: model, segment length, parameters, FLOPs
 * per token (forward and training), tokens trained on, valid and test
 * perplexity, training tokens/s.
 *
 * @example
 * ```ts
 * import { sweepTable } from "./sweep.ts";
 * console.log(sweepTable([]).split("\n")[0]);
 * // | model | segment length | params | FLOPs/token (forward) | FLOPs/token (train) | train tokens | valid ppl | test ppl | tokens/s |
 * ```
 */
export function sweepTable(rows: readonly SweepRow[]): string {
  const head = [
    "| model | segment length | params | FLOPs/token (forward) | FLOPs/token (train) " +
    "| train tokens | valid ppl | test ppl | tokens/s |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  const mflops = (n: number) => `${(n / 1e6).toFixed(2)} M`;
  const body = rows.map(({ label, results: r }) =>
    `| ${label} | ${r.segment_len} | ${fmtInt(r.params)} | ${
      mflops(r.flops_per_token_forward)
    } | ` +
    `${mflops(r.flops_per_token_train)} | ${fmtInt(r.train_tokens)} | ${fmtPpl(r.valid_ppl)} | ` +
    `${fmtPpl(r.test_ppl)} | ${fmtInt(r.tokens_per_second)} |`
  );
  return [...head, ...body].join("\n") + "\n";
}

/** Seconds a sweep member is assumed to spend outside training until one has been measured. */
export const SWEEP_OUTSIDE_TRAINING_SECONDS = 30;

/**
 * Member `index`'s training guard under the sweep's time budget (see
 * `Sweep.maxSeconds`): its share of the time left, less the time a member
 * spends outside training, when that is more than its own
 * `training.maxSeconds`; `undefined` when its own guard stands (no budget,
 * no own guard, or a share no larger).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { presetPlan } from "../presets.ts";
 * import { memberGuard } from "./sweep.ts";
 *
 * const plan = presetPlan("ptb-sweep", { quick: true });
 * if (plan._tag !== "sweep") throw new Error("not a sweep");
 * // The first of 4 members: 870 / 4 − 30 = 187.5 s, less than its own 195 s.
 * assert.equal(memberGuard(plan.sweep, 0, { elapsed: 0, outside: 30 }), undefined);
 * // The second, after a first member that took 182 s, 16 of them outside training:
 * assert.equal(memberGuard(plan.sweep, 1, { elapsed: 182, outside: 16 }), (870 - 182) / 3 - 16);
 * ```
 */
export const memberGuard = (
  sweep: Sweep,
  index: number,
  clock: { readonly elapsed: number; readonly outside: number },
): number | undefined => {
  const own = sweep.members[index].experiment.training.maxSeconds;
  if (sweep.maxSeconds === undefined || own === null) return undefined;
  const share = (sweep.maxSeconds - clock.elapsed) / (sweep.members.length - index) -
    clock.outside;
  return share > own ? share : undefined;
};

/**
 * Runs a sweep's members one after another into `<sweepDir>/<label>/`, then
 * writes `sweep.json` (rows) and `sweep.md` (the table). With `resume`,
 * members with results are kept, an interrupted member resumes from its
 * checkpoint and the rest start fresh.
 *
 * @example Two tiny members
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
 * }, { sweepDir: join(dir, "sweep"), progress: false });
 * if (r._tag === "Right" && r.right._tag === "Completed") console.log(r.right.table);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function runSweep(
  sweep: Sweep,
  opts: Omit<RunOptions, "runDir" | "onStep"> & { readonly sweepDir: string },
): Promise<Either<RunError, SweepOutcome>> {
  const log = opts.log ?? ((m: string) => console.error(m));
  const { sweepDir } = opts;
  const configFile = join(sweepDir, "config.json");
  if (opts.resume) {
    let saved: unknown;
    try {
      saved = JSON.parse(await Deno.readTextFile(configFile));
    } catch (e) {
      return badInput(`${configFile}: cannot read: ${describe(e)}`);
    }
    const same = (s: unknown) =>
      JSON.stringify(s, (k, v) => (k === "data" ? null : v)) ===
        JSON.stringify(sweep, (k, v) => (k === "data" ? null : v));
    if (!same(saved)) return badInput(`${configFile}: the folder holds a different sweep`);
  } else {
    if (await exists(configFile)) {
      return badInput(`${sweepDir} already holds a sweep; resume it with --resume ${sweepDir}`);
    }
    try {
      await Deno.mkdir(sweepDir, { recursive: true });
      await writeAtomic(configFile, JSON.stringify(sweep, null, 2) + "\n");
    } catch (e) {
      return failed(`${sweepDir}: cannot write: ${describe(e)}`, e);
    }
  }
  const corpora = new Map<string | null, Corpus>();
  if (opts.corpus !== undefined) corpora.set(null, opts.corpus);
  const rows: SweepRow[] = [];
  const sweepStart = performance.now();
  let outside = SWEEP_OUTSIDE_TRAINING_SECONDS; // the most a member spent outside training
  let measured = false;
  for (const [i, m] of sweep.members.entries()) {
    const runDir = join(sweepDir, m.label);
    const resultsFile = join(runDir, "results.json");
    if (opts.resume && (await exists(resultsFile))) {
      rows.push({
        label: m.label,
        runDir,
        results: JSON.parse(await Deno.readTextFile(resultsFile)),
      });
      log(`${m.label}: done earlier, kept`);
      continue;
    }
    let resume = false;
    if (opts.resume && (await exists(join(runDir, "config.json")))) {
      const latest = await readLatestCheckpoint(join(runDir, "checkpoints"));
      if (E.isRight(latest)) resume = true;
      else await Deno.remove(runDir, { recursive: true });
    }
    let corpus = opts.corpus ?? corpora.get(m.experiment.data.dir);
    if (corpus === undefined) {
      const c = await loadExperimentData(m.experiment, log);
      if (E.isLeft(c)) return badInput(c.left);
      corpus = c.right;
      corpora.set(m.experiment.data.dir, corpus);
    }
    log(`sweep ${sweep.name}: member ${i + 1}/${sweep.members.length}: ${m.label}`);
    const guard = memberGuard(sweep, i, {
      elapsed: (performance.now() - sweepStart) / 1000,
      outside,
    });
    if (guard !== undefined) {
      log(
        `${m.label}: training guard ${
          guard.toFixed(0)
        } s (own ${m.experiment.training.maxSeconds} s; ` +
          `the sweep's ${sweep.maxSeconds} s budget lends the rest)`,
      );
    }
    const r = await runExperiment(m.experiment, {
      ...opts,
      runDir,
      resume,
      corpus,
      ...(guard === undefined ? {} : { maxSeconds: guard }),
    });
    if (E.isLeft(r)) {
      return E.left({ ...r.left, message: `${m.label}: ${r.left.message}` });
    }
    if (r.right._tag === "Interrupted") {
      return E.right({
        _tag: "Interrupted",
        sweepDir,
        label: m.label,
        message: `interrupted; resume with --resume ${sweepDir}`,
      });
    }
    rows.push({ label: m.label, runDir, results: r.right.results });
    const spent = r.right.results.wall_seconds - r.right.results.train_seconds;
    outside = measured ? Math.max(outside, spent) : spent;
    measured = true;
  }
  const table = sweepTable(rows);
  try {
    await writeAtomic(
      join(sweepDir, "sweep.json"),
      JSON.stringify({ sweep: sweep.name, rows }, null, 2) + "\n",
    );
    await writeAtomic(
      join(sweepDir, "sweep.md"),
      `# ${sweep.name}\n\n${sweep.description}\n\n${table}`,
    );
  } catch (e) {
    return failed(`${sweepDir}: cannot write the table: ${describe(e)}`, e);
  }
  return E.right({ _tag: "Completed", sweepDir, rows, table });
}
