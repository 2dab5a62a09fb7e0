/**
 * Every kernel of a fused region against its definition: the region's body
 * run by the reference interpreter (float64), forward, and — for the
 * regions training fuses — the gradient against the same region lowered op
 * by op (whose gradients tests/ops_grad_test.ts checks against finite
 * differences). On both matmul tiers, in the kernel build this process runs
 * (the other build: tests/fusion_build_test.ts). Int8 (q8) weights against
 * the interpreter's dequantised ones, and whole streaming steps at batch 1
 * against the unfused program.
 */
import assert from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import * as tf from "@tensorflow/tfjs-core";
import { ensureBackend } from "../ops/backend.ts";
import { canFuse } from "../ops/fusion.ts";
import { directCallObservers, lowerGraph } from "../ops/lower.ts";
import {
  installedMatmul,
  installMatmul,
  matmulStats,
  startMatmulWorkers,
  uninstallMatmul,
} from "../ops/matmul.ts";
import { loadBlas } from "../ops/blas.ts";
import { encodeQ8 } from "../ops/quant.ts";
import { interpret, type RefTensor, refTensor } from "../ops/reference.ts";
import { type Graph, type Sym, Tracer } from "../spec/graph.ts";
import type { Ops } from "../spec/ops_builder.ts";
import { attentionCore, recurrentStep } from "../spec/stages.ts";
import type { RecurrentParams } from "../spec/layout.ts";
import { compile } from "../core/compile.ts";
import { fuse, fuseGraph } from "../core/fuse.ts";
import { flattenParams } from "../core/params.ts";
import { traceStreamStep } from "../core/trace.ts";
import { executables } from "../core/pipeline.ts";
import { defaultPasses } from "../core/passes.ts";
import { encodeModelFile } from "../deploy/model_file.ts";
import { loadModel } from "../deploy/loaded.ts";
import { commonSubexpressions, deadCode, foldReshapes } from "../core/passes.ts";
import { quantize } from "../deploy/quantize.ts";
import { mixedError, normError, sampler } from "./_ops_cases.ts";
import { randomTokens, tinyCrtGru, tinyTransformer } from "./_tiny.ts";

// tests/fusion_build_test.ts runs this file again with the other kernel build.
const build = Deno.env.get("CRT_TEST_KERNELS") === "simd128" ? "simd128" : "auto";
const info = await ensureBackend({ kernels: build });
if (build === "simd128") assert.equal(info.kernels, "simd128");
const canNative = loadBlas()._tag === "Right";
/**
 * How far an int8 product may be from its dequantised float32 one, as a norm error: the
 * activations are quantised per product (kernels/gemv.c) to 14 bits in the SIMD128 build and
 * to 7 bits in the relaxed one, ~1/8191 or ~1/127 of the vector's range per term.
 */
const Q8_TOLERANCE = info.kernels === "relaxed" ? 1.5e-2 : 1e-3;
const tiers = (canNative ? ["native", "portable"] : ["portable"]) as ("native" | "portable")[];

const wasmRule = (r: Parameters<typeof canFuse>[0], o: { gradients: boolean }) =>
  canFuse(r, { backend: "wasm", ...o });

/** One region case: a graph built by `build` over its inputs, with the kind that must fuse. */
interface Case {
  readonly name: string;
  readonly kind: string;
  readonly inputs: Record<string, RefTensor>;
  readonly build: (o: Ops<Sym>, x: Record<string, Sym>) => Sym;
  /** Inputs the gradient is checked for (empty: an inference-only region). */
  readonly wrt: readonly string[];
}

const s = sampler(7);
const q8 = (w: RefTensor, axis: 0 | 1): RefTensor => {
  const [r, c] = w.shape;
  const m = quantize(Float32Array.from(w.data), [r, c], axis);
  return { shape: w.shape, dtype: "q8", data: m.values, scales: m.scales };
};
const axisOf = new Map<RefTensor, 0 | 1>();
const quantized = (w: RefTensor, axis: 0 | 1): RefTensor => {
  const t = q8(w, axis);
  axisOf.set(t, axis);
  return t;
};

/**
 * A linear region of `x`, `w` (and `b`, `r` when given), its gradient
 * checked for every input unless it is inference-only.
 */
const linear = (
  name: string,
  inputs: Record<string, RefTensor>,
  build: Case["build"],
  use: "training" | "inference" = "training",
): Case => ({
  name: `linear: ${name}`,
  kind: "linear",
  inputs,
  build,
  wrt: use === "training" ? Object.keys(inputs) : [],
});

/** An attention region of heads 2 over `q` and `kv` of these shapes, its gradient checked for both. */
const attention = (
  name: string,
  shapes: { readonly q: readonly number[]; readonly kv: readonly number[] },
  dropout: number,
): Case => ({
  name: `attention: ${name}`,
  kind: "attention",
  inputs: { q: s.normal([...shapes.q]), kv: s.normal([...shapes.kv]) },
  build: (o, i) => attentionCore(o, i.q, i.kv, { heads: 2, dropout }),
  wrt: ["q", "kv"],
});

const cases = (): Case[] => [
  linear(
    "bias and ReLU, 6 rows",
    { x: s.normal([6, 8]), w: s.normal([8, 12]), b: s.normal([12]) },
    (o, i) => o.linear(i.x, i.w, i.b, { relu: true }),
  ),
  linear(
    "bias and residual, a rank-3 input",
    { x: s.normal([2, 3, 8]), w: s.normal([8, 8]), b: s.normal([8]), r: s.normal([2, 3, 8]) },
    (o, i) => o.linear(i.x, i.w, i.b, { residual: i.r }),
  ),
  linear(
    "dropout, then the residual",
    { x: s.normal([6, 8]), w: s.normal([8, 8]), b: s.normal([8]), r: s.normal([6, 8]) },
    (o, i) => o.linear(i.x, i.w, i.b, { dropout: 0.3, residual: i.r }),
  ),
  linear(
    "one row (the matrix-vector path), no bias",
    { x: s.normal([1, 16]), w: s.normal([16, 20]) },
    (o, i) => o.linear(i.x, i.w),
  ),
  linear(
    "a tied readout (W transposed), two rows",
    { x: s.normal([2, 8]), w: s.normal([10, 8]), b: s.normal([10]) },
    (o, i) => o.linear(i.x, i.w, i.b, { transposeW: true }),
  ),
  linear(
    "q8 weight, 3 rows, bias and ReLU",
    { x: s.normal([3, 16]), w: quantized(s.normal([16, 20]), 1), b: s.normal([20]) },
    (o, i) => o.linear(i.x, o.dequantize(i.w, 1), i.b, { relu: true }),
    "inference",
  ),
  attention("S = T (a segment)", { q: [2, 5, 8], kv: [2, 5, 16] }, 0),
  attention(
    "T > S (a memory token or cache before the queries)",
    { q: [2, 3, 8], kv: [2, 6, 16] },
    0,
  ),
  attention("dropout on the probabilities", { q: [2, 4, 8], kv: [2, 5, 16] }, 0.25),
  ...(["gru", "ncgru"] as const).map((cell): Case => ({
    name: `recurrent: ${cell} step`,
    kind: "recurrent",
    inputs: {
      x: s.normal([3, 5]),
      h: s.normal([3, 4]),
      wx: s.normal([5, 12], 0.5),
      bx: s.normal([12]),
      ur: s.normal([4, 4], 0.5),
      uz: s.normal([4, 4], 0.5),
      uc: s.normal([4, 4], 0.5),
      ...(cell === "ncgru" ? { mb: s.normal([4], 0.3) } : {}),
    },
    build: (o, i) => {
      const p: RecurrentParams<Sym> = {
        wx: i.wx,
        bx: i.bx,
        ur: i.ur,
        uz: i.uz,
        uc: i.uc,
        ...(i.mb === undefined ? {} : { modBias: i.mb }),
      } as RecurrentParams<Sym>;
      return recurrentStep(o, p, i.x, i.h);
    },
    wrt: cell === "gru" ? ["x", "h", "wx", "bx", "ur", "uz", "uc"] : ["x", "h", "wx", "uc", "mb"],
  })),
  {
    name: "gather: rows of a q8 table",
    kind: "gather",
    inputs: { t: quantized(s.normal([9, 8]), 0), ids: s.ids([2, 3], 9) },
    build: (o, i) => o.embedding(o.dequantize(i.t, 0), i.ids),
    wrt: [],
  },
];

/** The tfjs value of a case input (q8 weights as their int32 layout). */
const toTf = (t: RefTensor): tf.Tensor => {
  if (t.dtype === "q8") {
    const [r, c] = t.shape;
    const words = encodeQ8(
      { values: t.data as Int8Array, scales: t.scales! },
      r,
      c,
      axisOf.get(t)!,
    );
    return tf.tensor(words, undefined, "int32");
  }
  return t.dtype === "int32"
    ? tf.tensor(Int32Array.from(t.data), [...t.shape], "int32")
    : tf.tensor(Float32Array.from(t.data), [...t.shape], "float32");
};

const traceCase = (c: Case): { graph: Graph; names: string[] } => {
  const tr = new Tracer();
  const names = Object.keys(c.inputs);
  const syms = Object.fromEntries(
    names.map((n) => [n, tr.input(n, "data", c.inputs[n].shape, c.inputs[n].dtype)]),
  );
  const y = c.build(tr.ops("model"), syms);
  return { graph: tr.finish({ y }), names };
};

for (const tier of tiers) {
  Deno.test(`fused kernels (${tier} matmul) equal their bodies on the reference interpreter`, async (t) => {
    assert.equal(installMatmul(tier)._tag, "Right");
    for (const c of cases()) {
      await t.step(c.name, () => {
        const { graph } = traceCase(c);
        const fused = fuseGraph(
          graph,
          (r, o) => wasmRule(r, { ...o, gradients: c.wrt.length > 0 }),
        );
        const kinds = fused.nodes.flatMap((n) => (n.op._tag === "fused" ? [n.op.kind] : []));
        assert.ok(kinds.includes(c.kind), `no fused ${c.kind} in ${kinds.join(",")}`);
        const want = interpret(fused, c.inputs, { precision: "float64" }).y;
        const got = tf.tidy(() => {
          const feeds = Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, toTf(v)]));
          return lowerGraph(fused)(feeds, { training: false, seed: () => 0 }).y.dataSync();
        });
        if (Object.values(c.inputs).some((v) => v.dtype === "q8")) {
          // The int8 products quantise their activations, not float32 rounding (Q8_TOLERANCE).
          const err = normError(got, want.data);
          assert.ok(err < Q8_TOLERANCE, `error ${err.toExponential(2)}`);
        } else {
          const err = mixedError(got, want.data, 1e-2);
          assert.ok(err < 1e-4, `error ${err.toExponential(2)}`);
        }
      });
    }
  });

  Deno.test(`fused kernels (${tier} matmul): gradients equal the op-by-op lowering's`, async (t) => {
    assert.equal(installMatmul(tier)._tag, "Right");
    for (const c of cases().filter((c) => c.wrt.length > 0)) {
      await t.step(c.name, () => {
        const { graph } = traceCase(c);
        const fused = fuseGraph(graph, (r, o) => wasmRule(r, { ...o, gradients: true }));
        assert.ok(fused.nodes.some((n) => n.op._tag === "fused"));
        const plain = fuseGraph(graph, () => false);
        const dyShape = graph.nodes[graph.outputs.y].shape;
        const dy = sampler(11).normal(dyShape);
        const gradsOf = (g: Graph) =>
          tf.tidy(() => {
            const feeds = Object.fromEntries(
              Object.entries(c.inputs).map(([k, v]) => [k, toTf(v)]),
            );
            const run = lowerGraph(g);
            const f = (...xs: tf.Tensor[]) => {
              const all = { ...feeds };
              c.wrt.forEach((k, i) => (all[k] = xs[i]));
              let seed = 0;
              return run(all, { training: true, seed: () => seed++ }).y;
            };
            return tf.grads(f)(c.wrt.map((k) => feeds[k]), toTf(dy)).map((x) => x.dataSync());
          });
        const a = gradsOf(fused), b = gradsOf(plain);
        c.wrt.forEach((k, i) => {
          const err = normError(a[i], b[i]);
          assert.ok(err < 1e-4, `d${k}: error ${err.toExponential(2)}`);
        });
      });
    }
  });

  Deno.test(`decodeBlock (${tier} matmul): a batch-1 stream equals the unfused program`, () => {
    assert.equal(installMatmul(tier)._tag, "Right");
    for (const spec of [tinyCrtGru, tinyTransformer]) {
      const unfused = compile(spec, { passes: [commonSubexpressions, foldReshapes, deadCode] });
      const fused = compile(spec);
      if (E.isLeft(fused) || E.isLeft(unfused)) throw new Error("compile failed");
      const p = fused.right, u = unfused.right;
      const params = p.init(3);
      const ids = randomTokens(2 * spec.segmentLen + 2, spec.vocabSize, 5);
      const run = (prog: typeof p) => {
        let st = prog.openStream(1);
        const out: number[] = [];
        for (const id of ids) {
          const r = prog.inferStep(params, st, Int32Array.of(id), { readout: "last" });
          out.push(...r.logits.dataSync());
          r.logits.dispose();
          prog.disposeState(st.state);
          st = r.stream;
        }
        prog.disposeState(st.state);
        return out;
      };
      const before = tf.memory().numTensors;
      const a = run(p), b = run(u);
      assert.equal(tf.memory().numTensors, before, "tensors leaked");
      const err = mixedError(a, b, 1e-2);
      assert.ok(err < 1e-4, `${spec._tag}: error ${err.toExponential(2)}`);
      for (const t of Object.values(params)) if (t instanceof tf.Tensor) t.dispose();
    }
  });
}

Deno.test("dequantize: a q8 weight of either axis equals the interpreter's values", () => {
  for (const axis of [0, 1] as const) {
    const w = quantized(s.normal([6, 8]), axis);
    const tr = new Tracer();
    const g = tr.finish({ y: tr.ops().dequantize(tr.input("w", "param", [6, 8], "q8"), axis) });
    const want = interpret(g, { w }).y.data;
    const got = tf.tidy(() =>
      lowerGraph(g)({ w: toTf(w) }, { training: false, seed: () => 0 }).y.dataSync()
    );
    assert.deepEqual(Array.from(got), Array.from(want, (v) => Math.fround(v)));
  }
});

Deno.test("fuse: a segment fuses its linear, attention and recurrent regions; a batch-1 step its blocks", () => {
  assert.notEqual(installedMatmul(), "stock");
  const g = compile(tinyCrtGru);
  if (E.isLeft(g)) throw new Error(g.left.message);
  const kindsOf = (graph: Graph) =>
    graph.nodes.flatMap((n) => (n.op._tag === "fused" ? [n.op.kind] : []));
  const kinds = kindsOf(g.right.stages({ batchSize: 1 }).optimized);
  for (const k of ["linear", "attention", "recurrent"]) assert.ok(kinds.includes(k), k);
  for (const [batchSize, fusedBlocks] of [[1, 1], [2, 0]]) {
    const step = traceStreamStep(tinyCrtGru, {
      batchSize,
      start: 1,
      count: 1,
      cacheLen: 0,
      readout: "last",
    });
    const blocks = kindsOf(fuse.run(step)).filter((k) => k === "decodeBlock").length;
    assert.equal(blocks, fusedBlocks * tinyCrtGru.nLayers, `batch ${batchSize}`);
  }
});

Deno.test("q8 weights at run time: an int8 model file streams as its dequantised weights do", async () => {
  const p = compile(tinyTransformer);
  if (E.isLeft(p)) throw new Error(p.left.message);
  const params = p.right.init(4);
  const flat = flattenParams(params);
  const leaves = Object.fromEntries(
    Object.entries(flat).map((
      [k, t],
    ) => [k, { shape: [...t.shape], data: t.dataSync() as Float32Array }]),
  );
  const vocab = Array.from({ length: tinyTransformer.vocabSize }, (_, i) => `w${i}`);
  const file = { spec: tinyTransformer, vocab, params: leaves, meta: {} };
  const q8 = await loadModel(await encodeModelFile(file, { int8: true }));
  // The same weights as float32: what the int8 file's values and scales stand for.
  const dequantised = Object.fromEntries(
    Object.entries(q8.file.params).map(([k, t]) => [k, { shape: t.shape, data: t.data }]),
  );
  const f32 = await loadModel(await encodeModelFile({ ...file, params: dequantised }));
  // The int8 model keeps its matrices int8 on the heap.
  assert.equal(q8.params.blocks[0].ffn.w1.dtype, "int32");
  assert.equal(f32.params.blocks[0].ffn.w1.dtype, "float32");
  const ids = randomTokens(8, tinyTransformer.vocabSize, 9);
  const a = f32.openStream(), b = q8.openStream();
  for (const id of ids) {
    // Only the activations' quantisation in the int8 products differs (Q8_TOLERANCE).
    const pa = a.feed([id]), pb = b.feed([id]);
    assert.ok(normError(pb, pa) < 2 * Q8_TOLERANCE, `probabilities differ by ${normError(pb, pa)}`);
  }
  a.dispose();
  b.dispose();
  f32.dispose();
  q8.dispose();
  for (const t of Object.values(flat)) t.dispose();
});

Deno.test("q8 weights at run time: products shared with the pool's worker stream the same logits to the bit", async () => {
  // Wide enough that the readout (64 × 4,096) and the FFN (64 × 2,048) go to both threads.
  const spec = { ...tinyCrtGru, vocabSize: 4096, dModel: 64, dFF: 2048, segmentLen: 4 };
  const p = compile(spec);
  if (E.isLeft(p)) throw new Error(p.left.message);
  const flat = flattenParams(p.right.init(5));
  const leaves = Object.fromEntries(
    Object.entries(flat).map((
      [k, t],
    ) => [k, { shape: [...t.shape], data: t.dataSync() as Float32Array }]),
  );
  tf.dispose(Object.values(flat));
  const vocab = Array.from({ length: spec.vocabSize }, (_, i) => `w${i}`);
  const q8 = await loadModel(
    await encodeModelFile({ spec, vocab, params: leaves, meta: {} }, { int8: true }),
  );
  const ids = randomTokens(10, spec.vocabSize, 3);
  const run = (): Float32Array[] => {
    const s = q8.openStream();
    const out = Array.from(ids, (id) => Float32Array.from(s.feed([id])));
    s.dispose();
    return out;
  };
  const tier = installedMatmul();
  assert.ok(tier !== "stock");
  const install = (minParallelWeights: number) => {
    uninstallMatmul();
    assert.ok(E.isRight(installMatmul(tier, { minParallelWeights })));
  };
  try {
    install(0); // every product shared
    const shared = await startMatmulWorkers();
    const two = run();
    // Posted to the worker; whether it wins any chunk is timing (under a loaded test run the
    // calling thread may take them all). That its columns are the same bits is
    // tests/ops_gemm_pool_test.ts's, where the worker claims first.
    if (shared) assert.ok((matmulStats()?.matvecs ?? 0) > 0, "no product was posted to the worker");
    install(Infinity); // every product here
    const one = run();
    assert.equal(matmulStats()?.matvecs ?? 0, 0);
    for (let i = 0; i < ids.length; i++) assert.deepEqual(two[i], one[i], `token ${i}`);
  } finally {
    uninstallMatmul();
    installMatmul(tier);
    q8.dispose();
  }
});

Deno.test("sample: the kernel draws what the interpreter draws, every temperature and top-k", () => {
  const n = 6, v = 50;
  const x = sampler(21).normal([n, v], 2);
  const u = refTensor([n], [0, 0.13, 0.5, 0.77, 0.91, 0.999]);
  for (const [temperature, topK] of [[0, 0], [1, 0], [0.7, 5], [1.3, 1], [2, 49], [1, 50]]) {
    const tr = new Tracer();
    const g = tr.finish({
      y: tr.ops().sample(tr.input("x", "data", [n, v]), tr.input("u", "data", [n]), {
        temperature,
        topK,
      }),
    });
    const want = interpret(g, { x, u }).y.data;
    const got = tf.tidy(() =>
      lowerGraph(g)({ x: toTf(x), u: toTf(u) }, { training: false, seed: () => 0 }).y.dataSync()
    );
    assert.deepEqual(Array.from(got), Array.from(want), `T ${temperature}, top-${topK}`);
  }
});

for (const tier of tiers) {
  Deno.test(`drawStep (${tier} matmul): the fused step draws what the unfused one does`, () => {
    assert.equal(installMatmul(tier)._tag, "Right");
    const unfused = compile(tinyCrtGru, { passes: [commonSubexpressions, foldReshapes, deadCode] });
    const fused = compile(tinyCrtGru);
    if (E.isLeft(fused) || E.isLeft(unfused)) throw new Error("compile failed");
    const params = fused.right.init(8);
    const run = (prog: typeof fused.right) => {
      let st = prog.openStream(1);
      const ids: number[] = [];
      let next = Int32Array.of(1, 2);
      for (let i = 0; i < 2 * tinyCrtGru.segmentLen + 1; i++) {
        const draw = { temperature: 0.9, topK: 4, uniforms: Float32Array.of((i * 0.37) % 1) };
        const r = prog.drawStep(params, st, next, draw);
        prog.disposeState(st.state);
        st = r.stream;
        ids.push(r.tokens[0]);
        next = Int32Array.of(r.tokens[0]);
      }
      prog.disposeState(st.state);
      return ids;
    };
    const before = tf.memory().numTensors;
    assert.deepEqual(run(fused.right), run(unfused.right));
    assert.equal(tf.memory().numTensors, before, "tensors leaked");
    for (const t of Object.values(flattenParams(params))) t.dispose();
  });
}

Deno.test("every streaming step runs without the engine: the engine's values to the bit, nothing left", () => {
  // Widths the decode kernels take (V, D and the head width multiples of 4).
  const spec = {
    ...tinyCrtGru,
    vocabSize: 12,
    dModel: 16,
    nHeads: 2,
    dFF: 24,
    nLayers: 2,
    segmentLen: 5,
  };
  const p = compile(spec);
  if (E.isLeft(p)) throw new Error(p.left.message);
  const program = p.right;
  const params = program.init(3);
  /** A stream fed `n` tokens, one at a time. */
  const streamAfter = (n: number) => {
    let stream = program.openStream(1);
    for (let i = 0; i < n; i++) {
      const r = program.inferStep(params, stream, Int32Array.of((3 * i + 1) % 12), {
        readout: "last",
      });
      r.logits.dispose();
      program.disposeState(stream.state);
      stream = r.stream;
    }
    return stream;
  };
  const exes = executables(spec, defaultPasses);
  const ctx = { training: false, seed: () => 0 };
  const blocks = ["CrtEmbed", "CrtDecodeBlock", "CrtDecodeBlock", "CrtLmHead"];
  // A mid-segment token; the segment's first (after a closed one: the memory token's product
  // prepended) and its last (the memory update: the mean of the outputs, the GRU cell).
  for (
    const [fed, start, kernels] of [
      [3, 3, blocks],
      [5, 0, ["CrtEmbed", "CrtLinear", "Reshape", "Concat", ...blocks.slice(1)]],
      [4, 4, [...blocks, "Mean", "CrtRecurrent"]],
    ] as const
  ) {
    const stream = streamAfter(fed);
    const step = exes.step({ batchSize: 1, start, count: 1, cacheLen: 0, readout: "last" });
    const direct = step.direct("wasm");
    if (direct === null) throw new Error(`start ${start}: a step has a region without a binding`);
    const tokens = tf.tensor2d([5], [1, 1], "int32");
    const feeds: Record<string, tf.Tensor> = { ...flattenParams(params), tokens };
    for (const [k, t] of Object.entries(stream.state)) {
      feeds[k.startsWith("open:") ? k : `state:${k}`] = t;
    }
    const want = tf.tidy(() => step.run(feeds, ctx));
    const before = tf.memory();
    const calls: string[] = [];
    const observe = (k: string) => calls.push(k);
    directCallObservers.add(observe);
    const got = direct(feeds, ctx);
    directCallObservers.delete(observe);
    assert.deepEqual(calls, kernels, `start ${start}`);
    assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort());
    for (const [name, t] of Object.entries(want)) {
      assert.deepEqual(got[name].shape, t.shape, name);
      assert.deepEqual(got[name].dataSync(), t.dataSync(), `start ${start}: ${name}`);
    }
    // Only the outputs were made: the blocks' intermediate rows are freed.
    const made = Object.values(got).filter((t) => !Object.values(feeds).includes(t)).length;
    assert.equal(tf.memory().numTensors, before.numTensors + made, `start ${start}`);
    assert.equal(tf.memory().numDataBuffers, before.numDataBuffers + made, `start ${start}`);
    for (const t of Object.values(got)) if (!Object.values(feeds).includes(t)) t.dispose();
    for (const t of [...Object.values(want), tokens]) t.dispose();
    program.disposeState(stream.state);
  }
  for (const t of Object.values(flattenParams(params))) t.dispose();
});
