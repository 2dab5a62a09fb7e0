import assert from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import { writeWt103Sample } from "./_wt103_fixture.ts";
import { EOS } from "./ptb.ts";
import { CHUNK_BYTES } from "./wt103_stream.ts";
import { readWt103, resolveWt103Dir, WT103_VOCAB_FILE, type Wt103Corpus } from "./wt103.ts";
import { downloadWt103, loadWt103 } from "./wt103_download.ts";

const right = <L extends { message: string }, R>(r: E.Either<L, R>): R => {
  if (E.isLeft(r)) throw new Error(`expected Right, got ${r.left.message}`);
  return r.right;
};
const left = <L, R>(r: E.Either<L, R>): L => {
  if (E.isRight(r)) throw new Error("expected Left");
  return r.left;
};

const withDir = async (f: (dir: string) => Promise<void>): Promise<void> => {
  const dir = await Deno.makeTempDir({ prefix: "crt-wt103-" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
};

/** The reader's rules written the plain way: whole text, split lines, split words. */
const naiveTokens = (text: string): string[] => {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  return lines.flatMap((l) => {
    const t = l.trim();
    return [...(t === "" ? [] : t.split(/[\s\u0085]+/)), EOS];
  });
};

const wordsOf = (c: Wt103Corpus, ids: Int32Array): string[] =>
  Array.from(ids, (i) => c.vocab.words[i]);

Deno.test("readWt103: a generated corpus larger than a chunk reads as the plain reading of its text", async () => {
  await withDir(async (dir) => {
    const stats = await writeWt103Sample(dir, { trainTokens: 1_100_000, vocabSize: 3000, seed: 2 });
    const train = await Deno.readTextFile(join(dir, "wiki.train.tokens"));
    assert.ok(new TextEncoder().encode(train).length > CHUNK_BYTES, "the file spans chunks");
    assert.ok(/[ōñ]/.test(train), "multi-byte characters are in it");
    const logs: string[] = [];
    const c = right(await readWt103(dir, { log: (m) => logs.push(m) }));
    assert.equal(c.train.length, stats.train.tokens);
    assert.equal(c.valid.length, stats.valid.tokens);
    assert.equal(c.test?.length, stats.test.tokens);
    assert.equal(c.vocab.words.length, stats.trainVocab);
    assert.deepEqual(wordsOf(c, c.train), naiveTokens(train));
    const valid = await Deno.readTextFile(join(dir, "wiki.valid.tokens"));
    assert.deepEqual(wordsOf(c, c.valid), naiveTokens(valid));
    // <eos> first, then by decreasing count; counts are the training split's.
    assert.equal(c.vocab.words[0], EOS);
    assert.equal(c.counts[0], stats.train.lines);
    for (let i = 2; i < c.counts.length; i++) assert.ok(c.counts[i] <= c.counts[i - 1]);
    const counted = new Int32Array(c.counts.length);
    for (const id of c.train) counted[id]++;
    assert.deepEqual(counted, c.counts);
    assert.ok(c.vocab.words.includes("<unk>"));
    assert.equal(c.vocabFromCache, false);
    assert.match(logs.join("\n"), /no cache yet; building the vocabulary/);
    // SHA-256 of the files as read.
    const hex = async (f: string) =>
      Array.from(
        new Uint8Array(await crypto.subtle.digest("SHA-256", await Deno.readFile(join(dir, f)))),
        (b) => b.toString(16).padStart(2, "0"),
      ).join("");
    assert.equal(c.sha256.train, await hex("wiki.train.tokens"));
    assert.equal(c.sha256.test, await hex("wiki.test.tokens"));
  });
});

Deno.test("readWt103: the vocabulary cache is used when it matches and rebuilt when the data changed", async () => {
  await withDir(async (dir) => {
    await writeWt103Sample(dir, { trainTokens: 3000, vocabSize: 200, seed: 3 });
    const first = right(await readWt103(dir));
    const cache = JSON.parse(await Deno.readTextFile(join(dir, WT103_VOCAB_FILE)));
    assert.deepEqual(cache.words, first.vocab.words);
    assert.deepEqual(cache.counts, Array.from(first.counts));
    assert.equal(cache.train.sha256, first.sha256.train);
    const logs: string[] = [];
    const second = right(await readWt103(dir, { log: (m) => logs.push(m) }));
    assert.equal(second.vocabFromCache, true);
    assert.match(logs[0], /vocabulary of \d+ words from the cache/);
    assert.deepEqual(second.train, first.train);
    assert.deepEqual(second.test, first.test);

    // A new word: the size changes, so the cache is stale before reading.
    const trainFile = join(dir, "wiki.train.tokens");
    await Deno.writeTextFile(trainFile, " zyzzyva zyzzyva \n", { append: true });
    logs.length = 0;
    const third = right(await readWt103(dir, { log: (m) => logs.push(m) }));
    assert.equal(third.vocabFromCache, false);
    assert.match(logs[0], /training file changed since it was built \(size or mtime\)/);
    assert.ok(third.vocab.words.includes("zyzzyva"));

    // Same size and mtime, other content: caught by the hash at the end of the pass.
    const text = await Deno.readTextFile(trainFile);
    const stat = await Deno.stat(trainFile);
    await Deno.writeTextFile(trainFile, text.replace(" zyzzyva zyzzyva ", " zyzzyvb zyzzyvb "));
    await Deno.utime(trainFile, stat.atime!, stat.mtime!);
    logs.length = 0;
    const fourth = right(await readWt103(dir, { log: (m) => logs.push(m) }));
    assert.equal(fourth.vocabFromCache, false);
    assert.match(logs.join("\n"), /stale \(the training file's content changed\); rebuilding/);
    assert.ok(fourth.vocab.words.includes("zyzzyvb") && !fourth.vocab.words.includes("zyzzyva"));
  });
});

Deno.test("readWt103: a damaged or unwritable cache is rebuilt and the read goes on", async () => {
  await withDir(async (dir) => {
    await writeWt103Sample(dir, { trainTokens: 2000, vocabSize: 100, seed: 4 });
    await Deno.writeTextFile(join(dir, WT103_VOCAB_FILE), '{"format": "something else"}');
    const logs: string[] = [];
    right(await readWt103(dir, { log: (m) => logs.push(m) }));
    assert.match(logs[0], /not a vocabulary cache of this version; building the vocabulary/);
    // A folder where the cache file should go: it can be neither read nor replaced.
    await Deno.remove(join(dir, WT103_VOCAB_FILE));
    await Deno.mkdir(join(dir, WT103_VOCAB_FILE));
    logs.length = 0;
    const c = right(await readWt103(dir, { log: (m) => logs.push(m) }));
    assert.ok(c.train.length > 2000);
    assert.match(logs.join("\n"), /cannot write the vocabulary cache .*rebuilt on every run/);
    assert.deepEqual([...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".tmp")), []);
  });
});

Deno.test("readWt103: lines, blank lines, whitespace and a last line without a newline", async () => {
  await withDir(async (dir) => {
    // Tab, NBSP and an ideographic space separate words; CRLF ends a line; no final newline.
    await Deno.writeTextFile(
      join(dir, "wiki.train.tokens"),
      " \n = A = \n\ta\u00a0b\u3000c d\r\n \n b a",
    );
    await Deno.writeTextFile(join(dir, "wiki.valid.tokens"), " a b");
    const c = right(await readWt103(dir, { writeVocabCache: false }));
    assert.deepEqual(wordsOf(c, c.train), [
      EOS,
      "=",
      "A",
      "=",
      EOS,
      "a",
      "b",
      "c",
      "d",
      EOS,
      EOS,
      "b",
      "a",
      EOS,
    ]);
    assert.deepEqual(wordsOf(c, c.valid), ["a", "b", EOS]);
    assert.equal(c.test, null);
    assert.deepEqual(c.vocab.words.slice(0, 3), [EOS, "=", "a"]); // by count, ties by first use
    assert.equal(await Deno.stat(join(dir, WT103_VOCAB_FILE)).catch(() => null), null);
  });
});

Deno.test("readWt103: wrong files are reported with file, line and what is wrong", async () => {
  await withDir(async (dir) => {
    const train = join(dir, "wiki.train.tokens"), valid = join(dir, "wiki.valid.tokens");
    const missing = left(await readWt103(dir));
    assert.equal(missing._tag, "MissingFile");
    assert.match(missing.message, /wiki\.train\.tokens: file not found; put wiki\.train\.tokens/);
    assert.match(missing.message, /--data DIR or set CRT_DATA_DIR=DIR/);

    await Deno.writeTextFile(train, " a b \n b c \n");
    assert.match(left(await readWt103(dir)).message, /wiki\.valid\.tokens: file not found/);

    await Deno.writeTextFile(valid, " a \n a b \n c d \n");
    const unknown = left(await readWt103(dir, { writeVocabCache: false }));
    assert.equal(unknown._tag, "UnknownWord");
    assert.equal(
      unknown.message,
      `${valid} line 3: word "d" is not in the vocabulary of ${train} (are the files from the same release?)`,
    );

    await Deno.writeFile(valid, new Uint8Array([0x20, 0x61, 0x0a, 0x20, 0x62, 0xff, 0x0a]));
    const utf8 = left(await readWt103(dir, { writeVocabCache: false }));
    assert.equal(utf8._tag, "NotText");
    assert.match(
      utf8.message,
      /wiki\.valid\.tokens: not UTF-8 text: invalid byte at byte 5 \(line 2\)/,
    );

    await Deno.writeFile(train, new Uint8Array([0x61, 0x0a, 0x62, 0x00, 0x0a]));
    const nul = left(await readWt103(dir, { writeVocabCache: false }));
    assert.equal(nul._tag, "NotText");
    assert.match(
      nul.message,
      /wiki\.train\.tokens: contains a NUL byte \(binary data\?\) at byte 3 \(line 2\)/,
    );

    await Deno.writeTextFile(train, " \n \n");
    const empty = left(await readWt103(dir, { writeVocabCache: false }));
    assert.equal(empty._tag, "EmptyFile");
  });
});

Deno.test("resolveWt103Dir: --data, then CRT_DATA_DIR, then the cache folder", () => {
  assert.deepEqual(right(resolveWt103Dir({ flag: "/d", env: "/e", home: "/h" })), {
    dir: "/d",
    source: "flag",
  });
  assert.deepEqual(right(resolveWt103Dir({ env: "/e", home: "/h" })), { dir: "/e", source: "env" });
  assert.deepEqual(right(resolveWt103Dir({ xdgCacheHome: "/x", home: "/h" })), {
    dir: "/x/crt/wt103",
    source: "cache",
  });
  assert.equal(left(resolveWt103Dir({}))._tag, "NoDataDir");
});

Deno.test("loadWt103: the cache folder is filled from the release zip (served from disk)", async () => {
  await withDir(async (dir) => {
    const release = join(dir, "release");
    await writeWt103Sample(release, { trainTokens: 4000, vocabSize: 200, seed: 5, zip: true });
    const zip = await Deno.readFile(join(release, "wikitext-103-v1.zip"));
    const serve: typeof fetch = () => Promise.resolve(new Response(zip));
    const cache = join(dir, "cache");
    const logs: string[] = [];
    const c = right(
      await loadWt103({ dir: cache, source: "cache" }, {
        fetch: serve,
        expectedSha256: null,
        log: (m) => logs.push(m),
      }),
    );
    const direct = right(await readWt103(release, { writeVocabCache: false }));
    assert.deepEqual(c.train, direct.train);
    assert.deepEqual(c.test, direct.test);
    assert.match(
      logs.join("\n"),
      /SHA-256 [0-9a-f]{64} \(not verified: no pinned hash; set CRT_WT103_SHA256/,
    );
    const names = [...Deno.readDirSync(cache)].map((e) => e.name).sort();
    assert.deepEqual(names, [
      "wiki.test.tokens",
      "wiki.train.tokens",
      "wiki.valid.tokens",
      "wiki.vocab.json",
    ]);
    // Present files are not fetched again.
    const never: typeof fetch = () => Promise.reject(new Error("fetched"));
    right(await loadWt103({ dir: cache, source: "cache" }, { fetch: never }));
    // A directory given by --data is read as is, never downloaded into.
    const empty = join(dir, "empty");
    await Deno.mkdir(empty);
    assert.equal(
      left(await loadWt103({ dir: empty, source: "flag" }, { fetch: never }))._tag,
      "MissingFile",
    );
  });
});

Deno.test("downloadWt103: a wrong hash, an HTTP error or a file that is not the release leave nothing behind", async () => {
  await withDir(async (dir) => {
    const release = join(dir, "release");
    await writeWt103Sample(release, { trainTokens: 2000, vocabSize: 100, seed: 6, zip: true });
    const zip = await Deno.readFile(join(release, "wikitext-103-v1.zip"));
    const target = join(dir, "cache");
    const serve = (body: BodyInit, status = 200): typeof fetch => () =>
      Promise.resolve(new Response(body, { status }));
    const bad = left(
      await downloadWt103(target, { fetch: serve(zip), expectedSha256: "00".repeat(32) }),
    );
    assert.equal(bad._tag, "ChecksumMismatch");
    assert.match(bad.message, /does not match the expected 0{64}; not saved/);
    const gone = left(
      await downloadWt103(target, { fetch: serve("no", 404), expectedSha256: null }),
    );
    assert.equal(gone._tag, "DownloadFailed");
    assert.match(gone.message, /HTTP 404.*without network access, put wiki\.train\.tokens/);
    const junk = left(
      await downloadWt103(target, { fetch: serve("<html>hi</html>"), expectedSha256: null }),
    );
    assert.match(
      junk.message,
      /not the WikiText-103 release: no entries found \(not a zip file\?\)/,
    );
    const offline: typeof fetch = () => Promise.reject(new TypeError("network unreachable"));
    assert.equal(left(await downloadWt103(target, { fetch: offline }))._tag, "DownloadFailed");
    assert.deepEqual([...Deno.readDirSync(target)], []);
  });
});
