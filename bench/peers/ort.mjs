// @ts-check
/**
 * The onnxruntime peers of `bench/peers.ts`: the CRT segment graph exported
 * from `torch_ref.py` (`--mode export`: tokens [B, S] int64 and memory
 * [B, M] in; logits for every position [B, S, V] and the new memory [B, M]
 * out) run by onnxruntime, B = 20, inference only.
 *
 * - `--runtime node`: onnxruntime-node (the CPU build of onnxruntime shipped
 *   in the npm package), `--threads` intra-op threads, sequential execution,
 *   every graph optimisation. Runs in Deno (`deno run -A`) and in Node.
 * - `--runtime web`: onnxruntime-web, its WebAssembly SIMD build with
 *   `--threads` threads (`env.wasm.numThreads`; they need SharedArrayBuffer
 *   and workers, which Node has). `bench/peers.ts` runs it under Node.
 *
 * Plain JavaScript (checked with `// @ts-check`), so that Node runs it as it
 * is. It speaks the line protocol of `_protocol.ts` (always serving): a
 * `ready` line, then per `{"phase": "infer", "segmentLen": S, "steps": n}`
 * command a `model` line the first time S is asked for and a `steps` line.
 * The `model` line carries the check of the export: the check case saved
 * beside the graph (random tokens and memory, PyTorch's outputs) run once
 * here, and the largest |difference| of logits and new memory; and the
 * cores the process kept busy during a second run of it (`warm_run_cores`:
 * near `--threads` when the threads work).
 *
 * Run: `node bench/peers/ort.mjs --runtime web --models DIR` (DIR holds
 * `crt_b20_s35.onnx` and its `check_b20_s35.*.bin`, as `bench/peers.ts`
 * exports them).
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

const { values: cli } = parseArgs({
  args: process.argv.slice(2),
  options: {
    runtime: { type: "string", default: "node" },
    models: { type: "string" },
    threads: { type: "string", default: "2" },
    "batch-size": { type: "string", default: "20" },
    seed: { type: "string", default: "0" },
  },
});
const runtime = cli.runtime;
if (runtime !== "node" && runtime !== "web") {
  throw new RangeError(`--runtime ${runtime}: wants node or web`);
}
if (cli.models === undefined) throw new RangeError("--models FOLDER is required");
const models = cli.models;
const threads = Number(cli.threads), batch = Number(cli["batch-size"]);
const VOCAB = 10000, D_MEMORY = 256; // the reference CRT (torch_ref.py)

/** @type {typeof import("onnxruntime-web")} (the API both share, from onnxruntime-common) */
const ort = runtime === "node" ? await import("onnxruntime-node") : await import("onnxruntime-web");
if (runtime === "web") ort.env.wasm.numThreads = threads;

/** @param {unknown} x */
const emit = (x) => void process.stdout.write(JSON.stringify(x) + "\n");

/** @returns {import("onnxruntime-web").InferenceSession.SessionOptions} */
const sessionOptions = () =>
  runtime === "node"
    ? {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: "sequential",
      graphOptimizationLevel: "all",
    }
    : { executionProviders: ["wasm"], graphOptimizationLevel: "all" };

/**
 * A little-endian array file written by numpy's `tofile`.
 * @param {string} name
 */
const bytesOf = (name) => {
  const b = readFileSync(join(models, name));
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
};

/**
 * Largest |a[i] − b[i]|.
 * @param {ArrayLike<number>} a
 * @param {ArrayLike<number>} b
 */
const maxAbsDiff = (a, b) => {
  if (a.length !== b.length) throw new Error(`lengths ${a.length} and ${b.length} differ`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

/** CPU seconds of this whole process (all its threads) so far. */
const cpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/**
 * A session for segment length `s`, with its check against PyTorch's outputs.
 * @param {number} s
 */
const open = async (s) => {
  const name = `crt_b${batch}_s${s}`, check = `check_b${batch}_s${s}`;
  const session = await ort.InferenceSession.create(join(models, `${name}.onnx`), sessionOptions());
  const tokens = new BigInt64Array(bytesOf(`${check}.tokens.bin`));
  const memory = new Float32Array(bytesOf(`${check}.memory.bin`));
  const feeds = {
    tokens: new ort.Tensor("int64", tokens, [batch, s]),
    memory: new ort.Tensor("float32", memory, [batch, D_MEMORY]),
  };
  const out = await session.run(feeds);
  // Cores busy during a second, warm run: above 1 shows more than one thread at work.
  const t0 = performance.now(), c0 = cpuSeconds();
  await session.run(feeds);
  const wall = (performance.now() - t0) / 1000, cpu = cpuSeconds() - c0;
  const logits = /** @type {Float32Array} */ (out.logits.data);
  const newMemory = /** @type {Float32Array} */ (out.new_memory.data);
  const refLogits = new Float32Array(bytesOf(`${check}.logits.bin`));
  emit({
    event: "model",
    engine: `onnxruntime-${runtime}`,
    phase: "infer",
    segmentLen: s,
    onnx: `${name}.onnx`,
    check_logits_max_abs_diff: maxAbsDiff(logits, refLogits),
    check_logits_max_abs: maxAbsDiff(refLogits, new Float32Array(refLogits.length)),
    check_memory_max_abs_diff: maxAbsDiff(
      newMemory,
      new Float32Array(bytesOf(`${check}.new_memory.bin`)),
    ),
    warm_run_cores: Math.round((cpu / wall) * 100) / 100,
  });
  return session;
};

/** @type {Map<number, import("onnxruntime-web").InferenceSession>} */
const sessions = new Map();
let lcg = (Number(cli.seed) * 2654435761 + 1) >>> 0; // varied ids, as _protocol.ts's tokenSource

/**
 * One step: fresh token ids, one run; its wall time in seconds.
 * @param {import("onnxruntime-web").InferenceSession} session
 * @param {number} s
 */
const step = async (session, s) => {
  const ids = new BigInt64Array(batch * s);
  for (let i = 0; i < ids.length; i++) {
    lcg = (Math.imul(lcg, 1664525) + 1013904223) >>> 0;
    ids[i] = BigInt((lcg >>> 8) % VOCAB);
  }
  const feeds = {
    tokens: new ort.Tensor("int64", ids, [batch, s]),
    memory: new ort.Tensor("float32", new Float32Array(batch * D_MEMORY), [batch, D_MEMORY]),
  };
  const t0 = performance.now();
  await session.run(feeds);
  return (performance.now() - t0) / 1000;
};

emit({
  event: "ready",
  engine: `onnxruntime-${runtime}`,
  versions: ort.env.versions,
  threads,
  ...(runtime === "web" ? { wasm: { numThreads: ort.env.wasm.numThreads } } : {}),
  host: typeof Deno === "undefined" ? `node ${process.version}` : `deno ${Deno.version.deno}`,
});
for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === "") continue;
  const cmd = JSON.parse(line);
  if (cmd.phase !== "infer") {
    throw new Error(`onnxruntime-${runtime} runs infer only, not ${cmd.phase}`);
  }
  const s = cmd.segmentLen;
  if (!sessions.has(s)) sessions.set(s, await open(s));
  const session = /** @type {import("onnxruntime-web").InferenceSession} */ (sessions.get(s));
  const seconds = [];
  for (let i = 0; i < (cmd.steps ?? 1); i++) seconds.push(await step(session, s));
  emit({ event: "steps", seconds, tokens_per_step: batch * s });
}
for (const session of sessions.values()) await session.release();
process.exit(0); // onnxruntime-web's worker threads would keep Node alive
