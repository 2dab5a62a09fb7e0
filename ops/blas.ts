/**
 * A native CBLAS `sgemm` through Deno FFI, for the wasm backend's matmul
 * kernel (`ops/matmul.ts`).
 *
 * Why native: tfjs-wasm runs one core at ≤ 25 GFLOP/s, while OpenBLAS reaches
 * 90 GFLOP/s on one core and 150+ on two here (docs/substrate.md). Deno FFI passes
 * a `Float32Array` as a raw pointer, including views into the
 * `WebAssembly.Memory` where tfjs-wasm keeps its tensors, so the product runs
 * on the tensors in place.
 *
 * Nothing happens on import: {@linkcode loadBlas} opens the library and says
 * why it could not (no library, no `--allow-ffi`, a missing symbol) as a
 * `Left`.
 *
 * @module
 */
import { describeError } from "../spec/errors.ts";
import { type Either, left, right } from "fp-ts/lib/Either.js";

/**
 * Library names tried in order when none is given. OpenBLAS first: Debian's
 * `libblas.so.3` may be the reference BLAS, correct but 10–50× slower.
 */
export const BLAS_LIBRARIES: readonly string[] = [
  "libopenblas.so.0",
  "libopenblas.so",
  "libcblas.so.3",
  "libblas.so.3",
  "libopenblas.dylib",
  "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
  "/usr/local/opt/openblas/lib/libopenblas.dylib",
];

/** Why {@linkcode loadBlas} failed; `reason` is readable as is. */
export interface BlasError {
  /** Discriminant. */
  readonly _tag: "BlasError";
  /**
   * What went wrong: a runtime without Deno's FFI (a browser), no permission,
   * no library found, only libraries without `cblas_sgemm`, or OpenBLAS
   * running another core than `core` asked for.
   */
  readonly kind: "noFfi" | "noPermission" | "noLibrary" | "missingSymbol" | "wrongCore";
  /** One line for a person: what failed and what to do. */
  readonly reason: string;
}

/** One row-major product `C = alpha · op(A) · op(B) + beta · C` with tight strides. */
export interface GemmShape {
  /** Rows of op(A) and C. */
  readonly m: number;
  /** Columns of op(B) and C. */
  readonly n: number;
  /** Columns of op(A), rows of op(B). */
  readonly k: number;
  /** A is stored [K, M] and used transposed. */
  readonly transposeA: boolean;
  /** B is stored [N, K] and used transposed. */
  readonly transposeB: boolean;
  /** Scale of the product (default 1). */
  readonly alpha?: number;
  /** Scale of C's old value (default 0: C is overwritten). */
  readonly beta?: number;
  /** Leading dimensions of A, B, C as stored (default tight: a row of each). */
  readonly lda?: number;
  readonly ldb?: number;
  readonly ldc?: number;
}

/** An opened CBLAS. */
export interface Blas {
  /** The library name or path that was opened. */
  readonly library: string;
  /**
   * The thread count set through `openblas_set_num_threads` (a process-wide
   * setting: the last library loaded wins), or null when the library has no
   * such call.
   */
  readonly threads: number | null;
  /**
   * The kernel set OpenBLAS runs (`openblas_get_corename`: "Haswell",
   * "SkylakeX", "Cooperlake", "Zen", …), or null for another CBLAS.
   */
  readonly core: string | null;
  /**
   * `c = alpha · op(a) · op(b) + beta · c`, row-major, on contiguous matrices.
   * Throws a RangeError when an array is shorter than the shape needs: the
   * native code would otherwise read or write past it.
   */
  sgemm(a: Float32Array, b: Float32Array, c: Float32Array, shape: GemmShape): void;
  /**
   * `y = x · op(W) (+ y with accumulate)` for one row x [K], W [K, N] (or
   * [N, K] with `transposeW`) row-major: a matrix-vector product, on one
   * BLAS thread (`cblas_sgemv`).
   */
  sgemv(
    x: Float32Array,
    w: Float32Array,
    y: Float32Array,
    shape: { k: number; n: number; transposeW: boolean; accumulate: boolean },
  ): void;
  /** Close the library; the handle must not be used afterwards. */
  close(): void;
}

const CBLAS_ROW_MAJOR = 101;

/** Below this many FLOPs a product runs on one BLAS thread (see `loadBlas`). */
export const SMALL_GEMM_FLOPS = 32e6;
const CBLAS_NO_TRANS = 111;
/**
 * Matrix-vector products of at least this many weights run on every BLAS
 * thread: they are memory-bound, and on this project's 2-core EPYC two
 * threads read the reference CRT's 16.5 MB of weights per token in 0.67 ms
 * (L3) and 1.30 ms (DRAM) against 0.92 and 1.78 ms on one.
 */
const SGEMV_THREADS_AT = 1 << 16;
const CBLAS_TRANS = 112;

/** alpha, A, lda, B (or X), ldb (or incX), beta, C (or Y), ldc (or incY): the tail of both calls. */
const SCALED_OPERANDS = ["f32", "buffer", "i32", "buffer", "i32", "f32", "buffer", "i32"] as const;

const SYMBOLS = {
  // order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc
  cblas_sgemm: {
    parameters: ["i32", "i32", "i32", "i32", "i32", "i32", ...SCALED_OPERANDS],
    result: "void",
  },
  // order, trans, M, N, alpha, A, lda, X, incX, beta, Y, incY
  cblas_sgemv: { parameters: ["i32", "i32", "i32", "i32", ...SCALED_OPERANDS], result: "void" },
  // OpenBLAS only; other CBLAS libraries are still usable without them.
  openblas_set_num_threads: { parameters: ["i32"], result: "void", optional: true },
  openblas_get_corename: { parameters: [], result: "pointer", optional: true },
} as const;

const fail = (kind: BlasError["kind"], reason: string): Either<BlasError, never> =>
  left({ _tag: "BlasError", kind, reason });

/**
 * Whether `core` can name an OpenBLAS kernel set (`"SkylakeX"`, `"Haswell"`,
 * …) or be `"detect"`: letters and digits only (OpenBLAS itself decides
 * whether it knows the name).
 */
export const isBlasCoreName = (core: string): boolean => /^[A-Za-z0-9]+$/.test(core);

/** The environment variable OpenBLAS reads, when it loads, to pick its kernels. */
const CORE_VARIABLE = "OPENBLAS_CORETYPE";

/**
 * Open `library` with OpenBLAS's kernel choice set to `core` ("detect":
 * the library's own detection, whatever the environment says), the
 * environment put back after. OpenBLAS reads it once, when the process
 * first loads it.
 */
const openWithCore = (library: string, core: string | undefined) => {
  if (core === undefined) return Deno.dlopen(library, SYMBOLS);
  const had = Deno.env.get(CORE_VARIABLE);
  if (core === "detect") Deno.env.delete(CORE_VARIABLE);
  else Deno.env.set(CORE_VARIABLE, core);
  try {
    return Deno.dlopen(library, SYMBOLS);
  } finally {
    if (had === undefined) Deno.env.delete(CORE_VARIABLE);
    else Deno.env.set(CORE_VARIABLE, had);
  }
};

/**
 * Open a CBLAS library and bind `cblas_sgemm`. Tries `opts.library`, or else
 * each of {@linkcode BLAS_LIBRARIES}, and sets OpenBLAS's thread count
 * (default: the machine's logical cores) when the library has the call.
 *
 * OpenBLAS picks its kernels for the CPU when it loads, unless the
 * environment's `OPENBLAS_CORETYPE` names a set (a machine may pin an
 * older one, AVX2 `Haswell` say, so that results agree across CPUs).
 * `opts.core` overrides that for this process: a core name, or `"detect"`
 * for OpenBLAS's own choice; it needs `--allow-env` and applies only where
 * the library is not loaded yet. `Blas.core` says which set runs.
 *
 * @example
 * ```ts
 * import { loadBlas } from "./blas.ts";
 * const blas = loadBlas({ threads: 1 });
 * if (blas._tag === "Left") console.log(blas.left.reason);
 * else {
 *   const c = new Float32Array(1);
 *   blas.right.sgemm(new Float32Array([1, 2]), new Float32Array([3, 4]), c, {
 *     m: 1, n: 1, k: 2, transposeA: false, transposeB: false,
 *   });
 *   console.log(c[0]); // 11
 *   blas.right.close();
 * }
 * ```
 */
export const loadBlas = (
  opts: { library?: string; threads?: number; core?: string } = {},
): Either<BlasError, Blas> => {
  if (typeof Deno === "undefined" || typeof Deno.dlopen !== "function") {
    return fail("noFfi", "this runtime has no Deno FFI (Deno.dlopen)");
  }
  // Ask first: a dlopen without the permission would prompt on a terminal.
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    return fail("noPermission", "native BLAS needs FFI access: run with --allow-ffi");
  }
  const threads = opts.threads ?? navigator.hardwareConcurrency ?? 1;
  if (!(Number.isInteger(threads) && threads >= 1)) {
    throw new RangeError(`loadBlas: threads must be a positive integer, got ${threads}`);
  }
  const core = opts.core;
  if (core !== undefined) {
    if (!isBlasCoreName(core)) {
      throw new RangeError(
        `loadBlas: core must be an OpenBLAS core name or "detect", got '${core}'`,
      );
    }
    if (Deno.permissions.querySync({ name: "env", variable: CORE_VARIABLE }).state !== "granted") {
      return fail("noPermission", `choosing OpenBLAS's core needs --allow-env=${CORE_VARIABLE}`);
    }
  }
  const names = opts.library !== undefined ? [opts.library] : BLAS_LIBRARIES;
  const tried: string[] = [];
  for (const library of names) {
    let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
    try {
      lib = openWithCore(library, core);
    } catch (e) {
      const why = describeError(e);
      if (/undefined symbol|obtain symbol/i.test(why)) {
        // The library exists but is no CBLAS (e.g. a Fortran-only libblas): try the next one.
        tried.push(`${library}: no cblas_sgemm`);
      } else if (/no such file|not found/i.test(why)) {
        tried.push(`${library}: not found`);
      } else {
        tried.push(`${library}: ${why}`);
      }
      continue;
    }
    const setThreads = lib.symbols.openblas_set_num_threads;
    if (setThreads !== null) setThreads(threads);
    const name = lib.symbols.openblas_get_corename;
    const pointer = name === null ? null : name();
    const running = pointer === null ? null : Deno.UnsafePointerView.getCString(pointer);
    if (core !== undefined && core !== "detect" && running?.toLowerCase() !== core.toLowerCase()) {
      lib.close();
      return fail(
        "wrongCore",
        `OpenBLAS core '${core}' was asked for, but ${library} runs ${
          running ?? "no OpenBLAS core"
        }` +
          ` (it was loaded before in this process, or does not know '${core}')`,
      );
    }
    const sgemm = lib.symbols.cblas_sgemm;
    // Products under SMALL_GEMM_FLOPS run on the calling thread only: waking
    // OpenBLAS's sleeping workers cost 3–4 ms for a 20×256×256 product after
    // other work (0.4 ms back to back), ten times the product itself.
    let current = threads;
    const useThreads = (t: number) => {
      if (setThreads !== null && t !== current) {
        setThreads(t);
        current = t;
      }
    };
    return right({
      library,
      threads: setThreads !== null ? threads : null,
      core: running,
      sgemm: (a, b, c, s) => {
        const { m, n, k } = s;
        const lda = s.lda ?? Math.max(1, s.transposeA ? m : k);
        const ldb = s.ldb ?? Math.max(1, s.transposeB ? k : n);
        const ldc = s.ldc ?? Math.max(1, n);
        // The last element each operand reaches, with its leading dimension.
        const spanA = s.transposeA ? (k - 1) * lda + m : (m - 1) * lda + k;
        const spanB = s.transposeB ? (n - 1) * ldb + k : (k - 1) * ldb + n;
        const spanC = (m - 1) * ldc + n;
        if (a.length < spanA || b.length < spanB || c.length < spanC) {
          throw new RangeError(
            `sgemm: ${m}×${k} · ${k}×${n} needs ${spanA}, ${spanB}, ${spanC} floats; ` +
              `got ${a.length}, ${b.length}, ${c.length}`,
          );
        }
        useThreads(2 * m * n * k < SMALL_GEMM_FLOPS ? 1 : threads);
        sgemm(
          CBLAS_ROW_MAJOR,
          s.transposeA ? CBLAS_TRANS : CBLAS_NO_TRANS,
          s.transposeB ? CBLAS_TRANS : CBLAS_NO_TRANS,
          m,
          n,
          k,
          s.alpha ?? 1,
          a,
          // Leading dimensions of the stored (not the used) row-major matrices.
          lda,
          b,
          ldb,
          s.beta ?? 0,
          c,
          ldc,
        );
      },
      sgemv: (x, w, y, { k, n, transposeW, accumulate }) => {
        if (x.length < k || w.length < k * n || y.length < n) {
          throw new RangeError(
            `sgemv: [${k}] · ${k}×${n} needs ${k}, ${k * n}, ${n} floats; ` +
              `got ${x.length}, ${w.length}, ${y.length}`,
          );
        }
        useThreads(k * n >= SGEMV_THREADS_AT ? threads : 1);
        // y = op(W)ᵀ-style: with W stored [K, N] row-major, y = Wᵀ x.
        lib.symbols.cblas_sgemv(
          CBLAS_ROW_MAJOR,
          transposeW ? CBLAS_NO_TRANS : CBLAS_TRANS,
          transposeW ? n : k,
          transposeW ? k : n,
          1,
          w,
          transposeW ? k : n,
          x,
          1,
          accumulate ? 1 : 0,
          y,
          1,
        );
      },
      close: () => lib.close(),
    });
  }
  const hint = "install one, e.g. `apt-get install -y libopenblas0-pthread`";
  return fail(
    tried.every((t) => t.endsWith("no cblas_sgemm")) ? "missingSymbol" : "noLibrary",
    `no usable CBLAS library (${tried.join("; ")}); ${hint}`,
  );
};
