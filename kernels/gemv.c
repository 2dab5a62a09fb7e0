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
// packed for the kernel (packQ8 in ops/quant.ts): blocks of 16 columns, within
// a block the K rows in quads (K padded to a multiple of 4 with zero rows),
// 64 bytes a quad: four vectors of 4 columns × 4 rows, byte 4c + t of vector v
// holding column 4v + c of row 4q + t. After the values lie np scales, then
// np column sums Σᵢ qᵢⱼ (float32), np = N padded to a multiple of 16.
// The two builds multiply the same layout differently:
// - SIMD128: the activations are quantised per call to 14 bits (scale
//   max|x| / 8191), a quad as int16 [x0 … x3, x0 … x3], so that
//   i32x4.dot_i16x8_s of a sign-extended half of a weight vector gives, per
//   lane, one column's sum over two of the quad's rows; the two halves of a
//   column are added once per chunk. Sums stay in int32 (≤ 2048 · 8191 · 128
//   < 2³¹ per chunk of 2048 rows).
// - relaxed SIMD: the activations are quantised to 7 bits with an offset,
//   x ≈ x_min + s·u, u in [0, 127], s = (max x − min x) / 127, a quad as 4
//   bytes splatted; i32x4.relaxed_dot_i8x16_i7x16_add_s multiplies 16 weights
//   by them and adds each column's 4 products into its lane: one instruction
//   (vpdpbusd on x86 with VNNI; five without, where the 16-bit relaxed dot
//   and a widening pairwise add take three) for 16 multiply-adds, against
//   six with the 16-bit dots. Which of the two sequences a call runs is its
//   `dot` argument (0: 16-bit dot and widening, 1: fused dot-add), chosen
//   at start-up by timing both (ops/q8_dot.ts): their integer sums are the
//   same, so the choice changes speed only. y_j = scale_j · (s · Σᵢ qᵢⱼ uᵢ + x_min · Σᵢ qᵢⱼ). With
//   u ≤ 127 the result is the same whether the engine reads u as signed or
//   unsigned, and a pair of products stays within int16 (2 · 128 · 127 <
//   2¹⁵), so x86's 16-bit intermediate sums do not saturate.
// The quantised activations start with a header (s, x_min, dot, 0): 16
// bytes, then 16 bytes per quad (q8_work_bytes).
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

// Bytes of `work` gemv_q8 needs for K rows: the header and the quantised quads.
EXPORT(q8_work_bytes)
int q8_work_bytes(int k) { return 16 + ((k + 3) / 4) * 16; }

// Four values of x from row i (fewer at the end of x, the rest `fill`).
static inline v128_t load4(const float* x, int i, int k, float fill) {
  if (i + 4 <= k) return wasm_v128_load(x + i);
  return wasm_f32x4_make(x[i], i + 1 < k ? x[i + 1] : fill, i + 2 < k ? x[i + 2] : fill, fill);
}

// Quantise x [K] into work (the header, then one vector per quad of rows);
// returns its scale s. `dot` (relaxed build: which dot sequence the
// products of these quads run) goes into the header. Exported so that the
// GEMM pool (ops/gemm_pool.ts) quantises once and both threads read the
// same quads.
EXPORT(q8_quantize)
float q8_quantize(const float* x, int k, v128_t* work, int dot) {
  const int kq = (k + 3) / 4;
  v128_t* quads = work + 1;
#ifdef __wasm_relaxed_simd__
  v128_t lo4 = wasm_f32x4_splat(x[0]), hi4 = lo4;
  for (int i = 0; i < k; i += 4) {
    const v128_t v = load4(x, i, k, x[0]);
    lo4 = wasm_f32x4_pmin(lo4, v);
    hi4 = wasm_f32x4_pmax(hi4, v);
  }
  const float lo = -hmax(wasm_f32x4_neg(lo4)), hi = hmax(hi4);
  const float s = hi > lo ? (hi - lo) / 127.0f : 1.0f;
  const v128_t inv = wasm_f32x4_splat(1.0f / s), base = wasm_f32x4_splat(lo);
  const v128_t half = wasm_f32x4_splat(0.5f), top = wasm_i32x4_splat(127);
  for (int q = 0; q < kq; q++) {
    // (x − min) / s ≥ 0: add ½ and truncate to round; at most 127 (float rounding may pass it).
    const v128_t v = wasm_f32x4_mul(wasm_f32x4_sub(load4(x, 4 * q, k, lo), base), inv);
    const v128_t u = wasm_i32x4_min(wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_add(v, half)), top);
    const v128_t h = wasm_i16x8_narrow_i32x4(u, u);
    const v128_t b = wasm_u8x16_narrow_i16x8(h, h);
    quads[q] = wasm_i32x4_shuffle(b, b, 0, 0, 0, 0);
  }
  work[0] = wasm_f32x4_make(s, lo, dot ? 1.0f : 0.0f, 0.0f);
  return s;
#else
  v128_t m4 = wasm_f32x4_splat(0.0f);
  for (int i = 0; i < k; i += 4) m4 = wasm_f32x4_pmax(m4, wasm_f32x4_abs(load4(x, i, k, 0.0f)));
  const float amax = hmax(m4);
  const float s = amax > 0.0f ? amax / 8191.0f : 1.0f;
  const v128_t inv = wasm_f32x4_splat(1.0f / s);
  const v128_t sign = wasm_i32x4_splat((int)0x80000000u), half = wasm_f32x4_splat(0.5f);
  for (int q = 0; q < kq; q++) {
    // Round half away from zero (add ±½, truncate); |x / s| ≤ 8191.
    const v128_t v = wasm_f32x4_mul(load4(x, 4 * q, k, 0.0f), inv);
    const v128_t qv = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_add(v, wasm_v128_or(wasm_v128_and(v, sign), half)));
    quads[q] = wasm_i16x8_narrow_i32x4(qv, qv);
  }
  (void)dot;
  work[0] = wasm_f32x4_make(s, 0.0f, 0.0f, 0.0f);
  return s;
#endif
}

#ifdef __wasm_relaxed_simd__
// acc + each lane's 4 products of w (int8) and u (7-bit), two ways: the 16-bit relaxed dot
// (pmaddubsw on x86) then a pairwise widening add (dot 0), three instructions; or the fused i32x4
// relaxed dot-add (dot 1), one on x86 with VNNI, five without (V8 rebuilds its ones each time).
#define Q8_DOT16(w, u, acc) \
  wasm_i32x4_add((acc), wasm_i32x4_dot_i16x8(wasm_i16x8_relaxed_dot_i8x16_i7x16((w), (u)), ones))
#define Q8_DOTADD(w, u, acc) wasm_i32x4_relaxed_dot_i8x16_i7x16_add((w), (u), (acc))
// The quads [q0, q1) of a column block into a0 … a3, two quads a turn on eight accumulators (the
// fused dot-add is a 4-cycle chain: four in flight would wait on it).
#define Q8_QUADS(DOT)                                                               \
  {                                                                                 \
    v128_t b0 = a0, b1 = a0, b2 = a0, b3 = a0;                                      \
    int q = q0;                                                                     \
    for (; q + 1 < q1; q += 2, wp += 128) {                                         \
      const v128_t xv = quads[q], xw = quads[q + 1];                                \
      a0 = DOT(wasm_v128_load(wp), xv, a0);                                         \
      a1 = DOT(wasm_v128_load(wp + 16), xv, a1);                                    \
      a2 = DOT(wasm_v128_load(wp + 32), xv, a2);                                    \
      a3 = DOT(wasm_v128_load(wp + 48), xv, a3);                                    \
      b0 = DOT(wasm_v128_load(wp + 64), xw, b0);                                    \
      b1 = DOT(wasm_v128_load(wp + 80), xw, b1);                                    \
      b2 = DOT(wasm_v128_load(wp + 96), xw, b2);                                    \
      b3 = DOT(wasm_v128_load(wp + 112), xw, b3);                                   \
    }                                                                               \
    if (q < q1) {                                                                   \
      const v128_t xv = quads[q];                                                   \
      a0 = DOT(wasm_v128_load(wp), xv, a0);                                         \
      a1 = DOT(wasm_v128_load(wp + 16), xv, a1);                                    \
      a2 = DOT(wasm_v128_load(wp + 32), xv, a2);                                    \
      a3 = DOT(wasm_v128_load(wp + 48), xv, a3);                                    \
    }                                                                               \
    a0 = wasm_i32x4_add(a0, b0), a1 = wasm_i32x4_add(a1, b1);                       \
    a2 = wasm_i32x4_add(a2, b2), a3 = wasm_i32x4_add(a3, b3);                       \
  }
// Quads per int32 chunk: 4 · 128 · 127 per quad and lane stays below 2³¹ for 33,000 quads.
#define Q8_CHUNK 8192
#else
// Quads per int32 chunk: 2 · 8191 · 128 per quad and lane, below 2³¹ for 1,024.
#define Q8_CHUNK 512
#endif

// Column blocks [b0, b1) of y (+)= (x·W) for the quantised x in work: w,
// scales and y point at column block `origin` of the packed int8 W, its
// scales (the column sums follow them) and y (a part of W copied elsewhere
// starts at its first block). n ≤ np is y's length, a multiple of 4.
static void gemv_q8_blocks(const v128_t* work, const signed char* w, const float* scales, float* y,
                           int k, int n, int accumulate, int origin, int b0, int b1) {
  const int kq = (k + 3) / 4, np = (n + 15) & ~15;
  const v128_t* quads = work + 1;
  const v128_t s = wasm_f32x4_splat(wasm_f32x4_extract_lane(work[0], 0));
  const float* sums = scales + (np - 16 * origin);
#ifdef __wasm_relaxed_simd__
  const v128_t lo = wasm_f32x4_splat(wasm_f32x4_extract_lane(work[0], 1));
  const int fused = wasm_f32x4_extract_lane(work[0], 2) != 0.0f;
#endif
  for (int b = b0; b < b1; b++) {
    const int jb = 16 * b, rel = 16 * (b - origin);
    const signed char* wb = w + (long)rel * kq * 4;
    v128_t f0 = wasm_f32x4_splat(0.0f), f1 = f0, f2 = f0, f3 = f0;
    for (int q0 = 0; q0 < kq; q0 += Q8_CHUNK) {
      const int q1 = q0 + Q8_CHUNK < kq ? q0 + Q8_CHUNK : kq;
      const signed char* wp = wb + (long)q0 * 64;
#ifdef __wasm_relaxed_simd__
      v128_t a0 = wasm_i32x4_splat(0), a1 = a0, a2 = a0, a3 = a0;
      if (fused) {
        Q8_QUADS(Q8_DOTADD)
      } else {
        const v128_t ones = wasm_i16x8_splat(1);
        Q8_QUADS(Q8_DOT16)
      }
#else
      // Lane pairs: columns (4v, 4v + 1) in the low half's sums, (4v + 2, 4v + 3) in the high's,
      // each column's two rows-pairs in adjacent lanes.
      v128_t l0 = wasm_i32x4_splat(0), h0 = l0, l1 = l0, h1 = l0, l2 = l0, h2 = l0, l3 = l0, h3 = l0;
      for (int q = q0; q < q1; q++, wp += 64) {
        const v128_t xv = quads[q];
        const v128_t w0 = wasm_v128_load(wp), w1 = wasm_v128_load(wp + 16);
        const v128_t w2 = wasm_v128_load(wp + 32), w3 = wasm_v128_load(wp + 48);
        l0 = wasm_i32x4_add(l0, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(w0), xv));
        h0 = wasm_i32x4_add(h0, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(w0), xv));
        l1 = wasm_i32x4_add(l1, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(w1), xv));
        h1 = wasm_i32x4_add(h1, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(w1), xv));
        l2 = wasm_i32x4_add(l2, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(w2), xv));
        h2 = wasm_i32x4_add(h2, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(w2), xv));
        l3 = wasm_i32x4_add(l3, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(w3), xv));
        h3 = wasm_i32x4_add(h3, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(w3), xv));
      }
#define Q8_PAIRS(l, h) \
  wasm_i32x4_add(wasm_i32x4_shuffle(l, h, 0, 2, 4, 6), wasm_i32x4_shuffle(l, h, 1, 3, 5, 7))
      const v128_t a0 = Q8_PAIRS(l0, h0), a1 = Q8_PAIRS(l1, h1);
      const v128_t a2 = Q8_PAIRS(l2, h2), a3 = Q8_PAIRS(l3, h3);
#undef Q8_PAIRS
#endif
      f0 = wasm_f32x4_add(f0, wasm_f32x4_convert_i32x4(a0));
      f1 = wasm_f32x4_add(f1, wasm_f32x4_convert_i32x4(a1));
      f2 = wasm_f32x4_add(f2, wasm_f32x4_convert_i32x4(a2));
      f3 = wasm_f32x4_add(f3, wasm_f32x4_convert_i32x4(a3));
    }
#ifdef __wasm_relaxed_simd__
#define Q8_DOT(c, f) \
  wasm_f32x4_add(wasm_f32x4_mul(f, s), wasm_f32x4_mul(lo, wasm_v128_load(sums + rel + 4 * (c))))
#else
#define Q8_DOT(c, f) wasm_f32x4_mul(f, s)
#endif
#define Q8_STORE(c, f)                                                           \
  if (jb + 4 * (c) < n) {                                                        \
    float* yj = y + rel + 4 * (c);                                               \
    const v128_t v = wasm_f32x4_mul(Q8_DOT(c, f), wasm_v128_load(scales + rel + 4 * (c))); \
    wasm_v128_store(yj, accumulate ? wasm_f32x4_add(wasm_v128_load(yj), v) : v); \
  }
    Q8_STORE(0, f0) Q8_STORE(1, f1) Q8_STORE(2, f2) Q8_STORE(3, f3)
#undef Q8_STORE
#undef Q8_DOT
  }
  (void)sums;
}

// y[j] (+)= (x·W)[j] for the packed int8 W (np = padded N, a multiple of 16;
// its scales and column sums at `scales`); y gets its n ≤ np entries, n a
// multiple of 4. work: q8_work_bytes(k) bytes, 16-byte aligned.
EXPORT(gemv_q8)
void gemv_q8(const float* x, const signed char* w, const float* scales, int k, int n, int np,
             float* y, int accumulate, v128_t* work, int dot) {
  q8_quantize(x, k, work, dot);
  gemv_q8_blocks(work, w, scales, y, k, n, accumulate, 0, 0, np / 16);
}

// The GEMM pool's chunk of an int8 matrix-vector product (descriptor kind 3,
// ops/gemm_pool.ts): column blocks [from, to). d: 3, 0, work (the quantised
// x), w, scales, y, k, n, accumulate, origin.
void gemv_q8_chunk(const int* d, int from, int to) {
  gemv_q8_blocks((const v128_t*)(unsigned long)(unsigned)d[2],
                 (const signed char*)(unsigned long)(unsigned)d[3],
                 (const float*)(unsigned long)(unsigned)d[4], (float*)(unsigned long)(unsigned)d[5],
                 d[6], d[7], d[8], d[9], from, to);
}

// Dequantise packed int8 rows: out [K, N] row-major float32 (the unfused
// lowering of `dequantize`, and tests).
EXPORT(unpack_q8)
void unpack_q8(const signed char* w, const float* scales, int k, int n, int np, float* out) {
  const int kq = (k + 3) / 4;
  for (int jb = 0; jb < np; jb += 16) {
    const signed char* wb = w + (long)jb * kq * 4;
    for (int i = 0; i < k; i++) {
      const signed char* pr = wb + (long)(i / 4) * 64 + (i & 3);
      for (int c = 0; c < 16 && jb + c < n; c++) out[(long)i * n + jb + c] = pr[4 * c] * scales[jb + c];
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
