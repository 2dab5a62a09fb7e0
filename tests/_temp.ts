/**
 * A temporary directory for a test, removed when its `await using` scope
 * ends (also when the test throws).
 *
 * @module
 */

/** A fresh directory `path`, removed recursively on `Symbol.asyncDispose`. */
export async function tempDir(prefix: string): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}
