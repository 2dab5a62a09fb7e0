import assert from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { decodeNpy, encodeNpy, readNpyHeader } from "./npy.ts";

/** `np.save(f, (np.arange(6, dtype='<f4') / 4).reshape(2, 3))` with NumPy 2.4: the first 128 bytes. */
const NUMPY_HEADER_HEX =
  "934e554d5059010076007b276465736372273a20273c6634272c2027666f727472616e5f" +
  "6f72646572273a2046616c73652c20277368617065273a2028322c2033292c207d202020" +
  "202020202020202020202020202020202020202020202020202020202020202020202020" +
  "202020202020202020202020202020202020200a";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

/** A .npy file with the given header dict (version 1.0, 64-byte aligned) and data bytes. */
const withHeader = (dict: string, dataBytes: number): Uint8Array => {
  const total = Math.ceil((10 + dict.length + 1) / 64) * 64;
  const header = dict.padEnd(total - 10 - 1) + "\n";
  const out = new Uint8Array(total + dataBytes);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 0xff, header.length >> 8]);
  out.set(new TextEncoder().encode(header), 10);
  return out;
};

const reason = (r: E.Either<{ message: string }, unknown>): string => {
  if (E.isRight(r)) assert.fail("expected a Left");
  return r.left.message;
};

Deno.test("encodeNpy writes the bytes NumPy writes for a float32 matrix", () => {
  const bytes = encodeNpy({ shape: [2, 3], data: Float32Array.of(0, 0.25, 0.5, 0.75, 1, 1.25) });
  assert.equal(bytes.length, 128 + 24);
  assert.equal(hex(bytes.subarray(0, 128)), NUMPY_HEADER_HEX);
  assert.equal(new DataView(bytes.buffer).getFloat32(128 + 4, true), 0.25);
});

Deno.test("decodeNpy round-trips encodeNpy, including non-aligned header lengths", () => {
  for (const [t, f] of [[1, 1], [3, 5], [17, 1024], [1000, 3]] as const) {
    const data = Float32Array.from({ length: t * f }, (_, i) => Math.sin(i) * 1e3);
    const r = decodeNpy(encodeNpy({ shape: [t, f], data }));
    if (E.isLeft(r)) assert.fail(r.left.message);
    assert.deepEqual(r.right.shape, [t, f]);
    assert.deepEqual(Array.from(r.right.data), Array.from(data));
    assert.equal((10 + readHeaderLen(encodeNpy({ shape: [t, f], data }))) % 64, 0);
  }
});

const readHeaderLen = (b: Uint8Array) => b[8] | (b[9] << 8);

Deno.test("decodeNpy reads format 2.0 (uint32 header length)", () => {
  const v1 = encodeNpy({ shape: [2, 3], data: Float32Array.of(1, 2, 3, 4, 5, 6) });
  const headerLen = readHeaderLen(v1);
  const v2 = new Uint8Array(v1.length + 2);
  v2.set(v1.subarray(0, 8));
  v2[6] = 2;
  new DataView(v2.buffer).setUint32(8, headerLen, true);
  v2.set(v1.subarray(10), 12);
  const r = decodeNpy(v2);
  if (E.isLeft(r)) assert.fail(r.left.message);
  assert.equal(r.right.data[5], 6);
});

Deno.test("decodeNpy refuses what is not a float32 C-order matrix, naming the file and the fix", () => {
  const f = "features/x.npy";
  assert.match(
    reason(
      decodeNpy(withHeader("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 48), f),
    ),
    /^features\/x\.npy: dtype '<f8' \(float64\), expected '<f4' .*astype\('<f4'\)/,
  );
  assert.match(
    reason(
      decodeNpy(withHeader("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", 24), f),
    ),
    /dtype '>f4' \(big-endian float32\)/,
  );
  assert.match(
    reason(
      decodeNpy(withHeader("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24), f),
    ),
    /fortran_order is True/,
  );
  assert.match(
    reason(
      decodeNpy(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", 24), f),
    ),
    /shape \(6,\) is not 2-D: expected \(frames, features\)/,
  );
  assert.match(
    reason(
      decodeNpy(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }", 0), f),
    ),
    /shape \(0, 3\) is empty/,
  );
  assert.match(
    reason(
      decodeNpy(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20), f),
    ),
    /truncated data: shape \(2, 3\) float32 needs 24 bytes after the header, found 20/,
  );
  assert.match(
    reason(
      decodeNpy(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 28), f),
    ),
    /trailing bytes/,
  );
  assert.match(
    reason(decodeNpy(new TextEncoder().encode("clip,label\n"), f)),
    /no \\x93NUMPY magic/,
  );
  assert.match(reason(decodeNpy(new Uint8Array(3), f)), /too short: 3 bytes/);
  const future = encodeNpy({ shape: [1, 1], data: Float32Array.of(1) });
  future[6] = 9;
  assert.match(reason(decodeNpy(future, f)), /unsupported \.npy format version 9\.0/);
  assert.match(
    reason(decodeNpy(withHeader("{'shape': (2, 3)}", 24), f)),
    /malformed \.npy header/,
  );
});

Deno.test("readNpyHeader needs only the header, and says where the data starts", () => {
  const whole = encodeNpy({ shape: [40, 7], data: new Float32Array(280) });
  const h = readNpyHeader(whole.subarray(0, 128));
  if (E.isLeft(h)) assert.fail(h.left.message);
  assert.deepEqual(h.right, { version: [1, 0], shape: [40, 7], dataOffset: 128 });
  assert.match(reason(readNpyHeader(whole.subarray(0, 64), "x.npy")), /truncated \.npy header/);
});

Deno.test("encodeNpy rejects data that does not fill the shape", () => {
  assert.throws(
    () => encodeNpy({ shape: [2, 2], data: new Float32Array(3) }),
    /3 values do not fill shape \(2, 2\)/,
  );
});
