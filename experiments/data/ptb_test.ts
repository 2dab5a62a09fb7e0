import assert from "node:assert/strict";
import { tempDir } from "../../tests/_temp.ts";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import * as E from "fp-ts/lib/Either.js";
import { batchify, countWindows, segmentWindows, type Window } from "./windows.ts";
import {
  DATA_DIR_ENV,
  type DataError,
  parseCorpus,
  PTB_FILES,
  readCorpus,
  resolveDataDir,
} from "./ptb.ts";
import { type DownloadOptions, downloadPtb, loadPtb } from "./ptb_download.ts";

const TRAIN = " the cat sat\n the dog sat on the mat\n a cat\n";
const VALID = " the mat sat\n a dog\n";
const TEST = " dog cat\n";

async function corpusDir(
  root: { path: string },
  files: Partial<Record<"train" | "valid" | "test", string | Uint8Array>>,
) {
  const dir = await Deno.makeTempDir({ dir: root.path });
  for (const [split, content] of Object.entries(files)) {
    const path = join(dir, PTB_FILES[split as "train" | "valid" | "test"]);
    if (typeof content === "string") await Deno.writeTextFile(path, content);
    else await Deno.writeFile(path, content);
  }
  return dir;
}

function left<A>(r: E.Either<DataError, A>): DataError {
  if (E.isRight(r)) assert.fail("expected a DataError, got a value");
  return r.left;
}

function right<A>(r: E.Either<DataError, A>): A {
  if (E.isLeft(r)) assert.fail(`expected a value, got ${r.left._tag}: ${r.left.message}`);
  return r.right;
}

Deno.test("resolveDataDir: --data beats CRT_DATA_DIR beats the cache folder", () => {
  const all = { flag: "/f", env: "/e", xdgCacheHome: "/x", home: "/h" };
  assert.deepEqual(right(resolveDataDir(all)), { dir: "/f", source: "flag" });
  assert.deepEqual(right(resolveDataDir({ ...all, flag: "" })), { dir: "/e", source: "env" });
  assert.deepEqual(right(resolveDataDir({ xdgCacheHome: "/x", home: "/h" })), {
    dir: "/x/crt/ptb",
    source: "cache",
  });
  assert.deepEqual(right(resolveDataDir({ home: "/h" })), {
    dir: "/h/.cache/crt/ptb",
    source: "cache",
  });
  const e = left(resolveDataDir({}));
  assert.equal(e._tag, "NoDataDir");
  assert.match(e.message, /--data DIR/);
});

Deno.test("readCorpus: builds the vocabulary (<eos> = 0, then first appearance) and tokenises", async () => {
  await using tmp = await tempDir("crt-data-");
  const dir = await corpusDir(tmp, { train: TRAIN, valid: VALID });
  const c = right(await readCorpus(dir));
  assert.deepEqual(c.vocab.words, ["<eos>", "the", "cat", "sat", "dog", "on", "mat", "a"]);
  assert.equal(c.vocab.index.get("mat"), 6);
  assert.deepEqual(Array.from(c.train), [1, 2, 3, 0, 1, 4, 3, 5, 1, 6, 0, 7, 2, 0]);
  assert.deepEqual(Array.from(c.valid), [1, 6, 3, 0, 7, 4, 0]);
  assert.equal(c.test, null);
  assert.equal(c.sha256.test, null);
  assert.match(c.sha256.train, /^[0-9a-f]{64}$/);
});

Deno.test("readCorpus: reads the optional test split when present", async () => {
  await using tmp = await tempDir("crt-data-");
  const c = right(
    await readCorpus(await corpusDir(tmp, { train: TRAIN, valid: VALID, test: TEST })),
  );
  assert.deepEqual(Array.from(c.test ?? []), [4, 2, 0]);
  assert.match(c.sha256.test ?? "", /^[0-9a-f]{64}$/);
});

Deno.test("parseCorpus: CRLF, tabs, blank lines and a last line without newline", () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  const c = right(parseCorpus({
    train: { file: "t", bytes: enc("a\tb\r\n\nb a") },
    valid: { file: "v", bytes: enc("b") },
    test: null,
  }));
  assert.deepEqual(Array.from(c.train), [1, 2, 0, 0, 2, 1, 0]);
  assert.deepEqual(Array.from(c.valid), [2, 0]);
});

Deno.test("readCorpus: a missing train or valid file is an error naming the file", async () => {
  await using tmp = await tempDir("crt-data-");
  const noTrain = left(await readCorpus(await corpusDir(tmp, { valid: VALID })));
  assert.equal(noTrain._tag, "MissingFile");
  assert.ok(noTrain._tag === "MissingFile" && noTrain.file.endsWith("ptb.train.txt"));
  assert.match(noTrain.message, /ptb\.train\.txt.*not found.*--data DIR/);
  const noValid = left(await readCorpus(await corpusDir(tmp, { train: TRAIN })));
  assert.ok(noValid._tag === "MissingFile" && noValid.file.endsWith("ptb.valid.txt"));
});

Deno.test("readCorpus: NUL bytes, control bytes and invalid UTF-8 are reported with file and line", async () => {
  await using tmp = await tempDir("crt-data-");
  const withNul = new TextEncoder().encode(" a b\n c\0d\n");
  const e1 = left(await readCorpus(await corpusDir(tmp, { train: withNul, valid: VALID })));
  assert.ok(e1._tag === "NotText", e1.message);
  assert.equal(e1.line, 2);
  assert.equal(e1.byteOffset, 7);
  assert.match(e1.message, /ptb\.train\.txt: contains a NUL byte.*line 2/);

  const garbage = Uint8Array.from([0x20, 0x61, 0x0a, 0xff, 0xfe, 0x80, 0x01]);
  const e2 = left(await readCorpus(await corpusDir(tmp, { train: TRAIN, valid: garbage })));
  assert.ok(e2._tag === "NotText" && e2.file.endsWith("ptb.valid.txt"));
  assert.equal(e2.line, 2);
  assert.match(e2.message, /not UTF-8 text: invalid byte 0xff/);

  const control = new TextEncoder().encode("a \x1b[31m b\n");
  const e3 = left(await readCorpus(await corpusDir(tmp, { train: control, valid: VALID })));
  assert.ok(e3._tag === "NotText");
  assert.match(e3.message, /control byte 0x1b/);

  // Valid multi-byte UTF-8 is text; a truncated sequence is not.
  const ok = right(
    await readCorpus(await corpusDir(tmp, { train: "café naïve\n", valid: "café\n" })),
  );
  assert.equal(ok.vocab.words[1], "café");
  const cut = new TextEncoder().encode("caf\u00e9").slice(0, 4);
  const e4 = left(await readCorpus(await corpusDir(tmp, { train: cut, valid: VALID })));
  assert.match(e4.message, /truncated multi-byte/);
});

Deno.test("readCorpus: an empty or blank file is an EmptyFile error", async () => {
  await using tmp = await tempDir("crt-data-");
  const e1 = left(await readCorpus(await corpusDir(tmp, { train: "", valid: VALID })));
  assert.ok(e1._tag === "EmptyFile" && e1.file.endsWith("ptb.train.txt"));
  const e2 = left(await readCorpus(await corpusDir(tmp, { train: TRAIN, valid: "\n \n" })));
  assert.ok(e2._tag === "EmptyFile" && e2.file.endsWith("ptb.valid.txt"));
});

Deno.test("readCorpus: a valid-split word not in the train vocabulary names file, line and word", async () => {
  await using tmp = await tempDir("crt-data-");
  const e = left(
    await readCorpus(await corpusDir(tmp, { train: TRAIN, valid: " the cat\n the zebra\n" })),
  );
  assert.ok(e._tag === "UnknownWord");
  assert.equal(e.line, 2);
  assert.equal(e.word, "zebra");
  assert.ok(e.file.endsWith("ptb.valid.txt"));
  assert.match(e.message, /ptb\.valid\.txt line 2: word "zebra"/);
});

Deno.test("batchify: B contiguous streams, row-major, remainder dropped", () => {
  const s = batchify(Int32Array.from({ length: 11 }, (_, i) => i), 3);
  assert.equal(s.batchSize, 3);
  assert.equal(s.streamLen, 3);
  assert.deepEqual(Array.from(s.streams), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
  assert.throws(() => batchify(new Int32Array(5), 3), RangeError);
  assert.throws(() => batchify(new Int32Array(5), 0), RangeError);
});

function collect(it: Iterable<Window>): Window[] {
  return Array.from(it);
}

Deno.test("segmentWindows: targets are inputs shifted by one and windows tile each stream", () => {
  // Two streams of 10: [0..9] and [100..109].
  const tokens = Int32Array.from([
    ...Array(10).keys(),
    ...Array.from({ length: 10 }, (_, i) => 100 + i),
  ]);
  const s = batchify(tokens, 2);
  const opts = { segmentLen: 2, bpttSegments: 2 }; // W = 4, 9 predictions per stream
  const ws = collect(segmentWindows(s, opts));
  assert.equal(ws.length, 2);
  assert.equal(countWindows(s, opts), 2);
  assert.deepEqual(Array.from(ws[0].tokens), [0, 1, 2, 3, 100, 101, 102, 103]);
  assert.deepEqual(Array.from(ws[0].targets), [1, 2, 3, 4, 101, 102, 103, 104]);
  assert.deepEqual(Array.from(ws[1].tokens), [4, 5, 6, 7, 104, 105, 106, 107]);
  assert.deepEqual(Array.from(ws[1].targets), [5, 6, 7, 8, 105, 106, 107, 108]);
  assert.deepEqual(ws.map((w) => [w.position, w.nextPosition, w.length, w.windowLen]), [
    [0, 4, 4, 4],
    [4, 8, 4, 4],
  ]);
});

Deno.test("segmentWindows: pad mode covers every prediction once; padding follows real tokens", () => {
  const n = 23;
  const s = batchify(Int32Array.from({ length: n }, (_, i) => i + 1), 1);
  const opts = { segmentLen: 3, bpttSegments: 2, remainder: "pad" as const, padId: -1 };
  const ws = collect(segmentWindows(s, opts));
  assert.equal(ws.length, countWindows(s, opts));
  const seen: number[] = [];
  for (const w of ws) {
    for (let j = 0; j < w.windowLen; j++) {
      if (j < w.length) {
        assert.equal(w.targets[j], w.tokens[j] + 1);
        seen.push(w.targets[j]);
      } else {
        assert.equal(w.tokens[j], -1);
        assert.equal(w.targets[j], -1);
      }
    }
  }
  assert.deepEqual(seen, Array.from({ length: n - 1 }, (_, i) => i + 2));
  const last = ws[ws.length - 1];
  assert.equal(last.length, (n - 1) % 6);
  assert.equal(last.nextPosition, n - 1);
});

Deno.test("segmentWindows: resuming from a window's nextPosition yields the remaining windows exactly", () => {
  const s = batchify(Int32Array.from({ length: 200 }, (_, i) => (i * 7) % 13), 4);
  const opts = { segmentLen: 5, bpttSegments: 2 };
  const all = collect(segmentWindows(s, opts));
  const resumed = collect(segmentWindows(s, { ...opts, from: all[1].nextPosition }));
  assert.deepEqual(resumed, all.slice(2));
  assert.equal(countWindows(s, { ...opts, from: all[1].nextPosition }), all.length - 2);
  assert.throws(() => segmentWindows(s, { ...opts, from: 1000 }).next(), RangeError);
  assert.throws(() => segmentWindows(s, { segmentLen: 0, bpttSegments: 1 }).next(), RangeError);
});

/** The error `downloadPtb` into a fresh folder fails with, checking that it saved nothing there. */
async function failedDownload(opts: DownloadOptions): Promise<DataError> {
  await using tmp = await tempDir("crt-dl-");
  const e = left(await downloadPtb(tmp.path, opts));
  assert.deepEqual(Array.from(Deno.readDirSync(tmp.path)), [], `saved files after: ${e.message}`);
  return e;
}

Deno.test("downloadPtb: without network it fails fast, saying where to put the files", async () => {
  const offline = () => Promise.reject(new TypeError("dns error: no such host"));
  const e = await failedDownload({ fetch: offline });
  assert.ok(e._tag === "DownloadFailed" && e.url.endsWith("/ptb.train.txt"));
  assert.match(e.message, /dns error.*--data DIR.*CRT_DATA_DIR/);

  // A server that never answers is cut off by the timeout.
  const hang = (_: string | URL | Request, init?: RequestInit) =>
    new Promise<Response>((_resolve, reject) => {
      init?.signal?.addEventListener("abort", () => reject(init.signal?.reason));
    });
  const t = await failedDownload({ fetch: hang, timeoutMs: 20 });
  assert.match(t.message, /no response within 20 ms/);
});

Deno.test("downloadPtb: content with the wrong SHA-256 is rejected and not saved", async () => {
  const wrong = () => Promise.resolve(new Response("not the real ptb\n"));
  const e = await failedDownload({ fetch: wrong });
  assert.ok(e._tag === "ChecksumMismatch" && e.file.endsWith("ptb.train.txt"));
});

// The real PTB files, where $CRT_DATA_DIR points at a copy of them; the test is skipped otherwise.
const SHARED_PTB = (() => {
  const dir = Deno.env.get(DATA_DIR_ENV);
  return dir === undefined || dir === "" ? undefined : pathToFileURL(resolve(dir) + "/");
})();
const hasFile = (name: string): boolean => {
  if (SHARED_PTB === undefined) return false;
  try {
    return Deno.statSync(new URL(name, SHARED_PTB)).isFile;
  } catch {
    return false;
  }
};
const hasSharedPtb = hasFile("ptb.train.txt");

Deno.test({
  name: "loadPtb: cache download of the real files verifies the pinned hashes (served from disk)",
  ignore: !hasSharedPtb,
  async fn() {
    await using tmp = await tempDir("crt-cache-");
    const dir = join(tmp.path, "crt", "ptb");
    const serveFromDisk = async (input: string | URL | Request) => {
      const name = String(input).split("/").pop() ?? "";
      try {
        return new Response(await Deno.readFile(new URL(name, SHARED_PTB)));
      } catch {
        return new Response("not found", { status: 404 });
      }
    };
    const c = right(await loadPtb({ dir, source: "cache" }, { fetch: serveFromDisk }));
    // The test split is served when the folder has one (the project's copy deliberately does not).
    assert.equal(c.test?.length ?? null, hasFile("ptb.test.txt") ? 82_430 : null);
    assert.equal(c.train.length, 929_589);
    assert.equal(c.valid.length, 73_760);
    assert.equal(c.vocab.words.length, 10_000);
    assert.equal(c.vocab.words[0], "<eos>");
  },
});
