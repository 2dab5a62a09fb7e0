/**
 * A generated stand-in for WikiText-103 in the release's exact file format,
 * for tests and for trying the pipeline without the real corpus:
 * `wiki.{train,valid,test}.tokens` with articles (` = Title = ` lines),
 * sections (` = = Section = = `), paragraphs of Zipf-distributed words,
 * ` @-@ `-style punctuation tokens, a blank line (a lone space) between
 * them, `<unk>` tokens, and valid/test words restricted to the training
 * vocabulary (anything else becomes `<unk>`, as in the release).
 *
 * As a command (`deno task wt103:sample DIR`):
 *
 *     deno task wt103:sample /tmp/wt103-sample                 # 2 M training tokens
 *     deno task wt103:sample /tmp/wt103-sample --train-tokens 500000 --vocab 20000 --seed 3
 *     deno task wt103:sample /tmp/wt103-zip --zip               # also wikitext-103-v1.zip
 *
 * It is not text: a Zipf unigram model has no long-range structure, so a
 * model's perplexity on it shows the pipeline works, not how well CRT uses
 * context.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { writeWt103Sample } from "./_wt103_fixture.ts";
 *
 * const dir = await Deno.makeTempDir();
 * const stats = await writeWt103Sample(dir, { trainTokens: 5_000, vocabSize: 300, seed: 7 });
 * const train = await Deno.readTextFile(`${dir}/wiki.train.tokens`);
 * assert.ok(train.startsWith(" \n = "));
 * assert.ok(stats.train.tokens >= 5_000);
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { describeError } from "../../spec/errors.ts";
import { parseArgs } from "node:util";
import { join } from "node:path";
import { createZip } from "../io/zip.ts";

/**
 * Options of {@linkcode writeWt103Sample}.
 *
 * @example
 * ```ts
 * import type { SampleOptions } from "./_wt103_fixture.ts";
 * const small: SampleOptions = { trainTokens: 100_000, vocabSize: 5_000, seed: 1 };
 * ```
 */
export interface SampleOptions {
  /** Tokens (words and `<eos>`) to write to the training file, at least. Default 2,000,000. */
  readonly trainTokens?: number;
  /** Tokens of the valid and of the test file. Default trainTokens / 20. */
  readonly evalTokens?: number;
  /** Distinct word types the generator draws from (the training file sees most). Default 50,000. */
  readonly vocabSize?: number;
  /** Zipf exponent s: p(rank r) ∝ r^−s. Default 1.05. */
  readonly zipf?: number;
  /** Seeds everything. Default 1. */
  readonly seed?: number;
  /** Also write `wikitext-103-v1.zip` holding the three files under `wikitext-103/`. */
  readonly zip?: boolean;
}

/**
 * What was written: tokens and lines per split (the reader must agree).
 *
 * @example
 * ```ts
 * import type { SampleStats } from "./_wt103_fixture.ts";
 * const total = (s: SampleStats) => s.train.tokens + s.valid.tokens + s.test.tokens;
 * ```
 */
export interface SampleStats {
  /** Per split: tokens with `<eos>`, lines, and `<unk>` tokens. */
  readonly train: { readonly tokens: number; readonly lines: number; readonly unk: number };
  readonly valid: { readonly tokens: number; readonly lines: number; readonly unk: number };
  readonly test: { readonly tokens: number; readonly lines: number; readonly unk: number };
  /** Distinct words in the training file, with `<eos>`. */
  readonly trainVocab: number;
}

/** xorshift32 uniforms in [0, 1). */
const uniforms = (seed: number): () => number => {
  let s = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) >>> 0) || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
};

/** The most frequent tokens of English Wikipedia text, tokenised as the release is. */
const COMMON = [
  "the",
  ",",
  ".",
  "of",
  "and",
  "in",
  "to",
  "a",
  "<unk>",
  '"',
  "was",
  "The",
  "@-@",
  "'s",
  "that",
  "as",
  "for",
  "on",
  "with",
  "by",
  "(",
  ")",
  "is",
  "his",
  "at",
  "from",
  "he",
  "it",
  "were",
  "an",
  "had",
  "which",
  "be",
  "@,@",
  "@.@",
  ";",
  "are",
  "first",
  "their",
  "its",
];

const SYLLABLES = [
  "ka",
  "to",
  "ri",
  "ne",
  "mo",
  "sa",
  "lu",
  "pe",
  "vi",
  "da",
  "go",
  "zu",
  "bel",
  "tar",
  "min",
  "dor",
  "ash",
  "el",
  "or",
  "un",
  "qua",
  "fen",
  "hal",
  "jo",
  "wes",
  "jō",
  "ñe",
];

/** A distinct word for every rank ≥ COMMON.length: mixed-radix syllables. */
const wordOf = (rank: number): string => {
  if (rank < COMMON.length) return COMMON[rank];
  let n = rank - COMMON.length;
  let w = "";
  do {
    w += SYLLABLES[n % SYLLABLES.length];
    n = Math.floor(n / SYLLABLES.length);
  } while (n > 0);
  // Capitalise one word in eight, as names are.
  return rank % 8 === 3 ? w[0].toUpperCase() + w.slice(1) : w;
};

/** Draws ranks from p(r) ∝ (r + 1)^−s by binary search in the cumulative table. */
const zipfSampler = (n: number, s: number, u: () => number): () => number => {
  const cdf = new Float64Array(n);
  let acc = 0;
  for (let r = 0; r < n; r++) cdf[r] = acc += Math.pow(r + 1, -s);
  return () => {
    const x = u() * acc;
    let lo = 0, hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
};

/**
 * Generates one split's text: articles of sections of paragraphs. `keep`
 * maps a word to what is written (valid/test: `<unk>` for unseen words).
 */
const generateSplit = (
  tokens: number,
  draw: () => number,
  u: () => number,
  keep: (w: string) => string,
): { text: string; tokens: number; lines: number; unk: number; words: Set<string> } => {
  const out: string[] = [];
  const words = new Set<string>();
  let count = 0, unk = 0;
  const line = (ws: string[]) => {
    const kept = ws.map(keep);
    for (const w of kept) {
      words.add(w);
      if (w === "<unk>") unk++;
    }
    out.push(` ${kept.join(" ")} \n`);
    count += kept.length + 1;
  };
  const blank = () => {
    out.push(" \n");
    count += 1;
  };
  const phrase = (min: number, max: number) =>
    Array.from({ length: min + Math.floor(u() * (max - min)) }, () => wordOf(draw()));
  blank(); // the release starts with a blank line
  while (count < tokens) {
    line(["=", ...phrase(1, 4), "="]);
    blank();
    const sections = 1 + Math.floor(u() * 4);
    for (let s = 0; s < sections && count < tokens; s++) {
      if (s > 0) {
        line(["=", "=", ...phrase(1, 3), "=", "="]);
        blank();
      }
      const paragraphs = 1 + Math.floor(u() * 3);
      for (let p = 0; p < paragraphs && count < tokens; p++) {
        const sentences = 2 + Math.floor(u() * 6);
        const ws: string[] = [];
        for (let k = 0; k < sentences; k++) ws.push(...phrase(6, 30), ".");
        line(ws);
        blank();
      }
    }
  }
  return { text: out.join(""), tokens: count, lines: out.length, unk, words };
};

/**
 * Writes `wiki.train.tokens`, `wiki.valid.tokens` and `wiki.test.tokens` (and
 * with `zip`, `wikitext-103-v1.zip`) into `dir`, creating it.
 *
 * @example
 * ```ts
 * import { writeWt103Sample } from "./_wt103_fixture.ts";
 * const dir = await Deno.makeTempDir();
 * const s = await writeWt103Sample(dir, { trainTokens: 2_000, vocabSize: 100 });
 * console.log(s.trainVocab > 50); // true
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeWt103Sample(
  dir: string,
  opts: SampleOptions = {},
): Promise<SampleStats> {
  const trainTokens = opts.trainTokens ?? 2_000_000;
  const evalTokens = opts.evalTokens ?? Math.max(1, Math.round(trainTokens / 20));
  const vocabSize = Math.max(opts.vocabSize ?? 50_000, COMMON.length + 1);
  const u = uniforms(opts.seed ?? 1);
  const draw = zipfSampler(vocabSize, opts.zipf ?? 1.05, u);
  const train = generateSplit(trainTokens, draw, u, (w) => w);
  const seen = train.words;
  const unseen = (w: string) => (seen.has(w) ? w : "<unk>");
  const valid = generateSplit(evalTokens, draw, u, unseen);
  const test = generateSplit(evalTokens, draw, u, unseen);
  await Deno.mkdir(dir, { recursive: true });
  const files: [string, string][] = [
    ["wiki.train.tokens", train.text],
    ["wiki.valid.tokens", valid.text],
    ["wiki.test.tokens", test.text],
  ];
  for (const [name, text] of files) await Deno.writeTextFile(join(dir, name), text);
  if (opts.zip) {
    const enc = new TextEncoder();
    const zip = createZip(
      files.map(([name, text]) => ({ name: `wikitext-103/${name}`, data: enc.encode(text) })),
    );
    await Deno.writeFile(join(dir, "wikitext-103-v1.zip"), zip);
  }
  const stats = (s: typeof train) => ({ tokens: s.tokens, lines: s.lines, unk: s.unk });
  return {
    train: stats(train),
    valid: stats(valid),
    test: stats(test),
    trainVocab: seen.size + 1,
  };
}

const USAGE = `usage: deno task wt103:sample DIR [--train-tokens N] [--vocab N] [--seed N] [--zip]

Writes a generated corpus in WikiText-103's format (wiki.{train,valid,test}.tokens) into DIR.
  --train-tokens N  training tokens (default 2000000; valid and test get N/20 each)
  --vocab N         word types to draw from (default 50000)
  --seed N          random seed (default 1)
  --zip             also write wikitext-103-v1.zip, laid out as the release`;

/** The command: returns the exit status (0, or 2 for bad arguments). */
async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        "train-tokens": { type: "string" },
        vocab: { type: "string" },
        seed: { type: "string" },
        zip: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    console.error(`${describeError(e)}\n${USAGE}`);
    return 2;
  }
  if (parsed.values.help) {
    console.log(USAGE);
    return 0;
  }
  if (parsed.positionals.length !== 1) {
    console.error(`expected one directory, got ${parsed.positionals.length}\n${USAGE}`);
    return 2;
  }
  const int = (name: string, v: string | undefined, min: number): number | null | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) {
      console.error(`--${name}: expected an integer >= ${min}, got ${JSON.stringify(v)}`);
      return null;
    }
    return n;
  };
  const trainTokens = int("train-tokens", parsed.values["train-tokens"], 100);
  const vocabSize = int("vocab", parsed.values.vocab, 50);
  const seed = int("seed", parsed.values.seed, 0);
  if (trainTokens === null || vocabSize === null || seed === null) return 2;
  const dir = parsed.positionals[0];
  const t0 = performance.now();
  const s = await writeWt103Sample(dir, {
    ...(trainTokens === undefined ? {} : { trainTokens }),
    ...(vocabSize === undefined ? {} : { vocabSize }),
    ...(seed === undefined ? {} : { seed }),
    zip: parsed.values.zip ?? false,
  });
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(
    `${dir}: train ${s.train.tokens} tokens (${s.trainVocab} words), valid ${s.valid.tokens}, ` +
      `test ${s.test.tokens} tokens, in ${secs} s\n` +
      `next: deno task experiment wt103 --quick --data ${dir}`,
  );
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
