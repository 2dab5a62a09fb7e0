/**
 * The graph IR: one node type, traced from the model stages, and its printer.
 *
 * A node is an op from the abstract op set, the ids of its inputs, its static
 * shape and dtype, and the spec path it came from. Nodes are stored in
 * topological order; a node's id is its index.
 *
 * @module
 */
import {
  type DType,
  inferShape,
  type Op,
  type OpBackend,
  Ops,
  type Shape,
  ShapeError,
} from "./ops.ts";

/**
 * One IR node: an op of the abstract op set applied to earlier nodes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type Node, Tracer } from "./graph.ts";
 *
 * const t = new Tracer();
 * const x = t.input("x", "data", [2, 3]);
 * const g = t.finish({ y: t.ops("model.act").relu(x) });
 * const relu: Node = g.nodes[g.outputs.y];
 * assert.deepEqual([relu.op._tag, relu.inputs, relu.shape, relu.path], ["relu", [0], [2, 3], "model.act"]);
 * ```
 */
export interface Node {
  /** Its index in the graph's node list. */
  readonly id: number;
  /** What it computes. */
  readonly op: Op;
  /** Ids of its inputs, all smaller than `id`. */
  readonly inputs: readonly number[];
  /** Its static output shape. */
  readonly shape: Shape;
  /** Its output element type. */
  readonly dtype: DType;
  /** The spec path of what emitted this node, e.g. `model.blocks[1].attn.wq`. */
  readonly path: string;
}

/**
 * A traced graph: nodes in topological order and named outputs. Graph
 * inputs are the `input` nodes, named by parameter path, `tokens`, `targets`
 * or `state:<name>`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type Graph, Tracer } from "./graph.ts";
 *
 * const t = new Tracer();
 * const o = t.ops("model.head");
 * const h = t.input("h", "data", [2, 8]);
 * const w = t.input("head.w", "param", [8, 5]);
 * const graph: Graph = t.finish({ logits: o.matmul(h, w), "state:h": h });
 * assert.deepEqual(graph.nodes.map((n) => n.op._tag), ["input", "input", "matmul"]);
 * assert.deepEqual(graph.outputs, { logits: 2, "state:h": 0 });
 * ```
 */
export interface Graph {
  /** Every node, in topological order; a node's id is its index. */
  readonly nodes: readonly Node[];
  /** Named outputs, by node id. */
  readonly outputs: Readonly<Record<string, number>>;
}

/** A handle on a node while tracing. */
export interface Sym {
  readonly id: number;
  readonly shape: Shape;
  readonly dtype: DType;
}

/** A shape error raised while tracing, with the spec path of the op. */
export class TraceError extends Error {
  override readonly name = "TraceError";
  constructor(readonly path: string, readonly op: string, reason: string) {
    super(`${path}: ${op}: ${reason}`);
  }
}

/** Records ops into a node list. Create one per trace. */
export class Tracer implements OpBackend<Sym> {
  readonly nodes: Node[] = [];

  apply(op: Op, inputs: readonly Sym[], path: string): Sym {
    let out: { shape: Shape; dtype: DType };
    try {
      out = inferShape(op, inputs);
    } catch (e) {
      if (e instanceof ShapeError) throw new TraceError(path, op._tag, e.message);
      throw e;
    }
    const node: Node = {
      id: this.nodes.length,
      op,
      inputs: inputs.map((i) => i.id),
      shape: out.shape,
      dtype: out.dtype,
      path,
    };
    this.nodes.push(node);
    return { id: node.id, shape: node.shape, dtype: node.dtype };
  }

  shape(t: Sym): Shape {
    return t.shape;
  }

  /** A graph input node. */
  input(
    name: string,
    role: "param" | "data" | "state",
    shape: Shape,
    dtype: DType = "float32",
  ): Sym {
    return this.apply({ _tag: "input", name, role, shape, dtype }, [], name);
  }

  /** Ops over this tracer, rooted at `path`. */
  ops(path = "model"): Ops<Sym> {
    return new Ops(this, path);
  }

  /** Freeze into a graph with the given named outputs. */
  finish(outputs: Record<string, Sym>): Graph {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(outputs)) out[k] = v.id;
    return { nodes: [...this.nodes], outputs: out };
  }
}

const attrs = (op: Op): string => {
  const { _tag: _, ...rest } = op as Op & Record<string, unknown>;
  const parts = Object.entries(rest).map(([k, v]) => {
    if (v instanceof Float32Array) return `${k}=<${v.length} floats>`;
    if (Array.isArray(v)) return `${k}=[${v.join(",")}]`;
    return `${k}=${v}`;
  });
  return parts.length ? ` {${parts.join(" ")}}` : "";
};

/**
 * The graph as text, one line per node:
 * `%7 = matmul(%3, %5) {…} : [20,35,256] f32  @model.blocks[0].attn`, with
 * `-> name` after named outputs.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { printGraph, Tracer } from "./graph.ts";
 *
 * const t = new Tracer();
 * const x = t.input("x", "data", [4, 8]);
 * const w = t.input("w", "param", [8, 16]);
 * const text = printGraph(t.finish({ y: t.ops().matmul(x, w) }));
 * assert.equal(
 *   text.split("\n")[2],
 *   "%2 = matmul(%0, %1) {transposeA=false transposeB=false} : [4,16] f32  @model  -> y",
 * );
 * ```
 */
export const printGraph = (g: Graph): string => {
  const names = new Map(Object.entries(g.outputs).map(([k, v]) => [v, k]));
  const lines = g.nodes.map((n) => {
    const ins = n.inputs.map((i) => `%${i}`).join(", ");
    const out = names.has(n.id) ? `  -> ${names.get(n.id)}` : "";
    const dt = n.dtype === "float32" ? "f32" : "i32";
    return `%${n.id} = ${n.op._tag}(${ins})${attrs(n.op)} : [${
      n.shape.join(",")
    }] ${dt}  @${n.path}${out}`;
  });
  return lines.join("\n");
};

/** Input nodes of a graph by name. */
export const graphInputs = (g: Graph): Node[] => g.nodes.filter((n) => n.op._tag === "input");

/** Names of the input nodes that the node `id` depends on. */
export const inputsReaching = (g: Graph, id: number): Set<string> => {
  const seen = new Set<number>([id]);
  const names = new Set<string>();
  for (let i = id; i >= 0; i--) {
    if (!seen.has(i)) continue;
    const n = g.nodes[i];
    if (n.op._tag === "input") names.add(n.op.name);
    for (const j of n.inputs) seen.add(j);
  }
  return names;
};
