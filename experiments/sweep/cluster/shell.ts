/**
 * Shell words both ways, for what the sweep hands to Slurm: quoting an argv
 * so bash reads it back word for word ({@linkcode quoteShell}), and splitting
 * a user's `--sbatch "ARGS"` into words without a shell
 * ({@linkcode splitShellWords}), refusing text that only a shell could mean.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { quoteShell, splitShellWords } from "./shell.ts";
 * assert.equal(quoteShell(["echo", "it's"]), `'echo' 'it'\\''s'`);
 * const w = splitShellWords(`--account="my lab" -p gpu`);
 * assert(w._tag === "Right");
 * assert.deepEqual(w.right, ["--account=my lab", "-p", "gpu"]);
 * ```
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";

/**
 * Why a text could not be split into words.
 *
 * @example
 * ```ts
 * import type { ShellWordsError } from "./shell.ts";
 * const show = (e: ShellWordsError) => `${e._tag} at ${e.index}: ${e.message}`;
 * ```
 */
export type ShellWordsError =
  | {
    /** A quote opened and never closed, or a backslash at the very end. */
    readonly _tag: "UnterminatedQuote";
    /** Where the quote (or backslash) starts, 0-based. */
    readonly index: number;
    readonly message: string;
  }
  | {
    /**
     * An unquoted `;`, `&`, `|`, `<`, `>`, `(`, `)`, `` ` ``, `$`, a `~`
     * starting a word, or a `$` or `` ` `` inside double quotes: shell
     * syntax, which no shell will read here, so the text cannot mean what it
     * seems to.
     */
    readonly _tag: "ShellSyntax";
    readonly index: number;
    /** The character. */
    readonly char: string;
    readonly message: string;
  }
  | {
    /** A NUL byte, which no argument can hold. */
    readonly _tag: "NulByte";
    readonly index: number;
    readonly message: string;
  };

/** Characters that mean something to a shell outside quotes. */
const OPERATORS = new Set([";", "&", "|", "<", ">", "(", ")", "`", "$"]);

/**
 * Quotes every word for bash (single quotes, `'` written `'\''`) and joins
 * them with spaces, so `eval` or a script line reads back exactly `words`.
 * Throws on a NUL byte, which no argument can hold.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { quoteShell } from "./shell.ts";
 * assert.equal(quoteShell(["a b", "$HOME", ""]), `'a b' '$HOME' ''`);
 * ```
 */
export function quoteShell(words: readonly string[]): string {
  return words.map((w) => {
    if (w.includes("\0")) throw new Error(`quoteShell: a NUL byte in ${JSON.stringify(w)}`);
    return `'${w.replaceAll("'", `'\\''`)}'`;
  }).join(" ");
}

/**
 * Splits text into words the way a POSIX shell would for a plain command
 * line — blanks separate words; `'…'` is literal; `"…"` keeps blanks and
 * lets a backslash escape `"`, `\` and `$`; an unquoted backslash escapes
 * the next character — and refuses the rest of the shell's syntax
 * (operators, `$`-expansion, command substitution, a leading `~`) instead of
 * passing it on literally. `#`, globs and brackets are ordinary characters
 * (no comments, no globbing: `--nodelist=n[1-4]` stays as written).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { splitShellWords } from "./shell.ts";
 * const ok = splitShellWords(`--time=1:00:00 --comment='a b' x\\ y ""`);
 * assert(ok._tag === "Right");
 * assert.deepEqual(ok.right, ["--time=1:00:00", "--comment=a b", "x y", ""]);
 * const bad = splitShellWords("--time=1:00; rm -rf ~");
 * assert(bad._tag === "Left" && bad.left._tag === "ShellSyntax" && bad.left.char === ";");
 * ```
 */
export function splitShellWords(text: string): E.Either<ShellWordsError, string[]> {
  const words: string[] = [];
  let word: string | null = null; // null: between words
  const syntax = (index: number, char: string): E.Either<ShellWordsError, string[]> =>
    E.left({
      _tag: "ShellSyntax",
      index,
      char,
      message: `${JSON.stringify(char)} at ${index} of ${JSON.stringify(text)} is shell syntax, ` +
        "but these words reach sbatch without a shell: quote it ('…') to mean the character",
    });
  const unterminated = (index: number, what: string): E.Either<ShellWordsError, string[]> =>
    E.left({
      _tag: "UnterminatedQuote",
      index,
      message: `${what} at ${index} of ${JSON.stringify(text)} is never closed`,
    });
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "\0") {
      return E.left({ _tag: "NulByte", index: i, message: `a NUL byte at ${i} of the words` });
    }
    if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      if (word !== null) words.push(word);
      word = null;
      i++;
    } else if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) return unterminated(i, "the single quote");
      word = (word ?? "") + text.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      let j = i + 1;
      let part = "";
      while (j < text.length && text[j] !== '"') {
        const d = text[j];
        if (d === "\0") {
          return E.left({ _tag: "NulByte", index: j, message: `a NUL byte at ${j} of the words` });
        }
        if (d === "$" || d === "`") return syntax(j, d);
        if (d === "\\" && j + 1 < text.length && '"\\$`\n'.includes(text[j + 1])) {
          if (text[j + 1] !== "\n") part += text[j + 1]; // backslash-newline: a continuation
          j += 2;
        } else {
          part += d;
          j++;
        }
      }
      if (j >= text.length) return unterminated(i, "the double quote");
      word = (word ?? "") + part;
      i = j + 1;
    } else if (c === "\\") {
      if (i + 1 >= text.length) return unterminated(i, "the backslash");
      if (text[i + 1] !== "\n") word = (word ?? "") + text[i + 1];
      i += 2;
    } else if (OPERATORS.has(c) || (c === "~" && word === null)) {
      return syntax(i, c);
    } else {
      word = (word ?? "") + c;
      i++;
    }
  }
  if (word !== null) words.push(word);
  return E.right(words);
}
