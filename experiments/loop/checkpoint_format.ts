/**
 * The checkpoint file format: what a checkpoint holds (step, data position,
 * RNG states, optimizer scalars and tensors, parameters and the carried
 * memory) and its bytes. Reading and writing files is `checkpoint.ts`.
 *
 * File `ckpt-<step, 9 digits>.bin`, little-endian:
 *
 * | bytes | content |
 * | --- | --- |
 * | 0–7 | magic `CRTCKPT\n` |
 * | 8–11 | u32 header length h |
 * | 12 … 12+h | header: UTF-8 JSON, space-padded so the payload starts at a multiple of 8 |
 * | 12+h … end | payload: the tensors' float32 data, back to back, in header order |
 *
 * The header ({@linkcode CheckpointHeader}) holds `format`, `version`, `step`,
 * `data`, `rng`, `optimizerScalars`, `meta`, the tensor table (group, name,
 * shape, byte offset into the payload, element count), `payloadBytes` and
 * `payloadSha256`. A file is valid only when the header decodes, the file is
 * exactly 12 + h + payloadBytes long, the tensor table tiles the payload and
 * the payload hash matches.
 *
 * This file does not depend on tfjs: tensors are `{ shape, data: Float32Array }`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeCheckpoint, encodeCheckpoint } from "./checkpoint_format.ts";
 * const bytes = await encodeCheckpoint({
 *   step: 10,
 *   data: { epoch: 0, position: 700 },
 *   rng: { dropout: [1, 2, 3, 4] },
 *   optimizer: { scalars: { t: 10 }, tensors: {} },
 *   params: { "embed.w": { shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) } },
 *   memory: {},
 *   meta: { experiment: "ptb-crt" },
 * });
 * const r = await decodeCheckpoint(bytes);
 * assert(r._tag === "Right" && r.right.step === 10);
 * ```
 *
 * @module
 */
import { describeError } from "../../spec/errors.ts";
import { sha256Hex } from "../io/sha256.ts";
import * as E from "fp-ts/lib/Either.js";
import * as t from "io-ts";
import { PathReporter } from "io-ts/lib/PathReporter.js";
import type { DataPosition } from "../data/windows.ts";
import { isRngState, type RngState } from "./rng.ts";

/**
 * A host tensor: row-major float32 data and its shape.
 *
 * @example
 * ```ts
 * import type { Tensor } from "./checkpoint_format.ts";
 * const w: Tensor = { shape: [2, 3], data: new Float32Array(6) };
 * ```
 */
export interface Tensor {
  /** Dimensions, outermost first; `[]` for a scalar. */
  readonly shape: readonly number[];
  /** `product(shape)` values, row-major. */
  readonly data: Float32Array;
}

/**
 * Tensors by name (e.g. `blocks[1].attn.wq`).
 *
 * @example
 * ```ts
 * import type { Tensors } from "./checkpoint_format.ts";
 * const params: Tensors = { "blocks[0].attn.wq": { shape: [4, 4], data: new Float32Array(16) } };
 * ```
 */
export type Tensors = Readonly<Record<string, Tensor>>;

/**
 * What a checkpoint holds.
 *
 * @example
 * ```ts
 * import type { Checkpoint } from "./checkpoint_format.ts";
 * const ckpt: Checkpoint = {
 *   step: 100,
 *   data: { epoch: 0, position: 7000 },
 *   rng: { dropout: [1, 2, 3, 4] },
 *   optimizer: { scalars: { t: 100 }, tensors: {} },
 *   params: {},
 *   memory: { memory: { shape: [2, 8], data: new Float32Array(16) } },
 *   meta: { experiment: "ptb-crt" },
 * };
 * ```
 */
export interface Checkpoint {
  /** Optimizer steps taken. */
  readonly step: number;
  /** Where the next window starts. */
  readonly data: DataPosition;
  /** Every generator's state by purpose, e.g. `{ dropout: rng.state() }`. */
  readonly rng: Readonly<Record<string, RngState>>;
  /** The optimizer's state, as a pure optimizer function takes and returns it. */
  readonly optimizer: {
    /** Finite numbers only (e.g. Adam's step count, the current learning rate). */
    readonly scalars: Readonly<Record<string, number>>;
    /** E.g. `m.blocks[0].attn.wq`, `v.blocks[0].attn.wq`. */
    readonly tensors: Tensors;
  };
  /** Model parameters by path, e.g. `blocks[0].attn.wq`. */
  readonly params: Tensors;
  /**
   * The model state carried across windows by name (CRT's `memory` [B, M],
   * XL's `cache[l]`), as `TrainState.memory` holds it; needed for an exact resume.
   */
  readonly memory: Tensors;
  /** Any JSON value (config, vocabulary hash, …); read back as `unknown`. */
  readonly meta: unknown;
}

/**
 * The three tensor groups of a checkpoint.
 *
 * @example
 * ```ts
 * import type { TensorGroup } from "./checkpoint_format.ts";
 * const groups: TensorGroup[] = ["params", "optimizer", "memory"];
 * ```
 */
export type TensorGroup = "params" | "optimizer" | "memory";

/**
 * One row of the header's tensor table.
 *
 * @example
 * ```ts
 * import type { TensorEntry } from "./checkpoint_format.ts";
 * const e: TensorEntry = { group: "params", name: "w", shape: [2], offset: 0, length: 2 };
 * ```
 */
export interface TensorEntry {
  /** Which part of the checkpoint the tensor belongs to. */
  readonly group: TensorGroup;
  /** Its name within the group. */
  readonly name: string;
  /** Its shape. */
  readonly shape: readonly number[];
  /** Byte offset into the payload (a multiple of 4; entries tile the payload in order). */
  readonly offset: number;
  /** Element count, `product(shape)`. */
  readonly length: number;
}

/**
 * Codec of {@linkcode TensorEntry}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TensorEntry } from "./checkpoint_format.ts";
 * const r = TensorEntry.decode({ group: "params", name: "w", shape: [2], offset: 0, length: 2 });
 * assert(r._tag === "Right");
 * ```
 */
export const TensorEntry: t.Type<TensorEntry, TensorEntry, unknown> = t.type({
  group: t.keyof({ params: null, optimizer: null, memory: null }),
  name: t.string,
  shape: t.readonlyArray(t.number),
  offset: t.number,
  length: t.number,
});

/**
 * The JSON header of a checkpoint file (format version 2; version 1 files,
 * which name the `memory` group `carry`, are read as version 2).
 *
 * @example
 * ```ts
 * import type { CheckpointHeader } from "./checkpoint_format.ts";
 * const describe = (h: CheckpointHeader) => `step ${h.step}, ${h.tensors.length} tensors`;
 * ```
 */
export interface CheckpointHeader {
  /** Always `crt-checkpoint`. */
  readonly format: "crt-checkpoint";
  /** Format version; readers reject versions they do not know. */
  readonly version: 2;
  /** {@linkcode Checkpoint.step}. */
  readonly step: number;
  /** {@linkcode Checkpoint.data}. */
  readonly data: DataPosition;
  /** {@linkcode Checkpoint.rng}, validated as RNG states on read. */
  readonly rng: Readonly<Record<string, readonly number[]>>;
  /** {@linkcode Checkpoint.optimizer} scalars. */
  readonly optimizerScalars: Readonly<Record<string, number>>;
  /** {@linkcode Checkpoint.meta}. */
  readonly meta: unknown;
  /** Where each tensor's data is in the payload. */
  readonly tensors: readonly TensorEntry[];
  /** Payload length in bytes. */
  readonly payloadBytes: number;
  /** SHA-256 of the payload, lowercase hex. */
  readonly payloadSha256: string;
}

/**
 * Codec of {@linkcode CheckpointHeader}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CheckpointHeader } from "./checkpoint_format.ts";
 * assert(CheckpointHeader.decode({ format: "crt-checkpoint" })._tag === "Left");
 * ```
 */
export const CheckpointHeader: t.Type<CheckpointHeader, CheckpointHeader, unknown> = t.type({
  format: t.literal("crt-checkpoint"),
  version: t.literal(2),
  step: t.number,
  data: t.type({ epoch: t.number, position: t.number }),
  rng: t.record(t.string, t.readonlyArray(t.number)),
  optimizerScalars: t.record(t.string, t.number),
  meta: t.unknown,
  tensors: t.readonlyArray(TensorEntry),
  payloadBytes: t.number,
  payloadSha256: t.string,
});

const MAGIC = new TextEncoder().encode("CRTCKPT\n");
const PREFIX = MAGIC.length + 4;

function assertLittleEndian(): void {
  if (new Uint8Array(Uint32Array.of(1).buffer)[0] !== 1) {
    throw new Error("checkpoint: big-endian hosts are not supported");
  }
}

function isNat(x: number): boolean {
  return Number.isSafeInteger(x) && x >= 0;
}

function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Serialises a checkpoint to the bytes of a checkpoint file. Throws on a
 * broken invariant (data length ≠ product of shape, non-finite scalar,
 * invalid RNG state, negative step or position).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeCheckpoint } from "./checkpoint_format.ts";
 * const bytes = await encodeCheckpoint({
 *   step: 0, data: { epoch: 0, position: 0 }, rng: {},
 *   optimizer: { scalars: {}, tensors: {} },
 *   params: { w: { shape: [3], data: new Float32Array(3) } }, memory: {}, meta: null,
 * });
 * assert(new TextDecoder().decode(bytes.subarray(0, 7)) === "CRTCKPT");
 * ```
 */
export async function encodeCheckpoint(ckpt: Checkpoint): Promise<Uint8Array<ArrayBuffer>> {
  assertLittleEndian();
  if (!isNat(ckpt.step)) {
    throw new RangeError(`checkpoint: step must be a natural number, got ${ckpt.step}`);
  }
  if (!isNat(ckpt.data.epoch) || !isNat(ckpt.data.position)) {
    throw new RangeError(`checkpoint: bad data position ${JSON.stringify(ckpt.data)}`);
  }
  for (const [k, s] of Object.entries(ckpt.rng)) {
    if (!isRngState(s)) throw new RangeError(`checkpoint: rng.${k} is not a valid RNG state`);
  }
  for (const [k, v] of Object.entries(ckpt.optimizer.scalars)) {
    if (!Number.isFinite(v)) {
      throw new RangeError(`checkpoint: optimizer scalar ${k} = ${v} is not finite`);
    }
  }
  const groups: readonly [TensorGroup, Tensors][] = [
    ["params", ckpt.params],
    ["optimizer", ckpt.optimizer.tensors],
    ["memory", ckpt.memory],
  ];
  const entries: TensorEntry[] = [];
  const datas: Float32Array[] = [];
  let offset = 0;
  for (const [group, tensors] of groups) {
    for (const [name, { shape, data }] of Object.entries(tensors)) {
      if (!shape.every(isNat) || sizeOf(shape) !== data.length) {
        throw new RangeError(
          `checkpoint: ${group}.${name}: ${data.length} values do not fill shape [${
            shape.join(", ")
          }]`,
        );
      }
      entries.push({ group, name, shape: [...shape], offset, length: data.length });
      datas.push(data);
      offset += data.byteLength;
    }
  }
  const payload = new Uint8Array(offset);
  for (let i = 0; i < datas.length; i++) {
    const d = datas[i];
    payload.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), entries[i].offset);
  }
  const header: CheckpointHeader = {
    format: "crt-checkpoint",
    version: 2,
    step: ckpt.step,
    data: { epoch: ckpt.data.epoch, position: ckpt.data.position },
    rng: Object.fromEntries(Object.entries(ckpt.rng).map(([k, s]) => [k, [...s]])),
    optimizerScalars: { ...ckpt.optimizer.scalars },
    meta: ckpt.meta ?? null,
    tensors: entries,
    payloadBytes: payload.length,
    payloadSha256: await sha256Hex(payload),
  };
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil((PREFIX + json.length) / 8) * 8 - PREFIX;
  if (padded > json.length) {
    const p = new Uint8Array(padded).fill(0x20); // JSON allows trailing whitespace
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(PREFIX + json.length + payload.length);
  out.set(MAGIC, 0);
  new DataView(out.buffer).setUint32(MAGIC.length, json.length, true);
  out.set(json, PREFIX);
  out.set(payload, PREFIX + json.length);
  return out;
}

/**
 * A version 1 header as version 2: version 1 named the `memory` group
 * `carry`. Anything else is returned as is, for the codec to judge.
 */
function fromVersion1(raw: unknown): unknown {
  if (typeof raw !== "object" || raw === null) return raw;
  const h = raw as { version?: unknown; tensors?: unknown };
  if (h.version !== 1 || !Array.isArray(h.tensors)) return raw;
  const tensors = h.tensors.map((e: unknown) =>
    typeof e === "object" && e !== null && (e as { group?: unknown }).group === "carry"
      ? { ...e, group: "memory" }
      : e
  );
  return { ...h, version: 2, tensors };
}

/**
 * Parses and verifies the bytes of a checkpoint file. The tensors are views
 * on `bytes` (no copy). `Left(reason)` says what failed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeCheckpoint, encodeCheckpoint } from "./checkpoint_format.ts";
 * const bytes = await encodeCheckpoint({
 *   step: 3, data: { epoch: 0, position: 0 }, rng: {},
 *   optimizer: { scalars: {}, tensors: {} }, params: {}, memory: {}, meta: null,
 * });
 * const ok = await decodeCheckpoint(bytes);
 * assert(ok._tag === "Right" && ok.right.step === 3);
 * const cut = await decodeCheckpoint(bytes.slice(0, 20));
 * assert(cut._tag === "Left");
 * ```
 */
export async function decodeCheckpoint(
  bytes: Uint8Array<ArrayBuffer>,
): Promise<E.Either<string, Checkpoint>> {
  assertLittleEndian();
  if (!MAGIC.every((b, i) => i >= bytes.length || bytes[i] === b)) {
    return E.left("not a checkpoint file (bad magic)");
  }
  if (bytes.length < PREFIX) {
    return E.left(`truncated: ${bytes.length} bytes is shorter than the prefix`);
  }
  const headerLen = new DataView(bytes.buffer, bytes.byteOffset).getUint32(MAGIC.length, true);
  if (PREFIX + headerLen > bytes.length) {
    return E.left(`truncated: header of ${headerLen} bytes but file has ${bytes.length} bytes`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(PREFIX, PREFIX + headerLen)),
    );
  } catch (e) {
    return E.left(`header is not JSON: ${describeError(e)}`);
  }
  const decoded = CheckpointHeader.decode(fromVersion1(raw));
  if (E.isLeft(decoded)) return E.left(`bad header: ${PathReporter.report(decoded).join("; ")}`);
  const h = decoded.right;
  const payloadStart = PREFIX + headerLen;
  const expectedLen = payloadStart + h.payloadBytes;
  if (!isNat(h.payloadBytes) || bytes.length !== expectedLen) {
    return E.left(
      bytes.length < expectedLen
        ? `truncated: expected ${expectedLen} bytes, found ${bytes.length}`
        : `length mismatch: expected ${expectedLen} bytes, found ${bytes.length}`,
    );
  }
  if (!isNat(h.step) || !isNat(h.data.epoch) || !isNat(h.data.position)) {
    return E.left("bad header: step, epoch and position must be natural numbers");
  }
  const rng: Record<string, RngState> = {};
  for (const [k, s] of Object.entries(h.rng)) {
    if (!isRngState(s)) return E.left(`bad header: rng.${k} is not a valid RNG state`);
    rng[k] = s;
  }
  // The table must tile the payload in order: no gaps, overlaps or duplicates.
  let next = 0;
  const seen = new Set<string>();
  for (const e of h.tensors) {
    const id = `${e.group}.${e.name}`;
    if (seen.has(id)) return E.left(`bad header: duplicate tensor ${id}`);
    seen.add(id);
    if (!e.shape.every(isNat) || sizeOf(e.shape) !== e.length || e.offset !== next) {
      return E.left(`bad header: tensor ${id} has inconsistent shape, length or offset`);
    }
    next += 4 * e.length;
  }
  if (next !== h.payloadBytes) return E.left("bad header: tensor table does not cover the payload");
  const payload = bytes.subarray(payloadStart);
  const actual = await sha256Hex(payload);
  if (actual !== h.payloadSha256) {
    return E.left(`payload SHA-256 ${actual} does not match the header's ${h.payloadSha256}`);
  }
  const groups: Record<TensorGroup, Record<string, Tensor>> = {
    params: {},
    optimizer: {},
    memory: {},
  };
  const aligned = (bytes.byteOffset + payloadStart) % 4 === 0;
  for (const e of h.tensors) {
    const start = payloadStart + e.offset;
    const data = aligned
      ? new Float32Array(bytes.buffer, bytes.byteOffset + start, e.length)
      : new Float32Array(bytes.slice(start, start + 4 * e.length).buffer);
    groups[e.group][e.name] = { shape: e.shape, data };
  }
  return E.right({
    step: h.step,
    data: h.data,
    rng,
    optimizer: { scalars: h.optimizerScalars, tensors: groups.optimizer },
    params: groups.params,
    memory: groups.memory,
    meta: h.meta,
  });
}
