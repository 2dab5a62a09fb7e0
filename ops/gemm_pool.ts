/**
 * A float32 GEMM on two threads for the portable (pure WebAssembly) tier:
 * the calling thread and one worker, each running the SIMD kernel of
 * `kernels/gemm.c`.
 *
 * The operands live on a heap the pool does not own (tfjs-backend-wasm's
 * `WebAssembly.Memory`, which is not shared: tfjs runs its non-threaded
 * build). The calling thread runs its part of a product in place on that
 * heap, with an instance of the kernel that imports it. The worker cannot
 * see that heap, so the calling thread first copies the worker's operands
 * into a shared `WebAssembly.Memory` — O(MK + KN) against O(MKN) work —
 * posts the job through `Atomics`, computes its own part, waits for the
 * worker, and copies the worker's part of C back.
 *
 * How a product is shared: it is cut into 2–8 chunks ({@linkcode chunksOf}:
 * batch entries for attention, else rows or columns, whichever has more
 * register tiles), largest at the ends and smallest in the middle. The
 * worker gets copies of the operands of the back half of the chunks only
 * (the rows of A and all of B, or all of A and the columns of B), then both
 * threads claim chunks with atomic compare-and-swaps, the calling thread
 * from the front and the worker from the back. So neither waits for the
 * other beyond a small chunk: a worker slowed by a busy machine leaves its
 * chunks to the calling thread instead of stalling it. Small products
 * ({@linkcode DEFAULT_MIN_PARALLEL_FLOPS}) and products of a few rows
 * ({@linkcode DEFAULT_MIN_INTENSITY}) run on the calling thread alone, with
 * no copy and no round-trip.
 *
 * The worker starts lazily, on the first product worth splitting (that one,
 * and any while it starts, runs on one thread). Under Deno it retires after
 * 3 s without work (`idleMs`) and comes back when needed, so an idle pool
 * keeps a Deno process alive at most that long after its last product (a
 * live worker does: Deno exits when no work is pending, and a worker
 * counts). {@linkcode GemmPool.stopWorker} and {@linkcode GemmPool.dispose}
 * stop it at once. Where workers cannot run — a browser page that is not
 * cross-origin isolated has no `SharedArrayBuffer` — the pool runs
 * everything on the calling thread and says why in `reason`.
 *
 * @module
 */
import { GEMM_CONTROL as L, type GemmWorkerInit, gemmWorkerSource } from "./_gemm_thread.ts";
import {
  type Chunks,
  chunksOf,
  DEFAULT_MIN_INTENSITY,
  type GemmProduct,
  moveBlock,
  strides,
} from "./gemm_chunks.ts";
import { compileLocal, compileShared, type GemmExports } from "./gemm_kernel.ts";
import { int8DotFlag } from "./q8_dot.ts";
import {
  canBlock,
  MAX_PAGES,
  PAGE,
  sharedMemory,
  wantedThreads,
  whyNoWorker,
} from "./gemm_threads.ts";

/**
 * The memory that holds the operands (tfjs-wasm's heap), and how to
 * allocate the calling thread's packing workspace on it.
 */
export interface GemmHeap {
  /** The heap; byte offsets in {@linkcode GemmProduct} point into it. */
  readonly memory: WebAssembly.Memory;
  /** Allocate `bytes` on the heap; returns the byte offset. */
  alloc(bytes: number): number;
  /** Free what `alloc` returned. */
  free(offset: number): void;
}

/** Options of {@linkcode startGemmPool}. */
export interface GemmPoolOptions {
  /**
   * Threads: 1 (the calling thread only) or 2 (plus one worker). Default: 2
   * when `navigator.hardwareConcurrency` ≥ 2. More than 2 is taken as 2.
   */
  readonly threads?: number;
  /**
   * Products of fewer FLOPs (2·batch·M·N·K) stay on the calling thread
   * (default {@linkcode DEFAULT_MIN_PARALLEL_FLOPS}).
   */
  readonly minParallelFlops?: number;
  /**
   * Products with fewer FLOPs per element of A, B and C stay on the calling
   * thread (default {@linkcode DEFAULT_MIN_INTENSITY}): the worker's operands
   * would cost more to copy than the work it takes over.
   */
  readonly minIntensity?: number;
  /**
   * The worker retires after this long without work, in ms: default 3000
   * under Deno (a live worker keeps a Deno process from exiting), never in
   * a browser. A later product starts a new one (~50 ms, products meanwhile
   * on one thread).
   */
  readonly idleMs?: number;
  /**
   * How the worker is started: `"blob"` (default) from the source of its
   * function, needing no file access and no bundler support; `"url"` as the
   * module `ops/gemm_worker.ts`, for a page that forbids `blob:` workers.
   */
  readonly worker?: "blob" | "url";
  /**
   * Int8 matrix-vector products ({@linkcode GemmPool.gemvQ8}) of weights
   * smaller than this many entries (K·N) stay on the calling thread
   * (default {@linkcode DEFAULT_MIN_PARALLEL_WEIGHTS}).
   */
  readonly minParallelWeights?: number;
  /**
   * How long each thread watches for the other before it blocks, in ms:
   * the worker for the next job after one (so that a run of short jobs,
   * such as a streamed token's matrix-vector products, starts each without
   * a wake-up), the calling thread for the worker's part of a job. Default
   * {@linkcode DEFAULT_SPIN_MS}; the worker's core stays busy that long
   * after each job.
   */
  readonly spinMs?: number;
  /** For tests: the worker waits this long (ms) after claiming each chunk, as if preempted. */
  readonly slowWorkerMs?: number;
  /** Make the worker wait with blocking `Atomics.wait` (tests the fallback for engines without `Atomics.waitAsync`). */
  readonly blockingWait?: boolean;
  /**
   * The calling thread claims its first chunk only after the worker has
   * claimed one (for tests: every shared product then runs on both threads
   * for certain; slower).
   */
  readonly workerFirst?: boolean;
}

/**
 * Below this many FLOPs a product runs on the calling thread alone. Measured
 * with `deno run -A bench/gemm.ts --scan` on this project's 2-core
 * machine (medians of 200): attention-sized batches of 4 products (0.66
 * MFLOP) ran 0.54× as fast on two threads, of 8 (1.33 MFLOP) 0.97–1.19×,
 * of 16 (2.65 MFLOP) 1.15–1.34×; the copies and the round-trip cost about
 * 20–50 µs.
 */
export const DEFAULT_MIN_PARALLEL_FLOPS = 2_000_000;

/**
 * Int8 matrix-vector products of fewer weights run on the calling thread
 * alone: by default all of them. Sharing one costs a few µs (the quantised
 * vector copied over, the worker's part of y copied back), about what 64 k
 * weights take, and keeps the worker's core spinning between products
 * (`spinMs`). Measured on a 2-core AMD EPYC (`deno run -A bench/gemm.ts
 * --matvec`), the reference CRT's 10,000-word readout (2.56 M weights) ran
 * 1.5–2.3× faster on two threads and its 131–262 k-weight block products
 * 1.0–1.5×, but a whole streamed token (`--matvec --stream 35`) was no
 * faster in the median: 0.74–1.20× across runs, the best tokens faster and
 * the spread wider. On a Zen 5 EPYC (family 26) the readout took 34 µs on
 * one thread and 22–25 on two; whole tokens, each setting warmed up for
 * ten segments, ran 0.92–1.23× as fast sharing the readout (three
 * `--matvec --stream 35` runs) and, over eleven pairs of fresh processes,
 * faster in eight, slower in three, ~3 % in the median: a gain too small
 * and too uneven to take the second core by default. Where both cores are
 * free (more cores, no neighbours), opt in with `minParallelWeights`
 * (131,072 shares every product of that model's decode step but the
 * 256 × 256 ones; 1,000,000 only the readout).
 */
export const DEFAULT_MIN_PARALLEL_WEIGHTS = Infinity;

/** How long each thread watches for the other before blocking (ms): see `spinMs`. */
export const DEFAULT_SPIN_MS = 0.5;

/**
 * An int8 weight W [K, N] for {@linkcode GemmPool.gemvQ8}, on the heap in
 * the packed layout of `ops/quant.ts`: blocks of 16 columns, within a block
 * the rows in quads (64 bytes a quad), then float32 scales, one per column,
 * and the column sums (`np` floats each).
 */
export interface Q8Weight {
  /**
   * The identity of the weight's data, such as its tensor's `dataId`: the
   * worker reads its own copy of (part of) the weight, made on the first
   * product with this key and freed once the key is garbage-collected, so
   * the bytes behind a key must never change.
   */
  readonly key: object;
  /** Byte offset of the packed int8 values. */
  readonly at: number;
  /** Byte offset of the scales [np]. */
  readonly scales: number;
  readonly k: number;
  /** Entries of y (a multiple of 4). */
  readonly n: number;
  /** N padded to a multiple of 16. */
  readonly np: number;
}

/** What a pool did: products by path, for tests and benchmarks. */
export interface GemmPoolStats {
  /** Products run on the calling thread alone. */
  readonly single: number;
  /** Products cut into chunks for the two threads. */
  readonly split: number;
  /** Of those, products in which the worker computed a chunk (in the others it woke too late). */
  readonly shared: number;
  /** Products worth splitting that ran alone because the worker was not ready. */
  readonly notReady: number;
  /** Workers started (a retired worker is started again when needed). */
  readonly started: number;
  /** Int8 matrix-vector products cut into chunks for the two threads (`gemvQ8` calls that returned true). */
  readonly matvecs: number;
  /** Of those, products in which the worker computed columns. */
  readonly matvecsShared: number;
  /** Of those, products whose last worker chunk the calling thread computed as well, the worker being late. */
  readonly matvecsTakenBack: number;
  /** Bytes of int8 weights copied into the worker's memory, alive now. */
  readonly residentBytes: number;
}

/**
 * The two-thread GEMM. Not thread-safe: one caller (tfjs's kernel runs on
 * one thread).
 */
export interface GemmPool {
  /** Threads the pool may use: 2, or 1 when it cannot or was told so. */
  readonly threads: number;
  /** Why the pool runs on one thread, when it does (undefined when it may use two). */
  readonly reason: string | undefined;
  /** Compute `p` before returning. */
  gemm(p: GemmProduct): void;
  /**
   * `y (+)= x·W` for x [K] and y [N] at byte offsets on the heap, shared
   * with the worker by column blocks, when it is worth it: true when done,
   * false (nothing done) when the caller should compute it itself — W of
   * fewer than `minParallelWeights` entries, one thread, the worker not
   * ready yet, or no room for its copy of W. The result is the same either
   * way, to the bit: every column is computed by the same code from the
   * same quantised x.
   */
  gemvQ8(w: Q8Weight, x: number, y: number, accumulate: boolean): boolean;
  /** Counters since the pool started. */
  stats(): GemmPoolStats;
  /**
   * Start the worker if it is not running and resolve once it takes jobs:
   * true, or false when the pool runs on one thread (see `reason`). Products
   * never wait for this (they run on one thread meanwhile); benchmarks and
   * tests use it to measure the two-thread path from the first product.
   */
  ready(): Promise<boolean>;
  /** Stop the worker now (a later large product starts a new one). */
  stopWorker(): void;
  /** Stop the worker and free the workspace; the pool must not be used afterwards. */
  dispose(): void;
}

// --- the pool ------------------------------------------------------------------------

const CONTROL = 1024; // byte offset of the control words in the shared memory
const WORK = 4096; // byte offset of the worker's workspace

/**
 * Start a pool on `heap`: instantiates the kernel on it (synchronously; see
 * `compileGemm` of `ops/gemm_kernel.ts` for browsers) and allocates the
 * calling thread's workspace there. The worker is started later, when first
 * needed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startGemmPool } from "./gemm_pool.ts";
 * // A heap of our own, with a bump allocator (tfjs-wasm's heap in real use).
 * const memory = new WebAssembly.Memory({ initial: 64 });
 * let top = 64;
 * const heap = { memory, alloc: (n: number) => (top += n) - n, free: () => {} };
 * const pool = startGemmPool(heap, { threads: 1 });
 * const [a, b, c] = [heap.alloc(2 * 3 * 4), heap.alloc(3 * 2 * 4), heap.alloc(2 * 2 * 4)];
 * const f32 = new Float32Array(memory.buffer);
 * f32.set([1, 2, 3, 4, 5, 6], a / 4); // A [2, 3]
 * f32.set([1, 0, 0, 1, 1, 1], b / 4); // B [3, 2]
 * pool.gemm({
 *   batch: 1, m: 2, n: 2, k: 3,
 *   a, transposeA: false, batchA: 1, b, transposeB: false, batchB: 1, c,
 * });
 * assert.deepEqual([...new Float32Array(memory.buffer, c, 4)], [4, 5, 10, 11]);
 * pool.dispose();
 * ```
 */
export const startGemmPool = (heap: GemmHeap, opts: GemmPoolOptions = {}): GemmPool => {
  const wanted = wantedThreads(opts);
  const minFlops = opts.minParallelFlops ?? DEFAULT_MIN_PARALLEL_FLOPS;
  const minIntensity = opts.minIntensity ?? DEFAULT_MIN_INTENSITY;
  const idleMs = opts.idleMs ?? (typeof Deno === "undefined" ? Infinity : 3000);
  const minWeights = opts.minParallelWeights ?? DEFAULT_MIN_PARALLEL_WEIGHTS;
  const spinMs = opts.spinMs ?? DEFAULT_SPIN_MS;
  if (!(minWeights >= 0)) throw new RangeError(`gemm pool: minParallelWeights ${minWeights} < 0`);
  if (!(spinMs >= 0)) throw new RangeError(`gemm pool: spinMs ${spinMs} < 0`);
  if (!(minFlops >= 0)) throw new RangeError(`gemm pool: minParallelFlops ${minFlops} < 0`);
  if (!(minIntensity >= 0)) throw new RangeError(`gemm pool: minIntensity ${minIntensity} < 0`);
  if (!(idleMs > 0)) throw new RangeError(`gemm pool: idleMs must be > 0, got ${idleMs}`);
  const local = new WebAssembly.Instance(compileLocal(), { env: { memory: heap.memory } })
    .exports as unknown as GemmExports;
  const workBytes = 4 * local.gemm_work_floats();
  // The workspace, then our gemm_chunk descriptor (19 ints).
  const workAlloc = heap.alloc(workBytes + 64 + 128);
  const work = (workAlloc + 63) & ~63, desc = work + workBytes;

  let reason: string | undefined = wanted.threads < 2 ? wanted.reason : whyNoWorker() ?? undefined;

  // The shared side, made at once so that `reason` is known now.
  let shared: WebAssembly.Memory | null = null;
  let ctl: Int32Array<ArrayBufferLike> = new Int32Array(0);
  let block = false;
  if (reason === undefined) {
    const made = sharedMemory(WORK + workBytes + PAGE);
    if (typeof made === "string") reason = made;
    else {
      shared = made;
      ctl = new Int32Array(shared.buffer, CONTROL, L.words);
      block = canBlock(ctl);
    }
  }
  const operands = Math.ceil((WORK + workBytes) / 64) * 64;

  // The worker's copies of int8 weights (gemvQ8) lie from `operands` up to `top`, allocated
  // first-fit, and a job's scratch (a product's operands, a vector and its result) above `top`.
  interface Resident {
    readonly at: number;
    readonly bytes: number;
    /** Bytes of its packed values; its scales follow. */
    readonly values: number;
    /** The product's chunks, in column blocks of 16, and the first the worker may take (its copy starts there). */
    readonly bounds: readonly number[];
    readonly first: number;
  }
  const residents = new WeakMap<object, Resident | null>(); // null: no room for it
  const holes: { at: number; bytes: number }[] = [];
  let top = operands, residentBytes = 0;
  const placeResident = (bytes: number): number => {
    const i = holes.findIndex((h) => h.bytes >= bytes);
    if (i >= 0) {
      const h = holes[i];
      if (h.bytes === bytes) holes.splice(i, 1);
      else holes[i] = { at: h.at + bytes, bytes: h.bytes - bytes };
      return h.at;
    }
    if (!reserve(top + bytes)) return -1;
    top += bytes;
    return top - bytes;
  };
  const dropResident = (r: Resident): void => {
    if (disposed) return;
    residentBytes -= r.bytes;
    holes.push({ at: r.at, bytes: r.bytes });
    // Give back the holes at the top, lowest last.
    holes.sort((a, b) => a.at - b.at);
    while (holes.length > 0 && holes[holes.length - 1].at + holes[holes.length - 1].bytes === top) {
      top = holes.pop()!.at;
    }
  };
  const finalizer = typeof FinalizationRegistry === "function"
    ? new FinalizationRegistry<Resident>(dropResident)
    : null;

  let worker: Worker | null = null;
  let url: string | null = null;
  const counts = { single: 0, split: 0, shared: 0, notReady: 0, started: 0 };
  const matvecCounts = { matvecs: 0, matvecsShared: 0, matvecsTakenBack: 0 };
  /** A job whose worker part may still be running (its scratch in use), or 0. */
  let unsettled = 0;
  const settle = (): void => {
    if (unsettled === 0) return;
    const job = unsettled;
    unsettled = 0;
    waitDone(job, 0);
  };
  let disposed = false;

  /** The gemm_batched arguments of `p` read in place on the heap. */
  const argsOf = (p: GemmProduct): number[] => {
    const [rsa, csa] = strides(p.transposeA, p.m, p.k);
    const [rsb, csb] = strides(p.transposeB, p.k, p.n);
    return [
      p.batch,
      p.m,
      p.n,
      p.k,
      p.a,
      rsa,
      csa,
      p.batchA === 1 ? 0 : p.m * p.k,
      p.b,
      rsb,
      csb,
      p.batchB === 1 ? 0 : p.k * p.n,
      p.c,
      p.n,
      p.m * p.n,
      p.accumulate ? 1 : 0,
      work,
    ];
  };

  const runLocal = (p: GemmProduct): void => {
    const a = argsOf(p);
    local.gemm_batched(
      a[0],
      a[1],
      a[2],
      a[3],
      a[4],
      a[5],
      a[6],
      a[7],
      a[8],
      a[9],
      a[10],
      a[11],
      a[12],
      a[13],
      a[14],
      a[15],
      a[16],
    );
  };

  const startWorker = (): void => {
    if (shared === null) return;
    const w = opts.worker === "url"
      ? new Worker(new URL("./gemm_worker.ts", import.meta.url), { type: "module" })
      : new Worker(
        url ??= URL.createObjectURL(
          new Blob([gemmWorkerSource()], { type: "text/javascript" }),
        ),
        { type: "module" },
      );
    const mine = shared;
    Atomics.store(ctl, L.state, L.STARTING);
    Atomics.store(ctl, L.stop, 0);
    w.onmessage = (e: MessageEvent) => {
      const error = (e.data as { error?: string }).error;
      if (error !== undefined && mine === shared) noteFailure(error);
    };
    w.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      if (mine === shared && worker === w) noteFailure(`the worker failed: ${e.message}`);
    };
    const init: GemmWorkerInit = {
      module: compileShared(),
      memory: shared,
      control: CONTROL,
      idleMs,
      blockingWait: opts.blockingWait === true,
      spinMs,
      delayMs: opts.slowWorkerMs ?? 0,
      layout: L,
    };
    w.postMessage(init);
    worker = w;
    counts.started++;
  };

  /** A worker that cannot start (or broke): one thread from now on, and say why. */
  const noteFailure = (why: string): void => {
    if (reason !== undefined) return;
    reason = why;
    console.warn(`gemm pool: running on one thread: ${why}`);
    stopWorker();
  };

  const stopWorker = (): void => {
    unsettled = 0; // a stopped worker writes nothing more
    if (worker === null) return;
    Atomics.store(ctl, L.stop, 1);
    Atomics.notify(ctl, L.job);
    worker.terminate();
    worker = null;
    Atomics.store(ctl, L.state, L.GONE);
  };

  /** Forget a worker that retired while idle (it has closed itself, or is closing). */
  const retired = (): void => {
    worker?.terminate();
    worker = null;
  };

  /** Whether the worker waits for jobs; starts one when none runs. */
  const workerReady = (): boolean => {
    if (worker === null) {
      startWorker();
      return false;
    }
    const state = Atomics.load(ctl, L.state);
    if (state === L.READY) return true;
    if (state === L.GONE) {
      retired();
      startWorker();
    }
    return false;
  };

  /** Grow the shared memory to `bytes`; false when it cannot. */
  const reserve = (bytes: number): boolean => {
    const have = shared!.buffer.byteLength;
    if (bytes <= have) return true;
    const pages = Math.ceil((bytes - have) / PAGE);
    if (have / PAGE + pages > MAX_PAGES) return false;
    try {
      shared!.grow(pages);
      return true;
    } catch {
      return false;
    }
  };

  const waitDone = (job: number, flops: number): void => {
    // Watch first: a wake-up from Atomics.wait costs tens of µs.
    const until = performance.now() + spinMs;
    do {
      for (let i = 0; i < 64; i++) if (Atomics.load(ctl, L.done) === job) return;
    } while (performance.now() < until);
    // A generous deadline: only a broken worker misses it (≥ 0.1 GFLOP/s).
    const deadline = performance.now() + 10_000 + flops / 1e5;
    while (Atomics.load(ctl, L.done) !== job) {
      if (block) Atomics.wait(ctl, L.done, Atomics.load(ctl, L.done), 100);
      if (performance.now() > deadline) {
        stopWorker();
        throw new Error(`gemm pool: the worker did not finish a ${flops}-FLOP product in time`);
      }
    }
  };

  /** For `workerFirst`: wait until the worker has claimed the last of `count` chunks of job `tag`. */
  const awaitWorkerClaim = (count: number, tag: number): void => {
    const last = L.owner + count - 1, deadline = performance.now() + 10_000;
    while (Atomics.load(ctl, last) === tag) {
      if (block) Atomics.wait(ctl, last, tag, 1);
      if (performance.now() > deadline) throw new Error("gemm pool: the worker took no chunk");
    }
  };

  /**
   * Run `p` in chunks shared with the worker (see `_gemm_thread.ts`): copy
   * the operands of the worker's half of the chunks into the shared memory,
   * post the job, claim chunks from the front while the worker claims from
   * the back, then copy back the part of C the worker computed. False (and
   * nothing done) when the shared memory cannot hold the copies.
   */
  const runChunked = (p: GemmProduct, ch: Chunks, flops: number): boolean => {
    settle();
    const { m, n, k } = p;
    const count = ch.bounds.length - 1, first = ch.first;
    const at = ch.bounds[first]; // where the worker's chunks start, in units
    // The worker's sub-product, on compact copies of the operand blocks it reads.
    const batchW = ch.kind === "batch" ? p.batch - at : p.batch;
    const mW = ch.kind === "rows" ? m - at : m, nW = ch.kind === "cols" ? n - at : n;
    const entriesA = p.batchA === 1 ? 1 : batchW, entriesB = p.batchB === 1 ? 1 : batchW;
    const skipA = p.batchA === 1 || ch.kind !== "batch" ? 0 : at;
    const skipB = p.batchB === 1 || ch.kind !== "batch" ? 0 : at;
    const aW = top, bW = aW + 4 * entriesA * mW * k, cW = bW + 4 * entriesB * k * nW;
    if (!reserve(cW + 4 * batchW * mW * nW)) return false;
    const heapF = new Float32Array(heap.memory.buffer), sh = new Float32Array(shared!.buffer);
    // Stored A is [M, K] (or [K, M]): the worker's rows of op(A) are stored rows (or columns).
    const rowsA = ch.kind === "rows" ? at : 0, rowsB = ch.kind === "cols" ? at : 0;
    moveBlock(
      heapF,
      {
        at: p.a / 4 + skipA * m * k,
        size: m * k,
        ld: p.transposeA ? m : k,
        r0: p.transposeA ? 0 : rowsA,
        c0: p.transposeA ? rowsA : 0,
      },
      sh,
      { at: aW / 4, size: mW * k, ld: p.transposeA ? mW : k, r0: 0, c0: 0 },
      {
        entries: entriesA,
        rows: p.transposeA ? k : mW,
        cols: p.transposeA ? mW : k,
      },
    );
    moveBlock(
      heapF,
      {
        at: p.b / 4 + skipB * k * n,
        size: k * n,
        ld: p.transposeB ? k : n,
        r0: p.transposeB ? rowsB : 0,
        c0: p.transposeB ? 0 : rowsB,
      },
      sh,
      { at: bW / 4, size: k * nW, ld: p.transposeB ? k : nW, r0: 0, c0: 0 },
      {
        entries: entriesB,
        rows: p.transposeB ? nW : k,
        cols: p.transposeB ? k : nW,
      },
    );
    /** C's block of units [from, total) on the heap and in the worker's copy. */
    const blockC = (from: number) => {
      const rel = from - at;
      return {
        heap: {
          at: p.c / 4 + (ch.kind === "batch" ? from : 0) * m * n,
          size: m * n,
          ld: n,
          r0: ch.kind === "rows" ? from : 0,
          c0: ch.kind === "cols" ? from : 0,
        },
        copy: {
          at: cW / 4 + (ch.kind === "batch" ? rel : 0) * mW * nW,
          size: mW * nW,
          ld: nW,
          r0: ch.kind === "rows" ? rel : 0,
          c0: ch.kind === "cols" ? rel : 0,
        },
        shape: {
          entries: ch.kind === "batch" ? p.batch - from : p.batch,
          rows: ch.kind === "rows" ? m - from : m,
          cols: ch.kind === "cols" ? n - from : n,
        },
      };
    };
    if (p.accumulate) {
      const c = blockC(at);
      moveBlock(heapF, c.heap, sh, c.copy, c.shape);
    }
    // Descriptors for gemm_chunk: the worker's in the control block, ours on the heap.
    const [rsa, csa] = strides(p.transposeA, mW, k), [rsb, csb] = strides(p.transposeB, k, nW);
    const kind = ch.kind === "batch" ? 0 : ch.kind === "rows" ? 1 : 2;
    const descW = [
      kind,
      0,
      batchW,
      mW,
      nW,
      k,
      aW,
      rsa,
      csa,
      p.batchA === 1 ? 0 : mW * k,
      bW,
      rsb,
      csb,
      p.batchB === 1 ? 0 : k * nW,
      cW,
      nW,
      mW * nW,
      p.accumulate ? 1 : 0,
      WORK,
    ];
    new Int32Array(heap.memory.buffer, desc, 19).set([kind, 0, ...argsOf(p)]);
    const job = (Atomics.load(ctl, L.job) + 1) | 0;
    const tag = (job & 0x1fffffff) * 4;
    for (let i = 0; i < count; i++) ctl[L.owner + i] = tag;
    for (let i = 0; i <= count; i++) ctl[L.bounds + i] = ch.bounds[i] - at; // the worker's units
    ctl.set(descW, L.desc);
    ctl[L.count] = count;
    ctl[L.first] = first;
    Atomics.store(ctl, L.job, job);
    Atomics.notify(ctl, L.job);
    if (opts.workerFirst) awaitWorkerClaim(count, tag);
    let mine = 0;
    for (; mine < count; mine++) {
      if (Atomics.compareExchange(ctl, L.owner + mine, tag, tag + 1) !== tag) break;
      local.gemm_chunk(desc, ch.bounds[mine], ch.bounds[mine + 1]);
    }
    if (mine === count) return true; // the worker took nothing (it was slow to wake)
    waitDone(job, flops);
    if (Atomics.load(ctl, L.error) === job) {
      // A bug, not a condition: the same code just ran here. Stop using the worker.
      const why = "the worker's part of a product threw";
      reason ??= why;
      stopWorker();
      throw new Error(`gemm pool: ${why}; running on one thread from now on`);
    }
    counts.shared++;
    const c = blockC(ch.bounds[mine]);
    moveBlock(sh, c.copy, new Float32Array(heap.memory.buffer), c.heap, c.shape);
    return true;
  };

  /** The worker's copy of W's columns from its first chunk on, made on first use. */
  const residentOf = (w: Q8Weight): Resident | null => {
    const had = residents.get(w.key);
    if (had !== undefined) return had;
    const blocks = w.np / 16, count = Math.min(8, blocks);
    const bounds = Array.from({ length: count + 1 }, (_, i) => Math.round(i * blocks / count));
    const first = Math.floor(count * 3 / 8), from = bounds[first];
    const block = 64 * ((w.k + 3) >> 2); // bytes of one column block
    // Its scales, then its column sums: 16 floats of each per block.
    const values = (blocks - from) * block, scales = 4 * 16 * (blocks - from);
    const bytes = Math.ceil((values + 2 * scales) / 64) * 64;
    const at = placeResident(bytes);
    if (at < 0) {
      residents.set(w.key, null);
      return null;
    }
    const sh = new Uint8Array(shared!.buffer), h = new Uint8Array(heap.memory.buffer);
    sh.set(h.subarray(w.at + from * block, w.at + from * block + values), at);
    sh.set(h.subarray(w.scales + 64 * from, w.scales + 64 * from + scales), at + values);
    const sums = w.scales + 4 * w.np + 64 * from;
    sh.set(h.subarray(sums, sums + scales), at + values + scales);
    const r: Resident = { at, bytes, values, bounds, first };
    residents.set(w.key, r);
    residentBytes += bytes;
    finalizer?.register(w.key, r);
    return r;
  };

  const gemvQ8 = (w: Q8Weight, x: number, y: number, accumulate: boolean): boolean => {
    if (disposed) throw new Error("gemm pool: used after dispose()");
    if (reason !== undefined || w.k * w.n < minWeights || w.k <= 0 || w.np % 16 !== 0) {
      return false;
    }
    if (!workerReady()) {
      counts.notReady++;
      return false;
    }
    const xBytes = 16 + 16 * ((w.k + 3) >> 2); // the quantised x (q8_work_bytes)
    if (xBytes > workBytes) return false;
    settle();
    const r = residentOf(w);
    if (r === null) return false;
    const count = r.bounds.length - 1, first = r.first, from = r.bounds[first];
    // The quantised x, on the heap for us and copied for the worker with the worker's part of y.
    local.q8_quantize(x, w.k, work, int8DotFlag());
    const xW = top, yW = xW + xBytes, yFrom = 16 * from;
    if (!reserve(yW + 4 * (w.n - yFrom))) return false;
    const sh = new Uint8Array(shared!.buffer), h = new Uint8Array(heap.memory.buffer);
    sh.set(h.subarray(work, work + xBytes), xW);
    if (accumulate) sh.set(h.subarray(y + 4 * yFrom, y + 4 * w.n), yW);
    const acc = accumulate ? 1 : 0;
    new Int32Array(heap.memory.buffer, desc, 10)
      .set([3, 0, work, w.at, w.scales, y, w.k, w.n, acc, 0]);
    const job = (Atomics.load(ctl, L.job) + 1) | 0;
    const tag = (job & 0x1fffffff) * 4;
    for (let i = 0; i < count; i++) ctl[L.owner + i] = tag;
    for (let i = 0; i <= count; i++) ctl[L.bounds + i] = r.bounds[i];
    ctl.set([3, 0, xW, r.at, r.at + r.values, yW, w.k, w.n, acc, from], L.desc);
    ctl[L.count] = count;
    ctl[L.first] = first;
    Atomics.store(ctl, L.job, job);
    Atomics.notify(ctl, L.job);
    if (opts.workerFirst) awaitWorkerClaim(count, tag);
    matvecCounts.matvecs++;
    const t0 = performance.now();
    let mine = 0;
    for (; mine < count; mine++) {
      if (Atomics.compareExchange(ctl, L.owner + mine, tag, tag + 1) !== tag) break;
      local.gemm_chunk(desc, r.bounds[mine], r.bounds[mine + 1]);
    }
    if (mine === count) return true;
    // The worker finishes its chunks from the top down, so only chunk `mine` may still be
    // running. Wait for it about as long as two chunks of ours took; past that the worker
    // has likely lost its core (a 2-core machine's other threads preempt it): compute the
    // chunk here too, the same bits, and leave the worker's copy unread.
    const deadline = performance.now() + Math.max(2 * (performance.now() - t0) / (mine || 1), 0.02);
    let theirs = mine; // the first chunk whose result is the worker's
    while (Atomics.load(ctl, L.owner + mine) !== tag + 3) {
      if (Atomics.load(ctl, L.error) === job) {
        const why = "the worker's part of a matrix-vector product threw";
        reason ??= why;
        stopWorker();
        throw new Error(`gemm pool: ${why}; running on one thread from now on`);
      }
      if (performance.now() > deadline) {
        local.gemm_chunk(desc, r.bounds[mine], r.bounds[mine + 1]);
        theirs = mine + 1;
        unsettled = job; // the worker may still write its scratch: wait before the next job
        matvecCounts.matvecsTakenBack++;
        break;
      }
    }
    matvecCounts.matvecsShared++;
    if (theirs === count) return true;
    const c0 = 16 * r.bounds[theirs];
    new Uint8Array(heap.memory.buffer).set(
      new Uint8Array(shared!.buffer, yW + 4 * (c0 - yFrom), 4 * (w.n - c0)),
      y + 4 * c0,
    );
    return true;
  };

  const gemm = (p: GemmProduct): void => {
    if (disposed) throw new Error("gemm pool: used after dispose()");
    if (p.batch <= 0 || p.m <= 0 || p.n <= 0) return;
    const flops = 2 * p.batch * p.m * p.n * p.k;
    const ch = reason === undefined && flops >= minFlops && p.k > 0
      ? chunksOf(p, minIntensity)
      : null;
    if (ch !== null) {
      if (workerReady()) {
        if (runChunked(p, ch, flops)) {
          counts.split++;
          return;
        }
      } else counts.notReady++;
    }
    counts.single++;
    runLocal(p);
  };

  return {
    get threads() {
      return reason === undefined ? 2 : 1;
    },
    get reason() {
      return reason;
    },
    gemm,
    gemvQ8,
    stats: () => ({ ...counts, ...matvecCounts, residentBytes }),
    ready: async () => {
      for (;;) {
        if (disposed || reason !== undefined) return false;
        if (worker === null) startWorker();
        const state = Atomics.load(ctl, L.state);
        if (state === L.READY) return true;
        if (state === L.GONE) retired();
        await new Promise((r) => setTimeout(r, 1));
      }
    },
    stopWorker,
    dispose: () => {
      if (disposed) return;
      disposed = true;
      stopWorker();
      if (url !== null) URL.revokeObjectURL(url);
      heap.free(workAlloc);
    },
  };
};
