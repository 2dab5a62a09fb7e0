/**
 * The model file: one portable artefact holding a trained model's weights,
 * its resolved spec and its vocabulary, versioned and checksummed, readable
 * in Deno and in browsers (web APIs only: `crypto.subtle`, `TextDecoder`,
 * `DataView`; no file access here — the CLIs read and write the bytes).
 *
 * Layout (little-endian; offsets in bytes):
 *
 * | bytes | content |
 * | --- | --- |
 * | 0–7 | magic `CRTMODEL` |
 * | 8–11 | u32 format version ({@linkcode MODEL_FILE_VERSION}) |
 * | 12–15 | u32 header length h |
 * | 16–23 | u64 payload length p |
 * | 24 … 24+h | header: UTF-8 JSON, space-padded so the payload starts at a multiple of 16 |
 * | 24+h … 24+h+p | payload: each tensor at a 16-byte-aligned offset, float32 or int8, then its scales |
 * | last 32 | SHA-256 of every byte before it |
 *
 * The header is `{ format: "crt-model", spec, vocab, quantization, meta,
 * tensors }`; each tensor row is `{ name, shape, dtype: "f32" | "int8",
 * offset, scale? }` with `offset` relative to the payload and, for int8,
 * `scale: { axis, offset }` locating its float32 scales (see quantize.ts).
 * Tensor names are parameter paths (`blocks[0].attn.wq`); the table holds
 * exactly the leaves of `paramLayout(spec)`.
 *
 * Reading checks, in order: magic, version, length (truncated or trailing
 * bytes), checksum, header JSON and fields, spec (through
 * `decodeModelSpec`, so a bad spec is named by its path), vocabulary,
 * tensor table, then the weights: every float32 value (an int8 tensor's
 * scales; its int8 values are finite by construction) must be finite, since
 * a NaN or an infinity would only show up later as `ppl NaN` or garbage
 * text — one pass over the floats. Each failure is a {@linkcode ModelFileError} whose `reason`
 * says which check failed and whose message says what is wrong.
 *
 * @module
 */
import { describeError } from "../spec/errors.ts";
import * as t from "io-ts";
import { decodeWith } from "../spec/decode.ts";
import { NonNegativeInt, oneOf, optional, strict } from "../spec/combinators.ts";
import { decodeModelSpec } from "../spec/codecs.ts";
import type { ModelSpec } from "../spec/types.ts";
import { paramLayout } from "../spec/layout.ts";
import { isParamSpec, numel, type ParamSpec } from "../spec/params.ts";
import { flatten } from "../spec/tree.ts";
import { dequantize, type Int8Matrix, quantize } from "./quantize.ts";

/**
 * The format version this module writes and the only one it reads. Bumped
 * whenever the layout or the header's meaning changes.
 *
 * @example
 * ```ts
 * import { MODEL_FILE_VERSION } from "./model_file.ts";
 * console.log(`model files of version ${MODEL_FILE_VERSION}`);
 * ```
 */
export const MODEL_FILE_VERSION = 1;

/**
 * A model as stored in a model file: float32 weights, and int8 weights as
 * int8 (each dequantised only if its `data` is read).
 *
 * @example
 * ```ts
 * import type { ModelFile } from "./model_file.ts";
 * const describe = (m: ModelFile) =>
 *   `${m.spec._tag}, V = ${m.vocab.length}, ${m.quantization}, from ${String(m.meta.source ?? "?")}`;
 * ```
 */
export interface ModelFile {
  /** Format version of the file it was read from. */
  readonly version: number;
  /** The resolved model spec. */
  readonly spec: ModelSpec;
  /** Words by id (`vocab[0]` is `<eos>` for PTB-style vocabularies); length ≤ spec.vocabSize. */
  readonly vocab: readonly string[];
  /** How the weight matrices are stored in the file. */
  readonly quantization: "f32" | "int8";
  /**
   * Every parameter leaf by path. `data` is row-major float32; a leaf stored
   * int8 also has `q8`, its int8 values and scales as the file holds them,
   * and computes `data` from them only when `data` is first read.
   */
  readonly params: Record<string, ModelTensor>;
  /** Free-form provenance: source run, checkpoint, valid_ppl, created, … (JSON values). */
  readonly meta: Record<string, unknown>;
}

/**
 * One parameter of a model file: its shape and float32 values, and for an
 * int8 tensor its int8 form (`q8`; `data` is then dequantised on first
 * read, so a loader that runs int8 never makes the float32 copy).
 *
 * @example
 * ```ts
 * import type { ModelTensor } from "./model_file.ts";
 * const bytesOf = (t: ModelTensor) => (t.q8 === undefined ? 4 * t.data.length : t.q8.values.length);
 * ```
 */
export interface ModelTensor {
  /** Its shape. */
  readonly shape: number[];
  /** Its values, row-major float32 (for an int8 tensor computed from `q8` when first read). */
  readonly data: Float32Array;
  /** An int8 tensor's values and scales, as the file stores them. */
  readonly q8?: Int8Matrix;
}

/** A tensor stored int8: `data` dequantises `q8` when first read. */
const int8Tensor = (q8: Int8Matrix): ModelTensor => {
  let data: Float32Array | undefined;
  return {
    shape: [...q8.shape],
    q8,
    get data() {
      return data ??= dequantize(q8);
    },
  };
};

/**
 * Which check a model file failed.
 *
 * @example
 * ```ts
 * import type { ModelFileProblem } from "./model_file.ts";
 * const retryable = (p: ModelFileProblem) => p === "truncated"; // download again
 * ```
 */
export type ModelFileProblem =
  | "magic"
  | "version"
  | "truncated"
  | "length"
  | "checksum"
  | "header"
  | "spec"
  | "tensors"
  | "vocab"
  | "params"
  | "weights";

/**
 * A model file (or the model to encode) is not valid. `reason` names the
 * check that failed; the message says what is wrong and where.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeModelFile, ModelFileError } from "./model_file.ts";
 *
 * const err = await decodeModelFile(new TextEncoder().encode("hello")).catch((e) => e);
 * assert.ok(err instanceof ModelFileError);
 * assert.equal(err.reason, "magic");
 * console.log(err.message); // not a crt model file: it starts with "hello" …
 * ```
 */
export class ModelFileError extends Error {
  /** Error class name, for stack traces. */
  override readonly name = "ModelFileError";
  /** The check that failed. */
  readonly reason: ModelFileProblem;

  /**
   * A failed check of a model file.
   *
   * @param reason the check that failed
   * @param message what is wrong, readable as is
   */
  constructor(reason: ModelFileProblem, message: string) {
    super(message);
    this.reason = reason;
  }
}

const MAGIC = new TextEncoder().encode("CRTMODEL");
const PREFIX = 24;
const HASH = 32;
const ALIGN = 16;

const TensorRow = strict({
  name: t.string,
  shape: t.array(NonNegativeInt),
  dtype: oneOf(["f32", "int8"], "dtype"),
  offset: NonNegativeInt,
  scale: optional(
    strict({ axis: t.union([t.literal(0), t.literal(1)]), offset: NonNegativeInt }, "Scale"),
  ),
}, "TensorRow");
type TensorRow = t.TypeOf<typeof TensorRow>;

const Header = strict({
  format: t.literal("crt-model"),
  spec: t.unknown,
  vocab: t.array(t.string),
  quantization: oneOf(["f32", "int8"], "quantization"),
  meta: t.UnknownRecord,
  tensors: t.array(TensorRow),
}, "Header");

const bad = (reason: ModelFileProblem, message: string): ModelFileError =>
  new ModelFileError(reason, message);

const fmt = (s: readonly number[]): string => `[${s.join(", ")}]`;
const sameShape = (a: readonly number[], b: readonly number[]): boolean =>
  a.length === b.length && a.every((d, i) => d === b[i]);
const alignUp = (n: number): number => Math.ceil(n / ALIGN) * ALIGN;

/** The index of the first NaN or ±Infinity in `a`, or −1 (one pass, no allocation). */
const firstNonFinite = (a: Float32Array): number => {
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    if (v - v !== 0) return i; // NaN − NaN and ∞ − ∞ are NaN; every finite v gives 0
  }
  return -1;
};

/** Lookup tables keep one scale per row; weight matrices (x · W) one per column. */
const scaleAxis = (path: string): 0 | 1 => (path === "embed" || path === "pos" ? 0 : 1);

const hex = (bytes: Uint8Array): string =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

const sha256 = async (bytes: Uint8Array): Promise<Uint8Array> =>
  new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));

/** Layout leaves of a spec by path. */
const leavesOf = (spec: ModelSpec): Map<string, ParamSpec> =>
  new Map(flatten(paramLayout(spec), isParamSpec));

/** Problems with a vocabulary for `spec`, or null. */
const vocabProblem = (vocab: readonly string[], spec: ModelSpec): string | null => {
  if (vocab.length === 0) return "vocab: empty";
  if (vocab.length > spec.vocabSize) {
    return `vocab: ${vocab.length} words, more than model.vocabSize (${spec.vocabSize})`;
  }
  const seen = new Map<string, number>();
  for (let i = 0; i < vocab.length; i++) {
    const w = vocab[i];
    if (w === "" || /\s/.test(w)) {
      return `vocab[${i}]: ${
        JSON.stringify(w)
      } is empty or holds whitespace (words are split on it)`;
    }
    const j = seen.get(w);
    if (j !== undefined) return `vocab[${i}]: ${JSON.stringify(w)} repeats vocab[${j}]`;
    seen.set(w, i);
  }
  return null;
};

/**
 * Encode a model into model-file bytes. With `int8`, every rank-2 graph
 * parameter (weight matrices, embeddings, learned positions) is stored as
 * int8 with one scale per channel — per row for the lookup tables `embed`
 * and `pos`, per column (output channel) for every other matrix — and
 * vectors (biases, LayerNorm) and NC-GRU's auxiliary generators stay
 * float32. Throws {@linkcode ModelFileError} when the spec does not decode,
 * the parameters do not match its layout, or the vocabulary does not fit.
 *
 * @example Round trip through bytes
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeModelFile, encodeModelFile } from "./model_file.ts";
 * import { paramLayout } from "../spec/layout.ts";
 * import { referenceTransformer } from "../spec/reference_specs.ts";
 * import { isParamSpec, numel } from "../spec/params.ts";
 * import { flatten } from "../spec/tree.ts";
 *
 * const spec = { ...referenceTransformer, vocabSize: 4, dModel: 8, nHeads: 2, dFF: 8, nLayers: 1 };
 * const params = Object.fromEntries(
 *   flatten(paramLayout(spec), isParamSpec).map(([path, p]) => [
 *     path,
 *     { shape: [...p.shape], data: new Float32Array(numel(p.shape)).fill(0.5) },
 *   ]),
 * );
 * const vocab = ["<eos>", "a", "b", "<unk>"];
 * const bytes = await encodeModelFile({ spec, vocab, params, meta: { note: "example" } });
 * const back = await decodeModelFile(bytes);
 * assert.deepEqual(back.vocab, vocab);
 * assert.equal(back.params["blocks[0].ffn.w1"].data[3], 0.5);
 * ```
 */
export async function encodeModelFile(
  m: Omit<ModelFile, "version" | "quantization">,
  opts: { int8?: boolean } = {},
): Promise<Uint8Array> {
  const decoded = decodeModelSpec(m.spec);
  if (decoded._tag === "Left") throw bad("spec", `spec: ${decoded.left.message}`);
  const spec = m.spec;
  const vp = vocabProblem(m.vocab, spec);
  if (vp !== null) throw bad("vocab", vp);
  const leaves = leavesOf(spec);
  for (const name of Object.keys(m.params)) {
    if (!leaves.has(name)) {
      throw bad("params", `params: ${name} is not a parameter of this ${spec._tag}`);
    }
  }
  const int8 = opts.int8 === true;
  const rows: TensorRow[] = [];
  const chunks: { offset: number; bytes: Uint8Array }[] = [];
  let size = 0;
  const place = (bytes: Uint8Array): number => {
    const offset = alignUp(size);
    chunks.push({ offset, bytes });
    size = offset + bytes.length;
    return offset;
  };
  const asBytes = (a: Float32Array | Int8Array): Uint8Array =>
    new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  for (const [name, p] of leaves) {
    const given = m.params[name];
    if (given === undefined) throw bad("params", `params: ${name} is missing`);
    if (!sameShape(given.shape, p.shape) || given.data.length !== numel(p.shape)) {
      throw bad(
        "params",
        `params: ${name} is ${fmt(given.shape)} with ${given.data.length} values, ` +
          `the model wants ${fmt(p.shape)}`,
      );
    }
    const at = given.data.findIndex((v) => !Number.isFinite(v));
    if (at >= 0) throw bad("params", `params: ${name}[${at}] is ${given.data[at]}`);
    if (int8 && p.role === "graph" && p.shape.length === 2) {
      const q = quantize(given.data, [p.shape[0], p.shape[1]], scaleAxis(name));
      const offset = place(asBytes(q.values));
      const scaleOffset = place(asBytes(q.scales));
      rows.push({
        name,
        shape: [...p.shape],
        dtype: "int8",
        offset,
        scale: { axis: q.axis, offset: scaleOffset },
      });
    } else {
      rows.push({ name, shape: [...p.shape], dtype: "f32", offset: place(asBytes(given.data)) });
    }
  }
  const payloadBytes = alignUp(size);
  const header = {
    format: "crt-model",
    spec,
    vocab: [...m.vocab],
    quantization: int8 ? "int8" : "f32",
    meta: m.meta,
    tensors: rows,
  };
  let json = new TextEncoder().encode(JSON.stringify(header));
  const h = alignUp(PREFIX + json.length) - PREFIX;
  const padded = new Uint8Array(h).fill(0x20);
  padded.set(json);
  json = padded;
  const out = new Uint8Array(PREFIX + h + payloadBytes + HASH);
  out.set(MAGIC, 0);
  const view = new DataView(out.buffer);
  view.setUint32(8, MODEL_FILE_VERSION, true);
  view.setUint32(12, h, true);
  view.setBigUint64(16, BigInt(payloadBytes), true);
  out.set(json, PREFIX);
  for (const c of chunks) out.set(c.bytes, PREFIX + h + c.offset);
  const body = out.subarray(0, out.length - HASH);
  out.set(await sha256(body), out.length - HASH);
  return out;
}

/**
 * Read model-file bytes: verify them (see the module doc for the order of
 * checks) and return the model: float32 tensors (views into `bytes` when
 * aligned) and int8 ones as int8 (their `data` dequantised on first read).
 * Throws {@linkcode ModelFileError}.
 *
 * @example A corrupted byte is caught by the checksum
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeModelFile, encodeModelFile, ModelFileError } from "./model_file.ts";
 * import { paramLayout } from "../spec/layout.ts";
 * import { referenceTransformer } from "../spec/reference_specs.ts";
 * import { isParamSpec, numel } from "../spec/params.ts";
 * import { flatten } from "../spec/tree.ts";
 *
 * const spec = { ...referenceTransformer, vocabSize: 4, dModel: 8, nHeads: 2, dFF: 8, nLayers: 1 };
 * const params = Object.fromEntries(
 *   flatten(paramLayout(spec), isParamSpec).map(([path, p]) => [
 *     path,
 *     { shape: [...p.shape], data: new Float32Array(numel(p.shape)) },
 *   ]),
 * );
 * const bytes = await encodeModelFile({ spec, vocab: ["<eos>", "a"], params, meta: {} });
 * bytes[bytes.length - 40] ^= 1;
 * const err = await decodeModelFile(bytes).catch((e) => e);
 * assert.ok(err instanceof ModelFileError && err.reason === "checksum");
 * ```
 */
export async function decodeModelFile(bytes: Uint8Array): Promise<ModelFile> {
  const n = bytes.length;
  const head = bytes.subarray(0, Math.min(n, MAGIC.length));
  if (!head.every((b, i) => b === MAGIC[i]) || n === 0) {
    const shown = JSON.stringify(new TextDecoder().decode(head));
    throw bad(
      "magic",
      n === 0
        ? "not a crt model file: it is empty"
        : `not a crt model file: it starts with ${shown} (0x${hex(head)}), not "CRTMODEL"`,
    );
  }
  if (n < PREFIX) {
    throw bad("truncated", `truncated: ${n} bytes, shorter than the ${PREFIX}-byte prefix`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (version !== MODEL_FILE_VERSION) {
    throw bad(
      "version",
      `model file version ${version} is not supported: this crt reads version ` +
        `${MODEL_FILE_VERSION} (export the model again with this crt)`,
    );
  }
  const h = view.getUint32(12, true);
  const p = Number(view.getBigUint64(16, true));
  const expected = PREFIX + h + p + HASH;
  if (n < expected) {
    throw bad(
      "truncated",
      `truncated: the prefix describes ${expected} bytes (header ${h}, payload ${p}, ` +
        `checksum ${HASH}), the file has ${n}`,
    );
  }
  if (n > expected) {
    throw bad(
      "length",
      `${n - expected} unexpected bytes after the checksum (file ${n}, expected ${expected})`,
    );
  }
  const digest = await sha256(bytes.subarray(0, n - HASH));
  const stored = bytes.subarray(n - HASH);
  if (!digest.every((b, i) => b === stored[i])) {
    throw bad(
      "checksum",
      `checksum mismatch: the file is corrupt (SHA-256 of its contents ${hex(digest)}, ` +
        `recorded ${hex(stored)})`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(PREFIX, PREFIX + h)),
    );
  } catch (e) {
    throw bad("header", `header is not JSON: ${describeError(e)}`);
  }
  const hd = decodeWith(Header, "header", raw);
  if (hd._tag === "Left") throw bad("header", hd.left.message);
  const header = hd.right;
  const sd = decodeModelSpec(header.spec, "spec");
  if (sd._tag === "Left") throw bad("spec", sd.left.message);
  const spec = sd.right;
  const vp = vocabProblem(header.vocab, spec);
  if (vp !== null) throw bad("vocab", vp);

  // The tensor table: exactly the layout's leaves, inside the payload, not overlapping.
  const leaves = leavesOf(spec);
  const payload = PREFIX + h;
  const spans: { from: number; to: number; what: string }[] = [];
  const span = (what: string, offset: number, len: number): void => {
    if (offset % 4 !== 0) throw bad("tensors", `${what}: offset ${offset} is not 4-byte aligned`);
    if (offset + len > p) {
      throw bad(
        "tensors",
        `${what}: bytes ${offset} … ${offset + len} lie outside the payload (${p})`,
      );
    }
    spans.push({ from: offset, to: offset + len, what });
  };
  const params: Record<string, ModelTensor> = {};
  // Floats to check once the table is known sound: a tensor's values or an int8 tensor's scales.
  const floats: { what: string; values: Float32Array }[] = [];
  const seen = new Set<string>();
  let int8Count = 0;
  header.tensors.forEach((row, i) => {
    const at = `header.tensors[${i}] (${row.name})`;
    const leaf = leaves.get(row.name);
    if (leaf === undefined) throw bad("tensors", `${at}: not a parameter of this ${spec._tag}`);
    if (seen.has(row.name)) throw bad("tensors", `${at}: listed twice`);
    seen.add(row.name);
    if (!sameShape(row.shape, leaf.shape)) {
      throw bad("tensors", `${at}: shape ${fmt(row.shape)}, the spec gives ${fmt(leaf.shape)}`);
    }
    const count = numel(row.shape);
    if (row.dtype === "f32") {
      if (row.scale !== undefined) throw bad("tensors", `${at}: a float32 tensor has no scales`);
      span(at, row.offset, 4 * count);
      const start = payload + row.offset;
      const data = (bytes.byteOffset + start) % 4 === 0
        ? new Float32Array(bytes.buffer, bytes.byteOffset + start, count)
        : new Float32Array(bytes.slice(start, start + 4 * count).buffer);
      params[row.name] = { shape: [...row.shape], data };
      floats.push({ what: at, values: data });
      return;
    }
    int8Count++;
    if (row.shape.length !== 2 || row.scale === undefined) {
      throw bad("tensors", `${at}: an int8 tensor must be a matrix with scales`);
    }
    const [r, c] = row.shape;
    const scale = row.scale;
    const channels = scale.axis === 0 ? r : c;
    span(at, row.offset, count);
    span(`${at} scales`, scale.offset, 4 * channels);
    const qStart = payload + row.offset, sStart = payload + scale.offset;
    const values = new Int8Array(bytes.buffer, bytes.byteOffset + qStart, count);
    const scales = new Float32Array(bytes.slice(sStart, sStart + 4 * channels).buffer);
    params[row.name] = int8Tensor({ shape: [r, c], axis: scale.axis, values, scales });
    floats.push({ what: `${at} scales`, values: scales });
  });
  for (const name of leaves.keys()) {
    if (!seen.has(name)) throw bad("tensors", `header.tensors: parameter ${name} is missing`);
  }
  spans.sort((a, b) => a.from - b.from);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i].from < spans[i - 1].to) {
      throw bad("tensors", `${spans[i].what} overlaps ${spans[i - 1].what}`);
    }
  }
  if ((header.quantization === "int8") !== (int8Count > 0)) {
    throw bad(
      "tensors",
      `header.quantization is "${header.quantization}" but ${int8Count} tensors are int8`,
    );
  }
  for (const { what, values } of floats) {
    const i = firstNonFinite(values);
    if (i >= 0) {
      throw bad(
        "weights",
        `${what}: element ${i} is ${values[i]}; a model's weights must be finite ` +
          `(the model diverged in training, or the file was written wrong)`,
      );
    }
  }
  return {
    version,
    spec,
    vocab: header.vocab,
    quantization: header.quantization,
    params,
    meta: header.meta,
  };
}
