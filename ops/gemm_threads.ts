/**
 * What the environment allows the two-thread GEMM (`ops/gemm_pool.ts`):
 * whether a worker can run here (`SharedArrayBuffer`, `Worker`), a shared
 * `WebAssembly.Memory` for it, how many threads the options and the
 * machine's cores ask for, and whether this thread may block in
 * `Atomics.wait`. {@linkcode gemmThreads} sums it up without starting
 * anything.
 *
 * @module
 */
import { describeError } from "../spec/errors.ts";
import { GEMM_CONTROL as L } from "./_gemm_thread.ts";
import type { GemmPoolOptions } from "./gemm_pool.ts";

/** The shared memory's limit, in 64 KiB pages: the shared build's declared maximum (2 GiB). */
export const MAX_PAGES = 32768;
/** A WebAssembly page, in bytes. */
export const PAGE = 65536;

/** Why a worker cannot help here, or null when it can. */
export const whyNoWorker = (): string | null => {
  const g = globalThis as { crossOriginIsolated?: boolean };
  if (typeof SharedArrayBuffer !== "function") {
    return g.crossOriginIsolated === false
      ? "SharedArrayBuffer is unavailable: the page is not cross-origin isolated " +
        "(serve it with Cross-Origin-Opener-Policy: same-origin and " +
        "Cross-Origin-Embedder-Policy: require-corp)"
      : "SharedArrayBuffer is unavailable in this JavaScript engine";
  }
  if (typeof Worker !== "function") return "this JavaScript engine has no Worker";
  return null;
};

/** Threads a pool may use, and why only one when so. */
export interface GemmThreads {
  /** 2 (the calling thread and a worker) or 1. */
  readonly threads: number;
  /** Why 1, when 1. */
  readonly reason?: string;
}

/** The shared memory of a pool, or why there can be none (a string). */
export const sharedMemory = (bytes: number): WebAssembly.Memory | string => {
  try {
    return new WebAssembly.Memory({
      initial: Math.ceil(bytes / PAGE),
      maximum: MAX_PAGES,
      shared: true,
    });
  } catch (e) {
    return `a shared WebAssembly.Memory cannot be made here: ${describeError(e)}`;
  }
};

/** The threads `opts` and the machine's cores ask for, before asking the environment. */
export const wantedThreads = (opts: GemmPoolOptions): GemmThreads => {
  const cores = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator
    ?.hardwareConcurrency ?? 1;
  if (opts.threads !== undefined) {
    if (!(Number.isInteger(opts.threads) && opts.threads >= 1)) {
      throw new RangeError(`gemm pool: threads must be a positive integer, got ${opts.threads}`);
    }
    if (opts.threads === 1) return { threads: 1, reason: "threads: 1 was asked for" };
    return { threads: 2 };
  }
  return cores >= 2 ? { threads: 2 } : {
    threads: 1,
    reason: `this machine reports ${cores} core${cores === 1 ? "" : "s"}`,
  };
};

/**
 * The threads a pool started here with `opts` would use, and why only one
 * when so (no `SharedArrayBuffer`, no `Worker`, `threads: 1`, one core),
 * found without starting anything. Throws a RangeError on a `threads` that
 * is not a positive integer.
 *
 * @example
 * ```ts
 * import { gemmThreads } from "./gemm_threads.ts";
 * console.log(gemmThreads({})); // { threads: 2 } on a 2-core machine under Deno
 * console.log(gemmThreads({ threads: 1 }).reason); // "threads: 1 was asked for"
 * ```
 */
export const gemmThreads = (opts: GemmPoolOptions = {}): GemmThreads => {
  const wanted = wantedThreads(opts);
  if (wanted.threads < 2) return wanted;
  const why = whyNoWorker();
  if (why !== null) return { threads: 1, reason: why };
  const probe = sharedMemory(PAGE);
  return typeof probe === "string" ? { threads: 1, reason: probe } : wanted;
};

/** Whether this thread may block in `Atomics.wait` (Deno's main thread may; a browser's may not). */
export const canBlock = (ctl: Int32Array): boolean => {
  try {
    Atomics.wait(ctl, L.stop, 1, 0); // the word is 0: returns "not-equal" at once where allowed
    return true;
  } catch {
    return false;
  }
};
