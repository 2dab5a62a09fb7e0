/**
 * The two-thread GEMM of `ops/gemm_pool.ts` on a heap of its own (no tfjs):
 * products against a float64 reference for every transpose, edge sizes,
 * batches and broadcasts, on one thread and split with the worker; how
 * products are split; the worker's life (lazy start, idle retirement, stop,
 * dispose, the blocking-wait fallback, the by-URL worker module) and the
 * one-thread fallback.
 *
 * Tolerance: `max |c − ref| / max |ref|` ≤ 1e-5 with float32 inputs: a
 * float32 dot product of length ≤ 300 errs by ~1e-6 relative to the
 * largest entries; a wrong stride, block or copy gives O(1).
 */
import assert from "node:assert/strict";
import { chunksOf, type GemmProduct } from "../ops/gemm_chunks.ts";
import {
  DEFAULT_MIN_PARALLEL_FLOPS,
  type GemmHeap,
  type GemmPool,
  startGemmPool,
} from "../ops/gemm_pool.ts";
import { gemmThreads } from "../ops/gemm_threads.ts";
import { compileLocal, type GemmExports } from "../ops/gemm_kernel.ts";
import { encodeQ8, paddedColumns, q8Layout } from "../ops/quant.ts";
import { kernelBuild } from "../ops/heap.ts";
import { INT8_DOT_PROBE_BYTES, int8DotFlag, setInt8Dot, timeInt8Dots } from "../ops/q8_dot.ts";
import { q8Product } from "./_q8.ts";
import { prng } from "./_ops_cases.ts";

const TOL = 1e-5;

/** The int8 matrix-vector counters of a pool that ran none. */
const NO_MATVECS = { matvecs: 0, matvecsShared: 0, matvecsTakenBack: 0, residentBytes: 0 };

/** A heap with a bump allocator, as tfjs-wasm's heap stands in real use. */
const makeHeap = (pages = 256): GemmHeap & { top: number; live: Set<number> } => {
  const memory = new WebAssembly.Memory({ initial: pages, maximum: 16384 });
  const heap = {
    memory,
    top: 64,
    live: new Set<number>(),
    alloc(bytes: number): number {
      const at = (heap.top + 15) & ~15;
      heap.top = at + Math.max(bytes, 4); // distinct offsets even for empty operands
      const need = Math.ceil(heap.top / 65536) - memory.buffer.byteLength / 65536;
      if (need > 0) memory.grow(need);
      heap.live.add(at);
      return at;
    },
    free(at: number): void {
      assert.ok(heap.live.delete(at), `free of ${at}, which was not allocated`);
    },
  };
  return heap;
};

interface Case {
  readonly batch: number;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly tA: boolean;
  readonly tB: boolean;
  readonly batchA?: number;
  readonly batchB?: number;
  readonly accumulate?: boolean;
}

/**
 * Run case `c` through `pool` on `heap` and return its relative error
 * against a float64 product of the same float32 inputs.
 */
const runCase = (pool: GemmPool, heap: ReturnType<typeof makeHeap>, c: Case, seed: number) => {
  const u = prng(seed);
  const batchA = c.batchA ?? c.batch, batchB = c.batchB ?? c.batch;
  const base = heap.top;
  const sizeA = batchA * c.m * c.k, sizeB = batchB * c.k * c.n, sizeC = c.batch * c.m * c.n;
  const a = heap.alloc(4 * sizeA), b = heap.alloc(4 * sizeB), out = heap.alloc(4 * sizeC);
  const f32 = () => new Float32Array(heap.memory.buffer);
  const fill = (at: number, n: number) => {
    const h = f32();
    for (let i = 0; i < n; i++) h[at / 4 + i] = u() * 2 - 1;
  };
  fill(a, sizeA);
  fill(b, sizeB);
  fill(out, sizeC); // garbage where C goes, or the addend when accumulating
  const h = f32();
  const A = h.slice(a / 4, a / 4 + sizeA), B = h.slice(b / 4, b / 4 + sizeB);
  const C0 = h.slice(out / 4, out / 4 + sizeC);
  const p: GemmProduct = {
    batch: c.batch,
    m: c.m,
    n: c.n,
    k: c.k,
    a,
    transposeA: c.tA,
    batchA,
    b,
    transposeB: c.tB,
    batchB,
    c: out,
    accumulate: c.accumulate ?? false,
  };
  pool.gemm(p);
  const got = f32().slice(out / 4, out / 4 + sizeC);
  let err = 0, scale = 0;
  for (let t = 0; t < c.batch; t++) {
    const ao = batchA === 1 ? 0 : t * c.m * c.k, bo = batchB === 1 ? 0 : t * c.k * c.n;
    for (let i = 0; i < c.m; i++) {
      for (let j = 0; j < c.n; j++) {
        let s = c.accumulate ? C0[(t * c.m + i) * c.n + j] : 0;
        for (let q = 0; q < c.k; q++) {
          const x = A[ao + (c.tA ? q * c.m + i : i * c.k + q)];
          const y = B[bo + (c.tB ? j * c.k + q : q * c.n + j)];
          s += x * y;
        }
        err = Math.max(err, Math.abs(s - got[(t * c.m + i) * c.n + j]));
        scale = Math.max(scale, Math.abs(s));
      }
    }
  }
  for (const x of [a, b, out]) heap.free(x);
  heap.top = base; // the next case reuses the space
  return err / Math.max(scale, 1e-30);
};

const TRANSPOSES = [[false, false], [false, true], [true, false], [true, true]] as const;

/** (M, N, K): tile multiples and not, 1s, a K past one 256-deep block. */
const SIZES: readonly (readonly [number, number, number])[] = [
  [1, 1, 1],
  [1, 37, 5],
  [29, 1, 7],
  [4, 8, 4],
  [7, 9, 3],
  [13, 17, 300],
  [50, 19, 33],
  [12, 64, 16],
  [5, 7, 0],
];

/** A pool that splits everything splittable, once its worker is up. */
const eagerPool = async (heap: GemmHeap, extra: Parameters<typeof startGemmPool>[1] = {}) => {
  // Every product with two tiles is shared, and (workerFirst) on both threads, however busy the machine.
  const pool = startGemmPool(heap, {
    threads: 2,
    minParallelFlops: 0,
    minIntensity: 0,
    workerFirst: true,
    ...extra,
  });
  assert.equal(pool.reason, undefined);
  assert.equal(await pool.ready(), true, "the worker did not start");
  return pool;
};

/**
 * (M, N, K) cut into chunks of rows and of columns, with partial tiles at
 * the chunk edges, K past one block; and the kernel's unpacked path for ≤ 4
 * rows (past its 1024-column blocks too).
 */
const CHUNKED_SIZES: readonly (readonly [number, number, number])[] = [
  [129, 7, 5],
  [257, 33, 300],
  [5, 513, 3],
  [130, 9, 17],
  [3, 1000, 1],
  [1, 600, 300],
  [4, 2100, 9],
];

const sweep = (
  pool: GemmPool,
  heap: ReturnType<typeof makeHeap>,
  label: string,
  sizes: readonly (readonly [number, number, number])[],
): void => {
  let seed = 1;
  for (const [m, n, k] of sizes) {
    for (const [tA, tB] of TRANSPOSES) {
      for (const accumulate of [false, true]) {
        const c = { batch: 1, m, n, k, tA, tB, accumulate };
        const err = runCase(pool, heap, c, seed++);
        assert.ok(err <= TOL, `${label} ${JSON.stringify(c)}: relative error ${err}`);
      }
    }
  }
};

Deno.test("startGemmPool: one thread matches a float64 product for all transposes and edge sizes", () => {
  const heap = makeHeap();
  const pool = startGemmPool(heap, { threads: 1 });
  assert.equal(pool.threads, 1);
  assert.match(pool.reason ?? "", /threads: 1 was asked for/);
  sweep(pool, heap, "1 thread", [...SIZES, ...CHUNKED_SIZES]);
  assert.equal(pool.stats().split, 0);
  pool.dispose();
  assert.equal(heap.live.size, 0, "the workspace was not freed");
});

Deno.test("startGemmPool: two threads match a float64 product for all transposes and edge sizes", async () => {
  const heap = makeHeap();
  const pool = await eagerPool(heap);
  sweep(pool, heap, "2 threads", [...SIZES, ...CHUNKED_SIZES]);
  const s = pool.stats();
  // Every product of CHUNKED_SIZES is cut (and some of the smaller ones).
  assert.ok(s.split >= CHUNKED_SIZES.length * 8, `only ${s.split} products were cut`);
  assert.equal(s.shared, s.split);
  assert.equal(s.notReady, 0);
  pool.dispose();
});

Deno.test("startGemmPool: batches, shared operands and every split kind", async () => {
  const heap = makeHeap();
  const pool = await eagerPool(heap);
  const cases: Case[] = [
    // Attention-like: split by batch entries.
    { batch: 8, m: 35, n: 36, k: 64, tA: false, tB: true },
    { batch: 9, m: 7, n: 5, k: 9, tA: true, tB: false },
    { batch: 4, m: 13, n: 11, k: 3, tA: true, tB: true, accumulate: true },
    // A small batch: cut by rows or columns of every entry.
    { batch: 3, m: 140, n: 9, k: 17, tA: false, tB: false },
    { batch: 2, m: 5, n: 700, k: 17, tA: true, tB: true, accumulate: true },
    // One operand shared across the batch.
    { batch: 4, m: 9, n: 10, k: 11, tA: true, tB: false, batchA: 1 },
    { batch: 5, m: 19, n: 10, k: 11, tA: false, tB: true, batchB: 1 },
    { batch: 3, m: 9, n: 300, k: 11, tA: true, tB: true, batchB: 1, accumulate: true },
    { batch: 2, m: 300, n: 9, k: 11, tA: false, tB: true, batchA: 1 },
  ];
  cases.forEach((c, i) => {
    const err = runCase(pool, heap, c, 100 + i);
    assert.ok(err <= TOL, `${JSON.stringify(c)}: relative error ${err}`);
  });
  assert.equal(pool.stats().split, cases.length);
  assert.equal(pool.stats().shared, cases.length);
  pool.dispose();
});

Deno.test("startGemmPool: an empty inner dimension gives zeros, or leaves C when accumulating", async () => {
  const heap = makeHeap();
  const pool = await eagerPool(heap);
  const c = heap.alloc(4 * 2 * 3 * 4);
  const view = () => new Float32Array(heap.memory.buffer, c, 24);
  view().fill(7);
  const p = {
    batch: 2,
    m: 3,
    n: 4,
    k: 0,
    a: c,
    transposeA: false,
    batchA: 2,
    b: c,
    transposeB: false,
    batchB: 2,
    c,
  };
  pool.gemm({ ...p, accumulate: true });
  assert.ok(view().every((x) => x === 7));
  pool.gemm(p);
  assert.ok(view().every((x) => x === 0));
  pool.gemm({ ...p, m: 0 }); // an empty output: nothing to do, nothing touched
  pool.dispose();
});

Deno.test("chunksOf: the reference model's products are cut for two threads", () => {
  const p = (batch: number, m: number, n: number, k: number) => ({
    batch,
    m,
    n,
    k,
    a: 0,
    transposeA: false,
    batchA: batch,
    b: 0,
    transposeB: false,
    batchB: batch,
    c: 0,
  });
  // Logits [700, 256]·[256, 10000] and dW: columns; dX [700, 10000]·Wᵀ: rows. Halves of
  // halves, at tile boundaries (8 columns, 5 rows), smallest in the middle.
  const cutAs = (
    product: ReturnType<typeof p>,
    kind: string,
    bounds: number[],
    first: number,
    minIntensity?: number,
  ) => assert.deepEqual(chunksOf(product, minIntensity), { kind, bounds, first });
  const logits = [0, 2504, 3752, 4376, 5000, 5624, 6248, 7496, 10000];
  cutAs(p(1, 700, 10000, 256), "cols", logits, 4);
  cutAs(p(1, 256, 10000, 700), "cols", logits, 4);
  cutAs(p(1, 700, 256, 10000), "rows", [0, 175, 265, 310, 350, 390, 435, 525, 700], 4);
  // The GRU [20, 256]·[256, 768]: no column chunk below 64.
  cutAs(p(1, 20, 768, 256), "cols", [0, 192, 288, 384, 480, 576, 768], 3);
  // Attention, B·H = 80, by heads; a batch of 5.
  cutAs(p(80, 35, 36, 64), "batch", [0, 20, 30, 35, 40, 45, 50, 60, 80], 4);
  cutAs(p(5, 35, 36, 64), "batch", [0, 1, 2, 3, 5], 2);
  // No row chunk below 32 rows (each packs B anew); odd totals leave the worker the larger half.
  cutAs(p(1, 129, 7, 5), "rows", [0, 60, 94, 129], 1, 0);
  // One register tile: nothing to share.
  assert.equal(chunksOf(p(1, 5, 8, 1000), 0), null);
  assert.equal(chunksOf(p(1, 1, 1, 5), 0), null);
  // A few rows (stream logits [1, 256]·[256, 10000]): reading B is the work; copying it is not worth it.
  assert.equal(chunksOf(p(1, 1, 10000, 256)), null);
  assert.equal(chunksOf(p(1, 4, 10000, 256)), null);
  assert.notEqual(chunksOf(p(1, 16, 10000, 256)), null);
});

Deno.test("startGemmPool: small products stay on the calling thread", async () => {
  const heap = makeHeap();
  // idleMs: under emulation the product can outlast the default 3 s and retire the worker.
  const pool = startGemmPool(heap, { threads: 2, idleMs: 60_000 });
  assert.equal(await pool.ready(), true);
  // 2·20·30·40 = 48 kFLOP, far below the default threshold.
  assert.ok(2 * 20 * 30 * 40 < DEFAULT_MIN_PARALLEL_FLOPS);
  runCase(pool, heap, { batch: 1, m: 20, n: 30, k: 40, tA: false, tB: false }, 1);
  assert.deepEqual(pool.stats(), {
    single: 1,
    split: 0,
    shared: 0,
    notReady: 0,
    started: 1,
    ...NO_MATVECS,
  });
  pool.dispose();
});

Deno.test("startGemmPool: the worker starts lazily, retires when idle and comes back", async () => {
  const heap = makeHeap();
  const pool = startGemmPool(heap, {
    threads: 2,
    minParallelFlops: 0,
    minIntensity: 0,
    idleMs: 30,
  });
  assert.equal(pool.stats().started, 0, "a worker started before any product needed it");
  const c: Case = { batch: 4, m: 24, n: 24, k: 8, tA: false, tB: false };
  // The first splittable product starts the worker and runs alone meanwhile.
  assert.ok(runCase(pool, heap, c, 1) <= TOL);
  assert.deepEqual(pool.stats(), {
    single: 1,
    split: 0,
    shared: 0,
    notReady: 1,
    started: 1,
    ...NO_MATVECS,
  });
  assert.equal(await pool.ready(), true);
  assert.ok(runCase(pool, heap, c, 2) <= TOL);
  assert.equal(pool.stats().split, 1);
  // Idle for longer than idleMs: the worker retires; the next product starts another.
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(runCase(pool, heap, c, 3) <= TOL);
  assert.equal(pool.stats().started, 2);
  assert.equal(await pool.ready(), true);
  assert.ok(runCase(pool, heap, c, 4) <= TOL);
  assert.equal(pool.stats().split, 2);
  pool.dispose();
  assert.throws(() => runCase(pool, heap, c, 5), /used after dispose/);
});

Deno.test("startGemmPool: stopWorker, then a new worker on demand; dispose twice is fine", async () => {
  const heap = makeHeap();
  const pool = await eagerPool(heap);
  pool.stopWorker();
  pool.stopWorker();
  assert.equal(await pool.ready(), true);
  assert.equal(pool.stats().started, 2);
  const c: Case = { batch: 4, m: 12, n: 16, k: 8, tA: true, tB: false };
  assert.ok(runCase(pool, heap, c, 1) <= TOL);
  assert.equal(pool.stats().split, 1);
  pool.dispose();
  pool.dispose();
});

Deno.test("startGemmPool: a worker that blocks in Atomics.wait (engines without waitAsync)", async () => {
  const heap = makeHeap();
  const pool = await eagerPool(heap, { blockingWait: true, idleMs: 20 });
  const c: Case = { batch: 4, m: 30, n: 20, k: 10, tA: false, tB: true };
  assert.ok(runCase(pool, heap, c, 1) <= TOL);
  await new Promise((r) => setTimeout(r, 200)); // it retires from a blocking wait too
  assert.equal(await pool.ready(), true);
  assert.equal(pool.stats().started, 2);
  assert.ok(runCase(pool, heap, c, 2) <= TOL);
  assert.equal(pool.stats().split, 2);
  pool.dispose(); // wakes the blocked worker with `stop` before terminating it
});

Deno.test("startGemmPool: the worker module loaded by URL (ops/gemm_worker.ts)", async () => {
  const heap = makeHeap();
  const pool = await eagerPool(heap, { worker: "url" });
  const c: Case = { batch: 1, m: 300, n: 40, k: 50, tA: true, tB: true };
  assert.ok(runCase(pool, heap, c, 1) <= TOL);
  assert.equal(pool.stats().split, 1);
  pool.dispose();
});

Deno.test("startGemmPool: products stay right when the heap grows between them", async () => {
  const heap = makeHeap(64);
  const pool = await eagerPool(heap);
  const c: Case = { batch: 1, m: 300, n: 200, k: 100, tA: true, tB: false };
  const before = heap.memory.buffer.byteLength;
  heap.free(heap.alloc(8 << 20)); // the operands land past the old end: the heap grew
  assert.ok(heap.memory.buffer.byteLength > before);
  const u = runCase(pool, heap, c, 1);
  assert.ok(u <= TOL, `error ${u}`);
  pool.dispose();
});

Deno.test("startGemmPool: its worker survives a minifying, keep-names bundle (deno bundle)", async () => {
  // The blob worker is the source text of a function, so what a bundler makes of
  // that function is what runs: bundle a pool with esbuild's most intrusive
  // settings, run the bundle, and check that the worker took its share.
  const dir = await Deno.makeTempDir({ prefix: "crt-gemm-bundle-" });
  try {
    const pool = new URL("../ops/gemm_pool.ts", import.meta.url).href;
    await Deno.writeTextFile(
      `${dir}/entry.ts`,
      `import { startGemmPool } from "${pool}";
      const memory = new WebAssembly.Memory({ initial: 64 });
      let top = 64;
      const alloc = (n: number) => { const at = (top + 63) & ~63; top = at + n; return at; };
      const p = startGemmPool({ memory, alloc, free: () => {} },
        { threads: 2, minParallelFlops: 0, minIntensity: 0, workerFirst: true });
      const ready = await p.ready();
      const [a, b, c] = [alloc(4 * 256), alloc(4 * 256), alloc(4 * 256)];
      new Float32Array(memory.buffer, a, 256).fill(1);
      new Float32Array(memory.buffer, b, 256).fill(2);
      p.gemm({ batch: 4, m: 8, n: 8, k: 8, a, transposeA: false, batchA: 4, b,
        transposeB: true, batchB: 4, c });
      const sum = new Float32Array(memory.buffer, c, 256).reduce((s, x) => s + x, 0);
      console.log(JSON.stringify({ ready, reason: p.reason ?? null, sum, stats: p.stats() }));
      p.dispose();`,
    );
    const deno = (args: string[]) =>
      new Deno.Command(Deno.execPath(), { args, cwd: dir, stdout: "piped", stderr: "piped" })
        .output();
    const built = await deno([
      "bundle",
      "--minify",
      "--keep-names",
      "-o",
      `${dir}/out.js`,
      `${dir}/entry.ts`,
    ]);
    assert.ok(built.success, new TextDecoder().decode(built.stderr));
    const ran = await deno(["run", "--no-config", `${dir}/out.js`]);
    const err = new TextDecoder().decode(ran.stderr);
    assert.ok(ran.success, err);
    const seen = JSON.parse(new TextDecoder().decode(ran.stdout));
    assert.deepEqual(seen, {
      ready: true,
      reason: null,
      sum: 256 * 16,
      stats: { single: 0, split: 1, shared: 1, notReady: 0, started: 1, ...NO_MATVECS },
    }, err);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("startGemmPool: without SharedArrayBuffer or Worker it runs on one thread and says why", () => {
  const g = globalThis as Record<string, unknown>;
  const cases = [
    ["SharedArrayBuffer", /SharedArrayBuffer is unavailable/],
    ["Worker", /no Worker/],
  ] as const;
  for (const [name, why] of cases) {
    const saved = g[name];
    delete g[name];
    try {
      assert.match(gemmThreads().reason ?? "", why);
      const heap = makeHeap();
      const pool = startGemmPool(heap, { minParallelFlops: 0 });
      assert.equal(pool.threads, 1);
      assert.match(pool.reason ?? "", why);
      const c: Case = { batch: 1, m: 30, n: 40, k: 50, tA: true, tB: false };
      assert.ok(runCase(pool, heap, c, 1) <= TOL);
      assert.deepEqual(pool.stats(), {
        single: 1,
        split: 0,
        shared: 0,
        notReady: 0,
        started: 0,
        ...NO_MATVECS,
      });
      pool.dispose();
    } finally {
      g[name] = saved;
    }
  }
  assert.deepEqual(gemmThreads({ threads: 2 }), { threads: 2 });
  assert.throws(() => gemmThreads({ threads: 0 }), /threads must be a positive integer, got 0/);
});

// --- int8 matrix-vector products (gemvQ8) ------------------------------------------------

/** A packed int8 weight [k, n] with column scales (ops/quant.ts's layout), and x [k], on `heap`. */
const q8Case = (heap: GemmHeap, k: number, n: number, seed: number) => {
  const rand = prng(seed), np = paddedColumns(n);
  const q = Int8Array.from({ length: k * n }, () => Math.round(254 * rand()) - 127);
  const scales = Float32Array.from({ length: n }, () => 0.001 + 0.01 * rand());
  const words = encodeQ8({ values: q, scales }, k, n, 1);
  const x = Float32Array.from({ length: k }, () => 2 * rand() - 1);
  const at = heap.alloc(4 * words.length), xa = heap.alloc(4 * k);
  new Int32Array(heap.memory.buffer).set(words, at / 4);
  new Float32Array(heap.memory.buffer).set(x, xa / 4);
  const sc = at + q8Layout(k, n, 1).valueBytes;
  return { w: { key: {}, at, scales: sc, k, n, np }, x: xa, q, scales, xs: x };
};

/** y = x·W on one thread with the calling thread's kernel (what the fused kernels compute). */
const gemvAlone = (
  heap: GemmHeap,
  c: ReturnType<typeof q8Case>,
  y: number,
  acc: boolean,
  dot: 0 | 1 = int8DotFlag(),
) => {
  const k = new WebAssembly.Instance(compileLocal(), { env: { memory: heap.memory } })
    .exports as unknown as GemmExports;
  const work = (heap.alloc(16 * c.w.k + 32) + 15) & ~15;
  k.gemv_q8(c.x, c.w.at, c.w.scales, c.w.k, c.w.n, c.w.np, y, acc ? 1 : 0, work, dot);
};

Deno.test("gemvQ8: shared with the worker, it gives the one-thread result to the bit", async () => {
  const heap = makeHeap();
  // idleMs: under emulation, making the cases can outlast the default 3 s and retire the worker.
  const pool = startGemmPool(heap, {
    threads: 2,
    minParallelWeights: 0,
    workerFirst: true,
    idleMs: 60_000,
  });
  assert.equal(await pool.ready(), true);
  // Shapes of the reference model's decode step, and edges: n not a multiple of 16, one block,
  // fewer blocks than chunks, odd pairs of rows.
  for (
    const [k, n, acc] of [[256, 1000, false], [64, 20, true], [6, 16, false], [
      130,
      196,
      true,
    ]] as const
  ) {
    const c = q8Case(heap, k, n, k + n);
    const y1 = heap.alloc(4 * n), y2 = heap.alloc(4 * n);
    const init = Float32Array.from({ length: n }, (_, j) => j - 3);
    new Float32Array(heap.memory.buffer).set(init, y1 / 4);
    new Float32Array(heap.memory.buffer).set(init, y2 / 4);
    assert.equal(pool.gemvQ8(c.w, c.x, y1, acc), true, `[${k}, ${n}] was not shared`);
    gemvAlone(heap, c, y2, acc);
    const a = new Float32Array(heap.memory.buffer, y1, n).slice();
    assert.deepEqual(a, new Float32Array(heap.memory.buffer, y2, n).slice(), `[${k}, ${n}]`);
    // And it is x·W with x quantised as the kernel's build does it (tests/_q8.ts).
    const ref = Array.from(
      q8Product(c.xs, c.q, c.scales, n, kernelBuild()),
      (v, j) => v + (acc ? init[j] : 0),
    );
    const big = Math.max(...ref.map(Math.abs));
    const err = Math.max(...ref.map((r, j) => Math.abs(r - a[j])));
    assert.ok(err <= 1e-5 * big, `[${k}, ${n}]: error ${err} against ${big}`);
  }
  const s = pool.stats();
  assert.equal(s.matvecs, 4);
  assert.equal(s.matvecsShared, 4, "the worker took no columns");
  pool.dispose();
});

Deno.test("gemv_q8: the two dot sequences give the same bits, alone and shared", async () => {
  const heap = makeHeap();
  const pool = startGemmPool(heap, { threads: 2, minParallelWeights: 0, idleMs: 60_000 });
  assert.equal(await pool.ready(), true);
  const was = int8DotFlag();
  try {
    // An odd number of quads (the unrolled loop's tail), a K that is no multiple of 4, and a
    // K past one int32 chunk of the SIMD128 build.
    for (const [k, n] of [[256, 48], [20, 32], [9, 16], [1030, 64]] as const) {
      const c = q8Case(heap, k, n, 3 * k + n);
      const ys = [0, 1].map(() => heap.alloc(4 * n));
      gemvAlone(heap, c, ys[0], false, 0);
      gemvAlone(heap, c, ys[1], false, 1);
      const out = ys.map((y) => new Float32Array(heap.memory.buffer, y, n).slice());
      assert.deepEqual(out[1], out[0], `[${k}, ${n}]: dotadd against dot16`);
      // The worker reads the sequence from the quantised x's header.
      for (const d of ["dot16", "dotadd"] as const) {
        setInt8Dot(d);
        const y = heap.alloc(4 * n);
        assert.equal(pool.gemvQ8(c.w, c.x, y, false), true);
        assert.deepEqual(new Float32Array(heap.memory.buffer, y, n).slice(), out[0], `${d} shared`);
      }
    }
  } finally {
    setInt8Dot(was === 1 ? "dotadd" : "dot16");
    pool.dispose();
  }
});

Deno.test("timeInt8Dots: times both sequences and keeps dot16 unless dotadd is clearly faster", () => {
  const heap = makeHeap();
  const k = new WebAssembly.Instance(compileLocal(), { env: { memory: heap.memory } })
    .exports as unknown as GemmExports;
  const base = (heap.alloc(INT8_DOT_PROBE_BYTES + 16) + 15) & ~15;
  const t = timeInt8Dots(k, heap.memory, base, 2);
  assert.ok(t.dot16 > 0 && t.dotadd > 0, JSON.stringify(t));
  assert.equal(t.faster, t.dotadd < 0.95 * t.dot16 ? "dotadd" : "dot16");
});

Deno.test("gemvQ8: a worker late with its chunk is overtaken, and the next product waits for it", async () => {
  const heap = makeHeap();
  // The worker claims a chunk first, then sits on it for 300 ms, as a preempted thread would
  // (long enough that even under emulation the calling thread's own chunks take far less).
  const pool = startGemmPool(heap, {
    threads: 2,
    minParallelWeights: 0,
    workerFirst: true,
    slowWorkerMs: 300,
    idleMs: 60_000,
  });
  assert.equal(await pool.ready(), true);
  const c = q8Case(heap, 256, 1000, 7);
  const y1 = heap.alloc(4 * 1000), y2 = heap.alloc(4 * 1000);
  const t0 = performance.now();
  assert.equal(pool.gemvQ8(c.w, c.x, y1, false), true);
  const took = performance.now() - t0;
  assert.ok(took < 200, `the calling thread waited ${took.toFixed(1)} ms for the late chunk`);
  assert.equal(pool.stats().matvecsTakenBack, 1);
  gemvAlone(heap, c, y2, false);
  assert.deepEqual(
    new Float32Array(heap.memory.buffer, y1, 1000).slice(),
    new Float32Array(heap.memory.buffer, y2, 1000).slice(),
  );
  // A GEMM right after, while the worker may still be on its chunk: its scratch must not clash.
  runCase(pool, heap, { batch: 1, m: 64, n: 64, k: 256, tA: false, tB: false }, 2);
  pool.dispose();
});

Deno.test("gemvQ8: the worker's copy of a weight is made once per key; small ones stay here", async () => {
  const heap = makeHeap();
  const pool = startGemmPool(heap, { threads: 2, minParallelWeights: 4096, idleMs: 60_000 });
  assert.equal(await pool.ready(), true);
  const c = q8Case(heap, 64, 128, 1), y = heap.alloc(4 * 128);
  for (let i = 0; i < 5; i++) assert.equal(pool.gemvQ8(c.w, c.x, y, false), true);
  const once = pool.stats().residentBytes;
  // The worker holds the columns of its chunks (from the third of eight): 5/8 of the weight.
  assert.ok(once >= (5 / 8) * (64 * 128 + 4 * 128) && once < 64 * 128 + 4 * 128 + 64, `${once}`);
  assert.equal(pool.gemvQ8({ ...c.w, key: {} }, c.x, y, false), true);
  assert.equal(pool.stats().residentBytes, 2 * once, "a new key gets a copy of its own");
  const small = q8Case(heap, 32, 64, 2); // 2,048 weights < 4,096
  assert.equal(pool.gemvQ8(small.w, small.x, y, false), false);
  assert.equal(pool.stats().matvecs, 6);
  pool.dispose();
  assert.throws(() => pool.gemvQ8(c.w, c.x, y, false), /after dispose/);
});

Deno.test("gemvQ8: on one thread it leaves the product to the caller", () => {
  const heap = makeHeap();
  const pool = startGemmPool(heap, { threads: 1, minParallelWeights: 0 });
  const c = q8Case(heap, 64, 128, 3);
  assert.equal(pool.gemvQ8(c.w, c.x, heap.alloc(4 * 128), false), false);
  assert.deepEqual(pool.stats(), {
    single: 0,
    split: 0,
    shared: 0,
    notReady: 0,
    started: 0,
    ...NO_MATVECS,
  });
  pool.dispose();
});
