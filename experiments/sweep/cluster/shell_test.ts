import assert from "node:assert/strict";
import { quoteShell, splitShellWords } from "./shell.ts";

/** What bash itself makes of `line`: its words, each ended by a NUL. */
const bashWords = async (line: string): Promise<string[]> => {
  const out = await new Deno.Command("bash", {
    args: ["-c", `set -- ${line}\nfor w in "$@"; do printf '%s\\0' "$w"; done`],
    stdout: "piped",
  }).output();
  assert(out.success);
  const text = new TextDecoder().decode(out.stdout);
  return text === "" ? [] : text.slice(0, -1).split("\0");
};

Deno.test("quoteShell: bash reads the quoted words back exactly", async () => {
  const words = ["plain", "a b", "it's", `"dq"`, "$HOME", "`id`", "x\ny", "", "*", "\\", "'"];
  assert.deepEqual(await bashWords(quoteShell(words)), words);
});

Deno.test("quoteShell: refuses a NUL byte", () => {
  assert.throws(() => quoteShell(["a\0b"]), /NUL/);
});

Deno.test("splitShellWords: agrees with bash on quoting and escapes", async () => {
  const lines = [
    "",
    "   ",
    "--time=1:00:00 -p gpu",
    `--comment='a b'  --account="my lab"`,
    `x\\ y "a\\"b" 'c\\d' "e\\\\f" "g\\h"`,
    `--nodelist=node[1-4] --x=#y`,
    `"" ''`,
    `a'b'"c"d`,
    "a\\\nb",
  ];
  for (const line of lines) {
    const got = splitShellWords(line);
    assert(got._tag === "Right", line);
    assert.deepEqual(got.right, await bashWords(line), JSON.stringify(line));
  }
});

Deno.test("splitShellWords: refuses shell syntax, naming the character and where", () => {
  const cases: ReadonlyArray<[string, string, number]> = [
    ["--time=1:00; rm -rf x", ";", 11],
    ["-p gpu && echo", "&", 7],
    ["a|b", "|", 1],
    ["--out=>f", ">", 6],
    ["--x=$(id)", "$", 4],
    ["--x=`id`", "`", 4],
    [`"--x=$HOME"`, "$", 5],
    ["~/x", "~", 0],
  ];
  for (const [text, char, index] of cases) {
    const r = splitShellWords(text);
    assert(r._tag === "Left" && r.left._tag === "ShellSyntax", text);
    assert.equal(r.left.char, char, text);
    assert.equal(r.left.index, index, text);
    assert.match(r.left.message, /without a shell/);
  }
  // Quoted, the same characters are plain text; a ~ inside a word is too.
  const quoted = splitShellWords(`'a;b' "c|d" e~f`);
  assert(quoted._tag === "Right");
  assert.deepEqual(quoted.right, ["a;b", "c|d", "e~f"]);
});

Deno.test("splitShellWords: an open quote or a trailing backslash is an error", () => {
  for (const [text, index] of [[`--x='a b`, 4], [`a "b`, 2], ["a\\", 1]] as const) {
    const r = splitShellWords(text);
    assert(r._tag === "Left" && r.left._tag === "UnterminatedQuote", text);
    assert.equal(r.left.index, index);
  }
  const nul = splitShellWords("a\0b");
  assert(nul._tag === "Left" && nul.left._tag === "NulByte");
});
