/**
 * The compiler's pipeline for one graph: trace → verify → passes → lower,
 * and the executables a program keeps, by the shape they were specialised
 * to. `compile` (core/compile.ts) runs the pipeline once at full size as a
 * probe, checks its kernels, and hands the cache to the segment and
 * streaming runners.
 *
 * @module
 */
import { describeError } from "../spec/errors.ts";
import * as E from "fp-ts/lib/Either.js";
import type { Either } from "../spec/either.ts";
import type { Graph } from "../spec/graph.ts";
import type { ModelSpec } from "../spec/types.ts";
import { type DirectExecutable, directGraph, type Executable, lowerGraph } from "../ops/lower.ts";
import { type Pass, runPasses } from "./passes.ts";
import type { CompileError } from "./program.ts";
import { type QuantizedParams, type StepKey, traceSegment, traceStreamStep } from "./trace.ts";
import { verifyGraph } from "./verify.ts";

/** What one compiled segment graph is specialised to. */
export interface GraphKey {
  /** Batch size B. */
  readonly batchSize: number;
  /** Tokens in the segment (≤ the spec's segmentLen). */
  readonly segmentLen: number;
  /** Transformer-XL: length of the incoming cache (0 otherwise). */
  readonly cacheLen: number;
  /** Trace the loss (needs targets). */
  readonly withLoss: boolean;
  /** Dropout active. */
  readonly training: boolean;
  /** Adaptive softmax loss graphs: rows per tail cluster (absent: all rows). */
  readonly clusterCapacity?: readonly number[];
}

/** A graph after the pipeline, and the function it lowered to. */
export interface Lowered {
  /** Feeds by input name in, named outputs out (see `lowerGraph`). */
  readonly run: Executable;
  /** The graph that was lowered. */
  readonly graph: Graph;
  /**
   * The graph run without the engine on `backend` (ops/lower.ts
   * `directGraph`; made on first use), or null where it cannot be: a
   * streaming step whose regions are all single kernel calls.
   */
  readonly direct: (backend: string) => DirectExecutable | null;
}

/** A {@linkcode CompileError} of `stage` as a Left. */
export const compileError = <A = never>(
  stage: CompileError["stage"],
  message: string,
): Either<CompileError, A> => E.left({ _tag: "CompileError", stage, message });

/** Verify a traced graph and run the passes over it (verifying after each). */
const optimize = (
  traced: Graph,
  passes: readonly Pass[],
): Either<CompileError, { traced: Graph; optimized: Graph }> => {
  const v = verifyGraph(traced);
  if (E.isLeft(v)) return compileError("verify", v.left.message);
  const o = runPasses(traced, passes);
  if (E.isLeft(o)) return compileError("passes", o.left.message);
  return E.right({ traced, optimized: o.right });
};

/**
 * Trace one segment graph of `spec` at `key`, verify it and run `passes`;
 * a failing stage is a Left naming it.
 */
export const buildSegment = (
  spec: ModelSpec,
  key: GraphKey,
  passes: readonly Pass[],
  quantized: QuantizedParams = {},
): Either<CompileError, { traced: Graph; optimized: Graph }> => {
  let traced: Graph;
  try {
    traced = traceSegment(spec, { ...key, quantized }).graph;
  } catch (e) {
    return compileError("trace", describeError(e));
  }
  return optimize(traced, passes);
};

/** Streaming step graphs a program keeps (least recently used dropped first). */
const STEP_GRAPHS = 256;

/**
 * The executables of one program, lowered on first use and kept by shape.
 * Owned by the program that made them, never module-level.
 */
export interface Executables {
  /** The segment graph at `key`. */
  segment(key: GraphKey): Lowered;
  /** The streaming step graph at `key` (at most 256 kept, least recently used dropped). */
  step(key: StepKey): Lowered;
}

/**
 * An empty executable cache for `spec`. Both kinds of graph come from ops
 * whose kernels the compiler's probe already checked at full size, so a
 * stage failing here is a bug and throws.
 */
export const executables = (
  spec: ModelSpec,
  passes: readonly Pass[],
  quantized: QuantizedParams = {},
): Executables => {
  const segments = new Map<string, Lowered>();
  // Feeds of every size could make S(S + 1) step graphs: the least recently
  // used go beyond STEP_GRAPHS, so a long stream's memory stays bounded
  // whatever it is fed.
  const steps = new Map<string, Lowered>();
  const lower = (built: Either<CompileError, { optimized: Graph }>, what: string): Lowered => {
    if (E.isLeft(built)) throw new Error(`internal: ${what}: ${built.left.message}`);
    const graph = built.right.optimized;
    const direct = new Map<string, DirectExecutable | null>();
    return {
      run: lowerGraph(graph),
      graph,
      direct: (backend) => {
        if (!direct.has(backend)) direct.set(backend, directGraph(graph, backend));
        return direct.get(backend)!;
      },
    };
  };
  return {
    segment: (key) => {
      const k = JSON.stringify(key);
      const hit = segments.get(k);
      if (hit !== undefined) return hit;
      const l = lower(buildSegment(spec, key, passes, quantized), "segment");
      segments.set(k, l);
      return l;
    },
    step: (key) => {
      // Every field but `quantized`, which is the program's: a token's lookup builds a short string.
      const d = key.draw;
      const k = `${key.batchSize} ${key.start} ${key.count} ${key.cacheLen} ${key.readout}${
        d === undefined ? "" : ` ${d.temperature} ${d.topK}`
      }`;
      const hit = steps.get(k);
      if (hit !== undefined) {
        steps.delete(k); // most recently used last
        steps.set(k, hit);
        return hit;
      }
      const l = lower(
        optimize(traceStreamStep(spec, { ...key, quantized }), passes),
        "streaming step",
      );
      steps.set(k, l);
      if (steps.size > STEP_GRAPHS) steps.delete(steps.keys().next().value!);
      return l;
    },
  };
};
