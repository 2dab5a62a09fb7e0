/**
 * The sides of `bench/peers.ts` as long-lived processes: each of ours and of
 * the peers is one child process speaking the `_protocol.ts` line protocol,
 * spawned once for the whole run, and a side is what to ask one of them for.
 *
 * @module
 */
import type { Options, PeerName } from "../peers.ts";
import {
  type Command,
  onePer,
  type Phase,
  readLines,
  type Reply,
  type StreamVariant,
  type Weights,
} from "./_protocol.ts";
import { log, path, PYTHON, ROOT } from "./_setup.ts";

/** A serving process: one child process speaking the `_protocol.ts` line protocol. */
export class Peer {
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

  /** `env` adds to this process's environment; a variable set to `null` is left out. */
  constructor(readonly name: string, argv: string[], env: Record<string, string | null> = {}) {
    const full: Record<string, string> = Deno.env.toObject();
    for (const [k, v] of Object.entries(env)) {
      if (v === null) delete full[k];
      else full[k] = v;
    }
    const child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      cwd: ROOT,
      env: full,
      clearEnv: true,
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
export interface Cast {
  readonly procs: Peer[];
  readonly sides: Side[];
}

/**
 * Start every process the options ask for (ours on each tier, PyTorch at each
 * thread count, the onnxruntime peers when `onnxDir` has their graphs), wait
 * for each to be ready, and list the sides on them.
 */
export const spawnCast = async (o: Options, onnxDir: string | null): Promise<Cast> => {
  const deno = Deno.execPath();
  const procs: Peer[] = [], sides: Side[] = [];
  const wants = (p: PeerName) => o.peers.includes(p);
  // OpenBLAS reads OPENBLAS_CORETYPE when it loads: the same kernel set for ours and PyTorch.
  const blas: Record<string, string | null> = o.blasCore === null
    ? {}
    : { OPENBLAS_CORETYPE: o.blasCore === "detect" ? null : o.blasCore };
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
    ], blas);
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
      { ...blas, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads) },
    );
  const torchFor = onePer((threads: number): Peer => {
    const p = torch(threads);
    procs.push(p);
    return p;
  });
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

/**
 * Wait `ms` milliseconds: the idle gap before a step, so that the previous
 * side's threads have stopped spinning.
 */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
