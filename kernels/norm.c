// LayerNorm over the last axis in one pass per row, forward and backward
// (ops/fusion/norm.ts): y = x̂·g + b with x̂ = (x − μ)·inv, inv = 1/√(σ² + eps),
// σ² the biased variance. The backward pass is the closed form
// dx = inv·(dy·g − mean(dy·g) − x̂·mean(dy·g·x̂)), dg = Σ dy·x̂, db = Σ dy.
#include "simd.h"

// Row sums of x[0, d) in four lanes, then folded (SIMD order: the float sum
// may differ from a sequential one in the last bits).
static inline float row_sum(const float* x, int d) {
  v128_t a = wasm_f32x4_splat(0.0f), c = a;
  int j = 0;
  for (; j + 8 <= d; j += 8) {
    a = wasm_f32x4_add(a, wasm_v128_load(x + j));
    c = wasm_f32x4_add(c, wasm_v128_load(x + j + 4));
  }
  float s = hsum(wasm_f32x4_add(a, c));
  for (; j < d; j++) s += x[j];
  return s;
}

// y[r] = LN(x[r]) for n rows of d; when xhat is not 0 it receives x̂ and inv
// each row's 1/√(σ² + eps), for the backward pass.
EXPORT(layernorm)
void layernorm(const float* x, const float* g, const float* b, int n, int d, float eps, float* y,
               float* xhat, float* inv) {
  for (int r = 0; r < n; r++) {
    const float* xr = x + (long)r * d;
    float* yr = y + (long)r * d;
    const float mu = row_sum(xr, d) / (float)d;
    const v128_t m4 = wasm_f32x4_splat(mu);
    v128_t v4 = wasm_f32x4_splat(0.0f);
    int j = 0;
    for (; j + 4 <= d; j += 4) {
      const v128_t c = wasm_f32x4_sub(wasm_v128_load(xr + j), m4);
      v4 = MADD(c, c, v4);
    }
    float var = hsum(v4);
    for (; j < d; j++) var += (xr[j] - mu) * (xr[j] - mu);
    var /= (float)d;
    const float iv = 1.0f / sqrt1(var + eps);
    const v128_t i4 = wasm_f32x4_splat(iv);
    float* xh = xhat ? xhat + (long)r * d : 0;
    for (j = 0; j + 4 <= d; j += 4) {
      const v128_t h = wasm_f32x4_mul(wasm_f32x4_sub(wasm_v128_load(xr + j), m4), i4);
      if (xh) wasm_v128_store(xh + j, h);
      wasm_v128_store(yr + j, MADD(h, wasm_v128_load(g + j), wasm_v128_load(b + j)));
    }
    for (; j < d; j++) {
      const float h = (xr[j] - mu) * iv;
      if (xh) xh[j] = h;
      yr[j] = h * g[j] + b[j];
    }
    if (inv) inv[r] = iv;
  }
}

// The backward pass for n rows from x̂ and inv: dx, and the gain and bias
// gradients dg, db (overwritten: summed over the rows).
EXPORT(layernorm_grad)
void layernorm_grad(const float* dy, const float* xhat, const float* inv, const float* g, int n,
                    int d, float* dx, float* dg, float* db) {
  for (int j = 0; j < d; j++) dg[j] = db[j] = 0.0f;
  for (int r = 0; r < n; r++) {
    const float* dyr = dy + (long)r * d;
    const float* xh = xhat + (long)r * d;
    float* dxr = dx + (long)r * d;
    v128_t s1 = wasm_f32x4_splat(0.0f), s2 = s1;
    int j = 0;
    for (; j + 4 <= d; j += 4) {
      const v128_t dyv = wasm_v128_load(dyr + j), h = wasm_v128_load(xh + j);
      const v128_t gx = wasm_f32x4_mul(dyv, wasm_v128_load(g + j));
      s1 = wasm_f32x4_add(s1, gx);
      s2 = MADD(gx, h, s2);
      wasm_v128_store(dg + j, MADD(dyv, h, wasm_v128_load(dg + j)));
      wasm_v128_store(db + j, wasm_f32x4_add(wasm_v128_load(db + j), dyv));
    }
    float m1 = hsum(s1), m2 = hsum(s2);
    for (; j < d; j++) {
      const float gx = dyr[j] * g[j];
      m1 += gx;
      m2 += gx * xh[j];
      dg[j] += dyr[j] * xh[j];
      db[j] += dyr[j];
    }
    m1 /= (float)d;
    m2 /= (float)d;
    const float iv = inv[r];
    const v128_t a = wasm_f32x4_splat(m1), c = wasm_f32x4_splat(m2), i4 = wasm_f32x4_splat(iv);
    for (j = 0; j + 4 <= d; j += 4) {
      const v128_t gx = wasm_f32x4_mul(wasm_v128_load(dyr + j), wasm_v128_load(g + j));
      const v128_t t = wasm_f32x4_sub(wasm_f32x4_sub(gx, a), wasm_f32x4_mul(wasm_v128_load(xh + j), c));
      wasm_v128_store(dxr + j, wasm_f32x4_mul(t, i4));
    }
    for (; j < d; j++) dxr[j] = iv * (dyr[j] * g[j] - m1 - xh[j] * m2);
  }
}
