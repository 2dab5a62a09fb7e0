/**
 * The float64 reference side of the gradient checks on whole programs: one
 * segment through the reference interpreter, the loss of a token window,
 * and central finite differences against a program's gradients.
 *
 * @module
 */
import assert from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import type { Program } from "../core/program.ts";
import { initValues } from "../core/params.ts";
import { defaultPasses, runPasses } from "../core/passes.ts";
import { type TraceOptions, traceSegment } from "../core/trace.ts";
import { interpret, type RefTensor } from "../ops/reference.ts";
import type { tf } from "../ops/tf.ts";
import { adaptiveFeeds, adaptiveGeometry, planAdaptiveTargets } from "../spec/adaptive.ts";
import type { ModelSpec } from "../spec/codecs.ts";

/** Reference tensors by name (feeds, outputs, carried state). */
export type RefTensors = Record<string, RefTensor>;

/** The parameter values of `layout` at `seed` (float32 as the program has them), as float64. */
export const float64Values = (layout: Program["layout"], seed: number): Map<string, Float64Array> =>
  new Map([...initValues(layout, seed)].map(([p, v]) => [p, Float64Array.from(v)]));

/** Zeros of the shapes of a program's (initial) state, as reference tensors. */
export const zeroReferenceState = (state: Record<string, tf.Tensor>): RefTensors =>
  Object.fromEntries(
    Object.entries(state).map((
      [n, v],
    ) => [n, { shape: v.shape, dtype: "float32", data: new Float64Array(v.size) }]),
  );

/**
 * Columns [start, start + s) of each of the `b` rows of `src` (rows of `len`
 * positions, each `width` numbers wide), packed row after row.
 */
export const segmentRows = <T extends Int32Array | Float64Array>(
  src: T,
  b: number,
  len: number,
  start: number,
  s: number,
  width = 1,
): T => {
  const out = new (src.constructor as new (n: number) => T)(b * s * width);
  for (let r = 0; r < b; r++) {
    out.set(src.subarray((r * len + start) * width, (r * len + start + s) * width), r * s * width);
  }
  return out;
};

/**
 * One segment of `spec` (traced with `trace`, the default passes applied)
 * under the reference interpreter in float64: parameters from `values`, the
 * carried `state`, and the segment's `data` feeds. Its outputs and the state
 * it carries on.
 */
export const referenceSegment = (
  spec: ModelSpec,
  values: Map<string, Float64Array>,
  state: RefTensors,
  trace: Omit<TraceOptions, "training">,
  data: RefTensors,
): { out: RefTensors; state: RefTensors } => {
  const { graph } = traceSegment(spec, { ...trace, training: false });
  const g = runPasses(graph, defaultPasses);
  if (E.isLeft(g)) throw new Error(g.left.message);
  const feeds: RefTensors = {};
  for (const n of g.right.nodes) {
    if (n.op._tag !== "input" || n.op.role !== "param") continue;
    feeds[n.op.name] = { shape: n.op.shape, dtype: "float32", data: values.get(n.op.name)! };
  }
  Object.assign(feeds, data);
  for (const [k, v] of Object.entries(state)) feeds[`state:${k}`] = v;
  const out = interpret(g.right, feeds, { precision: "float64" });
  const next = Object.fromEntries(
    Object.entries(out).filter(([k]) => k.startsWith("state:")).map(([k, v]) => [k.slice(6), v]),
  );
  return { out, state: next };
};

/**
 * The mean loss of a window of token segments ([b, len] row-major) under the
 * float64 reference interpreter, threading the state between segments as the
 * program does; an adaptive readout gets its gather plan fed as data.
 */
export const referenceLmLoss = (
  spec: ModelSpec,
  values: Map<string, Float64Array>,
  tokens: Int32Array,
  targets: Int32Array,
  b: number,
  state0: RefTensors,
): number => {
  const len = tokens.length / b, s = spec.segmentLen;
  const geom = spec.readout._tag === "adaptive" ? adaptiveGeometry(spec.readout, spec) : null;
  let state = state0, total = 0;
  for (let start = 0; start < len; start += s) {
    const tgt = segmentRows(targets, b, len, start, s);
    const data: RefTensors = {
      tokens: { shape: [b, s], dtype: "int32", data: segmentRows(tokens, b, len, start, s) },
      targets: { shape: [b, s], dtype: "int32", data: tgt },
    };
    const plan = geom === null ? null : planAdaptiveTargets(geom, tgt);
    for (const [name, x] of Object.entries(plan === null ? {} : adaptiveFeeds(plan))) {
      data[name] = {
        shape: [x.length],
        dtype: x instanceof Int32Array ? "int32" : "float32",
        data: x,
      };
    }
    const cacheLen = state["cache[0]"]?.shape[1] ?? 0;
    const trace = { batchSize: b, segmentLen: s, cacheLen, withLoss: true };
    const r = referenceSegment(
      spec,
      values,
      state,
      plan === null ? trace : { ...trace, clusterCapacity: plan.capacities },
      data,
    );
    total += r.out.loss.data[0];
    state = r.state;
  }
  return total / (len / s);
};

/**
 * ‖grad − fd‖ / max(‖fd‖, 1e-7) over up to `count` entries spread over `v`,
 * fd the central difference of `loss` (which reads `v`) with step `h`; `v`
 * is left as it was.
 */
export const gradientError = (
  grad: ArrayLike<number>,
  v: Float64Array,
  count: number,
  loss: () => number,
  h = 1e-5,
): number => {
  const m = Math.min(count, v.length);
  let num = 0, den = 0;
  for (let j = 0; j < m; j++) {
    const i = Math.floor((j * v.length) / m);
    const orig = v[i];
    v[i] = orig + h;
    const up = loss();
    v[i] = orig - h;
    const down = loss();
    v[i] = orig;
    const fd = (up - down) / (2 * h);
    num += (grad[i] - fd) ** 2;
    den += fd ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-7);
};

/**
 * Assert the relative error of each gradient in `paths` (see
 * {@linkcode gradientError}, up to `count` entries a leaf) is below 2e-3,
 * naming `label` and the path when not.
 */
export const assertGradients = (
  grads: Record<string, tf.Tensor>,
  paths: readonly string[],
  values: Map<string, Float64Array>,
  count: number,
  loss: () => number,
  label = "",
): void => {
  for (const path of paths) {
    const rel = gradientError(grads[path].dataSync(), values.get(path)!, count, loss);
    assert.ok(rel < 2e-3, `${label}${path}: relative gradient error ${rel.toExponential(2)}`);
  }
};
