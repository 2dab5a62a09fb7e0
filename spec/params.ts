/**
 * Parameter declarations as data: a shape and an initialiser per leaf.
 *
 * @module
 */
import type { Shape } from "./ops.ts";

/**
 * How a parameter starts, as data. The program draws the values from a
 * generator seeded by the init seed and the leaf's path.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Init } from "./params.ts";
 *
 * const describe = (init: Init): string => init._tag === "normal" ? `N(0, ${init.std}²)` : init._tag;
 * assert.equal(describe({ _tag: "normal", std: 0.02 }), "N(0, 0.02²)");
 * ```
 */
export type Init =
  /** N(0, std²). */
  | { readonly _tag: "normal"; readonly std: number }
  /** All zeros. */
  | { readonly _tag: "zeros" }
  /** All ones. */
  | { readonly _tag: "ones" }
  /** U(−limit, limit). */
  | { readonly _tag: "uniform"; readonly limit: number }
  /**
   * Paper (NC-GRU): a skew-symmetric matrix of 2×2 blocks [[0, t], [−t, 0]] with
   * t = tan(θ/2), θ ~ U(0, π/2).
   */
  | { readonly _tag: "skewBlocks" }
  /** A fixed ±1 diagonal stored as a vector: the first half −1, the rest +1. */
  | { readonly _tag: "signs" }
  /**
   * Paper (NC-GRU): U = (I + A)⁻¹ (I − A) D from the sibling leaves named by
   * `a` and `d` (paths relative to the tree root).
   */
  | { readonly _tag: "cayley"; readonly a: string; readonly d: string };

/**
 * One parameter leaf: its shape, initialiser and whether gradients train it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { param, type ParamSpec } from "./params.ts";
 *
 * const wq: ParamSpec = param([256, 256], { _tag: "normal", std: 0.02 });
 * assert.equal(wq.role, "graph");
 * ```
 */
export interface ParamSpec {
  /** Marks a leaf of a layout tree. */
  readonly _tag: "param";
  /** The tensor's shape. */
  readonly shape: Shape;
  /** How its values start. */
  readonly init: Init;
  /**
   * `graph`: an input of the compiled graph, trained by the optimizer from its
   * gradient. `aux`: not a graph input; updated by a rule of its own (NC-GRU's
   * A through the Cayley map; D is fixed).
   */
  readonly role: "graph" | "aux";
}

/** A graph parameter. */
export const param = (shape: Shape, init: Init): ParamSpec => ({
  _tag: "param",
  shape,
  init,
  role: "graph",
});

/** An auxiliary parameter (not a graph input). */
export const auxParam = (shape: Shape, init: Init): ParamSpec => ({
  _tag: "param",
  shape,
  init,
  role: "aux",
});

/** Type guard for parameter-spec leaves. */
export const isParamSpec = (x: unknown): x is ParamSpec =>
  typeof x === "object" && x !== null && (x as { _tag?: unknown })._tag === "param";

/** Number of scalars in a shape. */
export const numel = (s: Shape): number => s.reduce((a, b) => a * b, 1);
