/**
 * The streaming word tokeniser the WikiText-103 reader runs: a file is read
 * in chunks of {@linkcode CHUNK_BYTES}, lines are cut into words at
 * whitespace and ended with `<eos>`, and each word is looked up by its bytes
 * in a {@linkcode WordTable} (FNV-1a hashed, no string per word) that either
 * grows (the training pass, counting) or is fixed (an unknown word is an
 * error naming file and line). The file's SHA-256 is computed in the same
 * pass; control bytes and invalid UTF-8 are errors naming line and byte.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { createHash } from "node:crypto";
import { type DataError, EOS } from "./ptb.ts";
import { openError, unreadableFile } from "./_shared.ts";

/**
 * Bytes read per chunk when streaming a split file.
 *
 * @example
 * ```ts
 * import { CHUNK_BYTES } from "./wt103_stream.ts";
 * console.log(CHUNK_BYTES / 2 ** 20, "MiB"); // 4 MiB
 * ```
 */
export const CHUNK_BYTES: number = 4 * 2 ** 20;

/**
 * Progress of a long read: bytes of `file` done and in all, and tokens
 * produced since the previous report.
 *
 * @example
 * ```ts
 * import type { ReadProgress } from "./wt103_stream.ts";
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
export class WordTable {
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
export interface Pass {
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
    /** Where the files belong, for a missing file's message. */
    readonly hint: string;
    readonly phase: string;
    readonly onProgress?: (p: ReadProgress) => void;
  },
): Promise<E.Either<DataError, Pass & { counts: Int32Array | null }>> {
  let f: Deno.FsFile;
  try {
    f = await Deno.open(file, { read: true });
  } catch (e) {
    return E.left(openError(file, e, opts.hint));
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

/**
 * Tokenises `file` against a fixed vocabulary; an unknown word is an error
 * naming the line and `trainFile`. `hint` ends a missing file's message.
 */
export function tokeniseWith(
  file: string,
  table: WordTable,
  trainFile: string,
  hint: string,
  onProgress?: (p: ReadProgress) => void,
): Promise<E.Either<DataError, Pass>> {
  return tokenise(file, table, {
    grow: false,
    trainFile,
    hint,
    phase: "tokens",
    ...(onProgress === undefined ? {} : { onProgress }),
  });
}

/**
 * One pass over the training file that builds the vocabulary and tokenises:
 * ids by first appearance while streaming, then renumbered by decreasing
 * count (`<eos>` kept at 0). `hint` ends a missing file's message.
 */
export async function buildAndTokenise(
  file: string,
  hint: string,
  onProgress?: (p: ReadProgress) => void,
): Promise<
  E.Either<DataError, Pass & { words: number; sorted: readonly string[]; counts: Int32Array }>
> {
  const table = new WordTable();
  table.addWord(EOS);
  const r = await tokenise(file, table, {
    grow: true,
    trainFile: file,
    hint,
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
