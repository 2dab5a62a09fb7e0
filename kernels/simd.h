// Shared helpers of the project's WebAssembly SIMD kernels (kernels/build.ts).
//
// Every kernel module is built twice from the same sources: with SIMD128 only,
// and with relaxed SIMD as well (`-mrelaxed-simd`, which defines
// __wasm_relaxed_simd__). The runtime picks the relaxed build where the engine
// validates it (ops/heap.ts). MADD is the one place the two builds differ in
// floating point: a fused multiply-add where relaxed SIMD has one (rounding
// once), a multiply then an add otherwise.
#ifndef CRT_SIMD_H
#define CRT_SIMD_H
#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(#name)))

#ifdef __wasm_relaxed_simd__
#define MADD(a, b, c) wasm_f32x4_relaxed_madd((a), (b), (c))
#else
#define MADD(a, b, c) wasm_f32x4_add(wasm_f32x4_mul((a), (b)), (c))
#endif

// e^x for x in [-87.3, 88.7] (clamped), as 2^n · 2^f with n = round(x·log2 e),
// |f| ≤ 1/2, and 2^f = e^g, g = f·ln 2, by its Taylor series to degree 7
// (relative error < 2e-8 for |g| ≤ 0.35, below float32's 6e-8). Rounding
// adds 1.5·2^23, which leaves n in the low mantissa bits: shifted into the
// exponent field they give 2^n with no float-to-int conversion.
static inline v128_t exp4(v128_t x) {
  const v128_t magic = wasm_f32x4_splat(12582912.0f);  // 1.5 · 2^23
  // pmax/pmin: one instruction each on x86 (min/max spend several on NaN and −0 rules).
  x = wasm_f32x4_pmax(x, wasm_f32x4_splat(-87.33654f));
  x = wasm_f32x4_pmin(x, wasm_f32x4_splat(88.72283f));
  const v128_t r = wasm_f32x4_add(wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269504088896341f)), magic);
  const v128_t n = wasm_f32x4_sub(r, magic);
  // g = x − n·ln 2, with ln 2 split in two for an exact product (Cody–Waite).
  v128_t g = wasm_f32x4_sub(x, wasm_f32x4_mul(n, wasm_f32x4_splat(0.693359375f)));
  g = wasm_f32x4_sub(g, wasm_f32x4_mul(n, wasm_f32x4_splat(-2.12194440e-4f)));
  v128_t p = wasm_f32x4_splat(1.0f / 5040.0f);
  p = MADD(p, g, wasm_f32x4_splat(1.0f / 720.0f));
  p = MADD(p, g, wasm_f32x4_splat(1.0f / 120.0f));
  p = MADD(p, g, wasm_f32x4_splat(1.0f / 24.0f));
  p = MADD(p, g, wasm_f32x4_splat(1.0f / 6.0f));
  p = MADD(p, g, wasm_f32x4_splat(0.5f));
  p = MADD(p, g, wasm_f32x4_splat(1.0f));
  p = MADD(p, g, wasm_f32x4_splat(1.0f));
  // 2^n: n + 127 in the exponent field (n ≥ −126 after the clamp).
  const v128_t e = wasm_i32x4_add(wasm_i32x4_shl(r, 23), wasm_i32x4_splat(127 << 23));
  return wasm_f32x4_mul(p, e);
}

static inline float exp1(float x) { return wasm_f32x4_extract_lane(exp4(wasm_f32x4_splat(x)), 0); }

static inline float hmax(v128_t v) {
  v = wasm_f32x4_pmax(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
  v = wasm_f32x4_pmax(v, wasm_i32x4_shuffle(v, v, 1, 0, 3, 2));
  return wasm_f32x4_extract_lane(v, 0);
}

static inline float hsum(v128_t v) {
  v = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
  v = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 1, 0, 3, 2));
  return wasm_f32x4_extract_lane(v, 0);
}

static inline float sqrt1(float x) {
  return wasm_f32x4_extract_lane(wasm_f32x4_sqrt(wasm_f32x4_splat(x)), 0);
}

#endif
