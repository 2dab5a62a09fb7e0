/**
 * What JSR would receive: `deno publish --dry-run` (offline; only the upload
 * needs JSR) lists the package's files, and none of them may be a test, a
 * test helper or a benchmark.
 */
import assert from "node:assert/strict";

Deno.test("publish: the package holds no tests, test helpers or benchmarks", async () => {
  const root = new URL("../", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["publish", "--dry-run", "--allow-dirty"],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, text);
  const files = [...text.matchAll(/file:\/\/\S+/g)].map((m) => m[0].slice(`file://${root}`.length));
  assert.ok(files.includes("mod.ts"), `mod.ts is not in the package:\n${text}`);
  const unwanted = files.filter((f) =>
    /(^|\/)[^/]*_test\.ts$/.test(f) || /^(tests|bench|web|\.ci)\//.test(f) ||
    ["deploy/_testing.ts", "deploy/_stream_memory.ts"].includes(f)
  );
  assert.deepEqual(unwanted, [], `published but only for tests:\n${unwanted.join("\n")}`);
});
