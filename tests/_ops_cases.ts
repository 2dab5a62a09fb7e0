/**
 * Shared fixtures for the op tests: a seeded PRNG, one list of small op
 * cases covering every op tag, error metrics and finite differences on the
 * reference interpreter.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Op } from "../spec/ops.ts";
import { evalRef, type RefTensor, refTensor } from "../ops/reference.ts";
import { Tracer } from "../spec/graph.ts";

/** Run `f` in a tf.tidy scope and return its (non-tensor) result; tf.tidy's type only admits tensors. */
export const scoped = <T>(f: () => T): T => {
  let out: T | undefined;
  tf.tidy(() => {
    out = f();
  });
  return out as T;
};

/** A deterministic stream of uniforms in [0, 1) (xorshift32). */
export const prng = (seed: number): () => number => {
  let s = (seed >>> 0) || 0x2545f491;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
};

const sizeOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** Random tensor factories over one stream; values are float32-representable. */
export const sampler = (seed: number) => {
  const u = prng(seed);
  const normal = (): number => {
    // Box–Muller; 1 − u keeps log's argument in (0, 1].
    const r = Math.sqrt(-2 * Math.log(1 - u()));
    return r * Math.cos(2 * Math.PI * u());
  };
  return {
    /** N(0, scale²) entries. */
    normal: (shape: readonly number[], scale = 1): RefTensor =>
      refTensor(shape, Array.from({ length: sizeOf(shape) }, () => scale * normal())),
    /** Entries with |x| ∈ [margin, margin + 1.5), random sign: no relu kink within FD reach. */
    awayFromZero: (shape: readonly number[], margin = 0.1): RefTensor =>
      refTensor(
        shape,
        Array.from({ length: sizeOf(shape) }, () => (u() < 0.5 ? -1 : 1) * (margin + 1.5 * u())),
      ),
    /** Uniform int32 ids in [0, n). */
    ids: (shape: readonly number[], n: number): RefTensor =>
      refTensor(shape, Array.from({ length: sizeOf(shape) }, () => Math.floor(u() * n)), {
        dtype: "int32",
      }),
    /** A plain float stream, for weights. */
    values: (n: number): Float64Array => Float64Array.from({ length: n }, () => normal()),
  };
};

/** One op applied to fixed inputs. */
export interface OpCase {
  /** Test label: op tag and what the case exercises. */
  readonly name: string;
  readonly op: Op;
  readonly inputs: readonly RefTensor[];
  /**
   * Inputs whose gradient is checked against finite differences: float
   * inputs at which the op is smooth within the FD step. Empty for ops
   * with no gradient to check this way.
   */
  readonly wrt: readonly number[];
}

/** Small cases for every op tag except `input` (exercised through graphs). */
export const opCases = (): OpCase[] => {
  const r = sampler(20240611);
  const cases: OpCase[] = [];
  const add = (name: string, op: Op, inputs: RefTensor[], wrt: number[]) =>
    cases.push({ name, op, inputs, wrt });

  add(
    "constant [2, 3]",
    { _tag: "constant", shape: [2, 3], values: Float32Array.of(1, -2, 3, 0.5, 0, 7) },
    [],
    [],
  );

  // Every transpose combination at every supported rank.
  for (const batch of [[], [2], [2, 3]]) {
    for (const transposeA of [false, true]) {
      for (const transposeB of [false, true]) {
        const [m, k, n] = [3, 4, 5];
        const a = r.normal([...batch, ...(transposeA ? [k, m] : [m, k])]);
        const b = r.normal([...batch, ...(transposeB ? [n, k] : [k, n])]);
        const label = `matmul rank ${batch.length + 2} ${transposeA ? "Aᵀ" : "A"}·${
          transposeB ? "Bᵀ" : "B"
        }`;
        add(label, { _tag: "matmul", transposeA, transposeB }, [a, b], [0, 1]);
      }
    }
  }

  const pairs: [string, number[], number[]][] = [
    ["same shape", [2, 3, 4], [2, 3, 4]],
    ["b over last axis", [2, 3, 4], [4]],
    ["both broadcast", [2, 1, 4], [3, 1]],
    ["a lower rank", [4], [2, 3, 4]],
  ];
  for (const tag of ["add", "sub", "mul"] as const) {
    for (const [what, sa, sb] of pairs) {
      add(`${tag} ${what} [${sa}]·[${sb}]`, { _tag: tag }, [r.normal(sa), r.normal(sb)], [0, 1]);
    }
  }

  add("scale", { _tag: "scale", factor: -0.37 }, [r.normal([3, 4])], [0]);
  add("relu", { _tag: "relu" }, [r.awayFromZero([3, 5])], [0]);
  add("sigmoid", { _tag: "sigmoid" }, [r.normal([3, 5], 2)], [0]);
  add("tanh", { _tag: "tanh" }, [r.normal([3, 5], 2)], [0]);

  // modReLU away from both kinks: |x| ≥ 0.1 and ||x| + b| ≥ 0.05.
  {
    const b = r.normal([4], 0.5);
    const x = r.awayFromZero([2, 3, 4]);
    for (let i = 0; i < x.data.length; i++) {
      const z = Math.abs(x.data[i]) + b.data[i % 4];
      if (Math.abs(z) < 0.05) x.data[i] += Math.sign(x.data[i]) * 0.2;
    }
    add("modrelu bias [4]", { _tag: "modrelu" }, [x, b], [0, 1]);
    const b2 = refTensor([3, 1], [0.3, -0.25, 0.6]);
    const x2 = r.awayFromZero([2, 3, 4], 0.2);
    for (let i = 0; i < x2.data.length; i++) {
      const z = Math.abs(x2.data[i]) + b2.data[Math.floor(i / 4) % 3];
      if (Math.abs(z) < 0.05) x2.data[i] += Math.sign(x2.data[i]) * 0.2;
    }
    add("modrelu bias [3, 1]", { _tag: "modrelu" }, [x2, b2], [0, 1]);
    // sign(0) = 0 even with a positive bias; a kink, so forward only.
    add("modrelu at x = 0", { _tag: "modrelu" }, [
      refTensor([2, 2], [0, 0, -1, 1]),
      refTensor([2], [0.5, -2]),
    ], []);
  }

  add("softmax", { _tag: "softmax" }, [r.normal([2, 3, 5], 2)], [0]);
  add("logSoftmax", { _tag: "logSoftmax" }, [r.normal([2, 3, 5], 2)], [0]);
  {
    // Logits near 90: exp(90) overflows float32, so this fails without the row-max shift.
    const x = r.normal([3, 6], 2);
    for (let i = 0; i < x.data.length; i++) x.data[i] += 90;
    add("logSoftmax logits near 90", { _tag: "logSoftmax" }, [x], [0]);
  }
  add("layerNorm rank 3", { _tag: "layerNorm", eps: 1e-5 }, [
    r.normal([2, 3, 6], 2),
    r.normal([6]),
    r.normal([6]),
  ], [
    0,
    1,
    2,
  ]);
  add("layerNorm rank 1", { _tag: "layerNorm", eps: 1e-3 }, [
    r.normal([6]),
    r.normal([6]),
    r.normal([6]),
  ], [0, 1, 2]);

  add("embedding repeated ids", { _tag: "embedding" }, [
    r.normal([7, 4]),
    refTensor([2, 5], [1, 3, 1, 6, 0, 3, 3, 2, 1, 6], { dtype: "int32" }),
  ], [0]);

  add("reshape float", { _tag: "reshape", shape: [6, 4] }, [r.normal([2, 3, 4])], [0]);
  add("reshape int32", { _tag: "reshape", shape: [6] }, [r.ids([2, 3], 9)], []);
  add("transpose rank 3", { _tag: "transpose", perm: [2, 0, 1] }, [r.normal([2, 3, 4])], [0]);
  add("transpose rank 4", { _tag: "transpose", perm: [0, 2, 1, 3] }, [r.normal([2, 3, 4, 5])], [0]);

  add("concat axis 0", { _tag: "concat", axis: 0 }, [
    r.normal([2, 3]),
    r.normal([1, 3]),
    r.normal([3, 3]),
  ], [0, 1, 2]);
  add("concat axis 1", { _tag: "concat", axis: 1 }, [r.normal([2, 1, 4]), r.normal([2, 3, 4])], [
    0,
    1,
  ]);
  add("concat axis 2", { _tag: "concat", axis: 2 }, [
    r.normal([2, 3, 1]),
    r.normal([2, 3, 2]),
    r.normal([2, 3, 3]),
  ], [
    0,
    1,
    2,
  ]);
  add("concat one input", { _tag: "concat", axis: 1 }, [r.normal([2, 3])], [0]);
  add("concat int32", { _tag: "concat", axis: 0 }, [r.ids([2], 5), r.ids([3], 5)], []);

  add("slice rank 3", { _tag: "slice", begin: [1, 0, 2], size: [2, 3, 2] }, [r.normal([3, 4, 5])], [
    0,
  ]);
  add("slice rank 2", { _tag: "slice", begin: [1, 2], size: [3, 3] }, [r.normal([4, 6])], [0]);

  for (const axis of [0, 1, 2]) {
    add(`mean axis ${axis}`, { _tag: "mean", axis }, [r.normal([2, 3, 4])], [0]);
  }

  add("causalMask S < T", { _tag: "causalMask" }, [r.normal([2, 3, 5])], [0]);
  add("causalMask S = T rank 4", { _tag: "causalMask" }, [r.normal([2, 2, 4, 4])], [0]);

  add("relShift S < T", { _tag: "relShift" }, [r.normal([2, 3, 5])], [0]);
  add("relShift rank 4", { _tag: "relShift" }, [r.normal([2, 2, 4, 6])], [0]);
  add("relShift S = T", { _tag: "relShift" }, [r.normal([3, 3, 3])], [0]);
  add("relShift S = 1", { _tag: "relShift" }, [r.normal([1, 4])], [0]);

  add("crossEntropy", { _tag: "crossEntropy" }, [
    r.normal([6, 7], 2),
    refTensor([6], [0, 6, 3, 3, 1, 6], { dtype: "int32" }),
  ], [0]);
  // Rows long enough for the fused kernel's SIMD loops, with a ragged tail (37 = 4·8 + 5).
  add("crossEntropy wide rows", { _tag: "crossEntropy" }, [
    r.normal([4, 37], 3),
    refTensor([4], [36, 0, 17, 32], { dtype: "int32" }),
  ], [0]);
  // Logits far from 0 (softmax near one-hot): the shift by the row max must hold.
  add("crossEntropy large logits", { _tag: "crossEntropy" }, [
    r.normal([3, 24], 40),
    refTensor([3], [5, 23, 0], { dtype: "int32" }),
  ], [0]);

  add("dropout (not training)", { _tag: "dropout", rate: 0.3 }, [r.normal([3, 4])], [0]);
  add("stopGradient", { _tag: "stopGradient" }, [r.normal([3, 4])], []);
  // Drawn ids (no gradient): greedy, and top-3 at a temperature, over rows of well-apart logits.
  for (const [temperature, topK] of [[0, 0], [0.8, 3]]) {
    add(`sample T ${temperature} top-${topK}`, { _tag: "sample", temperature, topK }, [
      r.normal([4, 9], 3),
      refTensor([4], [0.05, 0.4, 0.7, 0.99]),
    ], []);
  }
  return cases;
};

/**
 * Mixed error `max_i |a_i − b_i| / max(|b_i|, floor)`: relative where the
 * reference entry is at least `floor` in magnitude, absolute (scaled by
 * 1/floor) below it.
 */
export const mixedError = (a: ArrayLike<number>, b: ArrayLike<number>, floor: number): number => {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), floor));
  }
  return worst;
};

/** `max |a − b| / max |b|` (∞-norm relative error); `max |a|` when b is all zero. */
export const normError = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let diff = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return scale === 0 ? diff : diff / scale;
};

const asFloat64 = (t: RefTensor): RefTensor =>
  t.dtype === "int32" ? t : { shape: t.shape, dtype: t.dtype, data: Float64Array.from(t.data) };

/**
 * Central finite differences of `sum(w ⊙ op(inputs))` with respect to input
 * `k`, on the float64 interpreter. The difference is taken per output entry
 * before weighting, so entries the perturbation does not touch cancel
 * exactly; that keeps FD accurate next to causalMask's −1e9.
 */
export const finiteDiff = (
  op: Op,
  inputs: readonly RefTensor[],
  w: ArrayLike<number>,
  k: number,
  h = 1e-3,
) => {
  const base = inputs.map(asFloat64);
  const ctx = { precision: "float64", training: false } as const;
  const x = base[k].data;
  const g = new Float64Array(x.length);
  for (let j = 0; j < x.length; j++) {
    const x0 = x[j];
    x[j] = x0 + h;
    const yp = evalRef(op, base, ctx).data;
    x[j] = x0 - h;
    const ym = evalRef(op, base, ctx).data;
    x[j] = x0;
    let s = 0;
    for (let i = 0; i < yp.length; i++) s += w[i] * (yp[i] - ym[i]);
    g[j] = s / (2 * h);
  }
  return g;
};

/**
 * A tracer for a small language-model graph, with its first inputs: the
 * embedding table [vocab, d] ("embed"), token ids [2, 3] ("tokens") and
 * their targets [6] ("targets").
 */
export const lmTracer = (vocab: number, d: number) => {
  const tr = new Tracer();
  const ops = tr.ops("model");
  const table = tr.input("embed", "param", [vocab, d]);
  const ids = tr.input("tokens", "data", [2, 3], "int32");
  const targets = tr.input("targets", "data", [6], "int32");
  return { tr, ops, table, ids, targets };
};
