// The attention of a streaming step (ops/fusion/decode.ts): r new rows attend
// to the open segment's P cached keys and values and to their own, causally
// among themselves. The caches are [H, P, E] per head (one batch row); the
// step writes the extended caches [H, P + r, E] to new buffers (tensors are
// immutable) and the merged heads' output [r, D].
#include "simd.h"

// q [r, D]; kv [r, 2D] (the new rows' keys then values); kc, vc [H, P, E]
// (absent when P = 0); kout, vout [H, P + r, E]; out [r, D]. scores: r·(P + r)
// floats of scratch.
EXPORT(attention_step)
void attention_step(const float* q, const float* kv, const float* kc, const float* vc, int r,
                    int p, int nh, int e, float scale, float* kout, float* vout, float* out,
                    float* scores) {
  const int d = nh * e, t = p + r;
  for (int h = 0; h < nh; h++) {
    float* kh = kout + (long)h * t * e;
    float* vh = vout + (long)h * t * e;
    if (p > 0) {
      __builtin_memcpy(kh, kc + (long)h * p * e, (unsigned long)p * e * sizeof(float));
      __builtin_memcpy(vh, vc + (long)h * p * e, (unsigned long)p * e * sizeof(float));
    }
    for (int i = 0; i < r; i++) {
      __builtin_memcpy(kh + (long)(p + i) * e, kv + (long)i * 2 * d + h * e, (unsigned long)e * sizeof(float));
      __builtin_memcpy(vh + (long)(p + i) * e, kv + (long)i * 2 * d + d + h * e,
                       (unsigned long)e * sizeof(float));
    }
    for (int i = 0; i < r; i++) {
      const float* qi = q + (long)i * d + h * e;
      float* si = scores + (long)i * t;
      const int lim = p + i;  // keys 0 … p + i are visible
      float m = -3.402823466e38f;
      for (int j = 0; j <= lim; j++) {
        const float* kj = kh + (long)j * e;
        v128_t a = wasm_f32x4_splat(0.0f);
        int c = 0;
        for (; c + 4 <= e; c += 4) a = MADD(wasm_v128_load(qi + c), wasm_v128_load(kj + c), a);
        float s = hsum(a);
        for (; c < e; c++) s += qi[c] * kj[c];
        s *= scale;
        si[j] = s;
        m = s > m ? s : m;
      }
      float sum = 0.0f;
      for (int j = 0; j <= lim; j++) {
        si[j] = exp1(si[j] - m);
        sum += si[j];
      }
      const float inv = 1.0f / sum;
      float* oi = out + (long)i * d + h * e;
      for (int c = 0; c < e; c += 4) wasm_v128_store(oi + c, wasm_f32x4_splat(0.0f));
      for (int j = 0; j <= lim; j++) {
        const v128_t pj = wasm_f32x4_splat(si[j] * inv);
        const float* vj = vh + (long)j * e;
        for (int c = 0; c < e; c += 4) {
          wasm_v128_store(oi + c, MADD(pj, wasm_v128_load(vj + c), wasm_v128_load(oi + c)));
        }
      }
    }
  }
}

// x[i] += y[i] (the residual of a step's rows when the product could not add it).
EXPORT(add_inplace)
void add_inplace(float* x, const float* y, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(x + i, wasm_f32x4_add(wasm_v128_load(x + i), wasm_v128_load(y + i)));
  for (; i < n; i++) x[i] += y[i];
}
