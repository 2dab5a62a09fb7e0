/**
 * A minimal reader and writer of NumPy `.npy` files holding one float32
 * matrix, for per-frame video features ([T, F]: T frames, F features).
 *
 * The format (NumPy's `format.py`, NEP 1): the magic bytes `\x93NUMPY`, a
 * major and a minor version byte, the header length (uint16 little-endian in
 * version 1.0, uint32 in 2.0 and 3.0), then the header — a Python dict
 * literal such as `{'descr': '<f4', 'fortran_order': False, 'shape': (120, 1024), }`
 * padded with spaces and ended by a newline so that the data starts on a
 * 64-byte boundary (16 in old files) — then the raw data, row-major.
 *
 * What is accepted: versions 1.0, 2.0 and 3.0; `descr` `<f4` (little-endian
 * float32; `|f4`/`=f4` are not written by NumPy for float32 and are refused);
 * `fortran_order` False; a 2-D shape with at least one row and one column;
 * exactly `T·F·4` data bytes after the header. Anything else is a
 * {@linkcode NpyError} whose message says what was found and how to fix it
 * (`np.save(path, x.astype(np.float32))`). The writer emits version 1.0 with
 * a 64-byte-aligned header, as NumPy does.
 *
 * @example Round trip
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeNpy, encodeNpy } from "./npy.ts";
 *
 * const bytes = encodeNpy({ shape: [2, 3], data: Float32Array.of(1, 2, 3, 4, 5, 6) });
 * const back = decodeNpy(bytes);
 * if (back._tag === "Left") throw new Error(back.left.message);
 * assert.deepEqual(back.right.shape, [2, 3]);
 * assert.equal(back.right.data[5], 6);
 * ```
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type { Either } from "../../spec/either.ts";

/**
 * A float32 matrix [rows, cols], row-major: frame t's features are
 * `data[t·cols .. (t+1)·cols)`.
 *
 * @example
 * ```ts
 * import type { NpyMatrix } from "./npy.ts";
 * const clip: NpyMatrix = { shape: [2, 2], data: Float32Array.of(0.1, 0.2, 0.3, 0.4) };
 * ```
 */
export interface NpyMatrix {
  /** [T, F]. */
  readonly shape: readonly [number, number];
  /** T·F values, row-major. */
  readonly data: Float32Array;
}

/**
 * Why bytes are not a float32 `.npy` matrix. `reason` says what was found
 * (`dtype '<f8' (float64)`), `message` adds the file when known.
 *
 * @example
 * ```ts
 * import { decodeNpy } from "./npy.ts";
 * const r = decodeNpy(new Uint8Array(4), "features/a.npy");
 * if (r._tag === "Left") console.log(r.left.message); // features/a.npy: not a .npy file (too short: 4 bytes)
 * ```
 */
export interface NpyError {
  /** Discriminant. */
  readonly _tag: "NpyError";
  /** What is wrong, without the file name. */
  readonly reason: string;
  /** `<file>: <reason>` (or just the reason when no file was named). */
  readonly message: string;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

const DTYPE_NAMES: Readonly<Record<string, string>> = {
  f2: "float16",
  f4: "float32",
  f8: "float64",
  i1: "int8",
  i2: "int16",
  i4: "int32",
  i8: "int64",
  u1: "uint8",
  u2: "uint16",
  u4: "uint32",
  u8: "uint64",
  b1: "bool",
};

const fail = (reason: string, file?: string): Either<NpyError, never> =>
  E.left({
    _tag: "NpyError",
    reason,
    message: file === undefined ? reason : `${file}: ${reason}`,
  });

/**
 * What the header of a `.npy` file declares, and where its data starts.
 *
 * @example
 * ```ts
 * import { encodeNpy, readNpyHeader } from "./npy.ts";
 * const h = readNpyHeader(encodeNpy({ shape: [5, 4], data: new Float32Array(20) }));
 * if (h._tag === "Right") console.log(h.right.shape, h.right.dataOffset); // [5, 4] 64
 * ```
 */
export interface NpyHeader {
  /** Format version, e.g. `[1, 0]`. */
  readonly version: readonly [number, number];
  /** [T, F]. */
  readonly shape: readonly [number, number];
  /** Byte offset of the first value. */
  readonly dataOffset: number;
}

/**
 * Parses and checks the header only (the first bytes of a file suffice:
 * 10 plus the declared header length). Checks everything except that the
 * data is all there; {@linkcode decodeNpy} checks that too.
 *
 * @example A float64 file is refused with a fix
 * ```ts
 * import assert from "node:assert/strict";
 * import { readNpyHeader } from "./npy.ts";
 *
 * const header = "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }";
 * const padded = header.padEnd(64 - 10 - 1) + "\n";
 * const bytes = new Uint8Array(10 + padded.length);
 * bytes.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, padded.length, 0]);
 * bytes.set(new TextEncoder().encode(padded), 10);
 * const r = readNpyHeader(bytes, "a.npy");
 * assert(r._tag === "Left");
 * assert.match(r.left.message, /^a\.npy: dtype '<f8' \(float64\), expected '<f4'/);
 * ```
 */
export function readNpyHeader(bytes: Uint8Array, file?: string): Either<NpyError, NpyHeader> {
  if (bytes.length < 10) return fail(`not a .npy file (too short: ${bytes.length} bytes)`, file);
  if (!MAGIC.every((b, i) => bytes[i] === b)) {
    return fail("not a .npy file (no \\x93NUMPY magic at the start)", file);
  }
  const major = bytes[6], minor = bytes[7];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLen: number, start: number;
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) return fail(`truncated .npy header (${bytes.length} bytes)`, file);
    headerLen = view.getUint32(8, true);
    start = 12;
  } else {
    return fail(`unsupported .npy format version ${major}.${minor} (1.0, 2.0 or 3.0)`, file);
  }
  const dataOffset = start + headerLen;
  if (bytes.length < dataOffset) {
    return fail(
      `truncated .npy header: it declares ${headerLen} bytes, the file has ${
        bytes.length - start
      } after the preamble`,
      file,
    );
  }
  const text = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(
    bytes.subarray(start, dataOffset),
  );
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(text)?.[1];
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(text)?.[1];
  const shapeText = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    return fail(
      `malformed .npy header ${JSON.stringify(text.trim())} (expected 'descr', ` +
        `'fortran_order' and 'shape')`,
      file,
    );
  }
  if (descr !== "<f4") {
    const kind = DTYPE_NAMES[descr.slice(1)];
    const what = kind === undefined ? "" : ` (${descr[0] === ">" ? "big-endian " : ""}${kind})`;
    return fail(
      `dtype '${descr}'${what}, expected '<f4' (little-endian float32): ` +
        `save with np.save(path, x.astype('<f4'))`,
      file,
    );
  }
  if (fortran !== "False") {
    return fail(
      "fortran_order is True: save a C-ordered array (np.save(path, np.ascontiguousarray(x)))",
      file,
    );
  }
  const dims = shapeText.split(",").map((d) => d.trim()).filter((d) => d !== "");
  if (dims.length !== 2 || dims.some((d) => !/^\d+$/.test(d))) {
    return fail(
      `shape (${shapeText.trim()}) is not 2-D: expected (frames, features), one row per frame`,
      file,
    );
  }
  const [t, f] = dims.map(Number) as [number, number];
  if (t === 0 || f === 0) {
    return fail(
      `shape (${t}, ${f}) is empty: a clip needs at least one frame and one feature`,
      file,
    );
  }
  return E.right({ version: [major, minor], shape: [t, f], dataOffset });
}

/**
 * Decodes a whole float32 `.npy` file: header checks as
 * {@linkcode readNpyHeader}, then exactly T·F·4 data bytes. The returned
 * data is a copy (safe to keep after `bytes` is reused).
 *
 * @example A truncated file names the shortfall
 * ```ts
 * import { decodeNpy, encodeNpy } from "./npy.ts";
 * const whole = encodeNpy({ shape: [4, 2], data: new Float32Array(8) });
 * const r = decodeNpy(whole.subarray(0, whole.length - 4), "clip.npy");
 * if (r._tag === "Left") console.log(r.left.message);
 * // clip.npy: truncated data: shape (4, 2) float32 needs 32 bytes after the header, found 28
 * ```
 */
export function decodeNpy(bytes: Uint8Array, file?: string): Either<NpyError, NpyMatrix> {
  const h = readNpyHeader(bytes, file);
  if (E.isLeft(h)) return h;
  const [t, f] = h.right.shape;
  const need = t * f * 4;
  const have = bytes.length - h.right.dataOffset;
  if (have !== need) {
    return fail(
      `${have < need ? "truncated data" : "trailing bytes"}: shape (${t}, ${f}) float32 needs ` +
        `${need} bytes after the header, found ${have}`,
      file,
    );
  }
  const raw = bytes.slice(h.right.dataOffset, h.right.dataOffset + need);
  const data = new Float32Array(raw.buffer, 0, t * f);
  // Float32Array reads in the platform's byte order; .npy '<f4' is little-endian.
  if (!LITTLE_ENDIAN) {
    const view = new DataView(raw.buffer);
    for (let i = 0; i < data.length; i++) data[i] = view.getFloat32(i * 4, true);
  }
  return E.right({ shape: [t, f], data });
}

const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/**
 * Encodes a float32 matrix as a version 1.0 `.npy` file that `np.load`
 * reads (header padded so the data starts at a multiple of 64 bytes).
 * Throws a `RangeError` when the data does not fill the shape.
 *
 * @example
 * ```ts
 * import { encodeNpy } from "./npy.ts";
 * const bytes = encodeNpy({ shape: [1, 3], data: Float32Array.of(1, 2, 3) });
 * const file = await Deno.makeTempFile({ suffix: ".npy" });
 * await Deno.writeFile(file, bytes); // python3 -c "import numpy; print(numpy.load(FILE))"
 * await Deno.remove(file);
 * ```
 */
export function encodeNpy(m: NpyMatrix): Uint8Array<ArrayBuffer> {
  const [t, f] = m.shape;
  if (!Number.isInteger(t) || !Number.isInteger(f) || t < 1 || f < 1) {
    throw new RangeError(`encodeNpy: shape (${t}, ${f}) must be positive integers`);
  }
  if (m.data.length !== t * f) {
    throw new RangeError(`encodeNpy: ${m.data.length} values do not fill shape (${t}, ${f})`);
  }
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${t}, ${f}), }`;
  const unpadded = 10 + dict.length + 1; // preamble, dict, newline
  const total = Math.ceil(unpadded / 64) * 64;
  const header = dict + " ".repeat(total - unpadded) + "\n";
  if (header.length > 0xffff) throw new RangeError("encodeNpy: header too long for version 1.0");
  const out = new Uint8Array(total + t * f * 4);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  const view = new DataView(out.buffer, total);
  for (let i = 0; i < m.data.length; i++) view.setFloat32(i * 4, m.data[i], true);
  return out;
}
