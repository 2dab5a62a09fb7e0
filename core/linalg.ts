/**
 * Small dense linear algebra in float64 on the host, for NC-GRU's Cayley map
 * (tfjs has no matrix inverse). Matrices are row-major `Float64Array`s of
 * n × n; n ≤ 1024 keeps these cheap next to a training step.
 *
 * @module
 */

/** C = A · B for n × n matrices. */
export const matmul = (a: Float64Array, b: Float64Array, n: number): Float64Array => {
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ci = i * n;
    for (let k = 0; k < n; k++) {
      const aik = a[ci + k];
      if (aik === 0) continue;
      const bk = k * n;
      for (let j = 0; j < n; j++) c[ci + j] += aik * b[bk + j];
    }
  }
  return c;
};

/** Aᵀ. */
export const transpose = (a: Float64Array, n: number): Float64Array => {
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = a[i * n + j];
  return t;
};

/** The identity plus `s` times A. */
export const identityPlus = (a: Float64Array, n: number, s = 1): Float64Array => {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n * n; i++) out[i] = s * a[i];
  for (let i = 0; i < n; i++) out[i * n + i] += 1;
  return out;
};

/** A⁻¹ by Gauss–Jordan elimination with partial pivoting. Throws on a singular matrix. */
export const inverse = (a: Float64Array, n: number): Float64Array => {
  const m = Float64Array.from(a);
  const inv = identityPlus(new Float64Array(n * n), n, 0);
  for (let col = 0; col < n; col++) {
    let piv = col;
    for (let r = col + 1; r < n; r++) {
      if (Math.abs(m[r * n + col]) > Math.abs(m[piv * n + col])) piv = r;
    }
    const p = m[piv * n + col];
    if (Math.abs(p) < 1e-300) throw new Error("inverse: matrix is singular");
    if (piv !== col) {
      for (let j = 0; j < n; j++) {
        [m[col * n + j], m[piv * n + j]] = [m[piv * n + j], m[col * n + j]];
        [inv[col * n + j], inv[piv * n + j]] = [inv[piv * n + j], inv[col * n + j]];
      }
    }
    const ip = 1 / p;
    for (let j = 0; j < n; j++) {
      m[col * n + j] *= ip;
      inv[col * n + j] *= ip;
    }
    for (let r = 0; r < n; r++) {
      if (r === col) continue;
      const f = m[r * n + col];
      if (f === 0) continue;
      for (let j = 0; j < n; j++) {
        m[r * n + j] -= f * m[col * n + j];
        inv[r * n + j] -= f * inv[col * n + j];
      }
    }
  }
  return inv;
};

/** A · diag(d): scales column j by d[j]. */
export const scaleColumns = (a: Float64Array, d: ArrayLike<number>, n: number): Float64Array => {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) out[i * n + j] = a[i * n + j] * d[j];
  return out;
};

/**
 * Paper (NC-GRU): U = (I + A)⁻¹ (I − A) D, given inv = (I + A)⁻¹.
 */
export const cayley = (
  inv: Float64Array,
  a: Float64Array,
  d: ArrayLike<number>,
  n: number,
): Float64Array => scaleColumns(matmul(inv, identityPlus(a, n, -1), n), d, n);

/** max |UᵀU − I| : how far U is from orthogonal. */
export const orthogonalityError = (u: ArrayLike<number>, n: number): number => {
  let worst = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += u[k * n + i] * u[k * n + j];
      worst = Math.max(worst, Math.abs(s - (i === j ? 1 : 0)));
    }
  }
  return worst;
};
