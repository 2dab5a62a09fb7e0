/**
 * WikiText-103 (Merity et al. 2016), word level: locating the data, reading
 * the split files as streams, the frequency-sorted vocabulary and its cache.
 * Fetching the public release into the cache folder is `wt103_download.ts`.
 *
 * The standard release (`wikitext-103-v1.zip`, the "tokens" version) holds
 * `wiki.train.tokens`, `wiki.valid.tokens` and `wiki.test.tokens`: already
 * tokenised text, one paragraph or heading (` = Title = `) per line, blank
 * lines between them, rare words replaced by `<unk>`.
 *
 * Decisions the rest of the project relies on:
 * - **Tokens**: a line is split on whitespace and `<eos>` appended, so a
 *   blank line is a lone `<eos>` (as Transformer-XL reads the files: about
 *   103 M training tokens and 267 k words on the standard release).
 * - **Vocabulary**: built from the training file only. `<eos>` is id 0; the
 *   other words follow by decreasing count, ties in order of first
 *   appearance — the order an adaptive softmax needs (its head holds the
 *   lowest ids). Valid and test words must all be in it (an unknown one is
 *   an error naming file and line: the wrong files).
 * - **Streaming**: files are read in chunks (`CHUNK_BYTES`, `wt103_stream.ts`), lines
 *   are tokenised as they arrive and ids go into an `Int32Array` that grows;
 *   the text is never held whole (the training file is ~540 MB, its ids
 *   ~410 MB). Each file's SHA-256 is computed in the same pass.
 * - **Vocabulary cache**: `wiki.vocab.json` next to the data, with the
 *   words, their counts and the training file's size, mtime and SHA-256. It
 *   is used when size and mtime match and confirmed by the hash at the end
 *   of the pass; otherwise it is rebuilt (one pass builds and tokenises).
 *
 * @example Read a generated corpus
 * ```ts
 * import assert from "node:assert/strict";
 * import { writeWt103Sample } from "./_wt103_fixture.ts";
 * import { readWt103 } from "./wt103.ts";
 *
 * const dir = await Deno.makeTempDir();
 * await writeWt103Sample(dir, { trainTokens: 20_000, vocabSize: 500, seed: 1 });
 * const r = await readWt103(dir);
 * if (r._tag === "Left") throw new Error(r.left.message);
 * assert.equal(r.right.vocab.words[0], "<eos>");
 * assert.ok(r.right.train.length > 20_000);
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { describeError } from "../../spec/errors.ts";
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import {
  type Corpus,
  DATA_DIR_ENV,
  type DataDir,
  type DataError,
  EOS,
  type Split,
  type Vocabulary,
} from "./ptb.ts";
import {
  dirSourcesFromEnvironment,
  missingFile,
  resolveCacheDir,
  unreadableFile,
} from "./_shared.ts";
import {
  buildAndTokenise,
  type Pass,
  type ReadProgress,
  tokeniseWith,
  WordTable,
} from "./wt103_stream.ts";

/**
 * File names of the splits inside a data directory (the release's names).
 *
 * @example
 * ```ts
 * import { WT103_FILES } from "./wt103.ts";
 * console.log(WT103_FILES.train); // wiki.train.tokens
 * ```
 */
export const WT103_FILES: Readonly<Record<Split, string>> = {
  train: "wiki.train.tokens",
  valid: "wiki.valid.tokens",
  test: "wiki.test.tokens",
};

/**
 * The vocabulary cache's file name, written next to the split files.
 *
 * @example
 * ```ts
 * import { WT103_VOCAB_FILE } from "./wt103.ts";
 * console.log(WT103_VOCAB_FILE); // wiki.vocab.json
 * ```
 */
export const WT103_VOCAB_FILE = "wiki.vocab.json";

/**
 * Where WikiText-103's files belong, the end of the messages for a missing
 * directory or file.
 *
 * @example
 * ```ts
 * import { WT103_PLACEMENT_HINT } from "./wt103.ts";
 * console.log(WT103_PLACEMENT_HINT.includes("--data DIR")); // true
 * ```
 */
export const WT103_PLACEMENT_HINT: string =
  `put ${WT103_FILES.train}, ${WT103_FILES.valid} and optionally ${WT103_FILES.test} ` +
  `(from wikitext-103-v1.zip) in a directory and pass it as --data DIR or set ${DATA_DIR_ENV}=DIR`;

/**
 * Where the WikiText-103 files are: `--data`, else `CRT_DATA_DIR`, else
 * `$XDG_CACHE_HOME/crt/wt103`, else `$HOME/.cache/crt/wt103` (the cache
 * folder, the only one ever downloaded into). Pure; empty strings count as
 * unset.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveWt103Dir } from "./wt103.ts";
 * const d = resolveWt103Dir({ home: "/home/me" });
 * assert(d._tag === "Right" && d.right.dir === "/home/me/.cache/crt/wt103");
 * ```
 */
export function resolveWt103Dir(
  opts: { flag?: string; env?: string; xdgCacheHome?: string; home?: string },
): E.Either<DataError, DataDir> {
  return resolveCacheDir(opts, {
    folder: "wt103",
    envName: DATA_DIR_ENV,
    hint: WT103_PLACEMENT_HINT,
  });
}

/**
 * {@linkcode resolveWt103Dir} with the environment read from `Deno.env`.
 *
 * @example
 * ```ts
 * import { wt103DirFromEnvironment } from "./wt103.ts";
 * const d = wt103DirFromEnvironment("/data/wt103");
 * console.log(d._tag === "Right" && d.right.source); // flag
 * ```
 */
export function wt103DirFromEnvironment(flag?: string): E.Either<DataError, DataDir> {
  return resolveWt103Dir(dirSourcesFromEnvironment(DATA_DIR_ENV, flag));
}

// ---------------------------------------------------------------------------
// Options and the vocabulary cache

/**
 * Options of {@linkcode readWt103}.
 *
 * @example
 * ```ts
 * import type { ReadOptions } from "./wt103.ts";
 * const opts: ReadOptions = { log: (m) => console.error(m), onProgress: () => {} };
 * ```
 */
export interface ReadOptions {
  /** Messages (cache used, rebuilt, not writable). */
  readonly log?: (message: string) => void;
  /** Called after every chunk. */
  readonly onProgress?: (p: ReadProgress) => void;
  /** Write `wiki.vocab.json` when the vocabulary was built. Default true. */
  readonly writeVocabCache?: boolean;
}

/**
 * The contents of `wiki.vocab.json`: the vocabulary with its counts, and
 * the training file it was built from.
 *
 * @example
 * ```ts
 * import type { VocabCache } from "./wt103.ts";
 * const top = (c: VocabCache, k: number) => c.words.slice(0, k).map((w, i) => `${w} ${c.counts[i]}`);
 * ```
 */
export interface VocabCache {
  /** Always `crt-wikitext-vocab`. */
  readonly format: "crt-wikitext-vocab";
  /** Layout version; another version is rebuilt. */
  readonly version: 1;
  /** The training file as it was when the vocabulary was built. */
  readonly train: {
    readonly file: string;
    readonly bytes: number;
    readonly mtimeMs: number | null;
    readonly sha256: string;
  };
  /** Tokens of the training split (with `<eos>`). */
  readonly tokens: number;
  /** Words by id: `<eos>` first, then by decreasing count. */
  readonly words: readonly string[];
  /** Occurrences in the training split, by id. */
  readonly counts: readonly number[];
}

/** Why a cache was not used, or the cache. */
type CacheLookup =
  | { readonly _tag: "Hit"; readonly cache: VocabCache }
  | { readonly _tag: "Miss"; readonly reason: string };

const isVocabCache = (u: unknown): u is VocabCache => {
  if (typeof u !== "object" || u === null) return false;
  const c = u as Record<string, unknown>;
  const t = c.train as Record<string, unknown> | undefined;
  return c.format === "crt-wikitext-vocab" && c.version === 1 && typeof t === "object" &&
    t !== null && typeof t.bytes === "number" && typeof t.sha256 === "string" &&
    (t.mtimeMs === null || typeof t.mtimeMs === "number") && typeof c.tokens === "number" &&
    Array.isArray(c.words) && Array.isArray(c.counts) && c.words.length === c.counts.length &&
    c.words[0] === EOS && c.words.every((w) => typeof w === "string") &&
    c.counts.every((n) => Number.isInteger(n) && n >= 0);
};

/**
 * Reads `wiki.vocab.json` in `dir` and checks it against the training
 * file's size and mtime. A miss says why (absent, unreadable, stale).
 */
async function lookUpCache(dir: string, train: Deno.FileInfo): Promise<CacheLookup> {
  const file = join(dir, WT103_VOCAB_FILE);
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(file));
  } catch (e) {
    return {
      _tag: "Miss",
      reason: e instanceof Deno.errors.NotFound
        ? "no cache yet"
        : `unreadable (${describeError(e)})`,
    };
  }
  if (!isVocabCache(json)) {
    return { _tag: "Miss", reason: "not a vocabulary cache of this version" };
  }
  const mtime = train.mtime?.getTime() ?? null;
  if (json.train.bytes !== train.size || json.train.mtimeMs !== mtime) {
    return { _tag: "Miss", reason: "the training file changed since it was built (size or mtime)" };
  }
  if (new Set(json.words).size !== json.words.length) {
    return { _tag: "Miss", reason: "it repeats a word" };
  }
  return { _tag: "Hit", cache: json };
}

/** Writes the cache atomically (temporary name, then rename). */
async function writeCache(dir: string, cache: VocabCache): Promise<void> {
  const file = join(dir, WT103_VOCAB_FILE);
  const tmp = `${file}.${crypto.randomUUID()}.tmp`;
  // One word per line keeps the file greppable.
  const body = `{"format":"crt-wikitext-vocab","version":1,` +
    `"train":${JSON.stringify(cache.train)},"tokens":${cache.tokens},\n"words":[\n` +
    cache.words.map((w) => JSON.stringify(w)).join(",\n") + `\n],\n"counts":[` +
    cache.counts.join(",") + `]}\n`;
  try {
    await Deno.writeTextFile(tmp, body);
    await Deno.rename(tmp, file);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

// ---------------------------------------------------------------------------
// Reading

/**
 * A read WikiText-103 corpus: the PTB reader's {@linkcode Corpus} plus the
 * word counts of the training split and whether the vocabulary came from
 * the cache.
 *
 * @example
 * ```ts
 * import type { Wt103Corpus } from "./wt103.ts";
 * const headShare = (c: Wt103Corpus, k: number) =>
 *   c.counts.slice(0, k).reduce((s, n) => s + n, 0) / c.train.length;
 * ```
 */
export interface Wt103Corpus extends Corpus {
  /** Occurrences of each word (by id) in the training split. */
  readonly counts: Int32Array;
  /** `true` when the vocabulary was read from `wiki.vocab.json`. */
  readonly vocabFromCache: boolean;
}

/**
 * Reads `wiki.train.tokens`, `wiki.valid.tokens` and, when present,
 * `wiki.test.tokens` from `dir` as streams (see the module notes), using or
 * (re)building the vocabulary cache. Never downloads (see `loadWt103` in
 * `wt103_download.ts`). A cache that cannot be written is reported
 * through `log` and the read goes on.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readWt103 } from "./wt103.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/wiki.train.tokens`, " \n = A = \n \n b b a <unk> \n");
 * await Deno.writeTextFile(`${dir}/wiki.valid.tokens`, " a b \n");
 * const r = await readWt103(dir);
 * if (r._tag === "Left") throw new Error(r.left.message);
 * // <eos> first, then by count (ties in order of first appearance).
 * assert.deepEqual(r.right.vocab.words, ["<eos>", "=", "b", "A", "a", "<unk>"]);
 * assert.deepEqual([...r.right.valid], [4, 2, 0]);
 * assert.equal(r.right.test, null);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readWt103(
  dir: string,
  opts: ReadOptions = {},
): Promise<E.Either<DataError, Wt103Corpus>> {
  const log = opts.log ?? (() => {});
  const path = (split: Split) => join(dir, WT103_FILES[split]);
  const statOf = async (split: Split): Promise<E.Either<DataError, Deno.FileInfo | null>> => {
    const file = path(split);
    try {
      return E.right(await Deno.stat(file));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return E.right(null);
      return E.left(unreadableFile(file, e));
    }
  };
  const stats: Partial<Record<Split, Deno.FileInfo | null>> = {};
  for (const split of ["train", "valid", "test"] as const) {
    const s = await statOf(split);
    if (E.isLeft(s)) return s;
    if (s.right === null && split !== "test") {
      return E.left(missingFile(path(split), WT103_PLACEMENT_HINT));
    }
    stats[split] = s.right;
  }
  const trainFile = path("train");
  const trainStat = stats.train!;

  // The vocabulary: from the cache when it matches, confirmed by the hash of this pass.
  const cacheFile = join(dir, WT103_VOCAB_FILE);
  let train: (Pass & { vocabWords: readonly string[]; counts: Int32Array }) | null = null;
  let table: WordTable | null = null;
  const lookup = await lookUpCache(dir, trainStat);
  if (lookup._tag === "Hit") {
    table = WordTable.of(lookup.cache.words);
    const t = await tokeniseWith(
      trainFile,
      table,
      trainFile,
      WT103_PLACEMENT_HINT,
      opts.onProgress,
    );
    if (E.isRight(t) && t.right.sha256 === lookup.cache.train.sha256) {
      train = {
        ...t.right,
        vocabWords: lookup.cache.words,
        counts: Int32Array.from(lookup.cache.counts),
      };
      log(`${cacheFile}: vocabulary of ${lookup.cache.words.length} words from the cache`);
    } else if (E.isLeft(t) && t.left._tag !== "UnknownWord") {
      return t;
    } else {
      log(`${cacheFile}: stale (the training file's content changed); rebuilding`);
    }
  } else {
    log(`${cacheFile}: ${lookup.reason}; building the vocabulary`);
  }
  const fromCache = train !== null;
  if (train === null) {
    const built = await buildAndTokenise(trainFile, WT103_PLACEMENT_HINT, opts.onProgress);
    if (E.isLeft(built)) return built;
    train = { ...built.right, vocabWords: built.right.sorted };
    table = WordTable.of(train.vocabWords);
    if (opts.writeVocabCache ?? true) {
      try {
        await writeCache(dir, {
          format: "crt-wikitext-vocab",
          version: 1,
          train: {
            file: WT103_FILES.train,
            bytes: trainStat.size,
            mtimeMs: trainStat.mtime?.getTime() ?? null,
            sha256: train.sha256,
          },
          tokens: train.tokens.length,
          words: train.vocabWords,
          counts: Array.from(train.counts),
        });
        log(`${cacheFile}: vocabulary of ${train.vocabWords.length} words cached`);
      } catch (e) {
        log(
          `${cacheFile}: cannot write the vocabulary cache (${describeError(e)}); ` +
            `it is rebuilt on every run`,
        );
      }
    }
  }
  const index = new Map<string, number>();
  train.vocabWords.forEach((w, i) => index.set(w, i));
  const vocab: Vocabulary = { words: train.vocabWords, index };
  const valid = await tokeniseWith(
    path("valid"),
    table!,
    trainFile,
    WT103_PLACEMENT_HINT,
    opts.onProgress,
  );
  if (E.isLeft(valid)) return valid;
  let test: Pass | null = null;
  if (stats.test !== null) {
    const t = await tokeniseWith(
      path("test"),
      table!,
      trainFile,
      WT103_PLACEMENT_HINT,
      opts.onProgress,
    );
    if (E.isLeft(t)) return t;
    test = t.right;
  }
  return E.right({
    dir,
    vocab,
    train: train.tokens,
    valid: valid.right.tokens,
    test: test?.tokens ?? null,
    sha256: { train: train.sha256, valid: valid.right.sha256, test: test?.sha256 ?? null },
    counts: train.counts,
    vocabFromCache: fromCache,
  });
}
