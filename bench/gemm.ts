/**
 * GFLOP/s of every `BatchMatMul` kernel on the reference model's products
 * (B = 20, S = 35, D = 256, V = 10,000, 4 heads; the memory token makes 36
 * rows per stream in the blocks), side by side in one run: the portable
 * tier's own GEMM on two threads and on one, XNNPACK through tfjs (the
 * portable tier's fallback, explicit transposes included), the stock tfjs
 * kernel, and native BLAS on one and two threads when a CBLAS loads.
 *
 * The kernels take turns product by product, round after round, so that a
 * noisy neighbour slows them alike; the table gives medians over rounds and
 * each kernel's ratio to XNNPACK. The machine is shared: compare ratios,
 * not absolutes.
 *
 * Run: `deno run -A bench/gemm.ts [--rounds 7] [--kernels gemm2,gemm1,xnnpack,native2]
 * [--json]` (kernels: gemm2 gemm1 xnnpack stock native1 native2; stock is slow on the
 * transposed products and left out by default).
 *
 * `--train S` instead times whole training steps of the reference CRT at
 * segment length S (B = 20, K = 2 segments, `bench/peers/ours.ts`'s
 * runner), the kernels taking turns every `--steps` steps (default 1; one
 * warm-up step each first), and reports median tokens/s per kernel: the
 * portable tier before (`xnnpack`) and after (`gemm2`). This machine's
 * speed drifts by 2× within minutes, so only tight turns compare fairly.
 * `--infer S` does the same for inference (B = 20, one segment, all logits).
 *
 * `--scan` measures where sharing a product with the worker starts to pay
 * (the pool's `minParallelFlops`): attention-like batches and small
 * products, on one thread and cut in chunks for two, straight on a pool
 * (`ops/gemm_pool.ts`, no tfjs), best and median of 200 calls each.
 *
 * `--matvec` times the int8 matrix-vector products of a streamed token of
 * the reference CRT (`GemmPool.gemvQ8`): on the calling thread alone with
 * each of the two dot sequences (ops/q8_dot.ts; the start-up probe's
 * timing and choice are printed first) and shared with the worker by
 * column blocks, taking turns call by call, medians of 400 calls, and
 * checks that all three give the same bits.
 * `--matvec --stream S [--tier native|portable]` does the same for whole
 * segments of a streamed int8 model file (the reference CRT at segment
 * length S, batch 1, one token per call): the matmul tier installed with
 * `minParallelWeights` `Infinity` (every product on one thread, the
 * default), 1,000,000 (the readout shared) and 131,072 (every product of
 * the decode step but the 256 × 256 ones shared), taking turns (`--rounds`
 * turns each: ten untimed segments after each switch, then four timed),
 * median ms per token of each (that they give the same logits is
 * `tests/fusion_test.ts`'s).
 *
 * @module
 */
import { parseArgs } from "node:util";
import * as tf from "@tensorflow/tfjs-core";
import { ensureBackend } from "../ops/backend.ts";
import { loadBlas } from "../ops/blas.ts";
import {
  installMatmul,
  matmulStats,
  startMatmulWorkers,
  stopMatmulWorkers,
  uninstallMatmul,
} from "../ops/matmul.ts";
import { chunksOf } from "../ops/gemm_chunks.ts";
import { startGemmPool } from "../ops/gemm_pool.ts";
import { compileLocal, type GemmExports } from "../ops/gemm_kernel.ts";
import { kernelBuild } from "../ops/heap.ts";
import { INT8_DOT_PROBE_BYTES, int8DotFlag, setInt8Dot, timeInt8Dots } from "../ops/q8_dot.ts";
import { compileReference, makeFileStreamRunner, makeRunner, type Runner } from "./peers/ours.ts";
import { CpuMeter, cpuModel, describeLoad } from "./_load.ts";

/** One product: name, shapes of a and b, transposes. */
type Case = readonly [string, number[], number[], boolean, boolean];

/** The reference model's products, forward and backward (tf.matMul's gradients). */
export const CASES: readonly Case[] = [
  ["logits", [700, 256], [256, 10000], false, false],
  ["logits dX", [700, 10000], [256, 10000], false, true],
  ["logits dW", [700, 256], [700, 10000], true, false],
  ["FFN up", [720, 256], [256, 1024], false, false],
  ["FFN up dX", [720, 1024], [256, 1024], false, true],
  ["FFN up dW", [720, 256], [720, 1024], true, false],
  ["proj", [720, 256], [256, 256], false, false],
  ["proj dW", [720, 256], [720, 256], true, false],
  ["QKᵀ", [80, 36, 64], [80, 36, 64], false, true],
  ["PV", [80, 36, 36], [80, 36, 64], false, false],
  ["dV = Pᵀ dO", [80, 36, 36], [80, 36, 64], true, false],
  ["dQ = dS K", [80, 36, 36], [80, 36, 64], false, false],
  ["GRU", [20, 256], [256, 768], false, false],
  ["GRU dW", [20, 256], [20, 768], true, false],
  ["stream logits", [1, 256], [256, 10000], false, false],
];

const KERNELS = ["gemm2", "gemm1", "xnnpack", "stock", "native1", "native2"] as const;
type Kernel = typeof KERNELS[number];

const use = (kernel: Kernel): void => {
  uninstallMatmul(); // so that every install applies its own options
  if (kernel === "stock") return;
  const r = kernel.startsWith("native")
    ? installMatmul("native", { threads: kernel === "native1" ? 1 : 2 })
    : installMatmul("portable", {
      threads: kernel === "gemm1" ? 1 : 2,
      portableKernel: kernel === "xnnpack" ? "xnnpack" : "gemm",
    });
  if (r._tag === "Left") throw new Error(`${kernel}: ${r.left.reason}`);
};

const flopsOf = ([, sa, sb, ta, tb]: Case): number => {
  const batch = sa.length === 3 ? sa[0] : 1;
  const m = ta ? sa[sa.length - 1] : sa[sa.length - 2];
  const k = ta ? sa[sa.length - 2] : sa[sa.length - 1];
  const n = tb ? sb[sb.length - 2] : sb[sb.length - 1];
  return 2 * batch * m * n * k;
};

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Median tokens/s of whole model steps per kernel, the kernels taking turns. */
const stepBench = async (
  phase: "train" | "infer",
  segmentLen: number,
  kernels: readonly Kernel[],
  rounds: number,
  steps: number,
): Promise<void> => {
  const program = compileReference(segmentLen);
  const runners = new Map<Kernel, Runner>();
  const seconds = new Map<Kernel, number[]>();
  for (let round = 0; round < rounds; round++) {
    for (const kernel of kernels) {
      use(kernel);
      if (kernel.startsWith("gemm")) await startMatmulWorkers();
      const r = runners.get(kernel) ??
        makeRunner(phase, program, { batchSize: 20, bpttSegments: 2, seed: 0 });
      runners.set(kernel, r);
      if (round === 0) r.step(); // warm-up: wasm tier-up, the model's first-step costs
      const meter = new CpuMeter();
      const ts = Array.from({ length: steps }, () => r.step());
      const load = describeLoad(meter.read());
      seconds.set(kernel, [...(seconds.get(kernel) ?? []), ...ts]);
      const s = matmulStats();
      const products = s
        ? `; products: ${s.split} cut in chunks (${s.shared} with the worker), ${s.single} alone`
        : "";
      console.error(
        `gemm: round ${round + 1}/${rounds} ${kernel}: ${
          ts.map((t) => Math.round(r.tokensPerStep / t)).join(" ")
        } tok/s (machine: ${load}${products})`,
      );
    }
  }
  stopMatmulWorkers();
  const tokens = runners.values().next().value!.tokensPerStep;
  for (const r of runners.values()) r.dispose();
  const base = kernels.includes("xnnpack") ? median(seconds.get("xnnpack")!) : null;
  console.log(
    `${phase} S=${segmentLen}: median tokens/s over ${rounds}×${steps} steps ` +
      "(the load of each round is on stderr)",
  );
  for (const k of kernels) {
    const med = median(seconds.get(k)!);
    const ratio = base === null ? "" : `  ×${(base / med).toFixed(2)} vs xnnpack`;
    console.log(`  ${k.padEnd(8)} ${(tokens / med).toFixed(0).padStart(6)}${ratio}`);
  }
};

/** A heap of our own with a bump allocator (`top` may be reset), for products without tfjs. */
const bumpHeap = () => {
  const memory = new WebAssembly.Memory({ initial: 256 });
  const heap = {
    memory,
    top: 64,
    alloc: (n: number) => {
      const at = (heap.top + 63) & ~63;
      heap.top = at + n;
      if (heap.top > memory.buffer.byteLength) {
        memory.grow(Math.ceil((heap.top - memory.buffer.byteLength) / 65536));
      }
      return at;
    },
    free: () => {},
  };
  return heap;
};

/** One thread against two on products around the sharing threshold. */
const scan = async (): Promise<void> => {
  const heap = bumpHeap(), memory = heap.memory;
  const one = startGemmPool(heap, { threads: 1 });
  const two = startGemmPool(heap, { threads: 2, minParallelFlops: 0 });
  if (!(await two.ready())) throw new Error(`no worker: ${two.reason}`);
  const base = heap.top;
  const cases: [number, number, number, number][] = [
    [4, 36, 36, 64],
    [8, 36, 36, 64],
    [16, 36, 36, 64],
    [80, 36, 36, 64],
    [1, 20, 768, 256],
    [1, 256, 256, 256],
    [1, 720, 256, 256],
  ];
  const meter = new CpuMeter();
  console.log(
    "product (batch×[M,K]·[K,N]ᵀ)        MFLOP  chunks      1 thread µs   2 threads µs   ×",
  );
  for (const [batch, m, n, k] of cases) {
    heap.top = base;
    const a = heap.alloc(4 * batch * m * k), b = heap.alloc(4 * batch * k * n);
    const c = heap.alloc(4 * batch * m * n);
    new Float32Array(memory.buffer).fill(0.5, a / 4, c / 4);
    const p = {
      batch,
      m,
      n,
      k,
      a,
      transposeA: false,
      batchA: batch,
      b,
      transposeB: true,
      batchB: batch,
      c,
    };
    const t: [number[], number[]] = [[], []];
    for (let r = 0; r < 200; r++) {
      [one, two].forEach((pool, i) => {
        const t0 = performance.now();
        pool.gemm(p);
        t[i].push(1000 * (performance.now() - t0));
      });
    }
    const ch = chunksOf(p);
    const label = `${batch}×[${m},${k}]·[${k},${n}]ᵀ`;
    const [m1, m2] = [median(t[0]), median(t[1])];
    console.log(
      `${label.padEnd(34)} ${(2 * batch * m * n * k / 1e6).toFixed(2).padStart(6)}  ${
        (ch ? `${ch.bounds.length - 1} ${ch.kind}` : "none").padEnd(10)
      } ${m1.toFixed(0).padStart(8)} (best ${Math.min(...t[0]).toFixed(0)}) ${
        m2.toFixed(0).padStart(8)
      } (best ${Math.min(...t[1]).toFixed(0)})  ${(m1 / m2).toFixed(2)}`,
    );
  }
  console.log(`rest of the machine meanwhile: ${describeLoad(meter.read())} cores`);
  one.dispose();
  two.dispose();
};

/** The int8 products of a streamed token, [K, N]: q, keys and values, output, FFN, readout. */
const MATVECS: readonly [string, number, number][] = [
  ["q / output", 256, 256],
  ["keys and values", 256, 512],
  ["FFN up", 256, 1024],
  ["FFN down", 1024, 256],
  ["readout", 256, 10000],
];

const matvecScan = async (): Promise<void> => {
  const heap = bumpHeap(), memory = heap.memory;
  const pool = startGemmPool(heap, { threads: 2, minParallelWeights: 0 });
  if (!(await pool.ready())) throw new Error(`no worker: ${pool.reason}`);
  const local = new WebAssembly.Instance(compileLocal(), { env: { memory } })
    .exports as unknown as GemmExports;
  const meter = new CpuMeter();
  // The start-up choice of the dot sequence, as startBackend makes it; both are timed below.
  const probe = timeInt8Dots(local, memory, (heap.alloc(INT8_DOT_PROBE_BYTES + 16) + 15) & ~15);
  setInt8Dot(probe.faster);
  console.log(
    `${cpuModel()}, ${kernelBuild()} build: int8 matrix-vector products, µs (median of 400 calls); ` +
      `start-up probe: dot16 ${probe.dot16.toFixed(2)}, dotadd ${probe.dotadd.toFixed(2)} µs → ` +
      `${probe.faster}, which 2 threads run`,
  );
  console.log(
    "product            [K, N]         1t dot16   1t dotadd   2 threads     ×   same bits",
  );
  for (const [name, k, n] of MATVECS) {
    // The packed layout of ops/quant.ts: values in quads of rows, scales, column sums.
    const np = Math.ceil(n / 16) * 16, kq = (k + 3) >> 2;
    const w = heap.alloc(np * kq * 4), sc = heap.alloc(8 * np), x = heap.alloc(4 * k);
    const y1 = heap.alloc(4 * n), y2 = heap.alloc(4 * n);
    const pairs = heap.alloc(16 + 16 * kq);
    const q = new Int8Array(memory.buffer, w, np * kq * 4);
    for (let i = 0; i < q.length; i++) q[i] = (i * 7919) % 255 - 127;
    const f = new Float32Array(memory.buffer);
    f.fill(0.01, sc / 4, sc / 4 + np);
    f.fill(100, sc / 4 + np, sc / 4 + 2 * np);
    for (let i = 0; i < k; i++) f[x / 4 + i] = Math.sin(i);
    const weight = { key: {}, at: w, scales: sc, k, n, np };
    const y3 = heap.alloc(4 * n);
    const alone = (dot: number, y: number) => () =>
      local.gemv_q8(x, w, sc, k, n, np, y, 0, pairs, dot);
    const shared = () => {
      if (!pool.gemvQ8(weight, x, y2, false)) throw new Error(`${name}: not shared`);
    };
    const t: [number[], number[], number[]] = [[], [], []];
    for (let r = 0; r < 400; r++) {
      [alone(0, y1), alone(1, y3), shared].forEach((run, i) => {
        const t0 = performance.now();
        run();
        t[i].push(1000 * (performance.now() - t0));
      });
    }
    const ys = [y1, y2, y3].map((y) => new Float32Array(memory.buffer, y, n));
    const same = ys.every((b) => b.every((v, j) => Object.is(v, ys[0][j])));
    const [m16, mAdd, m2] = t.map(median);
    const m1 = int8DotFlag() === 1 ? mAdd : m16;
    console.log(
      `${name.padEnd(18)} ${`[${k}, ${n}]`.padEnd(13)} ${m16.toFixed(1).padStart(9)} ${
        mAdd.toFixed(1).padStart(11)
      } ${m2.toFixed(1).padStart(11)} ${(m1 / m2).toFixed(2).padStart(5)}   ${same ? "yes" : "NO"}`,
    );
  }
  console.log(`rest of the machine meanwhile: ${describeLoad(meter.read())} cores`);
  pool.dispose();
};

/** Median ms/token of an int8 model file streamed with its matrix-vector products shared and alone. */
const matvecStream = async (segmentLen: number, tier: "native" | "portable", rounds: number) => {
  await ensureBackend({ matmul: tier });
  const runner = await makeFileStreamRunner(compileReference(segmentLen), {
    weights: "int8",
    seed: 0,
  });
  const sides = [
    ["one thread", { minParallelWeights: Infinity }],
    ["two threads from 1,000,000 weights (the readout)", { minParallelWeights: 1_000_000 }],
    ["two threads from 131,072 weights", { minParallelWeights: 131_072 }],
  ] as const;
  const ms: number[][] = [[], [], []];
  const meter = new CpuMeter();
  for (let round = 0; round < rounds; round++) {
    for (const [i, [, opts]] of sides.entries()) {
      uninstallMatmul();
      const r = installMatmul(tier, opts);
      if (r._tag === "Left") throw new Error(r.left.reason);
      await startMatmulWorkers();
      // OpenBLAS's threads spin for ~0.1 s after they start or work, and a reinstall opens it anew.
      await new Promise((res) => setTimeout(res, 200));
      // Untimed: the worker's copies of the weights, made on first use, and its code, which V8
      // optimises over the first few hundred calls (one segment after a switch timed mostly that).
      for (let s = 0; s < 10; s++) runner.step();
      let t = 0;
      for (let s = 0; s < 4; s++) t += runner.step();
      ms[i].push(1000 * t / (4 * runner.tokensPerStep));
    }
  }
  stopMatmulWorkers();
  runner.dispose();
  console.log(
    `${cpuModel()}: int8 model file, reference CRT S = ${segmentLen}, ${tier} tier, ms/token ` +
      `(median of ${rounds} turns each of 4 segments after 10 untimed ones)`,
  );
  for (const [i, [name]] of sides.entries()) {
    const sorted = [...ms[i]].sort((a, b) => a - b);
    console.log(
      `  ${name.padEnd(50)} ${median(ms[i]).toFixed(3)} ` +
        `[${sorted[0].toFixed(3)} … ${sorted[sorted.length - 1].toFixed(3)}]` +
        (i === 0 ? "" : `  ${(median(ms[0]) / median(ms[i])).toFixed(2)}× one thread`),
    );
  }
  console.log(`  rest of the machine meanwhile: ${describeLoad(meter.read())} cores`);
};

if (import.meta.main) {
  if (Deno.args.includes("--matvec")) {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        matvec: { type: "boolean" },
        stream: { type: "string" },
        tier: { type: "string", default: "native" },
        rounds: { type: "string", default: "9" },
      },
    });
    const tier = values.tier, rounds = Number(values.rounds);
    if (tier !== "native" && tier !== "portable") {
      console.error(`gemm: --tier wants native or portable, got ${tier}`);
      Deno.exit(2);
    }
    if (values.stream === undefined) await matvecScan();
    else await matvecStream(Number(values.stream), tier, rounds);
    Deno.exit(0);
  }
  if (Deno.args.includes("--scan")) {
    await scan();
    Deno.exit(0);
  }
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      rounds: { type: "string", default: "7" },
      kernels: { type: "string" },
      json: { type: "boolean", default: false },
      train: { type: "string" },
      infer: { type: "string" },
      steps: { type: "string", default: "1" },
    },
  });
  const rounds = Number(values.rounds);
  const phase = values.train !== undefined ? "train" : values.infer !== undefined ? "infer" : null;
  const kernels = (values.kernels ??
    (phase === null ? "gemm2,gemm1,xnnpack,native1,native2" : "gemm2,xnnpack"))
    .split(",") as Kernel[];
  for (const k of kernels) {
    if (!KERNELS.includes(k)) {
      console.error(`gemm: unknown kernel '${k}'; expected one of ${KERNELS.join(", ")}`);
      Deno.exit(2);
    }
  }
  if (!Number.isInteger(rounds) || rounds < 1) {
    console.error(`gemm: --rounds wants a positive integer, got ${values.rounds}`);
    Deno.exit(2);
  }
  if (phase !== null) {
    const s = Number(values.train ?? values.infer), steps = Number(values.steps);
    if (!Number.isInteger(s) || s < 1 || !Number.isInteger(steps) || steps < 1) {
      console.error(`gemm: --${phase} and --steps want positive integers`);
      Deno.exit(2);
    }
    await ensureBackend({ matmul: "portable" });
    await stepBench(phase, s, kernels, rounds, steps);
    Deno.exit(0);
  }
  const blas = loadBlas({ threads: 1 });
  const active = kernels.filter((k) => !k.startsWith("native") || blas._tag === "Right");
  if (blas._tag === "Right") blas.right.close();
  else console.error(`gemm: no native kernels: ${blas.left.reason}`);
  await ensureBackend({ matmul: "portable" });
  const meter = new CpuMeter();
  const results = new Map<string, number[]>(); // `${case}|${kernel}` → GFLOP/s per round
  const inputs = CASES.map(([, sa, sb]) => [tf.randomNormal(sa), tf.randomNormal(sb)]);
  for (let round = 0; round < rounds; round++) {
    console.error(`gemm: round ${round + 1}/${rounds}`);
    for (const kernel of active) {
      use(kernel);
      CASES.forEach((c, i) => {
        const [a, b] = inputs[i];
        // Warm-up: wasm tier-up, XNNPACK's packing cache, the worker's start.
        for (let w = 0; w < (round === 0 ? 3 : 1); w++) tf.matMul(a, b, c[3], c[4]).dispose();
      });
      await new Promise((r) => setTimeout(r, 100)); // the worker, started by the warm-up, is up
      CASES.forEach((c, i) => {
        const [a, b] = inputs[i];
        const flops = flopsOf(c);
        const reps = Math.max(1, Math.min(50, Math.round(2e8 / flops)));
        const t0 = performance.now();
        for (let r = 0; r < reps; r++) tf.matMul(a, b, c[3], c[4]).dispose();
        const ms = (performance.now() - t0) / reps;
        const key = `${c[0]}|${kernel}`;
        results.set(key, [...(results.get(key) ?? []), flops / ms / 1e6]);
      });
    }
  }
  stopMatmulWorkers();
  tf.dispose(inputs.flat());
  const load = describeLoad(meter.read());
  const cell = (c: Case, k: Kernel) => median(results.get(`${c[0]}|${k}`) ?? [NaN]);
  if (values.json) {
    for (const c of CASES) {
      const row: Record<string, unknown> = { product: c[0], a: c[1], b: c[2], tA: c[3], tB: c[4] };
      for (const k of active) row[k] = Math.round(cell(c, k) * 10) / 10;
      console.log(JSON.stringify(row));
    }
  } else {
    const base = active.includes("xnnpack") ? "xnnpack" : null;
    console.log(`rest of the machine meanwhile: ${load} cores`);
    console.log(
      `GFLOP/s, median of ${rounds} rounds${base ? " (× = ratio to xnnpack)" : ""}`.padEnd(44) +
        active.map((k) => k.padStart(base ? 15 : 9)).join(""),
    );
    for (const c of CASES) {
      const label = `${c[0]} ${JSON.stringify(c[1])}${c[3] ? "ᵀ" : ""}·${JSON.stringify(c[2])}${
        c[4] ? "ᵀ" : ""
      }`;
      const cells = active.map((k) => {
        const g = cell(c, k);
        const r = base ? ` ×${(g / cell(c, base)).toFixed(2)}` : "";
        return `${g.toFixed(1)}${r}`.padStart(base ? 15 : 9);
      });
      console.log(label.padEnd(44) + cells.join(""));
    }
  }
}
