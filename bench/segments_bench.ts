/**
 * Segment sizes side by side: CRT at the full, ½ and ¼ segment length beside
 * the full-length Transformer (the baseline of each group) and Transformer-XL,
 * all at the reference width of SUBSTRATE.md (D = 256, 2 layers, B = 20).
 *
 * Groups: `train` (one AdamW step on a window of 70 tokens per stream) and
 * `infer` (logits for a window of 70 tokens per stream). Setup (compile, init,
 * warm-up) happens outside the timed part. Parameter counts, FLOPs per token
 * and the matmul tier are printed before the timings; tokens/s and achieved
 * GFLOP/s follow from the times: tokens = 20 × 70 per iteration.
 *
 * Run: `deno task bench` (add `-- --filter train` for one group).
 */
import * as E from "fp-ts/lib/Either.js";
import { startBackend } from "../ops/backend.ts";
import { tf } from "../ops/tf.ts";
import { compile, type Program } from "../core/program.ts";
import { startTraining, trainOn, type TrainState } from "../core/train.ts";
import { type ModelSpec, referenceCrt, referenceTransformer, referenceXl } from "../spec/model.ts";

const started = await startBackend();
if (E.isLeft(started)) throw started.left;
const B = 20, WINDOW = 70;

const models: { name: string; spec: ModelSpec; baseline?: boolean }[] = [
  { name: "Transformer S=70", spec: referenceTransformer, baseline: true },
  { name: "CRT S=70", spec: { ...referenceCrt, segmentLen: 70 } },
  { name: "CRT S=35", spec: { ...referenceCrt, segmentLen: 35 } },
  { name: "CRT S=17", spec: { ...referenceCrt, segmentLen: 17 } },
  { name: "XL S=35 mem=35", spec: referenceXl },
];

const rows: string[] = [];
const prepared = models.map((m) => {
  const c = compile(m.spec);
  if (E.isLeft(c)) throw new Error(c.left.message);
  const program: Program = c.right;
  rows.push(
    `${m.name.padEnd(16)} params ${program.paramCount.toLocaleString("en")}  ` +
      `FLOPs/token forward ${(program.flops.forwardPerToken / 1e6).toFixed(2)} M, ` +
      `train ${(program.flops.trainPerToken / 1e6).toFixed(2)} M`,
  );
  return { ...m, program };
});
console.log(`backend ${JSON.stringify(started.right)}; tokens per iteration ${B * WINDOW}`);
for (const r of rows) console.log(r);

const window = (seed: number) =>
  tf.tensor2d(
    new Int32Array(B * WINDOW).map((_, i) => (i * 7919 + seed) % 10000),
    [B, WINDOW],
    "int32",
  );

for (const m of prepared) {
  const k = Math.ceil(WINDOW / m.spec.segmentLen);
  let ts: TrainState = startTraining(m.program, { seed: 0, batchSize: B });
  const tokens = window(1), targets = window(2);
  ts = trainOn(m.program, ts, { tokens, targets }, { lr: 1e-4, bpttSegments: k, seed: 0 }).next; // warm-up
  Deno.bench(
    { name: m.name, group: "train", baseline: m.baseline ?? false, n: 3, warmup: 1 },
    () => {
      ts = trainOn(m.program, ts, { tokens, targets }, { lr: 1e-4, bpttSegments: k, seed: 1 }).next;
    },
  );
  Deno.bench(
    { name: m.name, group: "infer", baseline: m.baseline ?? false, n: 5, warmup: 1 },
    () => {
      const start = m.program.initState(B);
      const out = m.program.forward(ts.params, start, tokens);
      out.logits.dataSync();
      out.logits.dispose();
      m.program.disposeState(out.state);
      m.program.disposeState(start);
    },
  );
}
