/**
 * Command line of the experiment runner: flags, `--set path=value` pairs
 * (applied by `overrides.ts`), and their errors.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCli } from "./args.ts";
 * import { applySets } from "./overrides.ts";
 * const cli = parseCli(["ptb-crt", "--quick", "--set", "training.lr=3e-4"]);
 * if (cli._tag === "Right") {
 *   const r = applySets({ training: { lr: 1e-3, steps: 100 } }, cli.right.set);
 *   assert(r._tag === "Right");
 * }
 * ```
 *
 * @module
 */
import { describeError } from "../spec/errors.ts";
import * as E from "fp-ts/lib/Either.js";
import { parseArgs } from "node:util";
import type { SetOverride } from "./overrides.ts";

/**
 * Compute backends the runner can start.
 *
 * @example
 * ```ts
 * import type { Backend } from "./args.ts";
 * const backend: Backend = "cpu";
 * ```
 */
export type Backend = "wasm" | "cpu";

const BACKENDS: readonly Backend[] = ["wasm", "cpu"];

function isBackend(s: string): s is Backend {
  return BACKENDS.some((b) => b === s);
}

/**
 * A parsed command line.
 *
 * @example
 * ```ts
 * import type { Cli } from "./args.ts";
 * const describe = (c: Cli) => `${c.name} on ${c.backend}${c.quick ? " (quick)" : ""}`;
 * ```
 */
export interface Cli {
  /** The experiment to run (a preset name). */
  readonly name: string;
  /** Shrink the experiment to a smoke-test size. */
  readonly quick: boolean;
  /** `--data DIR`, else `null` (then `CRT_DATA_DIR` or the cache folder). */
  readonly data: string | null;
  /** `--out DIR` for run folders, else `null` (the runner's default). */
  readonly out: string | null;
  /** `--config FILE.json`: a patch over the preset. */
  readonly config: string | null;
  /** `--set path=value`, in command-line order (later ones win). */
  readonly set: readonly SetOverride[];
  /** `--resume RUN_DIR`: continue from that run's latest valid checkpoint. */
  readonly resume: string | null;
  /** Build and check everything, print the plan, do not train. */
  readonly dryRun: boolean;
  /** Default `wasm`. */
  readonly backend: Backend;
  /**
   * The wasm matmul tier: `auto` (default: native BLAS when it loads, else
   * portable), or `native` / `portable` to force one.
   */
  readonly matmul: "auto" | "native" | "portable";
  /** Sweeps: `--seeds N`, the seeds per member in place of the sweep's own count. */
  readonly seeds: number | null;
  /** Sweeps: `--member NAME`, run only that member (with `--seed`, only that seed). */
  readonly member: string | null;
  /** Sweeps: `--seed N`, with `--member`. */
  readonly seed: number | null;
  /** Sweeps: `--slurm`, submit the sweep as a Slurm array job and exit. */
  readonly slurm: boolean;
  /** Sweeps: `--sbatch "ARGS"`, extra `sbatch` arguments (with `--slurm`). */
  readonly sbatch: string | null;
  /** Sweeps: `--collect SWEEP_DIR`, merge what has finished into the table. */
  readonly collect: string | null;
}

/**
 * Why the command line was not accepted. `HelpRequested` is not a failure: print `message`, exit 0.
 *
 * @example
 * ```ts
 * import { parseCli } from "./args.ts";
 * const r = parseCli(["ptb-crt", "--help"]);
 * if (r._tag === "Left") {
 *   if (r.left._tag === "HelpRequested") console.log(r.left.message);
 *   else console.error(r.left.message);
 * }
 * ```
 */
export type CliError =
  | { readonly _tag: "HelpRequested"; readonly message: string }
  | { readonly _tag: "UnknownOption"; readonly option: string; readonly message: string }
  | { readonly _tag: "InvalidOption"; readonly option: string; readonly message: string }
  | { readonly _tag: "MissingName"; readonly message: string }
  | { readonly _tag: "UnexpectedArgument"; readonly argument: string; readonly message: string }
  | { readonly _tag: "BadSet"; readonly argument: string; readonly message: string };

/**
 * Usage text, printed for `--help` and after a command-line error.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { USAGE } from "./args.ts";
 * assert(USAGE.startsWith("usage: crt <name>"));
 * ```
 */
export const USAGE = `usage: crt <name> [options]

  <name>               experiment (preset) to run
  --quick              smoke-test size
  --data DIR           PTB directory (ptb.train.txt, ptb.valid.txt, optional ptb.test.txt);
                       default $CRT_DATA_DIR, else the cache folder. smarthome*: the clips
                       (classes.txt, clips.csv, features/); default $CRT_SMARTHOME_DIR
  --out DIR            where run folders go
  --config FILE.json   patch over the preset (only existing keys)
  --set path=value     override one field, e.g. --set training.lr=3e-4 (repeatable;
                       value parsed as JSON when it parses, else taken as a string)
  --resume RUN_DIR     continue a run from its latest valid checkpoint
  --dry-run            build and check, print the plan, do not train
  --backend wasm|cpu   compute backend (default wasm)
  --matmul auto|native|portable
                       wasm matmul tier (default auto: native BLAS when it loads)

  sweeps (members x seeds):
  --seeds N            seeds per member (default: the sweep's own count)
  --member NAME        run only that member (each seed, or --seed N); again: resumes, or
                       does nothing when finished
  --seed N             with --member: only that seed
  --slurm              submit one Slurm array task per member x seed, print the job id, exit
  --sbatch="ARGS"      with --slurm: more sbatch arguments, e.g. --sbatch="--partition=cpu"
  --collect SWEEP_DIR  merge what has finished into sweep.json, sweep.md and curves.svg;
                       exit 0 only when every task has finished
  -h, --help           this text
`;

const OPTIONS = {
  quick: { type: "boolean" },
  data: { type: "string" },
  out: { type: "string" },
  config: { type: "string" },
  set: { type: "string", multiple: true },
  resume: { type: "string" },
  "dry-run": { type: "boolean" },
  backend: { type: "string" },
  matmul: { type: "string" },
  seeds: { type: "string" },
  member: { type: "string" },
  seed: { type: "string" },
  slurm: { type: "boolean" },
  sbatch: { type: "string" },
  collect: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** A non-negative integer option (`min` 1 for counts), or the error naming it. */
function intOption(
  value: string | undefined,
  option: string,
  min: number,
): E.Either<CliError, number | null> {
  if (value === undefined) return E.right(null);
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) {
    return E.left({
      _tag: "InvalidOption",
      option,
      message: `${option} ${JSON.stringify(value)}: expected an integer ≥ ${min}`,
    });
  }
  return E.right(n);
}

function parseSetArg(arg: string): E.Either<CliError, SetOverride> {
  const eq = arg.indexOf("=");
  const path = eq < 0 ? "" : arg.slice(0, eq).trim();
  if (path === "") {
    return E.left({
      _tag: "BadSet",
      argument: arg,
      message: `--set ${JSON.stringify(arg)}: expected path=value, e.g. --set training.lr=3e-4`,
    });
  }
  return E.right({ path, raw: arg.slice(eq + 1) });
}

/**
 * Parses the runner's arguments (without the program name).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCli } from "./args.ts";
 * const r = parseCli(["ptb-crt", "--data", "/data/ptb", "--set", "model.dModel=256", "--backend", "cpu"]);
 * assert(r._tag === "Right" && r.right.backend === "cpu" && r.right.set[0].raw === "256");
 * const bad = parseCli(["ptb-crt", "--lr", "1"]);
 * assert(bad._tag === "Left" && bad.left._tag === "UnknownOption");
 * ```
 */
export function parseCli(argv: readonly string[]): E.Either<CliError, Cli> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    const message = describeError(e);
    const option = /'(-[^' ]+)/.exec(message)?.[1] ?? "";
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      return E.left({
        _tag: "UnknownOption",
        option,
        message: `unknown option ${option}\n\n${USAGE}`,
      });
    }
    return E.left({ _tag: "InvalidOption", option, message });
  }
  const { values, positionals } = parsed;
  if (values.help) return E.left({ _tag: "HelpRequested", message: USAGE });
  if (positionals.length === 0) {
    return E.left({ _tag: "MissingName", message: `missing the experiment name\n\n${USAGE}` });
  }
  if (positionals.length > 1) {
    const argument = positionals[1];
    return E.left({
      _tag: "UnexpectedArgument",
      argument,
      message: `unexpected argument ${JSON.stringify(argument)}: give one experiment name`,
    });
  }
  const backend = values.backend ?? "wasm";
  if (!isBackend(backend)) {
    return E.left({
      _tag: "InvalidOption",
      option: "--backend",
      message: `--backend ${JSON.stringify(backend)}: expected one of ${BACKENDS.join(", ")}`,
    });
  }
  const matmul = values.matmul ?? "auto";
  if (matmul !== "auto" && matmul !== "native" && matmul !== "portable") {
    return E.left({
      _tag: "InvalidOption",
      option: "--matmul",
      message: `--matmul ${JSON.stringify(matmul)}: expected one of auto, native, portable`,
    });
  }
  const seeds = intOption(values.seeds, "--seeds", 1);
  if (E.isLeft(seeds)) return seeds;
  const seed = intOption(values.seed, "--seed", 0);
  if (E.isLeft(seed)) return seed;
  const needs = (option: string, what: string, ok: boolean): E.Either<CliError, void> =>
    ok ? E.right(undefined) : E.left({
      _tag: "InvalidOption",
      option,
      message: `${option} needs ${what}`,
    });
  for (
    const c of [
      needs("--seed", "--member NAME", seed.right === null || values.member !== undefined),
      needs("--sbatch", "--slurm", values.sbatch === undefined || values.slurm === true),
      needs("--slurm", "no --member (it submits every member)", !values.slurm || !values.member),
      needs(
        "--collect",
        "none of --slurm, --member, --seeds, --resume (it reads the sweep folder as it is)",
        values.collect === undefined ||
          (!values.slurm && values.member === undefined && values.seeds === undefined &&
            values.resume === undefined),
      ),
    ]
  ) if (E.isLeft(c)) return c;
  const set: SetOverride[] = [];
  for (const arg of values.set ?? []) {
    const s = parseSetArg(arg);
    if (E.isLeft(s)) return s;
    set.push(s.right);
  }
  return E.right({
    name: positionals[0],
    quick: values.quick ?? false,
    data: values.data ?? null,
    out: values.out ?? null,
    config: values.config ?? null,
    set,
    resume: values.resume ?? null,
    dryRun: values["dry-run"] ?? false,
    backend,
    matmul,
    seeds: seeds.right,
    member: values.member ?? null,
    seed: seed.right,
    slurm: values.slurm ?? false,
    sbatch: values.sbatch ?? null,
    collect: values.collect ?? null,
  });
}
