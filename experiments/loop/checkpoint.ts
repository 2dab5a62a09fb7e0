/**
 * Atomic checkpoint files (the format is `checkpoint_format.ts`), one file
 * per checkpoint, the last two kept.
 *
 * Writes go to a temporary file in the same directory (`.ckpt-*.tmp`),
 * fsynced, then renamed over the final name, so the final name only ever
 * holds a complete file. One writer per directory.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readLatestCheckpoint, writeCheckpoint } from "./checkpoint.ts";
 * const dir = await Deno.makeTempDir();
 * await writeCheckpoint(dir, {
 *   step: 10,
 *   data: { epoch: 0, position: 700 },
 *   rng: { dropout: [1, 2, 3, 4] },
 *   optimizer: { scalars: { t: 10 }, tensors: {} },
 *   params: { "embed.w": { shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) } },
 *   memory: {},
 *   meta: { experiment: "ptb-crt" },
 * });
 * const r = await readLatestCheckpoint(dir);
 * assert(r._tag === "Right" && r.right.checkpoint.step === 10);
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { describeError } from "../../spec/errors.ts";
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import { type Checkpoint, decodeCheckpoint, encodeCheckpoint } from "./checkpoint_format.ts";

/**
 * Why checkpoints could not be read or written.
 *
 * @example
 * ```ts
 * import { readLatestCheckpoint } from "./checkpoint.ts";
 * const r = await readLatestCheckpoint("/nonexistent/run");
 * if (r._tag === "Left" && r.left._tag === "NoCheckpoint") console.error(r.left.message);
 * ```
 */
export type CheckpointError =
  | {
    /** One file failed verification. */
    readonly _tag: "InvalidCheckpoint";
    readonly file: string;
    readonly reason: string;
    readonly message: string;
  }
  | {
    /** No valid checkpoint in the directory; `skipped` lists the files that failed and why. */
    readonly _tag: "NoCheckpoint";
    readonly dir: string;
    readonly skipped: readonly { readonly file: string; readonly reason: string }[];
    readonly message: string;
  }
  | {
    readonly _tag: "IoError";
    readonly path: string;
    readonly reason: string;
    readonly message: string;
  };

/**
 * A checkpoint read back, with its file and any newer files that failed verification.
 *
 * @example
 * ```ts
 * import { readLatestCheckpoint } from "./checkpoint.ts";
 * const r = await readLatestCheckpoint("/nonexistent/run");
 * if (r._tag === "Right") {
 *   for (const s of r.right.skipped) console.warn(`skipped ${s.file}: ${s.reason}`);
 * }
 * ```
 */
export interface LoadedCheckpoint {
  /** The newest checkpoint that verified. */
  readonly checkpoint: Checkpoint;
  /** Its path. */
  readonly file: string;
  /** Newer files that failed verification, newest first, with the reason. */
  readonly skipped: readonly { readonly file: string; readonly reason: string }[];
}

const NAME = /^ckpt-(\d+)\.bin$/;
const TEMP = /^\.ckpt-.*\.tmp$/;

/**
 * The file name of the checkpoint at `step`; zero-padded so names sort by step.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkpointFileName } from "./checkpoint.ts";
 * assert(checkpointFileName(1200) === "ckpt-000001200.bin");
 * ```
 */
export function checkpointFileName(step: number): string {
  return `ckpt-${String(step).padStart(9, "0")}.bin`;
}

/** The `IoError` of `doing` (e.g. "cannot read") on `path`, with the reason `e` gives. */
function ioError(path: string, e: unknown, doing: string): CheckpointError {
  const reason = describeError(e);
  return { _tag: "IoError", path, reason, message: `${path}: ${doing}: ${reason}` };
}

/**
 * Reads and verifies one checkpoint file.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readCheckpoint } from "./checkpoint.ts";
 * const r = await readCheckpoint("/nonexistent/ckpt-000000001.bin");
 * assert(r._tag === "Left" && r.left._tag === "IoError");
 * ```
 */
export async function readCheckpoint(file: string): Promise<E.Either<CheckpointError, Checkpoint>> {
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = await Deno.readFile(file);
  } catch (e) {
    return E.left(ioError(file, e, "cannot read"));
  }
  const r = await decodeCheckpoint(bytes);
  if (E.isLeft(r)) {
    return E.left({
      _tag: "InvalidCheckpoint",
      file,
      reason: r.left,
      message: `${file}: invalid checkpoint: ${r.left}`,
    });
  }
  return r;
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) if (entry.isFile) names.push(entry.name);
  return names;
}

function checkpointSteps(names: readonly string[]): { name: string; step: number }[] {
  return names.flatMap((name) => {
    const m = NAME.exec(name);
    return m === null ? [] : [{ name, step: Number(m[1]) }];
  }).sort((a, b) => b.step - a.step);
}

/**
 * The newest checkpoint in `dir` that verifies. Temporary files are never
 * considered; a newer file that fails verification (e.g. cut off mid-write)
 * is skipped in favour of the previous one and listed in `skipped`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readLatestCheckpoint } from "./checkpoint.ts";
 * const r = await readLatestCheckpoint("/nonexistent/run");
 * assert(r._tag === "Left" && r.left._tag === "NoCheckpoint");
 * ```
 */
export async function readLatestCheckpoint(
  dir: string,
): Promise<E.Either<CheckpointError, LoadedCheckpoint>> {
  let names: string[];
  const skipped: { file: string; reason: string }[] = [];
  try {
    names = await listDir(dir);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      return E.left(ioError(dir, e, "cannot list"));
    }
    names = [];
  }
  for (const { name, step } of checkpointSteps(names)) {
    const file = join(dir, name);
    const r = await readCheckpoint(file);
    if (E.isLeft(r)) {
      skipped.push({
        file,
        reason: r.left._tag === "InvalidCheckpoint" ? r.left.reason : r.left.message,
      });
    } else if (r.right.step !== step) {
      skipped.push({ file, reason: `header step ${r.right.step} does not match the file name` });
    } else {
      return E.right({ checkpoint: r.right, file, skipped });
    }
  }
  const why = skipped.length === 0
    ? ""
    : `; skipped: ${skipped.map((s) => `${s.file} (${s.reason})`).join(", ")}`;
  return E.left({
    _tag: "NoCheckpoint",
    dir,
    skipped,
    message: `${dir}: no valid checkpoint${why}`,
  });
}

/**
 * Options for {@linkcode writeCheckpoint}.
 *
 * @example
 * ```ts
 * import type { WriteOptions } from "./checkpoint.ts";
 * const keepThree: WriteOptions = { keep: 3 };
 * ```
 */
export interface WriteOptions {
  /** How many checkpoints to keep, newest by step (the one just written always stays). Default 2. */
  readonly keep?: number;
}

/**
 * Writes `ckpt` atomically as `dir/ckpt-<step>.bin` (temporary file, fsync,
 * rename), then deletes older checkpoints beyond `keep` and leftover
 * temporary files of earlier interrupted writes. Returns the file written
 * and the files removed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { writeCheckpoint } from "./checkpoint.ts";
 * const dir = await Deno.makeTempDir();
 * const r = await writeCheckpoint(dir, {
 *   step: 1, data: { epoch: 0, position: 70 }, rng: {},
 *   optimizer: { scalars: {}, tensors: {} }, params: {}, memory: {}, meta: null,
 * });
 * assert(r._tag === "Right" && r.right.file.endsWith("ckpt-000000001.bin"));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeCheckpoint(
  dir: string,
  ckpt: Checkpoint,
  opts: WriteOptions = {},
): Promise<E.Either<CheckpointError, { file: string; removed: readonly string[] }>> {
  const keep = opts.keep ?? 2;
  if (!Number.isInteger(keep) || keep < 1) {
    throw new RangeError(`writeCheckpoint: keep must be ≥ 1, got ${keep}`);
  }
  const bytes = await encodeCheckpoint(ckpt);
  const file = join(dir, checkpointFileName(ckpt.step));
  const tmp = join(dir, `.ckpt-${ckpt.step}-${crypto.randomUUID()}.tmp`);
  try {
    await Deno.mkdir(dir, { recursive: true });
    const f = await Deno.open(tmp, { write: true, createNew: true });
    try {
      for (let done = 0; done < bytes.length;) done += await f.write(bytes.subarray(done));
      await f.sync();
    } finally {
      f.close();
    }
    await Deno.rename(tmp, file);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    return E.left(ioError(file, e, "cannot write checkpoint"));
  }
  const removed: string[] = [];
  try {
    const names = await listDir(dir);
    const old = checkpointSteps(names).filter((c) => c.step !== ckpt.step).slice(keep - 1);
    for (const name of [...old.map((c) => c.name), ...names.filter((n) => TEMP.test(n))]) {
      try {
        await Deno.remove(join(dir, name));
        removed.push(join(dir, name));
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
  } catch (e) {
    return E.left(ioError(dir, e, `wrote ${file} but cannot prune`));
  }
  return E.right({ file, removed });
}
