/**
 * The worker side of the two-thread GEMM (`ops/gemm_pool.ts`): a loop that
 * waits on a shared control word, takes chunks of the product the main
 * thread posted, runs them with the shared-memory build of `kernels/gemm.c`,
 * and signals completion.
 *
 * The whole worker is the one self-contained function {@linkcode gemmWorker}:
 * it refers to nothing outside its own body but JavaScript globals, so the
 * pool can start it from a `blob:` URL made of its source text — no file
 * access (no `--allow-read` in Deno) and no bundler support for worker URLs
 * in a browser. `ops/gemm_worker.ts` is the same function as a worker
 * module to load by URL (the pool's `worker: "url"` option). This module has
 * no side effect, so importing it inside some other worker is harmless.
 *
 * The protocol, all on Int32 words of the shared memory at
 * `init.control` (indices in {@linkcode GEMM_CONTROL}). A product is cut
 * into `count` chunks (batch entries, rows or columns, from `bounds[i]` to
 * `bounds[i + 1]`); the worker holds copies of the operands of chunks
 * `first` … `count − 1` only. For job N the
 * main thread sets every `owner` word to the tag 4N, writes the worker's
 * descriptor and `count`/`first`, then increments `job` to N and notifies
 * it. Both threads then claim chunks with a compare-and-swap of the chunk's
 * `owner` word from 4N to 4N + 1 (main, ascending from 0) or 4N + 2
 * (worker, descending from `count − 1`, never below `first`) and stop at
 * the first chunk the other took, so every chunk is computed once. The
 * worker marks each chunk it finished 4N + 3 (the calling thread of a
 * matrix-vector product may compute a chunk the worker has held too long
 * itself, and then reads only the marked ones). The
 * worker then stores N into `done` (and N into `error` if a chunk threw)
 * and notifies it; the main thread waits for that only when the worker
 * owns a chunk — a worker that was slow to wake owns none and costs
 * nothing, and its later claims fail because their tags are stale.
 *
 * After a job the worker watches `job` for `init.spinMs` before it waits on
 * it, so that the next job of a run of short ones (the matrix-vector
 * products of a streamed token) starts without a wake-up.
 *
 * After `init.idleMs` without a job the worker retires (`state` READY →
 * GONE) and closes, so that an idle worker never keeps a Deno process
 * alive for long; the pool starts a new one when it next needs it.
 * `stop` = 1 makes it close at once.
 *
 * @module
 */

/** Indices of the shared control words, and the values of `state`. */
export const GEMM_CONTROL = {
  /** Worker state: STARTING, READY, GONE or FAILED below. */
  state: 0,
  /** Number of the last job posted (incremented by the main thread). */
  job: 1,
  /** Number of the last job the worker finished. */
  done: 2,
  /** 1: the worker must close now. */
  stop: 3,
  /** Number of the last job in which a chunk threw in the worker. */
  error: 4,
  /** Chunks of the current job. */
  count: 5,
  /** The lowest chunk the worker may take. */
  first: 6,
  /** First of `maxChunks` words: who took each chunk (see the module doc). */
  owner: 16,
  /** Most chunks a job may have. */
  maxChunks: 16,
  /** First of the 19 ints of the worker's `gemm_chunk` descriptor. */
  desc: 32,
  /** First of `maxChunks + 1` words: where chunk i starts, in units of the worker's descriptor. */
  bounds: 52,
  /** Words in the control block. */
  words: 72,
  STARTING: 0,
  READY: 1,
  GONE: 3,
  FAILED: 4,
} as const;

/** What the pool posts to a new worker, once. */
export interface GemmWorkerInit {
  /** The shared-memory build of `kernels/gemm.c`. */
  readonly module: WebAssembly.Module;
  /** The shared memory it runs on. */
  readonly memory: WebAssembly.Memory;
  /** Byte offset of the control words. */
  readonly control: number;
  /** Retire after this long without a job (ms; Infinity: never). */
  readonly idleMs: number;
  /** Wait with blocking `Atomics.wait` even where `Atomics.waitAsync` exists (for tests). */
  readonly blockingWait: boolean;
  /**
   * After a job, watch the `job` word this long (ms) before waiting on it:
   * a job posted meanwhile starts at once instead of after a wake-up
   * (tens of µs), which is what matrix-vector products of 10–100 µs need.
   */
  readonly spinMs: number;
  /** For tests: wait this long (ms) after claiming each chunk, as a preempted worker would. */
  readonly delayMs: number;
  /** {@linkcode GEMM_CONTROL}, passed along because the worker's code refers to nothing outside itself. */
  readonly layout: typeof GEMM_CONTROL;
}

/** The parts of a dedicated worker's global scope the worker uses. */
export interface GemmWorkerScope {
  /** Receives the one {@linkcode GemmWorkerInit} message. */
  onmessage: ((e: MessageEvent) => void) | null;
  /** Reports a failure to the main thread (an `{ error }` object). */
  postMessage(message: unknown): void;
  /** Ends the worker. */
  close(): void;
}

/**
 * The source text of a worker script that runs {@linkcode gemmWorker}.
 *
 * @example
 * ```ts
 * import { gemmWorkerSource } from "./_gemm_thread.ts";
 * console.log(gemmWorkerSource().startsWith("(function")); // true
 * ```
 */
export const gemmWorkerSource = (): string => `(${gemmWorker.toString()})(self);\n`;

/**
 * The worker: installs a message handler on `scope` that takes the
 * {@linkcode GemmWorkerInit} and serves jobs until stopped or idle.
 *
 * Its source text is the worker's code, whatever a bundler made of it, so
 * the body keeps to what survives bundling on its own: it refers only to
 * its parameter and JavaScript globals; it binds no function to a local
 * name (no inner `function`, no `const f = () => …`), because esbuild's
 * keep-names mode (`deno bundle --keep-names`) wraps such bindings in calls
 * to a helper defined outside the function — its steps are properties of
 * one object `w` instead; and it uses no syntax a down-levelling compiler
 * would replace with helpers (no spread, no classes, no async functions).
 *
 * @example
 * ```ts
 * import { gemmWorkerSource } from "./_gemm_thread.ts";
 * // What the pool does: the function's own source, run in a worker from a blob: URL.
 * const url = URL.createObjectURL(new Blob([gemmWorkerSource()], { type: "text/javascript" }));
 * const worker = new Worker(url, { type: "module" });
 * worker.terminate();
 * URL.revokeObjectURL(url);
 * ```
 */
export function gemmWorker(scope: GemmWorkerScope): void {
  scope.onmessage = (e: MessageEvent) => {
    scope.onmessage = null;
    const init = e.data as GemmWorkerInit;
    const L = init.layout;
    const ctl = new Int32Array(init.memory.buffer, init.control, L.words);
    /** The worker's state and steps (see above for why an object). */
    const w = {} as {
      chunk: (desc: number, from: number, to: number) => void;
      seen: number;
      fail(what: string, err: unknown): void;
      run(job: number): void;
      serve(timedOut: boolean): boolean;
      spin(): void;
      end(): void;
      pump(): void;
    };
    w.fail = (what, err) => {
      scope.postMessage({ error: `${what}: ${err instanceof Error ? err.message : String(err)}` });
    };
    try {
      const inst = new WebAssembly.Instance(init.module, { env: { memory: init.memory } });
      w.chunk = inst.exports.gemm_chunk as (desc: number, from: number, to: number) => void;
    } catch (err) {
      Atomics.store(ctl, L.state, L.FAILED);
      Atomics.notify(ctl, L.state);
      w.fail("cannot instantiate the GEMM kernel in the worker", err);
      scope.close();
      return;
    }
    w.seen = Atomics.load(ctl, L.job);
    w.run = (job) => {
      w.seen = job;
      const tag = (job & 0x1fffffff) * 4;
      // Read once; a stale job's values may be torn, but then every claim fails.
      const count = Math.min(ctl[L.count], L.maxChunks), first = Math.max(ctl[L.first], 0);
      for (let i = count - 1; i >= first; i--) {
        if (Atomics.compareExchange(ctl, L.owner + i, tag, tag + 2) !== tag) break;
        if (init.delayMs > 0) {
          const until = performance.now() + init.delayMs;
          while (performance.now() < until);
        }
        try {
          w.chunk(init.control + 4 * L.desc, ctl[L.bounds + i], ctl[L.bounds + i + 1]);
          Atomics.store(ctl, L.owner + i, tag + 3); // done: its results may be read
        } catch (err) {
          Atomics.store(ctl, L.error, job);
          w.fail("the GEMM kernel failed in the worker", err);
          break;
        }
      }
      Atomics.store(ctl, L.done, job);
      Atomics.notify(ctl, L.done);
    };
    // After a wait: false when the worker must end (stopped, or retired while idle).
    w.serve = (timedOut) => {
      if (Atomics.load(ctl, L.stop) !== 0) return false;
      const job = Atomics.load(ctl, L.job);
      if (job !== w.seen) {
        w.run(job);
        return true;
      }
      // Retiring while a job is being posted is harmless: the main thread then takes every chunk.
      return !(timedOut &&
        Atomics.compareExchange(ctl, L.state, L.READY, L.GONE) === L.READY);
    };
    w.spin = () => {
      const until = performance.now() + init.spinMs;
      for (;;) {
        // The clock only now and then: each reading is a call into the runtime.
        for (let i = 0; i < 256; i++) if (Atomics.load(ctl, L.job) !== w.seen) return;
        if (Atomics.load(ctl, L.stop) !== 0 || performance.now() > until) return;
      }
    };
    w.end = () => {
      Atomics.notify(ctl, L.state);
      scope.close();
    };
    const waitAsync = init.blockingWait ? undefined : Atomics.waitAsync;
    w.pump = () => {
      for (;;) {
        w.spin();
        if (waitAsync === undefined) {
          // Blocking wait: allowed in every worker; `stop` + notify wakes it.
          if (!w.serve(Atomics.wait(ctl, L.job, w.seen, init.idleMs) === "timed-out")) {
            return w.end();
          }
          continue;
        }
        const waited = waitAsync(ctl, L.job, w.seen, init.idleMs);
        if (waited.async) {
          waited.value.then((outcome) => w.serve(outcome === "timed-out") ? w.pump() : w.end());
          return;
        }
        // "not-equal": a job (or a stop) came in already.
        if (!w.serve(false)) return w.end();
      }
    };
    Atomics.store(ctl, L.state, L.READY);
    Atomics.notify(ctl, L.state);
    w.pump();
  };
}
