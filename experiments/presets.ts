/**
 * The named experiments of `deno task experiment <name>`, each built from one
 * base with `override(base, patch)`:
 *
 * | name | what |
 * | --- | --- |
 * | `ptb` | CRT, the reference model (docs/substrate.md; segments of 35, BPTT 2) |
 * | `ptb-full` | the full-length Transformer (segments of 70) |
 * | `ptb-xl` | Transformer-XL (segments of 35, cache of 35) |
 * | `ptb-sweep` | CRT at full, ½ and ¼ segment length beside the full-length Transformer |
 * | `wt103` | CRT on WikiText-103 with an adaptive softmax (segments of 75, BPTT 2) |
 * | `wt103-full` | the full-length Transformer on WikiText-103 (segments of 150) |
 * | `wt103-xl` | Transformer-XL on WikiText-103 (segments of 75, cache of 75) |
 * | `smarthome` | CRT on Toyota Smarthome clips (per-frame features), cross-subject |
 * | `smarthome-full` | the full-length Transformer on whole clips, cross-subject |
 * | `smarthome-cv1`, `smarthome-cv2` | CRT on Toyota Smarthome, cross-view 1 and 2 |
 *
 * The `smarthome*` presets are clip-classification experiments
 * (`tasks/clips_experiment.ts`), resolved to a plan of kind `smarthome`.
 *
 * Every preset has a `--quick` form sized to finish, evaluation of the whole
 * valid split included, in under 15 minutes on this project's 2-core machine
 * (see {@linkcode QUICK}).
 *
 * @example
 * ```ts
 * import { presetExperiment, presetNames } from "./presets.ts";
 *
 * console.log(presetNames.join(", "));
 * // ptb, ptb-full, ptb-xl, ptb-sweep, wt103, wt103-full, wt103-xl, smarthome, smarthome-full, smarthome-cv1, smarthome-cv2
 * console.log(presetExperiment("ptb", { quick: true }).name); // ptb-quick
 * ```
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type { ModelSpec } from "../spec/codecs.ts";
import { referenceCrt, referenceTransformer, referenceXl } from "../spec/reference_specs.ts";
import { override } from "./overrides.ts";
import { ADAMW_DEFAULTS, type Experiment, type TrainingSettings } from "./experiment.ts";
import type { Sweep, SweepMember } from "./sweep_spec.ts";
import {
  describeSmarthomePreset,
  smarthomePreset,
  smarthomePresetNames,
} from "./tasks/clips_presets.ts";
import type { SmarthomeExperiment } from "./tasks/clips_experiment.ts";

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
  | { readonly _tag: "sweep"; readonly sweep: Sweep }
  /** A clip-classification experiment (Toyota Smarthome). */
  | { readonly _tag: "smarthome"; readonly experiment: SmarthomeExperiment };

/** PTB training split: 929,589 tokens with `<eos>`. */
const PTB_TRAIN_TOKENS = 929_589;

/**
 * The reference recipe (docs/substrate.md, "Quality per budget"): the reference
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
    ...ADAMW_DEFAULTS,
    clipNorm: 0.25,
    cayleyRefresh: 100,
    validEvery: 500,
    validTokens: null,
    checkpointEvery: 200,
    logEvery: 10,
    readoutBias: "unigram",
  },
  evaluation: { batchSize: 10, test: true },
  output: { dir: "runs", keepCheckpoints: 2 },
};

/**
 * The `--quick` budgets, sized from throughput measured on the project's
 * 2-core machine (shared; its speed drifts up to 2× within minutes) with the
 * native-BLAS matmul and the fused kernels, reference width: 2.2–2.9 k
 * training tokens/s depending on load and segment length, and 12–20 s to
 * evaluate the whole valid split (73,760 tokens, 10 streams).
 *
 * Every quick form trains less than one epoch of PTB (929,589 tokens), where
 * dropout only slows learning, so it sets `model.dropout` to 0; like every
 * preset it starts the output bias at the unigram log-frequencies
 * (`training.readoutBias`, experiments/tasks/readout_bias.ts).
 *
 * - `single`: 840 k tokens (600 steps of 1400), lr 1e-3. Measured:
 *   `ptb --quick` reached valid ppl 174.9 in 4 min 52 s (3,111 tokens/s).
 *   With dropout 0.1 and a zero output bias it had reached 204.3 in 5 min
 *   28 s (2,763 tokens/s); before the fused kernels that run took 9 min 53 s
 *   (1,494 tokens/s, ppl 204.2).
 * - `sweepMember`: five runs must share the 15 minutes, so each member gets
 *   360 k tokens (~257 steps of ~1400, what every member trains within its
 *   175 s guard at ~2.3 k tokens/s, so budgets stay equal) and a 100-step
 *   warm-up (the reference 200 would take most of the run). Before the
 *   full-length S = 140 member joined, the four others had 440 k tokens
 *   each; the measurements below are from then. With the
 *   reference recipe (dropout 0.1, zero bias, lr 1e-3) the sweep reached
 *   valid ppl 294 (Transformer), 315 (CRT S=70), 308 (S=35), 285 (S=18) in
 *   12 min 06 s. Probes on the CRT S=70 member alone, one run each, valid
 *   ppl after 440 k tokens: reference 315; dropout 0: 294; and then B = 5
 *   (twice the steps): 333, B = 20 with 50 warm-up steps: 344, tied embeddings: 339, lr 7e-4: 299,
 *   lr 2e-3: 334, β2 0.98 with 50 warm-up steps: 336; unigram output bias:
 *   257, with lr 1.5e-3: 246, with lr 2e-3: 244. With that recipe (dropout
 *   0, unigram bias, lr 2e-3) the whole sweep ran in 12 min 21 s, every
 *   member ending by tokens (the sweep budget lent crt-s18, at 2.1 k
 *   tokens/s, a 340 s guard): valid ppl 239.6 (Transformer), 244.3 (CRT
 *   S=70), 225.3 (S=35), 222.5 (S=18). The quick sweep shows the
 *   comparison's shape, not converged numbers (the full `ptb-sweep` trains
 *   each member 2 epochs).
 *
 * `maxSeconds` is a guard that ends training early on a loaded machine, so
 * that the whole run still ends within 15 minutes; the token budget is what
 * normally ends a run, and `results.json` says which did (`stopped_by`).
 * The reference width is kept: a narrower model (D = 128, FFN 512, lr 2e-3)
 * trained only ~1.2× faster here (the 10,000-way output dominates) and
 * reached valid ppl 378 after 420 k tokens (281 s), no better per second of
 * training than D = 256.
 *
 * @example
 * ```ts
 * import { QUICK } from "./presets.ts";
 * console.log(QUICK.single.tokens > QUICK.sweepMember.tokens); // true
 * ```
 */
export const QUICK = {
  /** One experiment (`ptb --quick`, `ptb-full --quick`, `ptb-xl --quick`). */
  single: { tokens: 840_000, maxSeconds: 780, warmupSteps: 200, lr: 1e-3 },
  /** Each of the five members of `ptb-sweep --quick` (same budget for each). */
  sweepMember: { tokens: 360_000, maxSeconds: 175, warmupSteps: 100, lr: 2e-3 },
  /**
   * The whole `ptb-sweep --quick`: time earlier members leave unused goes to
   * later ones (`Sweep.maxSeconds`), 30 s short of 15 minutes for start-up.
   */
  sweepSeconds: 870,
} as const;

const quickTraining = (
  budget: { tokens: number; maxSeconds: number; warmupSteps: number; lr: number },
) => ({
  tokens: budget.tokens,
  maxSeconds: budget.maxSeconds,
  warmupSteps: budget.warmupSteps,
  lr: budget.lr,
  validEvery: 200,
  validTokens: 10_000,
  checkpointEvery: 100,
  logEvery: 5,
});

/** A preset from a name, a description, a model, a training patch and whether `--quick`. */
type PresetOf = (
  name: string,
  description: string,
  model: ModelSpec,
  training: Partial<TrainingSettings>,
  quick: boolean,
) => Experiment;

/** A single experiment from the reference with `model` and a training patch. */
const single: PresetOf = (name, description, model, training, quick) => {
  const full = override(reference, { name, description, model, training });
  if (!quick) return full;
  return override(full, {
    name: `${name}-quick`,
    description: `${description} (--quick: ${QUICK.single.tokens} tokens)`,
    model: { dropout: 0 },
    training: quickTraining(QUICK.single),
  });
};

/**
 * `ptb-sweep`: full-length Transformers at S = 140 and 70, and CRT at S =
 * 70, 35 and 18, same depth and width: CRT at ½ and ¼ of the S = 140
 * Transformer's span (and of the S = 70 one's). Every member reads ~1400
 * tokens a step, so equal token budgets mean equal numbers of updates and
 * the same schedule: CRT keeps BPTT over K = 2 segments and the number of
 * streams B makes up the difference (B·K·S = 10·2·70, 20·2·35, 39·2·18 =
 * 1404; the Transformers, with no state, read 10·1·140 and 20·1·70).
 *
 * Three seeds per member (`--seeds N` changes it; `--quick`: one, so that
 * the quick sweep ends within 15 minutes on a 2-core machine). Each Slurm
 * array task (`--slurm`) asks for 2 CPUs and 4 GiB, and 2 hours (the full
 * form) or 30 minutes (`--quick`).
 */
const sweep = (quick: boolean): Sweep => {
  const fullLen = referenceTransformer.segmentLen; // 70
  const member = (
    label: string,
    model: ModelSpec,
    shape: { batchSize: number; bpttSegments: number },
  ): SweepMember => {
    const base = override(reference, {
      name: `ptb-sweep-${label}`,
      description: `ptb-sweep member ${label}`,
      model,
      training: { ...shape, tokens: 2 * PTB_TRAIN_TOKENS },
    });
    // Every 100 steps on the first 10 k valid tokens: the curves of sweep.md's picture.
    const experiment = quick
      ? override(base, {
        name: `ptb-sweep-quick-${label}`,
        model: { dropout: 0 },
        training: { ...quickTraining(QUICK.sweepMember), validEvery: 100, validTokens: 10_000 },
      })
      : base;
    return { label, experiment };
  };
  const crtAt = (s: number): ModelSpec => ({ ...referenceCrt, segmentLen: s });
  const half = fullLen / 2, quarter = Math.round(fullLen / 4);
  return {
    name: quick ? "ptb-sweep-quick" : "ptb-sweep",
    ...(quick ? { maxSeconds: QUICK.sweepSeconds } : {}),
    seeds: quick ? 1 : 3,
    slurm: { cpusPerTask: 2, memoryMb: 4096, timeLimitMinutes: quick ? 30 : 120 },
    description: "CRT at 1/2 and 1/4 of a full-length Transformer's segment (S = 140; and of " +
      "S = 70), same depth, width and token budget",
    members: [
      member(`transformer-s${2 * fullLen}`, { ...referenceTransformer, segmentLen: 2 * fullLen }, {
        batchSize: 10,
        bpttSegments: 1,
      }),
      member(`transformer-s${fullLen}`, referenceTransformer, { batchSize: 20, bpttSegments: 1 }),
      member(`crt-s${fullLen}`, crtAt(fullLen), { batchSize: 10, bpttSegments: 2 }),
      member(`crt-s${half}`, crtAt(half), { batchSize: 20, bpttSegments: 2 }),
      member(`crt-s${quarter}`, crtAt(quarter), { batchSize: 39, bpttSegments: 2 }),
    ],
  };
};

/** WikiText-103's training split: 103,227,021 tokens with `<eos>` (as Transformer-XL counts). */
const WT103_TRAIN_TOKENS = 103_227_021;

/**
 * The WikiText-103 model family: 2 pre-LN layers of width D = 128 (4 heads,
 * FFN 512, GRU memory of 128) over the release's 267,735 words (`<eos>`
 * included, as Transformer-XL counts them) with Transformer-XL's adaptive
 * softmax (cutoffs 20k / 40k / 200k, tail widths D/4, D/16, D/64). The
 * full-length Transformer reads segments of 150 (Transformer-XL's
 * WikiText-103 length), CRT and Transformer-XL half of that, XL caching 75
 * states.
 *
 * Deviation: half the reference width. The input embedding [267,735, D] and
 * its gradient — dense, one per segment of a window — dominate memory: at
 * D = 256 (80 M parameters) a training step peaked at 3.5 GB of the wasm
 * heap, whose limit is 4 GB; at D = 128 (40 M) at 1.9 GB, and a step is ~2×
 * faster. `--set model.dModel=256 --set model.dFF=1024 --set
 * model.memory.dMemory=256` runs the reference width.
 *
 * @example
 * ```ts
 * import { WT103 } from "./presets.ts";
 * console.log(WT103.crt.segmentLen, WT103.transformer.segmentLen, WT103.xl.memLen); // 75 150 75
 * ```
 */
export const WT103 = (() => {
  const vocabSize = 267_735;
  const readout = { _tag: "adaptive", cutoffs: [20_000, 40_000, 200_000], divValue: 4 } as const;
  const width = { vocabSize, readout, dModel: 128, dFF: 512 } as const;
  return {
    vocabSize,
    readout,
    crt: {
      ...referenceCrt,
      ...width,
      segmentLen: 75,
      memory: { ...referenceCrt.memory, dMemory: 128 },
    } satisfies ModelSpec,
    transformer: { ...referenceTransformer, ...width, segmentLen: 150 } satisfies ModelSpec,
    xl: { ...referenceXl, ...width, segmentLen: 75, memLen: 75 } satisfies ModelSpec,
  };
})();

/**
 * The `--quick` budget of the `wt103*` presets: a bounded number of
 * training tokens, sized from throughput measured here (see README), plus
 * reading the corpus and evaluating the whole valid and test splits.
 *
 * @example
 * ```ts
 * import { WT103_QUICK } from "./presets.ts";
 * console.log(WT103_QUICK.tokens); // 240000
 * ```
 */
export const WT103_QUICK = {
  tokens: 240_000,
  maxSeconds: 600,
  warmupSteps: 20,
} as const;

/**
 * A WikiText-103 experiment: the reference recipe with B = 16 streams of
 * K·S = 150 tokens a step (2,400 tokens), one epoch, validation on the
 * first 50k valid tokens every 2,000 steps, a checkpoint every 500 steps;
 * `--quick` trains {@linkcode WT103_QUICK}.tokens and checkpoints only at
 * the end.
 */
const wt103: PresetOf = (name, description, model, training, quick) => {
  const full = override(reference, {
    name,
    description,
    model,
    data: { dataset: "wt103" },
    training: {
      batchSize: 16,
      tokens: WT103_TRAIN_TOKENS,
      warmupSteps: 1000,
      validEvery: 2000,
      validTokens: 50_000,
      checkpointEvery: 500,
      ...training,
    },
  });
  if (!quick) return full;
  return override(full, {
    name: `${name}-quick`,
    description: `${description} (--quick: ${WT103_QUICK.tokens} tokens)`,
    training: {
      ...WT103_QUICK,
      validEvery: 0,
      // A checkpoint (parameters and Adam moments) is ~480 MB: only the last one, or on Ctrl-C.
      checkpointEvery: 0,
      logEvery: 5,
    },
    output: { keepCheckpoints: 1 },
  });
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
  wt103: {
    description: "CRT on WikiText-103, adaptive softmax (D = 128, segments of 75, BPTT 2)",
    build: (quick) => ({
      _tag: "single",
      experiment: wt103(
        "wt103",
        "CRT (1 memory token, GRU on the mean of outputs) on WikiText-103, adaptive softmax",
        WT103.crt,
        {},
        quick,
      ),
    }),
  },
  "wt103-full": {
    description: "full-length Transformer on WikiText-103 (segments of 150, no memory)",
    build: (quick) => ({
      _tag: "single",
      experiment: wt103(
        "wt103-full",
        "full-length Transformer (segments of 150) on WikiText-103, adaptive softmax",
        WT103.transformer,
        // No carried state: one segment per step reads B·S = 2400 tokens, as CRT's window does.
        { bpttSegments: 1 },
        quick,
      ),
    }),
  },
  "wt103-xl": {
    description: "Transformer-XL on WikiText-103 (segments of 75, cache of 75)",
    build: (quick) => ({
      _tag: "single",
      experiment: wt103(
        "wt103-xl",
        "Transformer-XL (segments of 75, cache of 75) on WikiText-103, adaptive softmax",
        WT103.xl,
        {},
        quick,
      ),
    }),
  },
  ...Object.fromEntries(smarthomePresetNames.map((name): [string, Preset] => [name, {
    description: describeSmarthomePreset(name),
    build: (quick) => ({ _tag: "smarthome", experiment: smarthomePreset(name, { quick }) }),
  }])),
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
  if (plan._tag !== "single") {
    throw new Error(
      `${name} is ${
        plan._tag === "sweep" ? "a sweep" : "a clip-classification experiment"
      }, not a single language-model experiment`,
    );
  }
  return plan.experiment;
}
