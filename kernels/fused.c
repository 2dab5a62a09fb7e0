// Fused kernels for the wasm tier, compiled to WebAssembly SIMD (kernels/build.ts).
//
// The module imports tfjs-backend-wasm's own memory, so every pointer below is a
// byte offset into tfjs's heap: the kernels read and write tensors in place, with
// no copy. They use no stack and no static data (build.ts checks the assembly
// for __stack_pointer), so they never touch memory the caller did not hand them.
#include "simd.h"

// Softmax cross-entropy, forward: for each row r of x [n, v], its max and
// Σ_j e^(x_rj − max). The caller forms lse_r = max_r + log(sum_r) and the NLL
// lse_r − x_r,t (n logs, done in JavaScript). When `e` is not 0, the
// exponentials e^(x_rj − max_r) are stored there for the gradient, so it needs
// no second pass of exponentials.
EXPORT(xent_stats)
void xent_stats(const float* x, int n, int v, float* row_max, float* row_sum, float* e) {
  for (int r = 0; r < n; r++) {
    const float* row = x + (long)r * v;
    int j = 0;
    v128_t m4 = wasm_f32x4_splat(-3.402823466e38f);
    for (; j + 4 <= v; j += 4) m4 = wasm_f32x4_pmax(m4, wasm_v128_load(row + j));
    float m = hmax(m4);
    for (; j < v; j++) m = row[j] > m ? row[j] : m;
    const v128_t mm = wasm_f32x4_splat(m);
    v128_t s4a = wasm_f32x4_splat(0.0f), s4b = wasm_f32x4_splat(0.0f);
    float s = 0.0f;
    j = 0;
    if (e != 0) {
      float* er = e + (long)r * v;
      for (; j + 8 <= v; j += 8) {
        const v128_t a = exp4(wasm_f32x4_sub(wasm_v128_load(row + j), mm));
        const v128_t b = exp4(wasm_f32x4_sub(wasm_v128_load(row + j + 4), mm));
        wasm_v128_store(er + j, a);
        wasm_v128_store(er + j + 4, b);
        s4a = wasm_f32x4_add(s4a, a);
        s4b = wasm_f32x4_add(s4b, b);
      }
      for (; j < v; j++) {
        er[j] = exp1(row[j] - m);
        s += er[j];
      }
    } else {
      for (; j + 8 <= v; j += 8) {
        s4a = wasm_f32x4_add(s4a, exp4(wasm_f32x4_sub(wasm_v128_load(row + j), mm)));
        s4b = wasm_f32x4_add(s4b, exp4(wasm_f32x4_sub(wasm_v128_load(row + j + 4), mm)));
      }
      for (; j < v; j++) s += exp1(row[j] - m);
    }
    row_max[r] = m;
    row_sum[r] = s + hsum(wasm_f32x4_add(s4a, s4b));
  }
}

// Softmax cross-entropy, backward, from the forward's exponentials e and
// 1 / Σ_j e_rj per row: out_rj = (e_rj · inv_r − [j = t_r]) · dy_r.
EXPORT(xent_grad)
void xent_grad(const float* e, const int* targets, const float* inv, const float* dy, int n,
               int v, float* out) {
  for (int r = 0; r < n; r++) {
    const float* row = e + (long)r * v;
    float* o = out + (long)r * v;
    const float k = inv[r] * dy[r];
    const v128_t kk = wasm_f32x4_splat(k);
    int j = 0;
    for (; j + 4 <= v; j += 4) wasm_v128_store(o + j, wasm_f32x4_mul(wasm_v128_load(row + j), kk));
    for (; j < v; j++) o[j] = row[j] * k;
    const int t = targets[r];
    if (t >= 0 && t < v) o[t] -= dy[r];
  }
}

// Σ x_i² in double precision lanes (gradient norms over millions of entries).
EXPORT(sum_squares)
double sum_squares(const float* x, int n) {
  v128_t a = wasm_f64x2_splat(0.0), b = wasm_f64x2_splat(0.0);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const v128_t q = wasm_v128_load(x + i);
    const v128_t sq = wasm_f32x4_mul(q, q);
    a = wasm_f64x2_add(a, wasm_f64x2_promote_low_f32x4(sq));
    b = wasm_f64x2_add(b, wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(sq, sq, 2, 3, 0, 1)));
  }
  const v128_t s = wasm_f64x2_add(a, b);
  double t = wasm_f64x2_extract_lane(s, 0) + wasm_f64x2_extract_lane(s, 1);
  for (; i < n; i++) t += (double)x[i] * x[i];
  return t;
}

// One AdamW step over n entries, into fresh outputs:
//   g' = clip·g;  m' = β1·m + (1−β1)·g';  v' = β2·v + (1−β2)·g'²
//   p' = decay·p − lr · (m'/bc1) / (sqrt(v'/bc2) + eps)
// with decay = 1 − lr·weightDecay for matrices and 1 for vectors (the caller's choice).
EXPORT(adamw)
void adamw(const float* p, const float* g, const float* m, const float* v, int n, float lr,
           float beta1, float beta2, float eps, float bc1, float bc2, float decay, float clip,
           float* p_out, float* m_out, float* v_out) {
  const v128_t b1 = wasm_f32x4_splat(beta1), c1 = wasm_f32x4_splat(1.0f - beta1);
  const v128_t b2 = wasm_f32x4_splat(beta2), c2 = wasm_f32x4_splat(1.0f - beta2);
  const v128_t ib1 = wasm_f32x4_splat(1.0f / bc1), ib2 = wasm_f32x4_splat(1.0f / bc2);
  const v128_t e = wasm_f32x4_splat(eps), l = wasm_f32x4_splat(lr);
  const v128_t dc = wasm_f32x4_splat(decay), cl = wasm_f32x4_splat(clip);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const v128_t gi = wasm_f32x4_mul(wasm_v128_load(g + i), cl);
    const v128_t mi = wasm_f32x4_add(wasm_f32x4_mul(wasm_v128_load(m + i), b1), wasm_f32x4_mul(gi, c1));
    const v128_t vi = wasm_f32x4_add(wasm_f32x4_mul(wasm_v128_load(v + i), b2),
                                     wasm_f32x4_mul(wasm_f32x4_mul(gi, gi), c2));
    const v128_t den = wasm_f32x4_add(wasm_f32x4_sqrt(wasm_f32x4_mul(vi, ib2)), e);
    const v128_t upd = wasm_f32x4_div(wasm_f32x4_mul(mi, ib1), den);
    wasm_v128_store(p_out + i, wasm_f32x4_sub(wasm_f32x4_mul(wasm_v128_load(p + i), dc), wasm_f32x4_mul(upd, l)));
    wasm_v128_store(m_out + i, mi);
    wasm_v128_store(v_out + i, vi);
  }
  for (; i < n; i++) {
    const float gi = g[i] * clip;
    const float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    const float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    const float den = wasm_f32x4_extract_lane(wasm_f32x4_sqrt(wasm_f32x4_splat(vi / bc2)), 0) + eps;
    p_out[i] = decay * p[i] - lr * (mi / bc1) / den;
    m_out[i] = mi;
    v_out[i] = vi;
  }
}

// Embedding lookup: out[i, :] = table[ids[i], :] for n ids of rows of d floats.
// The caller has checked every id against the table's row count.
EXPORT(gather_rows)
void gather_rows(const float* table, const int* ids, int n, int d, float* out) {
  for (int i = 0; i < n; i++) {
    __builtin_memcpy(out + (long)i * d, table + (long)ids[i] * d, (unsigned long)d * sizeof(float));
  }
}
