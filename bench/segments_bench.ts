/**
 * Segment sizes side by side: CRT at the full, ½ and ¼ segment length beside
 * the full-length Transformer (the baseline of each group) and Transformer-XL,
 * all at the reference width (docs/substrate.md: D = 256, 2 layers, B = 20).
 *
 * Groups: `train` (one AdamW step on a window of 70 tokens per stream) and
 * `infer` (logits for a window of 70 tokens per stream). Setup (compile, init,
 * warm-up, one profiled iteration for peak memory) happens outside the timed
 * part. Parameter counts, FLOPs per token and the matmul tier are printed
 * before the timings; after them, a table of what the times mean: median ms,
 * tokens/s, achieved GFLOP/s (matmul FLOPs of core/flops.ts over wall time),
 * peak tensor bytes inside one iteration (`tf.profile`), live tensor bytes
 * between iterations (`tf.memory().numBytes`) and the process's resident set
 * (`Deno.memoryUsage().rss`), and, with `-A` (Deno guards /proc), the cores
 * the rest of the machine used meanwhile (`_load.ts`: on two cores a busy
 * neighbour halves every number).
 * tokens = 20 × 70 per iteration. Deno has no hook after its last bench, so
 * the table prints on unload, just before Deno's final row and summary.
 *
 * Run: `deno task bench` (add `-- --filter train` for one group).
 */
import * as E from "fp-ts/lib/Either.js";
import { startBackend } from "../ops/backend.ts";
import { tf } from "../ops/tf.ts";
import type { Program } from "../core/program.ts";
import { compile } from "../core/compile.ts";
import { startTraining, trainOn, type TrainState } from "../core/train.ts";
import type { ModelSpec } from "../spec/codecs.ts";
import { referenceCrt, referenceTransformer, referenceXl } from "../spec/reference_specs.ts";
import { CpuMeter, type Load } from "./_load.ts";
import { formatTable } from "./_table.ts";
import { median } from "./peers/_protocol.ts";

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

/** What one bench (group × model) measured, for the table printed after Deno's. */
interface Measured {
  readonly group: "train" | "infer";
  readonly name: string;
  /** Matmul FLOPs of one iteration. */
  readonly flops: number;
  /** Peak tensor bytes inside one iteration, from tf.profile in setup. */
  peakBytes: number;
  /** Wall time of every call of the bench function, in ms. */
  readonly ms: number[];
  /** Live tensor bytes after the last call. */
  liveBytes: number;
  /** Largest resident set seen after a call. */
  rss: number;
  /** Measures the rest of the machine from this bench's first call on. */
  meter?: CpuMeter;
  /** What the rest of the machine used, from the first call to the last. */
  load: Load | null;
}
const measured: Measured[] = [];

/**
 * Time `f` around Deno.bench's own timing: Deno prints only times, and its
 * call count is not `n` (it adds calibration calls), so the GFLOP/s and
 * memory columns come from our own samples of the same calls.
 */
const sampled = (m: Measured, f: () => void) => () => {
  m.meter ??= new CpuMeter();
  const t0 = performance.now();
  f();
  m.ms.push(performance.now() - t0);
  m.liveBytes = tf.memory().numBytes;
  m.rss = Math.max(m.rss, Deno.memoryUsage().rss);
  m.load = m.meter.read();
};

/** Peak tensor bytes while `f` runs (tfjs snapshots the byte count after every kernel). */
const peakBytesOf = async (f: () => void): Promise<number> => (await tf.profile(f)).peakBytes;

for (const m of prepared) {
  const k = Math.ceil(WINDOW / m.spec.segmentLen);
  let ts: TrainState = startTraining(m.program, { seed: 0, batchSize: B });
  const tokens = window(1), targets = window(2);
  const trainStep = () => {
    ts = trainOn(m.program, ts, { tokens, targets }, { lr: 1e-4, bpttSegments: k, seed: 1 }).next;
  };
  const inferStep = () => {
    const start = m.program.initState(B);
    const out = m.program.forward(ts.params, start, tokens);
    out.logits.dataSync();
    out.logits.dispose();
    m.program.disposeState(out.state);
    m.program.disposeState(start);
  };
  trainStep(); // warm-up: lowering and V8 tier-up
  // FLOPs per token are counted on the compile probe (XL with a full cache);
  // the bench's XL inference starts from an empty cache, so its GFLOP/s reads slightly high.
  const tokensPerIteration = B * WINDOW;
  /** A row not yet timed: the group, FLOPs per iteration and peak bytes of `step`. */
  const unmeasured = async (
    group: Measured["group"],
    flops: number,
    step: () => void,
  ): Promise<Measured> => ({
    group,
    name: m.name,
    flops: flops * tokensPerIteration,
    peakBytes: await peakBytesOf(step),
    ms: [],
    liveBytes: 0,
    rss: 0,
    load: null,
  });
  const train = await unmeasured("train", m.program.flops.trainPerToken, trainStep);
  const infer = await unmeasured("infer", m.program.flops.forwardPerToken, inferStep);
  measured.push(train, infer);
  Deno.bench(
    { name: m.name, group: "train", baseline: m.baseline ?? false, n: 3, warmup: 1 },
    sampled(train, trainStep),
  );
  Deno.bench(
    { name: m.name, group: "infer", baseline: m.baseline ?? false, n: 5, warmup: 1 },
    sampled(infer, inferStep),
  );
}

const mb = (bytes: number): string => (bytes / 2 ** 20).toFixed(0);

// Deno.bench has no hook after the last bench; unload fires after its table.
globalThis.addEventListener("unload", () => {
  const ran = measured.filter((m) => m.ms.length > 1);
  if (ran.length === 0) return;
  // Deno guards /proc behind --allow-all; without it the load column would say n/a on every row.
  const withLoad = ran.some((m) => m.load !== null);
  const header = [
    "group",
    "model",
    "median ms",
    "tok/s",
    "GFLOP/s",
    "tf peak MB",
    "tf live MB",
    "RSS MB",
    ...(withLoad ? ["other cores"] : []),
  ];
  const body = ran.map((m) => {
    // The first call is Deno's warm-up; the median is over the rest.
    const ms = median(m.ms.slice(1));
    return [
      m.group,
      m.name,
      ms.toFixed(0),
      (B * WINDOW / ms * 1000).toFixed(0),
      (m.flops / ms / 1e6).toFixed(1),
      mb(m.peakBytes),
      mb(m.liveBytes),
      mb(m.rss),
      ...(withLoad ? [m.load === null ? "n/a" : m.load.otherCores.toFixed(2)] : []),
    ];
  });
  console.log(`\n${formatTable(header, body)}`);
  console.log(
    "GFLOP/s: matmul FLOPs (core/flops.ts) per wall second; tf peak: largest tensor bytes " +
      "inside one iteration (tf.profile); tf live: every tensor alive between iterations, " +
      "i.e. the parameters and AdamW moments of all five models together; RSS: the process " +
      "high-water so far (the wasm heap " +
      "never shrinks, so later rows inherit earlier rows' heap)." +
      (withLoad
        ? " other cores: CPU the rest of the machine used during the bench (2 cores here: " +
          "1.00 halves the numbers)."
        : " Run `deno bench -A bench/segments_bench.ts` to see how busy the rest of the " +
          "machine was (Deno lets only --allow-all read /proc)."),
  );
});
