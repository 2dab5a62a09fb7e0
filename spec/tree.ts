/**
 * Parameter trees: readonly plain objects and arrays whose leaves are tensors
 * (or parameter specs), keyed by meaning: `blocks[1].attn.wq`.
 *
 * @module
 */

/** A tree with leaves of type `L`. */
export type Tree<L> = L | readonly Tree<L>[] | { readonly [k: string]: Tree<L> };

const isPlainObject = (x: unknown): x is Record<string, unknown> =>
  typeof x === "object" && x !== null && !Array.isArray(x) &&
  Object.getPrototypeOf(x) === Object.prototype;

/**
 * Leaves of a tree with their paths, in a fixed order (object keys in
 * insertion order, arrays by index). `isLeaf` decides what counts as a leaf.
 *
 * @example
 * ```ts
 * import { flatten } from "./tree.ts";
 * const leaves = flatten({ a: 1, b: [2, 3] }, (x): x is number => typeof x === "number");
 * // [["a", 1], ["b[0]", 2], ["b[1]", 3]]
 * ```
 */
export const flatten = <L>(
  tree: unknown,
  isLeaf: (x: unknown) => x is L,
  prefix = "",
): [string, L][] => {
  if (isLeaf(tree)) return [[prefix, tree]];
  if (Array.isArray(tree)) {
    return tree.flatMap((t, i) => flatten(t, isLeaf, `${prefix}[${i}]`));
  }
  if (isPlainObject(tree)) {
    return Object.entries(tree).flatMap(([k, v]) =>
      v === undefined ? [] : flatten(v, isLeaf, prefix === "" ? k : `${prefix}.${k}`)
    );
  }
  throw new Error(`tree node at "${prefix}" is neither a leaf, an array nor a plain object`);
};

/**
 * A tree of the same structure with every leaf replaced by `f(leaf, path)`.
 *
 * @example
 * ```ts
 * import { mapTree } from "./tree.ts";
 * const doubled = mapTree({ a: 1, b: [2] }, (x): x is number => typeof x === "number", (x) => x * 2);
 * // { a: 2, b: [4] }
 * ```
 */
export const mapTree = <L, M>(
  tree: unknown,
  isLeaf: (x: unknown) => x is L,
  f: (leaf: L, path: string) => M,
  prefix = "",
): unknown => {
  if (isLeaf(tree)) return f(tree, prefix);
  if (Array.isArray(tree)) return tree.map((t, i) => mapTree(t, isLeaf, f, `${prefix}[${i}]`));
  if (isPlainObject(tree)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(tree)) {
      if (v !== undefined) out[k] = mapTree(v, isLeaf, f, prefix === "" ? k : `${prefix}.${k}`);
    }
    return out;
  }
  throw new Error(`tree node at "${prefix}" is neither a leaf, an array nor a plain object`);
};
