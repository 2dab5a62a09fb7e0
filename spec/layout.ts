/**
 * The model's parameters as typed trees keyed by meaning
 * (`blocks[1].attn.wq`), and their layout for a spec: every tensor's shape
 * and initialiser as data ({@linkcode paramLayout}). The stages that use
 * them are in `stages.ts`.
 *
 * @module
 */
import type { CrtSpec, ModelSpec } from "./types.ts";
import { adaptiveGeometry, adaptiveHeadLayout, type ClusterParams } from "./adaptive.ts";
import { auxParam, param, type ParamSpec } from "./params.ts";

/**
 * LayerNorm gain and bias.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { paramLayout } from "./layout.ts";
 * import { referenceCrt } from "./reference_specs.ts";
 *
 * const ln = paramLayout(referenceCrt).lnF; // LayerNormParams<ParamSpec>
 * assert.deepEqual([ln.gain.init, ln.bias.init], [{ _tag: "ones" }, { _tag: "zeros" }]);
 * ```
 */
export interface LayerNormParams<T> {
  /** Gain γ, [D]; starts at 1. */
  readonly gain: T;
  /** Bias β, [D]; starts at 0. */
  readonly bias: T;
}

/**
 * Multi-head attention. `wr`, `u`, `v` exist only in Transformer-XL.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { paramLayout } from "./layout.ts";
 * import { referenceCrt, referenceXl } from "./reference_specs.ts";
 *
 * assert.deepEqual(paramLayout(referenceCrt).blocks[0].attn.wkv.shape, [256, 512]);
 * assert.deepEqual(paramLayout(referenceXl).blocks[0].attn.u?.shape, [4, 1, 64]);
 * assert.equal(paramLayout(referenceCrt).blocks[0].attn.u, undefined);
 * ```
 */
export interface AttentionParams<T> {
  /** Query projection, [D, D]. */
  readonly wq: T;
  /** Query bias, [D]. */
  readonly bq: T;
  /** Key and value projections side by side, [D, 2D]. */
  readonly wkv: T;
  /** Key and value biases, [2D]. */
  readonly bkv: T;
  /** Output projection, [D, D]. */
  readonly wo: T;
  /** Output bias, [D]. */
  readonly bo: T;
  /** XL: projection of the relative-position encodings, [D, D]. */
  readonly wr?: T;
  /** XL: content bias u, [H, 1, E]. */
  readonly u?: T;
  /** XL: position bias v, [H, 1, E]. */
  readonly v?: T;
}

/**
 * Position-wise feed-forward network: relu(x W1 + b1) W2 + b2.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { paramLayout } from "./layout.ts";
 * import { referenceCrt } from "./reference_specs.ts";
 *
 * const ffn = paramLayout(referenceCrt).blocks[1].ffn;
 * assert.deepEqual([ffn.w1.shape, ffn.w2.shape], [[256, 1024], [1024, 256]]);
 * ```
 */
export interface FeedForwardParams<T> {
  /** First layer, [D, F]. */
  readonly w1: T;
  /** First bias, [F]. */
  readonly b1: T;
  /** Second layer, [F, D]. */
  readonly w2: T;
  /** Second bias, [D]. */
  readonly b2: T;
}

/**
 * One pre-LN Transformer block: x + Attn(LN1(x)), then + FFN(LN2(·)).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { paramLayout } from "./layout.ts";
 * import { referenceCrt } from "./reference_specs.ts";
 *
 * assert.deepEqual(Object.keys(paramLayout(referenceCrt).blocks[0]), ["ln1", "attn", "ln2", "ffn"]);
 * ```
 */
export interface BlockParams<T> {
  /** LayerNorm before attention. */
  readonly ln1: LayerNormParams<T>;
  /** Causal multi-head self-attention. */
  readonly attn: AttentionParams<T>;
  /** LayerNorm before the feed-forward network. */
  readonly ln2: LayerNormParams<T>;
  /** The feed-forward network. */
  readonly ffn: FeedForwardParams<T>;
}

/**
 * A GRU or NC-GRU cell. For NC-GRU, `uc` (and `ur` with orthogonal reset) is
 * the Cayley map of the auxiliary skew-symmetric `a` (`ar`) and signs `d`
 * (`dr`), kept in sync by the optimizer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { paramLayout } from "./layout.ts";
 * import { referenceCrt } from "./reference_specs.ts";
 *
 * const nc = { ...referenceCrt, memory: { ...referenceCrt.memory, cell: "ncgru" as const } };
 * const rnn = paramLayout(nc).memory?.rnn;
 * assert.deepEqual(rnn?.uc.init, { _tag: "cayley", a: "memory.rnn.a", d: "memory.rnn.d" });
 * assert.equal(rnn?.a?.role, "aux");
 * ```
 */
export interface RecurrentParams<T> {
  /** Input projections for reset | update | candidate side by side, [Din, 3M]. */
  readonly wx: T;
  /** Input biases, [3M]. */
  readonly bx: T;
  /** Recurrent matrix of the reset gate, [M, M]. */
  readonly ur: T;
  /** Recurrent matrix of the update gate, [M, M]. */
  readonly uz: T;
  /** Recurrent matrix of the candidate, [M, M]. */
  readonly uc: T;
  /** NC-GRU: modReLU bias, [M]. */
  readonly modBias?: T;
  /** NC-GRU: skew-symmetric generator of `uc`, [M, M] (aux). */
  readonly a?: T;
  /** NC-GRU: ±1 diagonal of `uc`, [M] (aux, fixed). */
  readonly d?: T;
  /** NC-GRU with orthogonal reset: generator of `ur`, [M, M] (aux). */
  readonly ar?: T;
  /** NC-GRU with orthogonal reset: signs of `ur`, [M] (aux, fixed). */
  readonly dr?: T;
}

/**
 * CRT's memory: the memory token projection and the recurrent cell.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { paramLayout } from "./layout.ts";
 * import { referenceCrt, referenceTransformer } from "./reference_specs.ts";
 *
 * assert.deepEqual(paramLayout(referenceCrt).memory?.win.shape, [256, 256]);
 * assert.equal(paramLayout(referenceTransformer).memory, undefined);
 * ```
 */
export interface MemoryParams<T> {
  /** W_m: memory → memory token, [M, D]. */
  readonly win: T;
  /** Bias of the memory token, [D]. */
  readonly bin: T;
  /** The cell that updates the memory. */
  readonly rnn: RecurrentParams<T>;
}

/**
 * The readout. `w` is absent for a tied LM head (it uses `embed`ᵀ).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { paramLayout } from "./layout.ts";
 * import { referenceCrt } from "./reference_specs.ts";
 *
 * const tied = paramLayout({ ...referenceCrt, readout: { _tag: "lm", tie: true } }).head;
 * assert.equal(tied.w, undefined);
 * assert.deepEqual(tied.b.shape, [10000]);
 * ```
 */
export interface HeadParams<T> {
  /**
   * Output matrix: [D, V] for an untied LM head, [M or D, C] for a
   * classifier, [D, c_1 + C] (shortlist and one logit per tail cluster) for
   * an adaptive softmax.
   */
  readonly w?: T;
  /** Output bias: [V] or [C]. */
  readonly b: T;
  /** Adaptive softmax only: the tail clusters (spec/adaptive.ts). */
  readonly clusters?: readonly ClusterParams<T>[];
}

/**
 * Every model's parameters, as a readonly tree keyed by meaning
 * (`blocks[1].attn.wq`). `T` is the leaf: a {@linkcode ParamSpec} in a
 * layout, a tensor in trained parameters. Optional parts exist for the kinds
 * that use them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type ModelParams, paramLayout } from "./layout.ts";
 * import { referenceCrt } from "./reference_specs.ts";
 * import type { ParamSpec } from "./params.ts";
 *
 * const layout: ModelParams<ParamSpec> = paramLayout(referenceCrt);
 * assert.deepEqual(layout.embed.shape, [10000, 256]);
 * assert.equal(layout.blocks.length, 2);
 * ```
 */
export interface ModelParams<T> {
  /** Token embedding, [V, D]; with feature input, the projection W_in [F, D]. */
  readonly embed: T;
  /** Feature input only: the projection's bias b_in, [D]. */
  readonly embedBias?: T;
  /** Learned absolute positions, [S, D] (CRT and Transformer with `learned`). */
  readonly pos?: T;
  /** The Transformer blocks, in order. */
  readonly blocks: readonly BlockParams<T>[];
  /** The final LayerNorm. */
  readonly lnF: LayerNormParams<T>;
  /** The readout. */
  readonly head: HeadParams<T>;
  /** CRT only: the memory. */
  readonly memory?: MemoryParams<T>;
}

// ---------------------------------------------------------------------------
// Parameter layout

const std = 0.02; // Paper is silent; N(0, 0.02) as in the PyTorch reference (docs/model.md).

const layerNormLayout = (d: number): LayerNormParams<ParamSpec> => ({
  gain: param([d], { _tag: "ones" }),
  bias: param([d], { _tag: "zeros" }),
});

const recurrentLayout = (
  spec: CrtSpec,
  dIn: number,
  root: string,
): RecurrentParams<ParamSpec> => {
  const m = spec.memory.dMemory;
  const limit = 1 / Math.sqrt(m); // PyTorch's GRU default
  const u = param([m, m], { _tag: "uniform", limit });
  const base = {
    wx: param([dIn, 3 * m], { _tag: "uniform", limit }),
    bx: param([3 * m], { _tag: "zeros" }),
    ur: u,
    uz: u,
    uc: u,
  };
  if (spec.memory.cell === "gru") return base;
  const cayley = (a: string, d: string) =>
    param([m, m], { _tag: "cayley", a: `${root}.${a}`, d: `${root}.${d}` });
  const reset = spec.memory.orthogonal === "candidateAndReset";
  return {
    ...base,
    uc: cayley("a", "d"),
    ur: reset ? cayley("ar", "dr") : u,
    // Paper (NC-GRU): modReLU bias; small negative start keeps |ĉ| + b mostly positive.
    modBias: param([m], { _tag: "zeros" }),
    a: auxParam([m, m], { _tag: "skewBlocks" }),
    d: auxParam([m], { _tag: "signs" }),
    ...(reset
      ? {
        ar: auxParam([m, m], { _tag: "skewBlocks" }),
        dr: auxParam([m], { _tag: "signs" }),
      }
      : {}),
  };
};

/**
 * The parameter tree of a model: a shape, an initialiser and a role per leaf,
 * keyed by meaning. `compile` draws the values from it; nothing here touches
 * a tensor.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { paramLayout } from "./layout.ts";
 * import { referenceCrt } from "./reference_specs.ts";
 *
 * const layout = paramLayout(referenceCrt);
 * assert.deepEqual(layout.blocks[0].attn.wq.shape, [256, 256]);
 * assert.deepEqual(layout.blocks[0].attn.wq.init, { _tag: "normal", std: 0.02 });
 * ```
 */
export const paramLayout = (spec: ModelSpec): ModelParams<ParamSpec> => {
  const d = spec.dModel, f = spec.dFF, v = spec.vocabSize, e = d / spec.nHeads;
  const w = (rows: number, cols: number) => param([rows, cols], { _tag: "normal", std });
  const zeros = (n: number) => param([n], { _tag: "zeros" });
  const blocks = Array.from({ length: spec.nLayers }, (): BlockParams<ParamSpec> => ({
    ln1: layerNormLayout(d),
    attn: {
      wq: w(d, d),
      bq: zeros(d),
      wkv: w(d, 2 * d),
      bkv: zeros(2 * d),
      wo: w(d, d),
      bo: zeros(d),
      ...(spec._tag === "xl"
        ? {
          wr: w(d, d),
          u: param([spec.nHeads, 1, e], { _tag: "zeros" }),
          v: param([spec.nHeads, 1, e], { _tag: "zeros" }),
        }
        : {}),
    },
    ln2: layerNormLayout(d),
    ffn: { w1: w(d, f), b1: zeros(f), w2: w(f, d), b2: zeros(d) },
  }));
  const readout = spec.readout;
  const featureWidth =
    readout._tag === "classifier" && readout.pool === "memory" && spec._tag === "crt"
      ? spec.memory.dMemory
      : d;
  const head: HeadParams<ParamSpec> = readout._tag === "lm"
    ? readout.tie ? { b: zeros(v) } : { w: w(d, v), b: zeros(v) }
    : readout._tag === "adaptive"
    ? adaptiveHeadLayout(adaptiveGeometry(readout, spec), std)
    : { w: w(featureWidth, readout.nClasses), b: zeros(readout.nClasses) };
  const pos = spec._tag === "xl" || spec.positional === "sinusoidal"
    ? {}
    : { pos: w(spec.segmentLen, d) };
  const memory = spec._tag === "crt"
    ? {
      memory: {
        win: w(spec.memory.dMemory, d),
        bin: zeros(d),
        rnn: recurrentLayout(spec, d, "memory.rnn"),
      },
    }
    : {};
  // Feature input: a linear projection [F, D] (and bias) takes the embedding's place.
  const input = spec.input?._tag === "features"
    ? { embed: w(spec.input.dim, d), embedBias: zeros(d) }
    : { embed: w(v, d) };
  return { ...input, ...pos, blocks, lnF: layerNormLayout(d), head, ...memory };
};
