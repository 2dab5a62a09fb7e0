import assert from "node:assert/strict";
import { DENO_ARM64, including, parseSummary, PLAN } from "./run.ts";

/** The tests the plan leaves out: they start a Deno subprocess, or depend on timing. */
const LEFT_OUT = [
  "that cannot load is a Left only when forced",
  "without SharedArrayBuffer the portable matmul",
  "(deno bundle)",
  // Timing under emulation: a worker not ready yet, or retired by its idle timeout.
  "portable tier on two threads",
  "starts lazily, retires when idle",
  "a worker that blocks in Atomics.wait",
];

const root = new URL("../../", import.meta.url);

/** The regex `deno test --filter /…/` would use. */
const asRegex = (filter: string): RegExp => {
  assert.ok(filter.startsWith("/") && filter.endsWith("/"), filter);
  return new RegExp(filter.slice(1, -1));
};

/** The names of the tests a file registers: `Deno.test("…")`, or a helper named `…Test("…")`. */
const testNames = async (file: string): Promise<string[]> => {
  const src = await Deno.readTextFile(new URL(file, root));
  return [...src.matchAll(/(?:Deno\.test|\b[a-z]\w*Test)\(\s*"([^"]+)"/g)].map((m) => m[1]);
};

Deno.test("test:arm64: parseSummary reads Deno's closing line, coloured or not", () => {
  const coloured =
    "\x1b[0m\x1b[32mok\x1b[0m | 5 passed | 0 failed \x1b[0m\x1b[38;5;245m(44s)\x1b[0m";
  assert.deepEqual(parseSummary(coloured), { passed: 5, failed: 0, ignored: 0 });
  assert.deepEqual(parseSummary("FAILED | 5 passed (3 steps) | 2 failed | 1 ignored (1s)"), {
    passed: 5,
    failed: 2,
    ignored: 1,
  });
  assert.equal(parseSummary("error: Module not found"), null);
});

Deno.test("test:arm64: the filters keep the tests they name, and nothing else", () => {
  const re = asRegex(including("(deno bundle)", "a.b", "[native]"));
  assert.ok(re.test("its worker survives a bundle (deno bundle)"));
  assert.ok(re.test("x a.b y") && !re.test("x aXb y"));
  assert.ok(re.test("parity [native]") && !re.test("parity [portable]"));
  // No look-around: Deno's filter regexes do not have it, and it fails there silently.
  assert.ok(!/\(\?[=!<]/.test(re.source), re.source);
  const keep = asRegex(including("lowers the loss", "resumed"));
  assert.ok(keep.test("runExperiment: a short run lowers the loss and writes the run folder"));
  assert.ok(!keep.test("runSweep: runs members"));
});

Deno.test("test:arm64: every planned file exists and each filter keeps some tests and drops some", async () => {
  for (const e of PLAN) {
    const names = await testNames(e.file);
    assert.ok(names.length > 0, `${e.file}: no test names found`);
    if (e.filter === undefined) continue;
    const re = asRegex(e.filter);
    const kept = names.filter((n) => re.test(n));
    assert.ok(kept.length > 0 && kept.length < names.length, `${e.file}: ${e.filter} kept ${kept}`);
    // The tests left out are those that start a Deno subprocess or hang on timing.
    for (const n of names.filter((n) => !re.test(n))) {
      assert.ok(!e.file.startsWith("tests/ops_") || LEFT_OUT.some((l) => n.includes(l)), n);
    }
  }
  assert.match(DENO_ARM64.integrity, /^sha512-/);
});
