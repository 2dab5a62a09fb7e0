/**
 * spec → graph: trace one segment of a model into the IR, or one streaming
 * step ({@linkcode traceStreamStep}).
 *
 * Graph inputs: every graph-role parameter (named by its path, e.g.
 * `blocks[0].attn.wq`), `tokens` [B, S] int32 — or `frames` [B, S, F] float32
 * for a model with feature input — `targets` when a loss is traced (with an
 * adaptive softmax also its gather plan, `adaptive:head` and
 * `adaptive:cluster[i].rows|targets|weights`), and each carried state tensor
 * as `state:<name>`. Outputs: `logits` (not for an adaptive softmax's loss
 * graph, which never builds the full distribution), `loss` (when traced) and
 * `state:<name>`.
 *
 * @module
 */
import type { ModelSpec } from "../spec/types.ts";
import { runSegment, stateShapes } from "../spec/stages.ts";
import { type ModelParams, paramLayout } from "../spec/layout.ts";
import { openShapes, type StepReadout, streamStep } from "../spec/stream.ts";
import { adaptiveGeometry, adaptiveInputs, type AdaptiveTargets } from "../spec/adaptive.ts";
import { isParamSpec, type ParamSpec } from "../spec/params.ts";
import { flatten, mapTree } from "../spec/tree.ts";
import { type Graph, type Sym, Tracer } from "../spec/graph.ts";

/**
 * What to trace: one segment at a given batch size and length.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { traceSegment, type TraceOptions } from "./trace.ts";
 * import { referenceCrt } from "../spec/reference_specs.ts";
 *
 * const training: TraceOptions = { batchSize: 2, segmentLen: 35, withLoss: true, training: true };
 * const { graph } = traceSegment(referenceCrt, training);
 * assert.ok(graph.nodes.some((n) => n.op._tag === "dropout"));
 * ```
 */
export interface TraceOptions {
  /** Batch size B. */
  readonly batchSize: number;
  /** Tokens in this segment (≤ the spec's segmentLen). */
  readonly segmentLen: number;
  /** Transformer-XL: length of the incoming cache (0 at the start of a stream). */
  readonly cacheLen?: number;
  /** Trace the loss (needs targets) or only logits and state. */
  readonly withLoss: boolean;
  /** Dropout active. */
  readonly training: boolean;
  /**
   * Adaptive softmax with a loss: rows gathered per tail cluster (see
   * `clusterCapacity` in spec/adaptive.ts). Default: every row (B·S) in
   * every cluster, the largest graph (the compiler's probe).
   */
  readonly clusterCapacity?: readonly number[];
  /** q8 parameter leaves (default none): see {@linkcode QuantizedParams}. */
  readonly quantized?: QuantizedParams;
}

/**
 * A traced segment: the graph and the parameter paths it reads.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type TracedSegment, traceSegment } from "./trace.ts";
 * import { referenceTransformer } from "../spec/reference_specs.ts";
 *
 * const opts = { batchSize: 1, segmentLen: 8, withLoss: false, training: false };
 * const traced: TracedSegment = traceSegment(referenceTransformer, opts);
 * assert.equal(traced.paramPaths[0], "embed");
 * ```
 */
export interface TracedSegment {
  /** The segment graph. */
  readonly graph: Graph;
  /** Paths of the graph-role parameters, in graph-input order. */
  readonly paramPaths: readonly string[];
}

/**
 * Which parameter leaves are q8 weights, by path, with the axis of their
 * scales (1: per column of a matrix used as x · W; 0: per row of a lookup
 * table). Such a leaf is a graph input of dtype `q8` that the model reads
 * through `dequantize`; every other leaf is float32.
 *
 * @example
 * ```ts
 * import type { QuantizedParams } from "./trace.ts";
 * const int8: QuantizedParams = { "blocks[0].ffn.w1": 1, embed: 0 };
 * console.log(Object.keys(int8).length);
 * ```
 */
export type QuantizedParams = Readonly<Record<string, 0 | 1>>;

/** The parameter tree as graph inputs (graph-role leaves only; q8 leaves dequantised). */
const paramInputs = (
  tracer: Tracer,
  spec: ModelSpec,
  quantized: QuantizedParams,
  paths?: string[],
): ModelParams<Sym> =>
  mapTree<ParamSpec, Sym | undefined>(paramLayout(spec), isParamSpec, (leaf, path) => {
    // Aux leaves (NC-GRU generators) are not read by the graph.
    if (leaf.role !== "graph") return undefined;
    paths?.push(path);
    const axis = quantized[path];
    if (axis === undefined) return tracer.input(path, "param", leaf.shape);
    return tracer.ops(path).dequantize(tracer.input(path, "param", leaf.shape, "q8"), axis);
  }) as ModelParams<Sym>;

/**
 * Trace one segment of `spec` into a graph (no backend needed). Shape errors
 * throw a `TraceError` naming the spec path of the op; `compile` turns them
 * into a `CompileError`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { traceSegment } from "./trace.ts";
 * import { printGraph } from "../spec/graph.ts";
 * import { referenceCrt } from "../spec/reference_specs.ts";
 *
 * const opts = { batchSize: 2, segmentLen: 4, withLoss: false, training: false };
 * const { graph } = traceSegment(referenceCrt, opts);
 * assert.deepEqual(graph.nodes[graph.outputs["state:memory"]].shape, [2, 256]);
 * console.log(printGraph(graph).split("\n").slice(0, 3).join("\n"));
 * ```
 */
export const traceSegment = (spec: ModelSpec, opts: TraceOptions): TracedSegment => {
  const tracer = new Tracer();
  const paramPaths: string[] = [];
  const params = paramInputs(tracer, spec, opts.quantized ?? {}, paramPaths);
  const b = opts.batchSize, s = opts.segmentLen;
  const tokens = spec.input?._tag === "features"
    ? tracer.input(dataInputName(spec), "data", [b, s, spec.input.dim], "float32")
    : tracer.input(dataInputName(spec), "data", [b, s], "int32");
  const targets = opts.withLoss
    ? tracer.input(
      "targets",
      "data",
      spec.readout._tag === "classifier" ? [b] : [b, s],
      "int32",
    )
    : undefined;
  // Adaptive softmax: the gather plan of the targets, fed as data (spec/adaptive.ts).
  let adaptive: AdaptiveTargets<Sym> | undefined;
  if (opts.withLoss && spec.readout._tag === "adaptive") {
    const geom = adaptiveGeometry(spec.readout, spec);
    const caps = opts.clusterCapacity ?? geom.tails.map(() => b * s);
    const sym = Object.fromEntries(
      adaptiveInputs(geom, b * s, caps).map((i) => [
        i.name,
        tracer.input(i.name, "data", i.shape, i.dtype),
      ]),
    );
    adaptive = {
      head: sym["adaptive:head"],
      clusters: geom.tails.map((_, i) => ({
        rows: sym[`adaptive:cluster[${i}].rows`],
        targets: sym[`adaptive:cluster[${i}].targets`],
        weights: sym[`adaptive:cluster[${i}].weights`],
      })),
    };
  }
  const state: Record<string, Sym> = {};
  for (const [name, shape] of Object.entries(stateShapes(spec, b, opts.cacheLen ?? 0))) {
    state[name] = tracer.input(`state:${name}`, "state", shape);
  }
  const out = runSegment(tracer.ops("model"), params, spec, {
    tokens,
    state,
    ...(targets === undefined ? {} : { targets }),
    ...(adaptive === undefined ? {} : { adaptive }),
  }, { training: opts.training });
  const outputs: Record<string, Sym> = {};
  if (out.logits !== undefined) outputs.logits = out.logits;
  if (out.loss !== undefined) outputs.loss = out.loss;
  for (const [name, t] of Object.entries(out.state)) outputs[`state:${name}`] = t;
  return { graph: tracer.finish(outputs), paramPaths };
};

/**
 * The name of the graph input that carries a segment's data: `tokens` (int32
 * ids [B, S]) or, for a model with feature input, `frames` (float32
 * [B, S, F]).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dataInputName } from "./trace.ts";
 * import { referenceCrt } from "../spec/reference_specs.ts";
 *
 * assert.equal(dataInputName(referenceCrt), "tokens");
 * assert.equal(dataInputName({ ...referenceCrt, input: { _tag: "features", dim: 8 } }), "frames");
 * ```
 */
export const dataInputName = (spec: ModelSpec): "tokens" | "frames" =>
  spec.input?._tag === "features" ? "frames" : "tokens";

/** Graph-role parameter leaves of a spec with their paths. */
export const graphParams = (spec: ModelSpec): [string, ParamSpec][] =>
  flatten(paramLayout(spec), isParamSpec).filter(([, p]) => p.role === "graph");

/**
 * What one streaming step graph is specialised to. The step graph's inputs
 * are every graph-role parameter by path, `tokens` [B, n] int32, each
 * carried state tensor as `state:<name>` and each open-segment cache as
 * `open:<name>` (see `openShapes` in spec/stream.ts); its outputs `logits`
 * (unless the readout is `none`), `open:<name>`, and `state:<name>` when the
 * step closes the segment.
 *
 * @example
 * ```ts
 * import type { StepKey } from "./trace.ts";
 * const fifthToken: StepKey = { batchSize: 1, start: 4, count: 1, cacheLen: 0, readout: "last" };
 * ```
 */
export interface StepKey {
  /** Batch size B. */
  readonly batchSize: number;
  /** Tokens of the open segment already fed. */
  readonly start: number;
  /** Tokens this step feeds. */
  readonly count: number;
  /** Transformer-XL: carried cache length (0 otherwise). */
  readonly cacheLen: number;
  /** Which rows are read out. */
  readonly readout: StepReadout;
  /** Draw the next token in the graph (input `uniforms` [B], output `tokens` [B]); readout last. */
  readonly draw?: { readonly temperature: number; readonly topK: number };
  /** q8 parameter leaves (default none): see {@linkcode QuantizedParams}. */
  readonly quantized?: QuantizedParams;
}

/**
 * Trace one streaming step of `spec` into a graph (no backend needed).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import { traceStreamStep } from "./trace.ts";
 *
 * const g = traceStreamStep(referenceCrt, {
 *   batchSize: 1,
 *   start: 34,
 *   count: 1,
 *   cacheLen: 0,
 *   readout: "last",
 * });
 * // The 35th token closes the segment: the memory is updated, no cache stays open.
 * assert.deepEqual(g.nodes[g.outputs["state:memory"]].shape, [1, 256]);
 * assert.equal(Object.keys(g.outputs).some((k) => k.startsWith("open:")), false);
 * ```
 */
export const traceStreamStep = (spec: ModelSpec, key: StepKey): Graph => {
  const tracer = new Tracer();
  const params = paramInputs(tracer, spec, key.quantized ?? {});
  const b = key.batchSize;
  const tokens = tracer.input("tokens", "data", [b, key.count], "int32");
  const state: Record<string, Sym> = {};
  for (const [name, shape] of Object.entries(stateShapes(spec, b, key.cacheLen))) {
    state[name] = tracer.input(`state:${name}`, "state", shape);
  }
  const open: Record<string, Sym> = {};
  const shapes = openShapes(spec, { batchSize: b, start: key.start, cacheLen: key.cacheLen });
  for (const [name, shape] of Object.entries(shapes)) {
    open[name] = tracer.input(`open:${name}`, "state", shape);
  }
  const uniforms = key.draw === undefined ? undefined : tracer.input("uniforms", "data", [b]);
  const out = streamStep(tracer.ops("model"), params, spec, {
    tokens,
    state,
    open,
    ...(uniforms === undefined ? {} : { uniforms }),
  }, key);
  const outputs: Record<string, Sym> = {};
  if (out.logits !== undefined) outputs.logits = out.logits;
  if (out.tokens !== undefined) outputs.tokens = out.tokens;
  for (const [name, t] of Object.entries(out.open)) outputs[`open:${name}`] = t;
  for (const [name, t] of Object.entries(out.state ?? {})) outputs[`state:${name}`] = t;
  return tracer.finish(outputs);
};
