/**
 * Streaming at batch 1 with the reference CRT (docs/substrate.md; V = 10,000,
 * D = 256, 2 layers, S = 35; random weights: speed does not depend on them).
 *
 * Groups:
 * - `token`: one token fed per iteration, into a stream that runs on and
 *   on (so every position of the segment is visited), its output read back
 *   to the host. Baseline: the open segment's prefix re-run for every token
 *   with logits for every position (`recompute`, the behaviour before the
 *   key/value cache); then the cache with one readout row
 *   (`Program.inferStep`), and the user-facing `TokenStream.feed`, which
 *   adds the softmax to probabilities on the host.
 * - `prompt`: a 35-token prompt fed in one call (next-token probabilities
 *   after its last token), from a fresh stream.
 * - `load`: a model file's bytes to a runnable model (verify, compile,
 *   upload; int8 weights stay int8), float32 against int8 weights.
 *
 * After Deno's table, a table of medians: ms per token (per call for
 * `load`), tokens/s, and for the token group the forward FLOPs per token.
 * Setup (compile, parameters, file encoding, warm-up of every step shape)
 * is outside the timed part.
 *
 * Run: `deno task bench` (add `-- --filter token` for one group, or
 * `deno bench -A bench/stream_bench.ts` for this file only).
 */
import * as E from "fp-ts/lib/Either.js";
import type { Stream } from "../core/program.ts";
import { compile } from "../core/compile.ts";
import { flattenParams } from "../core/params.ts";
import { loadModel } from "../deploy/loaded.ts";
import { decodeModelFile, encodeModelFile } from "../deploy/model_file.ts";
import { startBackend } from "../ops/backend.ts";
import { referenceCrt } from "../spec/reference_specs.ts";
import { CpuMeter, describeLoad } from "./_load.ts";
import { median } from "./peers/_protocol.ts";

const started = await startBackend();
if (E.isLeft(started)) throw started.left;
const spec = referenceCrt;
const compiled = compile(spec);
if (E.isLeft(compiled)) throw new Error(compiled.left.message);
const program = compiled.right;
const params = program.init(0);
const S = spec.segmentLen, V = spec.vocabSize;
console.log(
  `backend ${JSON.stringify(started.right)}; reference CRT: ${
    program.paramCount.toLocaleString("en")
  } parameters, ${(program.flops.forwardPerToken / 1e6).toFixed(2)} MFLOP/token forward, S = ${S}`,
);

const host = Object.fromEntries(
  Object.entries(flattenParams(params)).map((
    [k, t],
  ) => [k, { shape: [...t.shape], data: t.dataSync() as Float32Array }]),
);
const vocab = Array.from({ length: V }, (_, i) => (i === 0 ? "<eos>" : `w${i}`));
const f32Bytes = await encodeModelFile({ spec, vocab, params: host, meta: {} });
const int8Bytes = await encodeModelFile({ spec, vocab, params: host, meta: {} }, { int8: true });
const model = await loadModel(f32Bytes);

/** Wall times of every call of one bench, for the table printed after Deno's. */
interface Measured {
  readonly group: string;
  readonly name: string;
  /** Tokens one call processes (0: not a token bench). */
  readonly tokens: number;
  readonly ms: number[];
}
const measured: Measured[] = [];
// What the rest of the machine used while the benches ran (needs -A: Deno guards /proc).
const meter = new CpuMeter();
const sampled = (m: Measured, f: () => void) => () => {
  const t0 = performance.now();
  f();
  m.ms.push(performance.now() - t0);
};
const bench = (
  group: string,
  name: string,
  tokens: number,
  f: () => void,
  opts: { baseline?: boolean } = {},
) => {
  const m: Measured = { group, name, tokens, ms: [] };
  measured.push(m);
  Deno.bench({ name, group, baseline: opts.baseline ?? false, warmup: 3 * S }, sampled(m, f));
};

let next = 1;
const nextId = () => (next = (next * 7919 + 13) % V);

/** A stream fed one token per call through `inferStep` with the given options. */
const tokenStepper = (opts: { recompute: boolean; readout: "all" | "last" }) => {
  let stream: Stream = program.openStream(1);
  const step = () => {
    const out = program.inferStep(params, stream, Int32Array.of(nextId()), opts);
    out.logits.dataSync(); // [1, 1, V]
    out.logits.dispose();
    program.disposeState(stream.state);
    stream = out.stream;
  };
  for (let i = 0; i < 2 * S; i++) step(); // every step shape traced and lowered before timing
  return step;
};

bench(
  "token",
  "recompute prefix, all logits (before)",
  1,
  tokenStepper({ recompute: true, readout: "all" }),
  { baseline: true },
);
bench("token", "key/value cache, last row", 1, tokenStepper({ recompute: false, readout: "last" }));
const tokenStream = model.openStream();
for (let i = 0; i < 2 * S; i++) tokenStream.feed([nextId()]);
bench("token", "TokenStream.feed (probabilities)", 1, () => void tokenStream.feed([nextId()]));

const prompt = Int32Array.from({ length: S }, nextId);
const promptStep = (recompute: boolean) => () => {
  const stream = program.openStream(1);
  const out = program.inferStep(params, stream, prompt, { recompute, readout: "last" });
  out.logits.dataSync();
  out.logits.dispose();
  program.disposeState(stream.state);
  program.disposeState(out.stream.state);
};
promptStep(true)();
promptStep(false)();
bench("prompt", "segment graph, all logits", S, promptStep(true), { baseline: true });
bench("prompt", "key/value step, last row", S, promptStep(false));

const loadOnce = (bytes: Uint8Array) => async () => {
  const m = await loadModel(await decodeModelFile(bytes));
  m.dispose();
};
const measureLoad = (name: string, bytes: Uint8Array, baseline: boolean) => {
  const m: Measured = { group: "load", name, tokens: 0, ms: [] };
  measured.push(m);
  const f = loadOnce(bytes);
  Deno.bench({ name, group: "load", baseline, n: 10, warmup: 2 }, async () => {
    const t0 = performance.now();
    await f();
    m.ms.push(performance.now() - t0);
  });
};
measureLoad(`f32 file (${(f32Bytes.length / 1e6).toFixed(1)} MB)`, f32Bytes, true);
measureLoad(`int8 file (${(int8Bytes.length / 1e6).toFixed(1)} MB)`, int8Bytes, false);

// Deno.bench has no hook after the last bench; unload fires after its table.
globalThis.addEventListener("unload", () => {
  const ran = measured.filter((m) => m.ms.length > 1);
  if (ran.length === 0) return;
  const rows = ran.map((m) => {
    const ms = median(m.ms);
    const perToken = m.tokens > 0 ? ms / m.tokens : ms;
    return [
      m.group,
      m.name,
      perToken.toFixed(3),
      m.tokens > 0 ? (1000 / perToken).toFixed(0) : "-",
      String(m.ms.length),
    ];
  });
  const header = ["group", "bench", "median ms/token (load: ms)", "tokens/s", "calls"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  console.log(`\n${line(header)}\n${widths.map((w) => "-".repeat(w)).join("  ")}`);
  for (const r of rows) console.log(line(r));
  console.log(
    `Rest of the machine meanwhile: ${describeLoad(meter.read())} cores. ` +
      `Batch 1; medians over every call Deno made (warm-up excluded). token: one token into a ` +
      `running stream, its logits (probabilities for TokenStream) read back; prompt: ${S} ` +
      `tokens in one call, per token; load: decode, verify, compile and upload (int8 stays int8). ` +
      `On 2 shared cores a busy neighbour slows every row.`,
  );
});
