/**
 * `deno task smarthome:sample DIR [--clips N] [--dim F] [--classes K]
 * [--min-frames T] [--max-frames T] [--signal-fraction P] [--seed N]`
 *
 * Writes a synthetic Toyota Smarthome-style dataset into DIR, in the layout
 * `deno task experiment smarthome --data DIR` reads (`classes.txt`,
 * `clips.csv`, `features/<clip_id>.npy`): imbalanced classes named after
 * Smarthome's, Smarthome's subject ids and cameras 1–7, and a class signal
 * only in the first eighth of every clip (noise after it), so that only a
 * model that carries memory across segments classifies it well. The
 * defaults (600 clips of 64–192 frames, F = 1024, ≈ 300 MB) fit the
 * presets as they are.
 *
 * Exit status: 0 written, 2 bad arguments or DIR already holds a dataset,
 * 1 a write failed.
 *
 * @example
 * ```ts
 * import { main } from "./smarthome_sample.ts";
 * const dir = await Deno.makeTempDir();
 * const status = await main([dir, "--clips", "40", "--dim", "4"], { stdout: () => {}, stderr: () => {} });
 * console.log(status); // 0
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { describeError } from "../../spec/errors.ts";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { encodeNpy } from "../io/npy.ts";
import { createRng } from "../loop/rng.ts";
import { exists } from "./_shared.ts";
import { featuresFile, SMARTHOME_CLASSES } from "./smarthome.ts";

const USAGE = `usage: deno task smarthome:sample DIR [options]

  DIR                    where to write classes.txt, clips.csv and features/ (created)
  --clips N              clips in all (default 600)
  --dim F                features per frame (default 1024, the presets' model.input.dim)
  --classes K            classes, named after Toyota Smarthome's 31 (default 31)
  --min-frames T         shortest clip (default 64)
  --max-frames T         longest clip (default 192)
  --signal-fraction P    share of each clip's frames, from its start, carrying the class (default 0.125)
  --seed N               seed (default 1)
  -h, --help             this text
`;

/** Where the command writes (injected by tests). */
export interface SampleIo {
  /** The summary. */
  readonly stdout: (text: string) => void;
  /** Errors. */
  readonly stderr: (text: string) => void;
}

const defaultIo: SampleIo = {
  stdout: (s) => void Deno.stdout.writeSync(new TextEncoder().encode(s)),
  stderr: (s) => void Deno.stderr.writeSync(new TextEncoder().encode(s)),
};

/**
 * The command: parses `args`, writes the dataset, returns the exit status.
 *
 * @example
 * ```ts
 * import { main } from "./smarthome_sample.ts";
 * console.log(await main(["--dim", "x"], { stdout: () => {}, stderr: () => {} })); // 2
 * ```
 */
export async function main(args: readonly string[], io: SampleIo = defaultIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      allowPositionals: true,
      strict: true,
      options: {
        clips: { type: "string" },
        dim: { type: "string" },
        classes: { type: "string" },
        "min-frames": { type: "string" },
        "max-frames": { type: "string" },
        "signal-fraction": { type: "string" },
        seed: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    io.stderr(`${describeError(e)}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout(USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    io.stderr(`expected one directory, got ${positionals.length} arguments\n\n${USAGE}`);
    return 2;
  }
  const dir = positionals[0];
  const ints: Record<string, number | undefined> = {};
  for (const key of ["clips", "dim", "classes", "min-frames", "max-frames", "seed"] as const) {
    const raw = values[key];
    if (raw === undefined) continue;
    if (!/^\d+$/.test(raw) || (key !== "seed" && Number(raw) === 0)) {
      io.stderr(`--${key} ${JSON.stringify(raw)}: expected a positive integer\n`);
      return 2;
    }
    ints[key] = Number(raw);
  }
  let fraction: number | undefined;
  if (values["signal-fraction"] !== undefined) {
    fraction = Number(values["signal-fraction"]);
    if (!(fraction > 0 && fraction <= 1)) {
      io.stderr(`--signal-fraction ${values["signal-fraction"]}: expected a number in (0, 1]\n`);
      return 2;
    }
  }
  if (await exists(join(dir, "clips.csv"))) {
    io.stderr(`${dir} already holds a dataset (clips.csv): choose an empty directory\n`);
    return 2;
  }
  const opts = {
    ...(ints.clips === undefined ? {} : { clips: ints.clips }),
    ...(ints.dim === undefined ? {} : { dim: ints.dim }),
    ...(ints.classes === undefined ? {} : { classes: ints.classes }),
    ...(ints["min-frames"] === undefined ? {} : { minFrames: ints["min-frames"] }),
    ...(ints["max-frames"] === undefined ? {} : { maxFrames: ints["max-frames"] }),
    ...(ints.seed === undefined ? {} : { seed: ints.seed }),
    ...(fraction === undefined ? {} : { signalFraction: fraction }),
  };
  const clips = opts.clips ?? 600, classes = opts.classes ?? 31;
  const minF = opts.minFrames ?? 64, maxF = opts.maxFrames ?? 192;
  if (classes < 2 || clips < classes) {
    io.stderr(`need --clips (${clips}) ≥ --classes (${classes}) ≥ 2\n`);
    return 2;
  }
  if (maxF < minF) {
    io.stderr(`--max-frames (${maxF}) is below --min-frames (${minF})\n`);
    return 2;
  }
  try {
    const counts = await writeSampleDataset(dir, opts);
    io.stdout(
      `${dir}: ${clips} clips of ${minF}–${maxF} frames × ${opts.dim ?? 1024} features, ` +
        `${classes} classes (${Math.max(...counts)} to ${Math.min(...counts)} clips each)\n` +
        `train on it: deno task experiment smarthome --quick --data ${dir}` +
        (opts.dim !== undefined && opts.dim !== 1024 ? ` --set model.input.dim=${opts.dim}` : "") +
        (classes !== 31 ? ` --set model.readout.nClasses=${classes}` : "") +
        "\n",
    );
    return 0;
  } catch (e) {
    io.stderr(`${dir}: cannot write: ${describeError(e)}\n`);
    return 1;
  }
}

// ---------------------------------------------------------------------------
// Synthetic datasets

/** Smarthome's subjects with cross-subject training and test subjects alternating. */
const SUBJECT_ORDER = [3, 2, 4, 10, 6, 11, 7, 14, 9, 16, 12, 18, 13, 20, 15, 17, 19, 25];
/** Cameras with the cross-view training (1), test (2) and validation (5) cameras first. */
const CAMERA_ORDER = [1, 2, 5, 3, 4, 6, 7];

/**
 * Options of {@linkcode writeSampleDataset}.
 *
 * @example
 * ```ts
 * import type { SampleOptions } from "./smarthome_sample.ts";
 * const tiny: SampleOptions = { clips: 200, dim: 8, classes: 4, seed: 1 };
 * ```
 */
export interface SampleOptions {
  /** Clips in all. Default 600. */
  readonly clips?: number;
  /** F: features per frame. Default 1024 (the presets' `model.input.dim`). */
  readonly dim?: number;
  /**
   * Number of classes, the first of {@linkcode SMARTHOME_CLASSES} (named
   * `class-k` beyond 31). Default 31.
   */
  readonly classes?: number;
  /** Shortest clip, in frames. Default 64. */
  readonly minFrames?: number;
  /** Longest clip, in frames. Default 192. */
  readonly maxFrames?: number;
  /**
   * The class signal occupies the first `signalFraction` of each clip's
   * frames; the rest is noise. Default 1/8 (the first segment of the
   * presets' 8-segment clips).
   */
  readonly signalFraction?: number;
  /** Signal amplitude over unit noise, per feature. Default 1. */
  readonly signal?: number;
  /**
   * The noise of every frame is A·z + jitter·n: z (unit Gaussian, `noiseRank`
   * values) through a fixed random A [F, noiseRank] scaled to unit variance
   * per feature, plus isotropic jitter n. Low-rank noise, as real features
   * lie near a low-dimensional manifold, keeps a model from telling training
   * clips apart by their noise alone (memorising them). Default 16 (at most F).
   */
  readonly noiseRank?: number;
  /** Standard deviation of the isotropic part of the noise. Default 0.1. */
  readonly jitter?: number;
  /**
   * Class frequencies fall as 1/(k + 1)^imbalance (Smarthome is heavily
   * imbalanced); 0 makes classes equally frequent. Default 1.
   */
  readonly imbalance?: number;
  /** Seed of everything drawn. Default 1. */
  readonly seed?: number;
}

/**
 * Writes a synthetic dataset in the layout {@linkcode readClipTable} reads,
 * built so that only memory across segments can classify it: each class
 * has a random prototype vector, which is added to the frames of the first
 * `signalFraction` of every clip of that class; every frame is also noise of
 * unit variance per feature (low-rank, see `noiseRank`). A model that sees
 * only the end of a clip is at chance.
 * Clip lengths vary uniformly in [minFrames, maxFrames]; subjects
 * (Smarthome's 18 ids) and cameras (1–7) are assigned round-robin within
 * each class, alternating the protocols' sides, so every protocol finds
 * clips of most classes on each side; class frequencies are imbalanced
 * (1/(k + 1)). Resolves to the clip count per class.
 *
 * @example
 * ```ts
 * import { writeSampleDataset } from "./smarthome_sample.ts";
 * const dir = await Deno.makeTempDir();
 * const counts = await writeSampleDataset(dir, { clips: 50, dim: 4, classes: 3 });
 * console.log(counts.reduce((a, b) => a + b, 0)); // 50
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeSampleDataset(dir: string, opts: SampleOptions = {}): Promise<number[]> {
  const n = opts.clips ?? 600;
  const dim = opts.dim ?? 1024;
  const k = opts.classes ?? 31;
  const minFrames = opts.minFrames ?? 64;
  const maxFrames = opts.maxFrames ?? 192;
  const fraction = opts.signalFraction ?? 1 / 8;
  const amplitude = opts.signal ?? 1;
  const imbalance = opts.imbalance ?? 1;
  const rank = Math.min(opts.noiseRank ?? 16, dim);
  const jitter = opts.jitter ?? 0.1;
  if (!(Number.isInteger(n) && n >= k && k >= 2)) {
    throw new RangeError(`writeSampleDataset: need clips ≥ classes ≥ 2, got ${n} and ${k}`);
  }
  if (!(Number.isInteger(minFrames) && minFrames >= 1 && maxFrames >= minFrames)) {
    throw new RangeError(`writeSampleDataset: bad frame range [${minFrames}, ${maxFrames}]`);
  }
  if (!(fraction > 0 && fraction <= 1)) {
    throw new RangeError(`writeSampleDataset: signalFraction must be in (0, 1], got ${fraction}`);
  }
  const rng = createRng(opts.seed ?? 1);
  // Box–Muller on two uniforms, both outputs used.
  let spare: number | null = null;
  const gauss = (): number => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(1 - rng.float())), a = 2 * Math.PI * rng.float();
    spare = r * Math.sin(a);
    return r * Math.cos(a);
  };
  const names = Array.from({ length: k }, (_, i) => SMARTHOME_CLASSES[i] ?? `class-${i}`);
  // Imbalanced counts: every class at least one clip, the rest by weight 1/(i + 1)^imbalance.
  const weights = names.map((_, i) => 1 / Math.pow(i + 1, imbalance));
  const total = weights.reduce((a, b) => a + b, 0);
  const counts = weights.map((w) => 1 + Math.floor(((n - k) * w) / total));
  for (let i = 0; counts.reduce((a, b) => a + b, 0) < n; i = (i + 1) % k) counts[i]++;
  // Prototypes: unit Gaussian per feature, scaled.
  const protos = names.map(() => Float32Array.from({ length: dim }, () => amplitude * gauss()));
  // The noise map A [F, rank], unit variance per feature.
  const mix = Float32Array.from({ length: dim * rank }, () => gauss() / Math.sqrt(rank));
  const z = new Float32Array(rank);
  await Deno.mkdir(join(dir, "features"), { recursive: true });
  await Deno.writeTextFile(join(dir, "classes.txt"), names.join("\n") + "\n");
  const rows = ["clip_id,label,subject,camera,frames"];
  let serial = 0;
  for (let c = 0; c < k; c++) {
    for (let j = 0; j < counts[c]; j++) {
      // Round-robin, so every class with a few clips has some on each side of each protocol.
      const subject = SUBJECT_ORDER[j % SUBJECT_ORDER.length];
      const camera = CAMERA_ORDER[(j + Math.floor(j / CAMERA_ORDER.length)) % CAMERA_ORDER.length];
      const t = minFrames + rng.int(maxFrames - minFrames + 1);
      const id = `${names[c]}_p${String(subject).padStart(2, "0")}_r${
        String(serial++).padStart(4, "0")
      }_c${String(camera).padStart(2, "0")}`;
      const data = new Float32Array(t * dim);
      for (let f = 0; f < t; f++) {
        for (let r = 0; r < rank; r++) z[r] = gauss();
        for (let d = 0; d < dim; d++) {
          let v = jitter * gauss();
          for (let r = 0; r < rank; r++) v += mix[d * rank + r] * z[r];
          data[f * dim + d] = v;
        }
      }
      const signalFrames = Math.max(1, Math.floor(fraction * t));
      for (let f = 0; f < signalFrames; f++) {
        for (let d = 0; d < dim; d++) data[f * dim + d] += protos[c][d];
      }
      await Deno.writeFile(featuresFile(dir, id), encodeNpy({ shape: [t, dim], data }));
      rows.push(`${id},${c},${subject},${camera},${t}`);
    }
  }
  await Deno.writeTextFile(join(dir, "clips.csv"), rows.join("\n") + "\n");
  return counts;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
