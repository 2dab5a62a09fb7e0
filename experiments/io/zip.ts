/**
 * Unpacking a dataset release, on fflate's streaming `Unzip` (npm `fflate`):
 * the archive is read in 1 MiB chunks and each wanted entry is written as it
 * inflates, so a release of hundreds of megabytes never sits in memory. The
 * entries land under temporary names and are renamed only when every one of
 * them was found once and came out whole, so a failed unpack leaves nothing
 * half-written. Integrity is the caller's: `downloadWt103` checks the whole
 * archive's SHA-256 before it unpacks (fflate's stream does not check the
 * entries' CRC-32; their sizes are checked here).
 *
 * @example Round trip
 * ```ts
 * import assert from "node:assert/strict";
 * import { createZip, extractZipEntries } from "./zip.ts";
 *
 * const dir = await Deno.makeTempDir();
 * const zip = createZip([{ name: "data/a.txt", data: new TextEncoder().encode("hello\n") }]);
 * await Deno.writeFile(`${dir}/x.zip`, zip);
 * const r = await extractZipEntries(`${dir}/x.zip`, [{ suffix: "/a.txt", to: `${dir}/a.txt` }]);
 * assert.equal(r._tag, "Right");
 * assert.equal(await Deno.readTextFile(`${dir}/a.txt`), "hello\n");
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { Unzip, UnzipInflate, zipSync } from "fflate";

/** One wanted entry being written: where to, and how far it has got. */
interface Target {
  readonly name: string;
  readonly to: string;
  readonly tmp: string;
  /** The uncompressed size the local header gives (absent for streamed archives). */
  readonly size: number | undefined;
  out: Deno.FsFile | null;
  written: number;
  done: boolean;
}

const message = (err: unknown): string => err instanceof Error ? err.message : String(err);

/** Writes all of `data` to `f` (a write may take only part of it). */
const writeAll = async (f: Deno.FsFile, data: Uint8Array): Promise<void> => {
  for (let done = 0; done < data.length;) done += await f.write(data.subarray(done));
};

/**
 * Extracts the entries whose names end with each `suffix` (exactly one
 * each) to the paths `to`: streamed, size checked, written to temporary
 * names and renamed when all are whole. `Left` says what is wrong with the
 * archive, naming the entry.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { extractZipEntries } from "./zip.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/x.zip`, "not a zip");
 * const r = await extractZipEntries(`${dir}/x.zip`, [{ suffix: "/a", to: `${dir}/a` }]);
 * assert(r._tag === "Left" && r.left.includes("not a zip"));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function extractZipEntries(
  zip: string,
  wanted: readonly { readonly suffix: string; readonly to: string }[],
): Promise<E.Either<string, void>> {
  const matches = (name: string, suffix: string) =>
    name.endsWith(suffix) || name === suffix.slice(1);
  const seen: string[] = [];
  const hits = new Map<string, number>();
  const targets: Target[] = [];
  const pending: { readonly target: Target; readonly data: Uint8Array }[] = [];
  let failure: string | null = null;

  const unzip = new Unzip((file) => {
    seen.push(file.name);
    const w = wanted.find((w) => matches(file.name, w.suffix));
    if (w === undefined) return; // never started: fflate skips its bytes
    const n = (hits.get(w.suffix) ?? 0) + 1;
    hits.set(w.suffix, n);
    if (n > 1) return;
    if (file.compression !== 0 && file.compression !== 8) {
      failure ??= `${file.name}: compression method ${file.compression} is not supported`;
      return;
    }
    const target: Target = {
      name: file.name,
      to: w.to,
      tmp: `${w.to}.${crypto.randomUUID()}.tmp`,
      size: file.originalSize,
      out: null,
      written: 0,
      done: false,
    };
    targets.push(target);
    file.ondata = (err, data, final) => {
      if (err !== null) failure ??= `${file.name}: ${err.message}`;
      else pending.push({ target, data });
      if (final) target.done = true;
    };
    file.start();
  });
  unzip.register(UnzipInflate);

  /** Writes what the last push inflated; closes and checks the entries that ended. */
  const drain = async (): Promise<void> => {
    for (const { target, data } of pending.splice(0)) {
      target.out ??= await Deno.open(target.tmp, { write: true, create: true, truncate: true });
      await writeAll(target.out, data);
      target.written += data.length;
    }
    for (const t of targets) {
      if (!t.done || t.out === null) continue;
      t.out.close();
      t.out = null;
      if (t.size !== undefined && t.written !== t.size) {
        failure ??= `${t.name}: corrupt (${t.written} bytes; its header says ${t.size})`;
      }
    }
  };

  const f = await Deno.open(zip, { read: true });
  let finished = false;
  try {
    const buf = new Uint8Array(1 << 20);
    for (;;) {
      const n = await f.read(buf);
      // fflate may keep a view of the chunk it was given: hand it a copy.
      unzip.push(n === null ? new Uint8Array(0) : buf.slice(0, n), n === null);
      await drain();
      if (failure !== null || n === null) break;
    }
    if (failure !== null) return E.left(failure);
    if (seen.length === 0) return E.left("no entries found (not a zip file?)");
    for (const w of wanted) {
      const k = hits.get(w.suffix) ?? 0;
      if (k !== 1) {
        return E.left(
          `${k === 0 ? "no" : "more than one"} entry ending in ${w.suffix} ` +
            `(entries: ${seen.slice(0, 8).join(", ")})`,
        );
      }
    }
    const cut = targets.find((t) => !t.done);
    if (cut !== undefined) return E.left(`${cut.name}: truncated (${cut.written} bytes read)`);
    for (const t of targets) await Deno.rename(t.tmp, t.to);
    finished = true;
    return E.right(undefined);
  } catch (err) {
    return E.left(`${targets.at(-1)?.name ?? zip}: ${message(err)}`);
  } finally {
    f.close();
    for (const t of targets) {
      try {
        t.out?.close();
      } catch { /* closed already */ }
      if (!finished) await Deno.remove(t.tmp).catch(() => {});
    }
  }
}

/**
 * A zip archive of `entries` (deflated), in memory: for fixtures and tests.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createZip } from "./zip.ts";
 * const zip = createZip([{ name: "a.txt", data: new Uint8Array(100) }]);
 * assert.equal(new DataView(zip.buffer).getUint32(0, true), 0x04034b50); // a local header first
 * ```
 */
export function createZip(
  entries: readonly { readonly name: string; readonly data: Uint8Array }[],
): Uint8Array<ArrayBuffer> {
  return zipSync(Object.fromEntries(entries.map((e) => [e.name, e.data])), { level: 6 });
}
