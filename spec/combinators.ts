/**
 * The io-ts combinators specs are decoded with (see `decode.ts` for the
 * errors and paths they report): refined numbers that keep the static type
 * `number`, {@linkcode oneOf} string literals, {@linkcode optional} fields,
 * {@linkcode strict} objects that reject unknown fields, and
 * {@linkcode taggedUnion}, which reads `_tag` first.
 *
 * @module
 */
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import { describeValue, expectedOf } from "./decode.ts";

// ---------------------------------------------------------------------------
// Numbers

/**
 * A codec for `number` values that satisfy a predicate. The static type stays
 * `number` (no brand), so decoded specs keep plain field types.
 */
export interface NumberCodec extends t.Type<number, number, unknown> {
  /** What the codec accepts, in words: `a positive integer`. */
  readonly expected: string;
}

/**
 * Builds a {@linkcode NumberCodec}. A non-number fails with
 * `expected <expected>, got "256" (string)`; a number (including NaN and
 * ±Infinity) that fails `accepts` fails with `must be <expected>, got -4`.
 *
 * @example
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { decodeWith } from "./decode.ts";
 * import { numberWhere } from "./combinators.ts";
 *
 * const Even = numberWhere({
 *   name: "EvenInt",
 *   expected: "an even integer",
 *   accepts: (n) => Number.isInteger(n) && n % 2 === 0,
 * });
 * const r = decodeWith(Even, "x", 3);
 * if (E.isLeft(r)) console.log(r.left.message); // x: must be an even integer, got 3
 * ```
 */
export function numberWhere(options: {
  /** io-ts name of the codec, e.g. `PositiveInt`. */
  readonly name: string;
  /** What is accepted, in words, after "must be": `a positive integer`. */
  readonly expected: string;
  /** The predicate on finite and non-finite numbers alike. */
  readonly accepts: (n: number) => boolean;
}): NumberCodec {
  const { name, expected, accepts } = options;
  const is = (u: unknown): u is number => typeof u === "number" && accepts(u);
  const codec = new t.Type<number, number, unknown>(
    name,
    is,
    (u, c) => {
      if (typeof u !== "number") {
        return t.failure(u, c, `expected ${expected}, got ${describeValue(u)}`);
      }
      return accepts(u) ? t.success(u) : t.failure(u, c, `must be ${expected}, got ${String(u)}`);
    },
    t.identity,
  );
  return Object.assign(codec, { expected });
}

/**
 * An integer `≥ min` (finite, no fraction).
 *
 * @example
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { decodeWith } from "./decode.ts";
 * import { intAtLeast } from "./combinators.ts";
 *
 * const r = decodeWith(intAtLeast(2), "model.readout.nClasses", 1);
 * if (E.isLeft(r)) console.log(r.left.message);
 * // model.readout.nClasses: must be an integer >= 2, got 1
 * ```
 */
export function intAtLeast(min: number): NumberCodec {
  return integerFrom(min, `IntAtLeast${min}`, `an integer >= ${min}`);
}

/** An integer `≥ min` under its own codec name and wording. */
const integerFrom = (min: number, name: string, expected: string): NumberCodec =>
  numberWhere({ name, expected, accepts: (n) => Number.isInteger(n) && n >= min });

/** A finite number `> 0`, or `≥ 0` when `zero` is allowed, under its own name and wording. */
const finiteFrom = (zero: boolean, name: string, expected: string): NumberCodec =>
  numberWhere({ name, expected, accepts: (n) => Number.isFinite(n) && (zero ? n >= 0 : n > 0) });

/**
 * An integer ≥ 1: sizes, lengths, counts.
 *
 * @example
 * ```ts
 * import { PositiveInt } from "./combinators.ts";
 *
 * console.log(PositiveInt.is(256), PositiveInt.is(0), PositiveInt.is(1.5)); // true false false
 * ```
 */
export const PositiveInt: NumberCodec = integerFrom(1, "PositiveInt", "a positive integer");

/**
 * An integer ≥ 0: lengths that may be empty (Transformer-XL `memLen`).
 *
 * @example
 * ```ts
 * import { NonNegativeInt } from "./combinators.ts";
 *
 * console.log(NonNegativeInt.is(0), NonNegativeInt.is(-1)); // true false
 * ```
 */
export const NonNegativeInt: NumberCodec = integerFrom(
  0,
  "NonNegativeInt",
  "a non-negative integer",
);

/**
 * A finite number > 0: learning rates, scales.
 *
 * @example
 * ```ts
 * import { PositiveNumber } from "./combinators.ts";
 *
 * console.log(PositiveNumber.is(1e-3), PositiveNumber.is(0)); // true false
 * ```
 */
export const PositiveNumber: NumberCodec = finiteFrom(false, "PositiveNumber", "a positive number");

/**
 * A finite number ≥ 0: weight decay, clipping norms.
 *
 * @example
 * ```ts
 * import { NonNegativeNumber } from "./combinators.ts";
 *
 * console.log(NonNegativeNumber.is(0), NonNegativeNumber.is(Infinity)); // true false
 * ```
 */
export const NonNegativeNumber: NumberCodec = finiteFrom(
  true,
  "NonNegativeNumber",
  "a non-negative number",
);

/**
 * A number in [0, 1): a drop probability (1 would drop everything).
 *
 * @example
 * ```ts
 * import { Probability } from "./combinators.ts";
 *
 * console.log(Probability.is(0.1), Probability.is(1)); // true false
 * ```
 */
export const Probability: NumberCodec = numberWhere({
  name: "Probability",
  expected: "a number in [0, 1)",
  accepts: (n) => n >= 0 && n < 1,
});

// ---------------------------------------------------------------------------
// String choices

/** A codec for one of a fixed list of strings; the static type is their union. */
export interface OneOfCodec<L extends string> extends t.Type<L, L, unknown> {
  /** The allowed values, in the order given. */
  readonly values: readonly L[];
  /** What is accepted, in words: `a cell (one of gru, ncgru)`. */
  readonly expected: string;
}

/**
 * One of a fixed list of strings. `noun` names the choice in messages:
 * `unknown cell "lstm" (expected gru, ncgru)` for an unknown string and
 * `expected a cell (one of gru, ncgru), got 3 (number)` for a non-string.
 *
 * @example
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { decodeWith } from "./decode.ts";
 * import { oneOf } from "./combinators.ts";
 *
 * const Cell = oneOf(["gru", "ncgru"], "cell");
 * const r = decodeWith(Cell, "model.memory.cell", "lstm");
 * if (E.isLeft(r)) console.log(r.left.message);
 * // model.memory.cell: unknown cell "lstm" (expected gru, ncgru)
 * ```
 */
export function oneOf<const L extends readonly [string, ...string[]]>(
  values: L,
  noun: string,
): OneOfCodec<L[number]> {
  type V = L[number];
  const allowed = new Set<string>(values);
  const list = values.join(", ");
  const expected = `${article(noun)} ${noun} (one of ${list})`;
  const is = (u: unknown): u is V => typeof u === "string" && allowed.has(u);
  const codec = new t.Type<V, V, unknown>(
    values.map((v) => JSON.stringify(v)).join(" | "),
    is,
    (u, c) => {
      if (typeof u !== "string") {
        return t.failure(u, c, `expected ${expected}, got ${describeValue(u)}`);
      }
      return is(u)
        ? t.success(u)
        : t.failure(u, c, `unknown ${noun} ${JSON.stringify(u)} (expected ${list})`);
    },
    t.identity,
  );
  return Object.assign(codec, { values: [...values] as readonly V[], expected });
}

function article(noun: string): string {
  return /^[aeiou]/i.test(noun) ? "an" : "a";
}

// ---------------------------------------------------------------------------
// Objects

/**
 * A field codec that may be absent: see {@linkcode optional}. The marker
 * `optional: true` is what {@linkcode strict} and {@linkcode TypeOfProps}
 * read, at run time and in types.
 */
export interface OptionalCodec<A, O = A> extends t.Type<A | undefined, O | undefined, unknown> {
  /** Marks the field as optional for {@linkcode strict}. */
  readonly optional: true;
  /** What a present value must be, in words (the inner codec's). */
  readonly expected: string;
}

/**
 * Marks a field of a {@linkcode strict} object as optional: an absent field
 * (or one set to `undefined` in code) is accepted and left out of the decoded
 * object; a present one must pass `codec`. Use it for fields added after
 * configs were written, whose absence means a documented default, so that
 * older specs and run folders stay valid.
 *
 * @example
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { decodeWith } from "./decode.ts";
 * import { optional, PositiveInt, strict } from "./combinators.ts";
 *
 * const Train = strict({ batchSize: PositiveInt, seed: optional(PositiveInt) }, "Train");
 * console.log(Train.is({ batchSize: 20 }), Train.is({ batchSize: 20, seed: 7 })); // true true
 * const r = decodeWith(Train, "train", { batchSize: 20, seed: 0 });
 * if (E.isLeft(r)) console.log(r.left.message); // train.seed: must be a positive integer, got 0
 * ```
 */
export function optional<A, O>(
  codec: t.Type<A, O, unknown> & { readonly expected?: string },
): OptionalCodec<A, O> {
  const out = new t.Type<A | undefined, O | undefined, unknown>(
    `${codec.name} | undefined`,
    (u): u is A | undefined => u === undefined || codec.is(u),
    (u, c) => (u === undefined ? t.success(undefined) : codec.validate(u, c)),
    (a) => (a === undefined ? undefined : codec.encode(a)),
  );
  return Object.assign(out, { optional: true as const, expected: expectedOf(codec) });
}

const isOptional = (c: unknown): boolean =>
  typeof c === "object" && c !== null && (c as { optional?: unknown }).optional === true;

/** Keys of `P` whose codec is an {@linkcode OptionalCodec}. */
type OptionalProps<P> = {
  [K in keyof P]-?: P[K] extends { readonly optional: true } ? K : never;
}[keyof P];

/** Re-states an intersection of object types as one object type (modifiers kept). */
type Flat<A> = { [K in keyof A]: A[K] };

/**
 * The decoded type of a {@linkcode strict} object: every field readonly;
 * fields with an {@linkcode optional} codec are optional.
 */
export type TypeOfProps<P extends t.Props> = Flat<
  & { readonly [K in Exclude<keyof P, OptionalProps<P>>]: t.TypeOf<P[K]> }
  & { readonly [K in OptionalProps<P>]?: Exclude<t.TypeOf<P[K]>, undefined> }
>;

/** The encoded type of a {@linkcode strict} object. */
export type OutputOfProps<P extends t.Props> = Flat<
  & { readonly [K in Exclude<keyof P, OptionalProps<P>>]: t.OutputOf<P[K]> }
  & { readonly [K in OptionalProps<P>]?: Exclude<t.OutputOf<P[K]>, undefined> }
>;

/** The keys of `A` that are optional (`field?: T`). */
type OptionalKeys<A> = { [K in keyof A]-?: object extends Pick<A, K> ? K : never }[keyof A];

/**
 * The field codecs of a {@linkcode strict} codec for the object type `A`: for
 * each field, a codec that decodes and encodes exactly that field's type.
 * Passing it as the type argument of `strict` makes a missing field, an extra
 * field or a codec of another type (a different literal list, say) a compile
 * error, so a codec cannot drift from the interface it decodes. An optional
 * field (`field?: T`) needs an {@linkcode optional} codec.
 *
 * @example
 * ```ts
 * import { type FieldCodecs, PositiveInt, strict } from "./combinators.ts";
 *
 * interface Train {
 *   readonly batchSize: number;
 * }
 * const TrainCodec = strict<FieldCodecs<Train>>({ batchSize: PositiveInt }, "Train");
 * console.log(TrainCodec.is({ batchSize: 20 })); // true
 * ```
 */
export type FieldCodecs<A> = {
  readonly [K in keyof A]-?: K extends OptionalKeys<A>
    ? OptionalCodec<Exclude<A[K], undefined>, Exclude<A[K], undefined>>
    : t.Type<A[K], A[K], unknown>;
};

/** An object codec that rejects unknown fields; `props` can be spread into another. */
export interface StrictCodec<P extends t.Props>
  extends t.Type<TypeOfProps<P>, OutputOfProps<P>, unknown> {
  /** The field codecs, in declaration order (also the order of messages). */
  readonly props: P;
  /** What is accepted, in words: `an object`. */
  readonly expected: string;
}

function isRecord(u: unknown): u is Record<string, unknown> {
  return typeof u === "object" && u !== null && !Array.isArray(u);
}

const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

/**
 * An object with exactly the fields of `props`, all required except those
 * wrapped in {@linkcode optional}. Unlike io-ts
 * `t.exact` (which strips extra fields), an unknown field is an error naming
 * the field and the allowed ones:
 * `model.memory.cel: unknown field (expected one of cell, dMemory, ...)`;
 * a missing field reads `missing field (expected a positive integer)`.
 * Every field is checked, so all issues of one object are reported together.
 * The decoded value is a fresh object holding only the declared fields.
 *
 * @example
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { decodeWith } from "./decode.ts";
 * import { oneOf, PositiveInt, strict } from "./combinators.ts";
 *
 * const Memory = strict({ cell: oneOf(["gru", "ncgru"], "cell"), dMemory: PositiveInt }, "Memory");
 * const r = decodeWith(Memory, "model.memory", { cel: "gru", dMemory: 256 });
 * if (E.isLeft(r)) console.log(r.left.message);
 * // model.memory.cell: missing field (expected a cell (one of gru, ncgru))
 * // model.memory.cel: unknown field (expected one of cell, dMemory)
 * ```
 */
export function strict<P extends t.Props>(props: P, name: string): StrictCodec<P> {
  type A = TypeOfProps<P>;
  type O = OutputOfProps<P>;
  const keys = Object.keys(props);
  const known = new Set(keys);
  const list = keys.join(", ");
  const absent = (u: Record<string, unknown>, k: string): boolean =>
    !hasOwn(u, k) || (u[k] === undefined && isOptional(props[k]));
  const is = (u: unknown): u is A =>
    isRecord(u) &&
    Object.keys(u).every((k) => known.has(k)) &&
    keys.every((k) => (absent(u, k) ? isOptional(props[k]) : props[k].is(u[k])));
  const codec = new t.Type<A, O, unknown>(
    name,
    is,
    (u, c) => {
      if (!isRecord(u)) return t.failure(u, c, `expected an object, got ${describeValue(u)}`);
      const errors: t.ValidationError[] = [];
      const out: Record<string, unknown> = {};
      for (const k of keys) {
        const codec = props[k];
        if (absent(u, k)) {
          if (isOptional(codec)) continue;
          errors.push({
            value: undefined,
            context: t.appendContext(c, k, codec, undefined),
            message: `missing field (expected ${expectedOf(codec)})`,
          });
          continue;
        }
        const r = codec.validate(u[k], t.appendContext(c, k, codec, u[k]));
        if (E.isLeft(r)) errors.push(...r.left);
        else out[k] = r.right;
      }
      for (const k of Object.keys(u)) {
        if (known.has(k)) continue;
        errors.push({
          value: u[k],
          context: t.appendContext(c, k, t.never, u[k]),
          message: `unknown field (expected one of ${list})`,
        });
      }
      return errors.length > 0 ? t.failures(errors) : t.success(out as A);
    },
    (a) => {
      const out: Record<string, unknown> = {};
      for (const k of keys) {
        const v = (a as Record<string, unknown>)[k];
        if (v === undefined && isOptional(props[k])) continue;
        out[k] = props[k].encode(v);
      }
      return out as O;
    },
  );
  return Object.assign(codec, { props, expected: "an object" });
}

/** The decoded type of a {@linkcode taggedUnion}: the union of its branches. */
export type TypeOfBranches<B extends Record<string, t.Mixed>> = t.TypeOf<B[keyof B]>;

/** The encoded type of a {@linkcode taggedUnion}. */
export type OutputOfBranches<B extends Record<string, t.Mixed>> = t.OutputOf<B[keyof B]>;

/** A union of object codecs told apart by their `_tag` field. */
export interface TaggedUnionCodec<B extends Record<string, t.Mixed>>
  extends t.Type<TypeOfBranches<B>, OutputOfBranches<B>, unknown> {
  /** Branch codec for each `_tag` value. */
  readonly branches: B;
  /** What is accepted, in words. */
  readonly expected: string;
}

/**
 * A union of object codecs keyed by their `_tag` value. The `_tag` is read
 * first; only the selected branch validates the value, so its errors are the
 * only ones reported. An unknown tag reads
 * `model._tag: unknown model kind "foo" (expected crt, transformer, xl)`,
 * with `noun` = `"model kind"`. Each branch must itself check that `_tag` is
 * its key (e.g. with `t.literal`).
 *
 * @example
 * ```ts
 * import * as t from "io-ts";
 * import * as E from "fp-ts/lib/Either.js";
 * import { decodeWith } from "./decode.ts";
 * import { PositiveInt, strict, taggedUnion } from "./combinators.ts";
 *
 * const Shape = taggedUnion({
 *   square: strict({ _tag: t.literal("square"), side: PositiveInt }, "Square"),
 *   disc: strict({ _tag: t.literal("disc"), radius: PositiveInt }, "Disc"),
 * }, { name: "Shape", noun: "shape" });
 * const r = decodeWith(Shape, "shape", { _tag: "disc", radius: 0 });
 * if (E.isLeft(r)) console.log(r.left.message); // shape.radius: must be a positive integer, got 0
 * ```
 */
export function taggedUnion<B extends Record<string, t.Mixed>>(
  branches: B,
  options: {
    /** io-ts name of the codec. */
    readonly name: string;
    /** What the `_tag` selects, in words, for messages: `model kind`. */
    readonly noun: string;
  },
): TaggedUnionCodec<B> {
  type A = TypeOfBranches<B>;
  type O = OutputOfBranches<B>;
  const tags = Object.keys(branches);
  const list = tags.join(", ");
  const { name, noun } = options;
  const tagCodec = new t.Type<string, string, unknown>(
    `${name}._tag`,
    (u): u is string => typeof u === "string" && hasOwn(branches, u),
    (u, c) => {
      if (typeof u !== "string") {
        return t.failure(
          u,
          c,
          `expected ${article(noun)} ${noun} (one of ${list}), got ${describeValue(u)}`,
        );
      }
      return hasOwn(branches, u)
        ? t.success(u)
        : t.failure(u, c, `unknown ${noun} ${JSON.stringify(u)} (expected ${list})`);
    },
    t.identity,
  );
  const expected = `an object with _tag one of ${list}`;
  const branchOf = (u: unknown): t.Mixed | undefined => {
    if (!isRecord(u)) return undefined;
    const tag = u._tag;
    return typeof tag === "string" && hasOwn(branches, tag) ? branches[tag] : undefined;
  };
  const codec = new t.Type<A, O, unknown>(
    name,
    (u): u is A => branchOf(u)?.is(u) ?? false,
    (u, c) => {
      if (!isRecord(u)) return t.failure(u, c, `expected ${expected}, got ${describeValue(u)}`);
      if (!hasOwn(u, "_tag")) {
        return t.failure(
          undefined,
          t.appendContext(c, "_tag", tagCodec, undefined),
          `missing field (expected ${article(noun)} ${noun}: one of ${list})`,
        );
      }
      const tagged = tagCodec.validate(u._tag, t.appendContext(c, "_tag", tagCodec, u._tag));
      if (E.isLeft(tagged)) return tagged;
      return branches[tagged.right].validate(u, c);
    },
    (a) => {
      const branch = branchOf(a);
      if (branch === undefined) throw new TypeError(`${name}: cannot encode an untagged value`);
      return branch.encode(a);
    },
  );
  return Object.assign(codec, { branches, expected });
}
