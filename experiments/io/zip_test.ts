import assert from "node:assert/strict";
import { join } from "node:path";
import { createZip, extractZipEntries } from "./zip.ts";

const enc = new TextEncoder();
/** Text that deflates to many blocks: 200 k pseudo-random words. */
const big = (() => {
  let x = 7;
  const words: string[] = [];
  for (let i = 0; i < 200_000; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    words.push(`w${x % 5000}`);
  }
  return words.join(" ");
})();

const withDir = async (f: (dir: string) => Promise<void>) => {
  const dir = await Deno.makeTempDir();
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
};

const archive = () =>
  createZip([
    { name: "release/train.txt", data: enc.encode(big) },
    { name: "release/valid.txt", data: enc.encode("valid\n") },
    { name: "release/readme.txt", data: enc.encode("skip me\n") },
  ]);

Deno.test("extractZipEntries: a multi-megabyte entry and a small one come out whole; others are skipped", async () => {
  await withDir(async (dir) => {
    await Deno.writeFile(join(dir, "r.zip"), archive());
    const r = await extractZipEntries(join(dir, "r.zip"), [
      { suffix: "/train.txt", to: join(dir, "train.txt") },
      { suffix: "/valid.txt", to: join(dir, "valid.txt") },
    ]);
    assert.deepEqual(r, { _tag: "Right", right: undefined });
    assert.equal(await Deno.readTextFile(join(dir, "train.txt")), big);
    assert.equal(await Deno.readTextFile(join(dir, "valid.txt")), "valid\n");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "r.zip",
      "train.txt",
      "valid.txt",
    ]);
  });
});

/** `extractZipEntries` on `bytes` must be a Left matching `re` and leave only the archive. */
const refuses = async (bytes: Uint8Array, suffix: string, re: RegExp) => {
  await withDir(async (dir) => {
    await Deno.writeFile(join(dir, "r.zip"), bytes);
    const r = await extractZipEntries(join(dir, "r.zip"), [
      { suffix: "/valid.txt", to: join(dir, "valid.txt") },
      { suffix, to: join(dir, "wanted.txt") },
    ]);
    assert.equal(r._tag, "Left");
    if (r._tag === "Left") assert.match(r.left, re);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["r.zip"]);
  });
};

Deno.test("extractZipEntries: a missing or doubled entry is named, and nothing is left behind", async () => {
  await refuses(archive(), "/test.txt", /no entry ending in \/test\.txt \(entries: release\/train/);
  const doubled = createZip([
    { name: "a/valid.txt", data: enc.encode("1") },
    { name: "b/valid.txt", data: enc.encode("2") },
  ]);
  await refuses(doubled, "/x.txt", /more than one entry ending in \/valid\.txt/);
});

Deno.test("extractZipEntries: corrupt or truncated deflate data is a Left naming the entry", async () => {
  const zip = archive();
  const corrupt = zip.slice();
  for (let i = 5000; i < 5400; i++) corrupt[i] ^= 0x5a;
  await refuses(corrupt, "/train.txt", /release\/train\.txt: /);
  await refuses(zip.slice(0, 20000), "/train.txt", /train\.txt: |truncated|no entry/);
  await refuses(enc.encode("not a zip at all"), "/train.txt", /not a zip/);
});
