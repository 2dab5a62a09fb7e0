/**
 * The builder every model stage is written against: {@linkcode Ops}, whose
 * sugar methods emit the ops of `spec/ops.ts` on an {@linkcode OpBackend}
 * (the tracer, the reference interpreter or eager tfjs).
 *
 * @module
 */
import type { FusedAttrs, Op, Shape } from "./ops.ts";

/**
 * What evaluates ops: the tracer, the reference interpreter or eager tfjs.
 * `T` is that backend's tensor handle.
 *
 * @example A backend that only tracks shapes
 * ```ts
 * import assert from "node:assert/strict";
 * import { type DType, inferShape, type Shape } from "./ops.ts";
 * import type { OpBackend } from "./ops_builder.ts";
 *
 * interface Sym {
 *   readonly shape: Shape;
 *   readonly dtype: DType;
 * }
 * const shapesOnly: OpBackend<Sym> = {
 *   apply: (op, inputs) => inferShape(op, inputs),
 *   shape: (x) => x.shape,
 * };
 * const y = shapesOnly.apply({ _tag: "mean", axis: 1 }, [{ shape: [2, 35, 64], dtype: "float32" }], "model");
 * assert.deepEqual(y.shape, [2, 64]);
 * ```
 */
export interface OpBackend<T> {
  /** Apply `op` to `inputs`. `path` names where in the spec the op comes from. */
  apply(op: Op, inputs: readonly T[], path: string): T;
  /** The static shape of a handle. */
  shape(t: T): Shape;
  /**
   * Run `body` on `inputs` as one marked region (see {@linkcode Region}).
   * Optional: a backend without it (eager tfjs, the reference interpreter)
   * just runs the body; the tracer records the region for the fusion stage.
   */
  region?(
    kind: string,
    attrs: FusedAttrs,
    inputs: readonly T[],
    body: (inputs: readonly T[]) => readonly T[],
    path: string,
  ): T[];
}

/**
 * Options of {@linkcode Ops}'s `linear`: what follows the product, in order
 * `relu`, `dropout`, `residual` (added last).
 *
 * @example
 * ```ts
 * import type { LinearOptions } from "./ops_builder.ts";
 * // The second layer of a pre-LN feed-forward block: x1 + dropout(h W2 + b2).
 * const opts = <T>(x1: T): LinearOptions<T> => ({ dropout: 0.1, residual: x1 });
 * console.log(opts(0).dropout);
 * ```
 */
export interface LinearOptions<T> {
  /** max(·, 0) after the bias. */
  readonly relu?: boolean;
  /** Inverted dropout rate after the activation (0: none). */
  readonly dropout?: number;
  /** Added last, of the output's shape: the block's residual stream. */
  readonly residual?: T;
  /** W is stored [N, K] and used transposed (a readout tied to the embedding). */
  readonly transposeW?: boolean;
}

/**
 * Typed sugar over an {@linkcode OpBackend}, carrying the spec path that every
 * op it emits is tagged with. `at("blocks[0].attn")` returns a copy scoped
 * deeper; nothing is mutated.
 *
 * A new stage is a function of `Ops<T>` generic in `T`, so the same code is
 * traced into a graph, run eagerly on tfjs or run by the reference
 * interpreter.
 *
 * @example Write a stage once, check its shapes on a shape-only backend
 * ```ts
 * import assert from "node:assert/strict";
 * import { type DType, inferShape, type Shape } from "./ops.ts";
 * import { type OpBackend, Ops } from "./ops_builder.ts";
 *
 * // x + sigmoid(x W) ⊙ x on the last axis, for any rank.
 * const gatedResidual = <T>(o: Ops<T>, x: T, w: T): T =>
 *   o.add(x, o.mul(o.sigmoid(o.linear(x, w)), x));
 *
 * interface Sym {
 *   readonly shape: Shape;
 *   readonly dtype: DType;
 * }
 * const paths: string[] = [];
 * const shapesOnly: OpBackend<Sym> = {
 *   apply: (op, inputs, path) => {
 *     paths.push(`${path}: ${op._tag}`);
 *     return inferShape(op, inputs);
 *   },
 *   shape: (x) => x.shape,
 * };
 * const o = new Ops(shapesOnly).at("gate");
 * const y = gatedResidual(o, { shape: [2, 5, 8], dtype: "float32" }, { shape: [8, 8], dtype: "float32" });
 * assert.deepEqual(y.shape, [2, 5, 8]);
 * assert.equal(paths[0], "model.gate: reshape");
 * ```
 */
export class Ops<T> {
  /** Wrap a backend; `path` is the spec path ops emitted from here belong to. */
  constructor(readonly backend: OpBackend<T>, readonly path: string = "model") {}

  /** A copy of these ops whose emitted nodes carry `path + "." + sub`. */
  at(sub: string): Ops<T> {
    const joined = sub.startsWith("[") ? `${this.path}${sub}` : `${this.path}.${sub}`;
    return new Ops(this.backend, joined);
  }

  /** Emit `op` on `inputs` at this path. */
  private op(op: Op, ...inputs: T[]): T {
    return this.backend.apply(op, inputs, this.path);
  }

  /** Static shape of `t`. */
  shape(t: T): Shape {
    return this.backend.shape(t);
  }
  /** A constant (row-major values). */
  constant(shape: Shape, values: Float32Array): T {
    return this.op({ _tag: "constant", shape, values });
  }
  /** `a · b` over the last two axes, optionally transposing either. */
  matmul(a: T, b: T, opts: { transposeA?: boolean; transposeB?: boolean } = {}): T {
    return this.op(
      {
        _tag: "matmul",
        transposeA: opts.transposeA ?? false,
        transposeB: opts.transposeB ?? false,
      },
      a,
      b,
    );
  }
  /** `a + b` with broadcasting. */
  add(a: T, b: T): T {
    return this.op({ _tag: "add" }, a, b);
  }
  /** `a − b` with broadcasting. */
  sub(a: T, b: T): T {
    return this.op({ _tag: "sub" }, a, b);
  }
  /** `a ⊙ b` with broadcasting. */
  mul(a: T, b: T): T {
    return this.op({ _tag: "mul" }, a, b);
  }
  /** `x · factor`. */
  scale(x: T, factor: number): T {
    return this.op({ _tag: "scale", factor }, x);
  }
  /** max(x, 0). */
  relu(x: T): T {
    return this.op({ _tag: "relu" }, x);
  }
  /** 1 / (1 + e^−x). */
  sigmoid(x: T): T {
    return this.op({ _tag: "sigmoid" }, x);
  }
  /** tanh(x). */
  tanh(x: T): T {
    return this.op({ _tag: "tanh" }, x);
  }
  /** sign(x) · relu(|x| + b). */
  modrelu(x: T, b: T): T {
    return this.op({ _tag: "modrelu" }, x, b);
  }
  /** Softmax over the last axis. */
  softmax(x: T): T {
    return this.op({ _tag: "softmax" }, x);
  }
  /** log softmax over the last axis. */
  logSoftmax(x: T): T {
    return this.op({ _tag: "logSoftmax" }, x);
  }
  /** LayerNorm over the last axis. */
  layerNorm(x: T, gain: T, bias: T, eps = 1e-5): T {
    return this.op({ _tag: "layerNorm", eps }, x, gain, bias);
  }
  /**
   * Rows of `table` at `ids`: one region of kind `gather`, so a table that
   * is a dequantised q8 weight can be read as int8, row by row.
   */
  embedding(table: T, ids: T): T {
    return this.region(
      "gather",
      {},
      [table, ids],
      ([t, i]) => [this.op({ _tag: "embedding" }, t, i)],
    )[0];
  }
  /** A token per row of `logits` [N, V], drawn with `uniforms` [N] (see the `sample` op). */
  sample(logits: T, uniforms: T, opts: { temperature: number; topK: number }): T {
    return this.op(
      { _tag: "sample", temperature: opts.temperature, topK: opts.topK },
      logits,
      uniforms,
    );
  }
  /** A q8 weight as float32 (see the `dequantize` op). */
  dequantize(q: T, axis: 0 | 1): T {
    return this.op({ _tag: "dequantize", axis }, q);
  }
  /** Same data, new shape. */
  reshape(x: T, shape: Shape): T {
    return this.op({ _tag: "reshape", shape }, x);
  }
  /** Permute axes. */
  transpose(x: T, perm: readonly number[]): T {
    return this.op({ _tag: "transpose", perm }, x);
  }
  /** Join along `axis`. */
  concat(xs: readonly T[], axis: number): T {
    return this.backend.apply({ _tag: "concat", axis }, xs, this.path);
  }
  /** A box of `x`. */
  slice(x: T, begin: readonly number[], size: readonly number[]): T {
    return this.op({ _tag: "slice", begin, size }, x);
  }
  /** Mean over `axis`, removing it. */
  mean(x: T, axis: number): T {
    return this.op({ _tag: "mean", axis }, x);
  }
  /** Causal mask on attention scores [..., S, T]. */
  causalMask(scores: T): T {
    return this.op({ _tag: "causalMask" }, scores);
  }
  /** Transformer-XL relative shift on [..., S, T]. */
  relShift(x: T): T {
    return this.op({ _tag: "relShift" }, x);
  }
  /** Per-row NLL of int32 `targets` [N] under `logits` [N, V]. */
  crossEntropy(logits: T, targets: T): T {
    return this.op({ _tag: "crossEntropy" }, logits, targets);
  }
  /** Inverted dropout; elided when `rate` is 0. */
  dropout(x: T, rate: number): T {
    return rate > 0 ? this.op({ _tag: "dropout", rate }, x) : x;
  }
  /** Identity with zero gradient. */
  stopGradient(x: T): T {
    return this.op({ _tag: "stopGradient" }, x);
  }
  /**
   * Mark `body` applied to `inputs` as one region of kind `kind` — one unit
   * the compiler may run as a single kernel (core/fuse.ts). The body must
   * read only `inputs` (and constants it makes); what it computes is the
   * region's meaning, whether or not it is fused.
   */
  region(
    kind: string,
    attrs: FusedAttrs,
    inputs: readonly T[],
    body: (inputs: readonly T[]) => readonly T[],
  ): T[] {
    return this.backend.region !== undefined
      ? this.backend.region(kind, attrs, inputs, body, this.path)
      : [...body(inputs)];
  }
  /**
   * A linear layer on the last axis of `x`, for any rank, through one 2-D
   * matmul: `residual + dropout(relu(x · W + b))`, each part optional
   * (`opts`), W [K, N] — or [N, K] with `transposeW` (a tied readout). It is
   * one region of kind `linear` (attributes `bias`, `relu`, `dropout`,
   * `residual`, `transposeW`), which the compiler may run as one kernel.
   */
  linear(x: T, w: T, b?: T, opts: LinearOptions<T> = {}): T {
    const s = this.shape(x);
    const k = s[s.length - 1];
    const transposeW = opts.transposeW ?? false;
    const ws = this.shape(w);
    const n = transposeW ? ws[0] : ws[1];
    const rows = s.slice(0, -1).reduce((a, c) => a * c, 1);
    const flat = (t: T, cols: number) => (s.length === 2 ? t : this.reshape(t, [rows, cols]));
    const relu = opts.relu ?? false, rate = opts.dropout ?? 0, r = opts.residual;
    const inputs = [flat(x, k), w, ...(b === undefined ? [] : [b])];
    if (r !== undefined) inputs.push(flat(r, n));
    const attrs = {
      bias: b !== undefined,
      relu,
      dropout: rate,
      residual: r !== undefined,
      transposeW,
    };
    const [y] = this.region("linear", attrs, inputs, (ins) => {
      let y = this.matmul(ins[0], ins[1], { transposeB: transposeW }); // [rows, N]
      if (b !== undefined) y = this.add(y, ins[2]);
      if (relu) y = this.relu(y);
      y = this.dropout(y, rate);
      return [r === undefined ? y : this.add(ins[ins.length - 1], y)];
    });
    return s.length === 2 ? y : this.reshape(y, [...s.slice(0, -1), n]);
  }
}
