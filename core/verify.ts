/**
 * Verification at each stage entry: the graph is well formed and every
 * recorded shape is what the op set says it must be.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type { Either } from "../spec/either.ts";
import { inferShape, regionOutput, ShapeError } from "../spec/ops.ts";
import type { Graph } from "../spec/graph.ts";

/**
 * A malformed graph, naming the node and its spec path.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { verifyGraph } from "./verify.ts";
 * import { Tracer } from "../spec/graph.ts";
 *
 * const t = new Tracer();
 * const g = t.finish({ y: t.ops("model.head").tanh(t.input("x", "data", [2, 3])) });
 * const broken = { ...g, nodes: g.nodes.map((n) => n.id === 1 ? { ...n, shape: [3, 2] } : n) };
 * const r = verifyGraph(broken);
 * if (r._tag === "Right") throw new Error("expected a VerifyError");
 * assert.deepEqual([r.left.nodeId, r.left.path], [1, "model.head"]);
 * ```
 */
export interface VerifyError {
  /** Discriminant. */
  readonly _tag: "VerifyError";
  /** Id of the offending node. */
  readonly nodeId: number;
  /** Spec path of the offending node (`outputs` for a bad output). */
  readonly path: string;
  /** What is wrong, prefixed with the path. */
  readonly message: string;
}

/**
 * Check topological order, input references, shapes and dtypes, unique input
 * names and that every output names a node. Returns the graph unchanged when
 * it is well formed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { verifyGraph } from "./verify.ts";
 * import { Tracer } from "../spec/graph.ts";
 *
 * const t = new Tracer();
 * const x = t.input("x", "data", [2, 3]);
 * const g = t.finish({ y: t.ops().relu(x) });
 * assert.deepEqual(verifyGraph(g), { _tag: "Right", right: g });
 * ```
 */
export const verifyGraph = (g: Graph): Either<VerifyError, Graph> => {
  const fail = (nodeId: number, path: string, message: string) =>
    E.left<VerifyError>({ _tag: "VerifyError", nodeId, path, message: `${path}: ${message}` });
  const names = new Set<string>();
  for (const n of g.nodes) {
    const id = n.id;
    if (g.nodes[id] !== n) return fail(id, n.path, `node %${id} is stored at another index`);
    for (const i of n.inputs) {
      if (!(i >= 0 && i < id)) {
        return fail(id, n.path, `node %${id} reads %${i}, which does not come before it`);
      }
    }
    if (n.op._tag === "input") {
      if (names.has(n.op.name)) return fail(id, n.path, `input "${n.op.name}" appears twice`);
      names.add(n.op.name);
    }
    if (n.op._tag === "fused") {
      const body = verifyGraph(n.op.body);
      if (E.isLeft(body)) {
        return fail(id, n.path, `fused ${n.op.kind}: its body: ${body.left.message}`);
      }
    }
    if (n.op._tag === "part") {
      const src = g.nodes[n.inputs[0]];
      const index = n.op.index;
      const out = src?.op._tag === "fused"
        ? src.op.body.nodes[src.op.body.outputs[regionOutput(index)]]
        : undefined;
      if (out === undefined) {
        return fail(id, n.path, `part reads output ${index} of %${n.inputs[0]}, which has none`);
      }
      if (out.dtype !== n.dtype || out.shape.join() !== n.shape.join()) {
        return fail(
          id,
          n.path,
          `part records [${n.shape}] ${n.dtype} but output ${index} is [${out.shape}] ${out.dtype}`,
        );
      }
    }
    try {
      const out = inferShape(n.op, n.inputs.map((i) => g.nodes[i]));
      const same = out.shape.length === n.shape.length &&
        out.shape.every((d, k) => d === n.shape[k]);
      if (!same || out.dtype !== n.dtype) {
        return fail(
          id,
          n.path,
          `${n.op._tag} records [${n.shape}] ${n.dtype} but its inputs give [${out.shape}] ${out.dtype}`,
        );
      }
    } catch (e) {
      if (e instanceof ShapeError) return fail(id, n.path, `${n.op._tag}: ${e.message}`);
      throw e;
    }
  }
  for (const [name, id] of Object.entries(g.outputs)) {
    if (g.nodes[id] === undefined) return fail(id, "outputs", `output "${name}" names no node`);
  }
  return E.right(g);
};
