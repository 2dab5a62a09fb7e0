/**
 * Graph passes, held as data and applied in a named order. Each pass maps a
 * verified graph to a graph that computes the same outputs; the pipeline
 * verifies again after every pass.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type { Either } from "../spec/either.ts";
import type { Graph, Node } from "../spec/graph.ts";
import { fuse } from "./fuse.ts";
import { type VerifyError, verifyGraph } from "./verify.ts";

/**
 * A named graph-to-graph rewrite that must not change what the graph
 * computes.
 *
 * @example A pass that changes nothing, run after the defaults
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultPasses, type Pass, runPasses } from "./passes.ts";
 * import { Tracer } from "../spec/graph.ts";
 *
 * const identity: Pass = { name: "identity", run: (g) => g };
 * const t = new Tracer();
 * const g = t.finish({ y: t.ops().tanh(t.input("x", "data", [2])) });
 * const r = runPasses(g, [...defaultPasses, identity]);
 * assert.equal(r._tag, "Right");
 * ```
 */
export interface Pass {
  /** Names the pass in errors and printouts (`dead-code`). */
  readonly name: string;
  /** The rewrite. */
  readonly run: (g: Graph) => Graph;
}

/** Rebuild a graph keeping `keep` nodes (ids renumbered), remapping inputs via `alias`. */
const rebuild = (g: Graph, keep: (n: Node) => boolean, alias: (id: number) => number): Graph => {
  const newId = new Map<number, number>();
  const nodes: Node[] = [];
  for (const n of g.nodes) {
    if (!keep(n)) continue;
    const id = nodes.length;
    newId.set(n.id, id);
    nodes.push({ ...n, id, inputs: n.inputs.map((i) => newId.get(alias(i))!) });
  }
  const outputs: Record<string, number> = {};
  for (const [k, v] of Object.entries(g.outputs)) outputs[k] = newId.get(alias(v))!;
  return { nodes, outputs };
};

/** Remove nodes no output depends on. Inputs stay: they are the graph's signature. */
export const deadCode: Pass = {
  name: "dead-code",
  run: (g) => {
    const live = new Set<number>(Object.values(g.outputs));
    for (let i = g.nodes.length - 1; i >= 0; i--) {
      if (live.has(i)) { for (const j of g.nodes[i].inputs) live.add(j); }
    }
    return rebuild(g, (n) => live.has(n.id) || n.op._tag === "input", (i) => i);
  },
};

const opKey = (n: Node, canon: (i: number) => number): string | undefined => {
  // Inputs are distinct by name; dropout draws fresh noise per node, so never merge it.
  if (n.op._tag === "input" || n.op._tag === "dropout") return undefined;
  if (n.op._tag === "fused" && n.op.body.nodes.some((b) => b.op._tag === "dropout")) {
    return undefined;
  }
  const attrs = JSON.stringify(n.op, (_k, v) => v instanceof Float32Array ? Array.from(v) : v);
  return `${attrs}|${n.inputs.map(canon).join(",")}`;
};

/** Merge nodes that apply the same op to the same inputs (e.g. repeated positional constants). */
export const commonSubexpressions: Pass = {
  name: "common-subexpressions",
  run: (g) => {
    const canonical = new Map<number, number>();
    const seen = new Map<string, number>();
    const canon = (i: number) => canonical.get(i) ?? i;
    for (const n of g.nodes) {
      const key = opKey(n, canon);
      if (key === undefined) continue;
      const prior = seen.get(key);
      if (prior === undefined) seen.set(key, n.id);
      else canonical.set(n.id, prior);
    }
    return rebuild(g, (n) => !canonical.has(n.id), canon);
  },
};

/** Reshapes of reshapes collapse into one; a reshape to the same shape disappears. */
export const foldReshapes: Pass = {
  name: "fold-reshapes",
  run: (g) => {
    const alias = new Map<number, number>();
    const nodes = g.nodes.map((n) => {
      if (n.op._tag !== "reshape") return n;
      let src = n.inputs[0];
      src = alias.get(src) ?? src;
      const inner = g.nodes[src];
      if (inner.op._tag === "reshape") src = inner.inputs[0];
      const srcShape = g.nodes[src].shape;
      if (srcShape.length === n.shape.length && srcShape.every((d, k) => d === n.shape[k])) {
        alias.set(n.id, src);
      }
      return { ...n, inputs: [src] };
    });
    const canon = (i: number) => alias.get(i) ?? i;
    const g2: Graph = { nodes, outputs: g.outputs };
    return deadCode.run(rebuild(g2, (n) => !alias.has(n.id), canon));
  },
};

/**
 * The default pipeline, in order: fuse the regions the active backend has
 * kernels for (core/fuse.ts), merge common subexpressions, fold reshapes,
 * remove dead code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultPasses } from "./passes.ts";
 *
 * assert.deepEqual(defaultPasses.map((p) => p.name), [
 *   "fuse",
 *   "common-subexpressions",
 *   "fold-reshapes",
 *   "dead-code",
 * ]);
 * ```
 */
export const defaultPasses: readonly Pass[] = [fuse, commonSubexpressions, foldReshapes, deadCode];

/**
 * A pass that broke the graph, with the verifier's complaint.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type Pass, runPasses } from "./passes.ts";
 * import { Tracer } from "../spec/graph.ts";
 *
 * const dropAll: Pass = { name: "drop-all", run: (g) => ({ ...g, nodes: [] }) };
 * const t = new Tracer();
 * const g = t.finish({ y: t.ops().tanh(t.input("x", "data", [2])) });
 * const r = runPasses(g, [dropAll]);
 * if (r._tag === "Right") throw new Error("expected a PassError");
 * assert.equal(r.left.pass, "drop-all");
 * assert.equal(r.left.cause._tag, "VerifyError");
 * ```
 */
export interface PassError {
  /** Discriminant. */
  readonly _tag: "PassError";
  /** Name of the pass that produced the malformed graph. */
  readonly pass: string;
  /** What the verifier found wrong with its output. */
  readonly cause: VerifyError;
  /** Both, readable as is. */
  readonly message: string;
}

/**
 * Apply `passes` in order, verifying after each; the first pass whose output
 * fails verification stops the pipeline with a {@linkcode PassError}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultPasses, runPasses } from "./passes.ts";
 * import { Tracer } from "../spec/graph.ts";
 *
 * const t = new Tracer();
 * const x = t.input("x", "data", [2, 3]);
 * const o = t.ops();
 * const g = t.finish({ y: o.reshape(o.reshape(x, [3, 2]), [2, 3]) });
 * const folded = runPasses(g, defaultPasses);
 * if (folded._tag === "Left") throw new Error(folded.left.message);
 * assert.deepEqual(folded.right.nodes.map((n) => n.op._tag), ["input"]); // the reshapes are gone
 * ```
 */
export const runPasses = (g: Graph, passes: readonly Pass[]): Either<PassError, Graph> => {
  let cur = g;
  for (const p of passes) {
    const next = verifyGraph(p.run(cur));
    if (E.isLeft(next)) {
      return E.left({
        _tag: "PassError",
        pass: p.name,
        cause: next.left,
        message: `pass ${p.name} produced a malformed graph: ${next.left.message}`,
      });
    }
    cur = next.right;
  }
  return E.right(cur);
};
