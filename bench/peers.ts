/**
 * Our reference CRT against the same model in PyTorch (GitHub issue 6): one
 * run, three peers (ours on the native-BLAS matmul tier, ours on the
 * portable pure-wasm tier, PyTorch 2 threads), measured alternately step by
 * step so that a noisy neighbour or a thermal drift hits all three alike.
 *
 * Cells: `train` (full optimizer steps, B = 20, windows of K = 2 segments)
 * and `infer` (B = 20, one segment, all logits, no gradients) at S = 35 and
 * 70, and `stream` (batch 1, one token at a time; tokens/s = 1 / per-token
 * latency averaged over a segment) at the same lengths. Each peer is a
 * long-lived process (`bench/peers/ours.ts`, `bench/peers/torch_ref.py`,
 * both in `--mode serve`): it warms up once per cell, then the driver asks
 * for one step at a time, rotating which peer goes first every round, with a
 * short idle gap before each step so that the previous peer's BLAS threads
 * have stopped spinning. Medians of `--steps` steps per peer. The machine has
 * two cores, so anyone else's work halves ours: every round reads /proc to
 * see how much CPU the rest of the machine used, and a round where it used
 * more than `--busy-cores` (0.15) is run again, up to `--extra-rounds` times
 * per cell; the report gives the count and the load beside every cell.
 *
 * Installs the PyTorch peer when `/usr/bin/python3 -c "import torch"` fails
 * (`apt-get install -y python3-torch libopenblas0-pthread`, as root), and
 * says so on stderr.
 *
 * Output: a ratio table on stdout (phase, segmentLen, ours tokens/s,
 * PyTorch tokens/s, ours/PyTorch, backend), preceded by the parameter and
 * FLOP parity of the two models and followed by the spread of every cell.
 * `--json` prints only the rows, one JSON object per line, with exactly the
 * fields of {@linkcode PeerRow}. Progress goes to stderr.
 *
 * Run: `deno task bench:peers [--steps N] [--warmup N] [--json] [--profile]
 * [--phases train,infer,stream] [--segment-lens 35,70] [--gap-ms 200]
 * [--busy-cores 0.15] [--extra-rounds N] [--threads 2] [--setup]`
 * (`--setup` only installs the peer; `--profile` adds one profiled training
 * step per peer at the first segment length).
 *
 * @module
 */
import { CpuMeter, describeLoad, type Load } from "./_load.ts";
import { median, type Phase, readLines, type Reply } from "./peers/_protocol.ts";

/**
 * One row of the ratio table, as `--json` prints it.
 *
 * @example
 * ```ts
 * import type { PeerRow } from "./peers.ts";
 * const row: PeerRow = {
 *   phase: "train",
 *   segmentLen: 35,
 *   ours_tokens_per_s: 1500,
 *   pytorch_tokens_per_s: 2000,
 *   ratio: 0.75,
 *   backend: "wasm+native",
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
  /** PyTorch's tokens per second (median step), measured in the same rounds. */
  readonly pytorch_tokens_per_s: number;
  /** ours / PyTorch: above 1 we are faster. */
  readonly ratio: number;
  /** Our backend and matmul tier: `wasm+native` or `wasm+portable`. */
  readonly backend: string;
}

/** Options of a run, from the command line. */
interface Options {
  readonly steps: number;
  readonly warmup: number;
  readonly json: boolean;
  readonly profile: boolean;
  readonly setupOnly: boolean;
  readonly phases: readonly Phase[];
  readonly segmentLens: readonly number[];
  readonly threads: number;
  readonly gapMs: number;
  readonly busyCores: number;
  readonly extraRounds: number;
}

const PYTHON = "/usr/bin/python3"; // Debian's python3-torch installs for the system interpreter
const INSTALL = ["apt-get", "install", "-y", "python3-torch", "libopenblas0-pthread"];
const ROOT = new URL("../", import.meta.url);
const path = (rel: string): string => decodeURIComponent(new URL(rel, import.meta.url).pathname);

const parseOptions = (args: readonly string[]): Options => {
  const value = (name: string): string | undefined => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const int = (name: string, fallback: number, min: number): number => {
    const v = value(name);
    const x = v === undefined ? fallback : Number(v);
    if (!Number.isInteger(x) || x < min) {
      throw new RangeError(`--${name} wants an integer ≥ ${min}`);
    }
    return x;
  };
  const list = (name: string, fallback: string): string[] =>
    (value(name) ?? fallback).split(",").map((s) => s.trim()).filter((s) => s !== "");
  const phases = list("phases", "train,infer,stream");
  for (const p of phases) {
    if (p !== "train" && p !== "infer" && p !== "stream") throw new RangeError(`--phases: ${p}`);
  }
  const segmentLens = list("segment-lens", "35,70").map(Number);
  for (const s of segmentLens) {
    if (!Number.isInteger(s) || s < 1) throw new RangeError(`--segment-lens: ${s}`);
  }
  return {
    steps: int("steps", 5, 1),
    warmup: int("warmup", 2, 0),
    json: args.includes("--json"),
    profile: args.includes("--profile"),
    setupOnly: args.includes("--setup"),
    phases: phases as Phase[],
    segmentLens,
    threads: int("threads", 2, 1),
    gapMs: int("gap-ms", 200, 0),
    busyCores: Number(value("busy-cores") ?? 0.15),
    extraRounds: int("extra-rounds", int("steps", 5, 1), 0),
  };
};

const log = (msg: string): void => console.error(msg);

// --- the PyTorch peer's installation -------------------------------------------

const succeeds = async (cmd: string, args: string[]): Promise<boolean> => {
  try {
    const r = await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output();
    return r.success;
  } catch {
    return false; // not installed at all
  }
};

/** Run a command with its output on our stderr (stdout may be the JSON rows). */
const runLoud = async (argv: string[]): Promise<boolean> => {
  log(`$ ${argv.join(" ")}`);
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdout: "piped",
    stderr: "piped",
    env: { DEBIAN_FRONTEND: "noninteractive" },
  }).spawn();
  const forward = (s: ReadableStream<Uint8Array>) =>
    s.pipeTo(new WritableStream({ write: (chunk) => void Deno.stderr.writeSync(chunk) }));
  await Promise.all([forward(child.stdout), forward(child.stderr)]);
  return (await child.status).success;
};

/**
 * Make `import torch` work for `/usr/bin/python3`, installing Debian's
 * PyTorch and OpenBLAS when it does not (without OpenBLAS, Debian's torch
 * runs on the reference BLAS, 10× slower: SUBSTRATE.md). Throws with what
 * to do when it cannot.
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

// --- peers as long-lived processes ---------------------------------------------

/** A serving peer: one child process speaking the `_protocol.ts` line protocol. */
class Peer {
  readonly #child: Deno.ChildProcess;
  readonly #lines: AsyncIterator<string>;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #stderr = "";
  /** Model lines by segment length (parameters and FLOPs). */
  readonly models = new Map<number, Reply & { event: "model" }>();
  /** The child's process id, for the CPU meter. */
  readonly pid: number;

  constructor(
    readonly name: string,
    readonly backend: string,
    argv: string[],
    env: Record<string, string>,
  ) {
    const child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      cwd: decodeURIComponent(ROOT.pathname),
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

  /** Send a command; collect replies up to its `steps` or `done` line. */
  async request(cmd: { phase: Phase | "profile"; segmentLen: number; steps?: number }) {
    await this.#stdin.write(new TextEncoder().encode(JSON.stringify(cmd) + "\n"));
    const extra: Reply[] = [];
    for (;;) {
      const r = await this.next();
      if (r.event === "model") this.models.set(r.segmentLen, r);
      if (r.event === "steps") return { steps: r, extra };
      if (r.event === "done") return { done: r, extra };
      extra.push(r);
    }
  }

  /** End the peer: closing stdin ends its serve loop. */
  async close(): Promise<void> {
    await this.#stdin.close().catch(() => {});
    await this.#child.status;
  }
}

const spawnPeers = async (o: Options): Promise<Peer[]> => {
  const deno = Deno.execPath();
  const ours = (tier: "native" | "portable") =>
    new Peer(
      `ours ${tier}`,
      `wasm+${tier}`,
      [
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
      ],
      {},
    );
  const torch = new Peer(
    "PyTorch",
    "pytorch",
    [PYTHON, path("./peers/torch_ref.py"), "--mode", "serve", "--threads", String(o.threads)],
    // OpenBLAS takes its thread count from the environment at load time (torch_ref.py sets it too).
    { OPENBLAS_NUM_THREADS: String(o.threads), OMP_NUM_THREADS: String(o.threads) },
  );
  const peers = [ours("native"), ours("portable"), torch];
  for (const p of peers) {
    const ready = await p.next();
    log(`${p.name}: ready ${JSON.stringify(ready)}`);
  }
  return peers;
};

// --- measurement ---------------------------------------------------------------

/** Every step time of one peer in one cell. */
interface CellResult {
  readonly seconds: number[];
  tokensPerStep: number;
}

/** A measured cell: each peer's steps, and how busy the rest of the machine was meanwhile. */
interface Cell {
  readonly phase: Phase;
  readonly segmentLen: number;
  /** Step times of the rounds the medians use. */
  readonly cells: Map<Peer, CellResult>;
  /** Mean cores the rest of the machine used during those rounds. */
  readonly load: Load | null;
  /** Rounds run, and how many of them the rest of the machine left alone. */
  readonly rounds: { readonly total: number; readonly clean: number };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Warm each peer up, then run rounds of one step per peer until `steps`
 * rounds were clean (the rest of the machine used under `busyCores` cores
 * meanwhile) or `extraRounds` more rounds have run. The medians use the clean
 * rounds when there are at least min(steps, 3) of them, else every round, and
 * the report says which.
 */
const measureCell = async (
  peers: readonly Peer[],
  phase: Phase,
  segmentLen: number,
  o: Options,
): Promise<Cell> => {
  for (const p of peers) {
    if (o.warmup > 0) await p.request({ phase, segmentLen, steps: o.warmup });
  }
  const rounds: { seconds: Map<Peer, number>; load: Load | null }[] = [];
  const tokensPerStep = new Map<Peer, number>();
  const isClean = (r: (typeof rounds)[number]) =>
    r.load === null || r.load.otherCores < o.busyCores;
  for (let round = 0; round < o.steps + o.extraRounds; round++) {
    if (rounds.filter(isClean).length >= o.steps) break;
    const meter = new CpuMeter(() => peers.map((p) => p.pid));
    // Rotate who goes first, so that no peer always follows the same one.
    const order = peers.map((_, i) => peers[(i + round) % peers.length]);
    const seconds = new Map<Peer, number>();
    for (const p of order) {
      await sleep(o.gapMs);
      const r = await p.request({ phase, segmentLen, steps: 1 });
      if (r.steps === undefined) throw new Error(`${p.name}: no step times`);
      seconds.set(p, r.steps.seconds[0]);
      tokensPerStep.set(p, r.steps.tokens_per_step);
    }
    const entry = { seconds, load: meter.read() };
    rounds.push(entry);
    log(
      `  ${phase} S=${segmentLen} round ${round + 1}: ` +
        peers.map((p) => `${p.name} ${seconds.get(p)!.toFixed(3)} s`).join(", ") +
        `; rest of the machine ${describeLoad(entry.load)}${isClean(entry) ? "" : " (busy)"}`,
    );
  }
  const clean = rounds.filter(isClean);
  const used = clean.length >= Math.min(o.steps, 3) ? clean : rounds;
  const loads = used.map((r) => r.load).filter((l) => l !== null);
  const mean = (f: (l: Load) => number) => loads.reduce((a, l) => a + f(l), 0) / loads.length;
  return {
    phase,
    segmentLen,
    cells: new Map(peers.map((p) => [p, {
      seconds: used.map((r) => r.seconds.get(p)!),
      tokensPerStep: tokensPerStep.get(p)!,
    }])),
    load: loads.length === 0
      ? null
      : { otherCores: mean((l) => l.otherCores), stealCores: mean((l) => l.stealCores) },
    rounds: { total: rounds.length, clean: clean.length },
  };
};

const tokensPerSecond = (c: CellResult): number => c.tokensPerStep / median(c.seconds);

const fmt = (x: number, digits = 0): string =>
  x.toLocaleString("en", { minimumFractionDigits: digits, maximumFractionDigits: digits });

const table = (header: string[], rows: string[][], right: boolean[]): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ");
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
};

const cpuModel = (): string => {
  try {
    const m = Deno.readTextFileSync("/proc/cpuinfo").match(/^model name\s*:\s*(.*)$/m);
    return m?.[1] ?? "unknown CPU";
  } catch {
    return "unknown CPU";
  }
};

const main = async (o: Options): Promise<void> => {
  const t0 = performance.now();
  await ensurePyTorch();
  if (o.setupOnly) return;
  const [load1] = Deno.loadavg();
  log(`${cpuModel()}, ${navigator.hardwareConcurrency} logical cores, load ${load1.toFixed(2)}`);
  if (load1 > 0.5) log("warning: the machine is busy; every number below shares it");

  const peers = await spawnPeers(o);
  const [native, portable, torch] = peers;
  const results: Cell[] = [];
  const meter = new CpuMeter(() => peers.map((p) => p.pid));
  try {
    for (const phase of o.phases) {
      for (const s of o.segmentLens) {
        log(`${phase} S=${s}: warm-up ${o.warmup}, then ${o.steps} alternating rounds`);
        const cell = await measureCell(peers, phase, s, o);
        if (cell.rounds.clean < Math.min(o.steps, 3)) {
          log(`  warning: only ${cell.rounds.clean} clean rounds; the medians use busy ones too`);
        }
        results.push(cell);
      }
    }
    const rows: PeerRow[] = results.flatMap(({ phase, segmentLen, cells }) =>
      [native, portable].map((p) => {
        const ours = tokensPerSecond(cells.get(p)!), theirs = tokensPerSecond(cells.get(torch)!);
        return {
          phase,
          segmentLen,
          ours_tokens_per_s: Math.round(ours * 10) / 10,
          pytorch_tokens_per_s: Math.round(theirs * 10) / 10,
          ratio: Math.round((ours / theirs) * 1000) / 1000,
          backend: p.backend,
        };
      })
    );
    if (o.json) {
      for (const r of rows) console.log(JSON.stringify(r));
    } else {
      printReport(o, peers, results, rows, meter.read());
    }
    if (o.profile) await printProfiles(o, peers);
  } finally {
    for (const p of peers) await p.close();
  }
  log(`done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
};

const printReport = (
  o: Options,
  peers: readonly Peer[],
  results: readonly Cell[],
  rows: readonly PeerRow[],
  load: Load | null,
): void => {
  const [native, , torch] = peers;
  const nativeInfo = native.models.values().next().value;
  console.log(
    `# ours: tfjs-wasm, matmul tiers native (OpenBLAS cblas_sgemm via FFI, ${o.threads} threads) ` +
      `and portable (our wasm SIMD GEMM, 2 threads on shared memory); PyTorch ${
        String(torch.models.values().next().value?.torch ?? "?")
      }, ${o.threads} threads + OPENBLAS_NUM_THREADS=${o.threads}`,
  );
  if (nativeInfo !== undefined) {
    console.log(`# ours backend: ${JSON.stringify(nativeInfo.backend)}`);
  }
  console.log(
    `# ${cpuModel()}; medians of ${o.steps} steps after ${o.warmup} warm-up, peers alternating`,
  );
  console.log(
    `# rest of the machine during the whole run (average cores): ${describeLoad(load)}; ` +
      `rounds it disturbed (> ${o.busyCores} cores) are rerun, up to ${o.extraRounds} per cell`,
  );
  console.log("\n## Parity (same model, same matmuls)\n");
  console.log(table(
    ["segmentLen", "ours params", "PyTorch params", "ours MFLOP/token fwd", "PyTorch MFLOP/token"],
    o.segmentLens.map((s) => {
      const a = native.models.get(s), b = torch.models.get(s);
      return [
        String(s),
        a ? fmt(a.params) : "-",
        b ? fmt(b.params) : "-",
        a ? fmt(a.forward_flops_per_token / 1e6, 3) : "-",
        b ? fmt(b.forward_flops_per_token / 1e6, 3) : "-",
      ];
    }),
    [true, true, true, true, true],
  ));
  console.log("\n## Ratio (ours / PyTorch; above 1 we are faster)\n");
  console.log(table(
    ["phase", "segmentLen", "ours tok/s", "PyTorch tok/s", "ratio", "backend/tier"],
    rows.map((r) => [
      r.phase,
      String(r.segmentLen),
      fmt(r.ours_tokens_per_s),
      fmt(r.pytorch_tokens_per_s),
      r.ratio.toFixed(2),
      r.backend,
    ]),
    [false, true, true, true, true, false],
  ));
  console.log(
    "\n## Spread (seconds per step: median [min … max]; stream: ms per token; other: cores " +
      "the rest of the machine used meanwhile; rounds: clean / run)\n",
  );
  console.log(table(
    ["phase", "segmentLen", ...peers.map((p) => p.name), "other", "rounds"],
    results.map(({ phase, segmentLen, cells, load, rounds }) => [
      phase,
      String(segmentLen),
      ...peers.map((p) => {
        const c = cells.get(p)!;
        const sorted = [...c.seconds].sort((a, b) => a - b);
        if (phase === "stream") {
          const ms = (s: number) => (1000 * s / c.tokensPerStep).toFixed(2);
          return `${ms(median(sorted))} [${ms(sorted[0])} … ${ms(sorted.at(-1)!)}] ms/tok`;
        }
        return `${median(sorted).toFixed(3)} [${sorted[0].toFixed(3)} … ${
          sorted.at(-1)!.toFixed(3)
        }]`;
      }),
      load === null ? "n/a" : load.otherCores.toFixed(2),
      `${rounds.clean}/${rounds.total}`,
    ]),
    [false, true, true, true, true, true, true],
  ));
  console.log(
    "\ntrain: B = 20, windows of 2 segments (one BPTT span), tokens/step = 40·S; " +
      "infer: B = 20, one segment; stream: batch 1, one token per call, each call reruns the " +
      "open prefix of the segment on both sides (no key/value cache), tokens/s = 1 / latency",
  );
};

const printProfiles = async (o: Options, peers: readonly Peer[]): Promise<void> => {
  const s = o.segmentLens[0];
  for (const p of peers) {
    await sleep(o.gapMs);
    const r = await p.request({ phase: "profile", segmentLen: s });
    const rows = r.extra.filter((x): x is Reply & { event: "profile" } => x.event === "profile");
    const done = r.done ?? {};
    console.log(`\n## Profile of one training step, ${p.name}, S=${s} ${JSON.stringify(done)}\n`);
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

if (import.meta.main) await main(parseOptions(Deno.args));
