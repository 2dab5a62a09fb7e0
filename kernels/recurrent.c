// The gates of one GRU / NC-GRU step (ops/fusion/recurrent.ts), after its
// products gx = x·Wx + bx [B, 3M] (r, z, c thirds) and hr = h·Ur, hz = h·Uz,
// hc = h·Uc [B, M]:
//   r = σ(gx_r + hr)   z = σ(gx_z + hz)   pre = gx_c + r ⊙ hc
//   c = tanh(pre), or modReLU(pre, mb) = sign(pre)·relu(|pre| + mb) (NC-GRU)
//   h' = c + z ⊙ (h − c)
// The forward pass keeps r, z and c in `saved` [3, B, M] for the backward one.
#include "simd.h"

static inline float sigmoid1(float x) { return 1.0f / (1.0f + exp1(-x)); }

// tanh(x) = 1 − 2 / (e^{2x} + 1), from the kernels' exponential.
static inline float tanh1(float x) { return 1.0f - 2.0f / (exp1(2.0f * x) + 1.0f); }

EXPORT(gru_gates)
void gru_gates(const float* gx, const float* hr, const float* hz, const float* hc, const float* h,
               const float* mb, int nb, int m, float* out, float* saved) {
  for (int b = 0; b < nb; b++) {
    const float* g = gx + (long)b * 3 * m;
    for (int j = 0; j < m; j++) {
      const long i = (long)b * m + j;
      const float r = sigmoid1(g[j] + hr[i]);
      const float z = sigmoid1(g[m + j] + hz[i]);
      const float pre = g[2 * m + j] + r * hc[i];
      float c;
      if (mb) {
        const float a = (pre < 0.0f ? -pre : pre) + mb[j];
        const float rl = a > 0.0f ? a : 0.0f;
        c = pre > 0.0f ? rl : pre < 0.0f ? -rl : 0.0f;
      } else {
        c = tanh1(pre);
      }
      out[i] = c + z * (h[i] - c);
      if (saved) {
        saved[i] = r;
        saved[(long)nb * m + i] = z;
        saved[2L * nb * m + i] = mb ? pre : c;
      }
    }
  }
}

// Backwards from dh' [B, M]: dgx [B, 3M] (whose r and z thirds are also the
// gradients of hr and hz), dhc [B, M], the direct part of dh (z ⊙ dh') and,
// for NC-GRU, dmb [M] (overwritten). saved holds r, z and c (tanh) or pre
// (modReLU); hc and h are the forward's.
EXPORT(gru_gates_grad)
void gru_gates_grad(const float* dout, const float* saved, const float* hc, const float* h,
                    const float* mb, int nb, int m, float* dgx, float* dhc, float* dh, float* dmb) {
  if (mb) {
    for (int j = 0; j < m; j++) dmb[j] = 0.0f;
  }
  const long n = (long)nb * m;
  for (int b = 0; b < nb; b++) {
    float* dg = dgx + (long)b * 3 * m;
    for (int j = 0; j < m; j++) {
      const long i = (long)b * m + j;
      const float r = saved[i], z = saved[n + i], d = dout[i];
      float c, dpre;
      if (mb) {
        const float pre = saved[2 * n + i];
        const float a = (pre < 0.0f ? -pre : pre) + mb[j];
        const float sg = pre > 0.0f ? 1.0f : pre < 0.0f ? -1.0f : 0.0f;
        c = sg * (a > 0.0f ? a : 0.0f);
        const float dc = d * (1.0f - z);
        // d/dpre = relu'(|pre| + mb) (sign² = 1); d/dmb = sign(pre)·relu'(|pre| + mb).
        dpre = a > 0.0f ? dc : 0.0f;
        dmb[j] += dpre * sg;
      } else {
        c = saved[2 * n + i];
        dpre = d * (1.0f - z) * (1.0f - c * c);
      }
      const float dz = d * (h[i] - c) * z * (1.0f - z);
      const float dr = dpre * hc[i] * r * (1.0f - r);
      dg[j] = dr;
      dg[m + j] = dz;
      dg[2 * m + j] = dpre;
      dhc[i] = dpre * r;
      dh[i] = d * z;
    }
  }
}
