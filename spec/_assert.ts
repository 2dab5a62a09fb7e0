/**
 * Compile-time assertions between types. Nothing here exists at run time.
 *
 * @module
 */

/** `true` when `A` and `B` are each assignable to the other, else `false`. */
export type MutuallyAssignable<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false)
  : false;

/** Compiles only when `T` is `true`: `type _ = Assert<MutuallyAssignable<A, B>>`. */
export type Assert<T extends true> = T;
