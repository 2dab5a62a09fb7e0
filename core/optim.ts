/**
 * The optimizer as a pure function of (params, grads, state): AdamW with
 * global-norm clipping, plus NC-GRU's own update of its skew-symmetric
 * generator A through the Cayley map.
 *
 * Pure here means: nothing is mutated and nothing is disposed; new tensors and
 * a new state come back. `core/train.ts` disposes what is replaced.
 *
 * @module
 */
import type { ModelParams } from "../spec/layout.ts";
import { isParamSpec, type ParamSpec } from "../spec/params.ts";
import { flatten } from "../spec/tree.ts";
import { adamwUpdate, sumOfSquares } from "../ops/fused.ts";
import { tf } from "../ops/tf.ts";
import { cayley, identityPlus, inverse, matmul, transpose } from "./linalg.ts";
import type { Grads, Params, Tensor } from "./program.ts";
import { flattenParams, unflattenParams } from "./params.ts";

/**
 * AdamW settings.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type AdamWConfig, defaultAdamW } from "./optim.ts";
 *
 * const noClip: AdamWConfig = { ...defaultAdamW, clipNorm: 0, weightDecay: 0.1 };
 * assert.equal(noClip.beta2, 0.999);
 * ```
 */
export interface AdamWConfig {
  /** Decay of the first moment. */
  readonly beta1: number;
  /** Decay of the second moment. */
  readonly beta2: number;
  /** Added to the root of the second moment. */
  readonly eps: number;
  /** Decoupled weight decay, applied to matrices only (not biases, gains, u/v biases). */
  readonly weightDecay: number;
  /** Clip gradients to this global L2 norm (0 = no clipping). */
  readonly clipNorm: number;
  /** Recompute NC-GRU's (I + A)⁻¹ exactly every this many steps (Neumann updates between). */
  readonly cayleyRefresh: number;
}

/**
 * Defaults: Adam's betas and eps, decay 0.01, clip 0.25 (the PyTorch
 * reference), refresh 100.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultAdamW } from "./optim.ts";
 *
 * assert.deepEqual(defaultAdamW, {
 *   beta1: 0.9,
 *   beta2: 0.999,
 *   eps: 1e-8,
 *   weightDecay: 0.01,
 *   clipNorm: 0.25,
 *   cayleyRefresh: 100,
 * });
 * ```
 */
export const defaultAdamW: AdamWConfig = {
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.01,
  clipNorm: 0.25,
  cayleyRefresh: 100,
};

/**
 * Host-side state of one NC-GRU orthogonal matrix U = (I + A)⁻¹ (I − A) D.
 * Matrices are row-major float64 n × n.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import { compile } from "./compile.ts";
 * import { type CayleyState, initOptimizer } from "./optim.ts";
 *
 * await startBackend({ backend: "cpu" });
 * const spec = {
 *   ...referenceCrt,
 *   vocabSize: 50,
 *   dModel: 16,
 *   nHeads: 2,
 *   dFF: 32,
 *   nLayers: 1,
 *   segmentLen: 4,
 *   memory: { ...referenceCrt.memory, cell: "ncgru" as const, dMemory: 16 },
 * };
 * const compiled = compile(spec);
 * if (compiled._tag === "Left") throw new Error(compiled.left.message);
 * const program = compiled.right;
 * const params = program.init(0);
 * const [c]: readonly CayleyState[] = initOptimizer(program.layout, params).cayley;
 * assert.deepEqual([c.uPath, c.aPath, c.dPath, c.n], ["memory.rnn.uc", "memory.rnn.a", "memory.rnn.d", 16]);
 * ```
 */
export interface CayleyState {
  /** Path of U, the graph parameter the gradient arrives at. */
  readonly uPath: string;
  /** Path of A, the skew-symmetric generator the optimizer updates. */
  readonly aPath: string;
  /** Path of D, the fixed ±1 diagonal. */
  readonly dPath: string;
  /** The matrix size (dMemory). */
  readonly n: number;
  /** A, skew-symmetric. */
  readonly a: Float64Array;
  /** The diagonal of D. */
  readonly d: Float64Array;
  /** (I + A)⁻¹, kept current by Neumann updates and exact refreshes. */
  readonly inv: Float64Array;
  /** Adam's first moment of A's gradient. */
  readonly m: Float64Array;
  /** Adam's second moment of A's gradient. */
  readonly v: Float64Array;
}

/**
 * Optimizer state. Tensors are owned by the state.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import { compile } from "./compile.ts";
 * import { initOptimizer, type OptState } from "./optim.ts";
 *
 * await startBackend({ backend: "cpu" });
 * const spec = {
 *   ...referenceCrt,
 *   vocabSize: 50,
 *   dModel: 16,
 *   nHeads: 2,
 *   dFF: 32,
 *   nLayers: 1,
 *   segmentLen: 4,
 *   memory: { ...referenceCrt.memory, cell: "ncgru" as const, dMemory: 16 },
 * };
 * const compiled = compile(spec);
 * if (compiled._tag === "Left") throw new Error(compiled.left.message);
 * const program = compiled.right;
 * const opt: OptState = initOptimizer(program.layout, program.init(0));
 * assert.equal(opt.step, 0);
 * assert.deepEqual(opt.m["blocks[0].attn.wq"].dataSync().every((x) => x === 0), true);
 * // NC-GRU's U and A are updated through the Cayley state, not through m and v.
 * assert.equal(opt.m["memory.rnn.uc"], undefined);
 * ```
 */
export interface OptState {
  /** Steps applied so far. */
  readonly step: number;
  /** First moments by parameter path. */
  readonly m: Readonly<Record<string, Tensor>>;
  /** Second moments by parameter path. */
  readonly v: Readonly<Record<string, Tensor>>;
  /** One entry per NC-GRU orthogonal matrix. */
  readonly cayley: readonly CayleyState[];
}

/** Paths of the Cayley-parametrised leaves of a layout. */
const cayleyLeaves = (layout: ModelParams<ParamSpec>) =>
  flatten(layout, isParamSpec).flatMap(([path, p]) =>
    p.init._tag === "cayley"
      ? [{ uPath: path, aPath: p.init.a, dPath: p.init.d, n: p.shape[0] }]
      : []
  );

/**
 * A fresh optimizer state for `params`: zero moments for every graph
 * parameter, and the Cayley state of each NC-GRU orthogonal matrix.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import { compile } from "./compile.ts";
 * import { initOptimizer } from "./optim.ts";
 *
 * await startBackend({ backend: "cpu" });
 * const spec = {
 *   ...referenceCrt,
 *   vocabSize: 50,
 *   dModel: 16,
 *   nHeads: 2,
 *   dFF: 32,
 *   nLayers: 1,
 *   segmentLen: 4,
 *   memory: { ...referenceCrt.memory, cell: "ncgru" as const, dMemory: 16 },
 * };
 * const compiled = compile(spec);
 * if (compiled._tag === "Left") throw new Error(compiled.left.message);
 * const program = compiled.right;
 * const opt = initOptimizer(program.layout, program.init(0));
 * assert.equal(opt.cayley.length, 1);
 * ```
 */
export const initOptimizer = (layout: ModelParams<ParamSpec>, params: Params): OptState => {
  const flat = flattenParams(params);
  const cay = cayleyLeaves(layout);
  const special = new Set(cay.flatMap((c) => [c.uPath, c.aPath, c.dPath]));
  const m: Record<string, Tensor> = {};
  const v: Record<string, Tensor> = {};
  for (const [path, p] of flatten(layout, isParamSpec)) {
    if (p.role !== "graph" || special.has(path)) continue;
    m[path] = tf.zerosLike(flat[path]);
    v[path] = tf.zerosLike(flat[path]);
  }
  const cayley = cay.map((c): CayleyState => {
    const a = Float64Array.from(flat[c.aPath].dataSync());
    return {
      ...c,
      a,
      d: Float64Array.from(flat[c.dPath].dataSync()),
      inv: inverse(identityPlus(a, c.n), c.n),
      m: new Float64Array(c.n * c.n),
      v: new Float64Array(c.n * c.n),
    };
  });
  return { step: 0, m, v, cayley };
};

/**
 * Paper (NC-GRU): the gradient for A from G = ∂L/∂U:
 * V = (I + A)⁻ᵀ G (D + Uᵀ), ∂L/∂A = Vᵀ − V.
 */
export const cayleyGradient = (
  g: Float64Array,
  c: Pick<CayleyState, "inv" | "a" | "d" | "n">,
): Float64Array => {
  const n = c.n;
  const u = cayley(c.inv, c.a, c.d, n);
  const dPlusUt = transpose(u, n);
  for (let i = 0; i < n; i++) dPlusUt[i * n + i] += c.d[i];
  const v = matmul(matmul(transpose(c.inv, n), g, n), dPlusUt, n);
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) out[i * n + j] = v[j * n + i] - v[i * n + j];
  }
  return out;
};

const updateCayley = (
  c: CayleyState,
  grad: Float64Array,
  lr: number,
  cfg: AdamWConfig,
  step: number,
  clipScale: number,
): CayleyState => {
  const n = c.n;
  const gA = cayleyGradient(grad, c);
  const m = new Float64Array(n * n), v = new Float64Array(n * n), a = new Float64Array(n * n);
  const bc1 = 1 - Math.pow(cfg.beta1, step), bc2 = 1 - Math.pow(cfg.beta2, step);
  const delta = new Float64Array(n * n);
  for (let i = 0; i < n * n; i++) {
    const g = gA[i] * clipScale;
    m[i] = cfg.beta1 * c.m[i] + (1 - cfg.beta1) * g;
    v[i] = cfg.beta2 * c.v[i] + (1 - cfg.beta2) * g * g;
    // m is skew and v symmetric, so the step is skew and A stays skew-symmetric.
    delta[i] = -lr * (m[i] / bc1) / (Math.sqrt(v[i] / bc2) + cfg.eps);
    a[i] = c.a[i] + delta[i];
  }
  let inv: Float64Array;
  if (step % cfg.cayleyRefresh === 0) {
    inv = inverse(identityPlus(a, n), n);
  } else {
    // (I + A + ΔA)⁻¹ = (I + X)⁻¹ (I + A)⁻¹ with X = (I + A)⁻¹ ΔA, and (I + X)⁻¹ ≈ I − X + X².
    // Deviation (docs/model.md): not (I + X + X²); the series of (I + X)⁻¹ alternates in sign.
    const x = matmul(c.inv, delta, n);
    const series = identityPlus(matmul(x, x, n), n);
    for (let i = 0; i < n * n; i++) series[i] -= x[i];
    inv = matmul(series, c.inv, n);
  }
  return { ...c, a, m, v, inv };
};

/** Global L2 norm of a set of gradients. */
export const globalNorm = (grads: Grads): number => Math.sqrt(sumOfSquares(Object.values(grads)));

/**
 * One AdamW step. Returns new parameters (every leaf a new tensor, or the same
 * tensor for leaves the optimizer does not touch), the new state and the
 * gradient norm before clipping. Nothing is mutated or disposed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adamwUpdate, sumOfSquares } from "../ops/fused.ts";
 * import { tf } from "../ops/tf.ts";
 * import { orthogonalityError } from "./linalg.ts";
 * import { startBackend } from "../ops/backend.ts";
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import { compile } from "./compile.ts";
 * import { applyAdamW, defaultAdamW, initOptimizer } from "./optim.ts";
 *
 * await startBackend({ backend: "cpu" });
 * const spec = {
 *   ...referenceCrt,
 *   vocabSize: 50,
 *   dModel: 16,
 *   nHeads: 2,
 *   dFF: 32,
 *   nLayers: 1,
 *   segmentLen: 4,
 *   memory: { ...referenceCrt.memory, cell: "ncgru" as const, dMemory: 16 },
 * };
 * const compiled = compile(spec);
 * if (compiled._tag === "Left") throw new Error(compiled.left.message);
 * const program = compiled.right;
 * const params = program.init(0);
 * const tokens = tf.tensor2d([[1, 2, 3, 4, 5, 6, 7, 8]], [1, 8], "int32");
 * const { grads } = program.trainStep(params, program.initState(1), { tokens, targets: tokens }, {});
 * const opt = initOptimizer(program.layout, params);
 * const next = applyAdamW(program.layout, params, grads, opt, { lr: 1e-3, config: defaultAdamW });
 * assert.equal(next.state.step, 1);
 * assert.ok(next.gradNorm > 0);
 * // The NC-GRU candidate matrix stays orthogonal.
 * assert.ok(orthogonalityError(next.params.memory!.rnn.uc.dataSync(), 16) < 1e-5);
 * ```
 */
export const applyAdamW = (
  layout: ModelParams<ParamSpec>,
  params: Params,
  grads: Grads,
  state: OptState,
  opts: { lr: number; config?: AdamWConfig },
): { params: Params; state: OptState; gradNorm: number } => {
  const cfg = opts.config ?? defaultAdamW;
  const lr = opts.lr;
  const step = state.step + 1;
  const norm = globalNorm(grads);
  const clipScale = cfg.clipNorm > 0 && norm > cfg.clipNorm ? cfg.clipNorm / norm : 1;
  if (!Number.isFinite(norm)) throw new Error(`gradient norm is ${norm}`);
  const flat = flattenParams(params);
  const next: Record<string, Tensor> = { ...flat };
  const m: Record<string, Tensor> = {};
  const v: Record<string, Tensor> = {};
  const bc1 = 1 - Math.pow(cfg.beta1, step), bc2 = 1 - Math.pow(cfg.beta2, step);
  for (const path of Object.keys(state.m)) {
    const g = grads[path];
    const p = flat[path];
    // One fused kernel per parameter (ops/fused.ts): ~12 small kernels before.
    const [np, nm, nv] = adamwUpdate(p, g, state.m[path], state.v[path], {
      lr,
      beta1: cfg.beta1,
      beta2: cfg.beta2,
      eps: cfg.eps,
      bc1,
      bc2,
      decay: p.rank >= 2 && cfg.weightDecay > 0 ? 1 - lr * cfg.weightDecay : 1,
      clip: clipScale,
    });
    m[path] = nm;
    v[path] = nv;
    next[path] = np;
  }
  const cay = state.cayley.map((c) => {
    const g = Float64Array.from(grads[c.uPath].dataSync());
    const nc = updateCayley(c, g, lr, cfg, step, clipScale);
    next[c.aPath] = tf.tensor(Float32Array.from(nc.a), [c.n, c.n]);
    next[c.uPath] = tf.tensor(Float32Array.from(cayley(nc.inv, nc.a, nc.d, c.n)), [c.n, c.n]);
    return nc;
  });
  return {
    params: unflattenParams(layout, next),
    state: { step, m, v, cayley: cay },
    gradNorm: norm,
  };
};

/** Dispose an optimizer state's tensors. */
export const disposeOptimizer = (s: OptState): void => {
  for (const t of Object.values(s.m)) t.dispose();
  for (const t of Object.values(s.v)) t.dispose();
};
