/**
 * Int8 weights on tfjs: the `dequantize` op's kernel (the unfused path: a
 * whole q8 weight as float32) and the `gather` region's — the embedding
 * lookup of a q8 table, which dequantises only the rows it reads.
 *
 * A q8 weight [R, C] is an int32 tensor of `q8Layout(R, C, axis).words`
 * words (ops/quant.ts): its values, then its scales.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { bodyInputs, type FusedKernel, type FusedRegion } from "../fusion.ts";
import { type CpuBackend, type KernelArgs, offsetOf, type WasmBackend } from "../heap.ts";
import { decodeQ8, paddedColumns, q8Layout } from "../quant.ts";
import { blocks } from "./blocks.ts";

/** Kernel name of `dequantize`: a q8 weight [R, C] (attrs rows, cols, axis) as float32. */
export const DEQUANTIZE = "CrtDequantize";
/** Kernel name of the q8 table lookup: rows of a q8 table [R, D] at int32 ids. */
export const GATHER_Q8 = "CrtGatherQ8";

const shapeOf = (attrs: tf.NamedAttrMap | undefined) => ({
  r: attrs!.rows as number,
  c: attrs!.cols as number,
  axis: attrs!.axis as 0 | 1,
});

const dequantizeWasm = ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo => {
  const b = backend as WasmBackend;
  const { x } = inputs as { x: tf.TensorInfo };
  const { r, c, axis } = shapeOf(attrs);
  const out = b.makeOutput([r, c], "float32");
  const at = offsetOf(b, x), lay = q8Layout(r, c, axis);
  const k = blocks.on(b);
  if (axis === 1) k.unpack_q8(at, at + lay.valueBytes, r, c, paddedColumns(c), offsetOf(b, out));
  else k.unpack_rows_q8(at, at + lay.valueBytes, r, c, offsetOf(b, out));
  return out;
};

const dequantizeCpu = ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo => {
  const b = backend as CpuBackend;
  const { x } = inputs as { x: tf.TensorInfo };
  const { r, c, axis } = shapeOf(attrs);
  const { values, scales } = decodeQ8(b.data.get(x.dataId).values as Int32Array, r, c, axis);
  const out = new Float32Array(r * c);
  for (let i = 0; i < r; i++) {
    for (let j = 0; j < c; j++) out[i * c + j] = values[i * c + j] * scales[axis === 1 ? j : i];
  }
  return b.makeTensorInfo([r, c], "float32", out);
};

/** A q8 weight [R, C] scaled along `axis`, as float32 (no gradient: weights of a model file). */
export const dequantizeTensor = (x: tf.Tensor, shape: readonly number[], axis: 0 | 1): tf.Tensor =>
  tf.engine().runKernel(DEQUANTIZE, { x }, { rows: shape[0], cols: shape[1], axis }) as tf.Tensor;

const gatherWasm = ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo => {
  const b = backend as WasmBackend;
  const { table, ids } = inputs as Record<string, tf.TensorInfo>;
  const { r, c } = shapeOf(attrs);
  const n = tf.util.sizeFromShape(ids.shape);
  const idAt = offsetOf(b, ids) >>> 2;
  const heap = b.wasm.HEAP32;
  for (let i = 0; i < n; i++) {
    const id = heap[idAt + i];
    if (!(id >= 0 && id < r)) {
      throw new RangeError(`embedding: id ${id} at position ${i} is outside [0, ${r})`);
    }
  }
  const out = b.makeOutput([...ids.shape, c], "float32");
  const at = offsetOf(b, table);
  blocks.on(b).gather_rows_q8(
    at,
    at + q8Layout(r, c, 0).valueBytes,
    offsetOf(b, ids),
    n,
    c,
    offsetOf(b, out),
  );
  return out;
};

/** The `gather` region: a table lookup; one kernel when the table is a q8 weight (axis 0). */
const gatherKernel: FusedKernel = {
  kind: "gather",
  backends: ["wasm"],
  supports: (r: FusedRegion, opts) => !opts.gradients && r.inputs[0].dtype === "q8",
  run: (op, inputs) => {
    const table = bodyInputs(op)[0];
    return [
      tf.engine().runKernel(GATHER_Q8, { table: inputs[0], ids: inputs[1] }, {
        rows: table.shape[0],
        cols: table.shape[1],
        axis: 0,
      }) as tf.Tensor,
    ];
  },
  kernels: { forward: [GATHER_Q8], backward: [] },
};

/** The fused kernels of this module, for ops/fusion/mod.ts. */
export const q8FusedKernels: readonly FusedKernel[] = [gatherKernel];

/** The tfjs kernels this module registers. */
export const q8Kernels: readonly tf.KernelConfig[] = [
  { kernelName: DEQUANTIZE, backendName: "wasm", kernelFunc: dequantizeWasm as tf.KernelFunc },
  { kernelName: DEQUANTIZE, backendName: "cpu", kernelFunc: dequantizeCpu as tf.KernelFunc },
  { kernelName: GATHER_Q8, backendName: "wasm", kernelFunc: gatherWasm as tf.KernelFunc },
];
