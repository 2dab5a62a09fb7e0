/**
 * How busy the rest of the machine was while a benchmark ran.
 *
 * The project's machines have two cores, so one busy neighbour (a training
 * run, a test suite) halves a measurement and a load average cannot say
 * when. Linux's /proc can: all busy CPU ticks of the machine minus those of
 * the processes being measured is what everyone else used, and the
 * hypervisor's steal is what the host took. Benchmarks print it beside
 * their numbers (and `bench/peers.ts` reruns rounds it disturbed).
 *
 * @module
 */

/** Average cores used outside the measured processes, and stolen by the host. */
export interface Load {
  /** Cores busy in other processes (and the kernel), on average. */
  readonly otherCores: number;
  /** Cores the hypervisor took, on average. */
  readonly stealCores: number;
}

const TICKS_PER_SECOND = 100; // USER_HZ, 100 on every Linux this runs on

/** Busy and steal ticks of the whole machine, or null off Linux. */
const machineTicks = (): { busy: number; steal: number } | null => {
  try {
    const fields = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/)
      .slice(1).map(Number);
    const [user, nice, system, , , irq, softirq, steal] = fields; // idle and iowait skipped
    return { busy: user + nice + system + irq + softirq, steal };
  } catch {
    return null;
  }
};

/** utime + stime (+ waited-for children) of a process, all its threads, in ticks; 0 if gone. */
const processTicks = (pid: number): number => {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The command name may hold spaces: count fields after its closing parenthesis.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // f[0] is field 3 (state)
    return Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  } catch {
    return 0;
  }
};

/**
 * Measures what the rest of the machine used from construction until each
 * {@linkcode CpuMeter.read}. The measured processes are this one plus
 * `pids()` (read at both ends, so children started later count once they exist).
 * Deno 2 lets only `--allow-all` read /proc (`--allow-read` is not enough):
 * without it, and off Linux, `read()` returns null.
 *
 * @example
 * ```ts
 * import { CpuMeter, describeLoad } from "./_load.ts";
 * const meter = new CpuMeter();
 * let x = 0;
 * for (let i = 0; i < 1e7; i++) x += i; // our own work does not count
 * console.log(describeLoad(meter.read())); // e.g. "0.01 other, 0.00 steal"
 * ```
 */
export class CpuMeter {
  readonly #t0 = performance.now();
  readonly #machine0: { busy: number; steal: number } | null;
  readonly #ours0: number;
  readonly #pids: () => readonly number[];

  /** Start measuring; `pids` lists child processes whose CPU time is ours too. */
  constructor(pids: () => readonly number[] = () => []) {
    this.#pids = pids;
    this.#machine0 = machineTicks();
    this.#ours0 = this.#ours();
  }

  #ours(): number {
    return [Deno.pid, ...this.#pids()].reduce((a, pid) => a + processTicks(pid), 0);
  }

  /** Average load of the rest of the machine since construction; null off Linux. */
  read(): Load | null {
    const m = machineTicks();
    if (m === null || this.#machine0 === null) return null;
    const ticks = Math.max(1, (performance.now() - this.#t0) / 1000 * TICKS_PER_SECOND);
    const ours = this.#ours() - this.#ours0;
    return {
      otherCores: Math.max(0, m.busy - this.#machine0.busy - ours) / ticks,
      stealCores: (m.steal - this.#machine0.steal) / ticks,
    };
  }
}

/**
 * A load as `"0.02 other, 0.00 steal"` (cores), or `"n/a"`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { describeLoad } from "./_load.ts";
 * assert.equal(describeLoad({ otherCores: 1.04, stealCores: 0 }), "1.04 other, 0.00 steal");
 * assert.equal(describeLoad(null), "n/a");
 * ```
 */
export const describeLoad = (l: Load | null): string =>
  l === null ? "n/a" : `${l.otherCores.toFixed(2)} other, ${l.stealCores.toFixed(2)} steal`;

/**
 * The CPU's model name as the kernel reports it (`model name` in
 * /proc/cpuinfo, what `lscpu` prints), with its family and model numbers
 * and whether it has AVX-512 and VNNI (a virtual machine may name only the
 * vendor, "AMD EPYC", for CPUs of very different speed), or
 * `"unknown CPU"` off Linux.
 *
 * @example
 * ```ts
 * import { cpuModel } from "./_load.ts";
 * console.log(`${cpuModel()}, ${navigator.hardwareConcurrency} logical cores`);
 * ```
 */
export const cpuModel = (): string => {
  try {
    const info = Deno.readTextFileSync("/proc/cpuinfo");
    const field = (name: string) =>
      info.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, "m"))?.[1].trim();
    const name = field("model name") ?? "unknown CPU";
    // A virtual machine may name only the vendor ("AMD EPYC"): family and model tell the core.
    const family = field("cpu family"), model = field("model");
    const flags = ` ${field("flags") ?? ""} `;
    const traits = [
      flags.includes(" avx512f ") ? "AVX-512" : "",
      flags.includes(" avx_vnni ") ? "VNNI" : "",
    ]
      .filter((t) => t !== "");
    return family === undefined || model === undefined
      ? name
      : `${name} (family ${family} model ${model}${traits.map((t) => `, ${t}`).join("")})`;
  } catch {
    return "unknown CPU";
  }
};

/**
 * What the rest of the machine uses while this process waits `ms`
 * milliseconds: a look before a benchmark starts (null where
 * {@linkcode CpuMeter} cannot read /proc).
 *
 * @example
 * ```ts
 * import { describeLoad, sampleLoad } from "./_load.ts";
 * console.log(`before the run: ${describeLoad(await sampleLoad(200))} cores`);
 * ```
 */
export const sampleLoad = async (ms: number): Promise<Load | null> => {
  const meter = new CpuMeter();
  await new Promise((r) => setTimeout(r, ms));
  return meter.read();
};
