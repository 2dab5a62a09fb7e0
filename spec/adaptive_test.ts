import assert from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { RefBackend, type RefTensor, refTensor } from "../ops/reference.ts";
import {
  adaptiveFeeds,
  adaptiveGeometry,
  adaptiveHeadLayout,
  type AdaptiveHeadParams,
  adaptiveInputs,
  adaptiveLogProbs,
  adaptiveLoss,
  clusterCapacity,
  planAdaptiveTargets,
} from "./adaptive.ts";
import { decodeModelSpec } from "./codecs.ts";
import { referenceCrt } from "./reference_specs.ts";
import type { AdaptiveReadout } from "./types.ts";
import { Ops } from "./ops_builder.ts";

const o = new Ops(new RefBackend({ precision: "float64" }));

/** Deterministic values in [−scale, scale). */
const values = (n: number, seed: number, scale = 1): number[] => {
  let s = seed >>> 0 || 1;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return scale * (2 * (s / 4294967296) - 1);
  });
};

const tensor = (shape: number[], seed: number, scale = 1): RefTensor =>
  refTensor(shape, values(shape.reduce((a, b) => a * b, 1), seed, scale), { precision: "float64" });

/** Random head parameters of the given geometry (logits of order `scale`). */
const headOf = (readout: AdaptiveReadout, v: number, d: number, scale = 1) => {
  const geom = adaptiveGeometry(readout, { vocabSize: v, dModel: d });
  const layout = adaptiveHeadLayout(geom, 0.02);
  let seed = 1;
  const p: AdaptiveHeadParams<RefTensor> = {
    w: tensor([...layout.w.shape], seed++, scale),
    b: tensor([...layout.b.shape], seed++, scale),
    clusters: layout.clusters.map((c) => ({
      proj: tensor([...c.proj.shape], seed++, scale),
      w: tensor([...c.w.shape], seed++, scale),
      b: tensor([...c.b.shape], seed++, scale),
    })),
  };
  return { geom, p };
};

/** The loss of `targets` through the gather plan, as a graph would compute it. */
const gatheredLoss = (
  geom: ReturnType<typeof adaptiveGeometry>,
  p: AdaptiveHeadParams<RefTensor>,
  h: RefTensor,
  targets: Int32Array,
  capacities?: number[],
): number => {
  const plan = planAdaptiveTargets(geom, targets, capacities === undefined ? {} : { capacities });
  const feeds = adaptiveFeeds(plan);
  const t = (name: string) => {
    const data = feeds[name];
    return refTensor([data.length], data, {
      dtype: data instanceof Int32Array ? "int32" : "float32",
      precision: "float64",
    });
  };
  const loss = adaptiveLoss(o, p, geom, h, {
    head: t("adaptive:head"),
    clusters: geom.tails.map((_, i) => ({
      rows: t(`adaptive:cluster[${i}].rows`),
      targets: t(`adaptive:cluster[${i}].targets`),
      weights: t(`adaptive:cluster[${i}].weights`),
    })),
  });
  return loss.data[0];
};

Deno.test("adaptiveGeometry: clusters between the cutoffs, widths D / divValue^i rounded down", () => {
  const g = adaptiveGeometry({ _tag: "adaptive", cutoffs: [10, 30, 90], divValue: 3 }, {
    vocabSize: 100,
    dModel: 40,
  });
  assert.equal(g.shortlist, 10);
  assert.deepEqual(g.tails, [
    { lo: 10, hi: 30, dim: 13 },
    { lo: 30, hi: 90, dim: 4 },
    { lo: 90, hi: 100, dim: 1 },
  ]);
});

Deno.test("adaptiveLogProbs: every row is a distribution over the whole vocabulary", () => {
  for (const cutoffs of [[], [4], [3, 7], [1, 2, 11]]) {
    const { geom, p } = headOf({ _tag: "adaptive", cutoffs, divValue: 2 }, 12, 8, 2);
    const lp = adaptiveLogProbs(o, p, geom, tensor([5, 8], 99, 2));
    assert.deepEqual(lp.shape, [5, 12]);
    for (let r = 0; r < 5; r++) {
      const row = Array.from(lp.data.subarray(r * 12, r * 12 + 12));
      const lse = Math.log(row.reduce((s, v) => s + Math.exp(v), 0));
      assert.ok(Math.abs(lse) < 1e-12, `cutoffs [${cutoffs}], row ${r}: logsumexp ${lse}`);
    }
  }
});

Deno.test("adaptiveLogProbs: without cutoffs it is log softmax(h W + b), the full softmax", () => {
  const { geom, p } = headOf({ _tag: "adaptive", cutoffs: [], divValue: 4 }, 9, 6, 3);
  const h = tensor([4, 6], 5);
  const lp = adaptiveLogProbs(o, p, geom, h);
  const full = o.logSoftmax(o.add(o.matmul(h, p.w), p.b));
  assert.deepEqual(Array.from(lp.data), Array.from(full.data));
});

Deno.test("adaptiveLogProbs: a tail word's log-probability is its cluster's head log-probability plus its own", () => {
  const { geom, p } = headOf({ _tag: "adaptive", cutoffs: [3, 5], divValue: 2 }, 8, 4);
  const h = tensor([1, 4], 3);
  const lp = Array.from(adaptiveLogProbs(o, p, geom, h).data);
  const head = Array.from(o.logSoftmax(o.add(o.matmul(h, p.w), p.b)).data); // [3 words + 2 clusters]
  const c = p.clusters[1]; // ids 5, 6, 7
  const local = Array.from(
    o.logSoftmax(o.add(o.matmul(o.matmul(h, c.proj), c.w), c.b)).data,
  );
  for (let k = 0; k < 3; k++) assert.ok(Math.abs(lp[5 + k] - (head[4] + local[k])) < 1e-14);
  for (let k = 0; k < 3; k++) assert.ok(Math.abs(lp[k] - head[k]) < 1e-14);
});

Deno.test("adaptiveLoss: the gathered loss is the mean −log p of the targets under the full distribution", () => {
  const { geom, p } = headOf({ _tag: "adaptive", cutoffs: [4, 9, 14], divValue: 2 }, 20, 16, 1.5);
  const n = 11;
  const h = tensor([n, 16], 42);
  const lp = adaptiveLogProbs(o, p, geom, h);
  // Targets in the head and in every cluster; cluster 2 (ids 14–19) gets none.
  const targets = Int32Array.of(0, 3, 4, 8, 9, 13, 2, 5, 12, 1, 6);
  let want = 0;
  for (let r = 0; r < n; r++) want -= lp.data[r * 20 + targets[r]];
  want /= n;
  assert.ok(Math.abs(gatheredLoss(geom, p, h, targets) - want) < 1e-12);
  // Padding rows weigh nothing: any larger capacity gives the same loss.
  assert.ok(Math.abs(gatheredLoss(geom, p, h, targets, [11, 9, 3]) - want) < 1e-12);
});

Deno.test("clusterCapacity: ≤ 25 % padding from 32 rows, ≤ 7 rows below, at most the rows", () => {
  const caps = [0, 7, 8, 9, 31, 33, 64, 65, 100, 129, 1000].map((k) => clusterCapacity(k, 10_000));
  assert.deepEqual(caps, [8, 8, 8, 16, 32, 40, 64, 80, 112, 160, 1024]);
  for (let k = 0; k <= 2000; k++) {
    const c = clusterCapacity(k, 10_000);
    assert.ok(c >= Math.max(k, 1), `${k} → ${c}`);
    const padding = c - Math.max(k, 1);
    assert.ok(padding <= (k < 32 ? 7 : 0.25 * k), `${k} → ${c}: too much padding`);
  }
  assert.equal(clusterCapacity(50, 30), 30);
  assert.equal(clusterCapacity(0, 3), 3);
});

Deno.test("planAdaptiveTargets: head targets, gathered rows in order, padding of weight 0", () => {
  const geom = adaptiveGeometry({ _tag: "adaptive", cutoffs: [2, 4], divValue: 2 }, {
    vocabSize: 10,
    dModel: 8,
  });
  const plan = planAdaptiveTargets(geom, Int32Array.of(9, 0, 3, 2, 5, 1, 4));
  assert.deepEqual([...plan.head], [3, 0, 2, 2, 3, 1, 3]);
  assert.deepEqual(plan.counts, [2, 3]);
  assert.deepEqual(plan.capacities, [7, 7]); // 8, capped at the 7 rows
  assert.deepEqual([...plan.clusters[0].rows], [2, 3, 0, 0, 0, 0, 0]);
  assert.deepEqual([...plan.clusters[0].targets], [1, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...plan.clusters[0].weights], [1, 1, 0, 0, 0, 0, 0]);
  assert.deepEqual([...plan.clusters[1].rows.subarray(0, 3)], [0, 4, 6]);
  assert.deepEqual([...plan.clusters[1].targets.subarray(0, 3)], [5, 1, 0]);
  assert.deepEqual(
    adaptiveInputs(geom, 7, plan.capacities).map((i) => `${i.name} [${i.shape}] ${i.dtype}`),
    [
      "adaptive:head [7] int32",
      "adaptive:cluster[0].rows [7] int32",
      "adaptive:cluster[0].targets [7] int32",
      "adaptive:cluster[0].weights [7] float32",
      "adaptive:cluster[1].rows [7] int32",
      "adaptive:cluster[1].targets [7] int32",
      "adaptive:cluster[1].weights [7] float32",
    ],
  );
});

Deno.test("planAdaptiveTargets: a target outside the vocabulary or a capacity too small is named", () => {
  const geom = adaptiveGeometry({ _tag: "adaptive", cutoffs: [2], divValue: 2 }, {
    vocabSize: 5,
    dModel: 4,
  });
  assert.throws(
    () => planAdaptiveTargets(geom, Int32Array.of(1, 5)),
    /target 5 of row 1 is outside \[0, 5\)/,
  );
  assert.throws(
    () => planAdaptiveTargets(geom, Int32Array.of(3, 4, 2), { capacities: [2] }),
    /capacity 2 of tail cluster 0 is below its 3 rows/,
  );
});

Deno.test("decodeModelSpec: the adaptive readout's cutoffs and widths are checked by path", () => {
  const spec = (readout: unknown) => ({ ...referenceCrt, vocabSize: 1000, dModel: 64, readout });
  const message = (readout: unknown): string => {
    const r = decodeModelSpec(spec(readout));
    return E.isLeft(r) ? r.left.message : "accepted";
  };
  assert.equal(message({ _tag: "adaptive", cutoffs: [100, 500], divValue: 4 }), "accepted");
  assert.equal(message({ _tag: "adaptive", cutoffs: [], divValue: 1 }), "accepted");
  assert.equal(
    message({ _tag: "adaptive", cutoffs: [100, 100], divValue: 4 }),
    "model.readout.cutoffs[1]: 100 must be greater than the cutoff before it (100): cutoffs " +
      "increase strictly",
  );
  assert.equal(
    message({ _tag: "adaptive", cutoffs: [100, 1000], divValue: 4 }),
    "model.readout.cutoffs[1]: 1000 leaves no words for its cluster: cutoffs must be below " +
      "model.vocabSize (1000)",
  );
  assert.equal(
    message({ _tag: "adaptive", cutoffs: [10, 20, 30, 40], divValue: 4 }),
    "model.readout.divValue: 4 leaves tail cluster 4 a width of floor(model.dModel (64) / 4^4) " +
      "= 0; use a smaller divValue or fewer cutoffs",
  );
  assert.equal(
    message({ _tag: "adaptive", cutoffs: [0], divValue: 0.5 }),
    "model.readout.cutoffs[0]: must be a positive integer, got 0\n" +
      "model.readout.divValue: must be a number >= 1, got 0.5",
  );
  assert.equal(
    message({ _tag: "adaptive", cutoffs: [10], divValue: 2, tie: true }),
    "model.readout.tie: unknown field (expected one of _tag, cutoffs, divValue)",
  );
});
