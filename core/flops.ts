/**
 * FLOPs from the graph. Convention (Paper: FLOPs are reported beside every
 * perplexity): a multiply-add is 2 FLOPs and only contractions (matmul) are
 * counted; elementwise ops, softmax and norms are excluded (under 2 % here).
 *
 * Training counts the backward pass exactly from the graph: each matmul input
 * that needs a gradient costs one more product of the same size. Parameters
 * need gradients; tokens, targets, constants and incoming state do not (the
 * state entering a training window is cut from the graph).
 *
 * @module
 */
import type { Graph, Node } from "../spec/graph.ts";

/**
 * FLOPs of one traced graph, in total (not per token).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { countFlops, type GraphFlops } from "./flops.ts";
 * import { traceSegment } from "./trace.ts";
 * import { referenceCrt } from "../spec/reference_specs.ts";
 *
 * const opts = { batchSize: 1, segmentLen: 35, withLoss: true, training: false };
 * const flops: GraphFlops = countFlops(traceSegment(referenceCrt, opts).graph);
 * console.log((flops.forward / 35 / 1e6).toFixed(1), "MFLOPs per token forward");
 * assert.ok(flops.train > 2 * flops.forward && flops.train <= 3 * flops.forward);
 * ```
 */
export interface GraphFlops {
  /** The forward pass. */
  readonly forward: number;
  /** Forward plus backward: each matmul input that needs a gradient adds one product. */
  readonly train: number;
}

/**
 * Count the FLOPs of a graph: 2 per multiply-add of every matmul.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { countFlops } from "./flops.ts";
 * import { Tracer } from "../spec/graph.ts";
 *
 * const t = new Tracer();
 * const x = t.input("x", "data", [4, 8]);
 * const w = t.input("w", "param", [8, 16]);
 * // Only w needs a gradient: one extra product in training.
 * assert.deepEqual(countFlops(t.finish({ y: t.ops().matmul(x, w) })), { forward: 1024, train: 2048 });
 * ```
 */
export const countFlops = (g: Graph): GraphFlops =>
  flopsOf(g, (n) => n.op._tag === "input" && n.op.role === "param");

/** FLOPs of `g` where `grad(input node)` says which inputs need a gradient. */
const flopsOf = (g: Graph, grad: (input: Node) => boolean): GraphFlops => {
  const needsGrad: boolean[] = [];
  let forward = 0, train = 0;
  for (const n of g.nodes) {
    const op = n.op;
    needsGrad[n.id] = op._tag === "input"
      ? grad(n)
      : op._tag === "stopGradient" || op._tag === "constant"
      ? false
      : n.inputs.some((i) => needsGrad[i]);
    if (op._tag === "fused") {
      // A fused node costs what its body does; its inputs' gradient needs carry over.
      const inner = flopsOf(op.body, (b) => {
        const k = op.body.nodes.filter((x) => x.op._tag === "input").indexOf(b);
        return needsGrad[n.inputs[k]];
      });
      forward += inner.forward;
      train += inner.train;
      continue;
    }
    if (op._tag !== "matmul") continue;
    const a = g.nodes[n.inputs[0]].shape;
    const k = op.transposeA ? a[a.length - 2] : a[a.length - 1];
    const outer = n.shape.reduce((x, y) => x * y, 1); // batch · m · n
    const f = 2 * outer * k;
    forward += f;
    train += f + n.inputs.filter((i) => needsGrad[i]).length * f;
  }
  return { forward, train };
};
