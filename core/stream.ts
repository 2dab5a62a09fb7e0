/**
 * spec → graph for streaming: trace one {@linkcode streamStep} (the next n
 * tokens of an open segment, reusing its cached keys and values) into the IR.
 *
 * Graph inputs: every graph-role parameter by path, `tokens` [B, n] int32,
 * each carried state tensor as `state:<name>` and each open-segment cache
 * as `open:<name>` (see `openShapes` in spec/stream.ts). Outputs: `logits`
 * (unless the readout is `none`), `open:<name>`, and `state:<name>` when the
 * step closes the segment.
 *
 * @module
 */
import type { ModelSpec } from "../spec/model_types.ts";
import { type ModelParams, paramLayout, stateShapes } from "../spec/models.ts";
import { isParamSpec, type ParamSpec } from "../spec/params.ts";
import { openShapes, type StepReadout, streamStep } from "../spec/stream.ts";
import { mapTree } from "../spec/tree.ts";
import { type Graph, type Sym, Tracer } from "./graph.ts";

/**
 * What one streaming step graph is specialised to.
 *
 * @example
 * ```ts
 * import type { StepKey } from "./stream.ts";
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
}

/**
 * Trace one streaming step of `spec` into a graph (no backend needed).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { referenceCrt } from "../spec/model.ts";
 * import { traceStreamStep } from "./stream.ts";
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
  const params = mapTree<ParamSpec, Sym | undefined>(
    paramLayout(spec),
    isParamSpec,
    (leaf, path) => (leaf.role === "graph" ? tracer.input(path, "param", leaf.shape) : undefined),
  ) as ModelParams<Sym>;
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
  const out = streamStep(tracer.ops("model"), params, spec, { tokens, state, open }, key);
  const outputs: Record<string, Sym> = {};
  if (out.logits !== undefined) outputs.logits = out.logits;
  for (const [name, t] of Object.entries(out.open)) outputs[`open:${name}`] = t;
  for (const [name, t] of Object.entries(out.state ?? {})) outputs[`state:${name}`] = t;
  return tracer.finish(outputs);
};
