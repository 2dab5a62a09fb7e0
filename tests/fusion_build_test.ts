/**
 * The fused-kernel parity tests of tests/fusion_test.ts in the kernels'
 * SIMD128 build — the fallback an engine without relaxed SIMD runs. One
 * build runs per process, so this runs that file in a child process.
 */
import assert from "node:assert/strict";
import { hasRelaxedSimd } from "../ops/heap.ts";

Deno.test("fused kernels: the SIMD128 build passes the parity tests too", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", "--no-check", new URL("./fusion_test.ts", import.meta.url).pathname],
    env: { CRT_TEST_KERNELS: "simd128" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.ok(out.success, text.slice(-3000));
  assert.match(text, /passed/);
  // On this engine the default build is the relaxed one: the two runs cover both.
  console.log(`relaxed SIMD on this engine: ${hasRelaxedSimd()}`);
});
