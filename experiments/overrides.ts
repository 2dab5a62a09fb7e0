/**
 * The override machinery that turns a base experiment plus
 * `--config FILE.json` plus `--set path=value` into the value that the
 * experiment codec then decodes:
 *
 *     base ─ mergePatch(config file) ─ applySets(--set …) ─ codec.decode
 *
 * Overrides can only change what the base already has: an unknown key is an
 * error naming the path and the nearest valid keys, never a silently ignored
 * setting. Values come out as `unknown`: type checking is the codec's job.
 * The command line itself is parsed in `args.ts`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { applySets } from "./overrides.ts";
 * const r = applySets({ training: { lr: 1e-3, steps: 100 } }, [{ path: "training.lr", raw: "3e-4" }]);
 * assert(r._tag === "Right");
 * ```
 *
 * @module
 */
import { describeError } from "../spec/errors.ts";
import * as E from "fp-ts/lib/Either.js";

/**
 * One `--set path=value`; `raw` is parsed by {@linkcode parseSetValue}.
 *
 * @example
 * ```ts
 * import type { SetOverride } from "./overrides.ts";
 * const s: SetOverride = { path: "training.lr", raw: "3e-4" };
 * ```
 */
export interface SetOverride {
  /** Dotted path into the experiment, e.g. `training.lr` or `blocks[0].dFF`. */
  readonly path: string;
  /** The text after the first `=`. */
  readonly raw: string;
}

/**
 * A patch of `A`: every field optional, recursively; arrays are replaced whole.
 *
 * @example
 * ```ts
 * import type { DeepPartial } from "./overrides.ts";
 * type Config = { model: { dModel: number; nLayers: number } };
 * const quick: DeepPartial<Config> = { model: { nLayers: 1 } };
 * ```
 */
export type DeepPartial<A> = A extends readonly unknown[] ? A
  : A extends object ? { readonly [K in keyof A]?: DeepPartial<A[K]> }
  : A;

/**
 * Why an override could not be applied.
 *
 * @example
 * ```ts
 * import { setPath } from "./overrides.ts";
 * const r = setPath({ training: { lr: 1 } }, "training.lrr", "2");
 * if (r._tag === "Left" && r.left._tag === "UnknownPath") console.error(r.left.message, r.left.nearest);
 * ```
 */
export type OverrideError =
  | {
    /** The path does not exist in the base. */
    readonly _tag: "UnknownPath";
    readonly path: string;
    /** The part of the path that exists (`""` for the root). */
    readonly parent: string;
    /** The valid keys (or indices) at `parent`. */
    readonly known: readonly string[];
    /** The nearest of `known`, best first. */
    readonly nearest: readonly string[];
    readonly message: string;
  }
  | { readonly _tag: "BadPath"; readonly path: string; readonly message: string };

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (typeof x !== "object" || x === null) return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

/** Plain objects merge unless the patch names a different `_tag`: switching a union variant replaces it. */
function mergesInto(base: unknown, patch: unknown): base is Record<string, unknown> {
  return isPlainObject(base) && isPlainObject(patch) &&
    (patch._tag === undefined || patch._tag === base._tag);
}

function deepMerge(base: unknown, patch: unknown): unknown {
  if (!mergesInto(base, patch)) return patch;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v !== undefined) out[k] = deepMerge(base[k], v);
  }
  return out;
}

/**
 * `base` with `patch` deep-merged in: plain objects merge field by field,
 * everything else (arrays, numbers, strings, typed arrays) is replaced;
 * `undefined` fields leave the base value. A patch object with a different
 * `_tag` replaces the base object (a union switches variant). Returns a new
 * value; `base` is not modified.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { override } from "./overrides.ts";
 * const base = { model: { dModel: 256, nLayers: 3 }, training: { lr: 1e-3, schedule: [1, 2] } };
 * const quick = override(base, { model: { nLayers: 1 }, training: { schedule: [5] } });
 * assert(quick.model.dModel === 256 && quick.model.nLayers === 1);
 * assert(quick.training.schedule.length === 1 && base.model.nLayers === 3);
 * ```
 */
export function override<A>(base: A, patch: DeepPartial<A>): A {
  return deepMerge(base, patch) as A;
}

/** Levenshtein distance, for "did you mean" suggestions. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

function nearestKeys(key: string, known: readonly string[]): string[] {
  const lower = key.toLowerCase();
  return known
    .map((k) => ({ k, d: editDistance(lower, k.toLowerCase()) }))
    .filter(({ k, d }) =>
      d <= Math.max(2, Math.floor(key.length / 3)) || k.toLowerCase().includes(lower)
    )
    .sort((a, b) => a.d - b.d)
    .slice(0, 3)
    .map(({ k }) => k);
}

type Segment = string | number;

function showPath(segs: readonly Segment[]): string {
  return segs.map((s, i) => (typeof s === "number" ? `[${s}]` : i === 0 ? s : `.${s}`)).join("");
}

/** Parses `a.b[1].c` (or `a.b.1.c`) into segments. */
function parsePath(path: string): E.Either<OverrideError, Segment[]> {
  const segs: Segment[] = [];
  const re = /([^.[\]]+)|\[(\d+)\]/y;
  let i = 0;
  while (i < path.length) {
    if (segs.length > 0 && path[i] === ".") i++;
    re.lastIndex = i;
    const m = re.exec(path);
    if (m === null) break;
    segs.push(m[2] !== undefined ? Number(m[2]) : m[1]);
    i = re.lastIndex;
  }
  if (i !== path.length || segs.length === 0) {
    return E.left({
      _tag: "BadPath",
      path,
      message: `bad path ${
        JSON.stringify(path)
      }: expected dotted keys, e.g. training.lr or blocks[0].dFF`,
    });
  }
  return E.right(segs);
}

function unknownPath(
  path: string,
  parent: readonly Segment[],
  key: string,
  node: unknown,
): OverrideError {
  const where = parent.length === 0 ? "the experiment" : showPath(parent);
  let known: string[] = [];
  let detail: string;
  if (Array.isArray(node)) {
    known = node.map((_, j) => String(j));
    detail = `${where} is a list of ${node.length}; index ${key} is out of range`;
  } else if (isPlainObject(node)) {
    known = Object.keys(node);
    detail = `${where} has no key ${JSON.stringify(key)}`;
  } else {
    detail = `${where} is ${node === null ? "null" : `a ${typeof node}`}, it has no fields`;
  }
  const nearest = isPlainObject(node) ? nearestKeys(key, known) : [];
  const hint = nearest.length > 0
    ? `; did you mean ${nearest.map((k) => JSON.stringify(k)).join(" or ")}?`
    : "";
  const list = known.length > 0 && !Array.isArray(node) ? ` (valid keys: ${known.join(", ")})` : "";
  return {
    _tag: "UnknownPath",
    path,
    parent: showPath(parent),
    known,
    nearest,
    message: `unknown path ${JSON.stringify(path)}: ${detail}${hint}${list}`,
  };
}

/**
 * The value of a `--set` right-hand side: JSON when it parses (numbers,
 * booleans, null, quoted strings, arrays, objects), else the string itself.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSetValue } from "./overrides.ts";
 * assert(parseSetValue("3e-4") === 3e-4);
 * assert(parseSetValue("true") === true);
 * assert(parseSetValue("gru") === "gru");
 * assert(parseSetValue('"12"') === "12");
 * ```
 */
export function parseSetValue(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

function setAt(
  node: unknown,
  segs: readonly Segment[],
  depth: number,
  value: unknown,
  path: string,
): E.Either<OverrideError, unknown> {
  const seg = segs[depth];
  const parent = segs.slice(0, depth);
  let child: E.Either<OverrideError, unknown>;
  if (Array.isArray(node)) {
    const idx = typeof seg === "number" ? seg : /^\d+$/.test(seg) ? Number(seg) : -1;
    if (idx < 0 || idx >= node.length) return E.left(unknownPath(path, parent, String(seg), node));
    child = depth + 1 === segs.length
      ? E.right(value)
      : setAt(node[idx], segs, depth + 1, value, path);
    if (E.isLeft(child)) return child;
    const copy = [...node];
    copy[idx] = child.right;
    return E.right(copy);
  }
  if (isPlainObject(node) && typeof seg === "string" && Object.hasOwn(node, seg)) {
    child = depth + 1 === segs.length
      ? E.right(value)
      : setAt(node[seg], segs, depth + 1, value, path);
    if (E.isLeft(child)) return child;
    return E.right({ ...node, [seg]: child.right });
  }
  return E.left(unknownPath(path, parent, String(seg), node));
}

/**
 * `obj` with the field at `path` replaced by the parsed `raw` value (see
 * {@linkcode parseSetValue}). The path must exist in `obj` (no new keys;
 * list indices in range); otherwise the error names the path and the
 * nearest valid keys. Returns a new value; `obj` is not modified.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { setPath } from "./overrides.ts";
 * const base = { training: { lr: 1e-3 }, blocks: [{ dFF: 512 }] };
 * const r = setPath(base, "blocks[0].dFF", "1024");
 * assert(r._tag === "Right");
 * const e = setPath(base, "training.lrr", "1");
 * assert(e._tag === "Left" && e.left.message.includes('did you mean "lr"'));
 * ```
 */
export function setPath(obj: unknown, path: string, raw: string): E.Either<OverrideError, unknown> {
  const segs = parsePath(path);
  if (E.isLeft(segs)) return segs;
  return setAt(obj, segs.right, 0, parseSetValue(raw), path);
}

/**
 * Applies `--set` overrides in order (later ones win).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { applySets } from "./overrides.ts";
 * const r = applySets({ a: { b: 1, c: "x" } }, [{ path: "a.b", raw: "2" }, { path: "a.c", raw: "y" }]);
 * assert(r._tag === "Right" && JSON.stringify(r.right) === '{"a":{"b":2,"c":"y"}}');
 * ```
 */
export function applySets(
  base: unknown,
  sets: readonly SetOverride[],
): E.Either<OverrideError, unknown> {
  let acc: unknown = base;
  for (const s of sets) {
    const r = setPath(acc, s.path, s.raw);
    if (E.isLeft(r)) return r;
    acc = r.right;
  }
  return E.right(acc);
}

function checkPatch(base: unknown, patch: unknown, segs: Segment[]): OverrideError | null {
  if (!mergesInto(base, patch)) return null; // replaces whatever is there
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (!Object.hasOwn(base, k)) return unknownPath(showPath([...segs, k]), segs, k, base);
    const e = checkPatch(base[k], v, [...segs, k]);
    if (e !== null) return e;
  }
  return null;
}

/**
 * {@linkcode override} for an untyped patch (a `--config` file): the same
 * merge, but every key of the patch must exist in the base, checked before
 * anything is merged.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mergePatch } from "./overrides.ts";
 * const ok = mergePatch({ model: { dModel: 256 } }, { model: { dModel: 512 } });
 * assert(ok._tag === "Right");
 * const bad = mergePatch({ model: { dModel: 256 } }, { model: { dmodel: 512 } });
 * assert(bad._tag === "Left" && bad.left.path === "model.dmodel");
 * ```
 */
export function mergePatch(base: unknown, patch: unknown): E.Either<OverrideError, unknown> {
  const e = checkPatch(base, patch, []);
  return e === null ? E.right(deepMerge(base, patch)) : E.left(e);
}

/**
 * Why a `--config` file could not be read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readConfigFile } from "./overrides.ts";
 * const r = await readConfigFile("/nonexistent.json");
 * assert(r._tag === "Left" && r.left._tag === "ConfigUnreadable");
 * ```
 */
export type ConfigFileError =
  | { readonly _tag: "ConfigUnreadable"; readonly file: string; readonly message: string }
  | { readonly _tag: "ConfigNotJson"; readonly file: string; readonly message: string };

/**
 * Reads a `--config` JSON file as an untyped patch.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readConfigFile } from "./overrides.ts";
 * const file = await Deno.makeTempFile({ suffix: ".json" });
 * await Deno.writeTextFile(file, '{ "training": { "lr": 0.0003 } }');
 * const r = await readConfigFile(file);
 * assert(r._tag === "Right");
 * await Deno.remove(file);
 * ```
 */
export async function readConfigFile(file: string): Promise<E.Either<ConfigFileError, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    const reason = describeError(e);
    return E.left({ _tag: "ConfigUnreadable", file, message: `${file}: cannot read: ${reason}` });
  }
  try {
    return E.right(JSON.parse(text));
  } catch (e) {
    const reason = describeError(e);
    return E.left({ _tag: "ConfigNotJson", file, message: `${file}: not JSON: ${reason}` });
  }
}
