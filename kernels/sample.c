// Drawing the next token in the kernel (ops/fusion/head.ts), so a streaming
// step hands back one int instead of V probabilities: the `sample` op.
//
// Candidates are the k largest logits (ties: the lower ids), or every id when
// k is 0 or ≥ V; weights w_j = e^{(x_j − max)/T} over the candidates; the
// token is the first candidate, in increasing id, at which the running sum of
// weights exceeds u · Σ w (u uniform in [0, 1)). T = 0 or k = 1: the largest
// logit (the lowest id on ties).
#include "simd.h"

// The k-th largest of x[0, n) (1 ≤ k ≤ n), selecting in place in s (a copy).
static float kth_largest(float* s, int n, int k) {
  int lo = 0, hi = n - 1;
  const int want = k - 1;  // index in descending order
  while (lo < hi) {
    const float pivot = s[lo + (hi - lo) / 2];
    int i = lo, j = hi;
    while (i <= j) {
      while (s[i] > pivot) i++;
      while (s[j] < pivot) j--;
      if (i <= j) {
        const float t = s[i];
        s[i] = s[j];
        s[j] = t;
        i++;
        j--;
      }
    }
    if (want <= j) hi = j;
    else if (want >= i) lo = i;
    else break;
  }
  return s[want];
}

// The drawn id for logits x [V]; scratch: V floats.
EXPORT(sample_token)
int sample_token(const float* x, int v, int k, float temperature, float u, float* scratch) {
  if (temperature <= 0.0f || k == 1) {
    int best = 0;
    for (int i = 1; i < v; i++) best = x[i] > x[best] ? i : best;
    return best;
  }
  float threshold = -3.402823466e38f;
  int ties = v;  // candidates equal to the threshold still admitted
  if (k > 0 && k < v) {
    for (int i = 0; i < v; i++) scratch[i] = x[i];
    threshold = kth_largest(scratch, v, k);
    int above = 0;
    for (int i = 0; i < v; i++) above += x[i] > threshold;
    ties = k - above;
  }
  float m = -3.402823466e38f;
  for (int i = 0; i < v; i++) m = x[i] > m ? x[i] : m;
  const float inv = 1.0f / temperature;
  // Weights of the candidates into scratch (0 for the others), and their sum.
  float sum = 0.0f;
  int left = ties;
  for (int i = 0; i < v; i++) {
    int take = x[i] > threshold;
    if (!take && x[i] == threshold && left > 0) {
      take = 1;
      left--;
    }
    const float w = take ? exp1((x[i] - m) * inv) : 0.0f;
    scratch[i] = w;
    sum += w;
  }
  float target = u * sum;
  int last = 0;
  for (int i = 0; i < v; i++) {
    if (scratch[i] > 0.0f) {
      last = i;
      target -= scratch[i];
      if (target < 0.0f) return i;
    }
  }
  return last;  // rounding left the target at or above the last weight
}
