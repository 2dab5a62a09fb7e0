/**
 * Sweeps as data: a named list of experiments (members), each trained with
 * one or more seeds, and what each Slurm array task asks for. The runner
 * is `sweep/`.
 *
 * @module
 */
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import type { Assert, MutuallyAssignable } from "../spec/_assert.ts";
import { decodeWith, SpecError, type SpecIssue } from "../spec/decode.ts";
import {
  type FieldCodecs,
  optional,
  PositiveInt,
  PositiveNumber,
  strict,
  type StrictCodec,
} from "../spec/combinators.ts";
import type { Either } from "../spec/either.ts";
import { checkExperiment, type Experiment, ExperimentCodec, rootless } from "./experiment.ts";
import { Name, nullable } from "./fields.ts";

/**
 * One run of a sweep.
 *
 * @example
 * ```ts
 * import type { SweepMember } from "./sweep_spec.ts";
 * import { presetExperiment } from "./presets.ts";
 *
 * const m: SweepMember = { label: "crt-s35", experiment: presetExperiment("ptb") };
 * ```
 */
export interface SweepMember {
  /** Names the member's subfolder and its row of the table (`crt-s35`). */
  readonly label: string;
  /** The member's experiment. */
  readonly experiment: Experiment;
}

/**
 * Decodes a {@linkcode SweepMember} (structure only).
 *
 * @example
 * ```ts
 * import { SweepMemberCodec } from "./sweep_spec.ts";
 * import { presetExperiment } from "./presets.ts";
 *
 * console.log(SweepMemberCodec.is({ label: "crt", experiment: presetExperiment("ptb") })); // true
 * ```
 */
export const SweepMemberCodec: StrictCodec<FieldCodecs<SweepMember>> = strict<
  FieldCodecs<SweepMember>
>({ label: Name, experiment: ExperimentCodec }, "SweepMember");

/**
 * Experiments run one after another (each in its own subfolder) and
 * compared in one table.
 *
 * @example
 * ```ts
 * import type { Sweep } from "./sweep_spec.ts";
 * import { presetPlan } from "./presets.ts";
 *
 * const plan = presetPlan("ptb-sweep", { quick: true });
 * const labels = (s: Sweep) => s.members.map((m) => m.label).join(" ");
 * if (plan._tag === "sweep") console.log(labels(plan.sweep)); // transformer-s140 transformer-s70 crt-s70 crt-s35 crt-s18
 * ```
 */
export interface Sweep {
  /** Names the sweep folder. */
  readonly name: string;
  /** One line saying what the sweep compares. */
  readonly description: string;
  /** The runs, in order; labels must be distinct. */
  readonly members: readonly SweepMember[];
  /**
   * Wall-clock budget of the whole sweep in seconds, evaluations included,
   * counted from when the sweep command starts (a resumed sweep starts a
   * new count). It lends time that earlier members did not use to later
   * ones: a member's training guard becomes the larger of its own
   * `training.maxSeconds` and its share of what is left, (budget − elapsed)
   * / (members left) less the time a member spends outside training (the
   * most any earlier member spent, 30 s before one has finished). Members
   * without a `training.maxSeconds` are not limited. Absent: each member
   * keeps its own guard. With several seeds the budget is per seed: the
   * sweep's is `maxSeconds · seeds`. Slurm tasks are not limited by it
   * (see `slurm.timeLimitMinutes`).
   */
  readonly maxSeconds?: number;
  /**
   * Seeds per member (default 1): member `m` trains with seeds
   * `m.experiment.seed`, `+ 1`, … `+ seeds − 1`, each into its own run
   * folder `<sweep folder>/<label>/seed-<seed>/`; the table reports the mean
   * ± standard deviation over them. `--seeds N` overrides it.
   */
  readonly seeds?: number;
  /** What each Slurm array task asks for (`--slurm`); absent: {@linkcode SLURM_DEFAULTS}. */
  readonly slurm?: SlurmResources;
}

/**
 * What one Slurm array task (one member, one seed) asks the scheduler for.
 *
 * @example
 * ```ts
 * import type { SlurmResources } from "./sweep_spec.ts";
 * const r: SlurmResources = { cpusPerTask: 2, memoryMb: 4096, timeLimitMinutes: 120 };
 * ```
 */
export interface SlurmResources {
  /** `--cpus-per-task`: the threads one run uses. */
  readonly cpusPerTask: number;
  /** `--mem`, MiB: the run's peak resident memory with room to spare. */
  readonly memoryMb: number;
  /** `--time`, minutes; `null`: the partition's limit. */
  readonly timeLimitMinutes: number | null;
}

/**
 * Slurm resources of a sweep that names none: 2 CPUs (a run's two
 * threads), 4 GiB (the wasm heap's limit), the partition's time limit.
 *
 * @example
 * ```ts
 * import { SLURM_DEFAULTS } from "./sweep_spec.ts";
 * console.log(SLURM_DEFAULTS.memoryMb); // 4096
 * ```
 */
export const SLURM_DEFAULTS: SlurmResources = {
  cpusPerTask: 2,
  memoryMb: 4096,
  timeLimitMinutes: null,
};

/**
 * Decodes {@linkcode SlurmResources}.
 *
 * @example
 * ```ts
 * import { SlurmResourcesCodec } from "./sweep_spec.ts";
 * console.log(SlurmResourcesCodec.is({ cpusPerTask: 2, memoryMb: 4096, timeLimitMinutes: null })); // true
 * ```
 */
export const SlurmResourcesCodec: StrictCodec<FieldCodecs<SlurmResources>> = strict<
  FieldCodecs<SlurmResources>
>({
  cpusPerTask: PositiveInt,
  memoryMb: PositiveInt,
  timeLimitMinutes: nullable(PositiveInt),
}, "SlurmResources");

/**
 * The seeds a sweep trains `member` with, in order.
 *
 * @example
 * ```ts
 * import { sweepSeeds } from "./sweep_spec.ts";
 * import { presetExperiment } from "./presets.ts";
 * const m = { label: "crt", experiment: { ...presetExperiment("ptb"), seed: 7 } };
 * console.log(sweepSeeds({ name: "s", description: "", members: [m], seeds: 3 }, m)); // [ 7, 8, 9 ]
 * ```
 */
export const sweepSeeds = (sweep: Sweep, member: SweepMember): number[] =>
  Array.from({ length: sweep.seeds ?? 1 }, (_, k) => member.experiment.seed + k);

/**
 * Decodes a {@linkcode Sweep} (structure only; {@linkcode decodeSweep} adds the rules).
 *
 * @example
 * ```ts
 * import { SweepCodec } from "./sweep_spec.ts";
 *
 * console.log(SweepCodec.is({ name: "s", description: "", members: [] })); // true
 * ```
 */
export const SweepCodec: StrictCodec<FieldCodecs<Sweep>> = strict<FieldCodecs<Sweep>>({
  name: Name,
  description: t.string,
  members: t.readonlyArray(SweepMemberCodec),
  maxSeconds: optional(PositiveNumber),
  seeds: optional(PositiveInt),
  slurm: optional(SlurmResourcesCodec),
}, "Sweep");

// Compile-time: each codec decodes exactly the type declared above.
type _SweepMember = Assert<MutuallyAssignable<t.TypeOf<typeof SweepMemberCodec>, SweepMember>>;
type _Sweep = Assert<MutuallyAssignable<t.TypeOf<typeof SweepCodec>, Sweep>>;
type _SlurmResources = Assert<
  MutuallyAssignable<t.TypeOf<typeof SlurmResourcesCodec>, SlurmResources>
>;

/**
 * Decodes a {@linkcode Sweep}; each member's experiment is checked as
 * {@linkcode decodeExperiment} does, its issues prefixed with
 * `members[i].experiment.`.
 *
 * @example
 * ```ts
 * import { decodeSweep } from "./sweep_spec.ts";
 *
 * const r = decodeSweep({ name: "s", description: "", members: [] });
 * if (r._tag === "Left") console.log(r.left.message); // members: a sweep needs at least one member
 * ```
 */
export function decodeSweep(u: unknown): Either<SpecError, Sweep> {
  const d = decodeWith(SweepCodec, "", u);
  if (E.isLeft(d)) return E.left(rootless(d.left));
  const issues: SpecIssue[] = [];
  if (d.right.members.length === 0) {
    issues.push({ path: "members", message: "a sweep needs at least one member" });
  }
  const seen = new Set<string>();
  d.right.members.forEach((m, i) => {
    if (seen.has(m.label)) {
      issues.push({ path: `members[${i}].label`, message: `duplicate label "${m.label}"` });
    }
    seen.add(m.label);
    for (const issue of checkExperiment(m.experiment)) {
      issues.push({ path: `members[${i}].experiment.${issue.path}`, message: issue.message });
    }
  });
  return issues.length === 0 ? d : E.left(new SpecError(issues));
}
