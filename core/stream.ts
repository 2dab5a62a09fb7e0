/**
 * Streaming inference: feed tokens into an open segment, one or a few at a
 * time, reusing the keys and values the segment's earlier tokens cached
 * (the step graph of `streamStep`, spec/stream.ts), and advance the carried
 * state each time a segment fills. The state a stream holds is bounded by
 * the segment length, however long the stream runs.
 *
 * @module
 */
import type { ModelSpec } from "../spec/types.ts";
import { stateShapes } from "../spec/stages.ts";
import { canStream, type StepReadout } from "../spec/stream.ts";
import { shareHandle, tf } from "../ops/tf.ts";
import { flattenParams } from "./params.ts";
import type { Executables } from "./pipeline.ts";
import type {
  DrawOptions,
  InferOptions,
  ModelState,
  Params,
  Program,
  Stream,
  Tensor,
} from "./program.ts";
import { drawToken } from "../ops/reference.ts";
import { cacheLenOf, evalCtx, type SegmentRunner, stateOf } from "./segments.ts";

/** Prefix of a stream state's open-segment caches. */
const OPEN = "open:";

/** The parameter tensors of a flattened tree, as a set (kept while the tree lives). */
const paramSets = new WeakMap<Readonly<Record<string, Tensor>>, ReadonlySet<Tensor>>();
const paramSet = (flat: Readonly<Record<string, Tensor>>): ReadonlySet<Tensor> => {
  let set = paramSets.get(flat);
  if (set === undefined) paramSets.set(flat, set = new Set(Object.values(flat)));
  return set;
};

/** Throw a RangeError naming `what` unless the temperature is ≥ 0 and topK an integer ≥ 0. */
export const checkDrawOptions = (
  what: string,
  draw: { readonly temperature: number; readonly topK: number },
): void => {
  if (!(draw.temperature >= 0) || !(Number.isInteger(draw.topK) && draw.topK >= 0)) {
    throw new RangeError(
      `${what}: temperature ${draw.temperature} must be ≥ 0 and topK ${draw.topK} an integer ≥ 0`,
    );
  }
};

/** The state a stream of `batchSize` rows starts from: zeros of the spec's state shapes. */
export const initialState = (spec: ModelSpec, batchSize: number): ModelState =>
  Object.fromEntries(
    Object.entries(stateShapes(spec, batchSize)).map(([n, s]) => [n, tf.zeros(s as number[])]),
  );

/** Dispose every tensor of a state or stream state. */
export const disposeState = (s: ModelState): void => {
  for (const t of Object.values(s)) t.dispose();
};

const cloneState = (s: ModelState): ModelState =>
  Object.fromEntries(Object.entries(s).map(([k, t]) => [k, tf.clone(t)]));

/** The carried state and the open segment's caches (`open:` names) of a stream's state. */
const splitStream = (
  s: ModelState,
): { carried: Record<string, Tensor>; open: Record<string, Tensor> } => {
  const carried: Record<string, Tensor> = {};
  const open: Record<string, Tensor> = {};
  for (const [k, t] of Object.entries(s)) {
    if (k.startsWith(OPEN)) open[k.slice(OPEN.length)] = t;
    else carried[k] = t;
  }
  return { carried, open };
};

/** The entries of `out` whose names start with `prefix`, without it. */
const prefixed = (out: Record<string, Tensor>, prefix: string): Record<string, Tensor> =>
  Object.fromEntries(
    Object.entries(out).filter(([k]) => k.startsWith(prefix)).map((
      [k, t],
    ) => [k.slice(prefix.length), t]),
  );

/**
 * The streaming functions of a program compiled from `spec`: step graphs
 * come from `exes`, and models the step cannot run (classifiers) re-run
 * the open prefix through `segments`.
 */
export const streamRunner = (
  spec: ModelSpec,
  exes: Executables,
  segments: SegmentRunner,
): Pick<Program, "openStream" | "inferStep" | "drawStep"> => {
  const featureDim = spec.input?._tag === "features" ? spec.input.dim : null;

  const openStream: Program["openStream"] = (batchSize) => ({
    state: initialState(spec, batchSize),
    open: new Int32Array(0),
    batchSize,
  });

  const inferStep: Program["inferStep"] = (params, stream, tokens, opts = {}) => {
    const r = advance(params, stream, tokens, opts);
    return { logits: r.out, stream: r.stream };
  };

  const drawStep: Program["drawStep"] = (params, stream, tokens, draw) => {
    const b = stream.batchSize;
    if (draw.uniforms.length !== b || !Array.from(draw.uniforms).every((u) => u >= 0 && u < 1)) {
      throw new RangeError(`drawStep: ${b} uniforms in [0, 1) are needed, one per stream`);
    }
    checkDrawOptions("drawStep", draw);
    if (!canStream(spec)) {
      // No step graph for this model: logits, then the same draw as the sample op's.
      const r = advance(params, stream, tokens, { readout: "last" });
      const v = spec.vocabSize, x = r.out.dataSync();
      r.out.dispose();
      const ids = Int32Array.from(
        { length: b },
        (_, i) => drawToken(x.subarray(i * v, (i + 1) * v), draw, draw.uniforms[i]),
      );
      return { tokens: ids, stream: r.stream };
    }
    const r = advance(params, stream, tokens, { readout: "last" }, draw);
    const ids = r.out.dataSync() as Int32Array;
    r.out.dispose();
    return { tokens: Int32Array.from(ids), stream: r.stream };
  };

  /** Feed `tokens`; the last piece read out as `opts` (or drawn, with `draw`) and the new stream. */
  const advance = (
    params: Params,
    stream: Stream,
    tokens: Int32Array,
    opts: InferOptions,
    draw?: DrawOptions,
  ): { out: Tensor; stream: Stream } => {
    if (featureDim !== null) {
      throw new TypeError(
        "inferStep streams token ids; this model reads frames (model.input is features): " +
          "call forward on each chunk of frames and pass the returned state on",
      );
    }
    const b = stream.batchSize;
    const n = tokens.length / b;
    if (!Number.isInteger(n) || n === 0) {
      throw new RangeError(
        `inferStep: ${tokens.length} tokens do not split into ${b} non-empty rows`,
      );
    }
    for (let i = 0; i < tokens.length; i++) {
      const id = tokens[i];
      if (!(id >= 0 && id < spec.vocabSize)) {
        throw new RangeError(
          `inferStep: token ${id} at index ${i} is outside the vocabulary [0, ${spec.vocabSize})`,
        );
      }
    }
    const readout = opts.readout ?? "all";
    const { carried, open } = splitStream(stream.state);
    if (opts.recompute === true || !canStream(spec)) {
      const r = recomputeStep(params, { ...stream, state: carried }, tokens, n, readout);
      return { out: r.logits, stream: r.stream };
    }
    const flat = flattenParams(params);
    const sLen = spec.segmentLen;
    const inputs = new Set<Tensor>(Object.values(stream.state));
    /** Dispose the tensors of `s` this call created (never the caller's). */
    const release = (s: Record<string, Tensor>): void => {
      for (const t of Object.values(s)) if (!inputs.has(t)) t.dispose();
    };
    let state = carried;
    let caches = open;
    let openIds = stream.open;
    let t0 = openIds.length / b;
    if (t0 > 0 && Object.keys(caches).length === 0) {
      // Open tokens but no caches (the stream was advanced with `recompute`): rebuild them once.
      caches = prefixed(
        cachedStep(flat, state, {}, openIds, { start: 0, count: t0 }, "none"),
        OPEN,
      );
    }
    const pieces: Tensor[] = [];
    let fed = 0;
    while (fed < n) {
      const take = Math.min(n - fed, sLen - t0);
      const ids = new Int32Array(b * take); // tokens[:, fed : fed + take]
      for (let r = 0; r < b; r++) {
        ids.set(tokens.subarray(r * n + fed, r * n + fed + take), r * take);
      }
      const last = fed + take === n;
      const rows = readout === "all" ? "all" : last ? "last" : "none";
      const out = cachedStep(
        flat,
        state,
        caches,
        ids,
        { start: t0, count: take },
        rows,
        last ? draw : undefined,
      );
      if (out.logits !== undefined) pieces.push(out.logits);
      if (out.tokens !== undefined) pieces.push(out.tokens);
      release(caches);
      const t1 = t0 + take;
      if (t1 === sLen) {
        // The segment closed: its state becomes the carried state.
        release(state);
        state = prefixed(out, "state:");
        caches = {};
        openIds = new Int32Array(0);
        t0 = 0;
      } else {
        caches = prefixed(out, OPEN);
        const grown = new Int32Array(b * t1); // open ++ ids, row by row
        for (let r = 0; r < b; r++) {
          grown.set(openIds.subarray(r * t0, (r + 1) * t0), r * t1);
          grown.set(ids.subarray(r * take, (r + 1) * take), r * t1 + t0);
        }
        openIds = grown;
        t0 = t1;
      }
      fed += take;
    }
    const logits = pieces.length === 1 ? pieces[0] : tf.concat(pieces, 1);
    if (pieces.length > 1) { for (const p of pieces) p.dispose(); }
    // What did not change is still the caller's: hand back new handles on the same data.
    const fresh = (t: Tensor): Tensor => (inputs.has(t) ? shareHandle(t) : t);
    const next: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(state)) next[k] = fresh(t);
    for (const [k, t] of Object.entries(caches)) next[`${OPEN}${k}`] = fresh(t);
    return { out: logits, stream: { state: next, open: openIds, batchSize: b } };
  };

  /**
   * One step of spec/stream.ts: `ids` [B, count] at position `start` of the
   * open segment. Returns the graph's outputs (`logits`, `open:*`, `state:*`),
   * all fresh tensors.
   */
  const cachedStep = (
    flat: Record<string, Tensor>,
    state: Record<string, Tensor>,
    open: Record<string, Tensor>,
    ids: Int32Array,
    at: { start: number; count: number },
    readout: StepReadout,
    draw?: DrawOptions,
  ): Record<string, Tensor> => {
    const b = ids.length / at.count;
    const exe = exes.step({
      batchSize: b,
      ...at,
      cacheLen: cacheLenOf(spec, state),
      readout,
      ...(draw === undefined ? {} : { draw: { temperature: draw.temperature, topK: draw.topK } }),
    });
    // A step made only of single-kernel regions (a mid-segment token on wasm) runs without the
    // engine: the same kernels, none of its per-call work.
    const direct = exe.direct(tf.getBackend());
    const made: Tensor[] = [];
    const run = (): Record<string, Tensor> => {
      // The direct step has the parameters fixed (looked up and checked once): its feeds are only
      // what changes. For the engine's step the parameters are the feeds' prototype: a token's
      // step then copies none of the ~40 parameter entries (a spread cost more than the ids).
      const feeds: Record<string, Tensor> = direct === null ? Object.create(flat) : {};
      made.push(feeds.tokens = tf.tensor2d(ids, [b, at.count], "int32"));
      if (draw !== undefined) made.push(feeds.uniforms = tf.tensor1d(draw.uniforms, "float32"));
      const fed = new Set<Tensor>();
      for (const [name, t] of Object.entries(state)) fed.add(feeds[`state:${name}`] = t);
      for (const [name, t] of Object.entries(open)) fed.add(feeds[`open:${name}`] = t);
      const out = (direct === null ? exe.run : direct.withFixed(flat))(feeds, evalCtx);
      // An output that is a feed (a cache passed on unchanged, or a parameter) is the caller's
      // tensor: new handle.
      const params = paramSet(flat);
      const theirs = (t: Tensor) => fed.has(t) || params.has(t) || made.includes(t);
      return Object.fromEntries(
        Object.entries(out).map(([name, t]) => [name, theirs(t) ? shareHandle(t) : t]),
      );
    };
    if (direct === null) return tf.tidy(run);
    try {
      return run();
    } finally {
      for (const t of made) t.dispose();
    }
  };

  /**
   * The step without caches: re-run the open segment's prefix with the new
   * tokens (`InferOptions.recompute`, and models `streamStep` cannot run).
   */
  const recomputeStep = (
    params: Params,
    stream: Stream,
    tokens: Int32Array,
    n: number,
    readout: "all" | "last",
  ): { logits: Tensor; stream: Stream } => {
    const b = stream.batchSize;
    const flat = flattenParams(params);
    const sLen = spec.segmentLen;
    let state = stream.state;
    let open = stream.open;
    const pieces: Tensor[] = [];
    let fed = 0;
    while (fed < n) {
      const t0 = open.length / b;
      const take = Math.min(n - fed, sLen - t0);
      // open ++ tokens[:, fed : fed + take]
      const t1 = t0 + take;
      const buf = new Int32Array(b * t1);
      for (let r = 0; r < b; r++) {
        buf.set(open.subarray(r * t0, (r + 1) * t0), r * t1);
        buf.set(tokens.subarray(r * n + fed, r * n + fed + take), r * t1 + t0);
      }
      const last = fed + take === n;
      const out = tf.tidy(() => {
        const tok = tf.tensor2d(buf, [b, t1], "int32");
        const o = segments.segment(flat, state, tok, undefined, evalCtx);
        const logits = spec.readout._tag === "classifier"
          ? o.logits
          : readout === "all"
          ? tf.slice(o.logits, [0, t0, 0], [b, take, -1])
          : last
          ? tf.slice(o.logits, [0, t1 - 1, 0], [b, 1, -1])
          : undefined;
        return { ...(logits === undefined ? {} : { logits }), state: stateOf(o) };
      });
      if (out.logits !== undefined) pieces.push(out.logits);
      if (t1 === sLen) {
        // The segment closed: its state becomes the carried state.
        if (state !== stream.state) disposeState(state);
        state = out.state;
        open = new Int32Array(0);
      } else {
        disposeState(out.state);
        open = buf;
      }
      fed += take;
    }
    const logits = pieces.length === 1
      ? pieces[0]
      : spec.readout._tag !== "classifier"
      ? tf.concat(pieces, 1)
      : tf.clone(pieces[pieces.length - 1]);
    if (pieces.length > 1) { for (const p of pieces) p.dispose(); }
    return {
      logits,
      stream: { state: state === stream.state ? cloneState(state) : state, open, batchSize: b },
    };
  };

  return { openStream, inferStep, drawStep };
};
