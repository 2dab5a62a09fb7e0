/**
 * Pieces the corpus readers (`ptb.ts`, `wt103.ts`)
 * share: finding the data directory and the errors for a file that is
 * missing or cannot be read. Internal to `experiments/data`; not re-exported.
 *
 * @module
 */
import { describeError } from "../../spec/errors.ts";
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import type { DataDir, DataError } from "./ptb.ts";

/**
 * The places a data directory can come from, as raw values: the `--data`
 * flag, the data-directory environment variable, `XDG_CACHE_HOME` and
 * `HOME`. Empty strings count as unset.
 *
 * @example
 * ```ts
 * import type { DirSources } from "./_shared.ts";
 * const s: DirSources = { flag: "/data/ptb", home: "/home/me" };
 * ```
 */
export interface DirSources {
  readonly flag?: string;
  readonly env?: string;
  readonly xdgCacheHome?: string;
  readonly home?: string;
}

/**
 * What a corpus says when no directory can be found: its cache folder's
 * name (below `crt/`), the environment variable's name and the hint on
 * where to put the files.
 *
 * @example
 * ```ts
 * import type { DirNames } from "./_shared.ts";
 * const w: DirNames = { folder: "ptb", envName: "CRT_DATA_DIR", hint: "put the files in DIR" };
 * ```
 */
export interface DirNames {
  readonly folder: string;
  readonly envName: string;
  readonly hint: string;
}

/**
 * The data directory: the flag, else the environment variable, else
 * `$XDG_CACHE_HOME/crt/<folder>`, else `$HOME/.cache/crt/<folder>`; a
 * `NoDataDir` error when none is set. Pure.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveCacheDir } from "./_shared.ts";
 * const names = { folder: "ptb", envName: "CRT_DATA_DIR", hint: "put the files in DIR" };
 * const d = resolveCacheDir({ home: "/home/me" }, names);
 * assert(d._tag === "Right" && d.right.dir === "/home/me/.cache/crt/ptb");
 * assert(resolveCacheDir({}, names)._tag === "Left");
 * ```
 */
export function resolveCacheDir(
  sources: DirSources,
  names: DirNames,
): E.Either<DataError, DataDir> {
  if (sources.flag) return E.right({ dir: sources.flag, source: "flag" });
  if (sources.env) return E.right({ dir: sources.env, source: "env" });
  if (sources.xdgCacheHome) {
    return E.right({ dir: join(sources.xdgCacheHome, "crt", names.folder), source: "cache" });
  }
  if (sources.home) {
    return E.right({ dir: join(sources.home, ".cache", "crt", names.folder), source: "cache" });
  }
  return E.left({
    _tag: "NoDataDir",
    message: `no data directory: neither --data, ${names.envName}, XDG_CACHE_HOME nor HOME ` +
      `is set; ${names.hint}`,
  });
}

/**
 * {@linkcode DirSources} with the environment read from `Deno.env` (needs
 * `--allow-env`): the variable `envName`, `XDG_CACHE_HOME` and `HOME`.
 *
 * @example
 * ```ts
 * import { dirSourcesFromEnvironment } from "./_shared.ts";
 * const s = dirSourcesFromEnvironment("CRT_DATA_DIR", "/tmp/ptb");
 * console.log(s.flag); // /tmp/ptb
 * ```
 */
export function dirSourcesFromEnvironment(envName: string, flag?: string): DirSources {
  return {
    flag,
    env: Deno.env.get(envName),
    xdgCacheHome: Deno.env.get("XDG_CACHE_HOME"),
    home: Deno.env.get("HOME"),
  };
}

/**
 * The `MissingFile` error for `file`, ending with where the files belong.
 *
 * @example
 * ```ts
 * import { missingFile } from "./_shared.ts";
 * console.log(missingFile("d/ptb.train.txt", "pass --data DIR").message);
 * // d/ptb.train.txt: file not found; pass --data DIR
 * ```
 */
export function missingFile(file: string, hint: string): DataError {
  return { _tag: "MissingFile", file, message: `${file}: file not found; ${hint}` };
}

/**
 * The `UnreadableFile` error for `file` that failed with `e`.
 *
 * @example
 * ```ts
 * import { unreadableFile } from "./_shared.ts";
 * console.log(unreadableFile("d/ptb.train.txt", new Error("denied")).message);
 * // d/ptb.train.txt: cannot read: denied
 * ```
 */
export function unreadableFile(file: string, e: unknown): DataError {
  const reason = describeError(e);
  return { _tag: "UnreadableFile", file, reason, message: `${file}: cannot read: ${reason}` };
}

/**
 * The error for opening or reading `file` that threw `e`: `MissingFile`
 * (with the hint) when it does not exist, else `UnreadableFile`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openError } from "./_shared.ts";
 * assert.equal(openError("f", new Deno.errors.NotFound("gone"), "hint")._tag, "MissingFile");
 * assert.equal(openError("f", new Error("denied"), "hint")._tag, "UnreadableFile");
 * ```
 */
export function openError(file: string, e: unknown, hint: string): DataError {
  return e instanceof Deno.errors.NotFound ? missingFile(file, hint) : unreadableFile(file, e);
}

/**
 * Whether a file or folder exists (other stat errors propagate).
 *
 * @example
 * ```ts
 * import { exists } from "./_shared.ts";
 * console.log(await exists("/")); // true
 * ```
 */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
