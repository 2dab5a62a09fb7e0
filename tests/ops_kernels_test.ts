/**
 * The kernel inventory (`KERNELS`) against the kernels tfjs actually runs,
 * and `checkKernels` against a backend missing some.
 *
 * Kernels are recorded by wrapping the engine's `runKernel`, through which
 * every tfjs op (and every gradient, which is made of ops) dispatches.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { ensureBackend } from "../ops/backend.ts";
import {
  AUTOGRAD_KERNELS,
  checkKernels,
  evalTf,
  GRADIENT_KERNELS,
  KERNELS,
  kernelUse,
  type LowerCtx,
  type MissingKernel,
  toTensor,
} from "../ops/lower.ts";
import { evalRef } from "../ops/reference.ts";
import type { Op, OpTag } from "../spec/ops.ts";
import { lmTracer, type OpCase, opCases, sampler, scoped } from "./_ops_cases.ts";

await ensureBackend();

type Engine = { runKernel: (name: string, ...rest: unknown[]) => unknown };

/**
 * Kernel names run by `f`, split at the moment `f` calls `mark()`: forward
 * before, backward after.
 */
const recordKernels = (
  f: (mark: () => void) => void,
): { forward: Set<string>; backward: Set<string> } => {
  const engine = tf.engine() as unknown as Engine;
  const original = engine.runKernel;
  const seen = { forward: new Set<string>(), backward: new Set<string>() };
  let phase: "forward" | "backward" = "forward";
  engine.runKernel = function (this: unknown, name: string, ...rest: unknown[]) {
    seen[phase].add(name);
    return original.call(this, name, ...rest);
  };
  try {
    f(() => (phase = "backward"));
  } finally {
    // The wrapper is an own property shadowing the prototype's method.
    delete (engine as Partial<Engine>).runKernel;
  }
  return seen;
};

/** Forward under a gradient tape (so saves run), then the backward pass with a random dy. */
const runCase = (c: OpCase, ctx: LowerCtx) =>
  recordKernels((mark) =>
    scoped(() => {
      const ts = c.inputs.map(toTensor);
      const floats = c.inputs.map((t, i) => (t.dtype === "float32" ? i : -1)).filter((i) => i >= 0);
      if (floats.length === 0) {
        evalTf(c.op, ts, ctx);
        return;
      }
      const shape = evalRef(c.op, c.inputs, { precision: "float32", training: false }).shape;
      const dy = tf.tensor(Float32Array.from(sampler(1).values(shape.reduce((a, b) => a * b, 1))), [
        ...shape,
      ]);
      const f = (...xs: tf.Tensor[]) => {
        const all = [...ts];
        floats.forEach((k, i) => (all[k] = xs[i]));
        const y = evalTf(c.op, all, ctx);
        mark();
        return y;
      };
      tf.grads(f)(floats.map((k) => ts[k]), dy);
    })
  );

Deno.test("ops kernels: KERNELS lists exactly the kernels each lowering runs, forward and backward", () => {
  const evalCtx: LowerCtx = { training: false, seed: () => 0 };
  const cases: [OpCase, LowerCtx][] = opCases().map((c) => [c, evalCtx]);
  const drop: Op = { _tag: "dropout", rate: 0.5 };
  cases.push([{
    name: "dropout (training)",
    op: drop,
    inputs: [sampler(2).normal([3, 4])],
    wrt: [],
  }, {
    training: true,
    seed: () => 3,
  }]);
  const union = new Map<OpTag, { forward: Set<string>; backward: Set<string> }>();
  for (const [c, ctx] of cases) {
    const seen = runCase(c, ctx);
    const declared = kernelUse(c.op);
    const extraF = [...seen.forward].filter((k) => !declared.forward.includes(k));
    const extraB = [...seen.backward].filter((k) => !declared.backward.includes(k));
    assert.deepEqual(
      { forward: extraF, backward: extraB },
      { forward: [], backward: [] },
      `${c.name}: undeclared`,
    );
    const u = union.get(c.op._tag) ?? { forward: new Set(), backward: new Set() };
    seen.forward.forEach((k) => u.forward.add(k));
    seen.backward.forEach((k) => u.backward.add(k));
    union.set(c.op._tag, u);
  }
  // And nothing is declared that no case runs, so checkKernels never cries wolf.
  for (const [tag, u] of union) {
    const declared = kernelUse(cases.find(([c]) => c.op._tag === tag)![0].op);
    const unusedF = declared.forward.filter((k) => !u.forward.has(k));
    const unusedB = declared.backward.filter((k) => !u.backward.has(k));
    assert.deepEqual(
      { forward: unusedF, backward: unusedB },
      { forward: [], backward: [] },
      `${tag}: never run`,
    );
  }
});

Deno.test("ops kernels: every declared kernel is registered on wasm", () => {
  const all = new Set([
    ...Object.values(KERNELS).flatMap((k) => [...k.forward, ...k.backward]),
    ...AUTOGRAD_KERNELS,
  ]);
  const missing = [...all].filter((k) => tf.getKernel(k, "wasm") === undefined);
  assert.deepEqual(missing, []);
  // The kernels wasm lacks, which the lowering must route around.
  for (const k of ["UnsortedSegmentSum", "LogSoftmax", "BroadcastTo"]) {
    assert.equal(tf.getKernel(k, "wasm"), undefined);
  }
  // Gradients this project installs are the ones tfjs runs.
  for (const k of GRADIENT_KERNELS) assert.notEqual(tf.getGradient(k), undefined, k);
});

/** Embedding → layerNorm → linear → crossEntropy, with spec paths. */
const traceLm = () => {
  const { tr, ops, table, ids, targets } = lmTracer(5, 4);
  const gain = tr.input("ln.gain", "param", [4]);
  const bias = tr.input("ln.bias", "param", [4]);
  const w = tr.input("out", "param", [4, 5]);
  const x = ops.at("embed").embedding(table, ids);
  const h = ops.at("blocks[0].ln").layerNorm(x, gain, bias);
  const logits = ops.at("readout").linear(h, w); // [2, 3, 5]
  const nll = ops.at("loss").crossEntropy(ops.reshape(logits, [6, 5]), targets);
  return tr.finish({ loss: ops.mean(nll, 0) });
};

Deno.test("ops kernels: checkKernels passes on wasm", () => {
  assert.equal(checkKernels(traceLm(), "wasm")._tag, "Right");
});

Deno.test("ops kernels: checkKernels on an unknown backend lists every node's kernels with paths", () => {
  const r = checkKernels(traceLm(), "nonexistent");
  assert.equal(r._tag, "Left");
  if (r._tag !== "Left") return;
  assert.equal(r.left._tag, "MissingKernels");
  const paths = new Set(r.left.missing.map((m) => m.path));
  for (
    const p of ["model.embed", "model.blocks[0].ln", "model.readout", "model.loss", "<autograd>"]
  ) {
    assert.ok(paths.has(p), `no entry for ${p}`);
  }
  assert.match(r.left.message, /model\.embed: embedding needs 'CrtGatherRows' \(forward\)/);
  assert.match(r.left.message, /model\.embed: embedding needs 'ScatterNd' \(gradient\)/);
});

Deno.test("ops kernels: checkKernels names the node whose gradient needs an unregistered kernel", () => {
  const config = tf.getKernel("ScatterNd", "wasm");
  assert.ok(config);
  tf.unregisterKernel("ScatterNd", "wasm");
  let r: ReturnType<typeof checkKernels>, fwd: ReturnType<typeof checkKernels>;
  try {
    r = checkKernels(traceLm(), "wasm");
    fwd = checkKernels(traceLm(), "wasm", { gradients: false });
  } finally {
    tf.registerKernel(config);
  }
  assert.equal(r._tag, "Left");
  if (r._tag !== "Left") return;
  const expected: MissingKernel[] = [
    { path: "model.embed", op: "embedding", kernel: "ScatterNd", phase: "gradient" },
  ];
  assert.deepEqual(r.left.missing, expected);
  assert.equal(fwd._tag, "Right", "inference needs no ScatterNd");
  assert.notEqual(tf.getKernel("ScatterNd", "wasm"), undefined, "kernel restored");
});
