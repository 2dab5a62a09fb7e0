/**
 * Printers for every compiler stage, for debugging: the traced graph, the
 * graph after each pass, and the lowering's kernel plan.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { kernelUse } from "../ops/lower.ts";
import type { ModelSpec } from "../spec/codecs.ts";
import { type Graph, printGraph } from "../spec/graph.ts";
import { defaultPasses, type Pass } from "./passes.ts";
import { traceSegment } from "./trace.ts";
import { verifyGraph } from "./verify.ts";

/**
 * The kernel plan of a lowered graph: one line per node with the tfjs kernels
 * it runs forward and in its gradient, then the totals per kernel.
 *
 * @example
 * ```ts
 * import { printKernelPlan } from "./print.ts";
 * import { Tracer } from "../spec/graph.ts";
 * const t = new Tracer();
 * const x = t.input("x", "data", [2, 3]);
 * console.log(printKernelPlan(t.finish({ y: t.ops().softmax(x) })));
 * ```
 */
export const printKernelPlan = (g: Graph): string => {
  const counts = new Map<string, number>();
  const lines = g.nodes.filter((n) => n.op._tag !== "input").map((n) => {
    const k = kernelUse(n.op);
    for (const name of [...k.forward, ...k.backward]) counts.set(name, (counts.get(name) ?? 0) + 1);
    const name = n.op._tag === "fused" ? `fused ${n.op.kind}` : n.op._tag;
    return `%${n.id} ${name}: forward [${k.forward.join(", ")}] backward [${
      k.backward.join(", ")
    }]  @${n.path}`;
  });
  const totals = [...counts].sort((a, b) => b[1] - a[1]).map(([k, c]) => `${k}×${c}`).join(" ");
  return `${lines.join("\n")}\nkernels: ${totals}`;
};

/**
 * Every stage of compiling one segment of `spec`, as text: the traced graph,
 * the verifier's verdict, the graph after each pass, and the kernel plan.
 *
 * @example
 * ```ts
 * import { printStages } from "./print.ts";
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * console.log(printStages({ ...referenceCrt, nLayers: 1 }, { batchSize: 1, segmentLen: 4 }));
 * ```
 */
export const printStages = (
  spec: ModelSpec,
  opts: { batchSize: number; segmentLen?: number; withLoss?: boolean; passes?: readonly Pass[] },
): string => {
  const { graph } = traceSegment(spec, {
    batchSize: opts.batchSize,
    segmentLen: opts.segmentLen ?? spec.segmentLen,
    withLoss: opts.withLoss ?? false,
    training: false,
  });
  const out = [`== trace (${graph.nodes.length} nodes)`, printGraph(graph)];
  const v = verifyGraph(graph);
  out.push(`== verify: ${E.isLeft(v) ? v.left.message : "ok"}`);
  let g = graph;
  for (const p of opts.passes ?? defaultPasses) {
    const before = g.nodes.length;
    g = p.run(g);
    const ok = verifyGraph(g);
    out.push(
      `== pass ${p.name}: ${before} → ${g.nodes.length} nodes${
        E.isLeft(ok) ? `: ${ok.left.message}` : ""
      }`,
    );
  }
  out.push("== optimized", printGraph(g), "== kernel plan", printKernelPlan(g));
  return out.join("\n");
};
