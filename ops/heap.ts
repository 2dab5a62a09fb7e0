/**
 * Our WebAssembly kernels on tfjs-backend-wasm's own heap: which build of
 * them runs (relaxed SIMD where the engine has it, SIMD128 otherwise), the
 * parts of the wasm backend they use, and a scratch area for kernels that
 * need one.
 *
 * Every kernel module (kernels/*.c, built by kernels/build.ts) exists twice:
 * `wasmBase64` with SIMD128 only and `relaxedBase64` with relaxed SIMD as
 * well (fused multiply-adds). {@linkcode chooseKernelBuild} picks one for
 * the whole process — by default the relaxed build when
 * `WebAssembly.validate` accepts it — and every module loads that build.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import { relaxedBase64 as probeBase64 } from "../kernels/fused_wasm.ts";

/**
 * The build of our kernels that runs: `relaxed` (relaxed SIMD: fused
 * multiply-add) or `simd128` (the base SIMD set, the fallback).
 *
 * @example
 * ```ts
 * import { kernelBuild, type KernelBuildName } from "./heap.ts";
 * const build: KernelBuildName = kernelBuild();
 * console.log(build); // "relaxed" on an engine with relaxed SIMD
 * ```
 */
export type KernelBuildName = "relaxed" | "simd128";

/** What {@linkcode chooseKernelBuild} may be asked for. */
export type KernelBuildChoice = "auto" | KernelBuildName;

/** Both builds of one kernel module, as kernels/build.ts writes them. */
export interface KernelModule {
  /** SIMD128 only. */
  readonly wasmBase64: string;
  /** With relaxed SIMD. */
  readonly relaxedBase64: string;
}

const decode64 = (s: string): Uint8Array => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

/** Whether this engine validates relaxed-SIMD code (our own relaxed module is the probe). */
export const hasRelaxedSimd = (): boolean => {
  try {
    return WebAssembly.validate(decode64(probeBase64) as BufferSource);
  } catch {
    return false;
  }
};

let chosen: KernelBuildName | undefined;

/**
 * Fix the build every kernel module loads, once per process (the first
 * module to load otherwise fixes the default): `auto` is relaxed where the
 * engine validates it. Asking for `relaxed` on an engine without it is an
 * Error; asking for another build after one was fixed is an Error too (a
 * module already instantiated cannot change).
 *
 * @example
 * ```ts
 * import { chooseKernelBuild } from "./heap.ts";
 * console.log(chooseKernelBuild("auto")); // "relaxed" or "simd128"
 * ```
 */
export const chooseKernelBuild = (choice: KernelBuildChoice = "auto"): KernelBuildName => {
  const want: KernelBuildName = choice === "auto"
    ? (hasRelaxedSimd() ? "relaxed" : "simd128")
    : choice;
  if (want === "relaxed" && !hasRelaxedSimd()) {
    throw new Error("this engine has no relaxed SIMD: the kernels' simd128 build must run");
  }
  if (chosen !== undefined && choice !== "auto" && chosen !== want) {
    throw new Error(
      `the kernels' ${chosen} build is already loaded; a process runs one build (asked: ${want})`,
    );
  }
  chosen ??= want;
  return chosen;
};

/** The build that runs (fixing the default when none was chosen yet). */
export const kernelBuild = (): KernelBuildName => chosen ?? chooseKernelBuild("auto");

/** The bytes of `m` in the build that runs. */
export const moduleBytes = (m: KernelModule): Uint8Array =>
  decode64(kernelBuild() === "relaxed" ? m.relaxedBase64 : m.wasmBase64);

/**
 * The parts of tfjs-backend-wasm 4.22's `BackendWasm` our kernels rely on
 * (fields its typings mark private included).
 */
export interface WasmBackend {
  readonly wasm: {
    /** Emscripten re-creates these views when memory grows: read them after every allocation. */
    readonly HEAPF32: Float32Array;
    readonly HEAP32: Int32Array;
    readonly HEAPU8: Uint8Array;
    /** Emscripten's allocator on the heap (byte offsets). */
    _malloc(bytes: number): number;
    _free(offset: number): void;
    /** The exports of tfjs's own module; `memory` is its heap. */
    readonly asm?: { readonly memory?: WebAssembly.Memory };
  };
  readonly dataIdMap: { get(dataId: unknown): { id: number; memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: unknown): boolean;
}

/** Byte offset of a tensor's data in the wasm heap. */
export const offsetOf = (b: WasmBackend, t: tf.TensorInfo): number => {
  const d = b.dataIdMap.get(t.dataId);
  if (d === undefined) throw new Error("kernel: tensor data is not on the wasm heap");
  return d.memoryOffset;
};

/** tfjs-backend-wasm's heap. */
export const heapMemory = (b: WasmBackend): WebAssembly.Memory => {
  const memory = b.wasm.asm?.memory;
  if (!(memory instanceof WebAssembly.Memory)) {
    throw new Error("kernels: tfjs-backend-wasm does not expose its memory (Module.asm.memory)");
  }
  return memory;
};

/**
 * A loader of one kernel module: compiled once (in the build that runs),
 * instantiated once per backend on that backend's heap. `compile` compiles
 * it asynchronously (a browser's main thread refuses large synchronous
 * compiles), `on(backend)` gives its exports.
 */
export const kernelLoader = <E>(m: KernelModule) => {
  let compiled: WebAssembly.Module | undefined;
  const instances = new WeakMap<object, E>();
  return {
    compile: async (): Promise<void> => {
      compiled ??= await WebAssembly.compile(moduleBytes(m) as BufferSource);
    },
    on: (backend: WasmBackend): E => {
      const have = instances.get(backend);
      if (have !== undefined) return have;
      compiled ??= new WebAssembly.Module(moduleBytes(m) as BufferSource);
      const inst = new WebAssembly.Instance(compiled, { env: { memory: heapMemory(backend) } });
      const ex = inst.exports as unknown as E;
      instances.set(backend, ex);
      return ex;
    },
  };
};

/**
 * Buffers on `backend`'s heap that live together and are freed together
 * (a decode loop's caches, a planned step's intermediates): `alloc` gives a
 * 16-byte aligned byte offset, `free` releases every buffer it gave.
 */
export const heapArena = (
  backend: WasmBackend,
  what: string,
): { alloc(bytes: number): number; free(): void } => {
  const raw: number[] = [];
  return {
    alloc: (bytes) => {
      const r = backend.wasm._malloc(bytes + 16) >>> 0;
      if (r === 0) throw new RangeError(`${what}: cannot allocate ${bytes} bytes on the heap`);
      raw.push(r);
      return (r + 15) & ~15;
    },
    free: () => {
      for (const r of raw.splice(0)) backend.wasm._free(r);
    },
  };
};

/**
 * Scratch areas on the heap for kernels that need working memory beyond
 * their outputs: one per (backend, slot), grown to the largest request and
 * kept, 16-byte aligned. A kernel uses its own slot, so a helper it calls
 * (which takes another) cannot move its buffers; an offset is valid until
 * the next request of the same slot.
 */
const scratches = new WeakMap<object, Map<number, { raw: number; at: number; bytes: number }>>();

/** Scratch slots: one per kind of user. */
export const SCRATCH = { gemm: 0, matvec: 1, kernel: 2 } as const;

/** `bytes` of scratch in `slot` on `backend`'s heap: its byte offset, 16-byte aligned. */
export const scratch = (
  backend: WasmBackend,
  bytes: number,
  slot: number = SCRATCH.kernel,
): number => {
  let slots = scratches.get(backend);
  if (slots === undefined) scratches.set(backend, slots = new Map());
  const have = slots.get(slot);
  if (have !== undefined && have.bytes >= bytes) return have.at;
  if (have !== undefined) backend.wasm._free(have.raw);
  const size = Math.max(bytes, (have?.bytes ?? 0) * 2, 1 << 16);
  const raw = backend.wasm._malloc(size + 16) >>> 0;
  if (raw === 0) throw new RangeError(`kernels: cannot allocate ${size} bytes of scratch`);
  const at = (raw + 15) & ~15;
  slots.set(slot, { raw, at, bytes: size });
  return at;
};

/** What tfjs hands a kernel function: its named inputs, the backend and the attributes. */
export interface KernelArgs {
  readonly inputs: tf.NamedTensorInfoMap;
  readonly backend: unknown;
  readonly attrs?: tf.NamedAttrMap;
}

/** The parts of tfjs-backend-cpu's `MathBackendCPU` our cpu kernels use. */
export interface CpuBackend {
  readonly data: { get(dataId: unknown): { values: unknown } };
  makeTensorInfo(
    shape: number[],
    dtype: tf.DataType,
    values: Float32Array | Int32Array,
  ): tf.TensorInfo;
}
