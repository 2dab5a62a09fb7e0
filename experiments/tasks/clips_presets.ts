/**
 * The Smarthome presets as data: the reference CRT and its full-length
 * Transformer baseline sized for clip features, the cross-subject recipe
 * (`smarthome`, `smarthome-full`) and the cross-view ones (`smarthome-cv1`,
 * `smarthome-cv2`), each with a `--quick` budget ({@linkcode smarthomePreset}).
 *
 * @module
 */
import type { CrtSpec, TransformerSpec } from "../../spec/codecs.ts";
import { referenceCrt, referenceTransformer } from "../../spec/reference_specs.ts";
import { override } from "../overrides.ts";
import { ADAMW_DEFAULTS } from "../experiment.ts";
import { type Protocol, PROTOCOLS } from "../data/smarthome_protocols.ts";
import { SMARTHOME_CLASSES } from "../data/smarthome.ts";
import type { SmarthomeExperiment } from "./clips_experiment.ts";

/** F of the presets: I3D's pooled RGB features (1024 per frame or snippet). */
export const PRESET_FEATURE_DIM = 1024;

/**
 * The preset CRT: the reference CRT's blocks and memory over per-frame
 * features [F = 1024] → D = 256 by a linear projection, learned positions, segments of 16 frames, one prepended memory
 * token, a GRU(256) fed the mean of the segment's outputs, 2 pre-LN blocks
 * of 4 heads and FFN 1024, dropout 0.1, and a linear classifier on the
 * final memory (31 classes).
 *
 * @example
 * ```ts
 * import { smarthomeCrt } from "./clips_presets.ts";
 * console.log(smarthomeCrt.segmentLen, smarthomeCrt.readout); // 16 { _tag: "classifier", nClasses: 31, pool: "memory" }
 * ```
 */
export const smarthomeCrt: CrtSpec = {
  ...referenceCrt,
  vocabSize: 2, // unused with feature input
  segmentLen: 16,
  readout: { _tag: "classifier", nClasses: SMARTHOME_CLASSES.length, pool: "memory" },
  input: { _tag: "features", dim: PRESET_FEATURE_DIM },
};

/**
 * The full-length Transformer baseline: the blocks of {@linkcode smarthomeCrt}
 * over the whole 128-frame clip in one segment, no memory, the classifier on
 * the mean of the outputs.
 *
 * @example
 * ```ts
 * import { smarthomeTransformer } from "./clips_presets.ts";
 * console.log(smarthomeTransformer.segmentLen); // 128
 * ```
 */
export const smarthomeTransformer: TransformerSpec = {
  ...referenceTransformer,
  vocabSize: 2,
  segmentLen: 128,
  readout: { _tag: "classifier", nClasses: SMARTHOME_CLASSES.length, pool: "mean" },
  input: { _tag: "features", dim: PRESET_FEATURE_DIM },
};

/**
 * The reference recipe: CRT on the cross-subject protocol, clips of 128
 * frames (8 segments of 16), class-balanced batches of 16 clips, AdamW lr
 * 5e-4 with 100 warm-up steps and cosine decay, clip 1, 30 epochs.
 *
 * @example
 * ```ts
 * import { smarthomeReference } from "./clips_presets.ts";
 * console.log(smarthomeReference.data.protocol.name, smarthomeReference.training.epochs); // cross-subject 30
 * ```
 */
export const smarthomeReference: SmarthomeExperiment = {
  _tag: "smarthome",
  name: "smarthome",
  description: "CRT (segments of 16 frames, GRU memory, classifier on the final memory) on " +
    "Toyota Smarthome, cross-subject",
  seed: 1,
  model: smarthomeCrt,
  data: { dir: null, protocol: PROTOCOLS["cross-subject"], clipFrames: 128, standardize: true },
  training: {
    batchSize: 16,
    epochs: 30,
    maxSeconds: null,
    balance: "classBalanced",
    lr: 5e-4,
    warmupSteps: 100,
    decay: "cosine",
    finalLrRatio: 0,
    ...ADAMW_DEFAULTS,
    clipNorm: 1,
    cayleyRefresh: 100,
    validEvery: 500,
    checkpointEvery: 500,
    logEvery: 10,
  },
  evaluation: { batchSize: 32, test: true },
  output: { dir: "runs", keepCheckpoints: 2 },
};

/**
 * What `--quick` changes: a budget sized for the generated sample dataset
 * (`deno task smarthome:sample DIR`: 600 clips, ≈ 300 training clips under
 * cross-subject): 16 epochs ≈ 300 steps of 16 clips at lr 1e-3. Measured on
 * the project's 2-core machine shared with other jobs: 302 steps in 5 min 18 s
 * (2,015 training frames/s; 11 min at the busiest, 950 frames/s). The model
 * first memorises the training clips (valid accuracy at chance after 100
 * steps), then finds the first-segment signal: test mean per-class accuracy
 * 33.1 %, overall 61.0 % (chance 3.2 %). `maxSeconds` (13 min) is a guard
 * for a busier machine.
 *
 * @example
 * ```ts
 * import { SMARTHOME_QUICK } from "./clips_presets.ts";
 * console.log(SMARTHOME_QUICK.epochs); // 16
 * ```
 */
export const SMARTHOME_QUICK = {
  epochs: 16,
  maxSeconds: 780,
  warmupSteps: 30,
  lr: 1e-3,
  validEvery: 100,
  checkpointEvery: 100,
  logEvery: 5,
} as const;

/** The named presets: description and what each changes from the reference. */
const SMARTHOME_PRESETS: Readonly<
  Record<string, { readonly description: string; readonly build: () => SmarthomeExperiment }>
> = {
  smarthome: {
    description: "CRT on Toyota Smarthome clips (features), cross-subject, segments of 16 frames",
    build: () => smarthomeReference,
  },
  "smarthome-full": {
    description: "full-length Transformer on the whole 128-frame clip (no memory), cross-subject",
    build: () =>
      override(smarthomeReference, {
        name: "smarthome-full",
        description: "full-length Transformer (one 128-frame segment, classifier on the mean of " +
          "the outputs) on Toyota Smarthome, cross-subject",
        model: smarthomeTransformer,
      }),
  },
  "smarthome-cv1": {
    description:
      "CRT on Toyota Smarthome, cross-view 1 (train camera 1, test camera 2; 19 classes)",
    build: () => crossView("smarthome-cv1", PROTOCOLS["cross-view-1"]),
  },
  "smarthome-cv2": {
    description: "CRT on Toyota Smarthome, cross-view 2 (train cameras 1,3,4,6,7; 19 classes)",
    build: () => crossView("smarthome-cv2", PROTOCOLS["cross-view-2"]),
  },
};

function crossView(name: string, protocol: Protocol): SmarthomeExperiment {
  const nClasses = protocol.classes?.length ?? SMARTHOME_CLASSES.length;
  return override(smarthomeReference, {
    name,
    description: `CRT on Toyota Smarthome, ${protocol.name} (${nClasses} classes)`,
    model: { ...smarthomeCrt, readout: { _tag: "classifier", nClasses, pool: "memory" } },
    data: { protocol },
  });
}

/**
 * The clip-classification preset names, in `--help` order.
 *
 * @example
 * ```ts
 * import { smarthomePresetNames } from "./clips_presets.ts";
 * console.log(smarthomePresetNames.join(" ")); // smarthome smarthome-full smarthome-cv1 smarthome-cv2
 * ```
 */
export const smarthomePresetNames: readonly string[] = Object.keys(SMARTHOME_PRESETS);

/**
 * One line describing a preset, for the usage text.
 *
 * @example
 * ```ts
 * import { describeSmarthomePreset } from "./clips_presets.ts";
 * console.log(describeSmarthomePreset("smarthome-cv1").includes("cross-view 1")); // true
 * ```
 */
export function describeSmarthomePreset(name: string): string {
  const p = SMARTHOME_PRESETS[name];
  if (p === undefined) throw new Error(`unknown smarthome preset ${JSON.stringify(name)}`);
  return p.description;
}

/**
 * A clip-classification preset, full or `--quick` (name suffixed
 * `-quick`). Throws on an unknown name.
 *
 * @example
 * ```ts
 * import { smarthomePreset } from "./clips_presets.ts";
 * const q = smarthomePreset("smarthome-full", { quick: true });
 * console.log(q.name, q.model._tag); // smarthome-full-quick transformer
 * ```
 */
export function smarthomePreset(
  name: string,
  opts: { readonly quick?: boolean } = {},
): SmarthomeExperiment {
  const p = SMARTHOME_PRESETS[name];
  if (p === undefined) throw new Error(`unknown smarthome preset ${JSON.stringify(name)}`);
  const full = p.build();
  if (!opts.quick) return full;
  return override(full, {
    name: `${full.name}-quick`,
    description: `${full.description} (--quick: ${SMARTHOME_QUICK.epochs} epochs)`,
    training: SMARTHOME_QUICK,
  });
}
