/**
 * The adaptive softmax readout (Grave et al. 2017, "Efficient softmax
 * approximation for GPUs"), as Transformer-XL uses it on WikiText-103:
 * its cluster geometry, parameter layout, the two ways it is computed, and
 * the host-side plan that gathers each tail cluster's rows.
 *
 * Vocabulary ids are assumed sorted by decreasing frequency (the WikiText-103
 * reader does so). With cutoffs c_1 < … < c_C the head is a softmax over the
 * shortlist [0, c_1) plus one logit per tail cluster; tail cluster i holds
 * ids [c_i, c_{i+1}) (the last runs to V) and computes
 * softmax(h P_i W_i + b_i) with P_i [D, d_i], d_i = floor(D / divValue^i).
 * Paper (Grave et al.): log p(w) = log p_head(cluster of w) + log p_i(w | i);
 * a shortlist word's log-probability is its head log-probability.
 *
 * Two computations, one definition:
 * - {@linkcode adaptiveLogProbs}: the full distribution [N, V], every cluster
 *   for every row (what `forward` and streaming return). Costs N·D·(c_1 + C)
 *   + N·Σ_i (D·d_i + d_i·V_i) multiply-adds.
 * - {@linkcode adaptiveLoss}: the mean NLL of given targets. The head runs
 *   for every row; tail cluster i runs only for the rows whose target lies
 *   in it, gathered by index. Static shapes need a fixed row count per
 *   graph, so the count is rounded up to one of a few capacities
 *   ({@linkcode clusterCapacity}) and the padding rows weigh 0. The plan of
 *   rows is computed on the host from the targets
 *   ({@linkcode planAdaptiveTargets}) and fed to the graph as data.
 *
 * @example The full distribution is normalised
 * ```ts
 * import assert from "node:assert/strict";
 * import { adaptiveGeometry, adaptiveLogProbs } from "./adaptive.ts";
 * import { Ops } from "./ops_builder.ts";
 * import { RefBackend, refTensor } from "../ops/reference.ts";
 *
 * const geom = adaptiveGeometry({ _tag: "adaptive", cutoffs: [3, 6], divValue: 2 }, {
 *   vocabSize: 9,
 *   dModel: 4,
 * });
 * assert.deepEqual(geom.tails.map((t) => t.dim), [2, 1]);
 * const o = new Ops(new RefBackend({ precision: "float64" }));
 * const fill = (shape: number[], k: number) =>
 *   refTensor(shape, Array.from({ length: shape[0] * (shape[1] ?? 1) }, (_, i) => Math.sin(i * k)));
 * const head = {
 *   w: fill([4, 5], 1),
 *   b: fill([5], 2),
 *   clusters: geom.tails.map((t, i) => ({
 *     proj: fill([4, t.dim], 3 + i),
 *     w: fill([t.dim, t.hi - t.lo], 5 + i),
 *     b: fill([t.hi - t.lo], 7 + i),
 *   })),
 * };
 * const lp = adaptiveLogProbs(o, head, geom, fill([2, 4], 9)); // [N = 2, V = 9]
 * const total = Array.from(lp.data.subarray(0, 9)).reduce((s, v) => s + Math.exp(v), 0);
 * assert.ok(Math.abs(total - 1) < 1e-12);
 * ```
 *
 * @module
 */
import type { AdaptiveReadout } from "./types.ts";
import type { DType, Shape } from "./ops.ts";
import type { Ops } from "./ops_builder.ts";
import { param, type ParamSpec } from "./params.ts";

/**
 * One tail cluster: the ids [lo, hi) and the width its rows are projected to.
 *
 * @example
 * ```ts
 * import type { TailCluster } from "./adaptive.ts";
 * const size = (c: TailCluster): number => c.hi - c.lo;
 * console.log(size({ lo: 20000, hi: 40000, dim: 64 })); // 20000
 * ```
 */
export interface TailCluster {
  /** First id of the cluster. */
  readonly lo: number;
  /** One past its last id. */
  readonly hi: number;
  /** d_i = floor(D / divValue^i): the width of the projection P_i [D, d_i]. */
  readonly dim: number;
}

/**
 * The shape of an adaptive softmax: shortlist size, tail clusters, V and D.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adaptiveGeometry } from "./adaptive.ts";
 *
 * const g = adaptiveGeometry({ _tag: "adaptive", cutoffs: [20000, 40000, 200000], divValue: 4 }, {
 *   vocabSize: 267735,
 *   dModel: 256,
 * });
 * assert.equal(g.shortlist, 20000);
 * assert.deepEqual(g.tails.map((t) => [t.lo, t.hi, t.dim]), [
 *   [20000, 40000, 64],
 *   [40000, 200000, 16],
 *   [200000, 267735, 4],
 * ]);
 * ```
 */
export interface AdaptiveGeometry {
  /** Ids below this are in the head: c_1, or V without cutoffs. */
  readonly shortlist: number;
  /** The tail clusters in id order. */
  readonly tails: readonly TailCluster[];
  /** Vocabulary size V. */
  readonly vocabSize: number;
  /** Model width D (the rows' width). */
  readonly dModel: number;
}

/**
 * The geometry of an adaptive readout for a model of the given sizes. Trusts
 * a decoded spec (`checkModelSpec` has checked the cutoffs and widths).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adaptiveGeometry } from "./adaptive.ts";
 *
 * const full = adaptiveGeometry({ _tag: "adaptive", cutoffs: [], divValue: 4 }, {
 *   vocabSize: 100,
 *   dModel: 8,
 * });
 * assert.deepEqual([full.shortlist, full.tails.length], [100, 0]); // the full softmax
 * ```
 */
export const adaptiveGeometry = (
  readout: AdaptiveReadout,
  sizes: { readonly vocabSize: number; readonly dModel: number },
): AdaptiveGeometry => {
  const { vocabSize, dModel } = sizes;
  const ends = [...readout.cutoffs, vocabSize];
  const tails = readout.cutoffs.map((lo, i) => ({
    lo,
    hi: ends[i + 1],
    dim: Math.floor(dModel / Math.pow(readout.divValue, i + 1)),
  }));
  return { shortlist: ends[0], tails, vocabSize, dModel };
};

/**
 * The parameters of one tail cluster.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { paramLayout } from "./layout.ts";
 * import { referenceCrt } from "./reference_specs.ts";
 *
 * const readout = { _tag: "adaptive", cutoffs: [2000, 6000], divValue: 4 } as const;
 * const head = paramLayout({ ...referenceCrt, readout }).head;
 * assert.deepEqual(head.clusters?.[1].proj.shape, [256, 16]);
 * assert.deepEqual(head.clusters?.[1].w.shape, [16, 4000]);
 * ```
 */
export interface ClusterParams<T> {
  /** Projection P_i of the rows, [D, d_i] (no bias). */
  readonly proj: T;
  /** Output matrix W_i over the cluster's words, [d_i, V_i]. */
  readonly w: T;
  /** Output bias, [V_i]. */
  readonly b: T;
}

/**
 * The whole adaptive head: the head softmax's matrix and bias over the
 * shortlist plus one logit per tail cluster, and each cluster's parameters.
 * In a model's parameter tree these are `head.w`, `head.b` and
 * `head.clusters[i]`.
 *
 * @example
 * ```ts
 * import type { AdaptiveHeadParams } from "./adaptive.ts";
 * const tails = (p: AdaptiveHeadParams<unknown>): number => p.clusters.length;
 * ```
 */
export interface AdaptiveHeadParams<T> {
  /** Head matrix [D, c_1 + C]. */
  readonly w: T;
  /** Head bias [c_1 + C]. */
  readonly b: T;
  /** One entry per tail cluster. */
  readonly clusters: readonly ClusterParams<T>[];
}

/**
 * Parameter layout of an adaptive head; matrices start N(0, std²), biases 0.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adaptiveGeometry, adaptiveHeadLayout } from "./adaptive.ts";
 *
 * const g = adaptiveGeometry({ _tag: "adaptive", cutoffs: [10], divValue: 2 }, { vocabSize: 30, dModel: 8 });
 * const layout = adaptiveHeadLayout(g, 0.02);
 * assert.deepEqual(layout.w.shape, [8, 11]); // 10 shortlist words + 1 cluster logit
 * assert.deepEqual(layout.clusters[0].w.shape, [4, 20]);
 * ```
 */
export const adaptiveHeadLayout = (
  geom: AdaptiveGeometry,
  std: number,
): AdaptiveHeadParams<ParamSpec> => {
  const d = geom.dModel, headOut = geom.shortlist + geom.tails.length;
  const normal = (shape: Shape) => param(shape, { _tag: "normal", std });
  const zeros = (n: number) => param([n], { _tag: "zeros" });
  return {
    w: normal([d, headOut]),
    b: zeros(headOut),
    clusters: geom.tails.map((t) => ({
      proj: normal([d, t.dim]),
      w: normal([t.dim, t.hi - t.lo]),
      b: zeros(t.hi - t.lo),
    })),
  };
};

/**
 * log-probabilities of every word for every row: [N, V] from rows h [N, D].
 * Every cluster is computed for every row.
 *
 * @example
 * ```ts
 * import { adaptiveLogProbs } from "./adaptive.ts";
 * // Traced by spec/stages.ts for a forward graph; see the module example for a run.
 * void adaptiveLogProbs;
 * ```
 */
export const adaptiveLogProbs = <T>(
  o: Ops<T>,
  p: AdaptiveHeadParams<T>,
  geom: AdaptiveGeometry,
  h: T, // [N, D]
): T => {
  const n = o.shape(h)[0];
  const head = o.logSoftmax(o.add(o.matmul(h, p.w), p.b)); // [N, c_1 + C]
  if (geom.tails.length === 0) return head; // [N, V]
  const parts = [o.slice(head, [0, 0], [n, geom.shortlist])]; // [N, c_1]
  geom.tails.forEach((_tail, i) => {
    const c = p.clusters[i];
    const q = o.at(`clusters[${i}]`);
    const local = q.logSoftmax(q.add(q.matmul(q.matmul(h, c.proj), c.w), c.b)); // [N, V_i]
    const ofCluster = o.slice(head, [0, geom.shortlist + i], [n, 1]); // [N, 1]
    parts.push(q.add(local, ofCluster)); // [N, V_i]
  });
  return o.concat(parts, 1); // [N, V]
};

/**
 * The per-segment data the loss reads besides the rows: the head's target of
 * each row, and per tail cluster the gathered rows, their targets inside the
 * cluster and their weights (1 for a real row, 0 for padding).
 *
 * @example
 * ```ts
 * import type { AdaptiveTargets } from "./adaptive.ts";
 * const padded = (t: AdaptiveTargets<{ shape: readonly number[] }>) => t.clusters.map((c) => c.rows.shape[0]);
 * ```
 */
export interface AdaptiveTargets<T> {
  /** [N] int32: the target id if in the shortlist, else c_1 + (its cluster's index). */
  readonly head: T;
  /** One entry per tail cluster. */
  readonly clusters: readonly {
    /** [K_i] int32: rows (into the N rows) whose target is in the cluster; padding repeats row 0. */
    readonly rows: T;
    /** [K_i] int32: those targets minus the cluster's first id; 0 for padding. */
    readonly targets: T;
    /** [K_i] float32: 1 for a gathered row, 0 for padding. */
    readonly weights: T;
  }[];
}

/**
 * Mean NLL (a scalar) of the targets of rows h [N, D]: the head for every
 * row, each tail cluster only for its gathered rows. Equals the mean over
 * rows of −{@linkcode adaptiveLogProbs} at each row's target.
 *
 * @example
 * ```ts
 * import { adaptiveLoss } from "./adaptive.ts";
 * // Traced by spec/stages.ts when targets are given; tests/adaptive_test.ts runs it.
 * void adaptiveLoss;
 * ```
 */
export const adaptiveLoss = <T>(
  o: Ops<T>,
  p: AdaptiveHeadParams<T>,
  geom: AdaptiveGeometry,
  h: T, // [N, D]
  targets: AdaptiveTargets<T>,
): T => {
  const n = o.shape(h)[0];
  // Head: −log p_head(shortlist word or cluster) for every row.
  const headNll = o.crossEntropy(o.add(o.matmul(h, p.w), p.b), targets.head); // [N]
  let total = o.mean(headNll, 0); // []
  geom.tails.forEach((_t, i) => {
    const c = p.clusters[i], tg = targets.clusters[i];
    const q = o.at(`clusters[${i}]`);
    const k = q.shape(tg.rows)[0];
    const x = q.embedding(h, tg.rows); // [K_i, D]: the gathered rows
    const z = q.add(q.matmul(q.matmul(x, c.proj), c.w), c.b); // [K_i, V_i]
    const nll = q.mul(q.crossEntropy(z, tg.targets), tg.weights); // [K_i], 0 on padding
    // Summed over the cluster's rows, divided by all N rows: a mean over the segment.
    total = o.add(total, q.scale(q.mean(nll, 0), k / n));
  });
  return total;
};

/**
 * Rows a tail cluster is computed for in a segment of `n` rows when `count`
 * of their targets lie in it: the count rounded up to a multiple of
 * max(8, 2^(⌊log₂ count⌋ − 2)) — four sizes per octave, so padding is at
 * most 25 % above 32 rows and 7 rows below — and at most `n`. Never 0: a
 * cluster stays in the graph (with one padded row) so its parameters keep a
 * (zero) gradient.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { clusterCapacity } from "./adaptive.ts";
 *
 * assert.deepEqual([0, 1, 8, 9, 49, 100, 700].map((k) => clusterCapacity(k, 700)), [
 *   8, 8, 8, 16, 56, 112, 700,
 * ]);
 * ```
 */
export const clusterCapacity = (count: number, n: number): number => {
  const c = Math.max(count, 1);
  const step = Math.max(8, 2 ** (Math.floor(Math.log2(c)) - 2));
  return Math.min(Math.ceil(c / step) * step, n);
};

/**
 * The host-side gather plan of one segment: {@linkcode AdaptiveTargets} as
 * typed arrays, and the capacity of each tail cluster (part of the graph's
 * shape).
 *
 * @example
 * ```ts
 * import type { AdaptivePlan } from "./adaptive.ts";
 * const waste = (p: AdaptivePlan) => p.capacities.reduce((s, c, i) => s + c - p.counts[i], 0);
 * ```
 */
export interface AdaptivePlan {
  /** Rows computed per tail cluster (≥ counts). */
  readonly capacities: readonly number[];
  /** Rows whose target lies in each tail cluster. */
  readonly counts: readonly number[];
  /** [N] head targets. */
  readonly head: Int32Array;
  /** Per tail cluster: rows, local targets and weights, each of its capacity. */
  readonly clusters: readonly {
    readonly rows: Int32Array;
    readonly targets: Int32Array;
    readonly weights: Float32Array;
  }[];
}

/**
 * Plans the gather of one segment's targets (row-major [N], as the rows are
 * flattened): head targets, and per tail cluster the rows in it, padded to
 * {@linkcode clusterCapacity} (or to `capacities` when given, e.g. to trace
 * the largest graph). Throws a RangeError naming the row of a target
 * outside [0, V), or when a given capacity is too small.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adaptiveGeometry, planAdaptiveTargets } from "./adaptive.ts";
 *
 * const g = adaptiveGeometry({ _tag: "adaptive", cutoffs: [4, 8], divValue: 2 }, { vocabSize: 12, dModel: 8 });
 * const plan = planAdaptiveTargets(g, Int32Array.of(1, 5, 9, 6, 3));
 * assert.deepEqual([...plan.head], [1, 4, 5, 4, 3]); // shortlist ids, or 4 + cluster index
 * assert.deepEqual(plan.counts, [2, 1]);
 * assert.deepEqual([...plan.clusters[0].rows.subarray(0, 2)], [1, 3]); // rows with targets 5 and 6
 * assert.deepEqual([...plan.clusters[0].targets.subarray(0, 2)], [1, 2]); // 5 − 4, 6 − 4
 * assert.equal(plan.capacities[0], 5); // rounded up to 8, but a segment has only 5 rows
 * ```
 */
export const planAdaptiveTargets = (
  geom: AdaptiveGeometry,
  targets: Int32Array,
  opts: { readonly capacities?: readonly number[] } = {},
): AdaptivePlan => {
  const n = targets.length;
  const nTails = geom.tails.length;
  const head = new Int32Array(n);
  const cluster = new Int32Array(n); // tail index + 1, or 0 for the shortlist
  const counts = new Array<number>(nTails).fill(0);
  for (let r = 0; r < n; r++) {
    const t = targets[r];
    if (!(Number.isInteger(t) && t >= 0 && t < geom.vocabSize)) {
      throw new RangeError(
        `adaptive softmax: target ${t} of row ${r} is outside [0, ${geom.vocabSize})`,
      );
    }
    if (t < geom.shortlist) {
      head[r] = t;
      continue;
    }
    let i = 0;
    while (t >= geom.tails[i].hi) i++;
    head[r] = geom.shortlist + i;
    cluster[r] = i + 1;
    counts[i]++;
  }
  const capacities = geom.tails.map((_, i) => {
    const given = opts.capacities?.[i];
    if (given === undefined) return clusterCapacity(counts[i], n);
    if (given < Math.max(counts[i], 1)) {
      throw new RangeError(
        `adaptive softmax: capacity ${given} of tail cluster ${i} is below its ${counts[i]} rows`,
      );
    }
    return given;
  });
  const clusters = geom.tails.map((t, i) => {
    const rows = new Int32Array(capacities[i]);
    const local = new Int32Array(capacities[i]);
    const weights = new Float32Array(capacities[i]);
    let k = 0;
    for (let r = 0; r < n; r++) {
      if (cluster[r] !== i + 1) continue;
      rows[k] = r;
      local[k] = targets[r] - t.lo;
      weights[k] = 1;
      k++;
    }
    return { rows, targets: local, weights };
  });
  return { capacities, counts, head, clusters };
};

/**
 * Names, shapes and dtypes of the graph inputs that carry
 * {@linkcode AdaptiveTargets} for a segment of `n` rows: `adaptive:head`
 * and `adaptive:cluster[i].rows|targets|weights`. Data inputs: fed from a
 * plan, never trained.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adaptiveGeometry, adaptiveInputs } from "./adaptive.ts";
 *
 * const g = adaptiveGeometry({ _tag: "adaptive", cutoffs: [4], divValue: 2 }, { vocabSize: 12, dModel: 8 });
 * const inputs = adaptiveInputs(g, 10, [8]);
 * assert.deepEqual(inputs.map((i) => i.name), [
 *   "adaptive:head",
 *   "adaptive:cluster[0].rows",
 *   "adaptive:cluster[0].targets",
 *   "adaptive:cluster[0].weights",
 * ]);
 * ```
 */
export const adaptiveInputs = (
  geom: AdaptiveGeometry,
  n: number,
  capacities: readonly number[],
): { name: string; shape: Shape; dtype: DType }[] => [
  { name: "adaptive:head", shape: [n], dtype: "int32" },
  ...geom.tails.flatMap((_, i) => {
    const k = capacities[i];
    return [
      { name: `adaptive:cluster[${i}].rows`, shape: [k], dtype: "int32" as const },
      { name: `adaptive:cluster[${i}].targets`, shape: [k], dtype: "int32" as const },
      { name: `adaptive:cluster[${i}].weights`, shape: [k], dtype: "float32" as const },
    ];
  }),
];

/**
 * A plan's arrays by graph input name (see {@linkcode adaptiveInputs}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adaptiveFeeds, adaptiveGeometry, planAdaptiveTargets } from "./adaptive.ts";
 *
 * const g = adaptiveGeometry({ _tag: "adaptive", cutoffs: [4], divValue: 2 }, { vocabSize: 12, dModel: 8 });
 * const feeds = adaptiveFeeds(planAdaptiveTargets(g, Int32Array.of(0, 7)));
 * assert.deepEqual([...feeds["adaptive:cluster[0].rows"]], [1, 0]); // row 1, then one padding row
 * ```
 */
export const adaptiveFeeds = (
  plan: AdaptivePlan,
): Record<string, Int32Array | Float32Array> => {
  const out: Record<string, Int32Array | Float32Array> = { "adaptive:head": plan.head };
  plan.clusters.forEach((c, i) => {
    out[`adaptive:cluster[${i}].rows`] = c.rows;
    out[`adaptive:cluster[${i}].targets`] = c.targets;
    out[`adaptive:cluster[${i}].weights`] = c.weights;
  });
  return out;
};

/**
 * FLOPs (2 per multiply-add) of each tail cluster per row it is computed
 * for: forward 2·(D·d_i + d_i·V_i), and training 3× that (both products
 * need the gradient of both inputs). The head is not included.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adaptiveGeometry, tailFlopsPerRow } from "./adaptive.ts";
 *
 * const g = adaptiveGeometry({ _tag: "adaptive", cutoffs: [20000, 40000, 200000], divValue: 4 }, {
 *   vocabSize: 267735,
 *   dModel: 256,
 * });
 * assert.deepEqual(tailFlopsPerRow(g).map((f) => f.forward), [
 *   2 * (256 * 64 + 64 * 20000),
 *   2 * (256 * 16 + 16 * 160000),
 *   2 * (256 * 4 + 4 * 67735),
 * ]);
 * ```
 */
export const tailFlopsPerRow = (
  geom: AdaptiveGeometry,
): { readonly forward: number; readonly train: number }[] =>
  geom.tails.map((t) => {
    const forward = 2 * (geom.dModel * t.dim + t.dim * (t.hi - t.lo));
    return { forward, train: 3 * forward };
  });
