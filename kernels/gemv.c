// Products of a few rows with a weight matrix, read once per token: the
// matrix-vector products of batch-1 decoding (`matvec` in
// ops/fusion/products.ts; `GemmPool.gemvQ8` in ops/gemm_pool.ts shares the
// int8 one with a worker by column blocks).
//
// float32: y (+)= x·W for W [K, N] row-major, as it lies in tfjs's heap. Four
// rows of W stream at a time into the accumulators y (a row of N floats that
// stays in L1/L2), so memory is read in order, with no packing and no copy.
//
// int8 (`q8`): W is stored int8 with one float32 scale per output column,
// packed for the kernel: blocks of 16 columns, within a block the K rows in
// pairs, 16 columns × 2 rows = 32 bytes per pair (packQ8 in ops/quant.ts).
// The activations are quantised per call to 14 bits (scale max|x| / 8191), so
// that i32x4.dot_i16x8_s — multiply pairs of int16 and add them, in the base
// SIMD128 set — does 8 multiply-adds per instruction; sums stay in int32
// (≤ 2048 · 8191 · 127 < 2³¹ per chunk of 2048 rows). Columns are padded to
// a multiple of 16 and rows to an even count with zeros.
#include "simd.h"

// y (+)= x·W, x [K], W [K, N] row-major, y [N]; N a multiple of 4.
EXPORT(gemv_f32)
void gemv_f32(const float* x, const float* w, int k, int n, float* y, int accumulate) {
  if (!accumulate) {
    for (int j = 0; j < n; j += 4) wasm_v128_store(y + j, wasm_f32x4_splat(0.0f));
  }
  int i = 0;
  for (; i + 4 <= k; i += 4) {
    const v128_t x0 = wasm_f32x4_splat(x[i]), x1 = wasm_f32x4_splat(x[i + 1]);
    const v128_t x2 = wasm_f32x4_splat(x[i + 2]), x3 = wasm_f32x4_splat(x[i + 3]);
    const float* w0 = w + (long)i * n;
    const float* w1 = w0 + n;
    const float* w2 = w1 + n;
    const float* w3 = w2 + n;
    for (int j = 0; j < n; j += 4) {
      v128_t a = wasm_v128_load(y + j);
      a = MADD(x0, wasm_v128_load(w0 + j), a);
      a = MADD(x1, wasm_v128_load(w1 + j), a);
      a = MADD(x2, wasm_v128_load(w2 + j), a);
      a = MADD(x3, wasm_v128_load(w3 + j), a);
      wasm_v128_store(y + j, a);
    }
  }
  for (; i < k; i++) {
    const v128_t xi = wasm_f32x4_splat(x[i]);
    const float* wi = w + (long)i * n;
    for (int j = 0; j < n; j += 4) {
      wasm_v128_store(y + j, MADD(xi, wasm_v128_load(wi + j), wasm_v128_load(y + j)));
    }
  }
}

// Bytes of `work` gemv_q8 needs for K rows: the quantised pairs (16 bytes each).
EXPORT(q8_work_bytes)
int q8_work_bytes(int k) { return ((k + 1) / 2) * 16; }

// Quantise x [K] into work as K/2 splatted pairs; returns its scale. Exported
// so that the GEMM pool (ops/gemm_pool.ts) quantises once and both threads
// read the same pairs.
EXPORT(q8_quantize)
float q8_quantize(const float* x, int k, v128_t* pairs) {
  v128_t m4 = wasm_f32x4_splat(0.0f);
  int i = 0;
  for (; i + 4 <= k; i += 4) m4 = wasm_f32x4_pmax(m4, wasm_f32x4_abs(wasm_v128_load(x + i)));
  float amax = hmax(m4);
  for (; i < k; i++) {
    const float a = x[i] < 0.0f ? -x[i] : x[i];
    amax = a > amax ? a : amax;
  }
  const float sx = amax > 0.0f ? amax / 8191.0f : 1.0f;
  const float inv = 1.0f / sx;
  // Eight values (four pairs) at a time: scale, round half away from zero (add ±0.5, truncate),
  // narrow to int16 — each 32-bit lane of the result is one pair — and splat each pair.
  const v128_t iv = wasm_f32x4_splat(inv), half = wasm_f32x4_splat(0.5f);
  const v128_t sign = wasm_i32x4_splat((int)0x80000000u);
  int p = 0;
  for (; 2 * p + 8 <= k; p += 4) {
    const v128_t a = wasm_f32x4_mul(wasm_v128_load(x + 2 * p), iv);
    const v128_t b = wasm_f32x4_mul(wasm_v128_load(x + 2 * p + 4), iv);
    const v128_t qa = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_add(a, wasm_v128_or(wasm_v128_and(a, sign), half)));
    const v128_t qb = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_add(b, wasm_v128_or(wasm_v128_and(b, sign), half)));
    const v128_t q = wasm_i16x8_narrow_i32x4(qa, qb);
    pairs[p] = wasm_i32x4_shuffle(q, q, 0, 0, 0, 0);
    pairs[p + 1] = wasm_i32x4_shuffle(q, q, 1, 1, 1, 1);
    pairs[p + 2] = wasm_i32x4_shuffle(q, q, 2, 2, 2, 2);
    pairs[p + 3] = wasm_i32x4_shuffle(q, q, 3, 3, 3, 3);
  }
  for (; p < (k + 1) / 2; p++) {
    const float a = x[2 * p] * inv;
    const float b = 2 * p + 1 < k ? x[2 * p + 1] * inv : 0.0f;
    // Round half away from zero; |a|, |b| ≤ 8191.
    const int qa = (int)(a + (a < 0.0f ? -0.5f : 0.5f));
    const int qb = (int)(b + (b < 0.0f ? -0.5f : 0.5f));
    pairs[p] = wasm_i32x4_splat((int)((unsigned)(qa & 0xffff) | ((unsigned)qb << 16)));
  }
  return sx;
}

// Column blocks [b0, b1) of y (+)= (x·W) for the quantised pairs of x (scale
// sx): w, scales and y point at column block `origin` of the packed int8 W,
// its scales and y (a part of W copied elsewhere starts at its first block).
// n ≤ np is y's length, a multiple of 4.
static void gemv_q8_blocks(const v128_t* pairs, float sx, const signed char* w, const float* scales,
                           float* y, int k, int n, int accumulate, int origin, int b0, int b1) {
  const int kp = (k + 1) / 2;
  const v128_t s = wasm_f32x4_splat(sx);
  for (int b = b0; b < b1; b++) {
    const int jb = 16 * b, rel = 16 * (b - origin);
    const signed char* wb = w + (long)rel * kp * 2;
    v128_t f0 = wasm_f32x4_splat(0.0f), f1 = f0, f2 = f0, f3 = f0;
    for (int p0 = 0; p0 < kp; p0 += 1024) {
      const int p1 = p0 + 1024 < kp ? p0 + 1024 : kp;
      v128_t a0 = wasm_i32x4_splat(0), a1 = a0, a2 = a0, a3 = a0;
      const signed char* wp = wb + (long)p0 * 32;
      for (int p = p0; p < p1; p++, wp += 32) {
        const v128_t xv = pairs[p];
        const v128_t w01 = wasm_v128_load(wp), w23 = wasm_v128_load(wp + 16);
        a0 = wasm_i32x4_add(a0, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(w01), xv));
        a1 = wasm_i32x4_add(a1, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(w01), xv));
        a2 = wasm_i32x4_add(a2, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(w23), xv));
        a3 = wasm_i32x4_add(a3, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(w23), xv));
      }
      f0 = wasm_f32x4_add(f0, wasm_f32x4_convert_i32x4(a0));
      f1 = wasm_f32x4_add(f1, wasm_f32x4_convert_i32x4(a1));
      f2 = wasm_f32x4_add(f2, wasm_f32x4_convert_i32x4(a2));
      f3 = wasm_f32x4_add(f3, wasm_f32x4_convert_i32x4(a3));
    }
#define Q8_STORE(c, f)                                                                             \
  if (jb + 4 * (c) < n) {                                                                          \
    float* yj = y + rel + 4 * (c);                                                                 \
    const v128_t v = wasm_f32x4_mul(wasm_f32x4_mul(f, s), wasm_v128_load(scales + rel + 4 * (c))); \
    wasm_v128_store(yj, accumulate ? wasm_f32x4_add(wasm_v128_load(yj), v) : v);                   \
  }
    Q8_STORE(0, f0) Q8_STORE(1, f1) Q8_STORE(2, f2) Q8_STORE(3, f3)
#undef Q8_STORE
  }
}

// y[j] (+)= (x·W)[j] for the packed int8 W (np = padded N, a multiple of 16;
// scales [np]); y gets its n ≤ np entries, n a multiple of 4. work:
// q8_work_bytes(k) bytes, 16-byte aligned.
EXPORT(gemv_q8)
void gemv_q8(const float* x, const signed char* w, const float* scales, int k, int n, int np,
             float* y, int accumulate, v128_t* work) {
  const float sx = q8_quantize(x, k, work);
  gemv_q8_blocks(work, sx, w, scales, y, k, n, accumulate, 0, 0, np / 16);
}

// The GEMM pool's chunk of an int8 matrix-vector product (descriptor kind 3,
// ops/gemm_pool.ts): column blocks [from, to). d: 3, 0, pairs, the bits of
// sx, w, scales, y, k, n, accumulate, origin.
void gemv_q8_chunk(const int* d, int from, int to) {
  float sx;
  __builtin_memcpy(&sx, d + 3, sizeof sx);
  gemv_q8_blocks((const v128_t*)(unsigned long)(unsigned)d[2], sx,
                 (const signed char*)(unsigned long)(unsigned)d[4],
                 (const float*)(unsigned long)(unsigned)d[5], (float*)(unsigned long)(unsigned)d[6],
                 d[7], d[8], d[9], d[10], from, to);
}

// Dequantise packed int8 rows: out [K, N] row-major float32 (the unfused
// lowering of `dequantize`, and tests).
EXPORT(unpack_q8)
void unpack_q8(const signed char* w, const float* scales, int k, int n, int np, float* out) {
  const int kp = (k + 1) / 2;
  for (int jb = 0; jb < np; jb += 16) {
    const signed char* wb = w + (long)jb * kp * 2;
    for (int i = 0; i < k; i++) {
      const signed char* pr = wb + (long)(i / 2) * 32 + (i & 1);
      for (int c = 0; c < 16 && jb + c < n; c++) out[(long)i * n + jb + c] = pr[2 * c] * scales[jb + c];
    }
  }
}

// Rows of a row-major int8 table with one scale per row: out[i, :] =
// table[ids[i], :] · scales[ids[i]] for n ids of rows of d (the ids checked
// by the caller). The embedding lookup of an int8 model.
EXPORT(gather_rows_q8)
void gather_rows_q8(const signed char* table, const float* scales, const int* ids, int n, int d,
                    float* out) {
  for (int i = 0; i < n; i++) {
    const signed char* row = table + (long)ids[i] * d;
    const v128_t s = wasm_f32x4_splat(scales[ids[i]]);
    float* o = out + (long)i * d;
    int j = 0;
    for (; j + 8 <= d; j += 8) {
      const v128_t w = wasm_i16x8_extend_low_i8x16(wasm_v128_load64_zero(row + j));
      wasm_v128_store(o + j, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(wasm_i32x4_extend_low_i16x8(w)), s));
      wasm_v128_store(o + j + 4,
                      wasm_f32x4_mul(wasm_f32x4_convert_i32x4(wasm_i32x4_extend_high_i16x8(w)), s));
    }
    for (; j < d; j++) o[j] = row[j] * scales[ids[i]];
  }
}

// A whole row-scaled table as float32 (the unfused `dequantize` of axis 0).
EXPORT(unpack_rows_q8)
void unpack_rows_q8(const signed char* table, const float* scales, int r, int d, float* out) {
  for (int i = 0; i < r; i++) {
    for (int j = 0; j < d; j++) out[(long)i * d + j] = table[(long)i * d + j] * scales[i];
  }
}

// One row of a lookup table as float32 into out [d]: a float32 table, or an
// int8 one (scales not 0) with a scale per row.
static inline void table_row(const void* table, const float* scales, int row, int d, float* out,
                             int accumulate) {
  if (scales == 0) {
    const float* r = (const float*)table + (long)row * d;
    if (!accumulate) {
      __builtin_memcpy(out, r, (unsigned long)d * sizeof(float));
      return;
    }
    int j = 0;
    for (; j + 4 <= d; j += 4) wasm_v128_store(out + j, wasm_f32x4_add(wasm_v128_load(out + j), wasm_v128_load(r + j)));
    for (; j < d; j++) out[j] += r[j];
    return;
  }
  const signed char* r = (const signed char*)table + (long)row * d;
  const v128_t s = wasm_f32x4_splat(scales[row]);
  int j = 0;
  for (; j + 8 <= d; j += 8) {
    const v128_t w = wasm_i16x8_extend_low_i8x16(wasm_v128_load64_zero(r + j));
    v128_t a = wasm_f32x4_mul(wasm_f32x4_convert_i32x4(wasm_i32x4_extend_low_i16x8(w)), s);
    v128_t c = wasm_f32x4_mul(wasm_f32x4_convert_i32x4(wasm_i32x4_extend_high_i16x8(w)), s);
    if (accumulate) {
      a = wasm_f32x4_add(wasm_v128_load(out + j), a);
      c = wasm_f32x4_add(wasm_v128_load(out + j + 4), c);
    }
    wasm_v128_store(out + j, a);
    wasm_v128_store(out + j + 4, c);
  }
  for (; j < d; j++) out[j] = (accumulate ? out[j] : 0.0f) + r[j] * scales[row];
}

// Token embeddings plus positions for b rows of n tokens: out[(r·n + i), :] =
// table[ids[r·n + i]] + pos[start + i] (either table float32, or int8 with
// scales per row). The caller checked the ids.
EXPORT(embed_rows)
void embed_rows(const void* table, const float* tscales, const int* ids, int b, int n, int d,
                const void* pos, const float* pscales, int start, float* out) {
  for (int r = 0; r < b; r++) {
    for (int i = 0; i < n; i++) {
      float* o = out + ((long)r * n + i) * d;
      table_row(table, tscales, ids[r * n + i], d, o, 0);
      table_row(pos, pscales, start + i, d, o, 1);
    }
  }
}
