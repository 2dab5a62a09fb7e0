/**
 * The `Either` that crt's public functions return: success (`Right`) or a
 * failure (`Left`) told apart by `_tag`.
 *
 * These are plain interfaces declared here, structurally identical to fp-ts's
 * `Left`, `Right` and `Either` (`{ readonly _tag: "Left"; readonly left: E }` /
 * `{ readonly _tag: "Right"; readonly right: A }`). fp-ts functions accept
 * these values, and fp-ts's values are these types, so code inside crt keeps
 * building them with `E.left` / `E.right` and reading them with `E.isLeft`,
 * `E.chain`, `pipe`, ... Only the *declared* return types of public
 * functions name this module.
 *
 * Why not re-export fp-ts's types: `deno doc --lint` flags every type from an
 * npm package that a public signature names as `private-type-ref` (Deno
 * issue #27364), and the docs could not link to them either.
 *
 * @example Narrow on `_tag`, or hand the value to fp-ts
 * ```ts
 * import assert from "node:assert/strict";
 * import * as E from "fp-ts/lib/Either.js";
 * import type { Either } from "./either.ts";
 *
 * const half = (n: number): Either<string, number> =>
 *   n % 2 === 0 ? { _tag: "Right", right: n / 2 } : { _tag: "Left", left: `${n} is odd` };
 *
 * const r = half(3);
 * if (r._tag === "Left") assert.equal(r.left, "3 is odd");
 * assert.equal(E.getOrElse(() => 0)(half(8)), 4);
 * ```
 *
 * @module
 */
import type * as FpTs from "fp-ts/lib/Either.js";
import type { Assert, MutuallyAssignable } from "./_assert.ts";

/**
 * The failure case of an {@linkcode Either}, holding the error `left`.
 * Structurally fp-ts's `Left<E>`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as E from "fp-ts/lib/Either.js";
 * import type { Left } from "./either.ts";
 *
 * const failed: Left<string> = { _tag: "Left", left: "no backend" };
 * assert.ok(E.isLeft(failed)); // fp-ts reads it as its own Left
 * ```
 */
export interface Left<E> {
  /** Discriminant: this is a failure. */
  readonly _tag: "Left";
  /** The error. */
  readonly left: E;
}

/**
 * The success case of an {@linkcode Either}, holding the value `right`.
 * Structurally fp-ts's `Right<A>`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as E from "fp-ts/lib/Either.js";
 * import type { Right } from "./either.ts";
 *
 * const ok: Right<number> = { _tag: "Right", right: 42 };
 * assert.equal(E.getOrElse(() => 0)(ok), 42); // fp-ts reads it as its own Right
 * ```
 */
export interface Right<A> {
  /** Discriminant: this is a success. */
  readonly _tag: "Right";
  /** The value. */
  readonly right: A;
}

/**
 * A failure `E` or a success `A`. Structurally fp-ts's `Either<E, A>`: values
 * pass to and from fp-ts functions unchanged.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as E from "fp-ts/lib/Either.js";
 * import type { Either } from "./either.ts";
 *
 * const parsed: Either<string, number> = E.right(3);
 * const doubled: Either<string, number> = E.map((n: number) => 2 * n)(parsed);
 * assert.deepEqual(doubled, { _tag: "Right", right: 6 });
 * ```
 */
export type Either<E, A> = Left<E> | Right<A>;

// Compile-time: these are fp-ts's types in all but name, in both directions.
type _LeftIsFpTs = Assert<MutuallyAssignable<Left<"e">, FpTs.Left<"e">>>;
type _RightIsFpTs = Assert<MutuallyAssignable<Right<"a">, FpTs.Right<"a">>>;
type _EitherIsFpTs = Assert<MutuallyAssignable<Either<"e", "a">, FpTs.Either<"e", "a">>>;
