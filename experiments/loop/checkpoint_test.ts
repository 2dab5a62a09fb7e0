import assert from "node:assert/strict";
import { tempDir } from "../../tests/_temp.ts";
import { join } from "node:path";
import * as E from "fp-ts/lib/Either.js";
import {
  type CheckpointError,
  checkpointFileName,
  readLatestCheckpoint,
  writeCheckpoint,
} from "./checkpoint.ts";
import { type Checkpoint, decodeCheckpoint, encodeCheckpoint } from "./checkpoint_format.ts";

function sample(step: number): Checkpoint {
  const w = Float32Array.from({ length: 12 }, (_, i) => i * 0.5 - step);
  return {
    step,
    data: { epoch: 1, position: 70 * step },
    rng: { dropout: [1, 2, 3, step + 4] },
    optimizer: {
      scalars: { t: step, lr: 2.5e-4 },
      tensors: { "m.embed.w": { shape: [3, 4], data: w.map((x) => x / 10) } },
    },
    params: {
      "embed.w": { shape: [3, 4], data: w },
      "blocks[0].ln.g": { shape: [3], data: Float32Array.of(NaN, -0, Infinity) },
      scalar: { shape: [], data: Float32Array.of(7) },
      empty: { shape: [0, 5], data: new Float32Array(0) },
    },
    memory: { memory: { shape: [2, 3], data: Float32Array.of(1, 2, 3, 4, 5, 6) } },
    meta: { experiment: "ptb-crt", config: { lr: 2.5e-4 } },
  };
}

/** A fresh checkpoint directory, removed when the test's `await using` scope ends. */
const checkpointDir = (): Promise<AsyncDisposable & { path: string }> => tempDir("crt-ckpt-");

function right<A>(r: E.Either<CheckpointError, A>): A {
  if (E.isLeft(r)) assert.fail(`${r.left._tag}: ${r.left.message}`);
  return r.right;
}

function assertSameCheckpoint(actual: Checkpoint, expected: Checkpoint) {
  const plain = (c: Checkpoint) =>
    JSON.parse(
      JSON.stringify(c, (_k, v) => (v instanceof Float32Array ? Array.from(v, String) : v)),
    );
  assert.deepEqual(plain(actual), plain(expected));
  // Bit-exact float data, including NaN and -0.
  const bits = (d: Float32Array) => Array.from(new Uint32Array(d.slice().buffer));
  assert.deepEqual(
    bits(actual.params["blocks[0].ln.g"].data),
    bits(expected.params["blocks[0].ln.g"].data),
  );
}

/** The header length an encoded checkpoint stores at byte 8; its JSON header follows at byte 12. */
const headerLength = (bytes: Uint8Array): number => new DataView(bytes.buffer).getUint32(8, true);

/** The JSON header of an encoded checkpoint, as text. */
const headerText = (bytes: Uint8Array): string =>
  new TextDecoder().decode(bytes.subarray(12, 12 + headerLength(bytes)));

/**
 * Checks that a copy of `bytes` whose header text `edit` changes (keeping
 * its length) does not decode, with an error matching `problem`.
 */
async function assertForgedHeaderRejected(
  bytes: Uint8Array,
  edit: (header: string) => string,
  problem: RegExp,
): Promise<void> {
  const copy = bytes.slice();
  copy.set(new TextEncoder().encode(edit(headerText(bytes))), 12);
  const r = await decodeCheckpoint(copy);
  assert.ok(E.isLeft(r));
  assert.match(r.left, problem);
}

Deno.test("writeCheckpoint / readLatestCheckpoint: round trip is exact", async () => {
  await using tmp = await checkpointDir();
  const dir = tmp.path;
  const ckpt = sample(3);
  const written = right(await writeCheckpoint(dir, ckpt));
  assert.equal(written.file, join(dir, "ckpt-000000003.bin"));
  const loaded = right(await readLatestCheckpoint(dir));
  assert.equal(loaded.file, written.file);
  assert.deepEqual(loaded.skipped, []);
  assertSameCheckpoint(loaded.checkpoint, ckpt);
  assert.deepEqual(Object.keys(loaded.checkpoint.params), Object.keys(ckpt.params));
});

Deno.test("encodeCheckpoint: header is JSON after the magic and the payload is 8-byte aligned", async () => {
  const bytes = await encodeCheckpoint(sample(1));
  const headerLen = headerLength(bytes);
  assert.equal((12 + headerLen) % 8, 0);
  const header = JSON.parse(headerText(bytes));
  assert.equal(header.format, "crt-checkpoint");
  assert.equal(header.version, 2);
  assert.equal(header.payloadBytes, bytes.length - 12 - headerLen);
  assert.match(header.payloadSha256, /^[0-9a-f]{64}$/);
  assert.deepEqual(header.tensors[0], {
    group: "params",
    name: "embed.w",
    shape: [3, 4],
    offset: 0,
    length: 12,
  });
});

/** Writes the checkpoints of steps 1 and 2 to `dir`; `newest` is step 2's file. */
async function stepsOneAndTwo(dir: string): Promise<{ dir: string; newest: string }> {
  right(await writeCheckpoint(dir, sample(1)));
  right(await writeCheckpoint(dir, sample(2)));
  return { dir, newest: join(dir, checkpointFileName(2)) };
}

Deno.test("readLatestCheckpoint: a checkpoint cut off mid-write is skipped for the previous one", async () => {
  await using tmp = await checkpointDir();
  const { dir, newest } = await stepsOneAndTwo(tmp.path);
  const full = await Deno.readFile(newest);
  for (const cut of [full.length - 1, 100, 10]) {
    await Deno.writeFile(newest, full.subarray(0, cut));
    const loaded = right(await readLatestCheckpoint(dir));
    assert.equal(loaded.checkpoint.step, 1);
    assert.equal(loaded.skipped.length, 1);
    assert.equal(loaded.skipped[0].file, newest);
    assert.match(loaded.skipped[0].reason, /truncated|not JSON/);
  }
});

Deno.test("readLatestCheckpoint: a flipped payload byte fails the checksum and is skipped", async () => {
  await using tmp = await checkpointDir();
  const { dir, newest } = await stepsOneAndTwo(tmp.path);
  const bytes = await Deno.readFile(newest);
  bytes[bytes.length - 3] ^= 0x10;
  await Deno.writeFile(newest, bytes);
  const loaded = right(await readLatestCheckpoint(dir));
  assert.equal(loaded.checkpoint.step, 1);
  assert.match(loaded.skipped[0].reason, /SHA-256/);
});

Deno.test("readLatestCheckpoint: leftover temp files are ignored, and cleaned by the next write", async () => {
  await using tmp = await checkpointDir();
  const dir = tmp.path;
  right(await writeCheckpoint(dir, sample(2)));
  // A complete, newer checkpoint under a temp name: a write interrupted before its rename.
  const leftover = join(dir, ".ckpt-3-interrupted.tmp");
  await Deno.writeFile(leftover, await encodeCheckpoint(sample(3)));
  assert.equal(right(await readLatestCheckpoint(dir)).checkpoint.step, 2);
  const w = right(await writeCheckpoint(dir, sample(4)));
  assert.ok(w.removed.includes(leftover));
  assert.deepEqual(Array.from(Deno.readDirSync(dir), (e) => e.name).sort(), [
    "ckpt-000000002.bin",
    "ckpt-000000004.bin",
  ]);
});

Deno.test("writeCheckpoint: keeps the last 2 checkpoints", async () => {
  await using tmp = await checkpointDir();
  const dir = tmp.path;
  for (const step of [10, 20, 30, 40]) right(await writeCheckpoint(dir, sample(step)));
  assert.deepEqual(Array.from(Deno.readDirSync(dir), (e) => e.name).sort(), [
    "ckpt-000000030.bin",
    "ckpt-000000040.bin",
  ]);
  right(await writeCheckpoint(dir, sample(50), { keep: 1 }));
  assert.deepEqual(Array.from(Deno.readDirSync(dir), (e) => e.name), ["ckpt-000000050.bin"]);
});

Deno.test("readLatestCheckpoint: no valid checkpoint is a NoCheckpoint error listing what was skipped", async () => {
  await using tmp = await checkpointDir();
  const dir = tmp.path;
  const missing = await readLatestCheckpoint(join(dir, "nope"));
  assert.ok(E.isLeft(missing) && missing.left._tag === "NoCheckpoint");
  await Deno.writeTextFile(join(dir, checkpointFileName(5)), "garbage");
  const r = await readLatestCheckpoint(dir);
  assert.ok(E.isLeft(r) && r.left._tag === "NoCheckpoint");
  assert.equal(r.left.skipped.length, 1);
  assert.match(r.left.message, /ckpt-000000005\.bin \(not a checkpoint file/);
});

Deno.test("readLatestCheckpoint: a file whose header step disagrees with its name is skipped", async () => {
  await using tmp = await checkpointDir();
  const dir = tmp.path;
  right(await writeCheckpoint(dir, sample(1)));
  await Deno.writeFile(join(dir, checkpointFileName(9)), await encodeCheckpoint(sample(2)));
  const loaded = right(await readLatestCheckpoint(dir));
  assert.equal(loaded.checkpoint.step, 1);
  assert.match(loaded.skipped[0].reason, /does not match the file name/);
});

Deno.test("encodeCheckpoint / decodeCheckpoint: invariants and header validation", async () => {
  const bad = sample(1);
  await assert.rejects(
    () => encodeCheckpoint({ ...bad, params: { w: { shape: [2, 2], data: new Float32Array(3) } } }),
    /params\.w: 3 values do not fill shape \[2, 2\]/,
  );
  await assert.rejects(
    () => encodeCheckpoint({ ...bad, optimizer: { scalars: { lr: NaN }, tensors: {} } }),
    /lr = NaN is not finite/,
  );
  await assertForgedHeaderRejected(
    await encodeCheckpoint(sample(1)),
    (text) => text.replace('"version":2', '"version":7'),
    /bad header.*version/,
  );
});

Deno.test("decodeCheckpoint: a version 1 file, whose memory group was named carry, reads as memory", async () => {
  // Written by the version 1 writer (before the group was renamed); see testdata/.
  const bytes = await Deno.readFile(
    new URL("./testdata/ckpt-v1-000000005.bin", import.meta.url),
  );
  const r = await decodeCheckpoint(bytes);
  if (E.isLeft(r)) assert.fail(r.left);
  const c = r.right;
  assert.equal(c.step, 5);
  assert.deepEqual(c.data, { epoch: 0, position: 350 });
  assert.deepEqual(Object.keys(c.memory), ["memory"]);
  assert.deepEqual(c.memory.memory.shape, [1, 3]);
  assert.deepEqual(Array.from(c.memory.memory.data), [0.25, -1, 3]);
  assert.deepEqual(Array.from(c.params.w.data), [1, 2]);
  assert.deepEqual(Array.from(c.optimizer.tensors["m:w"].data), [0.5, -0.5]);
  // Written again, it is a version 2 file with the same tensors.
  const again = await encodeCheckpoint(c);
  const header = JSON.parse(headerText(again));
  assert.equal(header.version, 2);
  assert.deepEqual(header.tensors.map((e: { group: string }) => e.group), [
    "params",
    "optimizer",
    "memory",
  ]);
});

Deno.test("decodeCheckpoint: a version 2 file may not name a group carry", async () => {
  await assertForgedHeaderRejected(
    await encodeCheckpoint(sample(1)),
    (text) => text.replace('"group":"memory"', '"group":"carry" '),
    /bad header.*group/,
  );
});
