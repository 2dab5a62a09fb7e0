/**
 * Running segment graphs: a model's `forward`, `loss` and `trainStep` over a
 * window of segments, carrying the state from one segment to the next and
 * cutting its gradient every `bpttSegments` segments.
 *
 * @module
 */
import { adaptiveFeeds, adaptiveGeometry, planAdaptiveTargets } from "../spec/adaptive.ts";
import { inputsReaching } from "../spec/graph.ts";
import type { ModelSpec } from "../spec/types.ts";
import { paramLayout } from "../spec/layout.ts";
import { isParamSpec } from "../spec/params.ts";
import { flatten } from "../spec/tree.ts";
import { evalTf, type LowerCtx } from "../ops/lower.ts";
import { tf } from "../ops/tf.ts";
import { flattenParams, unflattenParams } from "./params.ts";
import type { Executables } from "./pipeline.ts";
import type { ModelState, Program, Tensor } from "./program.ts";
import { mixSeed } from "./random.ts";
import { dataInputName } from "./trace.ts";

/** The context of every evaluation (no dropout). */
export const evalCtx: LowerCtx = { training: false, seed: () => 0 };

/** The `state:` outputs of a graph run, without the prefix. */
export const stateOf = (out: Record<string, Tensor>): ModelState =>
  Object.fromEntries(
    Object.entries(out).filter(([k]) => k.startsWith("state:")).map(([k, v]) => [k.slice(6), v]),
  );

/** Transformer-XL's carried cache length in `state` (0 for every other model). */
export const cacheLenOf = (spec: ModelSpec, state: ModelState): number =>
  spec._tag === "xl" && state["cache[0]"] !== undefined ? state["cache[0]"].shape[1]! : 0;

/** What {@linkcode segmentRunner} gives a program. */
export interface SegmentRunner extends Pick<Program, "forward" | "loss" | "trainStep"> {
  /**
   * Run one segment graph on `tokens` (a whole segment or less) with
   * `targets` when a loss is wanted. Returns every output of the graph.
   */
  segment(
    flat: Record<string, Tensor>,
    state: ModelState,
    tokens: Tensor,
    targets: Tensor | undefined,
    ctx: LowerCtx,
  ): Record<string, Tensor>;
}

/**
 * The segment-level functions of a program compiled from `spec`, running
 * the executables of `exes`. `probeBatch` is the batch of the compiler's
 * probe graph, which `trainStep` reads to learn which parameters a window's
 * loss depends on.
 */
export const segmentRunner = (
  spec: ModelSpec,
  exes: Executables,
  probeBatch: number,
): SegmentRunner => {
  const layout = paramLayout(spec);
  const graphPaths = flatten(layout, isParamSpec).filter(([, p]) => p.role === "graph").map((
    [p],
  ) => p);
  const xlCache = spec._tag === "xl" ? spec.memLen : 0;
  const adaptive = spec.readout._tag === "adaptive" ? adaptiveGeometry(spec.readout, spec) : null;
  const dataName = dataInputName(spec);
  const featureDim = spec.input?._tag === "features" ? spec.input.dim : null;
  /** Rejects a data tensor of the wrong kind with a message naming both. */
  const checkData = (x: Tensor, what: string): void => {
    const ok = featureDim === null
      ? x.rank === 2 && x.dtype === "int32"
      : x.rank === 3 && x.dtype === "float32" && x.shape[2] === featureDim;
    if (!ok) {
      const want = featureDim === null
        ? "token ids [B, L] int32"
        : `frames [B, L, ${featureDim}] float32 (model.input.dim = ${featureDim})`;
      throw new TypeError(
        `${what}: the model reads ${want}, got [${x.shape.join(", ")}] ${x.dtype}`,
      );
    }
  };
  /** Positions [start, start + len) of data [B, L] or [B, L, F]. */
  const sliceTime = (x: Tensor, start: number, len: number): Tensor =>
    x.rank === 3
      ? tf.slice(x, [0, start, 0], [x.shape[0]!, len, x.shape[2]!])
      : tf.slice(x, [0, start], [x.shape[0]!, len]);

  /** Run one segment. Returns every output of the graph. */
  const segment = (
    flat: Record<string, Tensor>,
    state: ModelState,
    tokens: Tensor,
    targets: Tensor | undefined,
    ctx: LowerCtx,
  ): Record<string, Tensor> => {
    const [b, s] = tokens.shape as [number, number];
    // Adaptive softmax: a tail cluster runs only for the rows whose target is in it.
    const plan = targets !== undefined && adaptive !== null
      ? planAdaptiveTargets(adaptive, targets.dataSync() as Int32Array)
      : null;
    const exe = exes.segment({
      batchSize: b,
      segmentLen: s,
      cacheLen: cacheLenOf(spec, state),
      withLoss: targets !== undefined,
      training: ctx.training,
      ...(plan === null ? {} : { clusterCapacity: plan.capacities }),
    });
    const feeds: Record<string, Tensor> = { ...flat, [dataName]: tokens };
    if (targets !== undefined) feeds.targets = targets;
    if (plan !== null) {
      for (const [name, data] of Object.entries(adaptiveFeeds(plan))) {
        feeds[name] = tf.tensor1d(data, data instanceof Int32Array ? "int32" : "float32");
      }
    }
    for (const [name, t] of Object.entries(state)) feeds[`state:${name}`] = t;
    return exe.run(feeds, ctx);
  };

  /** [start, length] of each segment of a window of `len` tokens; the last may be short. */
  const chunks = (len: number): [number, number][] => {
    const out: [number, number][] = [];
    for (let start = 0; start < len; start += spec.segmentLen) {
      out.push([start, Math.min(spec.segmentLen, len - start)]);
    }
    return out;
  };

  const forward: Program["forward"] = (params, state, tokens) =>
    tf.tidy(() => {
      checkData(tokens, "forward");
      const flat = flattenParams(params);
      const len = tokens.shape[1]!;
      let st = state;
      const logits: Tensor[] = [];
      for (const [start, s] of chunks(len)) {
        const tok = sliceTime(tokens, start, s);
        const out = segment(flat, st, tok, undefined, evalCtx);
        logits.push(out.logits);
        st = stateOf(out);
      }
      // One segment needs no concat (wasm's Concat of one tensor copies it: 7 ms for [20, 35, 10000]).
      const all = spec.readout._tag === "classifier" || logits.length === 1
        ? logits[logits.length - 1]
        : tf.concat(logits, 1);
      return { logits: all, state: st };
    });

  const loss: Program["loss"] = (params, state, batch, opts) => {
    checkData(batch.tokens, "loss");
    const flat = flattenParams(params);
    const [b, len] = batch.tokens.shape as [number, number];
    let counter = 0;
    const ctx: LowerCtx = {
      training: opts.training,
      seed: () => mixSeed(opts.seed ?? 0, counter++),
    };
    let st = state;
    const losses: Tensor[] = [];
    const weights: number[] = [];
    const segs = chunks(len);
    segs.forEach(([start, s], k) => {
      if (k > 0 && k % opts.bpttSegments === 0) {
        // Truncated BPTT: the state keeps its value but no gradient flows back past here.
        st = Object.fromEntries(
          Object.entries(st).map(([n, t]) => [n, evalTf({ _tag: "stopGradient" }, [t], ctx)]),
        );
      }
      const tok = sliceTime(batch.tokens, start, s);
      const last = k === segs.length - 1;
      const tgt = spec.readout._tag !== "classifier"
        ? tf.slice(batch.targets, [0, start], [b, s])
        : last
        ? batch.targets
        : undefined;
      const out = segment(flat, st, tok, tgt, ctx);
      if (out.loss !== undefined) losses.push(out.loss);
      weights.push(s);
      st = stateOf(out);
    });
    // Mean over tokens: segments may differ in length at the end of a split. The
    // arithmetic goes through lowered ops so that it carries their gradients.
    if (spec.readout._tag === "classifier") return { loss: losses[0], state: st };
    const scaled = losses.map((l, i) =>
      evalTf({ _tag: "scale", factor: weights[i] / len }, [l], ctx)
    );
    const total = scaled.reduce((a, c) => evalTf({ _tag: "add" }, [a, c], ctx));
    return { loss: total, state: st };
  };

  /**
   * Parameters the loss of a K-segment window depends on. tfjs refuses to
   * differentiate with respect to an unconnected input, and with K = 1 the
   * memory update of CRT only shapes the next window: those get zero gradients.
   */
  const trainedPaths = (k: number, bpttSegments: number): string[] => {
    const g = exes.segment({
      batchSize: probeBatch,
      segmentLen: spec.segmentLen,
      cacheLen: xlCache,
      withLoss: true,
      training: false,
    }).graph;
    const direct = inputsReaching(g, g.outputs.loss);
    const viaState = new Set<string>();
    if (Math.min(k, bpttSegments) > 1) {
      for (const [name, id] of Object.entries(g.outputs)) {
        if (name.startsWith("state:") && direct.has(name)) {
          for (const p of inputsReaching(g, id)) viaState.add(p);
        }
      }
    }
    return graphPaths.filter((p) => direct.has(p) || viaState.has(p));
  };

  const trainStep: Program["trainStep"] = (params, state, batch, opts) => {
    const flat = flattenParams(params);
    let kept: ModelState = {};
    const k = Math.ceil(batch.tokens.shape[1]! / spec.segmentLen);
    const trained = trainedPaths(k, opts.bpttSegments ?? k);
    const others = Object.fromEntries(
      Object.entries(flat).filter(([p]) => !trained.includes(p)),
    );
    const f = (...xs: Tensor[]): tf.Scalar => {
      const leaves: Record<string, Tensor> = { ...others };
      trained.forEach((p, i) => (leaves[p] = xs[i]));
      const out = loss(unflattenParams(layout, leaves), state, batch, {
        training: true,
        bpttSegments: opts.bpttSegments ?? k,
        ...(opts.seed === undefined ? {} : { seed: opts.seed }),
      });
      kept = Object.fromEntries(Object.entries(out.state).map(([n, t]) => [n, tf.keep(t)]));
      return out.loss as tf.Scalar;
    };
    const { value, grads } = tf.valueAndGrads(f)(trained.map((p) => flat[p]));
    const lossValue = value.dataSync()[0];
    value.dispose();
    const g: Record<string, Tensor> = {};
    for (const p of graphPaths) {
      const i = trained.indexOf(p);
      g[p] = i >= 0 ? grads[i] : tf.zerosLike(flat[p]);
    }
    return { loss: lossValue, grads: g, state: kept };
  };

  return { segment, forward, loss, trainStep };
};

/**
 * Token ids as the int32 tensor [B, L] a program reads: `ids` holds B rows of
 * L tokens, row-major.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { tokenBatch } from "./segments.ts";
 * await startBackend({ backend: "cpu" });
 * const t = tokenBatch([1, 2, 3, 4, 5, 6], 2);
 * assert.deepEqual(t.shape, [2, 3]);
 * t.dispose();
 * ```
 */
export const tokenBatch = (ids: ArrayLike<number>, batchSize: number): Tensor => {
  const len = ids.length / batchSize;
  if (!Number.isInteger(len)) {
    throw new RangeError(`tokenBatch: ${ids.length} ids do not split into ${batchSize} rows`);
  }
  return tf.tensor2d(Int32Array.from(ids), [batchSize, len], "int32");
};
