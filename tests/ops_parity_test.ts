/**
 * tfjs (wasm) against the reference interpreter, op by op and on a whole
 * traced graph.
 *
 * Metric: `max_i |a_i − b_i| / max(|b_i|, 0.01)` with `b` the float64
 * reference, must be ≤ 1e-4. It is a relative error for entries of
 * magnitude ≥ 0.01 and an absolute error of 1e-6 below that. A pure relative
 * error is meaningless at entries that are ~0 by cancellation (a float32 dot
 * product of O(1) terms carries ~1e-7 absolute error whatever its value),
 * and an error relative to max |b| would let causalMask's −1e9 entries hide
 * every other entry. Inputs are O(1), so float32 lands near 1e-7–1e-5.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { Tracer } from "../spec/graph.ts";
import { ensureBackend } from "../ops/backend.ts";
import {
  evalTf,
  fromTensor,
  KERNELS,
  type LowerCtx,
  lowerGraph,
  TfBackend,
  toTensor,
} from "../ops/lower.ts";
import { evalRef, interpret, type RefTensor, refTensor } from "../ops/reference.ts";
import { MASKED } from "../ops/reference_ops.ts";
import { Ops } from "../spec/ops_builder.ts";
import { lmTracer, mixedError, opCases, sampler, scoped } from "./_ops_cases.ts";

await ensureBackend();

const TOL = 1e-4;
const FLOOR = 0.01;
const evalCtx: LowerCtx = { training: false, seed: () => 0 };

const onTf = (f: () => tf.Tensor): RefTensor => scoped(() => fromTensor(f()));

Deno.test("ops parity: every op tag has a case (input via the graph test)", () => {
  const covered = new Set(opCases().map((c) => c.op._tag));
  // Fused regions and their parts are graphs of these ops, and dequantize reads its shape from
  // its node: tests/fusion_test.ts checks them within graphs.
  const graphLevel = new Set(["input", "fused", "part", "dequantize"]);
  const missing = Object.keys(KERNELS).filter((t) =>
    !graphLevel.has(t) && !covered.has(t as keyof typeof KERNELS)
  );
  assert.deepEqual(missing, []);
});

Deno.test("ops parity: evalTf on wasm equals evalRef (float64) for every case", async (t) => {
  for (const c of opCases()) {
    await t.step(c.name, () => {
      const ref = evalRef(c.op, c.inputs, { precision: "float64", training: false });
      const before = tf.memory().numTensors;
      const got = onTf(() => evalTf(c.op, c.inputs.map(toTensor), evalCtx));
      assert.equal(tf.memory().numTensors, before, "tensors leaked");
      assert.deepEqual(got.shape, ref.shape);
      assert.equal(got.dtype, ref.dtype);
      const err = mixedError(got.data, ref.data, FLOOR);
      assert.ok(err <= TOL, `error ${err.toExponential(2)} > ${TOL}`);
    });
  }
});

Deno.test("ops parity: reference semantics on hand-checked values", () => {
  const ctx = { precision: "float64", training: false } as const;
  // relShift: out[i, j] = in[i, j + S − 1 − i], 0 past the last column.
  const x = refTensor([2, 3], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual([...evalRef({ _tag: "relShift" }, [x], ctx).data], [2, 3, 0, 4, 5, 6]);
  // causalMask with T − S = 1: query 0 sees keys 0–1, query 1 sees all.
  const m = evalRef({ _tag: "causalMask" }, [refTensor([2, 3], [0, 0, 0, 0, 0, 0])], ctx);
  assert.deepEqual([...m.data], [0, 0, MASKED, 0, 0, 0]);
  // modReLU: sign(0) = 0 even with a positive bias; |x| + b < 0 gives 0.
  const mr = evalRef(
    { _tag: "modrelu" },
    [refTensor([3], [0, -2, 0.5]), refTensor([1], [-1])],
    ctx,
  );
  assert.deepEqual([...mr.data], [0, -1, 0]);
  // crossEntropy of uniform logits is log V.
  const ce = evalRef({ _tag: "crossEntropy" }, [
    refTensor([1, 4], [3, 3, 3, 3]),
    refTensor([1], [2], { dtype: "int32" }),
  ], ctx);
  assert.ok(Math.abs(ce.data[0] - Math.log(4)) < 1e-12);
});

Deno.test("ops parity: dropout in training is seeded, inverted and drops about `rate`", () => {
  const x = tf.ones([40, 50]);
  const run = (seed: number) =>
    onTf(() => evalTf({ _tag: "dropout", rate: 0.25 }, [x], { training: true, seed: () => seed }));
  const a = run(7), b = run(7), c = run(8);
  x.dispose();
  assert.deepEqual([...a.data], [...b.data], "same seed, same mask");
  assert.notDeepEqual([...a.data], [...c.data], "another seed, another mask");
  const kept = [...a.data].filter((v) => v !== 0);
  assert.ok(
    kept.every((v) => Math.abs(v - 1 / 0.75) < 1e-6),
    "kept entries are scaled by 1/(1 − rate)",
  );
  const dropped = 1 - kept.length / a.data.length;
  assert.ok(Math.abs(dropped - 0.25) < 0.05, `dropped fraction ${dropped}`);
});

/** A small graph through most ops, with params, data and state inputs. */
const traceSmall = () => {
  const { tr, ops, table, ids, targets } = lmTracer(9, 8);
  const mem = tr.input("mem", "state", [2, 1, 8]);
  const gain = tr.input("ln.gain", "param", [8]);
  const bias = tr.input("ln.bias", "param", [8]);
  const wq = tr.input("wq", "param", [8, 8]);
  const wo = tr.input("wo", "param", [8, 9]);
  const pos = ops.constant([4, 8], Float32Array.from({ length: 32 }, (_, i) => Math.sin(i)));
  const x = ops.at("embed").embedding(table, ids); // [2, 3, 8]
  const h0 = ops.add(ops.concat([mem, x], 1), pos); // [2, 4, 8]
  const h = ops.at("ln").layerNorm(h0, gain, bias);
  const q = ops.reshape(ops.at("attn.wq").linear(h, wq), [2, 4, 2, 4]);
  const qh = ops.transpose(q, [0, 2, 1, 3]); // [2, 2, 4, 4]
  const scores = ops.scale(ops.matmul(qh, qh, { transposeB: true }), 0.5);
  const att = ops.softmax(ops.causalMask(ops.relShift(scores)));
  const ctxv = ops.transpose(ops.matmul(att, qh), [0, 2, 1, 3]); // [2, 4, 2, 4]
  const out = ops.tanh(ops.reshape(ctxv, [2, 4, 8]));
  const tokensOut = ops.slice(out, [0, 1, 0], [2, 3, 8]);
  const logits = ops.at("readout").linear(ops.reshape(tokensOut, [6, 8]), wo);
  const nll = ops.crossEntropy(logits, targets);
  const newMem = ops.stopGradient(ops.sigmoid(ops.mean(out, 1)));
  return tr.finish({ loss: ops.mean(nll, 0), mem: ops.reshape(newMem, [2, 1, 8]) });
};

Deno.test("ops parity: lowerGraph equals interpret on a traced graph, without leaks", () => {
  const g = traceSmall();
  const r = sampler(99);
  const feeds: Record<string, RefTensor> = {
    embed: r.normal([9, 8]),
    tokens: r.ids([2, 3], 9),
    targets: r.ids([6], 9),
    mem: r.normal([2, 1, 8]),
    "ln.gain": r.normal([8]),
    "ln.bias": r.normal([8]),
    wq: r.normal([8, 8], 0.5),
    wo: r.normal([8, 9], 0.5),
  };
  const ref = interpret(g, feeds, { precision: "float64" });
  const tfFeeds = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, toTensor(v)]));
  const before = tf.memory().numTensors;
  const run = lowerGraph(g);
  const got = scoped(() => {
    const out = run(tfFeeds, evalCtx);
    return { loss: fromTensor(out.loss), mem: fromTensor(out.mem) };
  });
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  Object.values(tfFeeds).forEach((t) => t.dispose());
  for (const k of ["loss", "mem"] as const) {
    assert.deepEqual(got[k].shape, ref[k].shape);
    const err = mixedError(got[k].data, ref[k].data, FLOOR);
    assert.ok(err <= TOL, `${k}: error ${err.toExponential(2)}`);
  }
});

Deno.test("ops parity: a failing node is reported with its spec path", () => {
  const tr = new Tracer();
  const x = tr.input("x", "data", [2]);
  const g = tr.finish({ y: tr.ops("model").at("head").tanh(x) });
  assert.throws(() => tf.tidy(() => lowerGraph(g)({}, evalCtx)), /no feed for input 'x'/);
  assert.throws(() => interpret(g, { x: refTensor([3], [1, 2, 3]) }), /feed 'x' is \[3\]/);
  const ops = new Ops(new TfBackend(evalCtx), "model");
  assert.throws(
    () => tf.tidy(() => ops.at("blocks[0].ffn").matmul(tf.ones([2, 3]), tf.ones([2, 3]))),
    /model\.blocks\[0\]\.ffn: matmul: matmul inner dims differ/,
  );
});

Deno.test("ops parity: TfBackend and RefBackend run the same Ops code", async () => {
  const { RefBackend } = await import("../ops/reference.ts");
  const r = sampler(5);
  const xs = r.normal([3, 4]), w = r.normal([4, 2]);
  const stage = <T>(ops: Ops<T>, x: T, wt: T): T => ops.softmax(ops.relu(ops.matmul(x, wt)));
  const ref = stage(new Ops(new RefBackend({ precision: "float64" })), xs, w);
  const got = onTf(() => stage(new Ops(new TfBackend(evalCtx)), toTensor(xs), toTensor(w)));
  assert.ok(mixedError(got.data, ref.data, FLOOR) <= TOL);
});
