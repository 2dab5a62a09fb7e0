/**
 * The fusion stage: regions of the graph become `fused` nodes, each run by
 * one kernel of our own instead of one tfjs kernel per op.
 *
 * The model code marks its regions as it is traced (`Ops.region`: a linear
 * layer, the attention core, a recurrent cell step, a whole block's decode
 * step, …). This pass turns a marked region into a fused node when the
 * region is closed — nothing outside reads its inner values — and the
 * active backend has a kernel that takes it (`canFuse`, ops/fusion.ts),
 * with a gradient when the graph has a loss. A region input that is a
 * q8 weight's `dequantize` is taken as the q8 weight itself when the kernel
 * reads int8 (the dequantize moves into the body). Regions nest: the outermost
 * one that can be fused wins, and the regions inside it go with it. A fused
 * node keeps the region's ops as its body, which defines what it computes:
 * the reference interpreter runs the body, and every kernel is tested
 * against it.
 *
 * @module
 */
import { tf } from "../ops/tf.ts";
import { canFuse, type FusedRegion } from "../ops/fusion.ts";
import type { Graph, Node, Region } from "../spec/graph.ts";
import { regionInput, regionOutput } from "../spec/ops.ts";

/** Whether a region may become a fused node: the predicate {@linkcode fuseRegions} applies. */
export type FusionRule = (region: FusedRegion, opts: { readonly gradients: boolean }) => boolean;

/** Consumers of every node (by id), with `-1` for a graph output. */
const consumers = (g: Graph): number[][] => {
  const users: number[][] = g.nodes.map(() => []);
  for (const n of g.nodes) for (const i of n.inputs) users[i].push(n.id);
  for (const id of Object.values(g.outputs)) users[id].push(-1);
  return users;
};

/** A region's nodes are read from outside only through its outputs. */
const closed = (r: Region, users: readonly number[][]): boolean => {
  const outs = new Set(r.outputs);
  for (let id = r.first; id < r.end; id++) {
    if (outs.has(id)) continue;
    if (users[id].some((u) => u < r.first || u >= r.end)) return false;
  }
  return r.outputs.every((o) => o >= r.first && o < r.end);
};

/**
 * The region as a graph of its own: inputs `in:i`, its nodes renumbered,
 * outputs `out:i`. An input in `absorbed` (a `dequantize` outside the
 * region) is read as the q8 weight it dequantises, and the body begins by
 * dequantising it: the fused kernel then reads the int8 weight itself.
 */
const bodyOf = (g: Graph, r: Region, absorbed: ReadonlySet<number>): Graph => {
  const nodes: Node[] = [];
  const id = new Map<number, number>();
  const add = (n: Omit<Node, "id">) => (nodes.push({ ...n, id: nodes.length }), nodes.length - 1);
  r.inputs.forEach((src, i) => {
    const outer = g.nodes[src];
    const n = absorbed.has(src) ? g.nodes[outer.inputs[0]] : outer;
    const input = add({
      op: { _tag: "input", name: regionInput(i), role: "data", shape: n.shape, dtype: n.dtype },
      inputs: [],
      shape: n.shape,
      dtype: n.dtype,
      path: n.path,
    });
    id.set(src, absorbed.has(src) ? add({ ...outer, inputs: [input] }) : input);
  });
  for (let k = r.first; k < r.end; k++) {
    const n = g.nodes[k];
    id.set(k, add({ ...n, inputs: n.inputs.map((i) => id.get(i)!) }));
  }
  const outputs = Object.fromEntries(r.outputs.map((o, i) => [regionOutput(i), id.get(o)!]));
  return { nodes, outputs };
};

/**
 * Fuse the regions of `g` that `rule` accepts (see the module doc). The
 * result carries no regions: what was not fused stays plain ops.
 *
 * @example A linear layer with ReLU becomes one fused node
 * ```ts
 * import assert from "node:assert/strict";
 * import { Tracer } from "../spec/graph.ts";
 * import { fuseGraph } from "./fuse.ts";
 *
 * const t = new Tracer();
 * const o = t.ops("model.ffn");
 * const [x, w] = [t.input("x", "data", [4, 8]), t.input("w", "param", [8, 8])];
 * const [y] = o.region("linear", { relu: true }, [x, w], ([a, b]) => [o.relu(o.matmul(a, b))]);
 * const fused = fuseGraph(t.finish({ y }), () => true);
 * assert.deepEqual(fused.nodes.map((n) => n.op._tag), ["input", "input", "fused"]);
 * const body = fused.nodes[2].op._tag === "fused" ? fused.nodes[2].op.body : undefined;
 * assert.deepEqual(body?.nodes.map((n) => n.op._tag), ["input", "input", "matmul", "relu"]);
 * ```
 */
export const fuseGraph = (g: Graph, rule: FusionRule): Graph => {
  const regions = g.regions ?? [];
  if (regions.length === 0) return { nodes: g.nodes, outputs: g.outputs };
  const gradients = g.outputs.loss !== undefined;
  const users = consumers(g);
  // Outer regions first: a region starts no later than those inside it and ends no earlier.
  const order = [...regions].sort((a, b) => a.first - b.first || b.end - a.end);
  const chosen: { region: Region; absorbed: ReadonlySet<number> }[] = [];
  const shapeOf = (i: number) => ({ shape: g.nodes[i].shape, dtype: g.nodes[i].dtype });
  for (const r of order) {
    // Inside a fused one?
    if (chosen.some(({ region: c }) => r.first < c.end && c.first < r.end)) continue;
    if (!closed(r, users)) continue;
    const signature = (absorbed: ReadonlySet<number>): FusedRegion => ({
      kind: r.kind,
      attrs: r.attrs,
      inputs: r.inputs.map((i) => shapeOf(absorbed.has(i) ? g.nodes[i].inputs[0] : i)),
      outputs: r.outputs.map(shapeOf),
    });
    // Weights dequantised just before the region: its kernel may read them as int8.
    const dequantized = new Set(r.inputs.filter((i) => g.nodes[i].op._tag === "dequantize"));
    if (dequantized.size > 0 && rule(signature(dequantized), { gradients })) {
      chosen.push({ region: r, absorbed: dequantized });
    } else if (rule(signature(new Set()), { gradients })) {
      chosen.push({ region: r, absorbed: new Set() });
    }
  }
  if (chosen.length === 0) return { nodes: g.nodes, outputs: g.outputs };

  const startsAt = new Map(chosen.map((c) => [c.region.first, c]));
  const newId = new Map<number, number>();
  const nodes: Node[] = [];
  for (let k = 0; k < g.nodes.length;) {
    const c = startsAt.get(k);
    if (c === undefined) {
      const n = g.nodes[k];
      newId.set(k, nodes.length);
      nodes.push({ ...n, id: nodes.length, inputs: n.inputs.map((i) => newId.get(i)!) });
      k++;
      continue;
    }
    const r = c.region;
    const body = bodyOf(g, r, c.absorbed);
    const first = g.nodes[r.outputs[0]];
    const fusedId = nodes.length;
    const source = (i: number) => (c.absorbed.has(i) ? g.nodes[i].inputs[0] : i);
    nodes.push({
      id: fusedId,
      op: { _tag: "fused", kind: r.kind, attrs: r.attrs, body },
      inputs: r.inputs.map((i) => newId.get(source(i))!),
      shape: first.shape,
      dtype: first.dtype,
      path: r.path,
    });
    newId.set(r.outputs[0], fusedId);
    r.outputs.slice(1).forEach((o, j) => {
      const n = g.nodes[o];
      newId.set(o, nodes.length);
      nodes.push({
        id: nodes.length,
        op: { _tag: "part", index: j + 1, shape: n.shape, dtype: n.dtype },
        inputs: [fusedId],
        shape: n.shape,
        dtype: n.dtype,
        path: r.path,
      });
    });
    k = r.end;
  }
  const outputs = Object.fromEntries(
    Object.entries(g.outputs).map(([name, id]) => [name, newId.get(id)!]),
  );
  return { nodes, outputs };
};

/**
 * The fusion stage as a pass: {@linkcode fuseGraph} with the active tfjs
 * backend's kernels (`canFuse`). It runs first, while the regions the
 * tracer recorded still name the traced node ids.
 */
export const fuse: { readonly name: string; readonly run: (g: Graph) => Graph } = {
  name: "fuse",
  run: (g) => fuseGraph(g, (r, opts) => canFuse(r, { backend: tf.getBackend(), ...opts })),
};
