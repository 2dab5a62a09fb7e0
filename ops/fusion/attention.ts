/**
 * The `attention` region in one kernel (kernels/attention.c): for every
 * batch row and head, softmax(q kᵀ / √E, causal) v, read from the
 * projections' own layouts — q [B, S, D], kv [B, T, 2D] — and written as the
 * merged heads [B, S, D]. The op-by-op path split the heads with transposes,
 * sliced the keys and values, and ran scale, mask, softmax and two batched
 * products as kernels of their own. The forward pass keeps P [B, H, S, T]
 * for the backward one, which computes dq and dkv in one more call.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { FusedKernel, FusedRegion } from "../fusion.ts";
import type { Blas } from "../blas.ts";
import { dropoutMask } from "../dropout.ts";
import { installedBlas } from "../matmul.ts";
import { type KernelArgs, offsetOf, scratch, type WasmBackend } from "../heap.ts";
import { blocks, type BlocksExports } from "./blocks.ts";

/** Kernel name of the forward pass: out, P. */
export const ATTENTION = "CrtAttention";
/** Kernel name of the backward pass: dq, dkv. */
export const ATTENTION_GRAD = "CrtAttentionGrad";

const geometry = (q: tf.TensorInfo, kv: tf.TensorInfo, heads: number) => {
  const [nb, s, d] = q.shape;
  const t = kv.shape[1];
  return { nb, s, t, d, nh: heads, e: d / heads, scale: 1 / Math.sqrt(d / heads) };
};

/**
 * What the one-kernel calls (`attention_fwd`, `attention_bwd`) take besides
 * their operands: work space for the kernel, each operand's byte offset
 * (0 for one not given), and the geometry `nb, s, t, nh, e, scale` in the
 * kernels' argument order.
 */
const singleCall = (b: WasmBackend, k: BlocksExports, g: ReturnType<typeof geometry>) => ({
  work: scratch(b, 4 * k.attention_work_floats(g.s, g.t)),
  at: (x: tf.TensorInfo | undefined): number => (x === undefined ? 0 : offsetOf(b, x)),
  dims: [g.nb, g.s, g.t, g.nh, g.e, g.scale] as const,
});

/**
 * One strided product per (batch row, head) through native BLAS: C = op(A)·op(B)
 * with the operands at byte offsets `a(i)`, `b(i)`, `c(i)` and the given
 * leading dimensions (in floats).
 */
const perHead = (
  blas: Blas,
  w: WasmBackend,
  count: number,
  p: {
    m: number;
    n: number;
    k: number;
    a: (i: number) => number;
    lda: number;
    transposeA: boolean;
    b: (i: number) => number;
    ldb: number;
    transposeB: boolean;
    c: (i: number) => number;
    ldc: number;
  },
): void => {
  const heap = w.wasm.HEAPF32;
  const shape = {
    m: p.m,
    n: p.n,
    k: p.k,
    transposeA: p.transposeA,
    transposeB: p.transposeB,
    lda: p.lda,
    ldb: p.ldb,
    ldc: p.ldc,
  };
  for (let i = 0; i < count; i++) {
    blas.sgemm(
      heap.subarray(p.a(i) >>> 2),
      heap.subarray(p.b(i) >>> 2),
      heap.subarray(p.c(i) >>> 2),
      shape,
    );
  }
};

/** The byte offset of head h of batch row r in a [B, rows, stride] matrix at `base`. */
const headAt = (base: number, rows: number, stride: number, e: number) => (i: number, nh: number) =>
  base + 4 * (Math.floor(i / nh) * rows * stride + (i % nh) * e);

const forwardWasm = ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] => {
  const b = backend as WasmBackend;
  const { q, kv, mask } = inputs as Record<string, tf.TensorInfo | undefined>;
  const g = geometry(q!, kv!, attrs!.heads as number);
  const out = b.makeOutput([g.nb, g.s, g.d], "float32");
  const probs = b.makeOutput([g.nb, g.nh, g.s, g.t], "float32");
  // With dropout, the values are read with P ⊙ mask: kept for the backward pass too.
  const dropped = mask === undefined ? undefined : b.makeOutput([g.nb, g.nh, g.s, g.t], "float32");
  const outs = dropped === undefined ? [out, probs] : [out, probs, dropped];
  const k = blocks.on(b);
  const blas = installedBlas();
  if (blas !== null) {
    // Native BLAS for the per-head products, one wasm pass for every softmax.
    const at = (x: tf.TensorInfo) => offsetOf(b, x);
    const qh = headAt(at(q!), g.s, g.d, g.e), kh = headAt(at(kv!), g.t, 2 * g.d, g.e);
    const n = g.nb * g.nh, st = 4 * g.s * g.t;
    perHead(blas, b, n, {
      m: g.s,
      n: g.t,
      k: g.e,
      a: (i) => qh(i, g.nh),
      lda: g.d,
      transposeA: false,
      b: (i) => kh(i, g.nh),
      ldb: 2 * g.d,
      transposeB: true,
      c: (i) => at(probs) + i * st,
      ldc: g.t,
    });
    k.attention_softmax(at(probs), n, g.s, g.t, g.scale);
    const pv = dropped === undefined ? at(probs) : at(dropped);
    if (dropped !== undefined) k.mul_into(pv, at(probs), at(mask!), n * g.s * g.t);
    const oh = headAt(at(out), g.s, g.d, g.e);
    perHead(blas, b, n, {
      m: g.s,
      n: g.e,
      k: g.t,
      a: (i) => pv + i * st,
      lda: g.t,
      transposeA: false,
      b: (i) => kh(i, g.nh) + 4 * g.d,
      ldb: 2 * g.d,
      transposeB: false,
      c: (i) => oh(i, g.nh),
      ldc: g.d,
    });
    return outs;
  }
  const { work, at, dims } = singleCall(b, k, g);
  k.attention_fwd(at(q), at(kv), ...dims, at(out), at(probs), at(dropped), at(mask), work);
  return outs;
};

const backwardWasm = ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] => {
  const b = backend as WasmBackend;
  const { q, kv, probs, dy, dropped, mask } = inputs as Record<string, tf.TensorInfo>;
  const g = geometry(q, kv, attrs!.heads as number);
  const dq = b.makeOutput([...q.shape], "float32");
  const dkv = b.makeOutput([...kv.shape], "float32");
  const k = blocks.on(b);
  const blas = installedBlas();
  if (blas !== null) {
    const at = (x: tf.TensorInfo) => offsetOf(b, x);
    const n = g.nb * g.nh, st = 4 * g.s * g.t;
    const dp = b.makeOutput([n, g.s, g.t], "float32");
    const qh = headAt(at(q), g.s, g.d, g.e), kh = headAt(at(kv), g.t, 2 * g.d, g.e);
    const oh = headAt(at(dy), g.s, g.d, g.e);
    const dqh = headAt(at(dq), g.s, g.d, g.e), dkh = headAt(at(dkv), g.t, 2 * g.d, g.e);
    const pAt = (i: number) => at(probs) + i * st, dpAt = (i: number) => at(dp) + i * st;
    const product = (
      m: number,
      nn: number,
      kk: number,
      a: (i: number) => number,
      lda: number,
      ta: boolean,
      bb: (i: number) => number,
      ldb: number,
      tb: boolean,
      c: (i: number) => number,
      ldc: number,
    ) =>
      perHead(blas, b, n, {
        m,
        n: nn,
        k: kk,
        a,
        lda,
        transposeA: ta,
        b: bb,
        ldb,
        transposeB: tb,
        c,
        ldc,
      });
    const hq = (i: number) => qh(i, g.nh), hk = (i: number) => kh(i, g.nh);
    const hv = (i: number) => kh(i, g.nh) + 4 * g.d, ho = (i: number) => oh(i, g.nh);
    product(g.s, g.t, g.e, ho, g.d, false, hv, 2 * g.d, true, dpAt, g.t); // dP = dO Vᵀ
    if (mask !== undefined) k.mul_into(at(dp), at(dp), at(mask), n * g.s * g.t); // the dropout
    k.attention_softmax_grad(at(probs), at(dp), n, g.s, g.t, g.scale); // dS
    product(g.s, g.e, g.t, dpAt, g.t, false, hk, 2 * g.d, false, (i) => dqh(i, g.nh), g.d); // dQ = dS K
    product(g.t, g.e, g.s, dpAt, g.t, true, hq, g.d, false, (i) => dkh(i, g.nh), 2 * g.d); // dK = dSᵀ Q
    const vAt = mask === undefined ? pAt : (i: number) => at(dropped) + i * st;
    product(g.t, g.e, g.s, vAt, g.t, true, ho, g.d, false, (i) => dkh(i, g.nh) + 4 * g.d, 2 * g.d); // dV
    b.disposeData(dp.dataId);
    return [dq, dkv];
  }
  const { work, at, dims } = singleCall(b, k, g);
  k.attention_bwd(
    at(q),
    at(kv),
    at(probs),
    at(dropped),
    at(mask),
    at(dy),
    ...dims,
    at(dq),
    at(dkv),
    work,
  );
  return [dq, dkv];
};

type GradArgs = (tf.Tensor | tf.GradSaveFunc)[];

const run: FusedKernel["run"] = (op, inputs, ctx) => {
  const heads = op.attrs.heads as number;
  const rate = (op.attrs.dropout as number | undefined) ?? 0;
  const f = tf.customGrad((...args: GradArgs) => {
    const [q, kv, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    const named: Record<string, tf.Tensor> = { q, kv };
    if (ctx.training && rate > 0) {
      // The body's dropout draws its seed here, where the op-by-op path would.
      const [nb, s] = q.shape, t = kv.shape[1]!;
      const mask = dropoutMask(ctx.seed(), rate, nb * heads * s * t);
      named.mask = tf.tensor(mask, [nb, heads, s, t], "float32");
    }
    const outs = tf.engine().runKernel(ATTENTION, named, { heads }) as tf.Tensor[];
    save([q, kv, ...outs.slice(1), ...(named.mask === undefined ? [] : [named.mask])]);
    return {
      value: outs[0],
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [qs, kvs, ps, dropped, mask] = saved;
        const g: Record<string, tf.Tensor> = { q: qs, kv: kvs, probs: ps, dy };
        if (mask !== undefined) {
          g.dropped = dropped;
          g.mask = mask;
        }
        return tf.engine().runKernel(ATTENTION_GRAD, g, { heads }) as tf.Tensor[];
      },
    };
  });
  return [f(...inputs)];
};

/** One kernel takes the region: float32 q [B, S, D], kv [B, T, 2D], T ≥ S, no dropout on P. */
const supports = (r: FusedRegion): boolean => {
  const [q, kv] = r.inputs;
  if (q.shape.length !== 3 || kv.shape.length !== 3) return false;
  const [nb, s, d] = q.shape;
  const heads = r.attrs.heads as number;
  return kv.shape[0] === nb && kv.shape[2] === 2 * d && kv.shape[1] >= s && d % heads === 0 &&
    (d / heads) % 4 === 0;
};

/** The kernel of `attention` regions, for ops/fusion.ts. */
export const attentionKernel: FusedKernel = {
  kind: "attention",
  backends: ["wasm"],
  supports,
  run,
  kernels: { forward: [ATTENTION, "Identity"], backward: [ATTENTION_GRAD] },
};

/** The tfjs kernels this module registers. */
export const attentionKernels: readonly tf.KernelConfig[] = [
  { kernelName: ATTENTION, backendName: "wasm", kernelFunc: forwardWasm as tf.KernelFunc },
  { kernelName: ATTENTION_GRAD, backendName: "wasm", kernelFunc: backwardWasm as tf.KernelFunc },
];
