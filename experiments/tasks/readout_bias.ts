/**
 * Unigram initialisation of a language model's output bias.
 *
 * A fresh model predicts every word with probability ≈ 1/V (loss ln V ≈ 9.2
 * for PTB), and its first ~50 updates go to learning the unigram
 * distribution the training split gives away for free. Setting the output
 * bias to the words' log-frequencies starts training at the unigram model's
 * loss (≈ 6.6 on PTB) instead. The paper is silent on initialisation; on
 * `ptb-sweep --quick`'s CRT S = 70 member (440 k tokens, dropout 0) this
 * took valid ppl from 294 to 257 (see `QUICK` in presets.ts).
 *
 * Counts are add-one smoothed, so a word the split never holds still gets
 * a finite bias. For the adaptive softmax the bias is the exact
 * factorisation: shortlist words and each tail cluster's logit get their
 * log-probabilities in the head, and each word of a tail its log-probability
 * given the cluster; the composed distribution is the unigram one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { referenceCrt } from "../../spec/reference_specs.ts";
 * import { unigramBias } from "./readout_bias.ts";
 *
 * const model = { ...referenceCrt, vocabSize: 3 };
 * const b = unigramBias(model, Int32Array.from([0, 0, 1]));
 * // add-one counts 3, 2, 1 of 6
 * assert.ok(Math.abs(Math.exp(b.head[0]) - 3 / 6) < 1e-6);
 * assert.deepEqual(b.clusters, []);
 * ```
 *
 * @module
 */
import type { ModelSpec } from "../../spec/codecs.ts";
import { adaptiveGeometry } from "../../spec/adaptive.ts";
import type { Params } from "../../core/program.ts";
import { tf } from "../../ops/tf.ts";

/** Output-bias values: the head's, and each adaptive tail cluster's (empty for `lm`). */
export interface ReadoutBias {
  /** [V] for an `lm` readout, [c_1 + C] (shortlist, then one per tail cluster) for `adaptive`. */
  readonly head: Float32Array;
  /** Adaptive softmax only: [hi − lo] per tail cluster, log p(word | cluster). */
  readonly clusters: readonly Float32Array[];
}

/**
 * The unigram output bias of `model` for the words of `tokens` (ids in
 * [0, V); any other id throws, as it means the split and vocabulary disagree).
 * Classifier readouts have no word distribution: they throw.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { referenceCrt } from "../../spec/reference_specs.ts";
 * import { unigramBias } from "./readout_bias.ts";
 *
 * const model = {
 *   ...referenceCrt,
 *   vocabSize: 4,
 *   readout: { _tag: "adaptive", cutoffs: [2], divValue: 2 },
 * } as const;
 * const b = unigramBias(model, Int32Array.from([0, 0, 0, 1, 2, 3, 3, 3]));
 * // counts + 1 = 4, 2, 2, 4 of 12; the tail {2, 3} holds 6 of 12
 * assert.ok(Math.abs(Math.exp(b.head[2]) - 6 / 12) < 1e-6);
 * assert.ok(Math.abs(Math.exp(b.clusters[0][1]) - 4 / 6) < 1e-6);
 * ```
 */
export const unigramBias = (model: ModelSpec, tokens: Int32Array): ReadoutBias => {
  const readout = model.readout;
  if (readout._tag === "classifier") {
    throw new TypeError("a classifier readout has no word distribution to initialise from");
  }
  const v = model.vocabSize;
  const counts = new Float64Array(v).fill(1);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!(t >= 0 && t < v)) throw new RangeError(`token id ${t} at ${i} is outside [0, ${v})`);
    counts[t]++;
  }
  const total = tokens.length + v;
  if (readout._tag === "lm") {
    return { head: Float32Array.from(counts, (c) => Math.log(c / total)), clusters: [] };
  }
  const geom = adaptiveGeometry(readout, model);
  const head = new Float32Array(geom.shortlist + geom.tails.length);
  for (let w = 0; w < geom.shortlist; w++) head[w] = Math.log(counts[w] / total);
  const clusters = geom.tails.map((tail, i) => {
    let mass = 0;
    for (let w = tail.lo; w < tail.hi; w++) mass += counts[w];
    head[geom.shortlist + i] = Math.log(mass / total);
    return Float32Array.from(counts.subarray(tail.lo, tail.hi), (c) => Math.log(c / mass));
  });
  return { head, clusters };
};

/**
 * `params` with its output bias (and each tail cluster's) replaced by
 * `bias`; the replaced tensors are disposed, every other leaf is shared.
 * Throws when a shape disagrees.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../../ops/backend.ts";
 * import { compile } from "../../core/compile.ts";
 * import { referenceCrt } from "../../spec/reference_specs.ts";
 * import { unigramBias, withReadoutBias } from "./readout_bias.ts";
 *
 * await startBackend({ backend: "cpu" });
 * const model = { ...referenceCrt, vocabSize: 5, dModel: 8, nHeads: 2, dFF: 16, nLayers: 1 };
 * const program = compile({ ...model, memory: { ...model.memory, dMemory: 8 } });
 * if (program._tag === "Left") throw new Error(program.left.message);
 * const params = withReadoutBias(program.right.init(0), unigramBias(model, Int32Array.from([4, 4])));
 * assert.ok(params.head.b.arraySync() instanceof Array);
 * ```
 */
export const withReadoutBias = (params: Params, bias: ReadoutBias): Params => {
  const replace = (old: tf.Tensor, values: Float32Array, what: string): tf.Tensor => {
    if (old.size !== values.length) {
      throw new RangeError(`${what}: ${values.length} values for a bias of ${old.size}`);
    }
    const next = tf.tensor(values, old.shape, "float32");
    old.dispose();
    return next;
  };
  const clusters = params.head.clusters;
  if ((clusters?.length ?? 0) !== bias.clusters.length) {
    throw new RangeError(
      `head.clusters: ${bias.clusters.length} biases for ${clusters?.length ?? 0} clusters`,
    );
  }
  return {
    ...params,
    head: {
      ...params.head,
      b: replace(params.head.b, bias.head, "head.b"),
      ...(clusters === undefined ? {} : {
        clusters: clusters.map((c, i) => ({
          ...c,
          b: replace(c.b, bias.clusters[i], `head.clusters[${i}].b`),
        })),
      }),
    },
  };
};
