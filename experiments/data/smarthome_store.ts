/**
 * Clips as the model reads them: fixed-length resampling, the store that
 * reads and caches clips' features, feature statistics and class-balanced
 * batches.
 *
 * ## Clip length
 *
 * The model reads every clip as exactly L = `clipFrames` frames (a whole
 * number of segments), with no padding and no mask: frame i of the model's
 * input is frame ⌊(i + ½)·T / L⌋ of the clip (nearest-frame resampling —
 * evenly spaced frames when T > L, repeated frames when T < L). The whole
 * clip is always seen, at a rate that depends on its length.
 *
 * @module
 */
import { describeError } from "../../spec/errors.ts";
import * as E from "fp-ts/lib/Either.js";
import { decodeNpy } from "../io/npy.ts";
import { createRng, type Rng, shuffle } from "../loop/rng.ts";
import { type ClipRecord, type ClipTable, featuresFile } from "./smarthome.ts";
// ---------------------------------------------------------------------------
// Clip sampling and the clip store

/**
 * The frame of a T-frame clip that position i of an L-frame model input
 * reads: ⌊(i + ½)·T / L⌋ (nearest-frame resampling).
 *
 * @example
 * ```ts
 * import { resampleIndex } from "./smarthome_store.ts";
 * console.log([0, 1, 2, 3].map((i) => resampleIndex(i, 8, 4))); // [ 1, 3, 5, 7 ]
 * console.log([0, 1, 2, 3].map((i) => resampleIndex(i, 2, 4))); // [ 0, 0, 1, 1 ]
 * ```
 */
export const resampleIndex = (i: number, frames: number, clipFrames: number): number =>
  Math.min(frames - 1, Math.floor(((i + 0.5) * frames) / clipFrames));

/**
 * Per-feature standardisation: x ↦ (x − mean) / std.
 *
 * @example
 * ```ts
 * import type { FeatureStats } from "./smarthome_store.ts";
 * const identity: FeatureStats = { mean: new Float32Array(4), std: new Float32Array(4).fill(1), clips: 0 };
 * ```
 */
export interface FeatureStats {
  /** Per-feature mean, [F]. */
  readonly mean: Float32Array;
  /** Per-feature standard deviation, [F] (constant features: 1). */
  readonly std: Float32Array;
  /** Clips the statistics were estimated from. */
  readonly clips: number;
}

/**
 * Reads clips' features from a table's directory as the model sees them:
 * resampled to `clipFrames` frames, standardised when `stats` is given,
 * packed [B, L, F]. Keeps the prepared clips in memory up to `cacheBytes`
 * (default 1 GiB), so small datasets are read from disk once.
 *
 * @example
 * ```ts
 * import { ClipStore } from "./smarthome_store.ts";
 * import { readClipTable } from "./smarthome.ts";
 * import { writeSampleDataset } from "./smarthome_sample.ts";
 * const dir = await Deno.makeTempDir();
 * await writeSampleDataset(dir, { clips: 40, dim: 4, seed: 3 });
 * const table = await readClipTable(dir);
 * if (table._tag === "Left") throw new Error(table.left.message);
 * const store = new ClipStore(table.right, { clipFrames: 16 });
 * const batch = await store.batch(table.right.clips.slice(0, 2));
 * console.log(batch.length); // 2 · 16 · 4 = 128
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class ClipStore {
  private readonly cache = new Map<string, Float32Array>();
  private cached = 0;
  private readonly cacheBytes: number;
  /** L: frames per clip as the model reads it. */
  readonly clipFrames: number;
  /** F. */
  readonly featureDim: number;
  private stats: FeatureStats | null = null;

  /** A store over `table`'s features directory. */
  constructor(
    readonly table: ClipTable,
    opts: { readonly clipFrames: number; readonly cacheBytes?: number },
  ) {
    this.clipFrames = opts.clipFrames;
    this.featureDim = table.featureDim;
    this.cacheBytes = opts.cacheBytes ?? 2 ** 30;
  }

  /** Standardise every clip read from now on (drops the cache). */
  standardize(stats: FeatureStats): void {
    this.stats = stats;
    this.cache.clear();
    this.cached = 0;
  }

  /**
   * A clip's raw features [T, F], checked: every value finite. Throws an
   * `Error` naming the file (and the frame of a non-finite value).
   */
  async raw(clip: ClipRecord): Promise<Float32Array> {
    const file = featuresFile(this.table.dir, clip.id);
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(file);
    } catch (e) {
      throw new Error(`${file}: cannot read: ${describeError(e)}`);
    }
    const m = decodeNpy(bytes, file);
    if (E.isLeft(m)) throw new Error(m.left.message);
    const [t, f] = m.right.shape;
    if (t !== clip.frames || f !== this.featureDim) {
      throw new Error(
        `${file}: now shape (${t}, ${f}), was (${clip.frames}, ${this.featureDim}) when the ` +
          `dataset was checked: did it change during the run?`,
      );
    }
    const d = m.right.data;
    for (let i = 0; i < d.length; i++) {
      if (!Number.isFinite(d[i])) {
        throw new Error(
          `${file}: frame ${Math.floor(i / f)}, feature ${i % f} is ${
            d[i]
          }: features must be finite`,
        );
      }
    }
    return d;
  }

  /** A clip as the model reads it: [L, F], resampled and standardised. */
  async prepared(clip: ClipRecord): Promise<Float32Array> {
    const hit = this.cache.get(clip.id);
    if (hit !== undefined) return hit;
    const raw = await this.raw(clip);
    const l = this.clipFrames, f = this.featureDim;
    const out = new Float32Array(l * f);
    for (let i = 0; i < l; i++) {
      const src = resampleIndex(i, clip.frames, l) * f;
      out.set(raw.subarray(src, src + f), i * f);
    }
    if (this.stats !== null) {
      const { mean, std } = this.stats;
      for (let i = 0; i < out.length; i++) out[i] = (out[i] - mean[i % f]) / std[i % f];
    }
    if (this.cached + out.byteLength <= this.cacheBytes) {
      this.cache.set(clip.id, out);
      this.cached += out.byteLength;
    }
    return out;
  }

  /** Clips packed as [B, L, F] row-major. */
  async batch(clips: readonly ClipRecord[]): Promise<Float32Array> {
    const size = this.clipFrames * this.featureDim;
    const out = new Float32Array(clips.length * size);
    const parts = await Promise.all(clips.map((c) => this.prepared(c)));
    parts.forEach((p, i) => out.set(p, i * size));
    return out;
  }
}

/**
 * Per-feature mean and standard deviation over every frame of up to
 * `maxClips` clips (a seeded sample when there are more), in float64.
 * Features whose deviation is below 1e-6 get std 1 (left unscaled).
 *
 * @example
 * ```ts
 * import { ClipStore, featureStats } from "./smarthome_store.ts";
 * import { readClipTable } from "./smarthome.ts";
 * import { writeSampleDataset } from "./smarthome_sample.ts";
 * const dir = await Deno.makeTempDir();
 * await writeSampleDataset(dir, { clips: 30, dim: 4, classes: 3, seed: 2 });
 * const table = await readClipTable(dir);
 * if (table._tag === "Left") throw new Error(table.left.message);
 * const store = new ClipStore(table.right, { clipFrames: 8 });
 * const stats = await featureStats(store, table.right.clips, { maxClips: 10, seed: 1 });
 * console.log(stats.clips, stats.mean.length); // 10 4
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function featureStats(
  store: ClipStore,
  clips: readonly ClipRecord[],
  opts: { readonly maxClips: number; readonly seed: number },
): Promise<FeatureStats> {
  let sample = [...clips];
  if (sample.length > opts.maxClips) {
    shuffle(sample, createRng(opts.seed));
    sample = sample.slice(0, opts.maxClips);
  }
  const f = store.featureDim;
  const sum = new Float64Array(f), sq = new Float64Array(f);
  let n = 0;
  for (const c of sample) {
    const d = await store.raw(c);
    for (let i = 0; i < d.length; i++) {
      sum[i % f] += d[i];
      sq[i % f] += d[i] * d[i];
    }
    n += c.frames;
  }
  const mean = new Float32Array(f), std = new Float32Array(f);
  for (let k = 0; k < f; k++) {
    const m = sum[k] / n;
    const sd = Math.sqrt(Math.max(0, sq[k] / n - m * m));
    mean[k] = m;
    std[k] = sd < 1e-6 ? 1 : sd;
  }
  return { mean, std, clips: sample.length };
}

/**
 * How training batches are drawn. `classBalanced`: each draw picks a class
 * uniformly among those with training clips, then one of its clips
 * uniformly, so rare classes are seen as often as common ones (the
 * remedy for Smarthome's imbalance). `uniform`: each draw picks a training
 * clip uniformly. Both draw with replacement, from a seeded generator.
 *
 * @example
 * ```ts
 * import type { Balance } from "./smarthome_store.ts";
 * const b: Balance = "classBalanced";
 * ```
 */
export type Balance = "classBalanced" | "uniform";

/**
 * Draws `batchSize` training clips per call, as {@linkcode Balance} says.
 * Its whole state is `rng`, so a checkpointed generator state resumes the
 * same sequence.
 *
 * @example
 * ```ts
 * import { createRng } from "../loop/rng.ts";
 * import { drawBatch } from "./smarthome_store.ts";
 * const clips = [
 *   { id: "a", label: 0, subject: 3, camera: 1, frames: 9, line: 2 },
 *   { id: "b", label: 0, subject: 3, camera: 1, frames: 9, line: 3 },
 *   { id: "c", label: 1, subject: 3, camera: 1, frames: 9, line: 4 },
 * ];
 * const batch = drawBatch(clips, 2, { balance: "classBalanced", batchSize: 4, rng: createRng(1) });
 * console.log(batch.length); // 4
 * ```
 */
export function drawBatch(
  clips: readonly ClipRecord[],
  nClasses: number,
  opts: { readonly balance: Balance; readonly batchSize: number; readonly rng: Rng },
): ClipRecord[] {
  const out: ClipRecord[] = [];
  if (opts.balance === "uniform") {
    for (let i = 0; i < opts.batchSize; i++) out.push(clips[opts.rng.int(clips.length)]);
    return out;
  }
  const byClass: ClipRecord[][] = Array.from({ length: nClasses }, () => []);
  for (const c of clips) byClass[c.label].push(c);
  const present = byClass.filter((m) => m.length > 0);
  for (let i = 0; i < opts.batchSize; i++) {
    const members = present[opts.rng.int(present.length)];
    out.push(members[opts.rng.int(members.length)]);
  }
  return out;
}
