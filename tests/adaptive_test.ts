/**
 * The adaptive softmax readout in whole programs (tfjs on wasm against the
 * float64 reference interpreter): a single cluster is the full softmax, the
 * full distribution is normalised, the gathered loss is its NLL, gradients
 * match finite differences, FLOPs follow the formula, and evaluation
 * reports exp(mean NLL).
 */
import assert from "node:assert/strict";
import { evaluateSplit } from "../experiments/tasks/evaluate.ts";
import { adaptiveCosts } from "../experiments/tasks/language_model.ts";
import { ensureBackend } from "../ops/backend.ts";
import { tf } from "../ops/tf.ts";
import { adaptiveGeometry, tailFlopsPerRow } from "../spec/adaptive.ts";
import type { ModelSpec } from "../spec/codecs.ts";
import { compiled, disposeTrainStep, int2d, streamingGap } from "./_program.ts";
import {
  assertGradients,
  float64Values,
  referenceLmLoss,
  zeroReferenceState,
} from "./_reference.ts";
import { randomTokens, tinyCrtGru, tinyTransformer, tinyXl } from "./_tiny.ts";

await ensureBackend();

/** V = 14: a shortlist of 4, tail clusters [4, 9) of width 4 and [9, 14) of width 2. */
const adaptive = <S extends ModelSpec>(spec: S, cutoffs: number[] = [4, 9]): S => ({
  ...spec,
  vocabSize: 14,
  readout: { _tag: "adaptive", cutoffs, divValue: 2 },
});

const tinyAdaptive: Record<string, ModelSpec> = {
  "CRT (GRU)": adaptive(tinyCrtGru),
  "full-length Transformer": adaptive(tinyTransformer),
  "Transformer-XL": adaptive(tinyXl),
};

/** Per-row log-sum-exp and the NLL of `targets` under log-probabilities [B, L, V]. */
const scoreRows = (lp: tf.Tensor, targets: Int32Array) => {
  const v = lp.shape[2]!;
  const data = Float32Array.from(lp.dataSync());
  const lse: number[] = [];
  let nll = 0;
  for (let r = 0; r < targets.length; r++) {
    const row = data.subarray(r * v, (r + 1) * v);
    lse.push(Math.log(row.reduce((s, x) => s + Math.exp(x), 0)));
    nll -= row[targets[r]];
  }
  return { lse, nll: nll / targets.length };
};

Deno.test("adaptive softmax without cutoffs gives the full softmax's log-probabilities and loss", () => {
  const lm = { ...tinyTransformer, vocabSize: 14 };
  const full = compiled(lm), single = compiled(adaptive(lm, []));
  const pl = full.init(5), pa = single.init(5); // same paths (head.w, head.b), same values
  const b = 2, len = 2 * lm.segmentLen;
  const tokens = int2d(randomTokens(b * len, 14, 1), b);
  const targets = int2d(randomTokens(b * len, 14, 2), b);
  const logits = full.forward(pl, full.initState(b), tokens).logits;
  const want = tf.logSoftmax(logits).dataSync();
  const got = single.forward(pa, single.initState(b), tokens).logits.dataSync();
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
  assert.ok(worst < 1e-5, `log-probabilities differ by ${worst}`);
  const opts = { training: false, bpttSegments: 2 };
  const lossLm = full.loss(pl, full.initState(b), { tokens, targets }, opts).loss.dataSync()[0];
  const lossAd = single.loss(pa, single.initState(b), { tokens, targets }, opts).loss.dataSync()[0];
  assert.ok(Math.abs(lossLm - lossAd) < 1e-5, `loss ${lossAd} vs ${lossLm}`);
});

Deno.test("adaptive softmax: rows are normalised, and the gathered loss is the full distribution's NLL", async (t) => {
  for (const [name, spec] of Object.entries(tinyAdaptive)) {
    await t.step(name, () => {
      const program = compiled(spec);
      const params = program.init(3);
      const b = 3, len = 2 * spec.segmentLen + 2; // two segments and a short one
      const tokens = randomTokens(b * len, 14, 4);
      // Most targets in the head, some in each cluster: clusters get padded rows.
      const targets = Int32Array.from(
        randomTokens(b * len, 100, 6),
        (x) => x < 70 ? x % 4 : x % 14,
      );
      const lp = program.forward(params, program.initState(b), int2d(tokens, b)).logits;
      assert.deepEqual(lp.shape, [b, len, 14]);
      const { lse, nll } = scoreRows(lp, targets);
      assert.ok(
        lse.every((x) => Math.abs(x) < 1e-5),
        `logsumexp off 0 by ${Math.max(...lse.map(Math.abs))}`,
      );
      const loss = program.loss(params, program.initState(b), {
        tokens: int2d(tokens, b),
        targets: int2d(targets, b),
      }, { training: false, bpttSegments: 2 }).loss.dataSync()[0];
      assert.ok(Math.abs(loss - nll) < 1e-5 * nll, `gathered loss ${loss}, full NLL ${nll}`);
    });
  }
});

Deno.test("adaptive softmax: Program.trainStep gradients match float64 finite differences", async (t) => {
  // Tolerances as in tests/model_test.ts: float32 autograd against float64 differences.
  for (const name of ["CRT (GRU)", "Transformer-XL"]) {
    const spec = tinyAdaptive[name];
    await t.step(name, () => {
      const program = compiled(spec);
      const b = 2, k = spec._tag === "xl" ? 1 : 2, len = k * spec.segmentLen;
      const tokens = randomTokens(b * len, 14, 11);
      // Targets in every cluster, and a cluster-2 target only in the first segment.
      const targets = Int32Array.from(
        randomTokens(b * len, 14, 12),
        (x, i) => i === 4 ? 12 : x % 9,
      );
      const params = program.init(3);
      const values = float64Values(program.layout, 3);
      const state = program.initState(b);
      const state0 = zeroReferenceState(state);
      const step = program.trainStep(params, state, {
        tokens: int2d(tokens, b),
        targets: int2d(targets, b),
      }, { bpttSegments: k });
      const loss = () => referenceLmLoss(spec, values, tokens, targets, b, state0);
      const base = loss();
      assert.ok(Math.abs(base - step.loss) < 1e-4 * base, `loss ${step.loss} vs ${base}`);
      const heads = Object.keys(step.grads).filter((p) => p.startsWith("head"));
      assert.equal(heads.length, 8); // w, b and (proj, w, b) per tail cluster
      assertGradients(step.grads, [...heads, "embed", "blocks[0].attn.wq"], values, 16, loss);
      disposeTrainStep(program, params, state, step);
    });
  }
});

Deno.test("adaptive softmax: FLOPs count every tail cluster for every token; the gathered figure only its rows", () => {
  const spec = { ...adaptive(tinyTransformer), dModel: 8, dFF: 12, segmentLen: 5 };
  const { dModel: d, dFF: f, nLayers: l, segmentLen: s } = spec;
  const blocks = l * (2 * 4 * d * d + 2 * 2 * d * f + 2 * 2 * s * d);
  const head = 2 * d * (4 + 2); // 4 shortlist words and 2 cluster logits
  const tails = 2 * (d * 4 + 4 * 5) + 2 * (d * 2 + 2 * 5); // [D, 4]·[4, 5] and [D, 2]·[2, 5]
  const p = compiled(spec);
  assert.equal(p.flops.forwardPerToken, blocks + head + tails);
  assert.equal(p.flops.trainPerToken, 3 * (blocks + head + tails));
  const geom = adaptiveGeometry({ _tag: "adaptive", cutoffs: [4, 9], divValue: 2 }, spec);
  assert.deepEqual(tailFlopsPerRow(geom).map((x) => x.forward), [
    2 * (d * 4 + 4 * 5),
    2 * (d * 2 + 2 * 5),
  ]);
  // A split with a quarter of its targets in cluster 0 and none in cluster 1.
  const tokens = Int32Array.from({ length: 401 }, (_, i) => (i % 4 === 0 ? 5 : 1));
  const c = adaptiveCosts(spec, p.flops, tokens)!;
  assert.deepEqual(c.tail_shares, [0.25, 0]);
  assert.equal(c.flops_per_token_forward_gathered, blocks + head + 0.25 * 2 * (d * 4 + 4 * 5));
  assert.equal(c.flops_per_token_train_gathered, 3 * (blocks + head + 0.25 * 2 * (d * 4 + 4 * 5)));
});

Deno.test("adaptive softmax: evaluateSplit reports exp(mean NLL) of the full distribution", async () => {
  const spec = tinyAdaptive["full-length Transformer"];
  const program = compiled(spec);
  const params = program.init(8);
  const split = randomTokens(2 * 20 + 1, 14, 21); // 2 streams of 20 → 19 predictions each
  const r = await evaluateSplit(program, params, split, { batchSize: 2 });
  assert.ok(r !== null);
  assert.equal(r.tokens, 38);
  // The same streams through forward: tokens [2, 19], targets shifted by one.
  const rows = [split.subarray(0, 20), split.subarray(20, 40)];
  const tokens = Int32Array.from(rows.flatMap((x) => [...x.subarray(0, 19)]));
  const targets = Int32Array.from(rows.flatMap((x) => [...x.subarray(1, 20)]));
  const lp = program.forward(params, program.initState(2), int2d(tokens, 2)).logits;
  const { nll } = scoreRows(lp, targets);
  assert.ok(Math.abs(r.ppl - Math.exp(nll)) < 1e-4 * r.ppl, `ppl ${r.ppl} vs ${Math.exp(nll)}`);
});

Deno.test("adaptive softmax: streaming one token at a time equals the segment-at-once forward pass", () => {
  const spec = tinyAdaptive["CRT (GRU)"];
  const program = compiled(spec);
  const params = program.init(2);
  const n = 2 * spec.segmentLen + 1;
  const tokens = randomTokens(n, 14, 9);
  const diff = streamingGap(program, params, tokens);
  assert.ok(diff <= 1e-5, `streaming differs by ${diff}`);
});
