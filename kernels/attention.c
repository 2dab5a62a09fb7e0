// The attention core of a segment in one call (ops/fusion/attention.ts):
// for every batch row b and head h, P = softmax(scale · Q Kᵀ, causal) and
// O = P V, read from and written to the projections' own layouts — q and the
// output [B, S, D], kv [B, T, 2D] (keys, then values), head h in columns
// [h·E, (h+1)·E) — so no head is split or merged by a copy. Query i sees
// key j ≤ i + (T − S). The products run on the GEMM of kernels/gemm.c
// (strided operands cost nothing extra: its packing reads any strides).
#include "simd.h"

void gemm(int m, int n, int k, const float* a, int rsa, int csa, const float* b, int rsb, int csb,
          float* c, int ldc, int accumulate, float* work);
int gemm_work_floats(void);

// Row i of p (t floats): softmax of scale · p over keys [0, lim], 0 beyond.
static void softmax_row(float* p, int t, int lim, float scale) {
  const v128_t s4 = wasm_f32x4_splat(scale);
  int j = 0;
  v128_t m4 = wasm_f32x4_splat(-3.402823466e38f);
  for (; j + 4 <= lim + 1; j += 4) m4 = wasm_f32x4_pmax(m4, wasm_f32x4_mul(wasm_v128_load(p + j), s4));
  float m = hmax(m4);
  for (; j <= lim; j++) m = p[j] * scale > m ? p[j] * scale : m;
  const v128_t mm = wasm_f32x4_splat(m);
  v128_t sum4 = wasm_f32x4_splat(0.0f);
  for (j = 0; j + 4 <= lim + 1; j += 4) {
    const v128_t e = exp4(wasm_f32x4_sub(wasm_f32x4_mul(wasm_v128_load(p + j), s4), mm));
    wasm_v128_store(p + j, e);
    sum4 = wasm_f32x4_add(sum4, e);
  }
  float sum = hsum(sum4);
  for (; j <= lim; j++) {
    p[j] = exp1(p[j] * scale - m);
    sum += p[j];
  }
  const float inv = 1.0f / sum;
  const v128_t i4 = wasm_f32x4_splat(inv);
  for (j = 0; j + 4 <= lim + 1; j += 4) wasm_v128_store(p + j, wasm_f32x4_mul(wasm_v128_load(p + j), i4));
  for (; j <= lim; j++) p[j] *= inv;
  for (j = lim + 1; j < t; j++) p[j] = 0.0f;
}

// Softmax backwards over `rows` rows of t, in place: g = P ⊙ (g − rowsum(g ⊙ P))·scale.
static void softmax_grad_rows(const float* p, float* g, long rows, int t, float scale) {
  for (long i = 0; i < rows; i++) {
    const float* pi = p + i * t;
    float* gi = g + i * t;
    v128_t acc = wasm_f32x4_splat(0.0f);
    int j = 0;
    for (; j + 4 <= t; j += 4) acc = MADD(wasm_v128_load(gi + j), wasm_v128_load(pi + j), acc);
    float dot = hsum(acc);
    for (; j < t; j++) dot += gi[j] * pi[j];
    const v128_t d4 = wasm_f32x4_splat(dot), s4 = wasm_f32x4_splat(scale);
    for (j = 0; j + 4 <= t; j += 4) {
      const v128_t d = wasm_f32x4_sub(wasm_v128_load(gi + j), d4);
      wasm_v128_store(gi + j, wasm_f32x4_mul(wasm_f32x4_mul(d, wasm_v128_load(pi + j)), s4));
    }
    for (; j < t; j++) gi[j] = (gi[j] - dot) * pi[j] * scale;
  }
}

// Scratch floats the attention kernels need in `work` (16-byte aligned).
EXPORT(attention_work_floats)
int attention_work_floats(int s, int t) { return gemm_work_floats() + ((s * t + 3) & ~3); }

// out = attention(q, kv); probs (B·H·S·T floats) receives P for the backward
// pass, or is 0 (then P lives in work). With a dropout mask [B, H, S, T]
// (not 0), the values are read with P ⊙ mask, which `dropped` receives.
EXPORT(attention_fwd)
void attention_fwd(const float* q, const float* kv, int nb, int s, int t, int nh, int e, float scale,
                   float* out, float* probs, float* dropped, const float* mask, float* work) {
  const int d = nh * e, d2 = 2 * d;
  float* gw = work;
  float* scratch = work + gemm_work_floats();
  for (int b = 0; b < nb; b++) {
    for (int h = 0; h < nh; h++) {
      const float* qb = q + (long)b * s * d + h * e;
      const float* kb = kv + (long)b * t * d2 + h * e;
      const float* vb = kb + d;
      float* p = probs ? probs + ((long)b * nh + h) * s * t : scratch;
      gemm(s, t, e, qb, d, 1, kb, 1, d2, p, t, 0, gw);  // Q Kᵀ, [S, T]
      for (int i = 0; i < s; i++) softmax_row(p + (long)i * t, t, i + t - s, scale);
      const float* pv = p;
      if (mask) {
        const long at = ((long)b * nh + h) * s * t;
        float* pd = dropped + at;
        for (long i = 0; i < (long)s * t; i++) pd[i] = p[i] * mask[at + i];
        pv = pd;
      }
      gemm(s, e, t, pv, t, 1, vb, d2, 1, out + (long)b * s * d + h * e, d, 0, gw);  // P V, [S, E]
    }
  }
}

// The backward pass from P (probs) and dout [B, S, D]: dq [B, S, D] and
// dkv [B, T, 2D] (both overwritten).
EXPORT(attention_bwd)
void attention_bwd(const float* q, const float* kv, const float* probs, const float* dropped,
                   const float* mask, const float* dout, int nb, int s, int t, int nh, int e,
                   float scale, float* dq, float* dkv, float* work) {
  const int d = nh * e, d2 = 2 * d;
  float* gw = work;
  float* dp = work + gemm_work_floats();
  for (int b = 0; b < nb; b++) {
    for (int h = 0; h < nh; h++) {
      const float* qb = q + (long)b * s * d + h * e;
      const float* kb = kv + (long)b * t * d2 + h * e;
      const float* vb = kb + d;
      const float* p = probs + ((long)b * nh + h) * s * t;
      const float* go = dout + (long)b * s * d + h * e;
      gemm(s, t, e, go, d, 1, vb, 1, d2, dp, t, 0, gw);  // dP = dO Vᵀ
      const long at = ((long)b * nh + h) * s * t;
      if (mask) {
        for (long i = 0; i < (long)s * t; i++) dp[i] *= mask[at + i];  // through the dropout
      }
      softmax_grad_rows(p, dp, s, t, scale);
      // dQ = dS K; dK = dSᵀ Q; dV = Pᵀ dO.
      gemm(s, e, t, dp, t, 1, kb, d2, 1, dq + (long)b * s * d + h * e, d, 0, gw);
      gemm(t, e, s, dp, 1, t, qb, d, 1, dkv + (long)b * t * d2 + h * e, d2, 0, gw);
      const float* pv = mask ? dropped + at : p;
      gemm(t, e, s, pv, 1, t, go, d, 1, dkv + (long)b * t * d2 + d + h * e, d2, 0, gw);
    }
  }
}

// The softmax step alone, for products computed elsewhere (native BLAS): each of
// the nbh [S, T] blocks of p (scores Q Kᵀ) becomes P in place.
EXPORT(attention_softmax)
void attention_softmax(float* p, int nbh, int s, int t, float scale) {
  for (int g = 0; g < nbh; g++) {
    float* pg = p + (long)g * s * t;
    for (int i = 0; i < s; i++) softmax_row(pg + (long)i * t, t, i + t - s, scale);
  }
}

// Its backward step, in place: dp (dO Vᵀ per block) becomes dS = P ⊙ (dP − rowsum(dP ⊙ P))·scale.
EXPORT(attention_softmax_grad)
void attention_softmax_grad(const float* p, float* dp, int nbh, int s, int t, float scale) {
  softmax_grad_rows(p, dp, nbh * s, t, scale);
}
