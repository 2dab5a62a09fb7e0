/**
 * Fetching word-level Penn Treebank into the cache folder when no data folder
 * is given: each file is checked against its pinned SHA-256 and written
 * atomically ({@linkcode downloadPtb}); {@linkcode loadPtb} reads a corpus
 * from wherever `resolveDataDir` found it, downloading first into the cache.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import { exists } from "./_shared.ts";
import {
  type Corpus,
  type DataDir,
  type DataError,
  PTB_BASE_URL,
  PTB_FILES,
  PTB_PLACEMENT_HINT,
  PTB_SHA256,
  readCorpus,
} from "./ptb.ts";
import { sha256Hex } from "../io/sha256.ts";

function describeFetchError(e: unknown, timeoutMs: number): string {
  if (!(e instanceof Error)) return String(e);
  if (e.name === "TimeoutError") return `no response within ${timeoutMs} ms`;
  // fetch wraps the useful part (DNS, connection refused) in `cause`.
  return e.cause instanceof Error ? `${e.message}: ${e.cause.message}` : e.message;
}

/**
 * Options for {@linkcode downloadPtb} and {@linkcode loadPtb}.
 *
 * @example
 * ```ts
 * import type { DownloadOptions } from "./ptb_download.ts";
 * const opts: DownloadOptions = { timeoutMs: 5_000, log: (m) => console.error(m) };
 * ```
 */
export interface DownloadOptions {
  /** Injected for tests; defaults to the global `fetch`. */
  readonly fetch?: typeof fetch;
  /** Per-file timeout; the download fails fast rather than hang on a closed network. Default 15 s. */
  readonly timeoutMs?: number;
  /** Default {@linkcode PTB_BASE_URL}. */
  readonly baseUrl?: string;
  /** Progress messages (e.g. to stderr). */
  readonly log?: (message: string) => void;
}

/**
 * Downloads the missing split files into `dir`, verifying the pinned SHA-256
 * of train and valid; each file is written to a temporary name and renamed,
 * so a failed download leaves nothing behind. The test file is optional: if
 * it cannot be fetched the corpus simply has no test split.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { downloadPtb } from "./ptb_download.ts";
 * const dir = await Deno.makeTempDir();
 * const offline = () => Promise.reject(new TypeError("network unreachable"));
 * const r = await downloadPtb(dir, { fetch: offline });
 * assert(r._tag === "Left" && r.left._tag === "DownloadFailed");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function downloadPtb(
  dir: string,
  opts: DownloadOptions = {},
): Promise<E.Either<DataError, void>> {
  const doFetch = opts.fetch ?? fetch;
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const baseUrl = opts.baseUrl ?? PTB_BASE_URL;
  await Deno.mkdir(dir, { recursive: true });
  for (const split of ["train", "valid", "test"] as const) {
    const file = join(dir, PTB_FILES[split]);
    if (await exists(file)) continue;
    const url = baseUrl + PTB_FILES[split];
    opts.log?.(`downloading ${url}`);
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      const res = await doFetch(url, { signal: AbortSignal.timeout(timeoutMs) });
      if (!res.ok) {
        await res.body?.cancel();
        throw new Error(`HTTP ${res.status} ${res.statusText}`);
      }
      bytes = new Uint8Array(await res.arrayBuffer());
    } catch (e) {
      if (split === "test") {
        opts.log?.(`could not download ${url}; continuing without a test split`);
        continue;
      }
      const reason = describeFetchError(e, timeoutMs);
      return E.left({
        _tag: "DownloadFailed",
        file,
        url,
        reason,
        message:
          `cannot download ${url} (${reason}); without network access, ${PTB_PLACEMENT_HINT}`,
      });
    }
    const expected = PTB_SHA256[split];
    const actual = await sha256Hex(bytes);
    if (expected !== null && actual !== expected) {
      return E.left({
        _tag: "ChecksumMismatch",
        file,
        expected,
        actual,
        message: `${url}: SHA-256 ${actual} does not match the pinned ${expected}; not saved`,
      });
    }
    const tmp = `${file}.${crypto.randomUUID()}.tmp`;
    await Deno.writeFile(tmp, bytes);
    await Deno.rename(tmp, file);
  }
  return E.right(undefined);
}

/**
 * Locates and reads the corpus. For the cache directory only, missing files
 * are downloaded first and train/valid are checked against the pinned hashes
 * (delete a mismatching file to fetch it again). A directory given by flag or
 * environment is read as is: its hashes are reported in `Corpus.sha256`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadPtb } from "./ptb_download.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/ptb.train.txt`, "a b\n");
 * await Deno.writeTextFile(`${dir}/ptb.valid.txt`, "b a\n");
 * const r = await loadPtb({ dir, source: "flag" });
 * assert(r._tag === "Right" && r.right.test === null);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadPtb(
  dataDir: DataDir,
  opts: DownloadOptions = {},
): Promise<E.Either<DataError, Corpus>> {
  if (dataDir.source !== "cache") return readCorpus(dataDir.dir);
  const downloaded = await downloadPtb(dataDir.dir, opts);
  if (E.isLeft(downloaded)) return downloaded;
  const corpus = await readCorpus(dataDir.dir);
  if (E.isLeft(corpus)) return corpus;
  for (const split of ["train", "valid"] as const) {
    const expected = PTB_SHA256[split];
    const actual = corpus.right.sha256[split];
    if (expected !== null && actual !== expected) {
      const file = join(dataDir.dir, PTB_FILES[split]);
      return E.left({
        _tag: "ChecksumMismatch",
        file,
        expected,
        actual,
        message: `${file}: SHA-256 ${actual} does not match the pinned ${expected}; ` +
          `delete it to download it again`,
      });
    }
  }
  return corpus;
}
