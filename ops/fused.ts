/**
 * Fused kernels: softmax cross-entropy (forward and gradient) and AdamW, as
 * tfjs kernels of their own, plus a sum of squares for gradient norms.
 *
 * On wasm they run the WebAssembly SIMD code of `kernels/fused.c`, which
 * imports tfjs-backend-wasm's own memory and works on tensors in place: one
 * pass over the logits instead of the eight kernels (max, sub, exp, sum,
 * gather, …) a composed cross-entropy dispatches, each a full pass over
 * [B·S, V], and one pass per parameter instead of ~12 small kernels for
 * AdamW. On the cpu backend the same kernels are plain JavaScript loops, so a
 * lowering can use them on either backend (`KERNELS` in `lower.ts` stays one
 * table).
 *
 * Kernels (all float32, row-major):
 * - `CrtSoftmaxXent`: logits [N, V], int32 targets [N] → NLL [N], and for
 *   the gradient 1 / Σ_j e^(x_rj − max_r) [N] and the exponentials
 *   e^(x − max) [N, V] (so the gradient computes no exponential again).
 * - `CrtSoftmaxXentGrad`: exponentials, targets, inverse sums, dy [N] →
 *   (softmax − onehot)·dy [N, V].
 * - `CrtAdamW`: p, g, m, v (same shape) and scalars → p', m', v'.
 * - `CrtGatherRows`: table [R, D], int32 ids of any shape → rows [...ids, D]
 *   (the stock wasm GatherV2 took 15 ms for 700 rows of 256).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import * as fusedModule from "../kernels/fused_wasm.ts";
import { moduleBytes } from "./heap.ts";

/** Kernel name of the fused softmax cross-entropy forward. */
export const XENT = "CrtSoftmaxXent";
/** Kernel name of its gradient with respect to the logits. */
export const XENT_GRAD = "CrtSoftmaxXentGrad";
/** Kernel name of the fused AdamW update. */
export const ADAMW = "CrtAdamW";
/** Kernel name of the embedding row gather. */
export const GATHER_ROWS = "CrtGatherRows";

/** What `kernels/fused.c` exports; pointers are byte offsets into tfjs's heap. */
interface FusedExports {
  xent_stats(x: number, n: number, v: number, rowMax: number, rowSum: number, e: number): void;
  xent_grad(e: number, t: number, inv: number, dy: number, n: number, v: number, out: number): void;
  sum_squares(x: number, n: number): number;
  gather_rows(table: number, ids: number, n: number, d: number, out: number): void;
  adamw(
    p: number,
    g: number,
    m: number,
    v: number,
    n: number,
    lr: number,
    beta1: number,
    beta2: number,
    eps: number,
    bc1: number,
    bc2: number,
    decay: number,
    clip: number,
    pOut: number,
    mOut: number,
    vOut: number,
  ): void;
}

/** The parts of tfjs-backend-wasm 4.22's `BackendWasm` used here. */
interface WasmBackend {
  readonly wasm: {
    readonly HEAPF32: Float32Array;
    readonly HEAP32: Int32Array;
    readonly asm?: { readonly memory?: WebAssembly.Memory };
  };
  readonly dataIdMap: { get(dataId: unknown): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
}

/** The parts of tfjs-backend-cpu's `MathBackendCPU` used here. */
interface CpuBackend {
  readonly data: { get(dataId: unknown): { values: unknown } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array): tf.TensorInfo;
}

let compiled: WebAssembly.Module | undefined;
const instances = new WeakMap<object, FusedExports>();

/** The kernel module instantiated on `backend`'s heap (once per backend). */
const exportsFor = (backend: WasmBackend): FusedExports => {
  const have = instances.get(backend);
  if (have !== undefined) return have;
  const memory = backend.wasm.asm?.memory;
  if (!(memory instanceof WebAssembly.Memory)) {
    throw new Error(
      "fused kernels: tfjs-backend-wasm does not expose its memory (Module.asm.memory)",
    );
  }
  compiled ??= new WebAssembly.Module(moduleBytes(fusedModule) as BufferSource);
  const inst = new WebAssembly.Instance(compiled, { env: { memory } });
  const ex = inst.exports as unknown as FusedExports;
  instances.set(backend, ex);
  return ex;
};

const offsetOf = (b: WasmBackend, t: tf.TensorInfo): number => {
  const d = b.dataIdMap.get(t.dataId);
  if (d === undefined) throw new Error("fused kernels: tensor data is not on the wasm heap");
  return d.memoryOffset;
};

const cpuValues = <A>(b: CpuBackend, t: tf.TensorInfo): A => b.data.get(t.dataId).values as A;

interface KernelArgs {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}

const rowsAndWidth = (logits: tf.TensorInfo, targets: tf.TensorInfo): [number, number] => {
  if (logits.shape.length !== 2 || logits.dtype !== "float32") {
    throw new Error(
      `${XENT}: logits must be float32 [N, V], got ${logits.dtype} [${logits.shape}]`,
    );
  }
  const [n, v] = logits.shape;
  if (targets.dtype !== "int32" || targets.shape.length !== 1 || targets.shape[0] !== n) {
    throw new Error(
      `${XENT}: targets must be int32 [${n}], got ${targets.dtype} [${targets.shape}]`,
    );
  }
  return [n, v];
};

/** The first target outside [0, v), as an error naming its row. */
const checkTargets = (t: Int32Array, n: number, v: number): void => {
  for (let r = 0; r < n; r++) {
    const x = t[r];
    if (!(x >= 0 && x < v)) {
      throw new RangeError(`crossEntropy: target ${x} of row ${r} is outside [0, ${v})`);
    }
  }
};

// --- cross-entropy ------------------------------------------------------------

/**
 * From row maxima (in `inv`) and sums of exponentials (in `nll`), in place:
 * NLL_r = max_r + log(sum_r) − x_r,t_r and inv_r = 1 / sum_r.
 */
const finishRows = (
  x: Float32Array,
  xAt: number,
  t: Int32Array,
  tAt: number,
  n: number,
  v: number,
  inv: Float32Array,
  invAt: number,
  nll: Float32Array,
  nllAt: number,
): void => {
  for (let r = 0; r < n; r++) {
    const sum = nll[nllAt + r];
    nll[nllAt + r] = inv[invAt + r] + Math.log(sum) - x[xAt + r * v + t[tAt + r]];
    inv[invAt + r] = 1 / sum;
  }
};

const xentWasm = ({ inputs, backend }: KernelArgs): tf.TensorInfo[] => {
  const b = backend as WasmBackend;
  const { logits, targets } = inputs as { logits: tf.TensorInfo; targets: tf.TensorInfo };
  const [n, v] = rowsAndWidth(logits, targets);
  const tAt = offsetOf(b, targets) >>> 2;
  checkTargets(b.wasm.HEAP32.subarray(tAt, tAt + n), n, v);
  const k = exportsFor(b);
  const nll = b.makeOutput([n], "float32"), inv = b.makeOutput([n], "float32");
  const e = b.makeOutput([n, v], "float32");
  const xOff = offsetOf(b, logits), invOff = offsetOf(b, inv), nllOff = offsetOf(b, nll);
  k.xent_stats(xOff, n, v, invOff, nllOff, offsetOf(b, e));
  const heap = b.wasm.HEAPF32; // read after every allocation: memory may have grown
  finishRows(heap, xOff >>> 2, b.wasm.HEAP32, tAt, n, v, heap, invOff >>> 2, heap, nllOff >>> 2);
  return [nll, inv, e];
};

const xentCpu = ({ inputs, backend }: KernelArgs): tf.TensorInfo[] => {
  const b = backend as CpuBackend;
  const { logits, targets } = inputs as { logits: tf.TensorInfo; targets: tf.TensorInfo };
  const [n, v] = rowsAndWidth(logits, targets);
  const x = cpuValues<Float32Array>(b, logits), t = cpuValues<Int32Array>(b, targets);
  checkTargets(t, n, v);
  const inv = new Float32Array(n), nll = new Float32Array(n), e = new Float32Array(n * v);
  for (let r = 0; r < n; r++) {
    let m = -Infinity, s = 0;
    for (let j = r * v; j < (r + 1) * v; j++) m = Math.max(m, x[j]);
    for (let j = r * v; j < (r + 1) * v; j++) s += e[j] = Math.exp(x[j] - m);
    inv[r] = m;
    nll[r] = s;
  }
  finishRows(x, 0, t, 0, n, v, inv, 0, nll, 0);
  return [
    b.makeTensorInfo([n], "float32", nll),
    b.makeTensorInfo([n], "float32", inv),
    b.makeTensorInfo([n, v], "float32", e),
  ];
};

const gradShapes = (e: tf.TensorInfo, targets: tf.TensorInfo): [number, number] => {
  try {
    return rowsAndWidth(e, targets);
  } catch (err) {
    throw new Error(String(err).replace(XENT, XENT_GRAD));
  }
};

const xentGradWasm = ({ inputs, backend }: KernelArgs): tf.TensorInfo => {
  const b = backend as WasmBackend;
  const { e, targets, inv, dy } = inputs as Record<string, tf.TensorInfo>;
  const [n, v] = gradShapes(e, targets);
  const k = exportsFor(b);
  const out = b.makeOutput([n, v], "float32");
  k.xent_grad(
    offsetOf(b, e),
    offsetOf(b, targets),
    offsetOf(b, inv),
    offsetOf(b, dy),
    n,
    v,
    offsetOf(b, out),
  );
  return out;
};

const xentGradCpu = ({ inputs, backend }: KernelArgs): tf.TensorInfo => {
  const b = backend as CpuBackend;
  const { e, targets, inv, dy } = inputs as Record<string, tf.TensorInfo>;
  const [n, v] = gradShapes(e, targets);
  const x = cpuValues<Float32Array>(b, e), t = cpuValues<Int32Array>(b, targets);
  const s = cpuValues<Float32Array>(b, inv), d = cpuValues<Float32Array>(b, dy);
  const out = new Float32Array(n * v);
  for (let r = 0; r < n; r++) {
    const k = s[r] * d[r];
    for (let j = r * v; j < (r + 1) * v; j++) out[j] = x[j] * k;
    out[r * v + t[r]] -= d[r];
  }
  return b.makeTensorInfo([n, v], "float32", out);
};

// --- AdamW ----------------------------------------------------------------------

/** Scalars of one AdamW update (see `kernels/fused.c` `adamw`). */
export interface AdamWScalars {
  /** Learning rate. */
  readonly lr: number;
  /** First-moment decay β1. */
  readonly beta1: number;
  /** Second-moment decay β2. */
  readonly beta2: number;
  /** Denominator floor. */
  readonly eps: number;
  /** Bias corrections 1 − β1^t and 1 − β2^t. */
  readonly bc1: number;
  /** See bc1. */
  readonly bc2: number;
  /** Multiplier on p before the step: 1 − lr·weightDecay, or 1 for no decay. */
  readonly decay: number;
  /** Gradient scale from global-norm clipping (1 when not clipped). */
  readonly clip: number;
}

const adamwInputs = (inputs: tf.NamedTensorInfoMap): tf.TensorInfo[] => {
  const { p, g, m, v } = inputs as Record<string, tf.TensorInfo>;
  for (const t of [g, m, v]) {
    if (t.dtype !== "float32" || t.shape.join() !== p.shape.join()) {
      throw new Error(
        `${ADAMW}: p, g, m, v must be float32 of one shape, got [${p.shape}] and [${t.shape}]`,
      );
    }
  }
  return [p, g, m, v];
};

const scalarsOf = (attrs: tf.NamedAttrMap | undefined): AdamWScalars =>
  attrs as unknown as AdamWScalars;

const adamwWasm = ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] => {
  const b = backend as WasmBackend;
  const [p, g, m, v] = adamwInputs(inputs);
  const s = scalarsOf(attrs);
  const k = exportsFor(b);
  const outs = [0, 1, 2].map(() => b.makeOutput([...p.shape], "float32"));
  const at = (t: tf.TensorInfo) => offsetOf(b, t);
  k.adamw(
    at(p),
    at(g),
    at(m),
    at(v),
    tf.util.sizeFromShape(p.shape),
    s.lr,
    s.beta1,
    s.beta2,
    s.eps,
    s.bc1,
    s.bc2,
    s.decay,
    s.clip,
    at(outs[0]),
    at(outs[1]),
    at(outs[2]),
  );
  return outs;
};

const adamwCpu = ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] => {
  const b = backend as CpuBackend;
  const [p, g, m, v] = adamwInputs(inputs).map((t) => cpuValues<Float32Array>(b, t));
  const s = scalarsOf(attrs);
  const n = p.length;
  const po = new Float32Array(n), mo = new Float32Array(n), vo = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const gi = Math.fround(g[i] * s.clip);
    const mi = Math.fround(s.beta1 * m[i] + (1 - s.beta1) * gi);
    const vi = Math.fround(s.beta2 * v[i] + (1 - s.beta2) * gi * gi);
    po[i] = s.decay * p[i] - (s.lr * (mi / s.bc1)) / (Math.sqrt(vi / s.bc2) + s.eps);
    mo[i] = mi;
    vo[i] = vi;
  }
  const shape = [...(inputs.p as tf.TensorInfo).shape];
  return [po, mo, vo].map((a) => b.makeTensorInfo(shape, "float32", a));
};

// --- row gather ---------------------------------------------------------------------

const gatherShapes = (table: tf.TensorInfo, ids: tf.TensorInfo): [number, number, number] => {
  if (table.shape.length !== 2 || table.dtype !== "float32" || ids.dtype !== "int32") {
    throw new Error(
      `${GATHER_ROWS}: needs a float32 table [R, D] and int32 ids, got ${table.dtype} ` +
        `[${table.shape}] and ${ids.dtype} [${ids.shape}]`,
    );
  }
  return [table.shape[0], table.shape[1], tf.util.sizeFromShape(ids.shape)];
};

const checkIds = (ids: Int32Array, n: number, rows: number): void => {
  for (let i = 0; i < n; i++) {
    const id = ids[i];
    if (!(id >= 0 && id < rows)) {
      throw new RangeError(`embedding: id ${id} at position ${i} is outside [0, ${rows})`);
    }
  }
};

const gatherWasm = ({ inputs, backend }: KernelArgs): tf.TensorInfo => {
  const b = backend as WasmBackend;
  const { table, ids } = inputs as Record<string, tf.TensorInfo>;
  const [rows, d, n] = gatherShapes(table, ids);
  const idAt = offsetOf(b, ids) >>> 2;
  checkIds(b.wasm.HEAP32.subarray(idAt, idAt + n), n, rows);
  const k = exportsFor(b);
  const out = b.makeOutput([...ids.shape, d], "float32");
  k.gather_rows(offsetOf(b, table), offsetOf(b, ids), n, d, offsetOf(b, out));
  return out;
};

const gatherCpu = ({ inputs, backend }: KernelArgs): tf.TensorInfo => {
  const b = backend as CpuBackend;
  const { table, ids } = inputs as Record<string, tf.TensorInfo>;
  const [rows, d, n] = gatherShapes(table, ids);
  const t = cpuValues<Float32Array>(b, table), id = cpuValues<Int32Array>(b, ids);
  checkIds(id, n, rows);
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) out.set(t.subarray(id[i] * d, id[i] * d + d), i * d);
  return b.makeTensorInfo([...ids.shape, d], "float32", out);
};

// --- registration and entry points ------------------------------------------------

const KERNEL_FUNCS: Record<string, Record<"wasm" | "cpu", tf.KernelFunc>> = {
  [XENT]: { wasm: xentWasm as tf.KernelFunc, cpu: xentCpu as tf.KernelFunc },
  [XENT_GRAD]: { wasm: xentGradWasm as tf.KernelFunc, cpu: xentGradCpu as tf.KernelFunc },
  [ADAMW]: { wasm: adamwWasm as tf.KernelFunc, cpu: adamwCpu as tf.KernelFunc },
  [GATHER_ROWS]: { wasm: gatherWasm as tf.KernelFunc, cpu: gatherCpu as tf.KernelFunc },
};

/**
 * wasm's `Identity` copies its input into a new buffer. tfjs runs it for
 * every tensor a gradient function saves (`clone`), so a training step copied
 * the [B·S, V] logits, among ~140 others. Tensors are immutable and no kernel
 * here writes into an input, so the replacement shares the data, as wasm's
 * own `Reshape` does: one more reference on the same buffer.
 */
const aliasingIdentity = ({ inputs, backend }: KernelArgs): tf.TensorInfo => {
  const { x } = inputs as { x: tf.TensorInfo };
  (backend as { incRef(dataId: unknown): void }).incRef(x.dataId);
  return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
};

const installAliasingIdentity = (): void => {
  const current = tf.getKernel("Identity", "wasm");
  if (current?.kernelFunc === (aliasingIdentity as tf.KernelFunc)) return;
  if (current !== undefined) tf.unregisterKernel("Identity", "wasm");
  tf.registerKernel({
    kernelName: "Identity",
    backendName: "wasm",
    kernelFunc: aliasingIdentity as tf.KernelFunc,
  });
};

/** Names of the kernels {@linkcode registerFusedKernels} installs. */
export const FUSED_KERNELS: readonly string[] = Object.keys(KERNEL_FUNCS);

/**
 * Register the fused kernels for the wasm and cpu backends (idempotent;
 * `startBackend` calls it), and replace wasm's copying `Identity` with one
 * that shares the buffer. The wasm module is instantiated on first use, on
 * the running backend's heap.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { FUSED_KERNELS, registerFusedKernels } from "./fused.ts";
 * registerFusedKernels();
 * console.log(FUSED_KERNELS.every((k) => tf.getKernel(k, "cpu") !== undefined)); // true
 * ```
 */
export const registerFusedKernels = (): void => {
  for (const [kernelName, funcs] of Object.entries(KERNEL_FUNCS)) {
    for (const backendName of ["wasm", "cpu"] as const) {
      if (tf.getKernel(kernelName, backendName) === undefined) {
        tf.registerKernel({ kernelName, backendName, kernelFunc: funcs[backendName] });
      }
    }
  }
  installAliasingIdentity();
};

/** What {@linkcode softmaxXent} returns. */
export interface XentForward {
  /** −log softmax(x)_t per row, [N]. */
  readonly nll: tf.Tensor;
  /** 1 / Σ_j e^(x_rj − max_r) per row, [N], for the gradient. */
  readonly inv: tf.Tensor;
  /** e^(x − max_r), [N, V], for the gradient. */
  readonly exps: tf.Tensor;
}

/**
 * Softmax cross-entropy of logits [N, V] against int32 targets [N] in one
 * fused kernel: the NLL and what the gradient needs.
 */
export const softmaxXent = (logits: tf.Tensor, targets: tf.Tensor): XentForward => {
  const [nll, inv, exps] = tf.engine().runKernel(XENT, { logits, targets }) as unknown as [
    tf.Tensor,
    tf.Tensor,
    tf.Tensor,
  ];
  return { nll, inv, exps };
};

/** Rows of `table` [R, D] at int32 `ids` (any shape): [...ids, D]. */
export const gatherRows = (table: tf.Tensor, ids: tf.Tensor): tf.Tensor =>
  tf.engine().runKernel(GATHER_ROWS, { table, ids }) as tf.Tensor;

/** d NLL / d logits = (softmax − onehot)·dy [N, V], from the forward's outputs. */
export const softmaxXentGrad = (
  fwd: Pick<XentForward, "inv" | "exps">,
  targets: tf.Tensor,
  dy: tf.Tensor,
): tf.Tensor =>
  tf.engine().runKernel(XENT_GRAD, { e: fwd.exps, targets, inv: fwd.inv, dy }) as tf.Tensor;

/** One fused AdamW update of a parameter: [p', m', v']. */
export const adamwUpdate = (
  p: tf.Tensor,
  g: tf.Tensor,
  m: tf.Tensor,
  v: tf.Tensor,
  s: AdamWScalars,
): [tf.Tensor, tf.Tensor, tf.Tensor] =>
  tf.engine().runKernel(ADAMW, { p, g, m, v }, { ...s }) as unknown as [
    tf.Tensor,
    tf.Tensor,
    tf.Tensor,
  ];

/**
 * Σ x² over every entry of every tensor, in float64. On wasm it reads the
 * tensors in place with the SIMD kernel; elsewhere it reads their values.
 */
export const sumOfSquares = (ts: readonly tf.Tensor[]): number => {
  const backend = tf.backend() as unknown;
  if (tf.getBackend() === "wasm") {
    const b = backend as WasmBackend;
    const k = exportsFor(b);
    return ts.reduce((acc, t) => acc + k.sum_squares(offsetOf(b, t), t.size), 0);
  }
  let acc = 0;
  for (const t of ts) {
    const x = t.dataSync() as Float32Array;
    for (let i = 0; i < x.length; i++) acc += x[i] * x[i];
  }
  return acc;
};
