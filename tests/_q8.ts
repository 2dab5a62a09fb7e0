/**
 * What the int8 matrix-vector kernel (kernels/gemv.c) computes, written out
 * in float64 with its activation quantisation replayed in float32
 * (`Math.fround`), for tests: the SIMD128 build's 14-bit symmetric
 * activations, or the relaxed build's 7-bit ones with an offset.
 *
 * @module
 */
import type { KernelBuildName } from "../ops/heap.ts";

const f = Math.fround;

/** The activations x [K] as the kernel quantises them: x ≈ offset + scale · u. */
export const quantizeActivations = (
  x: Float32Array,
  build: KernelBuildName,
): { u: Int32Array; scale: number; offset: number } => {
  if (build === "relaxed") {
    const lo = x.reduce((a, v) => Math.min(a, v), x[0]);
    const hi = x.reduce((a, v) => Math.max(a, v), x[0]);
    const scale = hi > lo ? f(f(hi - lo) / 127) : 1;
    const inv = f(1 / scale);
    const u = Int32Array.from(x, (v) => Math.min(Math.trunc(f(f(f(v - lo) * inv) + 0.5)), 127));
    return { u, scale, offset: lo };
  }
  const amax = x.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
  const scale = amax > 0 ? f(amax / 8191) : 1;
  const inv = f(1 / scale);
  const u = Int32Array.from(x, (v) => {
    const s = f(v * inv);
    return Math.trunc(f(s + (s < 0 ? -0.5 : 0.5)));
  });
  return { u, scale, offset: 0 };
};

/** y = x · (q · scales) [N] as the int8 kernel computes it, for q [K, N] row-major. */
export const q8Product = (
  x: Float32Array,
  q: Int8Array,
  scales: Float32Array,
  n: number,
  build: KernelBuildName,
): Float64Array => {
  const { u, scale, offset } = quantizeActivations(x, build);
  return Float64Array.from({ length: n }, (_, j) => {
    let dot = 0, sum = 0;
    for (let i = 0; i < x.length; i++) {
      dot += q[i * n + j] * u[i];
      sum += q[i * n + j];
    }
    return (scale * dot + offset * sum) * scales[j];
  });
};
