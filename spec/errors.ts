/**
 * What a thrown value says, as one line for an error message.
 *
 * crt's commands, readers and backends all report a caught value the same
 * way: an `Error`'s message, anything else as text, and for Deno's I/O error
 * classes optionally words of the caller's (`NotFound` → "not found").
 *
 * @module
 */

/** Deno's error class names (`NotFound`, `PermissionDenied`, `AddrInUse`, ...). */
export type DenoErrorName = keyof typeof Deno.errors;

/**
 * An error's message, or the thrown value as text; `named` gives the words
 * for Deno's error classes by name, checked in order (outside Deno, where
 * there are no such classes, it is ignored).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { describeError } from "./errors.ts";
 *
 * assert.equal(describeError(new Error("boom")), "boom");
 * assert.equal(describeError(42), "42");
 * assert.equal(describeError(new Deno.errors.NotFound("x"), { NotFound: "not found" }), "not found");
 * ```
 */
export const describeError = (
  e: unknown,
  named: Readonly<Partial<Record<DenoErrorName, string>>> = {},
): string => {
  const classes = typeof Deno === "undefined" ? undefined : Deno.errors;
  if (classes !== undefined) {
    for (const [name, words] of Object.entries(named)) {
      if (e instanceof classes[name as DenoErrorName]) return words;
    }
  }
  return e instanceof Error ? e.message : String(e);
};
