import assert from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import type { Program } from "../../core/program.ts";
import { compile } from "../../core/compile.ts";
import { liveTensors } from "../../core/train.ts";
import { ensureBackend } from "../../ops/backend.ts";
import { tf } from "../../ops/tf.ts";
import type { ModelSpec } from "../../spec/codecs.ts";
import { randomTokens, tinyCrtGru, tinyTransformer, tinyXl } from "../../tests/_tiny.ts";
import { evaluateSplit } from "./evaluate.ts";

await ensureBackend();

const compiled = (spec: ModelSpec): Program => {
  const p = compile(spec);
  if (E.isLeft(p)) throw new Error(p.left.message);
  return p.right;
};

/**
 * The same score the slow way: one `forward` over each whole stream (it runs
 * segment by segment, carrying the state, with a short last segment), then
 * log-softmax on the host.
 */
const referenceNll = (program: Program, tokens: Int32Array, b: number) => {
  const params = program.init(3);
  const n = Math.floor(tokens.length / b);
  const inputs = new Int32Array(b * (n - 1));
  const targets = new Int32Array(b * (n - 1));
  for (let r = 0; r < b; r++) {
    inputs.set(tokens.subarray(r * n, r * n + n - 1), r * (n - 1));
    targets.set(tokens.subarray(r * n + 1, r * n + n), r * (n - 1));
  }
  const { logits, state } = program.forward(
    params,
    program.initState(b),
    tf.tensor2d(inputs, [b, n - 1], "int32"),
  );
  const v = logits.shape[2]!;
  const data = Float32Array.from(logits.dataSync() as Float32Array);
  let nll = 0;
  for (let i = 0; i < targets.length; i++) {
    const row = data.subarray(i * v, (i + 1) * v);
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
    nll += lse - row[targets[i]];
  }
  logits.dispose();
  program.disposeState(state);
  return { params, loss: nll / targets.length, count: targets.length };
};

for (const spec of [tinyCrtGru, tinyTransformer, tinyXl]) {
  Deno.test(`evaluateSplit: ${spec._tag} scores every prediction of B streams, the short last window included`, async () => {
    const program = compiled(spec);
    // 3 streams of 17 tokens: 16 predictions each = 5 windows of 3 and one of 1.
    const tokens = randomTokens(3 * 17 + 2, spec.vocabSize, 11);
    const ref = referenceNll(program, tokens, 3);
    const before = liveTensors();
    const windows: number[] = [];
    const r = await evaluateSplit(program, ref.params, tokens, {
      batchSize: 3,
      onWindow: (done, total, n) => windows.push(done, total, n),
    });
    assert.ok(r !== null);
    assert.equal(liveTensors(), before, "no tensors left behind");
    assert.equal(r.tokens, 48);
    assert.equal(r.batchSize, 3);
    assert.ok(Math.abs(r.loss - ref.loss) < 1e-5, `${r.loss} vs ${ref.loss}`);
    assert.ok(Math.abs(r.ppl - Math.exp(ref.loss)) < 1e-4 * r.ppl);
    assert.deepEqual(windows.slice(-3), [6, 6, 3]);
    for (const t of Object.values(ref.params)) if (t instanceof tf.Tensor) t.dispose();
  });
}

Deno.test("evaluateSplit: maxTokens reads a prefix; a short split uses fewer streams; abort returns null", async () => {
  const program = compiled(tinyCrtGru);
  const params = program.init(1);
  const tokens = randomTokens(200, tinyCrtGru.vocabSize, 5);
  const prefix = await evaluateSplit(program, params, tokens, { batchSize: 4, maxTokens: 41 });
  const same = await evaluateSplit(program, params, tokens.slice(0, 41), { batchSize: 4 });
  assert.ok(prefix !== null && same !== null);
  assert.equal(prefix.loss, same.loss);
  assert.equal(prefix.tokens, 4 * 9);
  const tiny = await evaluateSplit(program, params, tokens.slice(0, 5), { batchSize: 10 });
  assert.equal(tiny?.batchSize, 2);
  const controller = new AbortController();
  controller.abort();
  const before = liveTensors();
  const aborted = await evaluateSplit(program, params, tokens, {
    batchSize: 2,
    signal: controller.signal,
  });
  assert.equal(aborted, null);
  assert.equal(liveTensors(), before);
});
