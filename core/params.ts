/**
 * Parameter trees as tensors: flattening by path, rebuilding from leaves, and
 * drawing initial values from a seed.
 *
 * @module
 */
import type { ModelParams } from "../spec/layout.ts";
import { isParamSpec, numel, type ParamSpec } from "../spec/params.ts";
import { flatten, mapTree } from "../spec/tree.ts";
import { tf } from "../ops/tf.ts";
import { cayley, identityPlus, inverse } from "./linalg.ts";
import type { Params, Tensor } from "./program.ts";
import { mixSeed, seeded } from "./random.ts";

const isTensor = (x: unknown): x is Tensor => x instanceof tf.Tensor;

/** Flattened trees, by tree: a parameter tree is immutable, and streams flatten theirs every step. */
const flattened = new WeakMap<object, Readonly<Record<string, Tensor>>>();

/** Parameter leaves of a tensor tree, by path (the same record for the same tree). */
export const flattenParams = (params: Params): Readonly<Record<string, Tensor>> => {
  const have = flattened.get(params);
  if (have !== undefined) return have;
  const flat = Object.freeze(Object.fromEntries(flatten(params, isTensor)));
  flattened.set(params, flat);
  return flat;
};

/** Build a parameter tree of the layout's structure from leaves by path. */
export const unflattenParams = (
  layout: ModelParams<ParamSpec>,
  leaves: Readonly<Record<string, Tensor>>,
): Params =>
  mapTree(layout, isParamSpec, (_p, path) => {
    const t = leaves[path];
    if (t === undefined) throw new Error(`no tensor for parameter ${path}`);
    return t;
  }) as Params;

const hashPath = (s: string): number => {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
};

/** Draw the initial values of every leaf. Aux leaves first: Cayley leaves read them. */
export const initValues = (
  layout: ModelParams<ParamSpec>,
  seed: number,
): Map<string, Float32Array> => {
  const leaves = flatten(layout, isParamSpec);
  const values = new Map<string, Float32Array>();
  const draw = (path: string, p: ParamSpec): Float32Array => {
    const n = numel(p.shape);
    const out = new Float32Array(n);
    const r = seeded(mixSeed(seed, hashPath(path)));
    const init = p.init;
    switch (init._tag) {
      case "normal":
        for (let i = 0; i < n; i++) out[i] = init.std * r.normal();
        return out;
      case "zeros":
        return out;
      case "ones":
        return out.fill(1);
      case "uniform":
        for (let i = 0; i < n; i++) out[i] = (2 * r.uniform() - 1) * init.limit;
        return out;
      case "skewBlocks": {
        const m = p.shape[0];
        for (let i = 0; i + 1 < m; i += 2) {
          const t = Math.tan((r.uniform() * Math.PI / 2) / 2); // θ ~ U(0, π/2), t = tan(θ/2)
          out[i * m + i + 1] = t;
          out[(i + 1) * m + i] = -t;
        }
        return out;
      }
      case "signs": {
        const half = Math.floor(n / 2);
        for (let i = 0; i < n; i++) out[i] = i < half ? -1 : 1;
        return out;
      }
      case "cayley": {
        const m = p.shape[0];
        const a = Float64Array.from(values.get(init.a)!);
        const d = values.get(init.d)!;
        return Float32Array.from(cayley(inverse(identityPlus(a, m), m), a, d, m));
      }
    }
  };
  for (const [path, p] of leaves) if (p.init._tag !== "cayley") values.set(path, draw(path, p));
  for (const [path, p] of leaves) if (p.init._tag === "cayley") values.set(path, draw(path, p));
  return values;
};

/** Fresh parameter tensors of `layout`, drawn from `seed` (see {@linkcode initValues}). */
export const initParams = (layout: ModelParams<ParamSpec>, seed: number): Params => {
  const values = initValues(layout, seed);
  return mapTree(
    layout,
    isParamSpec,
    (p, path) => tf.tensor(values.get(path)!, p.shape as number[]),
  ) as Params;
};
