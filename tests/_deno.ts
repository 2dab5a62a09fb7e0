/**
 * Run a script in a fresh Deno process with the project's config, for the
 * tests whose subject is process-wide (what an import registers, what a
 * missing permission or global changes).
 *
 * @module
 */
import assert from "node:assert/strict";

const root = new URL("../", import.meta.url);

/** The `file:` URL of `path` in the repository, for imports in a fresh script. */
export const repoUrl = (path: string): string => new URL(path, root).href;

/**
 * Run `code` in a fresh process: `deno eval` (every permission) when
 * `permissions` is left out, else `deno run -` with exactly those flags (the
 * code on stdin). Its trimmed stdout, or a failed assert showing its stderr.
 */
export const freshDeno = async (code: string, permissions?: readonly string[]): Promise<string> => {
  const config = ["--config", new URL("deno.json", root).pathname];
  const args = permissions === undefined
    ? ["eval", ...config, code]
    : ["run", ...config, ...permissions, "-"];
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: root.pathname,
    stdin: permissions === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (permissions !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(code));
    await w.close();
  }
  const out = await child.output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).trim();
};

/**
 * Run `deno ARGS…` (e.g. `["run", "--allow-read", script, …]`) in its own
 * process: its stdout, or a failed assert showing its stderr when it exits
 * non-zero.
 */
export const denoRun = async (args: readonly string[]): Promise<string> => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
};
