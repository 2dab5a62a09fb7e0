import assert from "node:assert/strict";
import { printKernelPlan, printStages } from "../core/print.ts";
import { traceSegment } from "../core/trace.ts";
import { tinyCrtGru, tinyXl } from "./_tiny.ts";

Deno.test("printStages shows every stage and tags nodes with their spec paths", () => {
  const text = printStages(tinyCrtGru, { batchSize: 2, withLoss: true });
  for (
    const heading of [
      "== trace",
      "== verify: ok",
      "== pass dead-code",
      "== optimized",
      "== kernel plan",
    ]
  ) {
    assert.ok(text.includes(heading), `missing ${heading}`);
  }
  assert.match(text, /matmul\(%\d+, %\d+\).*@model\.blocks\[0\]\.attn/);
  assert.match(text, /crossEntropy.*@model\.head\.loss/);
  assert.match(text, /-> state:memory/);
});

Deno.test("printKernelPlan lists the forward and gradient kernels of each node", () => {
  const { graph } = traceSegment(tinyXl, {
    batchSize: 1,
    segmentLen: 3,
    cacheLen: 2,
    withLoss: false,
    training: false,
  });
  const plan = printKernelPlan(graph);
  assert.match(plan, /relShift: forward \[[^\]]*PadV2/);
  assert.match(plan, /kernels: .*BatchMatMul×\d+/);
});
