/**
 * `deno task experiment <name> [--quick] [--data DIR] [--out DIR]
 * [--config FILE.json] [--set path=value ...] [--resume RUN_DIR] [--dry-run]`
 *
 * Resolves a preset, applies the `--config` patch and the `--set` overrides,
 * decodes the result (every problem names its field or file), then trains
 * and evaluates it, or with `--dry-run` prints the resolved experiment with
 * its parameter count and FLOPs per token as JSON on stdout.
 *
 * Exit status: 0 success (and `--help`), 2 bad input (the message on stderr
 * names the field or file), 1 a failure during the run, 130 interrupted by
 * Ctrl-C and 143 by SIGTERM, each after saving a checkpoint (`--resume
 * RUN_DIR` continues it).
 *
 * @example Run the entry point from code
 * ```ts
 * import { main } from "./cli.ts";
 * const status = await main(["ptb", "--quick", "--dry-run"]);
 * console.log(status); // 0
 * ```
 *
 * @module
 */
import { describeError } from "../spec/errors.ts";
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import { startBackend } from "../ops/backend.ts";
import { type Cli, parseCli } from "./args.ts";
import { applySets, mergePatch, readConfigFile, type SetOverride } from "./overrides.ts";
import { decodeExperiment, type Experiment } from "./experiment.ts";
import { decodeSweep, SLURM_DEFAULTS, type Sweep } from "./sweep_spec.ts";
import { describePresets, type Plan, resolvePreset } from "./presets.ts";
import { modelCosts, runExperiment, type RunOptions } from "./tasks/language_model.ts";
import { newRunDir, type RunError } from "./loop/run_folder.ts";
import { openSweepFolder, runSweep } from "./sweep/sweep.ts";
import { type Collected, collectSweep } from "./sweep/collect.ts";
import { submitSweep } from "./sweep/submit.ts";
import { parseSbatchArgs } from "./sweep/cluster/slurm.ts";
import { estimateTrainingMemory, memoryLimit, memoryProblem } from "./loop/memory.ts";
import type { ModelSpec } from "../spec/types.ts";
import {
  decodeSmarthomeExperiment,
  isSmarthomeConfig,
  type SmarthomeExperiment,
} from "./tasks/clips_experiment.ts";
import { runSmarthome, smarthomeCosts } from "./tasks/clips.ts";

/**
 * Where the entry point writes, and how it learns of Ctrl-C (injected by tests).
 *
 * @example
 * ```ts
 * import type { CliIo } from "./cli.ts";
 * const lines: string[] = [];
 * const io: CliIo = { stdout: (s) => lines.push(s), stderr: (s) => lines.push(s) };
 * ```
 */
export interface CliIo {
  /** Results and `--dry-run` JSON. */
  readonly stdout: (text: string) => void;
  /** Messages, errors and progress. */
  readonly stderr: (text: string) => void;
  /**
   * Installs a handler for Ctrl-C and SIGTERM (called with the signal's name)
   * and returns its remover. Default: `Deno.addSignalListener` for both.
   */
  readonly onInterrupt?: (handler: (signal?: string) => void) => () => void;
}

const writeSync = (stream: { writeSync(p: Uint8Array): number }) => (text: string) => {
  const bytes = new TextEncoder().encode(text);
  for (let done = 0; done < bytes.length;) done += stream.writeSync(bytes.subarray(done));
};

const defaultIo: CliIo = {
  stdout: writeSync(Deno.stdout),
  stderr: writeSync(Deno.stderr),
};

/** Exit statuses. */
const EXIT = { ok: 0, failed: 1, badInput: 2, interrupted: 130, terminated: 143 } as const;

/** A bad-input error message, or the value. */
type Checked<A> = E.Either<string, A>;

/** What the command line changes in a preset: `--config`'s patch, the `--set`s, `--data` and `--out`. */
interface Overrides {
  readonly patch: { readonly file: string; readonly value: unknown } | null;
  readonly sets: readonly SetOverride[];
  readonly flags: { readonly data: string | null; readonly out: string | null };
}

/** Applies the `--config` patch, the `--set` overrides and the flags to a value; no decoding. */
function applyOverrides(base: unknown, { patch, sets, flags }: Overrides): Checked<unknown> {
  let value: unknown = base;
  if (patch !== null) {
    const merged = mergePatch(value, patch.value);
    if (E.isLeft(merged)) return E.left(`${patch.file}: ${merged.left.message}`);
    value = merged.right;
  }
  const set = applySets(value, sets);
  if (E.isLeft(set)) return E.left(`--set ${set.left.path}: ${set.left.message}`);
  value = set.right;
  // The flags win over --config and --set.
  const v = value as Record<string, unknown>;
  if (flags.data !== null) value = { ...v, data: { ...(v.data as object), dir: flags.data } };
  const w = value as Record<string, unknown>;
  if (flags.out !== null) value = { ...w, output: { ...(w.output as object), dir: flags.out } };
  return E.right(value);
}

/** Applies the overrides to one experiment, then decodes it with its codec. */
function overridden<X>(
  base: X,
  o: Overrides,
  decode: (u: unknown) => E.Either<{ readonly message: string }, X>,
): Checked<X> {
  const value = applyOverrides(base, o);
  if (E.isLeft(value)) return value;
  const decoded = decode(value.right);
  return E.isLeft(decoded) ? E.left(decoded.left.message) : E.right(decoded.right);
}

/** The plan the command line asks for: a preset with its overrides, or a run folder to resume. */
async function resolvePlan(cli: Cli): Promise<Checked<Plan>> {
  const plan = await resolveBasePlan(cli);
  if (E.isLeft(plan)) return plan;
  const sweepOnly = cli.seeds !== null || cli.member !== null || cli.slurm || cli.collect !== null;
  if (plan.right._tag !== "sweep") {
    return sweepOnly
      ? E.left(
        `--seeds, --member, --slurm and --collect apply to sweeps; ${cli.name} is one experiment`,
      )
      : plan;
  }
  return cli.seeds === null
    ? plan
    : E.right({ _tag: "sweep", sweep: { ...plan.right.sweep, seeds: cli.seeds } });
}

/** The plan of the preset or run folder, before the sweep flags. */
async function resolveBasePlan(cli: Cli): Promise<Checked<Plan>> {
  if (cli.collect !== null) return resolveBasePlan({ ...cli, collect: null, resume: cli.collect });
  if (cli.resume !== null) {
    if (cli.quick || cli.config !== null || cli.set.length > 0) {
      return E.left(
        `--resume continues a run as it was configured: --quick, --config and --set do not apply`,
      );
    }
    const file = join(cli.resume, "config.json");
    let json: unknown;
    try {
      json = JSON.parse(await Deno.readTextFile(file));
    } catch (e) {
      return E.left(
        `${file}: ${describeError(e, { NotFound: "not found (is it a run folder?)" })}`,
      );
    }
    if (isSmarthomeConfig(json)) {
      const d = decodeSmarthomeExperiment(json);
      if (E.isLeft(d)) return E.left(`${file}: ${d.left.message}`);
      const name = d.right.name;
      if (name !== cli.name && name !== `${cli.name}-quick`) {
        return E.left(`${file}: the run folder holds experiment "${name}", not "${cli.name}"`);
      }
      // The data may have moved: --data still applies.
      const experiment = cli.data === null
        ? d.right
        : { ...d.right, data: { ...d.right.data, dir: cli.data } };
      return E.right({ _tag: "smarthome", experiment });
    }
    const isSweep = typeof json === "object" && json !== null && "members" in json;
    const plan: Checked<Extract<Plan, { _tag: "single" | "sweep" }>> = isSweep
      ? E.map((sweep: Sweep) => ({ _tag: "sweep", sweep }) as const)(
        E.mapLeft((e: Error) => `${file}: ${e.message}`)(decodeSweep(json)),
      )
      : E.map((experiment: Experiment) => ({ _tag: "single", experiment }) as const)(
        E.mapLeft((e: Error) => `${file}: ${e.message}`)(decodeExperiment(json)),
      );
    if (E.isLeft(plan)) return plan;
    const name = plan.right._tag === "sweep" ? plan.right.sweep.name : plan.right.experiment.name;
    if (name !== cli.name && name !== `${cli.name}-quick`) {
      return E.left(`${file}: the run folder holds experiment "${name}", not "${cli.name}"`);
    }
    if (cli.data === null) return plan;
    // The data may have moved: --data still applies.
    const withData = (e: Experiment): Experiment => ({ ...e, data: { ...e.data, dir: cli.data } });
    return E.right(
      plan.right._tag === "single"
        ? { _tag: "single", experiment: withData(plan.right.experiment) }
        : {
          _tag: "sweep",
          sweep: {
            ...plan.right.sweep,
            members: plan.right.sweep.members.map((m) => ({
              ...m,
              experiment: withData(m.experiment),
            })),
          },
        },
    );
  }
  const preset = resolvePreset(cli.name, { quick: cli.quick });
  if (E.isLeft(preset)) return E.left(preset.left.message);
  let patch: { file: string; value: unknown } | null = null;
  if (cli.config !== null) {
    const read = await readConfigFile(cli.config);
    if (E.isLeft(read)) return E.left(read.left.message);
    patch = { file: cli.config, value: read.right };
  }
  const o: Overrides = { patch, sets: cli.set, flags: { data: cli.data, out: cli.out } };
  const plan = preset.right;
  if (plan._tag === "single") {
    const exp = overridden(plan.experiment, o, decodeExperiment);
    return E.map((experiment: Experiment): Plan => ({ _tag: "single", experiment }))(exp);
  }
  if (plan._tag === "smarthome") {
    const exp = overridden(plan.experiment, o, decodeSmarthomeExperiment);
    return E.map((experiment: SmarthomeExperiment): Plan => ({ _tag: "smarthome", experiment }))(
      exp,
    );
  }
  // A sweep: the overrides apply to every member.
  const members = [];
  for (const m of plan.sweep.members) {
    const exp = overridden(m.experiment, o, decodeExperiment);
    if (E.isLeft(exp)) return E.left(`${plan.sweep.name} member ${m.label}: ${exp.left}`);
    members.push({ label: m.label, experiment: exp.right });
  }
  const sweep = decodeSweep({ ...plan.sweep, members });
  if (E.isLeft(sweep)) return E.left(sweep.left.message);
  return E.right({ _tag: "sweep", sweep: sweep.right });
}

/** `--dry-run`: the resolved plan with parameters and FLOPs per token, as JSON. */
async function dryRun(cli: Cli, plan: Plan, io: CliIo): Promise<number> {
  const started = await startBackend({ backend: cli.backend, matmul: cli.matmul });
  if (E.isLeft(started)) {
    io.stderr(`${started.left.message}\n`);
    return EXIT.failed;
  }
  const limit = memoryLimit(cli.backend);
  const problems: string[] = [];
  // The training memory estimate the run checks before it allocates anything.
  const memoryOf = (
    label: string,
    model: ModelSpec,
    params: number,
    batch: { rows: number; positions: number },
    fields: string,
  ) => {
    const m = estimateTrainingMemory(model, params, batch);
    const problem = memoryProblem(model, m, limit, fields);
    if (problem !== null) problems.push(`${label}: ${problem}`);
    return {
      parameter_bytes: m.parameterBytes,
      activation_bytes: m.activationBytes,
      total_bytes: m.totalBytes,
      limit_bytes: limit,
      fits: problem === null,
    };
  };
  const describe = (experiment: Experiment) => {
    const costs = modelCosts(experiment);
    return E.map((c: { params: number }) => ({
      experiment,
      ...c,
      memory: memoryOf(experiment.name, experiment.model, c.params, {
        rows: experiment.training.batchSize,
        positions: experiment.training.bpttSegments * experiment.model.segmentLen,
      }, "training.batchSize, training.bpttSegments"),
    }))(costs);
  };
  let out: unknown;
  if (plan._tag === "smarthome") {
    // Per frame (a frame is a model position) and per clip; the dataset is not read.
    const c = smarthomeCosts(plan.experiment);
    if (E.isLeft(c)) {
      io.stderr(`${c.left}\n`);
      return EXIT.badInput;
    }
    const x = plan.experiment;
    out = {
      experiment: x,
      ...c.right,
      memory: memoryOf(x.name, x.model, c.right.params, {
        rows: x.training.batchSize,
        positions: x.data.clipFrames,
      }, "training.batchSize, data.clipFrames"),
    };
  } else if (plan._tag === "single") {
    const d = describe(plan.experiment);
    if (E.isLeft(d)) {
      io.stderr(`${d.left}\n`);
      return EXIT.badInput;
    }
    out = d.right;
  } else {
    const members = [];
    for (const m of plan.sweep.members) {
      const d = describe(m.experiment);
      if (E.isLeft(d)) {
        io.stderr(`${m.label}: ${d.left}\n`);
        return EXIT.badInput;
      }
      members.push({ label: m.label, ...d.right });
    }
    out = {
      sweep: plan.sweep.name,
      description: plan.sweep.description,
      ...(plan.sweep.maxSeconds === undefined ? {} : { maxSeconds: plan.sweep.maxSeconds }),
      seeds: plan.sweep.seeds ?? 1,
      slurm: plan.sweep.slurm ?? SLURM_DEFAULTS,
      members,
    };
  }
  io.stdout(JSON.stringify(out, null, 2) + "\n");
  for (const p of problems) io.stderr(`${p}\n`);
  return problems.length === 0 ? EXIT.ok : EXIT.badInput;
}

const exitFor = (e: RunError): number => (e._tag === "BadInput" ? EXIT.badInput : EXIT.failed);

/**
 * A sweep: `--collect`, `--slurm`, one member (`--member`) or every task
 * here, one after another.
 */
async function sweepCommand(
  cli: Cli,
  sweep: Sweep,
  common: Omit<RunOptions, "runDir">,
  io: CliIo,
  stopStatus: () => number,
): Promise<number> {
  const log = (m: string) => io.stderr(`${m}\n`);
  const fail = (e: RunError) => {
    io.stderr(`${sweep.name}: ${e.message}\n`);
    return exitFor(e);
  };
  const showTable = (c: Collected, dir: string) => {
    io.stdout(`\n${sweep.name}: ${sweep.description}\n\n${c.table}`);
    for (const p of c.problems) log(`not finished: ${p}`);
    log(`table: ${join(dir, "sweep.md")}; curves: ${join(dir, "curves.svg")}`);
  };
  if (cli.collect !== null) {
    const c = await collectSweep(sweep, cli.collect);
    if (E.isLeft(c)) return fail(c.left);
    showTable(c.right, cli.collect);
    const left = c.right.statuses.filter((s) => s.state !== "finished").length;
    if (left > 0) log(`${left} of ${c.right.statuses.length} tasks not finished (exit 1)`);
    return c.right.complete ? EXIT.ok : EXIT.failed;
  }
  const outDir = sweep.members[0].experiment.output.dir;
  if (cli.slurm) {
    const sweepDir = cli.resume ?? (await newRunDir(outDir, sweep.name));
    const opened = await openSweepFolder(sweep, sweepDir, { create: cli.resume === null });
    if (E.isLeft(opened)) return fail(opened.left);
    const words = cli.sbatch === null ? E.right([]) : parseSbatchArgs(cli.sbatch);
    if (E.isLeft(words)) {
      io.stderr(`--sbatch: ${words.left.message}\n`);
      return EXIT.badInput;
    }
    const submitted = await submitSweep(opened.right, sweepDir, {
      sbatchArgs: words.right,
      runnerArgs: ["--backend", cli.backend, "--matmul", cli.matmul],
    });
    if (E.isLeft(submitted)) return fail(submitted.left);
    const job = submitted.right.job;
    if (job === null) {
      log(`${sweep.name}: every task has finished; nothing submitted`);
    } else {
      log(`${sweep.name}: sweep folder ${sweepDir}; script ${submitted.right.script}`);
      log(
        `submitted job ${job.jobId}: ${job.indices.length} array tasks ` +
          `(${submitted.right.tasks.join(", ")}); logs in ${join(sweepDir, "slurm")}`,
      );
      log(`when they have run: deno task experiment ${sweep.name} --collect ${sweepDir}`);
      io.stdout(`${job.jobId}\n`);
    }
    return EXIT.ok;
  }
  // One member: a fixed folder (or the one named), so that running it again resumes it.
  const sweepDir = cli.member !== null
    ? cli.resume ?? join(outDir, sweep.name)
    : cli.resume ?? (await newRunDir(outDir, sweep.name));
  log(`${sweep.name}: sweep folder ${sweepDir}`);
  const r = await runSweep(sweep, {
    ...common,
    sweepDir,
    resume: cli.resume !== null || cli.member !== null,
    ...(cli.member === null ? {} : { only: { member: cli.member, seed: cli.seed } }),
  });
  if (E.isLeft(r)) return fail(r.left);
  if (r.right._tag === "Interrupted") {
    io.stderr(`${r.right.message}\n`);
    return stopStatus();
  }
  showTable(r.right.collected, sweepDir);
  return EXIT.ok;
}

/**
 * The entry point: parses `args`, runs, and returns the exit status (it
 * never calls `Deno.exit`; the module does when run as the main module).
 *
 * @example
 * ```ts
 * import { main } from "./cli.ts";
 * const status = await main(["no-such-preset"], { stdout: () => {}, stderr: () => {} });
 * console.log(status); // 2
 * ```
 */
export async function main(args: readonly string[], io: CliIo = defaultIo): Promise<number> {
  const parsed = parseCli(args);
  if (E.isLeft(parsed)) {
    const e = parsed.left;
    if (e._tag === "HelpRequested") {
      io.stdout(`${e.message}\nexperiments:\n${describePresets()}\n`);
      return EXIT.ok;
    }
    io.stderr(`${e.message}\n`);
    if (e._tag === "MissingName") io.stderr(`experiments:\n${describePresets()}\n`);
    return EXIT.badInput;
  }
  const cli = parsed.right;
  const plan = await resolvePlan(cli);
  if (E.isLeft(plan)) {
    io.stderr(`${plan.left}\n`);
    return EXIT.badInput;
  }
  if (cli.dryRun) return dryRun(cli, plan.right, io);

  const controller = new AbortController();
  let interrupts = 0;
  // Ctrl-C and SIGTERM (kill, a scheduler's cancel or preemption) both save a checkpoint.
  const onInterrupt = io.onInterrupt ?? ((handler: (signal: string) => void) => {
    const listeners = (["SIGINT", "SIGTERM"] as const).map((sig) => {
      const l = () => handler(sig);
      Deno.addSignalListener(sig, l);
      return [sig, l] as const;
    });
    return () => listeners.forEach(([sig, l]) => Deno.removeSignalListener(sig, l));
  });
  let stopStatus: number = EXIT.interrupted;
  const removeHandler = onInterrupt((signal = "SIGINT") => {
    interrupts++;
    if (interrupts === 1) {
      stopStatus = signal === "SIGTERM" ? EXIT.terminated : EXIT.interrupted;
      io.stderr(
        `\n${signal === "SIGTERM" ? "SIGTERM" : "interrupt"}: finishing the current step and ` +
          "saving a checkpoint (Ctrl-C again to stop without saving)\n",
      );
      controller.abort();
    } else {
      io.stderr("\nstopped without saving\n");
      Deno.exit(stopStatus);
    }
  });
  const log = (m: string) => io.stderr(`${m}\n`);
  const common: Omit<RunOptions, "runDir"> = {
    backend: cli.backend,
    matmul: cli.matmul,
    signal: controller.signal,
    log,
    progress: { write: io.stderr },
  };
  try {
    const p = plan.right;
    if (p._tag === "smarthome" || p._tag === "single") {
      // One run folder, either runner: the same outcome shape and exit codes.
      const exp = p.experiment;
      const runDir = cli.resume ?? (await newRunDir(exp.output.dir, exp.name));
      log(`${exp.name}: run folder ${runDir}`);
      const runOpts = { ...common, runDir, resume: cli.resume !== null };
      const r = p._tag === "smarthome"
        ? await runSmarthome(p.experiment, runOpts)
        : await runExperiment(p.experiment, runOpts);
      if (E.isLeft(r)) {
        // A fresh run refused before it wrote anything leaves no folder behind.
        if (cli.resume === null) await Deno.remove(runDir).catch(() => {});
        io.stderr(`${exp.name}: ${r.left.message}\n`);
        return exitFor(r.left);
      }
      if (r.right._tag === "Interrupted") {
        io.stderr(`${r.right.message}\n`);
        return stopStatus;
      }
      io.stdout(JSON.stringify(r.right.results, null, 2) + "\n");
      log(`results: ${join(runDir, "results.json")}`);
      return EXIT.ok;
    }
    return await sweepCommand(cli, p.sweep, common, io, () => stopStatus);
  } catch (e) {
    io.stderr(`internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return EXIT.failed;
  } finally {
    removeHandler();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
