/**
 * Clip classification metrics and evaluation: the confusion matrix, overall
 * accuracy, mean per-class accuracy (Toyota Smarthome's headline metric,
 * which weighs every class equally however rare), per-class accuracy, the
 * confusion matrix as CSV, and the evaluation of a program on clips.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { confusionMatrix, scoreConfusion } from "./classification.ts";
 *
 * // 3 clips of class 0 (all right), 1 of class 1 (wrong): accuracy 3/4, per-class mean (1 + 0)/2.
 * const m = confusionMatrix(Int32Array.of(0, 0, 0, 1), Int32Array.of(0, 0, 0, 0), 2);
 * const s = scoreConfusion(m, ["Walk", "Sitdown"]);
 * assert.equal(s.accuracy, 0.75);
 * assert.equal(s.meanClassAccuracy, 0.5);
 * ```
 *
 * @module
 */
import type { Params, Program } from "../../core/program.ts";
import { tf } from "../../ops/tf.ts";
import type { ClipRecord } from "../data/smarthome.ts";
import type { ClipStore } from "../data/smarthome_store.ts";

/**
 * Counts [C][C]: `m[t][p]` clips of true class t predicted as p.
 *
 * @example
 * ```ts
 * import type { Confusion } from "./classification.ts";
 * const perfect: Confusion = [[3, 0], [0, 2]];
 * ```
 */
export type Confusion = readonly (readonly number[])[];

/**
 * The confusion matrix of predictions against true labels, both in
 * [0, nClasses). Throws a `RangeError` on a label outside it or on arrays of
 * different lengths.
 *
 * @example
 * ```ts
 * import { confusionMatrix } from "./classification.ts";
 * console.log(confusionMatrix(Int32Array.of(0, 1, 1), Int32Array.of(0, 0, 1), 2)); // [ [ 1, 0 ], [ 1, 1 ] ]
 * ```
 */
export function confusionMatrix(
  truth: ArrayLike<number>,
  predicted: ArrayLike<number>,
  nClasses: number,
): number[][] {
  if (truth.length !== predicted.length) {
    throw new RangeError(
      `confusionMatrix: ${truth.length} labels but ${predicted.length} predictions`,
    );
  }
  const m = Array.from({ length: nClasses }, () => new Array<number>(nClasses).fill(0));
  for (let i = 0; i < truth.length; i++) {
    const t = truth[i], p = predicted[i];
    if (!(t >= 0 && t < nClasses && p >= 0 && p < nClasses)) {
      throw new RangeError(
        `confusionMatrix: label ${t} or prediction ${p} not in [0, ${nClasses})`,
      );
    }
    m[t][p]++;
  }
  return m;
}

/**
 * One class's line of a {@linkcode ClassificationScore}.
 *
 * @example
 * ```ts
 * import type { ClassScore } from "./classification.ts";
 * const walk: ClassScore = { name: "Walk", clips: 40, correct: 36, accuracy: 0.9 };
 * ```
 */
export interface ClassScore {
  /** Class name. */
  readonly name: string;
  /** Clips of this class in the set. */
  readonly clips: number;
  /** Of them, predicted right. */
  readonly correct: number;
  /** correct / clips, or `null` when the set has no clip of the class. */
  readonly accuracy: number | null;
}

/**
 * Accuracy figures of a confusion matrix.
 *
 * @example
 * ```ts
 * import type { ClassificationScore } from "./classification.ts";
 * const line = (s: ClassificationScore) =>
 *   `mean per-class ${(100 * s.meanClassAccuracy).toFixed(1)} %, overall ${(100 * s.accuracy).toFixed(1)} %`;
 * ```
 */
export interface ClassificationScore {
  /** Clips scored. */
  readonly clips: number;
  /** Right predictions over clips. */
  readonly accuracy: number;
  /**
   * Mean over classes of each class's accuracy, counting only the classes
   * with at least one clip in the set (the others have no accuracy).
   */
  readonly meanClassAccuracy: number;
  /** Classes that had clips (the mean's denominator). */
  readonly classesScored: number;
  /** Every class, in label order. */
  readonly perClass: readonly ClassScore[];
}

/**
 * Overall accuracy, mean per-class accuracy and per-class accuracy of a
 * confusion matrix. Throws a `RangeError` when `classes` does not match its
 * size or it is empty.
 *
 * @example
 * ```ts
 * import { scoreConfusion } from "./classification.ts";
 * const s = scoreConfusion([[8, 2], [1, 1]], ["Walk", "Sitdown"]);
 * console.log(s.accuracy, s.meanClassAccuracy); // 0.75 0.65
 * ```
 */
export function scoreConfusion(m: Confusion, classes: readonly string[]): ClassificationScore {
  if (m.length !== classes.length || m.some((r) => r.length !== classes.length)) {
    throw new RangeError(
      `scoreConfusion: a ${m.length}-row matrix for ${classes.length} class names`,
    );
  }
  let clips = 0, correct = 0, sumAcc = 0, scored = 0;
  const perClass = classes.map((name, t) => {
    const n = m[t].reduce((a, b) => a + b, 0);
    const ok = m[t][t];
    clips += n;
    correct += ok;
    if (n > 0) {
      sumAcc += ok / n;
      scored++;
    }
    return { name, clips: n, correct: ok, accuracy: n > 0 ? ok / n : null };
  });
  if (clips === 0) throw new RangeError("scoreConfusion: no clips");
  return {
    clips,
    accuracy: correct / clips,
    meanClassAccuracy: sumAcc / scored,
    classesScored: scored,
    perClass,
  };
}

/**
 * The confusion matrix as CSV: a header `true\predicted,<class>,...`, then
 * one row per true class with its counts. Class names are quoted when they
 * hold a comma or a quote.
 *
 * @example
 * ```ts
 * import { confusionCsv } from "./classification.ts";
 * console.log(confusionCsv([[2, 1], [0, 3]], ["Walk", "Sitdown"]));
 * // true\predicted,Walk,Sitdown
 * // Walk,2,1
 * // Sitdown,0,3
 * ```
 */
export function confusionCsv(m: Confusion, classes: readonly string[]): string {
  const cell = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  const lines = [["true\\predicted", ...classes].map(cell).join(",")];
  m.forEach((row, t) => lines.push([cell(classes[t]), ...row.map(String)].join(",")));
  return lines.join("\n") + "\n";
}

/**
 * What {@linkcode predictClips} measured.
 *
 * @example
 * ```ts
 * import type { ClipPredictions } from "./classification.ts";
 * const errors = (p: ClipPredictions) => p.predicted.filter((c, i) => c !== p.truth[i]).length;
 * ```
 */
export interface ClipPredictions {
  /** True labels, in the order of the clips given. */
  readonly truth: Int32Array;
  /** Argmax of the logits. */
  readonly predicted: Int32Array;
  /** Mean negative log-likelihood of the true labels, in nats. */
  readonly loss: number;
  /** Wall-clock seconds. */
  readonly seconds: number;
}

/**
 * Runs a classifier program on clips in evaluation mode (no dropout), each
 * clip from a fresh state, `batchSize` clips at a time: the frames [B, L, F]
 * go through `forward` segment by segment with the memory carried, and the
 * logits of the last segment [B, C] are the prediction. Resolves to `null`
 * only when `signal` aborts. Leaves no tensors behind.
 *
 * @example
 * ```ts
 * import type { Params, Program } from "../../core/program.ts";
 * import { confusionMatrix, predictClips, scoreConfusion } from "./classification.ts";
 * import type { ClipRecord } from "../data/smarthome.ts";
 * import type { ClipStore } from "../data/smarthome_store.ts";
 *
 * async function meanClassAccuracy(
 *   program: Program, params: Params, store: ClipStore, clips: ClipRecord[], classes: string[],
 * ): Promise<number> {
 *   const p = await predictClips(program, params, store, clips, { batchSize: 16 });
 *   if (p === null) return NaN;
 *   return scoreConfusion(confusionMatrix(p.truth, p.predicted, classes.length), classes)
 *     .meanClassAccuracy;
 * }
 * ```
 */
export async function predictClips(
  program: Program,
  params: Params,
  store: ClipStore,
  clips: readonly ClipRecord[],
  opts: {
    readonly batchSize: number;
    /** Called after each batch with clips done and in all. */
    readonly onBatch?: (done: number, total: number) => void;
    /** Checked between batches. */
    readonly signal?: AbortSignal;
  },
): Promise<ClipPredictions | null> {
  const started = performance.now();
  const truth = Int32Array.from(clips, (c) => c.label);
  const predicted = new Int32Array(clips.length);
  const l = store.clipFrames, f = store.featureDim;
  let nll = 0;
  for (let start = 0; start < clips.length; start += opts.batchSize) {
    if (opts.signal?.aborted) return null;
    const part = clips.slice(start, start + opts.batchSize);
    const b = part.length;
    const frames = await store.batch(part);
    const logits = tf.tidy(() => {
      const x = tf.tensor3d(frames, [b, l, f], "float32");
      const out = program.forward(params, program.initState(b), x);
      program.disposeState(out.state);
      return out.logits; // [B, C]
    });
    const values = await logits.data();
    const c = logits.shape[1]!;
    logits.dispose();
    for (let i = 0; i < b; i++) {
      const row = values.subarray(i * c, (i + 1) * c);
      let best = 0, max = -Infinity;
      for (let k = 0; k < c; k++) {
        if (row[k] > max) {
          max = row[k];
          best = k;
        }
      }
      let z = 0;
      for (let k = 0; k < c; k++) z += Math.exp(row[k] - max);
      nll += Math.log(z) + max - row[truth[start + i]];
      predicted[start + i] = best;
    }
    opts.onBatch?.(start + b, clips.length);
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  return {
    truth,
    predicted,
    loss: nll / Math.max(1, clips.length),
    seconds: (performance.now() - started) / 1000,
  };
}
