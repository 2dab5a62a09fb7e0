/**
 * The graph IR's tracer, printer and walker. The IR itself — ops, nodes,
 * graphs and regions — is declared in `ops.ts`; this module builds graphs
 * from model code ({@linkcode Tracer}), prints them and runs them with any
 * op evaluator ({@linkcode walkGraph}).
 *
 * @module
 */
import { describeError } from "./errors.ts";
import {
  type DType,
  type FusedAttrs,
  type Graph,
  inferShape,
  type Node,
  type Op,
  type Region,
  regionInput,
  regionOutput,
  type Shape,
  ShapeError,
} from "./ops.ts";
import { type OpBackend, Ops } from "./ops_builder.ts";

export type { Graph, Node, Region } from "./ops.ts";

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

/** Records ops into a node list, and the regions the model code marks. Create one per trace. */
export class Tracer implements OpBackend<Sym> {
  readonly nodes: Node[] = [];
  readonly regions: Region[] = [];

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

  /**
   * Trace `body` inline and record it as a region. The body may read only
   * `inputs` and nodes it emits itself: reading any other earlier node is a
   * {@linkcode TraceError} (a region's kernel sees nothing but its inputs).
   */
  region(
    kind: string,
    attrs: FusedAttrs,
    inputs: readonly Sym[],
    body: (inputs: readonly Sym[]) => readonly Sym[],
    path: string,
  ): Sym[] {
    const first = this.nodes.length;
    const outputs = [...body(inputs)];
    const declared = new Set(inputs.map((i) => i.id));
    for (let i = first; i < this.nodes.length; i++) {
      const n = this.nodes[i];
      const outside = n.inputs.find((j) => j < first && !declared.has(j));
      if (outside !== undefined) {
        throw new TraceError(
          n.path,
          n.op._tag,
          `region ${kind} reads %${outside} (${
            this.nodes[outside].path
          }), which is not one of its inputs`,
        );
      }
    }
    if (outputs.length === 0 || outputs.some((o) => o.id < first && !declared.has(o.id))) {
      throw new TraceError(path, kind, `region ${kind} must return values it computes or reads`);
    }
    if (this.nodes.length > first) {
      this.regions.push({
        kind,
        attrs,
        inputs: inputs.map((i) => i.id),
        outputs: outputs.map((o) => o.id),
        first,
        end: this.nodes.length,
        path,
      });
    }
    return outputs;
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
    return this.regions.length === 0
      ? { nodes: [...this.nodes], outputs: out }
      : { nodes: [...this.nodes], outputs: out, regions: [...this.regions] };
  }
}

const attrs = (op: Op): string => {
  if (op._tag === "fused") return attrs({ _tag: "input", ...op.attrs } as unknown as Op);
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
  const lines = g.nodes.flatMap((n) => {
    const ins = n.inputs.map((i) => `%${i}`).join(", ");
    const out = names.has(n.id) ? `  -> ${names.get(n.id)}` : "";
    const dt = n.dtype === "float32" ? "f32" : "i32";
    const name = n.op._tag === "fused" ? `fused ${n.op.kind}` : n.op._tag;
    const line = `%${n.id} = ${name}(${ins})${attrs(n.op)} : [${
      n.shape.join(",")
    }] ${dt}  @${n.path}${out}`;
    // A fused node's body follows it, indented: what the node means.
    return n.op._tag === "fused"
      ? [line, ...printGraph(n.op.body).split("\n").map((l) => `    | ${l}`)]
      : [line];
  });
  return lines.join("\n");
};

/**
 * How {@linkcode walkGraph} evaluates nodes: the reference interpreter and
 * the tfjs lowering each supply one.
 */
export interface GraphEvaluator<T> {
  /** The value for input node `node` from its feed (undefined when none was given): check it. */
  feed(node: Node, fed: T | undefined): T;
  /**
   * The value of an op node; for a `fused` node every output, in order
   * (its `part` nodes read them).
   */
  apply(node: Node, inputs: readonly T[]): T | readonly T[];
}

/**
 * Run `graph` node by node with `ev`: feeds by input name in, the named
 * outputs out. A failing node is reported with its spec path and id (the
 * original error is the cause).
 *
 * @example Evaluate a graph on plain numbers
 * ```ts
 * import assert from "node:assert/strict";
 * import { Tracer, walkGraph } from "./graph.ts";
 *
 * const t = new Tracer();
 * const x = t.input("x", "data", []);
 * const g = t.finish({ y: t.ops().scale(t.ops().relu(x), 3) });
 * const out = walkGraph<number>(g, { x: 2 }, {
 *   feed: (_n, v) => v ?? 0,
 *   apply: (n, [a]) => n.op._tag === "scale" ? a * n.op.factor : Math.max(a, 0),
 * });
 * assert.equal(out.y, 6);
 * ```
 */
export const walkGraph = <T>(
  graph: Graph,
  feeds: Readonly<Record<string, T>>,
  ev: GraphEvaluator<T>,
): Record<string, T> => {
  const values: T[] = [];
  const parts = new Map<number, readonly T[]>();
  for (const node of graph.nodes) {
    const op = node.op;
    if (op._tag === "input") {
      values.push(ev.feed(node, feeds[op.name]));
      continue;
    }
    if (op._tag === "part") {
      const all = parts.get(node.inputs[0]);
      if (all === undefined || all[op.index] === undefined) {
        throw new Error(
          `${node.path}: part (node %${node.id}) reads output ${op.index} of %${
            node.inputs[0]
          }, which has none`,
        );
      }
      values.push(all[op.index]);
      continue;
    }
    try {
      const v = ev.apply(node, node.inputs.map((i) => values[i]));
      if (op._tag === "fused") {
        const all = v as readonly T[];
        parts.set(node.id, all);
        values.push(all[0]);
      } else values.push(v as T);
    } catch (e) {
      const why = describeError(e);
      const name = op._tag === "fused" ? `fused ${op.kind}` : op._tag;
      throw new Error(`${node.path}: ${name} (node %${node.id}): ${why}`, { cause: e });
    }
  }
  const out: Record<string, T> = {};
  for (const [name, id] of Object.entries(graph.outputs)) out[name] = values[id];
  return out;
};

/** The output values of a fused body, in order (`out:0`, `out:1`, …), from a walk's result. */
export const bodyOutputs = <T>(body: Graph, out: Readonly<Record<string, T>>): T[] => {
  const n = Object.keys(body.outputs).length;
  return Array.from({ length: n }, (_, i) => out[regionOutput(i)]);
};

/** Feeds of a fused body (`in:0`, `in:1`, …) from the fused node's input values. */
export const bodyFeeds = <T>(inputs: readonly T[]): Record<string, T> =>
  Object.fromEntries(inputs.map((v, i) => [regionInput(i), v]));

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
