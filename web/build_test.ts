/**
 * The bundle build's guard and its command line; a real build runs in
 * tests/browser_test.ts, whose page loads it.
 */
import assert from "node:assert/strict";
import { buildBundle, main } from "./build.ts";

Deno.test("web/build buildBundle: refuses to empty a folder that holds no earlier bundle", async () => {
  const dir = await Deno.makeTempDir({ prefix: "crt-build-" });
  try {
    await Deno.writeTextFile(`${dir}/notes.txt`, "keep me\n");
    const built = await buildBundle({ outDir: dir });
    assert.equal(built._tag, "Left");
    if (built._tag === "Left") assert.match(built.left.message, /refusing to empty/);
    assert.equal(await Deno.readTextFile(`${dir}/notes.txt`), "keep me\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("web/build main: an unknown option is exit status 2", async () => {
  const errors: string[] = [];
  const original = console.error;
  console.error = (...a: unknown[]) => errors.push(a.join(" "));
  try {
    assert.equal(await main(["--frobnicate"]), 2);
  } finally {
    console.error = original;
  }
  assert.match(errors.join("\n"), /bundle: Unknown option '--frobnicate'/);
});
