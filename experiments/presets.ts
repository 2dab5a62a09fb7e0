/**
 * The named experiments of `deno task experiment <name>`, each built from one
 * base with `override(base, patch)`:
 *
 * | name | what |
 * | --- | --- |
 * | `ptb` | CRT, the reference model of SUBSTRATE.md (segments of 35, BPTT 2) |
 * | `ptb-full` | the full-length Transformer (segments of 70) |
 * | `ptb-xl` | Transformer-XL (segments of 35, cache of 35) |
 * | `ptb-sweep` | CRT at full, ½ and ¼ segment length beside the full-length Transformer |
 *
 * Every preset has a `--quick` form sized to finish, evaluation of the whole
 * valid split included, in under 15 minutes on this project's 2-core machine
 * (see {@linkcode QUICK}).
 *
 * @example
 * ```ts
 * import { presetExperiment, presetNames } from "./presets.ts";
 *
 * console.log(presetNames.join(", ")); // ptb, ptb-full, ptb-xl, ptb-sweep
 * console.log(presetExperiment("ptb", { quick: true }).name); // ptb-quick
 * ```
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { type ModelSpec, referenceCrt, referenceTransformer, referenceXl } from "../spec/model.ts";
import { override } from "./args.ts";
import type { Experiment, Sweep, TrainingSettings } from "./experiment.ts";

/**
 * What a preset resolves to: one experiment, or a sweep of several.
 *
 * @example
 * ```ts
 * import { type Plan, presetPlan } from "./presets.ts";
 * const plan: Plan = presetPlan("ptb-sweep");
 * console.log(plan._tag); // sweep
 * ```
 */
export type Plan =
  | { readonly _tag: "single"; readonly experiment: Experiment }
  | { readonly _tag: "sweep"; readonly sweep: Sweep };

/** PTB training split: 929,589 tokens with `<eos>`. */
const PTB_TRAIN_TOKENS = 929_589;

/**
 * The reference recipe (SUBSTRATE.md "Quality per budget"): the reference
 * CRT, B = 20 ordered streams, BPTT over 2 segments, AdamW lr 1e-3 with 200
 * warm-up steps and cosine decay, clip 0.25, dropout 0.1 (in the model),
 * evaluation as 10 streams. The full form trains 5 epochs.
 *
 * @example
 * ```ts
 * import { reference } from "./presets.ts";
 * console.log(reference.training.batchSize, reference.model.segmentLen); // 20 35
 * ```
 */
export const reference: Experiment = {
  name: "ptb",
  description: "CRT (1 memory token, GRU on the mean of outputs) on word-level PTB",
  seed: 1,
  model: referenceCrt,
  data: { dir: null },
  training: {
    batchSize: 20,
    bpttSegments: 2,
    tokens: 5 * PTB_TRAIN_TOKENS,
    maxSeconds: null,
    lr: 1e-3,
    warmupSteps: 200,
    decay: "cosine",
    finalLrRatio: 0,
    weightDecay: 0.01,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    clipNorm: 0.25,
    cayleyRefresh: 100,
    validEvery: 500,
    validTokens: null,
    checkpointEvery: 200,
    logEvery: 10,
  },
  evaluation: { batchSize: 10, test: true },
  output: { dir: "runs", keepCheckpoints: 2 },
};

/**
 * The `--quick` budgets, chosen from measured throughput (see the numbers
 * below) so that a run, evaluation of the whole valid split included,
 * finishes in under 15 minutes on the 2-core machine. `maxSeconds` is a
 * guard that stops training early on a slower machine; the token budget is
 * what normally ends a run, so the schedule completes.
 *
 * @example
 * ```ts
 * import { QUICK } from "./presets.ts";
 * console.log(QUICK.single.tokens > QUICK.sweepMember.tokens); // true
 * ```
 */
export const QUICK = {
  /** One experiment (`ptb --quick`, `ptb-full --quick`, `ptb-xl --quick`). */
  single: { tokens: 840_000, maxSeconds: 780 },
  /** Each of the four members of `ptb-sweep --quick` (same budget for each). */
  sweepMember: { tokens: 230_000, maxSeconds: 175 },
} as const;

/**
 * The `--quick` model width. The reference width (D = 256, FFN 1024) is
 * kept; see {@linkcode QUICK} for the budgets.
 */
const quickModel = <M extends ModelSpec>(m: M): M => m;

const quickTraining = (budget: { tokens: number; maxSeconds: number }) => ({
  tokens: budget.tokens,
  maxSeconds: budget.maxSeconds,
  validEvery: 200,
  validTokens: 10_000,
  checkpointEvery: 100,
  logEvery: 5,
});

/** A single experiment from the reference with `model` and a training patch. */
const single = (
  name: string,
  description: string,
  model: ModelSpec,
  training: Partial<TrainingSettings>,
  quick: boolean,
): Experiment => {
  const full = override(reference, { name, description, model, training });
  if (!quick) return full;
  return override(full, {
    name: `${name}-quick`,
    description: `${description} (--quick: ${QUICK.single.tokens} tokens)`,
    model: quickModel(model),
    training: quickTraining(QUICK.single),
  });
};

/** Warm-up measured in tokens, so sweep members with different step sizes warm up alike. */
const warmupTokens = reference.training.warmupSteps * 20 * 70;

const sweep = (quick: boolean): Sweep => {
  const fullLen = referenceTransformer.segmentLen; // 70
  const member = (label: string, model: ModelSpec, bpttSegments: number): Sweep["members"][0] => {
    const perStep = reference.training.batchSize * bpttSegments * model.segmentLen;
    const base = override(reference, {
      name: `ptb-sweep-${label}`,
      description: `ptb-sweep member ${label}`,
      model: quick ? quickModel(model) : model,
      training: {
        bpttSegments,
        warmupSteps: Math.round(warmupTokens / perStep),
        tokens: 2 * PTB_TRAIN_TOKENS,
        validEvery: 0,
      },
    });
    const experiment = quick
      ? override(base, {
        name: `ptb-sweep-quick-${label}`,
        training: { ...quickTraining(QUICK.sweepMember), validEvery: 0 },
      })
      : base;
    return { label, experiment };
  };
  const crtAt = (s: number): ModelSpec => ({ ...referenceCrt, segmentLen: s });
  return {
    name: quick ? "ptb-sweep-quick" : "ptb-sweep",
    description: "CRT at full, 1/2 and 1/4 segment length beside the full-length Transformer, " +
      "same depth, width and token budget",
    members: [
      member(`transformer-s${fullLen}`, referenceTransformer, 1),
      member(`crt-s${fullLen}`, crtAt(fullLen), 2),
      member(`crt-s${fullLen / 2}`, crtAt(fullLen / 2), 2),
      member(`crt-s${Math.round(fullLen / 4)}`, crtAt(Math.round(fullLen / 4)), 2),
    ],
  };
};

/** A preset: a name, what it runs, and how to build it. */
interface Preset {
  readonly description: string;
  readonly build: (quick: boolean) => Plan;
}

const PRESETS: Readonly<Record<string, Preset>> = {
  ptb: {
    description: "CRT, the reference model (segments of 35, BPTT 2 segments)",
    build: (quick) => ({
      _tag: "single",
      experiment: single("ptb", reference.description, referenceCrt, {}, quick),
    }),
  },
  "ptb-full": {
    description: "full-length Transformer (segments of 70, no memory)",
    build: (quick) => ({
      _tag: "single",
      experiment: single(
        "ptb-full",
        "full-length Transformer (segments of 70) on word-level PTB",
        referenceTransformer,
        // No carried state: one segment per step reads B·S = 1400 tokens, as CRT's window does.
        { bpttSegments: 1 },
        quick,
      ),
    }),
  },
  "ptb-xl": {
    description: "Transformer-XL (segments of 35, cache of 35)",
    build: (quick) => ({
      _tag: "single",
      experiment: single(
        "ptb-xl",
        "Transformer-XL (segments of 35, cache of 35) on word-level PTB",
        referenceXl,
        {},
        quick,
      ),
    }),
  },
  "ptb-sweep": {
    description: "CRT at segment 70, 35 and 18 beside the full-length Transformer (70)",
    build: (quick) => ({ _tag: "sweep", sweep: sweep(quick) }),
  },
};

/**
 * The preset names, in the order `--help` lists them.
 *
 * @example
 * ```ts
 * import { presetNames } from "./presets.ts";
 * console.log(presetNames.includes("ptb")); // true
 * ```
 */
export const presetNames: readonly string[] = Object.keys(PRESETS);

/**
 * One line per preset, for the usage text.
 *
 * @example
 * ```ts
 * import { describePresets } from "./presets.ts";
 * console.log(describePresets().split("\n")[0].trim().startsWith("ptb ")); // true
 * ```
 */
export function describePresets(): string {
  const width = Math.max(...presetNames.map((n) => n.length));
  return presetNames.map((n) => `  ${n.padEnd(width)}  ${PRESETS[n].description}`).join("\n");
}

/**
 * An unknown preset name, with the known ones.
 *
 * @example
 * ```ts
 * import { resolvePreset } from "./presets.ts";
 * const r = resolvePreset("ptb-crt");
 * if (r._tag === "Left") console.log(r.left.message.startsWith('unknown experiment "ptb-crt"')); // true
 * ```
 */
export interface UnknownPreset {
  /** Discriminant. */
  readonly _tag: "UnknownPreset";
  /** The name asked for. */
  readonly name: string;
  /** Names that exist. */
  readonly known: readonly string[];
  /** Says both. */
  readonly message: string;
}

/**
 * The plan of a preset, in its full or `--quick` form.
 *
 * @example
 * ```ts
 * import { resolvePreset } from "./presets.ts";
 * const r = resolvePreset("ptb-full", { quick: true });
 * if (r._tag === "Right" && r.right._tag === "single") console.log(r.right.experiment.model._tag); // transformer
 * ```
 */
export function resolvePreset(
  name: string,
  opts: { readonly quick?: boolean } = {},
): E.Either<UnknownPreset, Plan> {
  const preset = Object.hasOwn(PRESETS, name) ? PRESETS[name] : undefined;
  if (preset === undefined) {
    return E.left({
      _tag: "UnknownPreset",
      name,
      known: presetNames,
      message: `unknown experiment ${JSON.stringify(name)} (known: ${presetNames.join(", ")})`,
    });
  }
  return E.right(preset.build(opts.quick ?? false));
}

/**
 * {@linkcode resolvePreset} for code and tests: throws on an unknown name.
 *
 * @example
 * ```ts
 * import { presetPlan } from "./presets.ts";
 * console.log(presetPlan("ptb")._tag); // single
 * ```
 */
export function presetPlan(name: string, opts: { readonly quick?: boolean } = {}): Plan {
  const r = resolvePreset(name, opts);
  if (E.isLeft(r)) throw new Error(r.left.message);
  return r.right;
}

/**
 * The experiment of a single-run preset; throws for an unknown name or a sweep.
 *
 * @example
 * ```ts
 * import { presetExperiment } from "./presets.ts";
 * console.log(presetExperiment("ptb-xl").model._tag); // xl
 * ```
 */
export function presetExperiment(
  name: string,
  opts: { readonly quick?: boolean } = {},
): Experiment {
  const plan = presetPlan(name, opts);
  if (plan._tag !== "single") throw new Error(`${name} is a sweep, not a single experiment`);
  return plan.experiment;
}
