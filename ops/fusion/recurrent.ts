/**
 * The `recurrent` region — one GRU or NC-GRU step, h' from x and h — in one
 * kernel: its four products through the matmul tier (gx = x·Wx + bx onto
 * the bias, h·Ur, h·Uz, h·Uc) and every gate in one pass of
 * kernels/recurrent.c, where the op-by-op path ran three slices, two
 * sigmoids, tanh or modReLU's five kernels and seven elementwise ops. The
 * backward pass is one kernel for the gates and the products' gradients.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { bodyInputs, type FusedKernel, type FusedRegion } from "../fusion.ts";
import { installedMatmul } from "../matmul.ts";
import { type KernelArgs, offsetOf, type WasmBackend } from "../heap.ts";
import { blocks } from "./blocks.ts";
import { gemmOnHeap, type HeapWeight, matvec } from "./products.ts";
import { heapWeight } from "./weights.ts";

/** Kernel name of the forward pass: h', h·Uc, the saved gates. */
export const RECURRENT = "CrtRecurrent";
/** Kernel name of the gates' backward pass: dgx, dhc, z ⊙ dh', dmodBias. */
export const RECURRENT_GRAD = "CrtRecurrentGrad";

/**
 * The GRU / NC-GRU cell step on the heap (byte offsets): x [nb, din] and
 * h [nb, m] → out [nb, m], with h·Uc into `hc` [nb, m] and the gates into
 * `saved` [3, nb, m] (what the backward pass reads); `gx` [nb, 3m], `hr`
 * and `hz` [nb, m] are scratch. `bx` and `mb` (NC-GRU's modReLU bias, 0 when
 * absent) are offsets, the weights {@linkcode HeapWeight}s.
 */
export interface RecurrentOnHeap {
  readonly x: number;
  readonly h: number;
  readonly nb: number;
  readonly wx: HeapWeight;
  readonly bx: number;
  readonly ur: HeapWeight;
  readonly uz: HeapWeight;
  readonly uc: HeapWeight;
  readonly mb: number;
  readonly out: number;
  readonly hc: number;
  readonly saved: number;
  readonly gx: number;
  readonly hr: number;
  readonly hz: number;
}

/** Run the cell step on the heap (see {@linkcode RecurrentOnHeap}). */
export const recurrentOnHeap = (b: WasmBackend, c: RecurrentOnHeap): void => {
  const k = blocks.on(b);
  const m = c.ur.n, nb = c.nb;
  const product = (a: number, w: HeapWeight, y: number, acc: boolean) =>
    w.kind === "q8" // a q8 weight (inference): a matrix-vector product per row
      ? matvec(b, w, { x: a, y, rows: nb, accumulate: acc })
      : gemmOnHeap(b, {
        m: nb,
        n: w.n,
        k: w.k,
        a,
        transposeA: false,
        b: w.at,
        transposeB: false,
        c: y,
        accumulate: acc,
      });
  k.bias_rows(c.gx, c.bx, 0, nb, 3 * m);
  product(c.x, c.wx, c.gx, true);
  product(c.h, c.ur, c.hr, false);
  product(c.h, c.uz, c.hz, false);
  product(c.h, c.uc, c.hc, false);
  k.gru_gates(c.gx, c.hr, c.hz, c.hc, c.h, c.mb, nb, m, c.out, c.saved);
};

/** The cell's weights and biases of its tfjs inputs, on the heap (x's width din, h's m). */
export const recurrentParamsOnHeap = (
  b: WasmBackend,
  t: Readonly<Record<string, tf.TensorInfo | undefined>>,
  din: number,
  m: number,
): Pick<RecurrentOnHeap, "wx" | "bx" | "ur" | "uz" | "uc" | "mb"> => {
  return {
    wx: heapWeight(b, t.wx!, din, 3 * m),
    bx: offsetOf(b, t.bx!),
    ur: heapWeight(b, t.ur!, m, m),
    uz: heapWeight(b, t.uz!, m, m),
    uc: heapWeight(b, t.uc!, m, m),
    mb: t.mb === undefined ? 0 : offsetOf(b, t.mb),
  };
};

const forwardWasm = ({ inputs, backend }: KernelArgs): tf.TensorInfo[] => {
  const b = backend as WasmBackend;
  const t = inputs as Record<string, tf.TensorInfo | undefined>;
  const [nb] = t.x!.shape;
  const m = t.h!.shape[1];
  const gx = b.makeOutput([nb, 3 * m], "float32");
  const hr = b.makeOutput([nb, m], "float32"), hz = b.makeOutput([nb, m], "float32");
  const hc = b.makeOutput([nb, m], "float32");
  const out = b.makeOutput([nb, m], "float32");
  const saved = b.makeOutput([3, nb, m], "float32");
  const at = (u: tf.TensorInfo) => offsetOf(b, u);
  recurrentOnHeap(b, {
    x: at(t.x!),
    h: at(t.h!),
    nb,
    ...recurrentParamsOnHeap(b, t, t.x!.shape[1], m),
    out: at(out),
    hc: at(hc),
    saved: at(saved),
    gx: at(gx),
    hr: at(hr),
    hz: at(hz),
  });
  for (const u of [gx, hr, hz]) b.disposeData(u.dataId);
  return [out, hc, saved];
};

const backwardWasm = ({ inputs, backend }: KernelArgs): tf.TensorInfo[] => {
  const b = backend as WasmBackend;
  const { dy, saved, hc, h, mb } = inputs as Record<string, tf.TensorInfo | undefined>;
  const [nb, m] = h!.shape;
  const dgx = b.makeOutput([nb, 3 * m], "float32");
  const dhc = b.makeOutput([nb, m], "float32"), dh = b.makeOutput([nb, m], "float32");
  const dmb = b.makeOutput([m], "float32");
  const at = (t: tf.TensorInfo | undefined) => (t === undefined ? 0 : offsetOf(b, t));
  blocks.on(b).gru_gates_grad(
    at(dy),
    at(saved),
    at(hc),
    at(h),
    at(mb),
    nb,
    m,
    at(dgx),
    at(dhc),
    at(dh),
    mb === undefined ? 0 : at(dmb),
  );
  return [dgx, dhc, dh, dmb];
};

type GradArgs = (tf.Tensor | tf.GradSaveFunc)[];

const run: FusedKernel["run"] = (op, inputs) => {
  const modrelu = op.attrs.modrelu === true;
  if (bodyInputs(op).some((n) => n.dtype === "q8")) {
    // q8 weights have no gradient: a model file's, run for inference.
    const [x, h, wx, bx, ur, uz, uc, mb] = inputs;
    const named: Record<string, tf.Tensor> = { x, h, wx, bx, ur, uz, uc };
    if (modrelu) named.mb = mb;
    const [out, hc, saved] = tf.engine().runKernel(RECURRENT, named) as tf.Tensor[];
    hc.dispose();
    saved.dispose();
    return [out];
  }
  const f = tf.customGrad((...args: GradArgs) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const [x, h, wx, bx, ur, uz, uc, mb] = args.slice(0, -1) as tf.Tensor[];
    const named: Record<string, tf.Tensor> = { x, h, wx, bx, ur, uz, uc };
    if (modrelu) named.mb = mb;
    const [out, hc, saved] = tf.engine().runKernel(RECURRENT, named) as tf.Tensor[];
    save([x, h, wx, ur, uz, uc, hc, saved, ...(modrelu ? [mb] : [])]);
    return {
      value: out,
      gradFunc: (dy: tf.Tensor, s: tf.Tensor[]) => {
        const [xs, hs, wxs, urs, uzs, ucs, hcs, gates, mbs] = s;
        const g: Record<string, tf.Tensor> = { dy, saved: gates, hc: hcs, h: hs };
        if (modrelu) g.mb = mbs;
        const [dgx, dhc, dhz0, dmb] = tf.engine().runKernel(RECURRENT_GRAD, g) as tf.Tensor[];
        const [nb, m] = hs.shape;
        const dhr = tf.slice(dgx, [0, 0], [nb, m]), dhz = tf.slice(dgx, [0, m], [nb, m]);
        const dx = tf.matMul(dgx, wxs, false, true);
        const dwx = tf.matMul(xs, dgx, true, false);
        const dbx = tf.reshape(tf.matMul(tf.ones([1, nb]), dgx), [3 * m]);
        const dur = tf.matMul(hs, dhr, true, false);
        const duz = tf.matMul(hs, dhz, true, false);
        const duc = tf.matMul(hs, dhc, true, false);
        const dh = tf.addN([
          dhz0,
          tf.matMul(dhr, urs, false, true),
          tf.matMul(dhz, uzs, false, true),
          tf.matMul(dhc, ucs, false, true),
        ]);
        return [dx, dh, dwx, dbx, dur, duz, duc, ...(modrelu ? [dmb] : [])];
      },
    };
  });
  return [f(...inputs)];
};

/**
 * Without a gradient a recurrent region is one call of its kernel, whose
 * first output is the new state (directGraph's steps).
 */
const bindInference: FusedKernel["bindInference"] = (op) => ({
  kernel: RECURRENT,
  inputs: ["x", "h", "wx", "bx", "ur", "uz", "uc", ...(op.attrs.modrelu === true ? ["mb"] : [])],
  attrs: {},
  keep: 1,
});

/** One kernel takes the step: float32 x [B, Din], h [B, M] and the cell's weights. */
const supports = (r: FusedRegion, opts: { readonly gradients: boolean }): boolean => {
  if (installedMatmul() === "stock") return false;
  const [x, h, wx, , ur, uz, uc] = r.inputs;
  if (x.shape.length !== 2 || h.shape.length !== 2) return false;
  const weights = [wx, ur, uz, uc];
  // q8 weights (N a multiple of 4) for inference only; everything else float32.
  const q8 = weights.some((w) => w.dtype === "q8");
  if (q8 && (opts.gradients || weights.some((w) => w.shape[1] % 4 !== 0))) return false;
  return r.inputs.every((i, k) => i.dtype === "float32" || (q8 && [2, 4, 5, 6].includes(k)));
};

/** The kernel of `recurrent` regions, for ops/fusion.ts. */
export const recurrentKernel: FusedKernel = {
  kind: "recurrent",
  backends: ["wasm"],
  supports,
  run,
  bindInference,
  kernels: {
    forward: [RECURRENT, "Identity"],
    backward: [RECURRENT_GRAD, "Slice", "BatchMatMul", "Reshape", "AddN"],
  },
};

/** The tfjs kernels this module registers. */
export const recurrentKernels: readonly tf.KernelConfig[] = [
  { kernelName: RECURRENT, backendName: "wasm", kernelFunc: forwardWasm as tf.KernelFunc },
  { kernelName: RECURRENT_GRAD, backendName: "wasm", kernelFunc: backwardWasm as tf.KernelFunc },
];
