import assert from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import type { Params } from "../../core/program.ts";
import { compile } from "../../core/compile.ts";
import { startBackend } from "../../ops/backend.ts";
import { tf } from "../../ops/tf.ts";
import type { ModelSpec } from "../../spec/codecs.ts";
import { tinyCrtGru, tinyTransformer } from "../../tests/_tiny.ts";
import { unigramBias, withReadoutBias } from "./readout_bias.ts";

await startBackend({ backend: "cpu" });

/** V = 14: shortlist 4, tails [4, 9) and [9, 14). */
const adaptiveCrt: ModelSpec = {
  ...tinyCrtGru,
  vocabSize: 14,
  readout: { _tag: "adaptive", cutoffs: [4, 9], divValue: 2 },
};
const lmTransformer: ModelSpec = { ...tinyTransformer, vocabSize: 14 };

/** A skewed split over 14 words; word 13 never occurs. */
const split = Int32Array.from({ length: 300 }, (_, i) => (i * i + 3 * i) % 13);

const smoothed = (tokens: Int32Array, v: number): number[] => {
  const c = new Array<number>(v).fill(1);
  for (const t of tokens) c[t]++;
  return c.map((x) => x / (tokens.length + v));
};

/** `params` with every output weight (head and tail clusters) set to zero. */
const zeroOutputWeights = (params: Params): Params => {
  const zero = (t: tf.Tensor | undefined) => t === undefined ? undefined : tf.zerosLike(t);
  return {
    ...params,
    head: {
      ...params.head,
      w: zero(params.head.w),
      clusters: params.head.clusters?.map((c) => ({ ...c, w: zero(c.w)!, proj: zero(c.proj)! })),
    },
  };
};

for (const [name, spec] of [["lm", lmTransformer], ["adaptive", adaptiveCrt]] as const) {
  Deno.test(`unigramBias (${name}): with zero output weights the model predicts the add-one unigram`, () => {
    const compiled = compile(spec);
    if (E.isLeft(compiled)) throw new Error(compiled.left.message);
    const program = compiled.right;
    const params = zeroOutputWeights(withReadoutBias(program.init(1), unigramBias(spec, split)));
    const b = 2, len = 2 * spec.segmentLen;
    const tokens = tf.tensor2d(split.subarray(0, b * len), [b, len], "int32");
    const out = program.forward(params, program.initState(b), tokens).logits;
    // lm gives logits, adaptive log-probabilities: normalise both.
    const lp = tf.logSoftmax(out).dataSync();
    const want = smoothed(split, 14);
    for (let r = 0; r < b * len; r++) {
      for (let w = 0; w < 14; w++) {
        const got = Math.exp(lp[r * 14 + w]);
        assert.ok(Math.abs(got - want[w]) < 1e-5, `row ${r} word ${w}: ${got} vs ${want[w]}`);
      }
    }
  });
}

Deno.test("unigramBias: the starting loss on the split drops from about ln V to the unigram entropy", () => {
  const compiled = compile(lmTransformer);
  if (E.isLeft(compiled)) throw new Error(compiled.left.message);
  const program = compiled.right;
  const len = 2 * lmTransformer.segmentLen, b = Math.floor((split.length - 1) / len);
  const tokens = tf.tensor2d(split.subarray(0, b * len), [b, len], "int32");
  const targets = tf.tensor2d(split.subarray(1, b * len + 1), [b, len], "int32");
  const loss = (params: Params) =>
    program.loss(params, program.initState(b), { tokens, targets }, {
      training: false,
      bpttSegments: 2,
    }).loss.dataSync()[0];
  const plain = loss(program.init(1));
  const primed = loss(withReadoutBias(program.init(1), unigramBias(lmTransformer, split)));
  const p = smoothed(split, 14);
  let entropy = 0; // cross-entropy of the split's targets under the smoothed unigram
  for (let i = 1; i <= b * len; i++) entropy -= Math.log(p[split[i]]) / (b * len);
  assert.ok(Math.abs(plain - Math.log(14)) < 0.05, `plain start ${plain}`);
  assert.ok(Math.abs(primed - entropy) < 0.05, `primed start ${primed}, unigram ${entropy}`);
  assert.ok(primed < plain - 0.1);
});

Deno.test("unigramBias: ids outside the vocabulary and classifier readouts are refused", () => {
  assert.throws(
    () => unigramBias(lmTransformer, Int32Array.from([1, 14])),
    /token id 14 at 1 is outside \[0, 14\)/,
  );
  const classifier: ModelSpec = {
    ...tinyCrtGru,
    readout: { _tag: "classifier", nClasses: 3, pool: "memory" },
  };
  assert.throws(() => unigramBias(classifier, split), /classifier readout/);
});

Deno.test("withReadoutBias: a bias of the wrong length names the leaf", () => {
  const compiled = compile(adaptiveCrt);
  if (E.isLeft(compiled)) throw new Error(compiled.left.message);
  const bias = unigramBias(lmTransformer, split); // 14 head values, no clusters
  assert.throws(
    () => withReadoutBias(compiled.right.init(0), bias),
    /head\.clusters: 0 biases for 2/,
  );
  const adaptive = unigramBias(adaptiveCrt, split);
  assert.throws(
    () => withReadoutBias(compiled.right.init(0), { ...adaptive, head: new Float32Array(3) }),
    /head\.b: 3 values for a bias of 6/,
  );
});
