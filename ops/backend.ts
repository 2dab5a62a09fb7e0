/**
 * Backend start-up for tfjs: WebAssembly by default, the pure-JS CPU backend
 * only when asked for by name.
 *
 * Importing this module does nothing: the backend packages are imported
 * dynamically by {@linkcode startBackend}, so no backend is registered or
 * initialised, and no gradient installed, until a caller decides which
 * backend it wants. That keeps start-up
 * failures (a missing `.wasm` file, say) on the `Either` path instead of
 * surfacing as an import-time crash or as tfjs silently picking another
 * backend.
 *
 * @module
 */
import { describeError } from "../spec/errors.ts";
import * as tf from "@tensorflow/tfjs-core";
import { type Either, left, right } from "fp-ts/lib/Either.js";
import { registerFusedKernels } from "./fused.ts";
import { registerFusionKernels } from "./fusion/mod.ts";
import {
  chooseKernelBuild,
  heapMemory,
  type KernelBuildChoice,
  type KernelBuildName,
  SCRATCH,
  scratch,
  type WasmBackend,
} from "./heap.ts";
import { blocks } from "./fusion/blocks.ts";
import {
  INT8_DOT_PROBE_BYTES,
  type Int8Dot,
  type Int8DotChoice,
  setInt8Dot,
  timeInt8Dots,
} from "./q8_dot.ts";
import { registerGradients } from "./lower.ts";
import { compileGemm } from "./gemm_kernel.ts";
import { installedBlas, installMatmul, matmulThreads, type MatmulTier } from "./matmul.ts";

/**
 * The backends this project runs on.
 *
 * @example
 * ```ts
 * import type { BackendName } from "./backend.ts";
 * const fallback: BackendName = "cpu"; // slower; only when asked for by name
 * console.log(fallback);
 * ```
 */
export type BackendName = "wasm" | "cpu";

/**
 * Which `BatchMatMul` kernel to run on wasm (see `ops/matmul.ts`): `native`
 * BLAS through FFI, `portable` pure wasm, or `auto`, native when a BLAS
 * library loads and portable otherwise.
 *
 * @example
 * ```ts
 * import type { MatmulChoice } from "./backend.ts";
 * const choice: MatmulChoice = "portable"; // what browsers get
 * console.log(choice);
 * ```
 */
export type MatmulChoice = "auto" | MatmulTier;

/**
 * Options of {@linkcode startBackend}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type BackendInfo, type BackendOptions, startBackend } from "./backend.ts";
 * const opts: BackendOptions = { backend: "cpu" };
 * const r = await startBackend(opts);
 * if (r._tag === "Left") throw r.left;
 * const info: BackendInfo = r.right;
 * assert.deepEqual([info.name, info.simd, info.matmul], ["cpu", false, "stock"]);
 * ```
 */
export interface BackendOptions {
  /** The tfjs backend (default "wasm"). */
  readonly backend?: BackendName;
  /** The wasm matmul kernel (default "auto"); ignored by cpu, which keeps its own. */
  readonly matmul?: MatmulChoice;
  /**
   * OpenBLAS threads for the native matmul (default: the machine's logical
   * cores). Applies when the native kernel is installed, not to one already in place.
   */
  readonly blasThreads?: number;
  /**
   * OpenBLAS's kernel set for the native matmul: a core name ("SkylakeX",
   * "Haswell", …) or "detect" (OpenBLAS's own choice for this CPU), in
   * place of the environment's `OPENBLAS_CORETYPE` (default: as the
   * environment says; needs `--allow-env`). Applies when the library first
   * loads in the process; `info.blasCore` says which set runs.
   */
  readonly blasCore?: string;
  /**
   * Int8 matrix-vector products (an int8 model file decoding at batch 1) of
   * this many weights or more run on two threads, the calling one and the
   * GEMM pool's worker (default: none, see `DEFAULT_MIN_PARALLEL_WEIGHTS`
   * of `ops/gemm_pool.ts`); e.g. `1_000_000` shares only the readout of a
   * large vocabulary. Applies when the matmul kernel is installed.
   */
  readonly minParallelWeights?: number;
  /**
   * Where tfjs-backend-wasm's `.wasm` binaries are served: a URL prefix
   * ending in `/`, absolute or relative to the page (e.g. `"/wasm/"`). The
   * default resolves the installed package's `dist/` folder through the
   * import map, which works under Deno; a browser bundle has no import map
   * and must pass it (`web/serve.ts` serves the installed files under
   * `/wasm/`). Only the first wasm start uses it: tfjs cannot move the
   * binaries once loaded.
   */
  readonly wasmPaths?: string;
  /**
   * The build of our own wasm kernels (default "auto": relaxed SIMD where
   * the engine validates it). One build per process: the first start fixes it.
   */
  readonly kernels?: KernelBuildChoice;
  /**
   * The relaxed build's int8 dot sequence (ops/q8_dot.ts; default "auto":
   * both timed at start-up, the faster kept). Results do not depend on it.
   */
  readonly int8Dot?: Int8DotChoice;
}

/**
 * What {@linkcode startBackend} reports about the backend it started.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type BackendInfo, type BackendOptions, startBackend } from "./backend.ts";
 * const opts: BackendOptions = { backend: "cpu" };
 * const r = await startBackend(opts);
 * if (r._tag === "Left") throw r.left;
 * const info: BackendInfo = r.right;
 * assert.deepEqual([info.name, info.simd, info.matmul], ["cpu", false, "stock"]);
 * ```
 */
export interface BackendInfo {
  /** The active tfjs backend name. */
  readonly name: BackendName;
  /** Whether the WebAssembly build in use has SIMD (always false for cpu). */
  readonly simd: boolean;
  /** The matmul kernel in use: a replacement on wasm, the backend's own ("stock") on cpu. */
  readonly matmul: MatmulTier | "stock";
  /**
   * Which build of our own wasm kernels runs (wasm only): `relaxed` (relaxed
   * SIMD, fused multiply-add) where the engine has it, else `simd128`.
   */
  readonly kernels?: KernelBuildName;
  /**
   * The relaxed build's int8 dot sequence (wasm with relaxed SIMD only):
   * `dotadd` where the fused dot-add measured faster at start-up (one
   * instruction on x86 CPUs with VNNI), else `dot16`.
   */
  readonly int8Dot?: Int8Dot;
  /**
   * The kernel set native OpenBLAS runs ("Haswell", "SkylakeX", …), when
   * the native matmul is OpenBLAS.
   */
  readonly blasCore?: string;
  /**
   * Why the native matmul is not in use, when it was wanted ("auto") but
   * could not load — in a browser, because there is no Deno FFI — and why
   * the portable matmul runs on one thread instead of two, when it does (no
   * `SharedArrayBuffer` in a page that is not cross-origin isolated, say).
   */
  readonly reason?: string;
  /**
   * The CPU architecture the process runs on, as Deno names it (`x86_64`,
   * `aarch64` on a 64-bit ARM board); absent outside Deno (a browser).
   */
  readonly arch?: string;
}

/**
 * A backend could not be started. `backend` names which one, `message` says
 * why; `cause` keeps the underlying error when there was one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BackendError, type BackendName, startBackend } from "./backend.ts";
 * const r = await startBackend({ backend: "webgl" as BackendName });
 * assert.ok(r._tag === "Left" && r.left instanceof BackendError);
 * ```
 */
export class BackendError extends Error {
  /** Discriminant for `Either` pattern matching. */
  readonly _tag = "BackendError" as const;
  /** Error class name, for stack traces. */
  override readonly name = "BackendError";
  /**
   * A start-up failure of `backend`.
   *
   * @param backend the backend that failed to start
   * @param reason why, readable as is
   * @param options `cause`: the underlying error, if any
   */
  constructor(readonly backend: string, reason: string, options?: { cause?: unknown }) {
    super(`cannot start tfjs backend '${backend}': ${reason}`, options);
  }
}

/**
 * The `dist/` folder of the installed tfjs-backend-wasm package, where its
 * `.wasm` binaries sit next to the JavaScript. Resolved from the import map,
 * so it is always the installed version and never a CDN.
 */
export const wasmDistUrl = (): string =>
  new URL("./", import.meta.resolve("@tensorflow/tfjs-backend-wasm")).href;

/** Whether this runtime is Deno (and so may have FFI); false in a browser. */
const isDeno = (): boolean => typeof Deno !== "undefined";

/**
 * The prefix the `.wasm` binaries are fetched from: the caller's, or the
 * installed package's `dist/`. Left when neither is known (a bundle in a
 * browser, where `import.meta.resolve` has no import map to resolve with).
 */
const wasmPrefix = (given: string | undefined): Either<string, string> => {
  if (given !== undefined) {
    return given.endsWith("/") ? right(given) : left(
      `wasmPaths must be a URL prefix ending in "/" (a folder), got "${given}"`,
    );
  }
  try {
    return right(wasmDistUrl());
  } catch (e) {
    return left(
      `cannot locate tfjs-backend-wasm's .wasm files (${describeError(e)}); outside Deno pass ` +
        `{ wasmPaths: "<URL of the folder serving the installed package's dist/ files>/" }`,
    );
  }
};

/**
 * Import the wasm backend and, before its first start, point it at its
 * binaries. Returns the prefix set (null when already set by an earlier start).
 */
const registerWasm = async (
  given: string | undefined,
): Promise<Either<string, string | null>> => {
  const wasm = await import("@tensorflow/tfjs-backend-wasm");
  // setWasmPaths throws once the wasm backend has initialised, and the paths
  // cannot change afterwards anyway, so only set them before the first start.
  if (tf.findBackend("wasm") != null) return right(null);
  const prefix = wasmPrefix(given);
  if (prefix._tag === "Right") wasm.setWasmPaths(prefix.right);
  return prefix;
};

const registerCpu = async (): Promise<void> => {
  await import("@tensorflow/tfjs-backend-cpu");
};

/**
 * The cpu backend greets Node.js users on first use with advice to install
 * tfjs-node, which does not apply under Deno. `firstUse` is its (private)
 * once-flag; if a later version drops it this does nothing.
 */
const silenceCpuGreeting = (): void => {
  const cpu = tf.findBackend("cpu") as unknown as { firstUse?: boolean } | null;
  if (cpu && cpu.firstUse === true) cpu.firstUse = false;
};

/**
 * Install the wasm matmul kernel `choice` asks for. "auto" falls back to the
 * portable kernel and says why; an explicit "native" that cannot load fails.
 */
const chooseMatmul = (
  choice: MatmulChoice,
  threads: number | undefined,
  minParallelWeights: number | undefined,
  blasCore: string | undefined,
): Either<string, { matmul: MatmulTier; reason?: string; blasCore?: string }> => {
  const shared = minParallelWeights === undefined ? {} : { minParallelWeights };
  const portable = (native?: string) => {
    const p = installMatmul("portable", shared);
    if (p._tag === "Left") return left(p.left.reason);
    // One thread where workers cannot run (a page that is not cross-origin isolated, say).
    const single = matmulThreads().reason;
    const reasons = [native, single && `the portable matmul runs on one thread: ${single}`];
    const reason = reasons.filter((r) => r !== undefined).join("; ");
    return right(reason === "" ? { matmul: p.right } : { matmul: p.right, reason });
  };
  if (choice === "portable") return portable();
  if (choice === "auto" && !isDeno()) {
    // A browser: no Deno FFI, so no native BLAS; the portable kernel is the fast one here.
    return portable("no Deno FFI in this runtime (a browser?), so no native BLAS");
  }
  const native = installMatmul("native", {
    ...shared,
    ...(threads === undefined ? {} : { threads }),
    ...(blasCore === undefined ? {} : { blasCore }),
  });
  if (native._tag === "Right") {
    const core = installedBlas()?.core;
    return right({ matmul: native.right, ...(core == null ? {} : { blasCore: core }) });
  }
  if (choice === "native") return left(`native matmul unavailable: ${native.left.reason}`);
  return portable(native.left.reason);
};

/**
 * Start (or switch to) a tfjs backend, make it the active one and install
 * the gradients the lowering relies on (`registerGradients` in `lower.ts`)
 * and, on wasm, the replacement matmul kernel (`ops/matmul.ts`).
 *
 * WASM is the default, with `matmul: "auto"`: native BLAS when it loads
 * (needs `--allow-ffi`), else the portable kernel; `info.matmul` says which
 * and `info.reason` why native was not used. Forcing `matmul: "native"`
 * when it cannot load is a Left. The CPU backend is an explicit fallback: it is never
 * chosen silently when WASM fails, because it is 2–9× slower (docs/substrate.md)
 * and a run on it would pass for a performance regression. Calling this twice with
 * the same backend is a no-op that returns the same info.
 *
 * In a browser (no `Deno` global) "auto" skips the FFI attempt and runs the
 * portable kernel, saying so in `info.reason`, and the `.wasm` binaries are
 * fetched from `opts.wasmPaths`, which a bundle must give (see
 * {@linkcode BackendOptions}).
 *
 * @example
 * ```ts
 * import { startBackend } from "./backend.ts";
 * const started = await startBackend({ backend: "cpu" });
 * if (started._tag === "Left") throw started.left;
 * console.log(started.right.name); // "cpu"
 * const wasm = await startBackend({ matmul: "auto" });
 * if (wasm._tag === "Right") console.log(wasm.right.matmul, wasm.right.reason ?? "");
 * ```
 */
export const startBackend = async (
  opts: BackendOptions = {},
): Promise<Either<BackendError, BackendInfo>> => {
  const name: string = opts.backend ?? "wasm";
  if (name !== "wasm" && name !== "cpu") {
    return left(new BackendError(name, `unknown backend; expected "wasm" or "cpu"`));
  }
  const choice: string = opts.matmul ?? "auto";
  if (choice !== "auto" && choice !== "native" && choice !== "portable") {
    return left(
      new BackendError(name, `unknown matmul '${choice}'; expected "auto", "native" or "portable"`),
    );
  }
  try {
    let prefix: string | null = null;
    if (tf.engine().backendName !== name) {
      if (name === "wasm") {
        const set = await registerWasm(opts.wasmPaths);
        if (set._tag === "Left") return left(new BackendError(name, set.left));
        prefix = set.right;
      } else await registerCpu();
      const ok = await tf.setBackend(name);
      if (!ok) {
        const why = "tf.setBackend returned false (see the tfjs warning above)";
        const where = prefix ?? "the folder the first wasm start set";
        return left(
          new BackendError(
            name,
            name === "wasm"
              ? `${why}; binaries were looked up in ${where}. ` +
                `Pass { backend: "cpu" } to run on the slow JS backend.`
              : why,
          ),
        );
      }
    }
    if (name === "cpu") silenceCpuGreeting();
    // tfjs-core alone registers no gradients; the lowering's are installed here, at start-up, not on import.
    registerGradients();
    const build = name === "wasm" ? chooseKernelBuild(opts.kernels ?? "auto") : undefined;
    registerFusedKernels();
    await registerFusionKernels();
    const arch = isDeno() ? { arch: Deno.build.arch } : {};
    if (name === "cpu") return right({ name, simd: false, matmul: "stock", ...arch });
    const simd = await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT") === true;
    // The portable matmul's kernels, compiled here because a browser's main thread
    // refuses to compile them synchronously; a failure shows when the kernel first runs.
    if (choice !== "native") await compileGemm().catch(() => undefined);
    const mm = chooseMatmul(choice, opts.blasThreads, opts.minParallelWeights, opts.blasCore);
    if (mm._tag === "Left") return left(new BackendError(name, mm.left));
    const dot = build === "relaxed" ? { int8Dot: chooseInt8Dot(opts.int8Dot ?? "auto") } : {};
    return right({ name, simd, ...mm.right, kernels: build!, ...dot, ...arch });
  } catch (e) {
    return left(new BackendError(name, describeError(e), { cause: e }));
  }
};

/** The int8 dot sequence `want` names, or the faster of the two on this CPU (timed once). */
let timedDot: Int8Dot | undefined;
const chooseInt8Dot = (want: string): Int8Dot => {
  if (want !== "auto" && want !== "dot16" && want !== "dotadd") {
    throw new RangeError(`unknown int8Dot '${want}'; expected "auto", "dot16" or "dotadd"`);
  }
  if (want === "auto") {
    if (timedDot === undefined) {
      const backend = tf.backend() as unknown as WasmBackend;
      // The kernels' own scratch slot: the fused kernels reuse (and grow) it afterwards.
      const base = scratch(backend, INT8_DOT_PROBE_BYTES, SCRATCH.kernel);
      timedDot = timeInt8Dots(blocks.on(backend), heapMemory(backend), base).faster;
    }
    setInt8Dot(timedDot);
    return timedDot;
  }
  setInt8Dot(want);
  return want;
};

/**
 * {@linkcode startBackend} for scripts and tests: returns the info or throws
 * the {@linkcode BackendError}.
 *
 * @example
 * ```ts
 * import { ensureBackend } from "./backend.ts";
 * const { name } = await ensureBackend({ backend: "cpu" });
 * ```
 */
export const ensureBackend = async (opts: BackendOptions = {}): Promise<BackendInfo> => {
  const started = await startBackend(opts);
  if (started._tag === "Left") throw started.left;
  return started.right;
};
