/**
 * Text ↔ token ids with a model file's vocabulary, by the rules of
 * word-level PTB (experiments/data/ptb.ts): words are split on whitespace, and
 * every line break is the end-of-line token `<eos>`. Web APIs only.
 *
 * One difference from reading a PTB split: a last line without a final
 * line break gets no `<eos>`, so a prompt such as `"the market"` ends on
 * its last word (add `"\n"` to end it). Words missing from the vocabulary
 * map to `<unk>` when the vocabulary has it.
 *
 * @module
 */

/** The end-of-line token of PTB-style vocabularies. */
export const EOS = "<eos>";
/** The unknown-word token of PTB-style vocabularies. */
export const UNK = "<unk>";

/**
 * Token ids of a text and what did not map.
 *
 * @example
 * ```ts
 * import type { Tokenized } from "./vocab.ts";
 * const report = (t: Tokenized) => `${t.ids.length} tokens, ${t.unknown} unknown words`;
 * ```
 */
export interface Tokenized {
  /** Token ids. */
  readonly ids: Int32Array;
  /** Words not in the vocabulary (mapped to `<unk>`). */
  readonly unknown: number;
  /** The first such word and its 1-based line, if any. */
  readonly firstUnknown?: { readonly word: string; readonly line: number };
}

/**
 * A vocabulary with its lookups: words by id and ids by word.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Vocab } from "./vocab.ts";
 *
 * const v = new Vocab(["<eos>", "the", "cat", "<unk>"]);
 * const t = v.tokenize("the dog\nthe cat");
 * assert.deepEqual(Array.from(t.ids), [1, 3, 0, 1, 2]);
 * assert.equal(t.unknown, 1);
 * assert.equal(v.detokenize(t.ids), "the <unk>\nthe cat");
 * ```
 */
export class Vocab {
  /** Ids by word. */
  readonly index: ReadonlyMap<string, number>;
  /** Id of `<eos>`, or undefined when the vocabulary has none (line breaks are then spaces). */
  readonly eos: number | undefined;
  /** Id of `<unk>`, or undefined (unknown words are then an error). */
  readonly unk: number | undefined;

  /** Index `words` (id = position). */
  constructor(readonly words: readonly string[]) {
    this.index = new Map(words.map((w, i) => [w, i]));
    this.eos = this.index.get(EOS);
    this.unk = this.index.get(UNK);
  }

  /**
   * Ids of `text` (see the module doc for the rules). Throws a RangeError
   * naming the word and line when a word is unknown and there is no `<unk>`.
   */
  tokenize(text: string): Tokenized {
    const ids: number[] = [];
    let unknown = 0;
    let firstUnknown: { word: string; line: number } | undefined;
    const lines = text.split("\n");
    lines.forEach((line, l) => {
      const trimmed = line.trim();
      if (trimmed !== "") {
        for (const w of trimmed.split(/\s+/)) {
          let id = this.index.get(w);
          if (id === undefined) {
            if (this.unk === undefined) {
              throw new RangeError(
                `line ${l + 1}: word ${JSON.stringify(w)} is not in the vocabulary, ` +
                  `which has no ${UNK}`,
              );
            }
            id = this.unk;
            unknown++;
            firstUnknown ??= { word: w, line: l + 1 };
          }
          ids.push(id);
        }
      }
      // A line break (every line but the last piece) ends the line.
      if (l < lines.length - 1 && this.eos !== undefined) ids.push(this.eos);
    });
    return {
      ids: Int32Array.from(ids),
      unknown,
      ...(firstUnknown === undefined ? {} : { firstUnknown }),
    };
  }

  /**
   * Text of `ids`: words joined by spaces, `<eos>` as a line break. An id
   * beyond the vocabulary (a model whose vocabSize exceeds it) reads `<id N>`.
   */
  detokenize(ids: ArrayLike<number>): string {
    let out = "";
    let lineStart = true;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (id === this.eos) {
        out += "\n";
        lineStart = true;
        continue;
      }
      const w = this.words[id] ?? `<id ${id}>`;
      out += lineStart ? w : ` ${w}`;
      lineStart = false;
    }
    return out;
  }
}
