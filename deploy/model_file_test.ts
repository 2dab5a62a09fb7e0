import assert from "node:assert/strict";
import { ensureBackend } from "../ops/backend.ts";
import { paramLayout } from "../spec/layout.ts";
import { referenceCrt } from "../spec/reference_specs.ts";
import { isParamSpec } from "../spec/params.ts";
import { flatten } from "../spec/tree.ts";
import { tinyCrtGru, tinyCrtNcgru, tinyXl } from "../tests/_tiny.ts";
import { tinyModelFile, withFloat } from "./_testing.ts";
import {
  decodeModelFile,
  encodeModelFile,
  MODEL_FILE_VERSION,
  ModelFileError,
  type ModelFileProblem,
} from "./model_file.ts";

await ensureBackend({ backend: "cpu" });

/** A CRT big enough that int8 sizes mean something (≈ 26 k parameters). */
const smallCrt = {
  ...referenceCrt,
  vocabSize: 100,
  dModel: 32,
  nHeads: 4,
  dFF: 64,
  nLayers: 2,
  segmentLen: 8,
  memory: { ...referenceCrt.memory, dMemory: 32 },
};

/** The documented layout, read independently of the encoder. */
const unpack = (bytes: Uint8Array) => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h = view.getUint32(12, true);
  const p = Number(view.getBigUint64(16, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(24, 24 + h)));
  return {
    version: view.getUint32(8, true),
    h,
    p,
    header,
    payload: bytes.slice(24 + h, 24 + h + p),
  };
};

/** Bytes of a file with the given header bytes (JSON or not) and payload, checksum correct. */
const repackBytes = async (
  json: Uint8Array,
  payload: Uint8Array,
  version = MODEL_FILE_VERSION,
): Promise<Uint8Array> => {
  const h = Math.ceil((24 + json.length) / 16) * 16 - 24;
  const out = new Uint8Array(24 + h + payload.length + 32);
  out.set(new TextEncoder().encode("CRTMODEL"));
  const view = new DataView(out.buffer);
  view.setUint32(8, version, true);
  view.setUint32(12, h, true);
  view.setBigUint64(16, BigInt(payload.length), true);
  out.fill(0x20, 24, 24 + h);
  out.set(json, 24);
  out.set(payload, 24 + h);
  const body = out.subarray(0, out.length - 32);
  out.set(new Uint8Array(await crypto.subtle.digest("SHA-256", body)), out.length - 32);
  return out;
};

/** Bytes of a file with the given header and payload, checksum correct. */
const repack = (header: unknown, payload: Uint8Array): Promise<Uint8Array> =>
  repackBytes(new TextEncoder().encode(JSON.stringify(header)), payload);

const rejects = async (
  bytes: Uint8Array,
  reason: ModelFileProblem,
  message: RegExp,
): Promise<void> => {
  const err = await decodeModelFile(bytes).then(() => null, (e) => e);
  assert.ok(err instanceof ModelFileError, `expected a ModelFileError, got ${err}`);
  assert.equal(err.reason, reason, err.message);
  assert.match(err.message, message);
};

Deno.test("encodeModelFile/decodeModelFile: f32 round trip is exact for every layout leaf", async () => {
  for (const spec of [tinyCrtGru, tinyCrtNcgru, tinyXl]) {
    const meta = { source: "unit", valid_ppl: 123.4, nested: { a: [1, 2] } };
    const { bytes, params, vocab } = await tinyModelFile(spec, { meta });
    const m = await decodeModelFile(bytes);
    assert.equal(m.version, MODEL_FILE_VERSION);
    assert.equal(m.quantization, "f32");
    assert.deepEqual(m.spec, spec);
    assert.deepEqual(m.vocab, vocab);
    assert.deepEqual(m.meta, meta);
    const paths = flatten(paramLayout(spec), isParamSpec).map(([p]) => p);
    assert.deepEqual(Object.keys(m.params).sort(), [...paths].sort()); // aux leaves included
    for (const p of paths) {
      assert.deepEqual(m.params[p].shape, params[p].shape, p);
      assert.deepEqual(Array.from(m.params[p].data), Array.from(params[p].data), p);
    }
    // The documented layout: 16-aligned payload, checksum of everything before it.
    const u = unpack(bytes);
    assert.equal((24 + u.h) % 16, 0);
    assert.equal(bytes.length, 24 + u.h + u.p + 32);
    assert.equal(u.header.format, "crt-model");
  }
});

Deno.test("encodeModelFile --int8: matrices int8 per channel, vectors exact, ≈ 4× smaller", async () => {
  const f32 = await tinyModelFile(smallCrt, { seed: 1 });
  const q = await tinyModelFile(smallCrt, { seed: 1, int8: true });
  const m = await decodeModelFile(q.bytes);
  assert.equal(m.quantization, "int8");
  const rows = unpack(q.bytes).header.tensors as {
    name: string;
    dtype: string;
    scale?: { axis: number };
  }[];
  const layout = new Map(flatten(paramLayout(smallCrt), isParamSpec));
  for (const row of rows) {
    const leaf = layout.get(row.name)!;
    const original = f32.params[row.name].data, back = m.params[row.name].data;
    if (leaf.shape.length !== 2) {
      assert.equal(row.dtype, "f32", row.name);
      assert.deepEqual(Array.from(back), Array.from(original), row.name);
      continue;
    }
    assert.equal(row.dtype, "int8", row.name);
    // Tables one scale per row, weights (x · W) one per column; error ≤ half a step.
    const axis = row.name === "embed" || row.name === "pos" ? 0 : 1;
    assert.equal(row.scale?.axis, axis, row.name);
    const [r, c] = leaf.shape;
    for (let ch = 0; ch < (axis === 0 ? r : c); ch++) {
      let max = 0, err = 0;
      for (let k = 0; k < (axis === 0 ? c : r); k++) {
        const i = axis === 0 ? ch * c + k : k * c + ch;
        max = Math.max(max, Math.abs(original[i]));
        err = Math.max(err, Math.abs(original[i] - back[i]));
      }
      assert.ok(err <= (max / 127) * 0.5 + 1e-7, `${row.name} channel ${ch}: error ${err}`);
    }
  }
  const ratio = q.bytes.length / f32.bytes.length;
  assert.ok(ratio > 0.25 && ratio < 0.4, `int8 / f32 size ${ratio}`);
});

Deno.test("decodeModelFile: wrong magic, wrong version, truncated, trailing bytes", async () => {
  const { bytes } = await tinyModelFile(tinyCrtGru);
  await rejects(new TextEncoder().encode("PK\x03\x04 a zip"), "magic", /not a crt model file/);
  await rejects(new Uint8Array(0), "magic", /empty/);
  const v2 = bytes.slice();
  new DataView(v2.buffer).setUint32(8, MODEL_FILE_VERSION + 1, true);
  await rejects(
    v2,
    "version",
    new RegExp(
      `version ${MODEL_FILE_VERSION + 1} is not supported.*reads version ${MODEL_FILE_VERSION}`,
    ),
  );
  for (const cut of [12, 100, Math.floor(bytes.length / 2), bytes.length - 1]) {
    await rejects(bytes.slice(0, cut), "truncated", /truncated/);
  }
  const longer = new Uint8Array(bytes.length + 3);
  longer.set(bytes);
  await rejects(longer, "length", /3 unexpected bytes after the checksum/);
});

Deno.test("decodeModelFile: a flipped bit anywhere is a checksum mismatch", async () => {
  const { bytes } = await tinyModelFile(tinyCrtGru);
  for (const at of [30, bytes.length - 100, bytes.length - 1]) {
    const bad = bytes.slice();
    bad[at] ^= 0x10;
    await rejects(bad, "checksum", /checksum mismatch: the file is corrupt/);
  }
});

Deno.test("decodeModelFile: a bad spec, header or tensor table is named", async () => {
  const { bytes } = await tinyModelFile(tinyCrtGru);
  const { header, payload } = unpack(bytes);
  await rejects(
    await repack({ ...header, spec: { ...header.spec, nHeads: 3 } }, payload),
    "spec",
    /spec\.nHeads: 3 does not divide spec\.dModel \(8\)/,
  );
  await rejects(
    await repack({ ...header, spec: { ...header.spec, _tag: "lstm" } }, payload),
    "spec",
    /spec\._tag/,
  );
  await rejects(
    await repack({ ...header, vocab: "w1 w2" }, payload),
    "header",
    /header\.vocab/,
  );
  await rejects(
    await repack({ ...header, vocab: [...header.vocab, "extra"] }, payload),
    "vocab",
    /8 words, more than model\.vocabSize \(7\)/,
  );
  const tensors = header.tensors as { name: string; shape: number[]; offset: number }[];
  await rejects(
    await repack({ ...header, tensors: tensors.filter((t) => t.name !== "head.w") }, payload),
    "tensors",
    /parameter head\.w is missing/,
  );
  await rejects(
    await repack({
      ...header,
      tensors: tensors.map((t) => (t.name === "embed" ? { ...t, shape: [7, 9] } : t)),
    }, payload),
    "tensors",
    /\(embed\): shape \[7, 9\], the spec gives \[7, 8\]/,
  );
  await rejects(
    await repack({
      ...header,
      tensors: tensors.map((t) => (t.name === "lnF.bias" ? { ...t, offset: payload.length } : t)),
    }, payload),
    "tensors",
    /lnF\.bias.*outside the payload/,
  );
  const garbled = new TextEncoder().encode("{ not json");
  await rejects(await repackBytes(garbled, payload), "header", /header is not JSON/);
});

Deno.test("encodeModelFile: refuses parameters that do not fit the spec, and bad vocabularies", async () => {
  const { params, vocab } = await tinyModelFile(tinyCrtGru);
  const encode = (patch: Partial<{ params: typeof params; vocab: string[] }>) =>
    encodeModelFile({ spec: tinyCrtGru, vocab, params, meta: {}, ...patch }).then(
      () => null,
      (e) => e,
    );
  const { ["head.w"]: _, ...missing } = params;
  const cases: [Promise<unknown>, ModelFileProblem, RegExp][] = [
    [encode({ params: missing }), "params", /head\.w is missing/],
    [
      encode({ params: { ...params, embed: { shape: [7, 9], data: new Float32Array(63) } } }),
      "params",
      /embed is \[7, 9\] with 63 values, the model wants \[7, 8\]/,
    ],
    [
      encode({
        params: { ...params, "lnF.gain": { shape: [8], data: new Float32Array(8).fill(NaN) } },
      }),
      "params",
      /lnF\.gain\[0\] is NaN/,
    ],
    [
      encode({ params: { ...params, "blocks[9].x": params.embed } }),
      "params",
      /blocks\[9\]\.x is not a parameter/,
    ],
    [encode({ vocab: ["a", "b", "a"] }), "vocab", /vocab\[2\]: "a" repeats vocab\[0\]/],
    [encode({ vocab: ["a b"] }), "vocab", /whitespace/],
  ];
  for (const [p, reason, message] of cases) {
    const err = await p;
    assert.ok(err instanceof ModelFileError, String(err));
    assert.equal(err.reason, reason);
    assert.match(err.message, message);
  }
});

Deno.test("decodeModelFile: a NaN or infinite weight is refused, naming the tensor and the element", async () => {
  const f32 = await tinyModelFile(tinyCrtGru);
  for (
    const [name, index, value] of [["blocks[0].attn.wq", 5, NaN], [
      "lnF.bias",
      0,
      -Infinity,
    ]] as const
  ) {
    await rejects(
      await withFloat(f32.bytes, name, index, value),
      "weights",
      new RegExp(
        `header\\.tensors\\[\\d+\\] \\(${name.replace(/[[\].]/g, "\\$&")}\\): ` +
          `element ${index} is ${value}; a model's weights must be finite`,
      ),
    );
  }
  // int8: the values are finite by construction; the scales are checked.
  const q = await tinyModelFile(smallCrt, { int8: true });
  await rejects(
    await withFloat(q.bytes, "head.w", 3, Infinity, { scale: true }),
    "weights",
    /\(head\.w\) scales: element 3 is Infinity; a model's weights must be finite/,
  );
  // The untouched files still load.
  await decodeModelFile(f32.bytes);
  await decodeModelFile(q.bytes);
});
