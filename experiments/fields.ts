/**
 * Small codecs for the fields every experiment codec has: a nullable value,
 * an experiment name, a fraction in [0, 1], and the model spec as a field
 * (decoded by the model codec, its errors under the field's path).
 *
 * @example
 * ```ts
 * import { Name } from "./fields.ts";
 * console.log(Name.is("ptb-crt")); // true
 * ```
 *
 * @module
 */
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import { type NumberCodec, numberWhere } from "../spec/combinators.ts";
import { decodeModelSpec, type ModelSpec } from "../spec/codecs.ts";

/**
 * A codec for `A | null`, reporting `expected <A> or null`; see {@linkcode nullable}.
 *
 * @example
 * ```ts
 * import * as t from "io-ts";
 * import { nullable, type NullableCodec } from "./fields.ts";
 *
 * const dir: NullableCodec<string> = nullable(t.string);
 * console.log(dir.expected); // a string or null
 * ```
 */
export interface NullableCodec<A> extends t.Type<A | null, A | null, unknown> {
  /** What is accepted, in words. */
  readonly expected: string;
}

/**
 * `codec` or `null`. A failing non-null value reports the inner codec's
 * message (`must be a positive number, got -1`), so the reason is not lost.
 *
 * @example
 * ```ts
 * import { nullable } from "./fields.ts";
 * import { PositiveNumber } from "../spec/combinators.ts";
 *
 * const MaxSeconds = nullable(PositiveNumber);
 * console.log(MaxSeconds.is(null), MaxSeconds.is(60), MaxSeconds.is(-1)); // true true false
 * ```
 */
export function nullable<A>(
  codec: t.Type<A, A, unknown> & { readonly expected?: string },
): NullableCodec<A> {
  const inner = codec.expected ?? `a ${codec.name}`;
  const expected = `${inner} or null`;
  const out = new t.Type<A | null, A | null, unknown>(
    `${codec.name} | null`,
    (u): u is A | null => u === null || codec.is(u),
    (u, c) => (u === null ? t.success(null) : codec.validate(u, c)),
    t.identity,
  );
  return Object.assign(out, { expected });
}

/**
 * A name usable as a folder name: letters, digits, `.`, `_` and `-`,
 * starting with a letter or digit.
 *
 * @example
 * ```ts
 * import { Name } from "./fields.ts";
 *
 * console.log(Name.is("ptb-quick"), Name.is("../x")); // true false
 * ```
 */
export const Name: t.Type<string, string, unknown> & { readonly expected: string } = (() => {
  const re = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
  const expected = "a name of letters, digits, '.', '_' and '-'";
  const codec = new t.Type<string, string, unknown>(
    "Name",
    (u): u is string => typeof u === "string" && re.test(u),
    (u, c) =>
      typeof u === "string" && re.test(u)
        ? t.success(u)
        : t.failure(u, c, `expected ${expected}, got ${JSON.stringify(u)}`),
    t.identity,
  );
  return Object.assign(codec, { expected });
})();

/**
 * A number in [0, 1].
 *
 * @example
 * ```ts
 * import { UnitInterval } from "./fields.ts";
 *
 * console.log(UnitInterval.is(0), UnitInterval.is(1), UnitInterval.is(1.5)); // true true false
 * ```
 */
export const UnitInterval: NumberCodec = numberWhere({
  name: "UnitInterval",
  expected: "a number in [0, 1]",
  accepts: (n) => n >= 0 && n <= 1,
});

/** Splits a path such as `.memory.cell` or `.blocks[1].dFF` into its keys. */
function pathKeys(path: string): string[] {
  return [...path.matchAll(/\.([^.[\]]+)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]/g)].map((m) =>
    m[1] ?? m[2] ?? JSON.parse(`"${m[3]}"`)
  );
}

/**
 * The model field of an experiment: decodes with {@linkcode decodeModelSpec},
 * so the model's cross-field rules (`nHeads` divides `dModel`, ...) run as
 * part of the experiment's decoding, and every issue keeps its path inside
 * the model (`model.memory.cell`).
 *
 * @example
 * ```ts
 * import { ModelSpecField } from "./fields.ts";
 * import { referenceCrt } from "../spec/reference_specs.ts";
 *
 * console.log(ModelSpecField.is(referenceCrt), ModelSpecField.is({ ...referenceCrt, nHeads: 3 })); // true false
 * ```
 */
export const ModelSpecField: t.Type<ModelSpec, ModelSpec, unknown> & { readonly expected: string } =
  Object.assign(
    new t.Type<ModelSpec, ModelSpec, unknown>(
      "ModelSpec",
      (u): u is ModelSpec => E.isRight(decodeModelSpec(u)),
      (u, c) => {
        // Rooted at "model" so that messages naming other fields read as paths of the experiment.
        const r = decodeModelSpec(u, "model");
        if (E.isRight(r)) return t.success(r.right);
        return t.failures(r.left.issues.map((issue) => {
          let context = c;
          for (const key of pathKeys(issue.path.replace(/^model/, ""))) {
            context = t.appendContext(context, key, t.unknown, undefined);
          }
          return { value: undefined, context, message: issue.message };
        }));
      },
      t.identity,
    ),
    { expected: "a model spec (an object with _tag crt, transformer or xl)" },
  );
