// The attention of a streaming step (ops/fusion/decode.ts): r new rows attend
// to the open segment's P cached keys and values and to their own, causally
// among themselves. The caches hold per head P rows of E floats (one batch
// row), head h's at h·ps rows; the step writes the extended caches, P + r rows
// per head at h·ts, and the merged heads' output [r, D]. A tensor step writes
// new buffers (tensors are immutable; ps = P, ts = P + r); a decode loop that
// owns its caches passes the same buffers with room for the segment (ps = ts
// = its capacity), and only the new rows are written.
#include "simd.h"

// q·k for one key: E/4 multiply-adds in one chain, then the lanes' sum (the order every key's
// score is summed in, whichever loop computes it).
static inline float dot_key(const float* qi, const float* kj, int e) {
  v128_t a = wasm_f32x4_splat(0.0f);
  int c = 0;
  for (; c + 4 <= e; c += 4) a = MADD(wasm_v128_load(qi + c), wasm_v128_load(kj + c), a);
  float s = hsum(a);
  for (; c < e; c++) s += qi[c] * kj[c];
  return s;
}

// q [r, D]; kv [r, 2D] (the new rows' keys then values); kc, vc: P rows per
// head, head stride ps rows (absent when P = 0); kout, vout: P + r rows per
// head, head stride ts ≥ P + r rows (kout = kc and vout = vc when ts = ps:
// the cached rows are in place); out [r, D]. scores: r·(P + r) floats of
// scratch.
EXPORT(attention_step)
void attention_step(const float* q, const float* kv, const float* kc, const float* vc, int r,
                    int p, int nh, int e, float scale, float* kout, float* vout, float* out,
                    float* scores, int ps, int ts) {
  const int d = nh * e, t = p + r;
  const int in_place = kout == kc && vout == vc && ps == ts;
  for (int h = 0; h < nh; h++) {
    float* kh = kout + (long)h * ts * e;
    float* vh = vout + (long)h * ts * e;
    if (p > 0 && !in_place) {
      __builtin_memcpy(kh, kc + (long)h * ps * e, (unsigned long)p * e * sizeof(float));
      __builtin_memcpy(vh, vc + (long)h * ps * e, (unsigned long)p * e * sizeof(float));
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
      int j = 0;
      if ((e & 3) == 0) {
        // Four keys at a time: four independent chains (one chain waits on the multiply-add's
        // latency), each summed in the order dot_key sums it, so the scores are the same.
        for (; j + 3 <= lim; j += 4) {
          const float* k0 = kh + (long)j * e;
          v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
          for (int c = 0; c < e; c += 4) {
            const v128_t qc = wasm_v128_load(qi + c);
            a0 = MADD(qc, wasm_v128_load(k0 + c), a0);
            a1 = MADD(qc, wasm_v128_load(k0 + e + c), a1);
            a2 = MADD(qc, wasm_v128_load(k0 + 2 * e + c), a2);
            a3 = MADD(qc, wasm_v128_load(k0 + 3 * e + c), a3);
          }
          const float s0 = hsum(a0) * scale, s1 = hsum(a1) * scale;
          const float s2 = hsum(a2) * scale, s3 = hsum(a3) * scale;
          si[j] = s0, si[j + 1] = s1, si[j + 2] = s2, si[j + 3] = s3;
          m = s0 > m ? s0 : m, m = s1 > m ? s1 : m, m = s2 > m ? s2 : m, m = s3 > m ? s3 : m;
        }
      }
      for (; j <= lim; j++) {
        const float s = dot_key(qi, kh + (long)j * e, e) * scale;
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
      int c0 = 0;
      // 32 output columns at a time in registers (eight vectors), each summed over the keys in
      // order, as the loop below sums them through memory.
      for (; c0 + 32 <= e; c0 += 32) {
        v128_t o0 = wasm_f32x4_splat(0.0f), o1 = o0, o2 = o0, o3 = o0, o4 = o0, o5 = o0, o6 = o0,
               o7 = o0;
        for (int j = 0; j <= lim; j++) {
          const v128_t pj = wasm_f32x4_splat(si[j] * inv);
          const float* vj = vh + (long)j * e + c0;
          o0 = MADD(pj, wasm_v128_load(vj), o0), o1 = MADD(pj, wasm_v128_load(vj + 4), o1);
          o2 = MADD(pj, wasm_v128_load(vj + 8), o2), o3 = MADD(pj, wasm_v128_load(vj + 12), o3);
          o4 = MADD(pj, wasm_v128_load(vj + 16), o4), o5 = MADD(pj, wasm_v128_load(vj + 20), o5);
          o6 = MADD(pj, wasm_v128_load(vj + 24), o6), o7 = MADD(pj, wasm_v128_load(vj + 28), o7);
        }
        float* o = oi + c0;
        wasm_v128_store(o, o0), wasm_v128_store(o + 4, o1), wasm_v128_store(o + 8, o2);
        wasm_v128_store(o + 12, o3), wasm_v128_store(o + 16, o4), wasm_v128_store(o + 20, o5);
        wasm_v128_store(o + 24, o6), wasm_v128_store(o + 28, o7);
      }
      for (int c = c0; c < e; c += 4) wasm_v128_store(oi + c, wasm_f32x4_splat(0.0f));
      for (int j = 0; j <= lim; j++) {
        const v128_t pj = wasm_f32x4_splat(si[j] * inv);
        const float* vj = vh + (long)j * e;
        for (int c = c0; c < e; c += 4) {
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
