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
 * - **Streaming**: files are read in chunks of {@linkcode CHUNK_BYTES}, lines
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
import { createHash } from "node:crypto";
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
  openError,
  resolveCacheDir,
  unreadableFile,
} from "./_shared.ts";

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
 * Bytes read per chunk when streaming a split file.
 *
 * @example
 * ```ts
 * import { CHUNK_BYTES } from "./wt103.ts";
 * console.log(CHUNK_BYTES / 2 ** 20, "MiB"); // 4 MiB
 * ```
 */
export const CHUNK_BYTES: number = 4 * 2 ** 20;

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
// Streaming

/**
 * Progress of a long read: bytes of `file` done and in all, and tokens
 * produced since the previous report.
 *
 * @example
 * ```ts
 * import type { ReadProgress } from "./wt103.ts";
 * const show = (p: ReadProgress) => console.error(`${p.file}: ${(100 * p.bytes / p.totalBytes).toFixed(0)} %`);
 * ```
 */
export interface ReadProgress {
  /** The file being read. */
  readonly file: string;
  /** What the pass does: `vocabulary and tokens`, `tokens`. */
  readonly phase: string;
  /** Bytes read so far. */
  readonly bytes: number;
  /** The file's size. */
  readonly totalBytes: number;
  /** Tokens produced since the previous report. */
  readonly tokens: number;
}

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

/** Ids that grow as they are pushed; `view()` is the filled part. */
class IdBuffer {
  private data: Int32Array;
  length = 0;
  constructor(capacity: number) {
    this.data = new Int32Array(Math.max(1024, capacity));
  }
  push(id: number): void {
    if (this.length === this.data.length) {
      const bigger = new Int32Array(Math.ceil(this.data.length * 1.5));
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = id;
  }
  /** The ids; a copy when more than 5 % of the buffer would be wasted. */
  finish(): Int32Array {
    const filled = this.data.subarray(0, this.length);
    return this.data.length - this.length > 0.05 * this.data.length ? filled.slice() : filled;
  }
}

/**
 * Words ↔ ids, keyed by their UTF-8 bytes: an open-addressing hash table over
 * a byte arena, so that tokenising never makes a string for a word it has
 * seen (a `Map<string, number>` lookup of a freshly cut string cost ~0.5 µs
 * here, which is a minute on WikiText-103's 103 M tokens).
 */
class WordTable {
  readonly words: string[] = [];
  private slots = new Int32Array(1 << 16); // id + 1; 0 is empty
  private hashes = new Int32Array(1 << 12);
  private starts = new Int32Array(1 << 12);
  private lengths = new Int32Array(1 << 12);
  private arena = new Uint8Array(1 << 16);
  private used = 0;
  private readonly encoder = new TextEncoder();

  /** The id of the word `buf[start, end)` with FNV-1a hash `h`, or −1. */
  find(buf: Uint8Array, start: number, end: number, h: number): number {
    const mask = this.slots.length - 1, len = end - start;
    for (let s = h & mask;; s = (s + 1) & mask) {
      const v = this.slots[s];
      if (v === 0) return -1;
      const id = v - 1;
      if (this.hashes[id] !== h || this.lengths[id] !== len) continue;
      const at = this.starts[id];
      let k = 0;
      while (k < len && this.arena[at + k] === buf[start + k]) k++;
      if (k === len) return id;
    }
  }

  /** Adds `word` (whose UTF-8 bytes are `bytes`, hash `h`); returns its id. */
  add(word: string, bytes: Uint8Array, h: number): number {
    const id = this.words.length;
    if (id === this.hashes.length) {
      const grow = (a: Int32Array) => {
        const b = new Int32Array(a.length * 2);
        b.set(a);
        return b;
      };
      this.hashes = grow(this.hashes);
      this.starts = grow(this.starts);
      this.lengths = grow(this.lengths);
    }
    if (this.used + bytes.length > this.arena.length) {
      const b = new Uint8Array(Math.max(this.arena.length * 2, this.used + bytes.length));
      b.set(this.arena);
      this.arena = b;
    }
    this.arena.set(bytes, this.used);
    this.words.push(word);
    this.hashes[id] = h;
    this.starts[id] = this.used;
    this.lengths[id] = bytes.length;
    this.used += bytes.length;
    if (2 * this.words.length > this.slots.length) this.rehash();
    else this.place(id);
    return id;
  }

  /** Adds a word given as a string. */
  addWord(word: string): number {
    const bytes = this.encoder.encode(word);
    return this.add(word, bytes, fnv(bytes, 0, bytes.length));
  }

  private place(id: number): void {
    const mask = this.slots.length - 1;
    let s = this.hashes[id] & mask;
    while (this.slots[s] !== 0) s = (s + 1) & mask;
    this.slots[s] = id + 1;
  }

  private rehash(): void {
    this.slots = new Int32Array(this.slots.length * 2);
    for (let id = 0; id < this.words.length; id++) this.place(id);
  }

  /** A table of `words`, id = position. */
  static of(words: readonly string[]): WordTable {
    const t = new WordTable();
    for (const w of words) t.addWord(w);
    return t;
  }
}

const FNV_OFFSET = 0x811c9dc5 | 0;

/** FNV-1a over `buf[start, end)`, as int32. */
const fnv = (buf: Uint8Array, start: number, end: number): number => {
  let h = FNV_OFFSET;
  for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i], 16777619);
  return h;
};

/**
 * Bytes of the non-ASCII whitespace character at `buf[i]` (UTF-8), or 0.
 * Whitespace is what Python's `str.split()` splits on (as Transformer-XL's
 * reader does): U+0085, U+00A0, U+1680, U+2000–U+200A, U+2028, U+2029,
 * U+202F, U+205F, U+3000, besides ASCII space, tab, CR, VT and FF.
 */
const unicodeSpace = (buf: Uint8Array, i: number, end: number): number => {
  const c = buf[i];
  if (c === 0xc2 && i + 1 < end) return buf[i + 1] === 0x85 || buf[i + 1] === 0xa0 ? 2 : 0;
  if (i + 2 >= end) return 0;
  const c1 = buf[i + 1], c2 = buf[i + 2];
  if (c === 0xe1) return c1 === 0x9a && c2 === 0x80 ? 3 : 0;
  if (c === 0xe2) {
    if (c1 === 0x80) return c2 <= 0x8a || c2 === 0xa8 || c2 === 0xa9 || c2 === 0xaf ? 3 : 0;
    return c1 === 0x81 && c2 === 0x9f ? 3 : 0;
  }
  if (c === 0xe3) return c1 === 0x80 && c2 === 0x80 ? 3 : 0;
  return 0;
};

/**
 * Offset of the first byte of `buf[start, end)` that breaks UTF-8 (a bad
 * lead byte, a missing continuation, an overlong form, a surrogate or a
 * code point past U+10FFFF); `end` when there is none. Only for messages.
 */
const firstInvalidUtf8 = (buf: Uint8Array, start: number, end: number): number => {
  let i = start;
  while (i < end) {
    const c = buf[i];
    const need = c < 0x80
      ? 0
      : c >= 0xc2 && c <= 0xdf
      ? 1
      : c >= 0xe0 && c <= 0xef
      ? 2
      : c >= 0xf0 && c <= 0xf4
      ? 3
      : -1;
    if (need < 0) return i;
    for (let k = 1; k <= need; k++) {
      const x = i + k < end ? buf[i + k] : -1;
      const lo = k === 1 && c === 0xe0 ? 0xa0 : k === 1 && c === 0xf0 ? 0x90 : 0x80;
      const hi = k === 1 && c === 0xed ? 0x9f : k === 1 && c === 0xf4 ? 0x8f : 0xbf;
      if (x < lo || x > hi) return i + k < end ? i + k : i;
    }
    i += need + 1;
  }
  return end;
};

/** What a tokenising pass produced. */
interface Pass {
  readonly tokens: Int32Array;
  readonly sha256: string;
  readonly bytes: number;
  /** Tokens that are words (not `<eos>`). */
  readonly words: number;
}

/**
 * Streams `file` in chunks and tokenises it: words are cut at whitespace
 * bytes, `<eos>` (id 0) ends every line (a last line without `\n` too),
 * and each word is looked up in `table` by its bytes. A word not in the
 * table is added when `grow` (and `counts` is kept), else it is an
 * `UnknownWord` error. Control bytes and invalid UTF-8 (checked on every
 * word that enters the table or is reported) are `NotText` errors naming
 * line and byte. Hashes the file in the same pass.
 */
async function tokenise(
  file: string,
  table: WordTable,
  opts: {
    readonly grow: boolean;
    readonly trainFile: string;
    readonly phase: string;
    readonly onProgress?: (p: ReadProgress) => void;
  },
): Promise<E.Either<DataError, Pass & { counts: Int32Array | null }>> {
  let f: Deno.FsFile;
  try {
    f = await Deno.open(file, { read: true });
  } catch (e) {
    return E.left(openError(file, e, WT103_PLACEMENT_HINT));
  }
  let totalBytes = 0;
  try {
    totalBytes = (await f.stat()).size;
  } catch { /* the size only feeds progress and the first guess of the buffer */ }
  const ids = new IdBuffer(Math.ceil(totalBytes / 5)); // ~5.2 bytes per token in WikiText
  let counts = opts.grow ? new Int32Array(Math.max(1024, table.words.length * 2)) : null;
  const hash = createHash("sha256");
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const buf = new Uint8Array(CHUNK_BYTES);
  let carry = new Uint8Array(0); // bytes of the unfinished line
  let carryStart = 0; // file offset of carry[0]
  let offset = 0; // bytes read
  let line = 1; // 1-based line of the next byte
  let words = 0;
  let reportedTokens = 0, reportedBytes = 0;

  const notText = (at: number, reason: string): DataError => ({
    _tag: "NotText",
    file,
    line,
    byteOffset: at,
    reason,
    message: `${file}: ${reason} at byte ${at} (line ${line})`,
  });
  /** Tokenises whole lines `block` (starting at file offset `base`); null when fine. */
  const scan = (block: Uint8Array, base: number): DataError | null => {
    const n = block.length;
    let start = -1, h = FNV_OFFSET;
    const word = (end: number): DataError | null => {
      let id = table.find(block, start, end, h);
      if (id < 0) {
        let text: string;
        try {
          text = decoder.decode(block.subarray(start, end));
        } catch {
          return notText(
            base + firstInvalidUtf8(block, start, end),
            "not UTF-8 text: invalid byte",
          );
        }
        if (!opts.grow) {
          return {
            _tag: "UnknownWord",
            file,
            line,
            word: text,
            message: `${file} line ${line}: word ${JSON.stringify(text)} is not in the ` +
              `vocabulary of ${opts.trainFile} (are the files from the same release?)`,
          };
        }
        id = table.add(text, block.slice(start, end), h);
        if (id === counts!.length) {
          const bigger = new Int32Array(counts!.length * 2);
          bigger.set(counts!);
          counts = bigger;
        }
      }
      if (counts !== null) counts[id]++;
      ids.push(id);
      words++;
      start = -1;
      h = FNV_OFFSET;
      return null;
    };
    for (let i = 0; i < n; i++) {
      const c = block[i];
      if (c === 0x20 || (c >= 0x09 && c <= 0x0d)) {
        if (start >= 0) {
          const err = word(i);
          if (err !== null) return err;
        }
        if (c === 0x0a) {
          ids.push(0);
          if (counts !== null) counts[0]++;
          line++;
        }
        continue;
      }
      if (c < 0x20 || c === 0x7f) {
        return notText(
          base + i,
          c === 0
            ? "contains a NUL byte (binary data?)"
            : `contains control byte 0x${c.toString(16).padStart(2, "0")} (binary data?)`,
        );
      }
      if (c >= 0x80) {
        const sp = unicodeSpace(block, i, n);
        if (sp > 0) {
          if (start >= 0) {
            const err = word(i);
            if (err !== null) return err;
          }
          i += sp - 1;
          continue;
        }
      }
      if (start < 0) start = i;
      h = Math.imul(h ^ c, 16777619);
    }
    if (start >= 0) {
      // The file's last line has no newline.
      const err = word(n);
      if (err !== null) return err;
    }
    if (n > 0 && block[n - 1] !== 0x0a) {
      ids.push(0);
      if (counts !== null) counts[0]++;
    }
    return null;
  };
  const report = () => {
    if (opts.onProgress === undefined) return;
    if (offset < totalBytes && offset - reportedBytes < totalBytes / 50) return;
    opts.onProgress({
      file,
      phase: opts.phase,
      bytes: offset,
      totalBytes,
      tokens: ids.length - reportedTokens,
    });
    reportedTokens = ids.length;
    reportedBytes = offset;
  };
  try {
    for (;;) {
      const got = await f.read(buf);
      if (got === null) break;
      const chunk = buf.subarray(0, got);
      hash.update(chunk);
      offset += got;
      const nl = chunk.lastIndexOf(0x0a);
      if (nl < 0) {
        const grown = new Uint8Array(carry.length + got);
        grown.set(carry);
        grown.set(chunk, carry.length);
        carry = grown;
      } else {
        const block = new Uint8Array(carry.length + nl + 1);
        block.set(carry);
        block.set(chunk.subarray(0, nl + 1), carry.length);
        const err = scan(block, carryStart);
        if (err !== null) return E.left(err);
        carry = chunk.slice(nl + 1);
        carryStart = offset - carry.length;
      }
      report();
    }
    if (carry.length > 0) {
      const err = scan(carry, carryStart);
      if (err !== null) return E.left(err);
    }
  } catch (e) {
    return E.left(unreadableFile(file, e));
  } finally {
    f.close();
  }
  if (words === 0) {
    return E.left({ _tag: "EmptyFile", file, message: `${file}: the file contains no words` });
  }
  return E.right({
    tokens: ids.finish(),
    sha256: hash.digest("hex"),
    bytes: offset,
    words,
    counts: counts === null ? null : counts.slice(0, table.words.length),
  });
}

/** Tokenises `file` against a fixed vocabulary; an unknown word is an error. */
function tokeniseWith(
  file: string,
  table: WordTable,
  trainFile: string,
  onProgress?: (p: ReadProgress) => void,
): Promise<E.Either<DataError, Pass>> {
  return tokenise(file, table, {
    grow: false,
    trainFile,
    phase: "tokens",
    ...(onProgress === undefined ? {} : { onProgress }),
  });
}

/**
 * One pass over the training file that builds the vocabulary and tokenises:
 * ids by first appearance while streaming, then renumbered by decreasing
 * count (`<eos>` kept at 0).
 */
async function buildAndTokenise(
  file: string,
  onProgress?: (p: ReadProgress) => void,
): Promise<
  E.Either<DataError, Pass & { words: number; sorted: readonly string[]; counts: Int32Array }>
> {
  const table = new WordTable();
  table.addWord(EOS);
  const r = await tokenise(file, table, {
    grow: true,
    trainFile: file,
    phase: "vocabulary and tokens",
    ...(onProgress === undefined ? {} : { onProgress }),
  });
  if (E.isLeft(r)) return r;
  const counts = r.right.counts!;
  const n = table.words.length;
  // Renumber: <eos> first, then by count, ties by first appearance (the provisional id).
  const order = Array.from({ length: n - 1 }, (_, i) => i + 1);
  order.sort((a, b) => counts[b] - counts[a] || a - b);
  const perm = new Int32Array(n); // provisional id → final id
  const sorted: string[] = [EOS];
  const sortedCounts = new Int32Array(n);
  sortedCounts[0] = counts[0];
  order.forEach((old, i) => {
    perm[old] = i + 1;
    sorted.push(table.words[old]);
    sortedCounts[i + 1] = counts[old];
  });
  const tokens = r.right.tokens;
  for (let i = 0; i < tokens.length; i++) tokens[i] = perm[tokens[i]];
  return E.right({ ...r.right, tokens, sorted, counts: sortedCounts });
}

// ---------------------------------------------------------------------------
// The vocabulary cache

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
    const t = await tokeniseWith(trainFile, table, trainFile, opts.onProgress);
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
    const built = await buildAndTokenise(trainFile, opts.onProgress);
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
  const valid = await tokeniseWith(path("valid"), table!, trainFile, opts.onProgress);
  if (E.isLeft(valid)) return valid;
  let test: Pass | null = null;
  if (stats.test !== null) {
    const t = await tokeniseWith(path("test"), table!, trainFile, opts.onProgress);
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
