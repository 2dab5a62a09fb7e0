/**
 * Fetching WikiText-103: downloading the public release zip into the cache
 * folder, checking its SHA-256 and unpacking the split files, and
 * {@linkcode loadWt103}, which does that for the cache folder and then reads
 * the files with {@linkcode readWt103}.
 *
 * @example Offline, a directory given by `--data` is read as is
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadWt103 } from "./wt103_download.ts";
 * const never = () => Promise.reject(new TypeError("no network in this example"));
 * const r = await loadWt103({ dir: "/nonexistent", source: "flag" }, { fetch: never });
 * assert(r._tag === "Left" && r.left._tag === "MissingFile");
 * ```
 *
 * @module
 */
import { describeError } from "../../spec/errors.ts";
import * as E from "fp-ts/lib/Either.js";
import { createHash } from "node:crypto";
import { join } from "node:path";
import type { DataDir, DataError } from "./ptb.ts";
import { exists } from "./_shared.ts";
import {
  type ReadOptions,
  readWt103,
  WT103_FILES,
  WT103_PLACEMENT_HINT,
  type Wt103Corpus,
} from "./wt103.ts";
import { extractZipEntries } from "../io/zip.ts";

/**
 * The public release (Salesforce Research's S3 bucket): a zip holding
 * `wikitext-103/wiki.{train,valid,test}.tokens`.
 *
 * @example
 * ```ts
 * import { WT103_URL } from "./wt103_download.ts";
 * console.log(WT103_URL.endsWith("wikitext-103-v1.zip")); // true
 * ```
 */
export const WT103_URL =
  "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-v1.zip";

/**
 * Pinned SHA-256 of {@linkcode WT103_URL}'s zip. `null`: not known in this
 * workplace (the archive cannot be fetched here), so the download checks it
 * only when the caller (or `CRT_WT103_SHA256`) supplies a hash, and reports
 * the hash it computed either way.
 *
 * @example
 * ```ts
 * import { WT103_ZIP_SHA256 } from "./wt103_download.ts";
 * console.log(WT103_ZIP_SHA256 === null ? "unchecked unless CRT_WT103_SHA256 is set" : "pinned");
 * ```
 */
export const WT103_ZIP_SHA256: string | null = null;

/**
 * Environment variable holding the expected SHA-256 of the downloaded zip.
 *
 * @example
 * ```ts
 * import { WT103_SHA256_ENV } from "./wt103_download.ts";
 * console.log(WT103_SHA256_ENV); // CRT_WT103_SHA256
 * ```
 */
export const WT103_SHA256_ENV = "CRT_WT103_SHA256";

/**
 * Options of {@linkcode downloadWt103} and {@linkcode loadWt103}.
 *
 * @example
 * ```ts
 * import type { Wt103DownloadOptions } from "./wt103_download.ts";
 * const opts: Wt103DownloadOptions = { expectedSha256: null, log: (m) => console.error(m) };
 * ```
 */
export interface Wt103DownloadOptions extends ReadOptions {
  /** Injected for tests; defaults to the global `fetch`. */
  readonly fetch?: typeof fetch;
  /** Default {@linkcode WT103_URL}. */
  readonly url?: string;
  /**
   * The SHA-256 the zip must have; `null` checks nothing (the computed hash
   * is logged). Default: `$CRT_WT103_SHA256`, else {@linkcode WT103_ZIP_SHA256}.
   */
  readonly expectedSha256?: string | null;
  /** No response or no progress for this long fails the download. Default 60 s. */
  readonly timeoutMs?: number;
}

/**
 * Downloads the release zip into `dir` (streamed to disk, hashed as it
 * arrives, checked against the expected SHA-256 when there is one),
 * extracts the three split files (each CRC-checked, written to a temporary
 * name and renamed) and deletes the zip. Files already present are kept.
 * Nothing is left behind by a failure.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { downloadWt103 } from "./wt103_download.ts";
 * const dir = await Deno.makeTempDir();
 * const offline = () => Promise.reject(new TypeError("network unreachable"));
 * const r = await downloadWt103(dir, { fetch: offline });
 * assert(r._tag === "Left" && r.left._tag === "DownloadFailed");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function downloadWt103(
  dir: string,
  opts: Wt103DownloadOptions = {},
): Promise<E.Either<DataError, { readonly sha256: string | null }>> {
  const present = await Promise.all(
    (["train", "valid", "test"] as const).map((s) => exists(join(dir, WT103_FILES[s]))),
  );
  if (present.every((p) => p)) return E.right({ sha256: null });
  const doFetch = opts.fetch ?? fetch;
  const url = opts.url ?? WT103_URL;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const expected = opts.expectedSha256 !== undefined
    ? opts.expectedSha256
    : (Deno.env.get(WT103_SHA256_ENV) || WT103_ZIP_SHA256);
  const log = opts.log ?? (() => {});
  await Deno.mkdir(dir, { recursive: true });
  const zip = join(dir, `wikitext-103-v1.zip.${crypto.randomUUID()}.tmp`);
  const fail = (reason: string): DataError => ({
    _tag: "DownloadFailed",
    file: zip,
    url,
    reason,
    message: `cannot download ${url} (${reason}); without network access, ${WT103_PLACEMENT_HINT}`,
  });
  const hash = createHash("sha256");
  try {
    log(`downloading ${url} (about 190 MB) into ${dir}`);
    let res: Response;
    try {
      res = await doFetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    } catch (e) {
      const reason = e instanceof Error && e.name === "TimeoutError"
        ? `no response within ${timeoutMs} ms`
        : e instanceof Error && e.cause instanceof Error
        ? `${e.message}: ${e.cause.message}`
        : describeError(e);
      return E.left(fail(reason));
    }
    if (!res.ok || res.body === null) {
      await res.body?.cancel();
      return E.left(fail(`HTTP ${res.status} ${res.statusText}`));
    }
    const size = Number(res.headers.get("content-length") ?? 0);
    const out = await Deno.open(zip, { write: true, create: true, truncate: true });
    let got = 0, reported = 0;
    try {
      for await (const piece of res.body) {
        hash.update(piece);
        for (let done = 0; done < piece.length;) done += await out.write(piece.subarray(done));
        got += piece.length;
        if (size > 0 && got - reported >= size / 20) {
          log(`  ${(got / 2 ** 20).toFixed(0)} / ${(size / 2 ** 20).toFixed(0)} MiB`);
          reported = got;
        }
      }
    } catch (e) {
      return E.left(fail(describeError(e)));
    } finally {
      out.close();
    }
    const actual = hash.digest("hex");
    if (expected !== null && expected.toLowerCase() !== actual) {
      return E.left({
        _tag: "ChecksumMismatch",
        file: zip,
        expected,
        actual,
        message: `${url}: SHA-256 ${actual} does not match the expected ${expected}; not saved`,
      });
    }
    log(
      expected === null
        ? `${url}: SHA-256 ${actual} (not verified: no pinned hash; set ${WT103_SHA256_ENV} to require one)`
        : `${url}: SHA-256 ${actual} verified`,
    );
    const wanted = (["train", "valid", "test"] as const).filter((_, i) => !present[i]);
    const extracted = await extractZipEntries(
      zip,
      wanted.map((s) => ({ suffix: `/${WT103_FILES[s]}`, to: join(dir, WT103_FILES[s]) })),
    );
    if (E.isLeft(extracted)) {
      return E.left({
        _tag: "UnreadableFile",
        file: url,
        reason: extracted.left,
        message: `${url}: not the WikiText-103 release: ${extracted.left}`,
      });
    }
    return E.right({ sha256: actual });
  } finally {
    await Deno.remove(zip).catch(() => {});
  }
}

/**
 * Locates and reads WikiText-103. For the cache folder only, missing files
 * are downloaded first ({@linkcode downloadWt103}); a directory given by
 * `--data` or `CRT_DATA_DIR` is read as is.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadWt103 } from "./wt103_download.ts";
 * const r = await loadWt103({ dir: "/nonexistent", source: "flag" });
 * assert(r._tag === "Left" && r.left._tag === "MissingFile");
 * ```
 */
export async function loadWt103(
  dataDir: DataDir,
  opts: Wt103DownloadOptions = {},
): Promise<E.Either<DataError, Wt103Corpus>> {
  if (dataDir.source === "cache") {
    const d = await downloadWt103(dataDir.dir, opts);
    if (E.isLeft(d)) return d;
  }
  return readWt103(dataDir.dir, opts);
}
