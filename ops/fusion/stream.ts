/**
 * The two ends of a streaming step, one kernel each (inference only): the
 * `embed` region — token rows plus position rows, from float32 or q8
 * tables, where the op-by-op step ran a gather, a dequantise of the
 * position table, a slice and an add — and the `lmHead` region: the final
 * LayerNorm, the readout of the asked rows (all, or each stream's last) and,
 * for CRT, the segment's normalised rows so far, which the memory update
 * reads at the segment's end.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import { bodyInputs, type FusedKernel, type FusedRegion, layerNormEps } from "../fusion.ts";
import { installedMatmul } from "../matmul.ts";
import { type KernelArgs, offsetOf, SCRATCH, scratch, type WasmBackend } from "../heap.ts";
import { q8Layout } from "../quant.ts";
import { blocks } from "./blocks.ts";
import { gemmOnHeap, matvec } from "./products.ts";
import { drawOnHeap } from "./sample.ts";
import { heapWeight } from "./weights.ts";

/** Kernel name of the embedding step. */
export const EMBED = "CrtEmbed";
/** Kernel name of the readout step. */
export const LM_HEAD = "CrtLmHead";

/** A table [R, D] on the heap: its data and, for a q8 one, its row scales (else 0). */
const table = (b: WasmBackend, t: tf.TensorInfo, rows: number, d: number): [number, number] => {
  const at = offsetOf(b, t);
  return t.dtype === "float32" ? [at, 0] : [at, at + q8Layout(rows, d, 0).valueBytes];
};

const embedWasm = ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo => {
  const b = backend as WasmBackend;
  const { table: tt, ids, pos } = inputs as Record<string, tf.TensorInfo>;
  const v = attrs!.vocab as number, d = attrs!.width as number, s = attrs!.positions as number;
  const start = attrs!.start as number;
  const [nb, n] = ids.shape;
  const idAt = offsetOf(b, ids) >>> 2;
  const heap = b.wasm.HEAP32;
  for (let i = 0; i < nb * n; i++) {
    const id = heap[idAt + i];
    if (!(id >= 0 && id < v)) {
      throw new RangeError(`embedding: id ${id} at position ${i} is outside [0, ${v})`);
    }
  }
  const out = b.makeOutput([nb, n, d], "float32");
  const [ta, ts] = table(b, tt, v, d), [pa, ps] = table(b, pos, s, d);
  blocks.on(b).embed_rows(ta, ts, offsetOf(b, ids), nb, n, d, pa, ps, start, offsetOf(b, out));
  return out;
};

const embedKernel: FusedKernel = {
  kind: "embed",
  backends: ["wasm"],
  supports: (r: FusedRegion, opts) => {
    if (opts.gradients) return false;
    const [t, ids, pos] = r.inputs;
    return ids.dtype === "int32" && ids.shape.length === 2 && t.shape.length === 2 &&
      pos.shape.length === 2 && t.dtype !== "int32" && pos.dtype !== "int32";
  },
  bind: (op) => {
    const [t, , pos] = bodyInputs(op);
    return {
      kernel: EMBED,
      inputs: ["table", "ids", "pos"],
      attrs: {
        vocab: t.shape[0],
        width: t.shape[1],
        positions: pos.shape[0],
        start: op.attrs.start as number,
      },
    };
  },
  kernels: { forward: [EMBED], backward: [] },
};

const headWasm = ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] => {
  const b = backend as WasmBackend;
  const t = inputs as Record<string, tf.TensorInfo | undefined>;
  const x = t.x!, prev = t.prev;
  const rowsOut = attrs!.rows as "all" | "last" | "none";
  const slot = attrs!.slot === true, keep = attrs!.keep === true;
  const v = attrs!.vocab as number, eps = attrs!.eps as number;
  const [nb, r, d] = x.shape;
  const n = r - (slot ? 1 : 0), t0 = prev === undefined ? 0 : prev.shape[1];
  const k = rowsOut === "all" ? n : 1;
  const at = (u: tf.TensorInfo | undefined) => (u === undefined ? 0 : offsetOf(b, u));
  const draw = attrs!.draw === true;
  const outs: tf.TensorInfo[] = [];
  // Drawing a token: the logits stay in scratch and only the ids [B] go out.
  const tokens = draw ? b.makeOutput([nb], "int32") : undefined;
  const logitsOut = rowsOut === "none" || draw ? undefined : b.makeOutput([nb, k, v], "float32");
  if (tokens !== undefined) outs.push(tokens);
  if (logitsOut !== undefined) outs.push(logitsOut);
  const kept = keep ? b.makeOutput([nb, t0 + n, d], "float32") : undefined;
  if (kept !== undefined) outs.push(kept);
  const hf = scratch(b, 4 * (nb * r * d + nb * k * d + (draw ? nb * k * v : 0)), SCRATCH.kernel);
  const sel = hf + 4 * nb * r * d;
  const logits = draw ? sel + 4 * nb * k * d : logitsOut === undefined ? 0 : at(logitsOut);
  const kx = blocks.on(b);
  kx.layernorm(at(x), at(t.g), at(t.b), nb * r, d, eps, hf, 0, 0);
  const heap = () => b.wasm.HEAPF32;
  const row = (bi: number, i: number) => (hf >>> 2) + (bi * r + i + (slot ? 1 : 0)) * d;
  if (kept !== undefined) {
    const h = heap(), ko = at(kept) >>> 2, po = at(prev) >>> 2;
    for (let bi = 0; bi < nb; bi++) {
      if (t0 > 0) h.copyWithin(ko + bi * (t0 + n) * d, po + bi * t0 * d, po + (bi + 1) * t0 * d);
      for (let i = 0; i < n; i++) {
        h.copyWithin(ko + (bi * (t0 + n) + t0 + i) * d, row(bi, i), row(bi, i) + d);
      }
    }
  }
  if (rowsOut !== "none") {
    const h = heap(), s0 = sel >>> 2;
    for (let bi = 0; bi < nb; bi++) {
      for (let j = 0; j < k; j++) {
        const i = rowsOut === "all" ? j : n - 1;
        h.copyWithin(s0 + (bi * k + j) * d, row(bi, i), row(bi, i) + d);
      }
    }
    const m = nb * k;
    kx.bias_rows(logits, at(t.hb), 0, m, v);
    const w = heapWeight(b, t.w!, d, v);
    if (w.kind === "q8" || m <= 2) {
      matvec(b, w, { x: sel, y: logits, rows: m, accumulate: true });
    } else {
      gemmOnHeap(b, {
        m,
        n: v,
        k: d,
        a: sel,
        transposeA: false,
        b: w.at,
        transposeB: false,
        c: logits,
        accumulate: true,
      });
    }
    if (tokens !== undefined) {
      const uAt = at(t.u) >>> 2;
      const ids = drawOnHeap(b, {
        x: logits,
        n: nb,
        v,
        uniforms: heap().slice(uAt, uAt + nb),
        temperature: attrs!.temperature as number,
        topK: attrs!.topK as number,
      });
      b.wasm.HEAP32.set(ids, at(tokens) >>> 2);
    }
  }
  return outs;
};

const headKernel: FusedKernel = {
  kind: "lmHead",
  backends: ["wasm"],
  supports: (r: FusedRegion, opts) => {
    if (opts.gradients || installedMatmul() === "stock") return false;
    const [x, , , w] = r.inputs;
    if (x.shape.length !== 3 || w.shape.length !== 2 || x.shape[2] % 4 !== 0) return false;
    if (r.attrs.draw === true && r.attrs.rows !== "last") return false;
    return w.dtype === "q8" ? w.shape[1] % 4 === 0 : w.dtype === "float32" && w.shape[1] % 4 === 0;
  },
  bind: (op) => {
    const draw = op.attrs.draw === true;
    // x, the final LayerNorm's gain and bias, the readout's weight and bias, then the segment's
    // rows so far (after its first token) and the uniforms (when drawing).
    const n = bodyInputs(op).length;
    const prev = n - 5 - (draw ? 1 : 0) > 0;
    return {
      kernel: LM_HEAD,
      inputs: ["x", "g", "b", "w", "hb", ...(prev ? ["prev"] : []), ...(draw ? ["u"] : [])],
      attrs: {
        rows: op.attrs.rows as string,
        slot: op.attrs.slot === true,
        keep: op.attrs.keep === true,
        draw,
        temperature: op.attrs.temperature as number,
        topK: op.attrs.topK as number,
        vocab: bodyInputs(op)[3].shape[1],
        eps: layerNormEps(op),
      },
    };
  },
  kernels: { forward: [LM_HEAD], backward: [] },
};

/** The fused kernels of this module, for ops/fusion/mod.ts. */
export const streamFusedKernels: readonly FusedKernel[] = [embedKernel, headKernel];

/** The tfjs kernels this module registers. */
export const streamKernels: readonly tf.KernelConfig[] = [
  { kernelName: EMBED, backendName: "wasm", kernelFunc: embedWasm as tf.KernelFunc },
  { kernelName: LM_HEAD, backendName: "wasm", kernelFunc: headWasm as tf.KernelFunc },
];
