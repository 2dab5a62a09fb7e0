// The elementwise ends of a fused linear layer (ops/fusion/linear.ts): the
// bias and residual a product accumulates onto, the ReLU after it, and the
// same steps backwards. The product itself is the matmul tier's (native
// BLAS or kernels/gemm.c), which adds onto what these kernels prefill.
#include "simd.h"

// out[i, j] = (r ? r[i, j] : 0) + (b ? b[j] : 0): what C starts as before C += A·B.
EXPORT(bias_rows)
void bias_rows(float* out, const float* b, const float* r, int m, int n) {
  for (int i = 0; i < m; i++) {
    float* o = out + (long)i * n;
    const float* ri = r ? r + (long)i * n : 0;
    int j = 0;
    if (b && ri) {
      for (; j + 4 <= n; j += 4) {
        wasm_v128_store(o + j, wasm_f32x4_add(wasm_v128_load(ri + j), wasm_v128_load(b + j)));
      }
      for (; j < n; j++) o[j] = ri[j] + b[j];
    } else if (b) {
      for (; j + 4 <= n; j += 4) wasm_v128_store(o + j, wasm_v128_load(b + j));
      for (; j < n; j++) o[j] = b[j];
    } else if (ri) {
      __builtin_memcpy(o, ri, (unsigned long)n * sizeof(float));
    } else {
      for (; j < n; j++) o[j] = 0.0f;
    }
  }
}

// x = max(x, 0), in place.
EXPORT(relu_inplace)
void relu_inplace(float* x, int n) {
  const v128_t z = wasm_f32x4_splat(0.0f);
  int i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(x + i, wasm_f32x4_pmax(z, wasm_v128_load(x + i)));
  for (; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

// Backwards through y = relu(z): dz = dy where y > 0, else 0; and, when db is
// not 0, the bias gradient db[j] = Σ_i dz[i, j].
EXPORT(relu_grad)
void relu_grad(const float* dy, const float* y, int m, int n, float* dz, float* db) {
  const v128_t zero = wasm_f32x4_splat(0.0f);
  if (db) {
    for (int j = 0; j < n; j++) db[j] = 0.0f;
  }
  for (int i = 0; i < m; i++) {
    const float* dyi = dy + (long)i * n;
    const float* yi = y + (long)i * n;
    float* dzi = dz + (long)i * n;
    int j = 0;
    for (; j + 4 <= n; j += 4) {
      const v128_t on = wasm_f32x4_gt(wasm_v128_load(yi + j), zero);
      const v128_t g = wasm_v128_and(wasm_v128_load(dyi + j), on);
      wasm_v128_store(dzi + j, g);
      if (db) wasm_v128_store(db + j, wasm_f32x4_add(wasm_v128_load(db + j), g));
    }
    for (; j < n; j++) {
      const float g = yi[j] > 0.0f ? dyi[j] : 0.0f;
      dzi[j] = g;
      if (db) db[j] += g;
    }
  }
}

// db[j] = Σ_i dy[i, j].
EXPORT(col_sums)
void col_sums(const float* dy, int m, int n, float* db) {
  for (int j = 0; j < n; j++) db[j] = 0.0f;
  for (int i = 0; i < m; i++) {
    const float* r = dy + (long)i * n;
    int j = 0;
    for (; j + 4 <= n; j += 4) {
      wasm_v128_store(db + j, wasm_f32x4_add(wasm_v128_load(db + j), wasm_v128_load(r + j)));
    }
    for (; j < n; j++) db[j] += r[j];
  }
}

// out = a ⊙ b, elementwise (a dropout mask applied; out may be a).
EXPORT(mul_into)
void mul_into(float* out, const float* a, const float* b, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(out + i, wasm_f32x4_mul(wasm_v128_load(a + i), wasm_v128_load(b + i)));
  for (; i < n; i++) out[i] = a[i] * b[i];
}

// out = out ⊙ mask + (r ? r : 0): inverted dropout of a product, then the residual.
EXPORT(mask_add)
void mask_add(float* out, const float* mask, const float* r, int n) {
  int i = 0;
  if (r) {
    for (; i + 4 <= n; i += 4) {
      const v128_t v = wasm_f32x4_mul(wasm_v128_load(out + i), wasm_v128_load(mask + i));
      wasm_v128_store(out + i, wasm_f32x4_add(v, wasm_v128_load(r + i)));
    }
    for (; i < n; i++) out[i] = out[i] * mask[i] + r[i];
  } else {
    mul_into(out, out, mask, n);
  }
}
