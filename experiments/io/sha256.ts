/**
 * The SHA-256 of bytes as lowercase hex: what run folders, checkpoints and
 * the dataset readers record of the files they read.
 *
 * @module
 */

/**
 * SHA-256 of bytes, as lowercase hex.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sha256Hex } from "./sha256.ts";
 * const h = await sha256Hex(new Uint8Array(0));
 * assert(h === "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
 * ```
 */
export async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}
