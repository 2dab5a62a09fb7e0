// A float32 GEMM for WebAssembly SIMD (kernels/build.ts builds it twice: `gemm`
// on tfjs-backend-wasm's own heap, `gemm_shared` on a shared memory that two
// threads use at once; ops/gemm_pool.ts drives both).
//
//   C = op(A)·op(B)   or, with `accumulate`, C += op(A)·op(B)
//
// op(A) is M×K and op(B) is K×N, each given by a base pointer and two strides
// (in floats): element (i, p) of op(A) is a[i·rsa + p·csa], element (p, j) of
// op(B) is b[p·rsb + j·csb]. A row-major A is (rsa, csa) = (lda, 1), a
// transposed one (1, lda), so a transpose costs nothing beyond the packing
// every product does anyway. C is row-major with leading dimension ldc.
//
// The structure is the usual one of a packed GEMM (Goto and van de Geijn,
// "Anatomy of high-performance matrix multiplication", 2008): B is packed in
// blocks of KC×NC into strips of NR = 8 columns, A in blocks of MC×KC into
// strips of MR = 5 rows, and a 5×8 register tile runs over each pair of
// strips. Per step p of the tile it loads the strip's first four A values as
// one vector and broadcasts each lane with a shuffle, and the fifth with a
// four-byte broadcast load: ten accumulators, two B vectors, the A vector
// and one broadcast take 14 of V8's 15 usable vector registers. On V8
// (x86-64) the 4×8 tile this replaced ran 1.3–1.4× faster than a 6×8 tile
// fed by broadcast loads alone (which spills), and the 5×8 one 1.06–1.13×
// faster again in the register tile alone (8 accumulators do not hide the
// FMA latency at two FMAs a cycle; 4×12 spills). The p loop must not be
// unrolled: unrolled twice (as it was), V8's register allocator spilled
// accumulators and a step waited on the stack — 38.6 GFLOP/s on one thread
// of a 4.2 GHz Zen 5 against 63.0 without the unroll (94 % of its two
// 128-bit FMA pipes; bench/gemm.ts, [700, 256]·[256, 10,000]). Every element of C still
// sums its K products in the same order, so the result does not depend on
// the tile. Strips at the edges are zero-padded in the packing, the tile is
// computed in full into a scratch tile and only its valid part is written
// to C.
//
// No stack and no static data: every buffer is a pointer the caller hands in
// (`work`, gemm_work_floats() floats, 16-byte aligned, one per thread), so
// the same code runs on a heap it does not own and on a memory shared by
// threads.
#include "simd.h"


#define MR 5
#define NR 8
#define KC 256
#define MC 120 // multiple of MR
#define NC 2048 // multiple of NR
#define GEMV_M 4 // at most this many rows: gemv(), B unpacked
#define JB 1024  // gemv(): columns of C per block (4 KiB a row)

// Workspace layout (floats): packed A block, packed B block, one scratch tile.
#define WORK_A 0
#define WORK_B (WORK_A + MC * KC)
#define WORK_TILE (WORK_B + KC * NC)
#define GEMM_WORK_FLOATS (WORK_TILE + MR * NR)

// The floats of workspace one thread needs for `gemm`.
EXPORT(gemm_work_floats)
int gemm_work_floats(void) { return GEMM_WORK_FLOATS; }

// --- packing -------------------------------------------------------------------

// Rows [i0, i0 + mc) × columns [p0, p0 + kc) of op(A) into strips of MR rows:
// strip s holds, for each p, the MR values of rows i0 + s·MR … as consecutive
// floats (rows past mc are zeros).
static void pack_a(int mc, int kc, const float* a, int rsa, int csa, float* out) {
  for (int i = 0; i < mc; i += MR) {
    const int rows = mc - i < MR ? mc - i : MR;
    const float* src = a + (long)i * rsa;
    if (rows == MR && csa == 1) {
      // Row-major A: each row is contiguous in p; transpose 4×4 blocks of the first four rows
      // (each p's four values then stored unaligned at p·MR), the fifth row one by one.
      const float* r0 = src;
      const float* r1 = src + rsa;
      const float* r2 = src + 2 * rsa;
      const float* r3 = src + 3 * rsa;
      const float* r4 = src + 4 * rsa;
      int p = 0;
      for (; p + 4 <= kc; p += 4) {
        const v128_t x0 = wasm_v128_load(r0 + p), x1 = wasm_v128_load(r1 + p);
        const v128_t x2 = wasm_v128_load(r2 + p), x3 = wasm_v128_load(r3 + p);
        const v128_t lo01 = wasm_i32x4_shuffle(x0, x1, 0, 4, 1, 5); // a0 b0 a1 b1
        const v128_t hi01 = wasm_i32x4_shuffle(x0, x1, 2, 6, 3, 7); // a2 b2 a3 b3
        const v128_t lo23 = wasm_i32x4_shuffle(x2, x3, 0, 4, 1, 5);
        const v128_t hi23 = wasm_i32x4_shuffle(x2, x3, 2, 6, 3, 7);
        float* o = out + p * MR;
        wasm_v128_store(o, wasm_i32x4_shuffle(lo01, lo23, 0, 1, 4, 5));
        wasm_v128_store(o + MR, wasm_i32x4_shuffle(lo01, lo23, 2, 3, 6, 7));
        wasm_v128_store(o + 2 * MR, wasm_i32x4_shuffle(hi01, hi23, 0, 1, 4, 5));
        wasm_v128_store(o + 3 * MR, wasm_i32x4_shuffle(hi01, hi23, 2, 3, 6, 7));
        o[4] = r4[p], o[MR + 4] = r4[p + 1], o[2 * MR + 4] = r4[p + 2], o[3 * MR + 4] = r4[p + 3];
      }
      for (; p < kc; p++) {
        float* o = out + p * MR;
        o[0] = r0[p], o[1] = r1[p], o[2] = r2[p], o[3] = r3[p], o[4] = r4[p];
      }
    } else if (rows == MR && rsa == 1) {
      // Transposed A: the MR values of one p are contiguous.
      for (int p = 0; p < kc; p++) {
        const float* s = src + (long)p * csa;
        wasm_v128_store(out + p * MR, wasm_v128_load(s));
        out[p * MR + 4] = s[4];
      }
    } else {
      for (int p = 0; p < kc; p++) {
        float* o = out + p * MR;
        int r = 0;
        for (; r < rows; r++) o[r] = src[(long)r * rsa + (long)p * csa];
        for (; r < MR; r++) o[r] = 0.0f;
      }
    }
    out += MR * kc;
  }
}

// Rows [p0, p0 + kc) × columns [j0, j0 + nc) of op(B) into strips of NR
// columns: strip s holds, for each p, the NR values of columns j0 + s·NR …
// (columns past nc are zeros).
static void pack_b(int kc, int nc, const float* b, int rsb, int csb, float* out) {
  for (int j = 0; j < nc; j += NR) {
    const int cols = nc - j < NR ? nc - j : NR;
    const float* src = b + (long)j * csb;
    if (cols == NR && csb == 1) {
      // Row-major B: the NR values of one p are contiguous.
      for (int p = 0; p < kc; p++) {
        const float* s = src + (long)p * rsb;
        wasm_v128_store(out + p * NR, wasm_v128_load(s));
        wasm_v128_store(out + p * NR + 4, wasm_v128_load(s + 4));
      }
    } else if (cols == NR && rsb == 1) {
      // Transposed B: each column is contiguous in p; transpose 4×4 blocks.
      int p = 0;
      for (; p + 4 <= kc; p += 4) {
        for (int h = 0; h < NR; h += 4) {
          const float* c0 = src + (long)h * csb + p;
          const v128_t x0 = wasm_v128_load(c0), x1 = wasm_v128_load(c0 + csb);
          const v128_t x2 = wasm_v128_load(c0 + 2 * csb), x3 = wasm_v128_load(c0 + 3 * csb);
          const v128_t lo01 = wasm_i32x4_shuffle(x0, x1, 0, 4, 1, 5);
          const v128_t hi01 = wasm_i32x4_shuffle(x0, x1, 2, 6, 3, 7);
          const v128_t lo23 = wasm_i32x4_shuffle(x2, x3, 0, 4, 1, 5);
          const v128_t hi23 = wasm_i32x4_shuffle(x2, x3, 2, 6, 3, 7);
          float* o = out + p * NR + h;
          wasm_v128_store(o, wasm_i32x4_shuffle(lo01, lo23, 0, 1, 4, 5));
          wasm_v128_store(o + NR, wasm_i32x4_shuffle(lo01, lo23, 2, 3, 6, 7));
          wasm_v128_store(o + 2 * NR, wasm_i32x4_shuffle(hi01, hi23, 0, 1, 4, 5));
          wasm_v128_store(o + 3 * NR, wasm_i32x4_shuffle(hi01, hi23, 2, 3, 6, 7));
        }
      }
      for (; p < kc; p++) {
        for (int c = 0; c < NR; c++) out[p * NR + c] = src[(long)c * csb + p];
      }
    } else {
      for (int p = 0; p < kc; p++) {
        float* o = out + p * NR;
        int c = 0;
        for (; c < cols; c++) o[c] = src[(long)p * rsb + (long)c * csb];
        for (; c < NR; c++) o[c] = 0.0f;
      }
    }
    out += NR * kc;
  }
}

// --- the register tile -----------------------------------------------------------

// Row r of the tile += (lane l of v, broadcast) · (b0, b1).
#define ROW(r, v, l)                                                                               \
  {                                                                                                \
    const v128_t ar = wasm_i32x4_shuffle(v, v, l, l, l, l);                                        \
    c##r##0 = MADD(ar, b0, c##r##0);                                                               \
    c##r##1 = MADD(ar, b1, c##r##1);                                                               \
  }

#define STORE(r)                                                                                   \
  {                                                                                                \
    float* cr = c + r * ldc;                                                                       \
    if (accumulate) {                                                                              \
      c##r##0 = wasm_f32x4_add(c##r##0, wasm_v128_load(cr));                                       \
      c##r##1 = wasm_f32x4_add(c##r##1, wasm_v128_load(cr + 4));                                   \
    }                                                                                              \
    wasm_v128_store(cr, c##r##0);                                                                  \
    wasm_v128_store(cr + 4, c##r##1);                                                              \
  }

// The 5×8 tile c (leading dimension ldc) = (accumulate ? c : 0) + Σ_p a_p b_pᵀ
// over kc packed steps of a (MR floats each) and b (NR floats each).
static inline void tile(int kc, const float* a, const float* b, float* c, int ldc,
                        int accumulate) {
  const v128_t z = wasm_f32x4_splat(0.0f);
  v128_t c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z, c41 = z;
#pragma clang loop unroll(disable)  // see the header: unrolled, V8 spills
  for (int p = 0; p < kc; p++) {
    const v128_t b0 = wasm_v128_load(b), b1 = wasm_v128_load(b + 4);
    const v128_t va = wasm_v128_load(a);
    ROW(0, va, 0) ROW(1, va, 1) ROW(2, va, 2) ROW(3, va, 3)
    {
      const v128_t a4 = wasm_v128_load32_splat(a + 4);
      c40 = MADD(a4, b0, c40);
      c41 = MADD(a4, b1, c41);
    }
    a += MR;
    b += NR;
  }
  STORE(0) STORE(1) STORE(2) STORE(3) STORE(4)
}

// One packed block: C[mc × nc] (+)= packed A block · packed B block.
static void macro(int mc, int nc, int kc, const float* pa, const float* pb, float* c, int ldc,
                  int accumulate, float* scratch) {
  for (int j = 0; j < nc; j += NR) {
    const int cols = nc - j < NR ? nc - j : NR;
    const float* bs = pb + j * kc;
    for (int i = 0; i < mc; i += MR) {
      const int rows = mc - i < MR ? mc - i : MR;
      const float* as = pa + i * kc;
      float* ct = c + (long)i * ldc + j;
      if (rows == MR && cols == NR) {
        tile(kc, as, bs, ct, ldc, accumulate);
      } else {
        tile(kc, as, bs, scratch, NR, 0);
        for (int r = 0; r < rows; r++) {
          for (int q = 0; q < cols; q++) {
            const float v = scratch[r * NR + q];
            ct[(long)r * ldc + q] = accumulate ? ct[(long)r * ldc + q] + v : v;
          }
        }
      }
    }
  }
}

// --- few rows ------------------------------------------------------------------------

// C[m × n] (+)= op(A)·op(B) for m ≤ GEMV_M rows, without packing: packing B
// costs as much as such a product (both read all of B once), so B is read
// once, in place. A row-major B is read row by row (C rows += a_rp · B row p,
// four p at a time, over column blocks of C that stay in L1); a transposed B
// is read column by column (dot products with A's rows, packed per K block).
// Returns 0, doing nothing, for a B that is neither (general strides).
static int gemv(int m, int n, int k, const float* a, int rsa, int csa, const float* b, int rsb,
                int csb, float* c, int ldc, int accumulate, float* work) {
  if (csb == 1) {
    for (int j0 = 0; j0 < n; j0 += JB) {
      const int jn = n - j0 < JB ? n - j0 : JB;
      if (!accumulate) {
        for (int r = 0; r < m; r++) {
          for (int j = 0; j < jn; j++) c[(long)r * ldc + j0 + j] = 0.0f;
        }
      }
      int p = 0;
      for (; p + 4 <= k; p += 4) {
        const float* b0 = b + (long)p * rsb + j0;
        const float* b1 = b0 + rsb;
        const float* b2 = b1 + rsb;
        const float* b3 = b2 + rsb;
        for (int r = 0; r < m; r++) {
          const float* ar = a + (long)r * rsa + (long)p * csa;
          const float s0 = ar[0], s1 = ar[csa], s2 = ar[2 * csa], s3 = ar[3 * csa];
          const v128_t a0 = wasm_f32x4_splat(s0), a1 = wasm_f32x4_splat(s1);
          const v128_t a2 = wasm_f32x4_splat(s2), a3 = wasm_f32x4_splat(s3);
          float* cr = c + (long)r * ldc + j0;
          int j = 0;
          for (; j + 4 <= jn; j += 4) {
            v128_t x = wasm_v128_load(cr + j);
            x = MADD(a0, wasm_v128_load(b0 + j), x);
            x = MADD(a1, wasm_v128_load(b1 + j), x);
            x = MADD(a2, wasm_v128_load(b2 + j), x);
            x = MADD(a3, wasm_v128_load(b3 + j), x);
            wasm_v128_store(cr + j, x);
          }
          for (; j < jn; j++) cr[j] += s0 * b0[j] + s1 * b1[j] + s2 * b2[j] + s3 * b3[j];
        }
      }
      for (; p < k; p++) {
        const float* bp = b + (long)p * rsb + j0;
        for (int r = 0; r < m; r++) {
          const float s = a[(long)r * rsa + (long)p * csa];
          float* cr = c + (long)r * ldc + j0;
          for (int j = 0; j < jn; j++) cr[j] += s * bp[j];
        }
      }
    }
    return 1;
  }
  if (rsb != 1) return 0;
  for (int p0 = 0; p0 < k; p0 += KC) {
    const int kc = k - p0 < KC ? k - p0 : KC;
    const int acc = accumulate || p0 > 0;
    // A's rows for this K block, contiguous: work[r·KC + q] = op(A)[r, p0 + q].
    for (int r = 0; r < m; r++) {
      for (int q = 0; q < kc; q++) work[r * KC + q] = a[(long)r * rsa + (long)(p0 + q) * csa];
    }
    for (int j = 0; j < n; j++) {
      const float* bj = b + (long)j * csb + p0;
      for (int r = 0; r < m; r++) {
        const float* ar = work + r * KC;
        v128_t x0 = wasm_f32x4_splat(0.0f), x1 = x0;
        int q = 0;
        for (; q + 8 <= kc; q += 8) {
          x0 = wasm_f32x4_add(x0, wasm_f32x4_mul(wasm_v128_load(ar + q), wasm_v128_load(bj + q)));
          x1 = wasm_f32x4_add(x1,
                              wasm_f32x4_mul(wasm_v128_load(ar + q + 4), wasm_v128_load(bj + q + 4)));
        }
        x0 = wasm_f32x4_add(x0, x1);
        x0 = wasm_f32x4_add(x0, wasm_i32x4_shuffle(x0, x0, 2, 3, 0, 1));
        x0 = wasm_f32x4_add(x0, wasm_i32x4_shuffle(x0, x0, 1, 0, 3, 2));
        float dot = wasm_f32x4_extract_lane(x0, 0);
        for (; q < kc; q++) dot += ar[q] * bj[q];
        float* cj = c + (long)r * ldc + j;
        *cj = acc ? *cj + dot : dot;
      }
    }
  }
  return 1;
}

// --- entry points ------------------------------------------------------------------

// C (+)= op(A)·op(B) for one product; see the top of the file for the strides.
EXPORT(gemm)
void gemm(int m, int n, int k, const float* a, int rsa, int csa, const float* b, int rsb, int csb,
          float* c, int ldc, int accumulate, float* work) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (!accumulate) {
      for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) c[(long)i * ldc + j] = 0.0f;
      }
    }
    return;
  }
  if (m <= GEMV_M && gemv(m, n, k, a, rsa, csa, b, rsb, csb, c, ldc, accumulate, work)) return;
  float* pa = work + WORK_A;
  float* pb = work + WORK_B;
  float* scratch = work + WORK_TILE;
  for (int j = 0; j < n; j += NC) {
    const int nc = n - j < NC ? n - j : NC;
    for (int p = 0; p < k; p += KC) {
      const int kc = k - p < KC ? k - p : KC;
      // Later K blocks add to what the first one wrote.
      const int acc = accumulate || p > 0;
      pack_b(kc, nc, b + (long)p * rsb + (long)j * csb, rsb, csb, pb);
      for (int i = 0; i < m; i += MC) {
        const int mc = m - i < MC ? m - i : MC;
        pack_a(mc, kc, a + (long)i * rsa + (long)p * csa, rsa, csa, pa);
        macro(mc, nc, kc, pa, pb, c + (long)i * ldc + j, ldc, acc, scratch);
      }
    }
  }
}

// `batch` products: product t reads A at a + t·sa, B at b + t·sb and writes
// C at c + t·sc (a stride of 0 shares one operand across the batch).
EXPORT(gemm_batched)
void gemm_batched(int batch, int m, int n, int k, const float* a, int rsa, int csa, int sa,
                  const float* b, int rsb, int csb, int sb, float* c, int ldc, int sc,
                  int accumulate, float* work) {
  for (int t = 0; t < batch; t++) {
    gemm(m, n, k, a + (long)t * sa, rsa, csa, b + (long)t * sb, rsb, csb, c + (long)t * sc, ldc,
         accumulate, work);
  }
}

// Units [from, to) of a product cut into chunks (ops/gemm_pool.ts): `d`
// points to 19 ints — the kind of unit (0: batch entries, 1: rows, 2:
// columns), an unused word, then the 17 arguments of gemm_batched.
// Pointers are byte offsets. Kind 3 is a chunk of column blocks of an int8
// matrix-vector product instead (gemv_q8_chunk, kernels/gemv.c, linked into
// every module that has this function).
void gemv_q8_chunk(const int* d, int from, int to);

EXPORT(gemm_chunk)
void gemm_chunk(const int* d, int from, int to) {
  const int kind = d[0];
  if (kind == 3) {  // an int8 matrix-vector product's column blocks (kernels/gemv.c)
    gemv_q8_chunk(d, from, to);
    return;
  }
  int batch = d[2], m = d[3], n = d[4];
  const int k = d[5];
  const float* a = (const float*)(unsigned long)(unsigned)d[6];
  const int rsa = d[7], csa = d[8], sa = d[9];
  const float* b = (const float*)(unsigned long)(unsigned)d[10];
  const int rsb = d[11], csb = d[12], sb = d[13];
  float* c = (float*)(unsigned long)(unsigned)d[14];
  const int ldc = d[15], sc = d[16], accumulate = d[17];
  float* work = (float*)(unsigned long)(unsigned)d[18];
  if (kind == 0) {
    batch = to - from;
    a += (long)from * sa, b += (long)from * sb, c += (long)from * sc;
  } else if (kind == 1) {
    m = to - from;
    a += (long)from * rsa, c += (long)from * ldc;
  } else {
    n = to - from;
    b += (long)from * csb, c += from;
  }
  gemm_batched(batch, m, n, k, a, rsa, csa, sa, b, rsb, csb, sb, c, ldc, sc, accumulate, work);
}
