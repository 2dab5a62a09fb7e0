/**
 * Strict decoding of plain-data configs with errors that name the failing path.
 *
 * io-ts does the structural work; `combinators.ts` (the combinators) and this
 * module (errors and paths) add what a config reader needs on top of it:
 *
 * - `strict`: an object codec that *rejects* unknown fields (io-ts
 *   `t.exact` silently strips them, which hides typos such as `dMemroy`);
 * - `taggedUnion`: dispatches on `_tag`, so a failing value reports
 *   the errors of the selected branch only, not the noise of every branch;
 * - `oneOf`: a string-literal union that names the allowed values;
 * - refined numbers (`PositiveInt`, `NonNegativeInt`,
 *   `PositiveNumber`, `NonNegativeNumber`,
 *   `Probability`, `intAtLeast`) whose static type stays
 *   `number` and whose failures read `must be a positive integer, got -4`;
 * - {@linkcode toSpecError} / {@linkcode decodeWith}: turn io-ts `Errors` into
 *   one {@linkcode SpecError} whose issues carry paths such as
 *   `model.memory.cell` or `model.blocks[1]`.
 *
 * Decoding never throws on any JSON-like input: every failure is a `Left`.
 *
 * @example Decode a small config
 * ```ts
 * import * as t from "io-ts";
 * import * as E from "fp-ts/lib/Either.js";
 * import { decodeWith } from "./decode.ts";
 * import { PositiveInt, strict } from "./combinators.ts";
 *
 * const Train = strict({ batchSize: PositiveInt, lr: t.number }, "Train");
 * const r = decodeWith(Train, "train", { batchSize: 0, lr: 1e-3, lrr: 1 });
 * if (E.isLeft(r)) {
 *   console.log(r.left.message);
 *   // train.batchSize: must be a positive integer, got 0
 *   // train.lrr: unknown field (expected one of batchSize, lr)
 * }
 * ```
 *
 * @module
 */
import type * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import type { Either } from "./either.ts";

// ---------------------------------------------------------------------------
// Errors

/**
 * One problem found while decoding: where it is and what is wrong.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SpecError, type SpecIssue } from "./decode.ts";
 *
 * const issue: SpecIssue = { path: "model.dModel", message: "must be a positive integer, got 0" };
 * assert.equal(new SpecError([issue]).message, "model.dModel: must be a positive integer, got 0");
 * ```
 */
export interface SpecIssue {
  /** Path of the offending value, e.g. `model.memory.cell` or `model.blocks[1]`. */
  readonly path: string;
  /** What is wrong, e.g. `must be a positive integer, got -4`. */
  readonly message: string;
}

/**
 * Every problem found in one decoded value. `message` joins the issues as
 * `path: message`, one per line, so the error can be printed or thrown as is.
 *
 * @example
 * ```ts
 * import { SpecError } from "./decode.ts";
 *
 * const e = new SpecError([{ path: "model.nHeads", message: "must be a positive integer, got 0" }]);
 * console.log(e._tag, e.message); // SpecError model.nHeads: must be a positive integer, got 0
 * ```
 */
export class SpecError extends Error {
  /** Discriminant, so the error can sit in a `_tag`ged union of errors. */
  readonly _tag = "SpecError" as const;
  /** The problems, in the order they were found. Never empty in practice. */
  readonly issues: readonly SpecIssue[];

  /** Builds the error from its issues; the message is derived from them. */
  constructor(issues: readonly SpecIssue[]) {
    super(issues.map((i) => `${i.path}: ${i.message}`).join("\n"));
    this.name = "SpecError";
    this.issues = issues;
  }
}

// ---------------------------------------------------------------------------
// Describing values and expectations

/**
 * A short, readable description of a value for error messages:
 * `"256" (string)`, `3 (number)`, `null`, `an array of length 2`, `an object`.
 *
 * @example
 * ```ts
 * import { describeValue } from "./decode.ts";
 *
 * console.log(describeValue("256")); // "256" (string)
 * ```
 */
export function describeValue(u: unknown): string {
  if (u === null) return "null";
  if (u === undefined) return "undefined";
  if (Array.isArray(u)) return `an array of length ${u.length}`;
  switch (typeof u) {
    case "string": {
      const s = u.length > 40 ? `${u.slice(0, 37)}...` : u;
      return `${JSON.stringify(s)} (string)`;
    }
    case "number":
      return `${String(u)} (number)`;
    case "boolean":
      return `${String(u)} (boolean)`;
    case "bigint":
      return `${String(u)}n (bigint)`;
    case "object":
      return "an object";
    default:
      return `a ${typeof u}`;
  }
}

/** A codec that can say what it expects, in words (`a positive integer`). */
interface Described {
  readonly expected: string;
}

function hasExpected(u: unknown): u is Described {
  if (typeof u !== "object" || u === null) return false;
  return typeof (u as { expected?: unknown }).expected === "string";
}

function tagOf(d: unknown): unknown {
  return typeof d === "object" && d !== null ? (d as { _tag?: unknown })._tag : undefined;
}

/** What a codec expects, in words, for messages about codecs not built here. */
export function expectedOf(d: t.Decoder<unknown, unknown>): string {
  if (hasExpected(d)) return d.expected;
  switch (tagOf(d)) {
    case "StringType":
      return "a string";
    case "NumberType":
      return "a number";
    case "BooleanType":
      return "a boolean";
    case "NullType":
      return "null";
    case "ArrayType":
    case "ReadonlyArrayType":
    case "AnyArrayType":
    case "TupleType":
      return "an array";
    case "InterfaceType":
    case "PartialType":
    case "ExactType":
    case "StrictType":
    case "DictionaryType":
    case "AnyDictionaryType":
    case "ObjectType":
      return "an object";
    case "LiteralType":
      return JSON.stringify((d as unknown as { value: unknown }).value);
    case "KeyofType":
      return `one of ${Object.keys((d as unknown as { keys: object }).keys).join(", ")}`;
    case "UnionType":
      return (d as unknown as { types: t.Decoder<unknown, unknown>[] }).types.map(expectedOf)
        .join(" or ");
    case "ReadonlyType":
    case "RefinementType":
      return expectedOf((d as unknown as { type: t.Decoder<unknown, unknown> }).type);
    default:
      return d.name;
  }
}

// ---------------------------------------------------------------------------
// Paths and the reporter

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/**
 * Appends one step to a path: `joinPath("model", "dModel")` is `model.dModel`,
 * `joinPath("model.blocks", 1)` is `model.blocks[1]`. Keys that are not
 * identifiers are quoted: `model["a b"]`.
 *
 * @example
 * ```ts
 * import { joinPath } from "./decode.ts";
 *
 * console.log(joinPath(joinPath("model", "blocks"), 1)); // model.blocks[1]
 * ```
 */
export function joinPath(base: string, key: string | number): string {
  if (typeof key === "number") return `${base}[${key}]`;
  return IDENTIFIER.test(key) ? `${base}.${key}` : `${base}[${JSON.stringify(key)}]`;
}

const BRANCHING = new Set(["UnionType", "IntersectionType"]);
const INDEXED = new Set(["ArrayType", "ReadonlyArrayType", "TupleType", "AnyArrayType"]);

interface Located {
  readonly path: string;
  /** The innermost union this error passed through, if the error sits at its root. */
  readonly unionAtRoot: t.Decoder<unknown, unknown> | undefined;
}

function locate(root: string, context: t.Context): Located {
  let path = root;
  let unionAtRoot: t.Decoder<unknown, unknown> | undefined = undefined;
  // Entry 0 is the root codec itself; entry i's key indexes into entry i-1's type.
  for (let i = 1; i < context.length; i++) {
    const parentTag = tagOf(context[i - 1].type);
    const key = context[i].key;
    if (typeof parentTag === "string" && BRANCHING.has(parentTag)) {
      // A branch index of a union or intersection: not part of the data path.
      unionAtRoot = parentTag === "UnionType" && i === context.length - 1
        ? context[i - 1].type
        : undefined;
      continue;
    }
    unionAtRoot = undefined;
    // An index into an array, also when a wrapper codec (`A | null`, say) validated the array.
    const indexed = (typeof parentTag === "string" && INDEXED.has(parentTag)) ||
      Array.isArray(context[i - 1].actual);
    const isIndex = indexed && /^\d+$/.test(key);
    path = joinPath(path, isIndex ? Number(key) : key);
  }
  return { path, unionAtRoot };
}

/**
 * Turns io-ts validation errors into one {@linkcode SpecError}. Paths start at
 * `root` (e.g. `"model"`); array indices are written in brackets; union and
 * intersection branch indices are dropped, and the errors of a plain io-ts
 * union that failed at its own root are merged into one
 * `expected A or B, got ...` issue. Duplicate issues are reported once.
 *
 * @example
 * ```ts
 * import * as t from "io-ts";
 * import * as E from "fp-ts/lib/Either.js";
 * import { toSpecError } from "./decode.ts";
 *
 * const r = t.type({ n: t.number }).decode({ n: "3" });
 * if (E.isLeft(r)) console.log(toSpecError(r.left, "cfg").message);
 * // cfg.n: expected a number, got "3" (string)
 * ```
 */
export function toSpecError(errors: t.Errors, root: string): SpecError {
  const issues: SpecIssue[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    const { path, unionAtRoot } = locate(root, e.context);
    const last = e.context[e.context.length - 1];
    let message: string;
    if (unionAtRoot !== undefined) {
      message = `expected ${expectedOf(unionAtRoot)}, got ${describeValue(e.value)}`;
    } else if (e.message !== undefined) {
      message = e.message;
    } else {
      const expected = last === undefined ? "a valid value" : expectedOf(last.type);
      message = `expected ${expected}, got ${describeValue(e.value)}`;
    }
    const id = `${path}\u0000${message}`;
    if (seen.has(id)) continue;
    seen.add(id);
    issues.push({ path, message });
  }
  if (issues.length === 0) issues.push({ path: root, message: "invalid value" });
  return new SpecError(issues);
}

/**
 * Decodes `u` with `codec`, reporting failures as a {@linkcode SpecError}
 * whose paths start at `root`.
 *
 * @example
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { decodeWith } from "./decode.ts";
 * import { PositiveInt } from "./combinators.ts";
 *
 * const r = decodeWith(PositiveInt, "train.batchSize", -4);
 * if (E.isLeft(r)) console.log(r.left.message);
 * // train.batchSize: must be a positive integer, got -4
 * ```
 */
export function decodeWith<A>(
  codec: t.Decoder<unknown, A>,
  root: string,
  u: unknown,
): Either<SpecError, A> {
  return E.mapLeft((errors: t.Errors) => toSpecError(errors, root))(codec.decode(u));
}

/**
 * Lifts a check over an already decoded value (cross-field rules) into an
 * `Either`, for use with `E.chain` after {@linkcode decodeWith}. The check
 * returns every issue it finds; an empty list means the value is accepted.
 *
 * @example
 * ```ts
 * import * as t from "io-ts";
 * import * as E from "fp-ts/lib/Either.js";
 * import { pipe } from "fp-ts/lib/function.js";
 * import { checkWith, decodeWith } from "./decode.ts";
 * import { PositiveInt, strict } from "./combinators.ts";
 *
 * const Range = strict({ lo: PositiveInt, hi: PositiveInt }, "Range");
 * const r = pipe(
 *   decodeWith(Range, "range", { lo: 5, hi: 2 }),
 *   E.chain(checkWith((r) => r.lo <= r.hi ? [] : [{ path: "range.lo", message: "exceeds range.hi" }])),
 * );
 * console.log(E.isLeft(r)); // true
 * ```
 */
export function checkWith<A>(
  check: (a: A) => readonly SpecIssue[],
): (a: A) => Either<SpecError, A> {
  return (a) => {
    const issues = check(a);
    return issues.length === 0 ? E.right(a) : E.left(new SpecError(issues));
  };
}
