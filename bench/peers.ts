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
 *   = 1 / per-token latency. Ours with the key/value cache
 *   (`Program.inferStep` without `recompute`, `readout: "last"`) through a
 *   model file — `encodeModelFile` then `loadModel`, float32 and int8
 *   (`--weights`) — against `pytorch-kvcache`; ours rerunning the prefix
 *   (`recompute`, float32) against `pytorch`.
 *
 * Each side warms up once per cell, then the driver asks for one step at a
 * time, rotating who goes first every round, with a short idle gap before
 * each step so that the previous side's threads have stopped spinning.
 * Medians of `--steps` steps. The machine has two cores, so anyone else's
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
 * [--steps 5] [--warmup 2] [--gap-ms 200] [--busy-cores 0.15] [--extra-rounds N]
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
import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { CpuMeter, cpuModel, describeLoad, type Load, sampleLoad } from "./_load.ts";
import { formatTable } from "./_table.ts";
import {
  type Command,
  median,
  type Phase,
  readLines,
  type Reply,
  type StreamVariant,
  type Weights,
} from "./peers/_protocol.ts";

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
interface Options {
  readonly steps: number;
  readonly warmup: number;
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

const PYTHON = "/usr/bin/python3"; // Debian's python3-torch installs for the system interpreter
const INSTALL = ["apt-get", "install", "-y", "python3-torch", "libopenblas0-pthread"];
const ORT_BATCH = 20; // the infer cell's B, the batch the segment graph is exported for
const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const path = (rel: string): string => decodeURIComponent(new URL(rel, import.meta.url).pathname);

const parseOptions = (args: string[]): Options => {
  const { values: v } = parseArgs({
    args,
    options: {
      steps: { type: "string", default: "5" },
      warmup: { type: "string", default: "2" },
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
  return {
    steps,
    warmup: int("warmup", v.warmup, 0),
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

const log = (msg: string): void => console.error(msg);

// --- installing and exporting what the peers need --------------------------------

const succeeds = async (cmd: string, args: string[]): Promise<boolean> => {
  try {
    const r = await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output();
    return r.success;
  } catch {
    return false; // not installed at all
  }
};

/** Run a command with its output on our stderr (stdout may be the JSON rows). */
const runLoud = async (argv: string[], env: Record<string, string> = {}): Promise<boolean> => {
  log(`$ ${argv.join(" ")}`);
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { DEBIAN_FRONTEND: "noninteractive", ...env },
  }).spawn();
  const forward = (s: ReadableStream<Uint8Array>) =>
    s.pipeTo(new WritableStream({ write: (chunk) => void Deno.stderr.writeSync(chunk) }));
  await Promise.all([forward(child.stdout), forward(child.stderr)]);
  return (await child.status).success;
};

/**
 * Make `import torch` work for `/usr/bin/python3`, installing Debian's
 * PyTorch and OpenBLAS when it does not (without OpenBLAS, Debian's torch
 * runs on the reference BLAS, 10× slower). Throws with what to do when it
 * cannot.
 */
const ensurePyTorch = async (): Promise<void> => {
  if (await succeeds(PYTHON, ["-c", "import torch"])) {
    log(`PyTorch peer: present (${PYTHON} -c "import torch" works)`);
    return;
  }
  log(`PyTorch peer: ${PYTHON} -c "import torch" fails; installing it with apt-get`);
  let ok = await runLoud(INSTALL);
  if (!ok) {
    // A fresh machine may have no package lists yet.
    ok = await runLoud(["apt-get", "update"]) && await runLoud(INSTALL);
  }
  if (!ok || !(await succeeds(PYTHON, ["-c", "import torch"]))) {
    throw new Error(
      `cannot install the PyTorch peer; as root run: ${INSTALL.join(" ")} (then rerun)`,
    );
  }
  log("PyTorch peer: installed");
};

/**
 * The onnxruntime packages in node_modules/ (Deno puts them there from
 * deno.json's imports, skipping their install scripts) and, for the web
 * peer under Node, a Node that runs it. Throws with what to do.
 */
const ensureOnnxRuntime = async (o: Options): Promise<void> => {
  const wanted = o.peers.filter((p) => p.startsWith("onnxruntime-"));
  const missing = () =>
    wanted.filter((p) => {
      try {
        Deno.statSync(`${ROOT}node_modules/${p}/package.json`);
        return false;
      } catch {
        return true;
      }
    });
  if (missing().length > 0 && !(await runLoud([Deno.execPath(), "install"]))) {
    throw new Error("`deno install` failed: the onnxruntime peers need node_modules/");
  }
  if (missing().length > 0) {
    throw new Error(`${missing().join(", ")} not in node_modules/ after \`deno install\``);
  }
  if (wanted.includes("onnxruntime-web") && o.ortWebHost === "node") {
    if (
      !(await succeeds("node", ["-e", "if (+process.versions.node.split('.')[0] < 20) throw 1"]))
    ) {
      throw new Error(
        "onnxruntime-web runs under Node ≥ 20 here and `node` is missing or older " +
          "(apt-get install nodejs), or pass --ort-web-host deno, or leave it out of --peers",
      );
    }
  }
};

/**
 * The folder of the exported segment graphs: one per version of the
 * PyTorch model's source, so that an edit to torch_ref.py exports afresh.
 */
const onnxFolder = async (o: Options): Promise<string> => {
  const source = await Deno.readFile(path("./peers/torch_ref.py"));
  const tag = createHash("sha256").update(source).digest("hex").slice(0, 12);
  return `${o.cache}/onnx-${tag}`;
};

/** Export the segment graph at every S unless the cache has it. */
const ensureOnnxGraphs = async (o: Options): Promise<string> => {
  const dir = await onnxFolder(o);
  for (const s of o.segmentLens) {
    const file = `${dir}/crt_b${ORT_BATCH}_s${s}.onnx`;
    try {
      Deno.statSync(file);
      log(`ONNX graph: ${file} (cached)`);
      continue;
    } catch {
      // not exported yet
    }
    log(`ONNX graph: exporting S=${s} with torch.onnx.export into ${dir}`);
    const ok = await runLoud([
      PYTHON,
      path("./peers/torch_ref.py"),
      "--mode",
      "export",
      "--segment-len",
      String(s),
      "--batch-size",
      String(ORT_BATCH),
      "--out",
      dir,
      "--threads",
      String(o.threads),
    ]);
    if (!ok) throw new Error(`torch_ref.py --mode export failed for S=${s} (its output is above)`);
  }
  return dir;
};

// --- peers as long-lived processes ---------------------------------------------

/** A serving process: one child process speaking the `_protocol.ts` line protocol. */
class Peer {
  readonly #child: Deno.ChildProcess;
  readonly #lines: AsyncIterator<string>;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #stderr = "";
  /** Every `model` line it printed (parameters, FLOPs, checks, file sizes). */
  readonly models: (Reply & { event: "model" })[] = [];
  /** Its `ready` line. */
  ready: Reply | null = null;
  /** The child's process id, for the CPU meter. */
  readonly pid: number;

  constructor(readonly name: string, argv: string[], env: Record<string, string> = {}) {
    const child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      cwd: ROOT,
      env,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    this.pid = child.pid;
    this.#lines = readLines(child.stdout)[Symbol.asyncIterator]();
    this.#stdin = child.stdin.getWriter();
    // Keep the tail of stderr for error messages; an undrained pipe would block the child.
    void (async () => {
      for await (const line of readLines(child.stderr)) {
        this.#stderr = (this.#stderr + line + "\n").slice(-4000);
      }
    })();
  }

  /** The next JSON line of the peer; other lines (library chatter) are skipped. */
  async next(): Promise<Reply> {
    for (;;) {
      const r = await this.#lines.next();
      if (r.done) {
        const status = await this.#child.status;
        throw new Error(`${this.name} exited (code ${status.code}):\n${this.#stderr}`);
      }
      if (!r.value.startsWith("{")) continue;
      return JSON.parse(r.value) as Reply;
    }
  }

  /** Wait for the `ready` line. */
  async start(): Promise<void> {
    this.ready = await this.next();
    log(`${this.name}: ready ${JSON.stringify(this.ready)}`);
  }

  /** Send a command; collect replies up to its `steps`, `kernels` or `done` line. */
  async request(cmd: Command): Promise<{ last: Reply; extra: Reply[] }> {
    await this.#stdin.write(new TextEncoder().encode(JSON.stringify(cmd) + "\n"));
    const extra: Reply[] = [];
    for (;;) {
      const r = await this.next();
      if (r.event === "model") this.models.push(r);
      if (r.event === "steps" || r.event === "kernels" || r.event === "done") {
        return { last: r, extra };
      }
      extra.push(r);
    }
  }

  /** End the peer: closing stdin ends its serve loop. */
  async close(): Promise<void> {
    await this.#stdin.close().catch(() => {});
    await this.#child.status;
  }
}

/**
 * One side of a cell: a process and what to ask it for. Ours has a tier;
 * a peer has a name and a thread count. (Exported for the tests.)
 */
export interface Side {
  readonly label: string;
  readonly proc: Peer;
  readonly phases: readonly Phase[];
  /** Extra command fields: the stream variant and, for ours, the weights. */
  readonly variant?: StreamVariant;
  readonly weights: Weights;
  readonly ours?: { readonly tier: "native" | "portable" };
  readonly peer?: { readonly name: PeerName; readonly threads: number };
}

/** Every process of the run and every side on them. */
interface Cast {
  readonly procs: Peer[];
  readonly sides: Side[];
}

const spawnCast = async (o: Options, onnxDir: string | null): Promise<Cast> => {
  const deno = Deno.execPath();
  const procs: Peer[] = [], sides: Side[] = [];
  const wants = (p: PeerName) => o.peers.includes(p);
  for (const tier of o.tiers) {
    const proc = new Peer(`ours ${tier}`, [
      deno,
      "run",
      "--allow-read",
      "--allow-env",
      "--allow-ffi",
      "--allow-sys",
      path("./peers/ours.ts"),
      "--mode",
      "serve",
      "--tier",
      tier,
      "--threads",
      String(o.threads),
    ]);
    procs.push(proc);
    const ours = { tier };
    sides.push({ label: `ours ${tier}`, proc, phases: ["train", "infer"], weights: "f32", ours });
    if (wants("pytorch-kvcache")) {
      for (const w of o.weights) {
        sides.push({
          label: `ours ${tier} kv ${w}`,
          proc,
          phases: ["stream"],
          variant: "kvcache",
          weights: w,
          ours,
        });
      }
    }
    if (wants("pytorch")) {
      sides.push({
        label: `ours ${tier} recompute`,
        proc,
        phases: ["stream"],
        variant: "recompute",
        weights: "f32",
        ours,
      });
    }
  }
  const torch = (threads: number) =>
    new Peer(
      `PyTorch ${threads}t`,
      [PYTHON, path("./peers/torch_ref.py"), "--mode", "serve", "--threads", String(threads)],
      // OpenBLAS takes its thread count from the environment at load time (torch_ref.py sets it too).
      { OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads) },
    );
  const torchProcs = new Map<number, Peer>();
  const torchFor = (threads: number): Peer => {
    const hit = torchProcs.get(threads);
    if (hit !== undefined) return hit;
    const p = torch(threads);
    torchProcs.set(threads, p);
    procs.push(p);
    return p;
  };
  if (wants("pytorch")) {
    const proc = torchFor(o.threads), peer = { name: "pytorch", threads: o.threads } as const;
    sides.push({ label: "PyTorch", proc, phases: ["train", "infer"], weights: "f32", peer });
    sides.push({
      label: "PyTorch recompute",
      proc,
      phases: ["stream"],
      variant: "recompute",
      weights: "f32",
      peer,
    });
  }
  if (wants("pytorch-kvcache")) {
    for (const variant of o.kvVariants) {
      for (const threads of o.kvThreads) {
        sides.push({
          label: `PyTorch ${variant === "kvcache" ? "kv" : "kv matvec"} ${threads}t`,
          proc: torchFor(threads),
          phases: ["stream"],
          variant,
          weights: "f32",
          peer: { name: "pytorch-kvcache", threads },
        });
      }
    }
  }
  const ort = (runtime: "node" | "web", host: "node" | "deno") => {
    const script = path("./peers/ort.mjs");
    const args = ["--runtime", runtime, "--models", onnxDir!, "--threads", String(o.threads)];
    const argv = host === "node" ? ["node", script, ...args] : [deno, "run", "-A", script, ...args];
    const proc = new Peer(`onnxruntime-${runtime} (${host})`, argv);
    procs.push(proc);
    sides.push({
      label: `onnxruntime-${runtime}`,
      proc,
      phases: ["infer"],
      weights: "f32",
      peer: { name: `onnxruntime-${runtime}`, threads: o.threads },
    });
  };
  if (onnxDir !== null) { // exported only when the infer phase runs
    if (wants("onnxruntime-node")) ort("node", "deno");
    if (wants("onnxruntime-web")) ort("web", o.ortWebHost);
  }
  for (const p of procs) await p.start();
  return { procs, sides };
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
  for (const side of sides) {
    if (o.warmup > 0) {
      await side.proc.request({ ...commandOf(side, phase, segmentLen), steps: o.warmup });
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
    for (const side of order) {
      await sleep(o.gapMs);
      const r = await side.proc.request({ ...commandOf(side, phase, segmentLen), steps: 1 });
      if (r.last.event !== "steps") throw new Error(`${side.label}: no step times`);
      seconds.set(side, r.last.seconds[0]);
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
 * import type { Cell, Side } from "./peers.ts";
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

// --- the report ------------------------------------------------------------------

const fmt = (x: number, digits = 0): string =>
  x.toLocaleString("en", { minimumFractionDigits: digits, maximumFractionDigits: digits });

const table = (header: string[], rows: string[][], right: boolean[]): string =>
  formatTable(header, rows, (i) => right[i]);

/** Every field of an object as `key=value`, so that fields added later show up too. */
const fields = (x: unknown): string =>
  x !== null && typeof x === "object"
    ? Object.entries(x).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
      .join(" ")
    : String(x);

/** Largest |logit| difference onnxruntime may show against PyTorch and still be the same graph. */
const ORT_TOLERANCE = 1e-4;

/** The checks of the run: rows of a table, and whether every one passed. */
const checks = (procs: readonly Peer[]): { rows: string[][]; ok: boolean } => {
  const rows: string[][] = [];
  let ok = true;
  for (const p of procs) {
    for (const m of p.models) {
      if (typeof m.kv_check_max_abs === "number") {
        const pass = m.kv_check_max_abs < ORT_TOLERANCE;
        ok &&= pass;
        rows.push([
          p.name,
          String(m.segmentLen),
          `${String(m.variant)} stream = segment graph (logits, new memory)`,
          m.kv_check_max_abs.toExponential(1),
          pass ? "ok" : "FAILS",
        ]);
      }
      if (typeof m.check_logits_max_abs_diff === "number") {
        const worst = Math.max(m.check_logits_max_abs_diff, Number(m.check_memory_max_abs_diff));
        const pass = worst < ORT_TOLERANCE;
        ok &&= pass;
        rows.push([
          p.name,
          String(m.segmentLen),
          `ONNX graph = PyTorch, B = ${ORT_BATCH} (logits up to ${
            Number(m.check_logits_max_abs).toFixed(2)
          } in size; new memory)`,
          worst.toExponential(1),
          pass ? "ok" : "FAILS",
        ]);
      }
    }
  }
  return { rows, ok };
};

const printReport = (
  o: Options,
  cast: Cast,
  cells: readonly Cell[],
  rows: readonly PeerRow[],
  load: { before: Load | null; during: Load | null; loadavg: number[] },
): void => {
  const { procs, sides } = cast;
  console.log("# bench:peers: the reference CRT, ours against the runtimes a user would pick");
  console.log(
    `# machine: ${cpuModel()}, ${navigator.hardwareConcurrency} logical cores; load average ` +
      `${load.loadavg.map((x) => x.toFixed(2)).join(" ")} at the start`,
  );
  console.log(
    `# rest of the machine (cores): ${describeLoad(load.before)} in the 2 s before the run, ` +
      `${describeLoad(load.during)} during it; rounds it disturbed (> ${o.busyCores} cores) ` +
      `are rerun, up to ${o.extraRounds} per cell`,
  );
  for (const p of procs.filter((p) => p.name.startsWith("ours"))) {
    const r = p.ready as { backend?: unknown } | null;
    console.log(`# ${p.name} backend: ${fields(r?.backend)}`);
  }
  const files = new Map<string, number>();
  for (const p of procs) {
    for (const m of p.models) {
      if (typeof m.file_bytes === "number") files.set(String(m.weights), m.file_bytes);
    }
  }
  if (files.size > 0) {
    console.log(
      `# ours stream model files: ${
        [...files].map(([w, b]) => `${w} ${(b / 1e6).toFixed(1)} MB`).join(", ")
      } (encodeModelFile, loadModel)`,
    );
  }
  for (const p of procs.filter((p) => !p.name.startsWith("ours"))) {
    const { event: _, ...rest } = (p.ready ?? {}) as Record<string, unknown>;
    const cores = p.models.filter((m) => typeof m.warm_run_cores === "number")
      .map((m) => `S=${m.segmentLen} ${m.warm_run_cores}`);
    console.log(
      `# ${p.name}: ${fields(rest)}${
        cores.length > 0 ? `; cores busy during a warm run: ${cores.join(", ")}` : ""
      }`,
    );
  }
  console.log(
    `# medians of ${o.steps} steps after ${o.warmup} warm-up, every side alternating; ` +
      `ours ${o.threads} threads on both tiers`,
  );

  const parity = o.segmentLens.map((s) => {
    const of = (prefix: string) =>
      procs.filter((p) => p.name.startsWith(prefix)).flatMap((p) => p.models)
        .find((m) => m.segmentLen === s && typeof m.params === "number");
    return [s, of("ours"), of("PyTorch")] as const;
  }).filter(([, a, b]) => a !== undefined || b !== undefined);
  if (parity.length > 0) {
    console.log("\n## Parity (same model, same matmuls)\n");
    const num = (x: number | undefined, div = 1, digits = 0) =>
      x === undefined ? "-" : fmt(x / div, digits);
    console.log(table(
      ["segmentLen", "ours params", "PyTorch params", "ours MFLOP/token", "PyTorch MFLOP/token"],
      parity.map(([s, a, b]) => [
        String(s),
        num(a?.params),
        num(b?.params),
        num(a?.forward_flops_per_token, 1e6, 3),
        num(b?.forward_flops_per_token, 1e6, 3),
      ]),
      [true, true, true, true, true],
    ));
  }

  const c = checks(procs);
  if (c.rows.length > 0) {
    console.log(`\n## Checks (largest |difference|, tolerance ${ORT_TOLERANCE})\n`);
    console.log(table(
      ["peer", "segmentLen", "what", "max |diff|", "result"],
      c.rows,
      [false, true, false, true, false],
    ));
  }

  console.log(
    "\n## Ratio (ours / peer throughput; above 1 we are faster; kernels: ours per step, " +
      "stream per token; other: cores the rest of the machine used in the cell, busy above " +
      `${o.busyCores})\n`,
  );
  const ms = (x: number | undefined) => (x === undefined ? "" : x.toFixed(2));
  console.log(table(
    [
      "phase",
      "S",
      "tier",
      "weights",
      "peer",
      "threads",
      "how",
      "ours tok/s",
      "peer tok/s",
      "ours ms/tok",
      "peer ms/tok",
      "ratio",
      "kernels",
      "other",
    ],
    rows.map((r) => [
      r.phase,
      String(r.segmentLen),
      r.backend.replace("wasm+", ""),
      r.weights,
      r.peer,
      String(r.peer_threads),
      r.peer_variant ?? "",
      fmt(r.ours_tokens_per_s),
      fmt(r.peer_tokens_per_s),
      ms(r.ours_ms_per_token),
      ms(r.peer_ms_per_token),
      r.ratio.toFixed(2),
      r.ours_kernel_calls === undefined ? "-" : fmt(r.ours_kernel_calls, 1),
      r.other_cores === null
        ? "n/a"
        : `${r.other_cores.toFixed(2)}${r.other_cores > o.busyCores ? " busy" : ""}`,
    ]),
    [false, true, false, false, false, true, false, true, true, true, true, true, true, true],
  ));

  if (o.count) {
    console.log("\n## Kernel calls of ours (tfjs dispatches of one untimed step; top kernels)\n");
    console.log(table(
      ["phase", "S", "side", "per step", "per token", "top kernels"],
      cells.flatMap((cell) =>
        [...cell.results].filter(([s, r]) => s.ours !== undefined && r.kernels !== undefined)
          .map(([s, r]) => [
            cell.phase,
            String(cell.segmentLen),
            s.label,
            fmt(r.kernels!.calls),
            cell.phase === "stream" ? fmt(r.kernels!.calls / r.tokensPerStep, 1) : "-",
            Object.entries(r.kernels!.byName).slice(0, 5).map(([k, n]) => `${k} ${n}`).join(", "),
          ])
      ),
      [false, true, false, true, true, false],
    ));
  }

  console.log(
    "\n## Spread (seconds per step: median [min … max]; stream: ms per token; other: cores " +
      "the rest of the machine used meanwhile; rounds: clean / run)\n",
  );
  console.log(table(
    ["phase", "S", "side", "median [min … max]", "other", "rounds"],
    cells.flatMap(({ phase, segmentLen, results, load, rounds }) =>
      [...results].map(([side, c]) => {
        const sorted = [...c.seconds].sort((a, b) => a - b);
        const show = phase === "stream"
          ? (s: number) => (1000 * s / c.tokensPerStep).toFixed(2)
          : (s: number) => s.toFixed(3);
        return [
          phase,
          String(segmentLen),
          side.label,
          `${show(median(sorted))} [${show(sorted[0])} … ${show(sorted.at(-1)!)}]${
            phase === "stream" ? " ms/tok" : " s"
          }`,
          load === null ? "n/a" : load.otherCores.toFixed(2),
          `${rounds.clean}/${rounds.total}`,
        ];
      })
    ),
    [false, true, false, true, true, true],
  ));
  const sideNames = sides.map((s) => s.label).join(", ");
  console.log(
    `\nsides: ${sideNames}. train: B = 20, windows of 2 segments (one BPTT span), tokens/step ` +
      `= 40·S; infer: B = ${ORT_BATCH}, one segment, logits of every position and the new ` +
      "memory; stream: batch 1, one token per call and its logits, a step is one segment; " +
      "kv = key/value cache (ours through a float32 or int8 model file), recompute = the open " +
      "prefix rerun for every token; matvec = PyTorch's decode products as matrix-vector products. " +
      "pytorch-kvcache rows take the fastest of its variants and thread counts (how, threads).",
  );
};

const printProfiles = async (o: Options, cast: Cast): Promise<void> => {
  const s = o.segmentLens[0];
  const procs = cast.procs.filter((p) =>
    p.name.startsWith("ours") || p.name === `PyTorch ${o.threads}t`
  );
  for (const p of procs) {
    await sleep(o.gapMs);
    const r = await p.request({ phase: "profile", segmentLen: s });
    const rows = r.extra.filter((x): x is Reply & { event: "profile" } => x.event === "profile");
    console.log(
      `\n## Profile of one training step, ${p.name}, S=${s} ${JSON.stringify(r.last)}\n`,
    );
    console.log(table(
      ["kernel / op", "ms", "share", "calls", "largest output"],
      rows.map((x) => [
        x.op,
        x.ms.toFixed(1),
        `${(100 * x.share).toFixed(1)} %`,
        String(x.calls),
        Array.isArray(x.largest_output) ? JSON.stringify(x.largest_output) : "",
      ]),
      [false, true, true, true, false],
    ));
  }
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
        log(`${phase} S=${s}: warm-up ${o.warmup}, then ${o.steps} alternating rounds`);
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

const USAGE = `usage: deno task bench:peers [--steps N] [--warmup N] [--json] [--profile] [--setup]
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
