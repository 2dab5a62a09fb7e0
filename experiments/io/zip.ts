/**
 * Just enough of the zip format to unpack a dataset release: find entries
 * in the central directory, stream one out through `DecompressionStream`
 * (deflate or stored) with its CRC-32 checked, and, for fixtures, build a
 * small zip in memory. No ZIP64 (entries and archives under 4 GiB), no
 * encryption, no multi-disk archives; each is reported, not guessed at.
 *
 * @example Round trip
 * ```ts
 * import assert from "node:assert/strict";
 * import { createZip, extractZipEntries } from "./zip.ts";
 *
 * const dir = await Deno.makeTempDir();
 * const zip = await createZip([{ name: "data/a.txt", data: new TextEncoder().encode("hello\n") }]);
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

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/**
 * CRC-32 (IEEE, as zip uses it), continued from `crc` (0 to start).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { crc32 } from "./zip.ts";
 * assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
 * ```
 */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** One entry of the central directory. */
interface Entry {
  readonly name: string;
  readonly method: number;
  readonly crc: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly localHeader: number;
}

async function readAt(f: Deno.FsFile, offset: number, length: number): Promise<Uint8Array> {
  await f.seek(offset, Deno.SeekMode.Start);
  const out = new Uint8Array(length);
  for (let got = 0; got < length;) {
    const n = await f.read(out.subarray(got));
    if (n === null) throw new Error(`truncated: ${length - got} bytes missing at ${offset + got}`);
    got += n;
  }
  return out;
}

async function centralDirectory(f: Deno.FsFile, size: number): Promise<Entry[]> {
  const tailLen = Math.min(size, 22 + 0xffff);
  const tail = await readAt(f, size - tailLen, tailLen);
  const dv = new DataView(tail.buffer);
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (dv.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error("no end-of-central-directory record (not a zip file?)");
  const count = dv.getUint16(eocd + 10, true);
  const cdSize = dv.getUint32(eocd + 12, true);
  const cdOffset = dv.getUint32(eocd + 16, true);
  if (count === 0xffff || cdOffset === 0xffffffff) {
    throw new Error("ZIP64 archives are not supported");
  }
  const cd = await readAt(f, cdOffset, cdSize);
  const cv = new DataView(cd.buffer);
  const entries: Entry[] = [];
  const utf8 = new TextDecoder();
  for (let p = 0, i = 0; i < count; i++) {
    if (cv.getUint32(p, true) !== 0x02014b50) throw new Error(`bad central directory entry ${i}`);
    const nameLen = cv.getUint16(p + 28, true);
    const extraLen = cv.getUint16(p + 30, true);
    const commentLen = cv.getUint16(p + 32, true);
    entries.push({
      name: utf8.decode(cd.subarray(p + 46, p + 46 + nameLen)),
      method: cv.getUint16(p + 10, true),
      crc: cv.getUint32(p + 16, true),
      compressedSize: cv.getUint32(p + 20, true),
      size: cv.getUint32(p + 24, true),
      localHeader: cv.getUint32(p + 42, true),
    });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** `length` bytes of `f` from `start`, as a stream of chunks. */
const rangeStream = (f: Deno.FsFile, start: number, length: number): ReadableStream<Uint8Array> => {
  let left = length;
  return new ReadableStream<Uint8Array>({
    async start() {
      await f.seek(start, Deno.SeekMode.Start);
    },
    async pull(ctl) {
      if (left === 0) return ctl.close();
      const buf = new Uint8Array(Math.min(1 << 20, left));
      const n = await f.read(buf);
      if (n === null) return ctl.error(new Error(`truncated: ${left} compressed bytes missing`));
      left -= n;
      ctl.enqueue(buf.subarray(0, n));
    },
  });
};

/**
 * Extracts the entries whose names end with each `suffix` (exactly one
 * each) to the paths `to`: streamed, CRC-32 and size checked, written to a
 * temporary name and renamed. `Left` says what is wrong with the archive.
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
  const f = await Deno.open(zip, { read: true });
  try {
    const entries = await centralDirectory(f, (await f.stat()).size);
    for (const w of wanted) {
      const hits = entries.filter((e) => e.name.endsWith(w.suffix) || e.name === w.suffix.slice(1));
      if (hits.length !== 1) {
        return E.left(
          `${hits.length === 0 ? "no" : "more than one"} entry ending in ${w.suffix} ` +
            `(entries: ${entries.map((e) => e.name).slice(0, 8).join(", ")})`,
        );
      }
      const e = hits[0];
      if (e.method !== 0 && e.method !== 8) {
        return E.left(`${e.name}: compression method ${e.method} is not supported`);
      }
      const local = new DataView((await readAt(f, e.localHeader, 30)).buffer);
      if (local.getUint32(0, true) !== 0x04034b50) return E.left(`${e.name}: bad local header`);
      const dataStart = e.localHeader + 30 + local.getUint16(26, true) + local.getUint16(28, true);
      const raw = rangeStream(f, dataStart, e.compressedSize);
      const body = e.method === 8
        ? raw.pipeThrough(
          new DecompressionStream("deflate-raw") as TransformStream<Uint8Array, Uint8Array>,
        )
        : raw;
      const tmp = `${w.to}.${crypto.randomUUID()}.tmp`;
      const out = await Deno.open(tmp, { write: true, create: true, truncate: true });
      let crc = 0, size = 0, ok = false;
      try {
        for await (const piece of body) {
          crc = crc32(piece, crc);
          size += piece.length;
          for (let done = 0; done < piece.length;) done += await out.write(piece.subarray(done));
        }
        out.close();
        if (size !== e.size || crc !== e.crc) {
          return E.left(
            `${e.name}: corrupt (${size} bytes, CRC-32 ${crc.toString(16)}; the directory says ` +
              `${e.size} bytes, ${e.crc.toString(16)})`,
          );
        }
        await Deno.rename(tmp, w.to);
        ok = true;
      } catch (err) {
        return E.left(`${e.name}: ${err instanceof Error ? err.message : String(err)}`);
      } finally {
        try {
          out.close();
        } catch { /* closed above */ }
        if (!ok) await Deno.remove(tmp).catch(() => {});
      }
    }
    return E.right(undefined);
  } catch (err) {
    return E.left(err instanceof Error ? err.message : String(err));
  } finally {
    f.close();
  }
}

/**
 * A zip archive of `entries` (deflated), in memory: for fixtures and tests.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createZip } from "./zip.ts";
 * const zip = await createZip([{ name: "a.txt", data: new Uint8Array(100) }]);
 * assert.equal(new DataView(zip.buffer).getUint32(0, true), 0x04034b50); // a local header first
 * ```
 */
export async function createZip(
  entries: readonly { readonly name: string; readonly data: Uint8Array }[],
): Promise<Uint8Array<ArrayBuffer>> {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = enc.encode(e.name);
    const deflated = new Uint8Array(
      await new Response(
        new Blob([e.data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
          new CompressionStream("deflate-raw"),
        ),
      ).arrayBuffer(),
    );
    const crc = crc32(e.data);
    const local = new Uint8Array(30 + name.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true); // version needed
    lv.setUint16(8, 8, true); // deflate
    lv.setUint32(14, crc, true);
    lv.setUint32(18, deflated.length, true);
    lv.setUint32(22, e.data.length, true);
    lv.setUint16(26, name.length, true);
    local.set(name, 30);
    const dir = new Uint8Array(46 + name.length);
    const dv = new DataView(dir.buffer);
    dv.setUint32(0, 0x02014b50, true);
    dv.setUint16(4, 20, true);
    dv.setUint16(6, 20, true);
    dv.setUint16(10, 8, true);
    dv.setUint32(16, crc, true);
    dv.setUint32(20, deflated.length, true);
    dv.setUint32(24, e.data.length, true);
    dv.setUint16(28, name.length, true);
    dv.setUint32(42, offset, true);
    dir.set(name, 46);
    parts.push(local, deflated);
    central.push(dir);
    offset += local.length + deflated.length;
  }
  const cdSize = central.reduce((s, c) => s + c.length, 0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, entries.length, true);
  ev.setUint16(10, entries.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  const all = [...parts, ...central, end];
  const out = new Uint8Array(all.reduce((s, p) => s + p.length, 0));
  let p = 0;
  for (const part of all) {
    out.set(part, p);
    p += part.length;
  }
  return out;
}
