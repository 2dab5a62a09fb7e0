/**
 * A private one-node Slurm cluster for tests: Debian's `slurm-wlm` and
 * `munge` (`apt-get install slurm-wlm munge`, which `.ci/run` does), run
 * as root, everything in one folder, servers on 127.0.0.1 only.
 *
 *     deno run -A tests/_slurm.ts start [DIR]   # prints `export SLURM_CONF=…`
 *     deno run -A tests/_slurm.ts status DIR
 *     deno run -A tests/_slurm.ts stop DIR      # stops the daemons, removes DIR
 *
 * {@linkcode startCluster} writes `DIR/slurm.conf` for this machine (node
 * name, CPUs and memory from `slurmd -C`), starts `munged` on a socket of
 * its own, `slurmctld` and `slurmd` on two free loopback ports, and waits
 * until `sinfo` shows the node idle. Clients reach it with
 * `SLURM_CONF=DIR/slurm.conf`. {@linkcode stopCluster} cancels its jobs,
 * shuts the daemons down (by the ids in their pid files), and removes DIR.
 *
 * Layout of DIR: `slurm.conf`; `munge/` (key, socket, pid, log); `state/`
 * (StateSaveLocation); `spool/<node>/` (SlurmdSpoolDir); `log/`
 * (`slurmctld.log`, `slurmd.log`, `jobcomp.txt`); `run/` (pid files).
 *
 * What works on these machines, and why the settings are what they are:
 * - `ProctrackType=proctrack/linuxproc`, `TaskPlugin=task/none`: the cgroup
 *   plugins need a cgroup hierarchy slurmd may create groups in, which
 *   sandboxed CI machines (gVisor here) do not offer. linuxproc finds a
 *   job's processes through /proc parent links: enough to signal and kill
 *   them all on `scancel`.
 * - `SelectType=select/cons_tres` with `CR_CPU_Memory`: CPUs and memory are
 *   the consumable resources, so a 2-CPU node runs two 1-CPU tasks at once
 *   and `--mem` is honoured in scheduling.
 * - Accounting: `AccountingStorageType=accounting_storage/none`. `sacct`
 *   needs the accounting daemon `slurmdbd` and a MySQL/MariaDB server behind
 *   it: too much for a test, so `sacct` answers "Slurm accounting storage is
 *   disabled". `JobCompType=jobcomp/filetxt` still writes one line per
 *   finished job (state, exit code, array index) to `log/jobcomp.txt`, for
 *   reading by hand. Tests ask `squeue` (which keeps ended jobs for
 *   `MinJobAge`, 300 s) and read the tasks' own files.
 * - Loopback only: `SlurmctldHost=<node>(127.0.0.1)`, `NodeAddr=127.0.0.1`
 *   and `CommunicationParameters=NoCtldInAddrAny,NoInAddrAny` make both
 *   daemons bind 127.0.0.1 instead of every address.
 * - munged refuses a socket folder that is not searchable by everyone
 *   (`Socket is inaccessible: execute permissions for all required`), so DIR
 *   and `munge/` are 0755 while the key is 0600.
 * - slurmd needs `spool/<node>/` to exist (its domain sockets live there)
 *   and the node line to match `slurmd -C`'s boards/sockets/cores, or it
 *   reports "Node reconfigured socket/core boundaries".
 * - `scontrol requeue` holds a requeued job back for about two minutes
 *   (its begin time is pushed out), so a test that wants a quick resume
 *   cancels and re-submits instead.
 * - slurmd logs `mpi/pmix … can not load PMIx library` at start-up: harmless
 *   with `MpiDefault=none` (no srun MPI jobs here).
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { dirname, join } from "node:path";
import type { Watch } from "./_slurm_jobs.ts";

/** Commands the cluster needs: daemons, and clients the tests call. */
export const SLURM_COMMANDS = [
  "munged",
  "slurmctld",
  "slurmd",
  "sbatch",
  "squeue",
  "sinfo",
  "scancel",
  "scontrol",
] as const;

/** The one partition. */
export const PARTITION = "debug";

/** The node as `slurmd -C` sees it. */
export interface Machine {
  readonly node: string;
  readonly cpus: number;
  readonly boards: number;
  readonly socketsPerBoard: number;
  readonly coresPerSocket: number;
  readonly threadsPerCore: number;
  /** MiB. */
  readonly realMemory: number;
}

/** A running cluster. */
export interface Cluster {
  readonly dir: string;
  /** `DIR/slurm.conf`. */
  readonly conf: string;
  /** What a client needs in its environment: `{ SLURM_CONF }`. */
  readonly env: Readonly<Record<string, string>>;
  readonly machine: Machine;
  readonly ports: { readonly slurmctld: number; readonly slurmd: number };
}

/** Why the cluster could not start or stop. */
export type ClusterError =
  | {
    readonly _tag: "SlurmNotInstalled";
    readonly missing: readonly string[];
    readonly message: string;
  }
  | { readonly _tag: "ClusterStartFailed"; readonly step: string; readonly message: string }
  | { readonly _tag: "ClusterStopFailed"; readonly message: string };

const decoder = new TextDecoder();

/** Folders on PATH, searched for a command. */
const onPath = (command: string): boolean =>
  (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/sbin", "/sbin"]).some((dir) => {
    try {
      return Deno.statSync(join(dir, command)).isFile;
    } catch {
      return false;
    }
  });

/** The commands of {@linkcode SLURM_COMMANDS} that are not installed. */
export const missingSlurmCommands = (): string[] => SLURM_COMMANDS.filter((c) => !onPath(c));

interface Ran {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to its end (no shell) with `env` added; throws only when it cannot start. */
const run = async (
  command: string,
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
  timeoutMs = 30_000,
): Promise<Ran> => {
  const out = await new Deno.Command(command, {
    args: [...args],
    env: { ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Reads `slurmd -C`'s first line, `NodeName=vm CPUs=2 Boards=1 … RealMemory=24105`. */
export const parseSlurmdC = (text: string): Machine | null => {
  const fields = new Map(
    (text.split("\n")[0] ?? "").trim().split(/\s+/).map((kv) => {
      const i = kv.indexOf("=");
      return [kv.slice(0, i), kv.slice(i + 1)] as const;
    }),
  );
  const int = (k: string) => {
    const v = Number(fields.get(k));
    return Number.isSafeInteger(v) && v > 0 ? v : null;
  };
  const node = fields.get("NodeName");
  const m = {
    cpus: int("CPUs"),
    boards: int("Boards"),
    socketsPerBoard: int("SocketsPerBoard"),
    coresPerSocket: int("CoresPerSocket"),
    threadsPerCore: int("ThreadsPerCore"),
    realMemory: int("RealMemory"),
  };
  if (node === undefined || node === "" || Object.values(m).some((v) => v === null)) return null;
  return { node, ...m } as Machine;
};

/** The `slurm.conf` of a one-node cluster in `dir` (see the module doc for each choice). */
export const renderSlurmConf = (
  opts: {
    readonly dir: string;
    readonly machine: Machine;
    readonly ports: { readonly slurmctld: number; readonly slurmd: number };
    /** The user the daemons run as (`root` in CI). */
    readonly user: string;
  },
): string => {
  const { dir, machine: m, ports } = opts;
  return [
    "# A one-node test cluster written by tests/_slurm.ts; everything lives in this folder.",
    "ClusterName=crt-test",
    `SlurmctldHost=${m.node}(127.0.0.1)`,
    `SlurmctldPort=${ports.slurmctld}`,
    `SlurmdPort=${ports.slurmd}`,
    "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny",
    `SlurmUser=${opts.user}`,
    `SlurmdUser=${opts.user}`,
    "AuthType=auth/munge",
    "CredType=cred/munge",
    `AuthInfo=socket=${join(dir, "munge", "munge.socket")}`,
    `StateSaveLocation=${join(dir, "state")}`,
    `SlurmdSpoolDir=${join(dir, "spool", "%n")}`,
    `SlurmctldPidFile=${join(dir, "run", "slurmctld.pid")}`,
    `SlurmdPidFile=${join(dir, "run", "slurmd.pid")}`,
    `SlurmctldLogFile=${join(dir, "log", "slurmctld.log")}`,
    `SlurmdLogFile=${join(dir, "log", "slurmd.log")}`,
    "ProctrackType=proctrack/linuxproc",
    "TaskPlugin=task/none",
    "JobAcctGatherType=jobacct_gather/none",
    "AccountingStorageType=accounting_storage/none",
    "JobCompType=jobcomp/filetxt",
    `JobCompLoc=${join(dir, "log", "jobcomp.txt")}`,
    "SelectType=select/cons_tres",
    "SelectTypeParameters=CR_CPU_Memory",
    "SchedulerType=sched/backfill",
    "MpiDefault=none",
    "ReturnToService=2",
    // Seconds between SIGTERM and SIGKILL on scancel: a runner's time to save.
    "KillWait=10",
    "MinJobAge=300",
    `NodeName=${m.node} NodeAddr=127.0.0.1 CPUs=${m.cpus} Boards=${m.boards} ` +
    `SocketsPerBoard=${m.socketsPerBoard} CoresPerSocket=${m.coresPerSocket} ` +
    `ThreadsPerCore=${m.threadsPerCore} RealMemory=${m.realMemory} State=UNKNOWN`,
    `PartitionName=${PARTITION} Nodes=${m.node} Default=YES MaxTime=INFINITE State=UP`,
    "",
  ].join("\n");
};

/** Two free TCP ports on 127.0.0.1 (held open together, so they differ). */
const freePorts = (): [number, number] => {
  const a = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const b = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const ports: [number, number] = [(a.addr as Deno.NetAddr).port, (b.addr as Deno.NetAddr).port];
  a.close();
  b.close();
  return ports;
};

const DAEMONS = [
  { name: "slurmctld", pidFile: ["run", "slurmctld.pid"] },
  { name: "slurmd", pidFile: ["run", "slurmd.pid"] },
  { name: "munged", pidFile: ["munge", "munged.pid"] },
] as const;

/**
 * The pid in a daemon's pid file when that process is alive and is that
 * daemon; else null. Reads `/proc/<pid>/stat` through `cat`: Deno grants
 * /proc reads only under --allow-all.
 */
const livePid = async (dir: string, daemon: (typeof DAEMONS)[number]): Promise<number | null> => {
  let pid: number;
  try {
    pid = Number((await Deno.readTextFile(join(dir, ...daemon.pidFile))).trim());
  } catch {
    return null;
  }
  if (!Number.isSafeInteger(pid) || pid <= 1) return null;
  const out = await run("cat", [`/proc/${pid}/stat`]);
  if (out.code !== 0) return null;
  // "pid (comm) state …"; a zombie (Z) has exited.
  const stat = out.stdout;
  const close = stat.lastIndexOf(")");
  const comm = stat.slice(stat.indexOf("(") + 1, close);
  return comm === daemon.name && stat[close + 2] !== "Z" ? pid : null;
};

type Daemon = (typeof DAEMONS)[number];

/** Each daemon's live pid or null (by {@linkcode livePid}). */
const livePids = (dir: string, daemons: readonly Daemon[]) =>
  Promise.all(daemons.map((d) => livePid(dir, d)));

/** `true` when every one of `daemons` is up (`up`) or every one is down; else null (for waitFor). */
const allAre = async (dir: string, daemons: readonly Daemon[], up: boolean) =>
  (await livePids(dir, daemons)).every((pid) => (pid !== null) === up) ? true : null;

/** The folders above `path`, nearest first, up to `/`. */
const ancestors = (path: string): string[] => {
  const out: string[] = [];
  for (let p = dirname(path);; p = dirname(p)) {
    out.push(p);
    if (p === dirname(p)) return out;
  }
};

/** Polls `check` every 200 ms until it returns non-null or `ms` pass. */
const waitFor = async <T>(
  ms: number,
  check: () => Promise<T | null> | T | null,
): Promise<T | null> => {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== null || Date.now() >= deadline) return v;
    await sleep(200);
  }
};

const tail = (path: string, lines = 15): string => {
  try {
    return Deno.readTextFileSync(path).trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
};

/**
 * Starts a cluster in `dir` (created, or a new temporary folder when left
 * out) and waits up to `timeoutMs` (default 30 s) for the node to be idle.
 * On failure it stops what it started and says which step failed, with the
 * daemons' last log lines.
 */
export async function startCluster(
  opts: { readonly dir?: string; readonly timeoutMs?: number } = {},
): Promise<E.Either<ClusterError, Cluster>> {
  const missing = missingSlurmCommands();
  if (missing.length > 0) {
    return E.left({
      _tag: "SlurmNotInstalled",
      missing,
      message: `not installed: ${missing.join(", ")} (apt-get install slurm-wlm munge)`,
    });
  }
  const dir = opts.dir ?? (await Deno.makeTempDir({ prefix: "crt-slurm-" }));
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const running = (await livePids(dir, DAEMONS)).some((pid) => pid !== null);
  if (running) {
    return E.left({
      _tag: "ClusterStartFailed",
      step: "start",
      message:
        `a slurm test cluster already runs in ${dir} (stop it first: tests/_slurm.ts stop ${dir})`,
    });
  }
  const fail = async (step: string, why: string): Promise<E.Either<ClusterError, Cluster>> => {
    await stopCluster(dir, { keep: true });
    return E.left({
      _tag: "ClusterStartFailed",
      step,
      message: `slurm test cluster in ${dir}: ${step}: ${why}\n` +
        `-- slurmctld.log:\n${tail(join(dir, "log", "slurmctld.log"))}\n` +
        `-- slurmd.log:\n${tail(join(dir, "log", "slurmd.log"))}\n` +
        `-- munged.log:\n${tail(join(dir, "munge", "munged.log"))}`,
    });
  };

  const probe = await run("slurmd", ["-C"]);
  const machine = parseSlurmdC(probe.stdout);
  if (probe.code !== 0 || machine === null) {
    return fail("slurmd -C", `cannot read the machine: ${probe.stdout}${probe.stderr}`);
  }
  const [slurmctld, slurmd] = freePorts();
  const ports = { slurmctld, slurmd };
  const user = (await run("id", ["-un"])).stdout.trim();
  const conf = join(dir, "slurm.conf");
  const env = { SLURM_CONF: conf };

  await Deno.mkdir(dir, { recursive: true });
  for (const sub of ["munge", "state", join("spool", machine.node), "log", "run"]) {
    await Deno.mkdir(join(dir, sub), { recursive: true });
  }
  // munged checks permissions: the socket's folders searchable by all, the key private.
  await Deno.chmod(dir, 0o755);
  await Deno.chmod(join(dir, "munge"), 0o755);
  const closed = ancestors(dir).find((a) => ((Deno.statSync(a).mode ?? 0) & 0o001) === 0);
  if (closed !== undefined) {
    return fail("munged", `${closed} is not searchable by all (chmod o+x), which munged requires`);
  }
  const key = join(dir, "munge", "munge.key");
  await Deno.writeFile(key, crypto.getRandomValues(new Uint8Array(128)), { mode: 0o600 });
  await Deno.writeTextFile(conf, renderSlurmConf({ dir, machine, ports, user }));

  const m = (f: string) => join(dir, "munge", f);
  const munged = await run("munged", [
    `--socket=${m("munge.socket")}`,
    `--key-file=${key}`,
    `--pid-file=${m("munged.pid")}`,
    `--log-file=${m("munged.log")}`,
    `--seed-file=${m("munged.seed")}`,
  ]);
  if (munged.code !== 0) return fail("munged", munged.stderr.trim());
  if (await waitFor(5000, () => allAre(dir, [DAEMONS[2]], true)) === null) {
    return fail("munged", "no munged process after start");
  }
  // Both daemons fork into the background once their configuration reads.
  const ctld = await run("slurmctld", [], env);
  if (ctld.code !== 0) return fail("slurmctld", ctld.stderr.trim());
  const d = await run("slurmd", ["-N", machine.node], env);
  if (d.code !== 0) return fail("slurmd", d.stderr.trim());

  // Their pid files appear a moment after the fork.
  const started = await waitFor(10_000, () => allAre(dir, DAEMONS.slice(0, 2), true));
  if (started === null) return fail("slurmctld and slurmd", "not running 10 s after start");
  let last = "";
  const idle = await waitFor(timeoutMs, async () => {
    for (const daemon of DAEMONS.slice(0, 2)) {
      if ((await livePid(dir, daemon)) === null) return `${daemon.name} exited`;
    }
    const s = await run("sinfo", ["--noheader", "--Node", "--format=%N %t"], env, 10_000);
    last = (s.stdout + s.stderr).trim();
    return /^\S+ idle$/m.test(s.stdout) ? "idle" : null;
  });
  if (idle !== "idle") {
    return fail(
      "waiting for the node",
      idle ?? `not idle within ${timeoutMs} ms; sinfo says: ${last || "(nothing)"}`,
    );
  }
  return E.right({ dir, conf, env, machine, ports });
}

/** Step sockets slurmd keeps per running job step (`<node>_<job>.<step>`). */
const stepSockets = (dir: string): string[] => {
  const out: string[] = [];
  try {
    for (const node of Deno.readDirSync(join(dir, "spool"))) {
      for (const f of Deno.readDirSync(join(dir, "spool", node.name))) {
        if (/_\d+\.\d+$/.test(f.name)) out.push(f.name);
      }
    }
  } catch {
    // no spool: nothing runs
  }
  return out;
};

/**
 * Stops the cluster in `dir`: cancels its jobs and waits for their steps to
 * end, shuts slurmctld and slurmd down (`scontrol shutdown`), sends SIGTERM
 * to munged and to any daemon still up, then SIGKILL to any still alive 5 s
 * later — always by the pid in its pid file, checked to be that daemon —
 * and removes `dir` unless `keep`. Safe to call on a half-started or
 * stopped cluster.
 */
export async function stopCluster(
  dir: string,
  opts: { readonly keep?: boolean } = {},
): Promise<E.Either<ClusterError, void>> {
  const env = { SLURM_CONF: join(dir, "slurm.conf") };
  const problems: string[] = [];
  if ((await livePid(dir, DAEMONS[0])) !== null) {
    await run("scancel", [`--partition=${PARTITION}`], env, 10_000).catch(() => null);
    if (await waitFor(15_000, () => (stepSockets(dir).length === 0 ? true : null)) === null) {
      problems.push(`job steps still running: ${stepSockets(dir).join(", ")}`);
    }
    await run("scontrol", ["shutdown"], env, 10_000).catch(() => null);
  }
  const slurm = DAEMONS.slice(0, 2);
  await waitFor(10_000, () => allAre(dir, slurm, false));
  // munged always, and slurmd when slurmctld was not there to tell it: SIGTERM.
  for (const daemon of DAEMONS) {
    const pid = await livePid(dir, daemon);
    if (pid !== null) Deno.kill(pid, "SIGTERM");
  }
  await waitFor(5_000, () => allAre(dir, DAEMONS, false));
  for (const daemon of DAEMONS) {
    const pid = await livePid(dir, daemon);
    if (pid === null) continue;
    problems.push(`${daemon.name} (pid ${pid}) ignored the shutdown: killed`);
    Deno.kill(pid, "SIGKILL");
  }
  if (!opts.keep) await Deno.remove(dir, { recursive: true }).catch(() => {});
  return problems.length === 0 ? E.right(undefined) : E.left({
    _tag: "ClusterStopFailed",
    message: `slurm test cluster in ${dir}: ${problems.join("; ")}`,
  });
}

/** Which of the cluster's daemons run, by pid. */
export const clusterStatus = async (dir: string): Promise<Record<string, number | null>> => {
  const pids = await livePids(dir, DAEMONS);
  return Object.fromEntries(DAEMONS.map((d, i) => [d.name, pids[i]]));
};

/**
 * Why the Slurm tests cannot run on this machine, or `null` when they can.
 * Outside CI a test file that cannot run says so (`file: SKIPPED, why`);
 * under CI (`$CI` set) it must run, and fails with the reason instead.
 */
export const slurmTestGate = (
  file: string,
): { readonly ignore: boolean; readonly why: string | null } => {
  const underCi = (Deno.env.get("CI") ?? "") !== "" && Deno.env.get("CI") !== "false";
  const missing = missingSlurmCommands();
  const why = missing.length > 0
    ? `Slurm is not installed (missing ${missing.join(", ")}; apt-get install slurm-wlm munge)`
    : Deno.uid() !== 0
    ? "the test cluster runs as root (slurmd starts jobs as their user)"
    : null;
  if (why !== null && !underCi) console.warn(`${file}: SKIPPED, ${why}`);
  return { ignore: why !== null && !underCi, why };
};

/**
 * Starts a cluster in `<a new temporary folder>/cluster`, runs `body` with
 * it and that folder, then stops the daemons and removes the folder
 * whatever happened; a failure of `body` is thrown first, then one of the
 * stop.
 */
export async function withTestCluster(
  prefix: string,
  body: (cluster: Cluster, root: string) => Promise<void>,
): Promise<void> {
  const root = await Deno.makeTempDir({ prefix });
  await Deno.chmod(root, 0o755); // munged wants its socket's folders open to all
  const clusterDir = join(root, "cluster");
  const cluster = await startCluster({ dir: clusterDir, timeoutMs: 30_000 });
  if (E.isLeft(cluster)) {
    await Deno.remove(root, { recursive: true });
    throw new Error(cluster.left.message);
  }
  let failure: { readonly error: unknown } | null = null;
  try {
    await body(cluster.right, root);
  } catch (error) {
    failure = { error };
  }
  const stopped = await stopCluster(clusterDir);
  await Deno.remove(root, { recursive: true }).catch(() => {});
  if (failure !== null) throw failure.error;
  if (E.isLeft(stopped)) throw new Error(stopped.left.message);
}

/** How long a cluster test's Slurm commands may take. */
const SLURM_TIMEOUT_MS = 20_000;

/**
 * Registers the test `name`, which runs `body` on a fresh test cluster
 * ({@linkcode withTestCluster} with `prefix`), with a {@linkcode Watch} on
 * it whose deadline is `limitMs` from the test's start. Skipped or failed
 * as {@linkcode slurmTestGate} says for `file`; checks that the test leaves
 * no operations or resources open.
 */
export const slurmClusterTest = (
  name: string,
  opts: { readonly file: string; readonly prefix: string; readonly limitMs: number },
  body: (cluster: Cluster, root: string, watch: Watch) => Promise<void>,
): void => {
  const gate = slurmTestGate(opts.file);
  Deno.test({
    name,
    ignore: gate.ignore,
    sanitizeOps: true,
    sanitizeResources: true,
    fn: () => {
      if (gate.why !== null) throw new Error(`under CI the Slurm test must run: ${gate.why}`);
      const deadline = Date.now() + opts.limitMs;
      return withTestCluster(opts.prefix, (cluster, root) =>
        body(cluster, root, {
          slurm: { env: cluster.env, timeoutMs: SLURM_TIMEOUT_MS },
          deadline,
        }));
    },
  });
};

async function main(args: readonly string[]): Promise<number> {
  const [command, dir] = args;
  if (command === "start") {
    const r = await startCluster(dir === undefined ? {} : { dir });
    if (E.isLeft(r)) {
      console.error(r.left.message);
      return 1;
    }
    console.error(
      `slurm test cluster up in ${r.right.dir} (node ${r.right.machine.node}, ` +
        `slurmctld 127.0.0.1:${r.right.ports.slurmctld}, slurmd 127.0.0.1:${r.right.ports.slurmd})`,
    );
    console.log(`export SLURM_CONF=${r.right.conf}`);
    return 0;
  }
  if ((command === "stop" || command === "status") && dir !== undefined) {
    if (command === "status") {
      const s = await clusterStatus(dir);
      for (const [name, pid] of Object.entries(s)) console.log(`${name}: ${pid ?? "not running"}`);
      return Object.values(s).every((p) => p !== null) ? 0 : 1;
    }
    const r = await stopCluster(dir);
    if (E.isLeft(r)) console.error(r.left.message);
    return E.isLeft(r) ? 1 : 0;
  }
  console.error("usage: deno run -A tests/_slurm.ts start [DIR] | status DIR | stop DIR");
  return 2;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
