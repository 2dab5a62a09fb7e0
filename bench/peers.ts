/**
 * Our reference CRT against the same model in the runtimes a user would pick
 * instead (GitHub issues 6 and 11), in one run, measured alternately step by
 * step so that a noisy neighbour or a thermal drift hits every side alike.
 *
 * Sides (each a long-lived process speaking `peers/_protocol.ts`):
 * - **ours**, `peers/ours.ts`, on the native-BLAS matmul tier and on the
 *   portable pure-wasm tier (`--tiers`);
 * - **`pytorch`**, `peers/torch_ref.py`: the same model written out in
 *   PyTorch eager (Debian's python3-torch with OpenBLAS), `--threads`
 *   threads: training, batched inference, and the stream that reruns the
 *   open prefix of the segment for every token;
 * - **`pytorch-kvcache`**: the same PyTorch model streaming the way
 *   generation is written in practice, a per-layer key/value cache and one
 *   token per call, its products as one-row GEMMs (`kvcache`, what
 *   `nn.Linear` on a [1, 1, D] input does) and, tuned, as matrix-vector
 *   products (`kvcache-matvec`: Debian's OpenBLAS is several times faster at
 *   a GEMV than at the one-row GEMM), at every thread count of
 *   `--kv-threads` (default 1 and 2); its rows take the fastest of these and
 *   say which (`peer_variant`, `peer_threads`);
 * - **`onnxruntime-node`**, `peers/ort.mjs` under Deno: the segment graph
 *   exported from the PyTorch model with `torch.onnx.export` (opset 13) at
 *   bench time, into `--cache` (default `bench/.cache/`, not committed), run
 *   by onnxruntime's CPU build with `--threads` intra-op threads;
 * - **`onnxruntime-web`**, the same file under Node (`--ort-web-host`): the
 *   same graph on onnxruntime's WebAssembly SIMD build, `--threads` threads.
 *   Every onnxruntime session is checked once against PyTorch's outputs on
 *   the same weights (the check table).
 *
 * Cells, at every S of `--segment-lens` (35, 70):
 * - `train`: full optimizer steps, B = 20, windows of K = 2 segments; ours
 *   against `pytorch`;
 * - `infer`: B = 20, one segment, logits for every position plus the new
 *   memory, no gradients; ours against `pytorch`, `onnxruntime-node` and
 *   `onnxruntime-web`;
 * - `stream`: batch 1, one token per call, its logits read out; one step is
 *   one segment of S tokens (the memory update runs when it fills), tokens/s
 *   = 1 / per-token latency. Ours with the key/value cache (a
 *   `TokenStream`'s `logits`, the decode loop `Program.openDecoder`) through
 *   a model file — `encodeModelFile` then `loadModel`, float32 and int8
 *   (`--weights`) — against `pytorch-kvcache`; ours rerunning the prefix
 *   (`recompute`, float32) against `pytorch`.
 *
 * Each side warms up once per cell (`--warmup` steps; stream cells
 * `--stream-warmup` segments, 700 tokens at S = 35: V8 keeps optimising
 * our per-token JavaScript for the first few hundred tokens, ~0.19 → 0.12
 * ms/token on an int8 file, where a stream that generates runs for
 * thousands), then the driver asks for one step at a
 * time (a stream cell: one untimed segment, then `--stream-segments`
 * segments back to back, their mean the round's time: a generating stream
 * runs on with its caches warm, and the first segment after the other
 * sides' turns reads every weight from DRAM again), rotating who goes first every round, with a short idle gap before
 * each step so that the previous side's threads have stopped spinning.
 * Medians of `--steps` steps. OpenBLAS (ours native, PyTorch) runs the
 * kernel set the environment's `OPENBLAS_CORETYPE` names, if any, else the
 * one it detects; `--blas-core NAME` sets it for both, `--blas-core detect`
 * removes the variable for both, and the header says which set each ran. The machine has two cores, so anyone else's
 * work halves ours: every round reads /proc to see how much CPU the rest of
 * the machine used, and a round where it used more than `--busy-cores`
 * (0.15) is run again, up to `--extra-rounds` times per cell. After a cell's
 * rounds, one more untimed step of each of our sides runs with its tfjs
 * kernel dispatches counted (`_kernels.ts`): per training step, per batch
 * inference step, per streamed token.
 *
 * Output: a header (the CPU model, the load of the rest of the machine
 * before and during the run, every field of our backend's `BackendInfo`,
 * the peers' versions and threads), the parity of the models, the checks,
 * the ratio table (one row per phase, S, our tier, peer and weights), the
 * kernel calls, and the spread of every side in every cell. `--json` prints
 * only the rows, one JSON object per line, with the fields of
 * {@linkcode PeerRow}. Progress goes to stderr.
 *
 * Run: `deno task bench:peers [--phases train,infer,stream] [--segment-lens 35,70]
 * [--peers pytorch,pytorch-kvcache,onnxruntime-node,onnxruntime-web]
 * [--tiers native,portable] [--weights f32,int8] [--kv-threads 1,2]
 * [--kv-variants kvcache,kvcache-matvec] [--threads 2]
 * [--steps 5] [--warmup 2] [--stream-warmup 20] [--stream-segments 4] [--blas-core NAME|detect]
 * [--gap-ms 200] [--busy-cores 0.15] [--extra-rounds N]
 * [--ort-web-host node|deno] [--cache DIR] [--no-count] [--json] [--profile] [--setup]`.
 * `--setup` only installs and exports what the peers need; `--profile` adds
 * one profiled training step of ours and PyTorch at the first S.
 *
 * The PyTorch peer is installed when `/usr/bin/python3 -c "import torch"`
 * fails (`apt-get install -y python3-torch libopenblas0-pthread`, as root);
 * onnxruntime-node and onnxruntime-web are npm packages pinned in deno.json,
 * which Deno installs into node_modules/ without running their install
 * scripts (onnxruntime-node's fetches from a host not reachable here; the
 * CPU binary is in the package).
 *
 * @module
 */
import { describeError } from "../spec/errors.ts";
import { parseArgs } from "node:util";
import { isBlasCoreName } from "../ops/blas.ts";
import { CpuMeter, cpuModel, describeLoad, type Load, sampleLoad } from "./_load.ts";
import { type Peer, type Side, sleep, spawnCast } from "./peers/_cast.ts";
import {
  type Command,
  median,
  type Phase,
  type StreamVariant,
  type Weights,
} from "./peers/_protocol.ts";
import { checks, printProfiles, printReport } from "./peers/_report.ts";
import { ensureOnnxGraphs, ensureOnnxRuntime, ensurePyTorch, log, path } from "./peers/_setup.ts";

// A cell's sides are keys of its results: the type is exported from here too (the tests use it).

/** The runtimes ours is measured against. */
export type PeerName = "pytorch" | "pytorch-kvcache" | "onnxruntime-node" | "onnxruntime-web";

const PEER_NAMES: readonly PeerName[] = [
  "pytorch",
  "pytorch-kvcache",
  "onnxruntime-node",
  "onnxruntime-web",
];

/**
 * One row of the ratio table, as `--json` prints it: one of our sides
 * against one peer in one cell, from the same alternating rounds.
 *
 * @example
 * ```ts
 * import type { PeerRow } from "./peers.ts";
 * const row: PeerRow = {
 *   phase: "stream",
 *   segmentLen: 35,
 *   ours_tokens_per_s: 250,
 *   pytorch_tokens_per_s: 450,
 *   ratio: 0.556,
 *   backend: "wasm+native",
 *   peer: "pytorch-kvcache",
 *   weights: "int8",
 *   peer_tokens_per_s: 450,
 *   ours_ms_per_token: 4,
 *   peer_ms_per_token: 2.22,
 *   peer_threads: 1,
 *   peer_variant: "kvcache",
 *   ours_kernel_calls: 110,
 *   other_cores: 0.02,
 * };
 * console.log(JSON.stringify(row));
 * ```
 */
export interface PeerRow {
  /** What was measured: training steps, batched inference, batch-1 streaming. */
  readonly phase: Phase;
  /** Tokens per segment, S. */
  readonly segmentLen: number;
  /** Our tokens per second (median step). */
  readonly ours_tokens_per_s: number;
  /**
   * The PyTorch peer's tokens per second, on the rows whose peer is
   * `pytorch` or `pytorch-kvcache` (the field of the rows before other
   * peers existed); absent on onnxruntime rows.
   */
  readonly pytorch_tokens_per_s?: number;
  /** ours / peer throughput: above 1 we are faster. */
  readonly ratio: number;
  /** Our backend and matmul tier: `wasm+native` or `wasm+portable`. */
  readonly backend: string;
  /** Who ours is measured against. */
  readonly peer: PeerName;
  /** Our model's weights: float32, or an int8 model file (stream rows only). */
  readonly weights: Weights;
  /** The peer's tokens per second (median step), measured in the same rounds. */
  readonly peer_tokens_per_s: number;
  /** Stream rows: our median milliseconds per token. */
  readonly ours_ms_per_token?: number;
  /** Stream rows: the peer's median milliseconds per token. */
  readonly peer_ms_per_token?: number;
  /** The peer's thread count (for `pytorch-kvcache`, the fastest of `--kv-threads`). */
  readonly peer_threads: number;
  /** Stream rows: how the peer streamed (for `pytorch-kvcache`, the fastest of `--kv-variants`). */
  readonly peer_variant?: StreamVariant;
  /**
   * Our tfjs kernel dispatches per training step (`train`), per inference
   * step (`infer`) or per token (`stream`), from one untimed step; absent
   * with `--no-count`.
   */
  readonly ours_kernel_calls?: number;
  /** Mean cores the rest of the machine used during the cell's rounds (null: unknown). */
  readonly other_cores: number | null;
}

/** Options of a run, from the command line. */
export interface Options {
  readonly steps: number;
  readonly warmup: number;
  /** Warm-up steps of stream cells (segments): V8 optimises the per-token path over hundreds of tokens. */
  readonly streamWarmup: number;
  /** Segments each side streams back to back in a round of a stream cell; the round takes their mean. */
  readonly streamSegments: number;
  /**
   * OPENBLAS_CORETYPE for every side that runs OpenBLAS (ours native, PyTorch): a core name, or
   * "detect" to take it out of their environment; null leaves the environment as it is.
   */
  readonly blasCore: string | null;
  readonly json: boolean;
  readonly profile: boolean;
  readonly setupOnly: boolean;
  readonly count: boolean;
  readonly phases: readonly Phase[];
  readonly segmentLens: readonly number[];
  readonly peers: readonly PeerName[];
  readonly tiers: readonly ("native" | "portable")[];
  readonly weights: readonly Weights[];
  readonly threads: number;
  readonly kvThreads: readonly number[];
  readonly kvVariants: readonly StreamVariant[];
  readonly ortWebHost: "node" | "deno";
  readonly cache: string;
  readonly gapMs: number;
  readonly busyCores: number;
  readonly extraRounds: number;
}

/** The options of a run from its command line (RangeError naming the flag when one is bad). */
export const parseOptions = (args: string[]): Options => {
  const { values: v } = parseArgs({
    args,
    options: {
      steps: { type: "string", default: "5" },
      warmup: { type: "string", default: "2" },
      "stream-warmup": { type: "string", default: "20" },
      "stream-segments": { type: "string", default: "4" },
      "blas-core": { type: "string" },
      json: { type: "boolean", default: false },
      profile: { type: "boolean", default: false },
      setup: { type: "boolean", default: false },
      "no-count": { type: "boolean", default: false },
      phases: { type: "string", default: "train,infer,stream" },
      "segment-lens": { type: "string", default: "35,70" },
      peers: { type: "string", default: PEER_NAMES.join(",") },
      tiers: { type: "string", default: "native,portable" },
      weights: { type: "string", default: "f32,int8" },
      threads: { type: "string", default: "2" },
      "kv-threads": { type: "string", default: "1,2" },
      "kv-variants": { type: "string", default: "kvcache,kvcache-matvec" },
      "ort-web-host": { type: "string", default: "node" },
      cache: { type: "string", default: path("./.cache") },
      "gap-ms": { type: "string", default: "200" },
      "busy-cores": { type: "string", default: "0.15" },
      "extra-rounds": { type: "string" },
    },
  });
  const int = (name: string, s: string, min: number): number => {
    const x = Number(s);
    if (!Number.isInteger(x) || x < min) {
      throw new RangeError(`--${name} wants an integer ≥ ${min}`);
    }
    return x;
  };
  const list = <T extends string>(name: string, s: string, choices: readonly T[]): T[] => {
    const xs = s.split(",").map((x) => x.trim()).filter((x) => x !== "");
    for (const x of xs) {
      if (!(choices as readonly string[]).includes(x)) {
        throw new RangeError(`--${name}: ${x} is not one of ${choices.join(", ")}`);
      }
    }
    return xs as T[];
  };
  const ints = (name: string, s: string) =>
    s.split(",").map((x) => x.trim()).filter((x) => x !== "").map((x) => int(name, x, 1));
  const host = v["ort-web-host"];
  if (host !== "node" && host !== "deno") throw new RangeError("--ort-web-host wants node or deno");
  const busyCores = Number(v["busy-cores"]);
  if (!(busyCores >= 0)) throw new RangeError("--busy-cores wants a number ≥ 0");
  const steps = int("steps", v.steps, 1);
  const blasCore = v["blas-core"] ?? null;
  if (blasCore !== null && !isBlasCoreName(blasCore)) {
    throw new RangeError(`--blas-core wants an OpenBLAS core name or "detect", got '${blasCore}'`);
  }
  return {
    steps,
    warmup: int("warmup", v.warmup, 0),
    streamWarmup: int("stream-warmup", v["stream-warmup"], 0),
    streamSegments: int("stream-segments", v["stream-segments"], 1),
    blasCore,
    json: v.json,
    profile: v.profile,
    setupOnly: v.setup,
    count: !v["no-count"],
    phases: list("phases", v.phases, ["train", "infer", "stream"] as const),
    segmentLens: ints("segment-lens", v["segment-lens"]),
    peers: list("peers", v.peers, PEER_NAMES),
    tiers: list("tiers", v.tiers, ["native", "portable"] as const),
    weights: list("weights", v.weights, ["f32", "int8"] as const),
    threads: int("threads", v.threads, 1),
    kvThreads: ints("kv-threads", v["kv-threads"]),
    kvVariants: list("kv-variants", v["kv-variants"], ["kvcache", "kvcache-matvec"] as const),
    ortWebHost: host,
    cache: v.cache,
    gapMs: int("gap-ms", v["gap-ms"], 0),
    busyCores,
    extraRounds: int("extra-rounds", v["extra-rounds"] ?? String(steps), 0),
  };
};

// --- measurement ---------------------------------------------------------------

/** Every step time of one side in one cell, and its kernel count. */
export interface SideResult {
  readonly seconds: number[];
  tokensPerStep: number;
  /** Kernel dispatches of one untimed step (ours, unless `--no-count`). */
  kernels?: { calls: number; byName: Readonly<Record<string, number>> };
}

/** A measured cell: each side's steps, and how busy the rest of the machine was meanwhile. */
export interface Cell {
  readonly phase: Phase;
  readonly segmentLen: number;
  /** Step times of the rounds the medians use. */
  readonly results: Map<Side, SideResult>;
  /** Mean cores the rest of the machine used during those rounds. */
  readonly load: Load | null;
  /** Rounds run, and how many of them the rest of the machine left alone. */
  readonly rounds: { readonly total: number; readonly clean: number };
}

const commandOf = (side: Side, phase: Phase, segmentLen: number): Command => ({
  phase,
  segmentLen,
  ...(phase === "stream" ? { variant: side.variant, weights: side.weights } : {}),
});

/**
 * Warm each side up, then run rounds of one step per side until `steps`
 * rounds were clean (the rest of the machine used under `busyCores` cores
 * meanwhile) or `extraRounds` more rounds have run. The medians use the clean
 * rounds when there are at least min(steps, 3) of them, else every round, and
 * the report says which. Then count our kernels in one more, untimed step.
 */
const measureCell = async (
  sides: readonly Side[],
  procs: readonly Peer[],
  phase: Phase,
  segmentLen: number,
  o: Options,
): Promise<Cell> => {
  const warmup = phase === "stream" ? o.streamWarmup : o.warmup;
  for (const side of sides) {
    if (warmup > 0) {
      await side.proc.request({ ...commandOf(side, phase, segmentLen), steps: warmup });
    }
  }
  const rounds: { seconds: Map<Side, number>; load: Load | null }[] = [];
  const tokensPerStep = new Map<Side, number>();
  const isClean = (r: (typeof rounds)[number]) =>
    r.load === null || r.load.otherCores < o.busyCores;
  for (let round = 0; round < o.steps + o.extraRounds; round++) {
    if (rounds.filter(isClean).length >= o.steps) break;
    const meter = new CpuMeter(() => procs.map((p) => p.pid));
    // Rotate who goes first, so that no side always follows the same one.
    const order = sides.map((_, i) => sides[(i + round) % sides.length]);
    const seconds = new Map<Side, number>();
    // A stream round is a few segments back to back, as a generating stream runs, after one
    // untimed: the first segment after the others' turns reads every weight from DRAM again
    // (~1 ms more for the int8 file's 4.6 MB here), which a running stream does not.
    const [skip, per] = phase === "stream" ? [1, o.streamSegments] : [0, 1];
    for (const side of order) {
      await sleep(o.gapMs);
      const r = await side.proc.request({
        ...commandOf(side, phase, segmentLen),
        steps: skip + per,
      });
      if (r.last.event !== "steps") throw new Error(`${side.label}: no step times`);
      const timed = r.last.seconds.slice(skip);
      seconds.set(side, timed.reduce((a, b) => a + b, 0) / timed.length);
      tokensPerStep.set(side, r.last.tokens_per_step);
    }
    const entry = { seconds, load: meter.read() };
    rounds.push(entry);
    log(
      `  ${phase} S=${segmentLen} round ${round + 1}: ` +
        sides.map((s) => `${s.label} ${seconds.get(s)!.toFixed(3)} s`).join(", ") +
        `; rest of the machine ${describeLoad(entry.load)}${isClean(entry) ? "" : " (busy)"}`,
    );
  }
  const clean = rounds.filter(isClean);
  const used = clean.length >= Math.min(o.steps, 3) ? clean : rounds;
  const loads = used.map((r) => r.load).filter((l) => l !== null);
  const mean = (f: (l: Load) => number) => loads.reduce((a, l) => a + f(l), 0) / loads.length;
  const results = new Map<Side, SideResult>(sides.map((s) => [s, {
    seconds: used.map((r) => r.seconds.get(s)!),
    tokensPerStep: tokensPerStep.get(s)!,
  }]));
  if (o.count) {
    for (const side of sides.filter((s) => s.ours !== undefined)) {
      const r = await side.proc.request({ ...commandOf(side, phase, segmentLen), count: true });
      if (r.last.event !== "kernels") throw new Error(`${side.label}: no kernel count`);
      results.get(side)!.kernels = { calls: r.last.calls, byName: r.last.by_name };
    }
  }
  return {
    phase,
    segmentLen,
    results,
    load: loads.length === 0
      ? null
      : { otherCores: mean((l) => l.otherCores), stealCores: mean((l) => l.stealCores) },
    rounds: { total: rounds.length, clean: clean.length },
  };
};

const tokensPerSecond = (c: SideResult): number => c.tokensPerStep / median(c.seconds);

/** Kernel calls per step (train, infer) or per token (stream). */
const kernelCalls = (phase: Phase, c: SideResult): number | undefined =>
  c.kernels === undefined
    ? undefined
    : phase === "stream"
    ? Math.round((c.kernels.calls / c.tokensPerStep) * 10) / 10
    : c.kernels.calls;

/** Which peer an ours side of a stream cell is paired with: the same way of streaming. */
const pairs = (phase: Phase, ours: Side, peer: Side): boolean =>
  phase !== "stream"
    ? true
    : ours.variant === "kvcache"
    ? peer.peer!.name === "pytorch-kvcache"
    : peer.peer!.name === "pytorch";

const round = (x: number, digits: number): number => Math.round(x * 10 ** digits) / 10 ** digits;

/**
 * The rows of one cell: each ours side against each peer it pairs with —
 * in a stream cell, key/value cache against `pytorch-kvcache` and recompute
 * against `pytorch` — and, where a peer has several sides (thread counts,
 * variants), the fastest of them.
 *
 * @example
 * ```ts
 * import type { Cell } from "./peers.ts";
 * import type { Side } from "./peers/_cast.ts";
 * import { rowsOf } from "./peers.ts";
 * const side = (x: Partial<Side>) => ({ label: "", proc: null, phases: [], weights: "f32", ...x });
 * const ours = side({ ours: { tier: "native" } }) as unknown as Side;
 * const torch = side({ peer: { name: "pytorch", threads: 2 } }) as unknown as Side;
 * const cell: Cell = {
 *   phase: "infer",
 *   segmentLen: 35,
 *   results: new Map([
 *     [ours, { seconds: [0.1], tokensPerStep: 700 }],
 *     [torch, { seconds: [0.2], tokensPerStep: 700 }],
 *   ]),
 *   load: null,
 *   rounds: { total: 1, clean: 1 },
 * };
 * console.log(rowsOf(cell)[0].ratio); // 2
 * ```
 */
export const rowsOf = (cell: Cell): PeerRow[] => {
  const sides = [...cell.results.keys()];
  const ours = sides.filter((s) => s.ours !== undefined);
  const peers = sides.filter((s) => s.peer !== undefined);
  const rows: PeerRow[] = [];
  for (const o of ours) {
    const r = cell.results.get(o)!;
    const mine = tokensPerSecond(r);
    const byName = new Map<PeerName, Side>();
    for (const p of peers.filter((p) => pairs(cell.phase, o, p))) {
      const best = byName.get(p.peer!.name);
      const faster = best === undefined ||
        tokensPerSecond(cell.results.get(p)!) > tokensPerSecond(cell.results.get(best)!);
      if (faster) byName.set(p.peer!.name, p);
    }
    for (const [name, p] of byName) {
      const theirs = tokensPerSecond(cell.results.get(p)!);
      const calls = kernelCalls(cell.phase, r);
      rows.push({
        phase: cell.phase,
        segmentLen: cell.segmentLen,
        ours_tokens_per_s: round(mine, 1),
        ...(name.startsWith("pytorch") ? { pytorch_tokens_per_s: round(theirs, 1) } : {}),
        ratio: round(mine / theirs, 3),
        backend: `wasm+${o.ours!.tier}`,
        peer: name,
        weights: o.weights,
        peer_tokens_per_s: round(theirs, 1),
        ...(cell.phase === "stream"
          ? { ours_ms_per_token: round(1000 / mine, 3), peer_ms_per_token: round(1000 / theirs, 3) }
          : {}),
        peer_threads: p.peer!.threads,
        ...(cell.phase === "stream" ? { peer_variant: p.variant } : {}),
        ...(calls === undefined ? {} : { ours_kernel_calls: calls }),
        other_cores: cell.load === null ? null : round(cell.load.otherCores, 3),
      });
    }
  }
  return rows;
};

const main = async (o: Options): Promise<void> => {
  const t0 = performance.now();
  await ensurePyTorch(); // every peer needs it: the onnxruntime ones run its exported graph
  const ortWanted = o.peers.some((p) => p.startsWith("onnxruntime-")) && o.phases.includes("infer");
  let onnxDir: string | null = null;
  if (ortWanted) {
    await ensureOnnxRuntime(o);
    onnxDir = await ensureOnnxGraphs(o);
  }
  if (o.setupOnly) return;
  const loadavg = Deno.loadavg();
  const before = await sampleLoad(2000);
  log(
    `${cpuModel()}, ${navigator.hardwareConcurrency} logical cores, load average ` +
      `${loadavg[0].toFixed(2)}; rest of the machine before the run: ${describeLoad(before)}`,
  );
  if (before !== null && before.otherCores > o.busyCores) {
    log("warning: the machine is busy; rounds it disturbs are rerun, and the report says so");
  }

  const cast = await spawnCast(o, onnxDir);
  const meter = new CpuMeter(() => cast.procs.map((p) => p.pid));
  const cells: Cell[] = [];
  let ok = true;
  try {
    for (const phase of o.phases) {
      for (const s of o.segmentLens) {
        const sides = cast.sides.filter((x) => x.phases.includes(phase));
        if (!sides.some((x) => x.ours !== undefined) || !sides.some((x) => x.peer !== undefined)) {
          continue; // nothing to compare in this cell with the chosen --peers / --tiers
        }
        const warm = phase === "stream" ? o.streamWarmup : o.warmup;
        log(`${phase} S=${s}: warm-up ${warm}, then ${o.steps} alternating rounds`);
        const cell = await measureCell(sides, cast.procs, phase, s, o);
        if (cell.rounds.clean < Math.min(o.steps, 3)) {
          log(`  warning: only ${cell.rounds.clean} clean rounds; the medians use busy ones too`);
        }
        cells.push(cell);
      }
    }
    const rows = cells.flatMap(rowsOf);
    if (o.json) {
      for (const r of rows) console.log(JSON.stringify(r));
    } else {
      printReport(o, cast, cells, rows, { before, during: meter.read(), loadavg });
    }
    ok = checks(cast.procs).ok;
    if (o.profile) await printProfiles(o, cast);
  } finally {
    for (const p of cast.procs) await p.close();
  }
  log(`done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  if (!ok) {
    log("error: a check failed (see the Checks table): a peer does not compute the same model");
    Deno.exitCode = 1;
  }
};

const USAGE = `usage: deno task bench:peers [--steps N] [--warmup N] [--stream-warmup N]
  [--stream-segments N] [--blas-core NAME|detect] [--json] [--profile] [--setup]
  [--no-count] [--phases train,infer,stream] [--segment-lens 35,70]
  [--peers ${PEER_NAMES.join(",")}] [--tiers native,portable] [--weights f32,int8]
  [--threads N] [--kv-threads 1,2] [--kv-variants kvcache,kvcache-matvec]
  [--ort-web-host node|deno] [--cache DIR] [--gap-ms MS] [--busy-cores X] [--extra-rounds N]
(what each option does: the comment at the top of bench/peers.ts)`;

/** Options from the command line, or exit: 0 after `--help`, 2 with the usage on bad input. */
const optionsOrExit = (args: string[]): Options => {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE);
    Deno.exit(0);
  }
  try {
    return parseOptions(args);
  } catch (e) {
    console.error(`bench:peers: ${describeError(e)}\n${USAGE}`);
    Deno.exit(2);
  }
};

if (import.meta.main) await main(optionsOrExit(Deno.args));
