/**
 * A training state as checkpoint tensors and back, bit for bit: parameters,
 * AdamW moments, NC-GRU's host-side Cayley state and the carried memory.
 *
 * The checkpoint format stores float32 only. NC-GRU keeps its skew-symmetric
 * generator A, the inverse (I + A)⁻¹ and its own Adam moments as
 * `Float64Array`s; rounding them to float32 would make a resumed run drift
 * from the uninterrupted one. They are stored losslessly by reinterpreting
 * the 8 bytes of each float64 as two float32 words ({@linkcode f64ToTensor}):
 * the checkpoint code copies payload bytes without ever reading them as
 * numbers, so no bit pattern is altered on the way.
 *
 * Optimizer tensor names: `m:<param path>`, `v:<param path>` for AdamW, and
 * `cayley:<U path>:<a|inv|m|v|d>` (float64 pairs) for each orthogonal matrix.
 * The optimizer's step count is the scalar `step`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { f64ToTensor, tensorToF64 } from "./snapshot.ts";
 * const x = Float64Array.of(Math.PI, -1e-300, 1 / 3);
 * const t = f64ToTensor(x, [3]); // { shape: [3, 2], data: Float32Array(6) }
 * assert.deepEqual(Array.from(tensorToF64(t)), Array.from(x));
 * ```
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { initOptimizer, type OptState } from "../../core/optim.ts";
import type { ModelState, Program, Tensor as TfTensor } from "../../core/program.ts";
import { flattenParams, unflattenParams } from "../../core/params.ts";
import type { TrainState } from "../../core/train.ts";
import { tf } from "../../ops/tf.ts";
import { isParamSpec } from "../../spec/params.ts";
import { flatten } from "../../spec/tree.ts";
import type { Tensor, Tensors } from "./checkpoint_format.ts";

/**
 * A float64 array of `shape` as a float32 checkpoint tensor of shape
 * `[...shape, 2]` holding the same bytes (lossless; see the module doc).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { f64ToTensor } from "./snapshot.ts";
 * assert.deepEqual(f64ToTensor(new Float64Array(4), [2, 2]).shape, [2, 2, 2]);
 * ```
 */
export function f64ToTensor(x: Float64Array, shape: readonly number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n !== x.length) {
    throw new RangeError(`f64ToTensor: ${x.length} values do not fill [${shape.join(", ")}]`);
  }
  // A copy of the bytes, viewed as float32 words; never read as numbers.
  const bytes = new Uint8Array(x.buffer, x.byteOffset, x.byteLength).slice();
  return { shape: [...shape, 2], data: new Float32Array(bytes.buffer) };
}

/**
 * The float64 array a {@linkcode f64ToTensor} tensor holds (a fresh copy;
 * works on unaligned views).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { f64ToTensor, tensorToF64 } from "./snapshot.ts";
 * const x = Float64Array.of(0.1, 0.2);
 * assert.equal(tensorToF64(f64ToTensor(x, [2]))[1], 0.2);
 * ```
 */
export function tensorToF64(t: Tensor): Float64Array {
  const d = t.data;
  if (t.shape[t.shape.length - 1] !== 2 || d.length % 2 !== 0) {
    throw new RangeError(
      `tensorToF64: expected a last dimension of 2, got [${t.shape.join(", ")}]`,
    );
  }
  const bytes = new Uint8Array(d.buffer, d.byteOffset, d.byteLength).slice();
  return new Float64Array(bytes.buffer);
}

const hostTensor = (t: TfTensor): Tensor => ({
  shape: [...t.shape],
  // A copy: the cpu backend's dataSync returns its own storage.
  data: new Float32Array(t.dataSync() as Float32Array),
});

/**
 * The tensor groups of a checkpoint for a training state.
 *
 * @example
 * ```ts
 * import type { TrainingSnapshot } from "./snapshot.ts";
 * const count = (s: TrainingSnapshot) => Object.keys(s.params).length;
 * ```
 */
export interface TrainingSnapshot {
  /** Every parameter leaf (graph and auxiliary) by path. */
  readonly params: Tensors;
  /** AdamW moments, the Cayley state, and the optimizer's step count. */
  readonly optimizer: {
    readonly scalars: Readonly<Record<string, number>>;
    readonly tensors: Tensors;
  };
  /** The carried model state (memory, XL cache) by name. */
  readonly memory: Tensors;
}

/**
 * Copies a training state to host memory as checkpoint tensors. Does not
 * consume or change `ts`.
 *
 * @example
 * ```ts
 * import type { Program } from "../../core/program.ts";
 * import type { TrainState } from "../../core/train.ts";
 * import { snapshotTraining } from "./snapshot.ts";
 * const paramCount = (p: Program, ts: TrainState) =>
 *   Object.values(snapshotTraining(p, ts).params).reduce((n, t) => n + t.data.length, 0);
 * ```
 */
export function snapshotTraining(_program: Program, ts: TrainState): TrainingSnapshot {
  const params: Record<string, Tensor> = {};
  for (const [path, t] of Object.entries(flattenParams(ts.params))) params[path] = hostTensor(t);
  const tensors: Record<string, Tensor> = {};
  for (const [path, t] of Object.entries(ts.opt.m)) tensors[`m:${path}`] = hostTensor(t);
  for (const [path, t] of Object.entries(ts.opt.v)) tensors[`v:${path}`] = hostTensor(t);
  for (const c of ts.opt.cayley) {
    const sq = [c.n, c.n];
    tensors[`cayley:${c.uPath}:a`] = f64ToTensor(c.a, sq);
    tensors[`cayley:${c.uPath}:inv`] = f64ToTensor(c.inv, sq);
    tensors[`cayley:${c.uPath}:m`] = f64ToTensor(c.m, sq);
    tensors[`cayley:${c.uPath}:v`] = f64ToTensor(c.v, sq);
    tensors[`cayley:${c.uPath}:d`] = f64ToTensor(c.d, [c.n]);
  }
  const memory: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(ts.memory)) memory[name] = hostTensor(t);
  return { params, optimizer: { scalars: { step: ts.opt.step }, tensors }, memory };
}

const sameShape = (a: readonly number[], b: readonly number[]): boolean =>
  a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * Rebuilds a training state at `step` from checkpoint tensors, checking that
 * every parameter and optimizer tensor the program's layout needs is there
 * with the right shape. `Left(reason)` when the snapshot does not fit the
 * program (a different model). The state owns fresh tensors.
 *
 * @example
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import type { Program } from "../../core/program.ts";
 * import type { TrainState } from "../../core/train.ts";
 * import { restoreTraining, snapshotTraining } from "./snapshot.ts";
 * const copy = (p: Program, ts: TrainState): TrainState => {
 *   const r = restoreTraining(p, snapshotTraining(p, ts), ts.step);
 *   if (E.isLeft(r)) throw new Error(r.left);
 *   return r.right;
 * };
 * ```
 */
export function restoreTraining(
  program: Program,
  snap: TrainingSnapshot,
  step: number,
): E.Either<string, TrainState> {
  const created: TfTensor[] = [];
  const device = (t: Tensor): TfTensor => {
    const x = tf.tensor(t.data.slice(), [...t.shape], "float32");
    created.push(x);
    return x;
  };
  const fail = (reason: string): E.Either<string, TrainState> => {
    for (const t of created) t.dispose();
    return E.left(reason);
  };
  // Parameters: exactly the layout's leaves, with the layout's shapes.
  const expected = new Map(flatten(program.layout, isParamSpec));
  const leaves: Record<string, TfTensor> = {};
  for (const [path, p] of expected) {
    const saved = snap.params[path];
    if (saved === undefined) return fail(`no parameter ${path} in the checkpoint`);
    if (!sameShape(saved.shape, p.shape)) {
      return fail(
        `parameter ${path} is [${saved.shape.join(", ")}] in the checkpoint, ` +
          `the model has [${p.shape.join(", ")}]`,
      );
    }
    leaves[path] = device(saved);
  }
  const extra = Object.keys(snap.params).find((p) => !expected.has(p));
  if (extra !== undefined) return fail(`the checkpoint has a parameter ${extra} the model lacks`);
  const params = unflattenParams(program.layout, leaves);

  // Optimizer: the structure of a fresh state, filled with the saved values.
  const fresh = initOptimizer(program.layout, params);
  const replaceAll = (kind: "m" | "v"): Record<string, TfTensor> | string => {
    const out: Record<string, TfTensor> = {};
    for (const [path, zero] of Object.entries(fresh[kind])) {
      const saved = snap.optimizer.tensors[`${kind}:${path}`];
      if (saved === undefined || !sameShape(saved.shape, zero.shape)) {
        return `optimizer tensor ${kind}:${path} is missing or has the wrong shape`;
      }
      out[path] = device(saved);
    }
    return out;
  };
  const m = replaceAll("m");
  const v = typeof m === "string" ? m : replaceAll("v");
  for (const t of [...Object.values(fresh.m), ...Object.values(fresh.v)]) t.dispose();
  if (typeof m === "string") return fail(m);
  if (typeof v === "string") return fail(v);
  const cayley: OptState["cayley"][number][] = [];
  for (const c of fresh.cayley) {
    const get = (k: string, n: number): Float64Array | null => {
      const saved = snap.optimizer.tensors[`cayley:${c.uPath}:${k}`];
      if (saved === undefined) return null;
      const x = tensorToF64(saved);
      return x.length === n ? x : null;
    };
    const nn = c.n * c.n;
    const a = get("a", nn), inv = get("inv", nn), cm = get("m", nn), cv = get("v", nn);
    const d = get("d", c.n);
    if (a === null || inv === null || cm === null || cv === null || d === null) {
      return fail(`the Cayley state of ${c.uPath} is missing or has the wrong size`);
    }
    cayley.push({ ...c, a, inv, m: cm, v: cv, d });
  }
  const optStep = snap.optimizer.scalars.step;
  if (optStep === undefined || !Number.isSafeInteger(optStep) || optStep < 0) {
    return fail("the optimizer step count is missing");
  }

  const memory: Record<string, TfTensor> = {};
  for (const [name, t] of Object.entries(snap.memory)) memory[name] = device(t);
  const opt: OptState = { step: optStep, m, v, cayley };
  return E.right({ params, opt, memory: memory as ModelState, step });
}
