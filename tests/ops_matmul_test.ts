/**
 * The replacement `BatchMatMul` kernels (ops/matmul.ts), both tiers: values
 * against the float64 reference interpreter, gradients and whole tiny-model
 * training steps against the stock kernel, tensor and heap hygiene, and the
 * installation API.
 *
 * Tolerance: `max |y − ref| / max |ref|` ≤ 1e-4. Both sides round to
 * float32; a float32 dot product of length ≤ 65 errs by ≤ ~65 ulps
 * (~4e-6) whatever the summation order, while a wrong index, transpose or
 * batch stride gives O(1).
 *
 * The native cases are skipped (with the reason printed) only when no CBLAS
 * library is installed; a missing `--allow-ffi` fails them.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import * as E from "fp-ts/lib/Either.js";
import { compile } from "../core/compile.ts";
import { flattenParams } from "../core/params.ts";
import { ensureBackend, startBackend } from "../ops/backend.ts";
import { loadBlas } from "../ops/blas.ts";
import { evalTf, type LowerCtx, toTensor } from "../ops/lower.ts";
import {
  installedMatmul,
  installMatmul,
  matmulStats,
  matmulThreads,
  type MatmulTier,
  startMatmulWorkers,
  stopMatmulWorkers,
  uninstallMatmul,
} from "../ops/matmul.ts";
import { evalRef, type RefTensor } from "../ops/reference.ts";
import { freshDeno, repoUrl } from "./_deno.ts";
import { normError, sampler, scoped } from "./_ops_cases.ts";
import { randomTokens, tinyModels } from "./_tiny.ts";

await ensureBackend({ matmul: "portable" });

const TOL = 1e-4;
const ctx: LowerCtx = { training: false, seed: () => 0 };

const probe = loadBlas({ threads: 1 });
if (probe._tag === "Right") probe.right.close();
/** Why the native tier cannot run here, when the only cause is a missing library. */
const nativeSkip = probe._tag === "Left" && probe.left.kind === "noLibrary"
  ? probe.left.reason
  : null;
if (nativeSkip !== null) {
  console.warn(`ops_matmul_test: SKIPPING the native-tier cases: ${nativeSkip}`);
}

type Kernel = MatmulTier | "stock";
const TIERS: readonly MatmulTier[] = ["portable", "native"];

/**
 * Run `f` with `kernel` installed. One BLAS thread: `deno task test` runs
 * files in parallel on two cores, and a second thread would only contend.
 */
const using = <T>(kernel: Kernel, f: () => T): T => {
  if (kernel === "stock") uninstallMatmul();
  else {
    const r = installMatmul(kernel, { threads: 1 });
    if (r._tag === "Left") throw new Error(`cannot install ${kernel}: ${r.left.reason}`);
  }
  return f();
};

const tierTest = (name: string, fn: (tier: MatmulTier) => void | Promise<void>): void => {
  for (const tier of TIERS) {
    Deno.test({
      name: `${name} [${tier}]`,
      ignore: tier === "native" && nativeSkip !== null,
      fn: () => fn(tier),
    });
  }
};

/** (M, K, N) triples: every size of {1, 7, 33, 65} in every position. */
const SIZES: readonly (readonly [number, number, number])[] = [
  [1, 1, 1],
  [1, 7, 33],
  [7, 33, 65],
  [33, 65, 1],
  [65, 1, 7],
  [7, 65, 33],
  [33, 7, 7],
  [65, 33, 65],
];

/** Leading (batch) dims by rank: batch 1 and > 1 for ranks 3 and 4. */
const BATCHES: readonly (readonly number[])[] = [[], [1], [3], [1, 1], [2, 3]];

const TRANSPOSES: readonly (readonly [boolean, boolean])[] = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];

const stored = (rows: number, cols: number, flip: boolean): [number, number] =>
  flip ? [cols, rows] : [rows, cols];

/** op(a)·op(b) by the lowering (IR rank 4 goes through rank 3) and by the float64 reference. */
const compare = (
  batch: readonly number[],
  [m, k, n]: readonly [number, number, number],
  [tA, tB]: readonly [boolean, boolean],
  seed: number,
): number => {
  const s = sampler(seed);
  const a = s.normal([...batch, ...stored(m, k, tA)]);
  const b = s.normal([...batch, ...stored(k, n, tB)]);
  const op = { _tag: "matmul", transposeA: tA, transposeB: tB } as const;
  const want = evalRef(op, [a, b], { precision: "float64", training: false });
  const got = scoped(() => evalTf(op, [toTensor(a), toTensor(b)], ctx).dataSync());
  return normError(got, want.data);
};

tierTest(
  "BatchMatMul replacement matches the reference for ranks 2–4, all transposes, odd sizes",
  (tier) =>
    using(tier, () => {
      let seed = 1;
      for (const batch of BATCHES) {
        for (const size of SIZES) {
          for (const t of TRANSPOSES) {
            const err = compare(batch, size, t, seed++);
            assert.ok(
              err <= TOL,
              `[${batch}] (M,K,N)=(${size}) transpose=${t}: relative error ${err.toExponential(2)}`,
            );
          }
        }
      }
    }),
);

/** A reference product where one operand's batch of 1 broadcasts against the other's. */
const broadcastRef = (a: RefTensor, b: RefTensor, tA: boolean, tB: boolean): RefTensor => {
  const batch = Math.max(a.shape[0], b.shape[0]);
  const tile = (t: RefTensor): RefTensor => {
    if (t.shape[0] === batch) return t;
    const data = new Float64Array(batch * t.data.length);
    for (let i = 0; i < batch; i++) data.set(t.data, i * t.data.length);
    return { shape: [batch, ...t.shape.slice(1)], dtype: "float32", data };
  };
  const op = { _tag: "matmul", transposeA: tA, transposeB: tB } as const;
  return evalRef(op, [tile(a), tile(b)], { precision: "float64", training: false });
};

/**
 * tf.matMul of (M, K, N) with a batch of 1 on either side against `batch` on
 * the other, every transpose: shape [batch, M, N] and the broadcast product.
 */
const checkBroadcasts = (
  s: ReturnType<typeof sampler>,
  [m, k, n]: readonly [number, number, number],
  batch: number,
): void => {
  for (const [tA, tB] of TRANSPOSES) {
    for (const [ba, bb] of [[batch, 1], [1, batch]]) {
      const a = s.normal([ba, ...stored(m, k, tA)]), b = s.normal([bb, ...stored(k, n, tB)]);
      const got = tf.tidy(() => tf.matMul(toTensor(a), toTensor(b), tA, tB));
      assert.deepEqual(got.shape, [batch, m, n]);
      const err = normError(got.dataSync(), broadcastRef(a, b, tA, tB).data);
      got.dispose();
      assert.ok(err <= TOL, `batches ${ba}/${bb} transpose=${[tA, tB]}: error ${err}`);
    }
  }
};

tierTest(
  "BatchMatMul replacement broadcasts a batch of 1, as tf.matMul allows",
  (tier) =>
    using(tier, () => {
      const s = sampler(7);
      checkBroadcasts(s, [7, 33, 5], 3);
      // Rank 2 against rank 3: the 2-D operand is shared by every batch entry.
      const a = s.normal([2, 7, 33]), b = s.normal([33, 5]);
      const got = tf.tidy(() => tf.matMul(toTensor(a), toTensor(b)));
      assert.deepEqual(got.shape, [2, 7, 5]);
      const ref = broadcastRef(a, { ...b, shape: [1, 33, 5] }, false, false);
      assert.ok(normError(got.dataSync(), ref.data) <= TOL);
      got.dispose();
    }),
);

tierTest(
  "BatchMatMul replacement: an empty inner dimension gives zeros, an empty output nothing",
  (tier) =>
    using(tier, () => {
      const cases: [number[], number[], boolean, number[]][] = [
        [[2, 3, 0], [2, 0, 4], false, [2, 3, 4]],
        [[2, 0, 3], [2, 0, 4], true, [2, 3, 4]],
        [[3, 0], [0, 4], false, [3, 4]],
        [[2, 0, 5], [2, 5, 4], false, [2, 0, 4]],
      ];
      for (const [sa, sb, tA, shape] of cases) {
        // Garbage first, so that memory left uninitialised would show.
        tf.fill([4096], 7).dispose();
        const y = tf.tidy(() => tf.matMul(tf.ones(sa), tf.ones(sb), tA));
        assert.deepEqual(y.shape, shape);
        assert.ok(y.dataSync().every((v) => v === 0), `[${sa}]·[${sb}] is not all zeros`);
        y.dispose();
      }
    }),
);

tierTest(
  "BatchMatMul replacement leaves shape errors to the stock kernel",
  (tier) =>
    using(tier, () => {
      assert.throws(
        () => tf.tidy(() => tf.matMul(tf.ones([2, 3]), tf.ones([4, 5]))),
        /inner shapes \(3\) and \(4\)/,
      );
    }),
);

/** ∂ sum(w ⊙ op(a)·op(b)) / ∂(a, b) by autograd, under the installed kernel. */
const matmulGrads = (
  a: RefTensor,
  b: RefTensor,
  tA: boolean,
  tB: boolean,
  w: Float64Array,
  outShape: readonly number[],
): Float32Array[] =>
  scoped(() => {
    const wt = tf.tensor(Float32Array.from(w), [...outShape]);
    const op = { _tag: "matmul", transposeA: tA, transposeB: tB } as const;
    const f = (x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(wt, evalTf(op, [x, y], ctx)));
    return tf.grads(f)([toTensor(a), toTensor(b)]).map((g) => Float32Array.from(g.dataSync()));
  });

tierTest("BatchMatMul replacement gives the stock kernel's gradients", (tier) => {
  const s = sampler(11);
  for (const batch of [[], [3], [2, 3]]) {
    for (const [tA, tB] of TRANSPOSES) {
      const [m, k, n] = [7, 33, 65];
      const a = s.normal([...batch, ...stored(m, k, tA)]);
      const b = s.normal([...batch, ...stored(k, n, tB)]);
      const outShape = [...batch, m, n];
      const w = s.values(outShape.reduce((p, d) => p * d, 1));
      const want = using("stock", () => matmulGrads(a, b, tA, tB, w, outShape));
      const got = using(tier, () => matmulGrads(a, b, tA, tB, w, outShape));
      got.forEach((g, i) => {
        const err = normError(g, want[i]);
        assert.ok(err <= TOL, `[${batch}] transpose=${[tA, tB]} d${"ab"[i]}: error ${err}`);
      });
    }
  }
});

Deno.test({
  name: "BatchMatMul replacement: a tiny-model training step matches the stock kernel",
  fn: async (t) => {
    for (const [name, spec] of Object.entries(tinyModels)) {
      await t.step(name, () => {
        const p = compile(spec);
        if (E.isLeft(p)) throw new Error(p.left.message);
        const program = p.right;
        const b = 2, len = 2 * spec.segmentLen;
        const tok = tf.tensor2d(randomTokens(b * len, spec.vocabSize, 5), [b, len], "int32");
        const tgt = tf.tensor2d(randomTokens(b * len, spec.vocabSize, 6), [b, len], "int32");
        const params = program.init(2);
        const run = (kernel: Kernel) =>
          using(kernel, () => {
            const state = program.initState(b);
            const step = program.trainStep(params, state, { tokens: tok, targets: tgt }, {});
            const grads = Object.fromEntries(
              Object.entries(step.grads).map(([k, g]) => [k, Float32Array.from(g.dataSync())]),
            );
            for (const g of Object.values(step.grads)) g.dispose();
            program.disposeState(step.state);
            program.disposeState(state);
            return { loss: step.loss, grads };
          });
        const stock = run("stock");
        for (const kernel of TIERS) {
          if (kernel === "native" && nativeSkip !== null) continue;
          const got = run(kernel);
          assert.ok(
            Math.abs(got.loss - stock.loss) <= TOL * Math.abs(stock.loss),
            `${kernel}: loss ${got.loss} vs stock ${stock.loss}`,
          );
          for (const [path, g] of Object.entries(stock.grads)) {
            const err = normError(got.grads[path], g);
            assert.ok(err <= TOL, `${kernel}: gradient of ${path} off by ${err}`);
          }
        }
        for (const x of [tok, tgt, ...Object.values(flattenParams(params))]) x.dispose();
      });
    }
  },
});

tierTest(
  "BatchMatMul replacement leaks no tensor, backend buffer or heap",
  (tier) =>
    using(tier, () => {
      const backend = tf.backend() as unknown as { numDataIds(): number };
      const s = sampler(3);
      // Transposed and batched operands: the portable tier's temporaries and slice views.
      const a = toTensor(s.normal([4, 33, 7])), b = toTensor(s.normal([4, 65, 33]));
      const w = toTensor(s.normal([33, 65]));
      const once = () => {
        tf.matMul(a, b, true, true).dispose();
        tf.matMul(a, w, true, false).dispose();
        tf.tidy(() => {
          tf.grads((x: tf.Tensor) => tf.sum(tf.matMul(x, b, true, true)))([a]);
        });
      };
      once();
      const tensors = tf.memory().numTensors, ids = backend.numDataIds();
      for (let i = 0; i < 5; i++) once();
      assert.equal(tf.memory().numTensors, tensors, "tensors leaked");
      assert.equal(backend.numDataIds(), ids, "backend data ids leaked");
      tf.dispose([a, b, w]);
    }),
);

tierTest(
  "BatchMatMul replacement stays right after the wasm heap grows",
  (tier) =>
    using(tier, () => {
      const s = sampler(5);
      const a = s.normal([3, 7, 33]), b = s.normal([3, 65, 33]);
      const want = evalRef({ _tag: "matmul", transposeA: false, transposeB: true }, [a, b], {
        precision: "float64",
        training: false,
      });
      const [ta, tb] = [toTensor(a), toTensor(b)];
      const heap = () =>
        (tf.backend() as unknown as { wasm: { HEAPF32: Float32Array } }).wasm.HEAPF32;
      const before = heap().buffer;
      // As many bytes as the whole heap: emscripten must grow the memory, which
      // replaces its ArrayBuffer and detaches every view made before.
      const big = tf.zeros([heap().length]);
      assert.notEqual(heap().buffer, before, "the heap did not grow; the test proves nothing");
      const y = tf.matMul(ta, tb, false, true);
      assert.ok(normError(y.dataSync(), want.data) <= TOL);
      tf.dispose([ta, tb, big, y]);
    }),
);

/**
 * Run `f` on the portable tier installed with `opts`, then put the default
 * portable tier back (and stop its worker).
 */
const withPortable = async <T>(
  opts: Parameters<typeof installMatmul>[1],
  f: () => T | Promise<T>,
): Promise<T> => {
  uninstallMatmul();
  const r = installMatmul("portable", opts);
  if (r._tag === "Left") throw new Error(r.left.reason);
  try {
    return await f();
  } finally {
    uninstallMatmul();
    installMatmul("portable");
  }
};

Deno.test("portable tier on two threads (every product shared) matches the reference", async () => {
  await withPortable({ threads: 2, minParallelFlops: 0, minIntensity: 0 }, async () => {
    assert.deepEqual(matmulThreads(), { threads: 2 });
    assert.equal(await startMatmulWorkers(), true, "the worker did not start");
    let seed = 500;
    for (const batch of BATCHES) {
      for (const size of SIZES) {
        for (const t of TRANSPOSES) {
          const err = compare(batch, size, t, seed++);
          assert.ok(err <= TOL, `[${batch}] (M,K,N)=(${size}) transpose=${t}: error ${err}`);
        }
      }
    }
    // Broadcast batches of 1, either side, every transpose.
    checkBroadcasts(sampler(8), [13, 33, 17], 5);
    // Products big enough to cut into row and column chunks, every transpose, ranks 2 and 3.
    for (const batch of [[], [3]]) {
      for (const size of [[257, 33, 65], [9, 40, 600]] as const) {
        for (const t of TRANSPOSES) {
          const err = compare(batch, size, t, seed++);
          assert.ok(err <= TOL, `[${batch}] (M,K,N)=(${size}) transpose=${t}: error ${err}`);
        }
      }
    }
    const stats = matmulStats();
    // The batch-6 products, the broadcasts and the big ones are cut in chunks (the rest is too small).
    assert.ok(stats !== null && stats.split >= 50, `split ${stats?.split} products`);
    assert.equal(stats.notReady, 0);
  });
});

Deno.test("portable tier on two threads: gradients and the reference model's attention shapes", async () => {
  await withPortable({ threads: 2 }, async () => {
    assert.equal(await startMatmulWorkers(), true);
    const s = sampler(12);
    // Attention of the reference model at B = 20, S = 35: [B·H, S+1, dHead], above the threshold.
    const q = s.normal([80, 36, 64]), k = s.normal([80, 36, 64]);
    const err = compare([80], [36, 64, 36], [false, true], 3);
    assert.ok(err <= TOL, `Q·Kᵀ: error ${err}`);
    // Gradients through autograd: dA = dC·Bᵀ and dB = Aᵀ·dC, split between the threads.
    const w = s.values(80 * 36 * 36);
    const want = (() => {
      uninstallMatmul();
      try {
        return matmulGrads(q, k, false, true, w, [80, 36, 36]);
      } finally {
        installMatmul("portable", { threads: 2 });
      }
    })();
    assert.equal(await startMatmulWorkers(), true);
    const got = matmulGrads(q, k, false, true, w, [80, 36, 36]);
    got.forEach((g, i) => {
      const e = normError(g, want[i]);
      assert.ok(e <= TOL, `d${"ab"[i]}: error ${e}`);
    });
    assert.ok((matmulStats()?.split ?? 0) >= 3, "the products were not split");
  });
});

Deno.test("portable tier: the XNNPACK fallback still matches the reference", async () => {
  await withPortable({ portableKernel: "xnnpack" }, () => {
    assert.deepEqual(matmulThreads(), {
      threads: 1,
      reason: 'portableKernel: "xnnpack" was asked for',
    });
    let seed = 900;
    for (const batch of [[], [3]]) {
      for (const t of TRANSPOSES) {
        const err = compare(batch, [7, 33, 65], t, seed++);
        assert.ok(err <= TOL, `[${batch}] transpose=${t}: error ${err}`);
      }
    }
    assert.equal(matmulStats(), null);
  });
});

Deno.test("portable tier: one thread when asked, and bad options are a Left", async () => {
  await withPortable({ threads: 1 }, async () => {
    assert.deepEqual(matmulThreads(), { threads: 1, reason: "threads: 1 was asked for" });
    assert.equal(await startMatmulWorkers(), false);
    assert.ok(compare([2], [65, 33, 65], [true, true], 1) <= TOL);
    assert.deepEqual(matmulStats(), {
      single: 1,
      split: 0,
      shared: 0,
      notReady: 0,
      started: 0,
      matvecs: 0,
      matvecsShared: 0,
      matvecsTakenBack: 0,
      residentBytes: 0,
    });
  });
  uninstallMatmul();
  for (
    const opts of [
      { threads: 0 },
      { threads: 1.5 },
      { minParallelFlops: -1 },
      { minIntensity: -1 },
      { minParallelWeights: -1 },
      { minParallelWeights: NaN },
    ]
  ) {
    const r = installMatmul("portable", opts);
    assert.ok(E.isLeft(r), JSON.stringify(opts));
    assert.match(r.left.reason, /threads|minParallelFlops|minIntensity|minParallelWeights/);
  }
  const r = installMatmul("portable", { portableKernel: "blas" as "gemm" });
  assert.ok(E.isLeft(r) && /unknown portableKernel 'blas'/.test(r.left.reason));
  assert.equal(installedMatmul(), "stock");
  installMatmul("portable");
  stopMatmulWorkers(); // nothing runs: a no-op
});

Deno.test("installMatmul: idempotent, switches tiers; uninstallMatmul restores stock", () => {
  uninstallMatmul();
  const stock = tf.getKernel("BatchMatMul", "wasm");
  assert.equal(installedMatmul(), "stock");
  assert.deepEqual(installMatmul("portable"), E.right("portable"));
  const portable = tf.getKernel("BatchMatMul", "wasm");
  assert.notEqual(portable, stock);
  assert.deepEqual(installMatmul("portable"), E.right("portable"));
  assert.equal(tf.getKernel("BatchMatMul", "wasm"), portable, "a second install re-registered");
  if (nativeSkip === null) {
    assert.deepEqual(installMatmul("native", { threads: 1 }), E.right("native"));
    assert.equal(installedMatmul(), "native");
  }
  uninstallMatmul();
  uninstallMatmul();
  assert.equal(tf.getKernel("BatchMatMul", "wasm"), stock);
  assert.equal(installedMatmul(), "stock");
});

Deno.test("installMatmul: an unloadable native library is a Left, kernel untouched", () => {
  assert.deepEqual(installMatmul("portable"), E.right("portable"));
  const before = tf.getKernel("BatchMatMul", "wasm");
  const r = installMatmul("native", { library: "libdoesnotexist.so.9" });
  assert.ok(E.isLeft(r));
  assert.match(r.left.reason, /libdoesnotexist\.so\.9: not found/);
  assert.equal(tf.getKernel("BatchMatMul", "wasm"), before);
  assert.equal(installedMatmul(), "portable");
});

Deno.test({
  name: "loadBlas: core sets OpenBLAS's kernels for the process, says which run, restores the env",
  // Core names are x86's; OpenBLAS reads the choice once per process, so each case is a fresh one.
  ignore: nativeSkip !== null || Deno.build.arch !== "x86_64",
  fn: async () => {
    const script = (first: string) => `
      import { loadBlas } from "${repoUrl("ops/blas.ts")}";
      Deno.env.set("OPENBLAS_CORETYPE", "Prescott");
      const a = loadBlas({ threads: 1, core: ${JSON.stringify(first)} });
      // Loaded once: a second, different choice cannot take effect and is a Left.
      const b = loadBlas({ threads: 1, core: "Zen" });
      let bad = "";
      try { loadBlas({ core: "no such" }); } catch (e) { bad = String(e); }
      console.log(JSON.stringify({
        core: a._tag === "Right" ? a.right.core : a.left.reason,
        second: b._tag === "Left" ? b.left.kind : b.right.core,
        env: Deno.env.get("OPENBLAS_CORETYPE"),
        bad,
      }));
    `;
    const haswell = JSON.parse(await freshDeno(script("Haswell")));
    assert.deepEqual(haswell, {
      core: "Haswell",
      second: "wrongCore",
      env: "Prescott",
      bad: "RangeError: loadBlas: core must be an OpenBLAS core name or \"detect\", got 'no such'",
    });
    // "detect" ignores the environment's Prescott: OpenBLAS picks for this CPU.
    const detect = JSON.parse(await freshDeno(script("detect")));
    assert.equal(typeof detect.core, "string");
    assert.notEqual(detect.core, "Prescott");
    assert.equal(detect.env, "Prescott");
  },
});

Deno.test("startBackend: reports the matmul kernel in use and why native was not", async () => {
  const portable = await startBackend({ matmul: "portable" });
  assert.ok(E.isRight(portable));
  assert.equal(portable.right.matmul, "portable");
  assert.equal(portable.right.reason, undefined);
  const auto = await startBackend();
  assert.ok(E.isRight(auto));
  if (nativeSkip === null) {
    assert.deepEqual(auto.right.matmul, "native");
    assert.match(auto.right.blasCore ?? "", /^\w+$/, "the OpenBLAS core is reported");
  } else {
    assert.equal(auto.right.matmul, "portable");
    assert.equal(auto.right.reason, nativeSkip);
  }
  const cpu = await startBackend({ backend: "cpu", matmul: "native" });
  assert.ok(E.isRight(cpu));
  assert.equal(cpu.right.matmul, "stock");
  await startBackend({ matmul: "portable" });
});

Deno.test("startBackend: a native matmul that cannot load is a Left only when forced", async () => {
  // Without --allow-ffi: a fresh process, with the permission left out.
  const script = `
    import { startBackend } from "${repoUrl("ops/backend.ts")}";
    const auto = await startBackend();
    const forced = await startBackend({ matmul: "native" });
    console.log(JSON.stringify({
      auto: auto._tag === "Right" ? auto.right : null,
      forced: forced._tag === "Left" ? forced.left.message : null,
    }));
  `;
  // `deno eval` grants every permission, so the script goes to `deno run -` on stdin.
  const seen = JSON.parse(await freshDeno(script, ["--allow-read", "--allow-env"]));
  assert.equal(seen.auto.matmul, "portable");
  assert.match(seen.auto.reason, /--allow-ffi/);
  assert.match(seen.forced, /native matmul unavailable: .*--allow-ffi/);
});

Deno.test("startBackend: without SharedArrayBuffer the portable matmul runs on one thread and says so", async () => {
  // As in a browser page that is not cross-origin isolated; a fresh process, so
  // that this one keeps its SharedArrayBuffer.
  const script = `
    delete globalThis.SharedArrayBuffer;
    const { startBackend } = await import("${repoUrl("ops/backend.ts")}");
    const tf = await import("@tensorflow/tfjs-core");
    const r = await startBackend({ matmul: "portable" });
    const y = tf.matMul(tf.ones([300, 200]), tf.ones([300, 100]), true, false); // [200, 100] of 300s
    const v = y.dataSync();
    console.log(JSON.stringify({
      info: r._tag === "Right" ? r.right : null,
      right: v.length === 20000 && v.every((x) => x === 300),
    }));
  `;
  const seen = JSON.parse(await freshDeno(script, ["--allow-read", "--allow-env"]));
  assert.equal(seen.info.matmul, "portable");
  assert.match(
    seen.info.reason,
    /^the portable matmul runs on one thread: SharedArrayBuffer is unavailable/,
  );
  assert.equal(seen.right, true);
});
