import assert from "node:assert/strict";
import { formatTable } from "./_table.ts";

Deno.test("formatTable aligns the first two columns left and the rest right, by default", () => {
  assert.equal(
    formatTable(["group", "bench", "ms"], [["train", "crt", "12"], ["infer", "transformer", "7"]]),
    [
      "group  bench        ms",
      "-----  -----------  --",
      "train  crt          12",
      "infer  transformer   7",
    ].join("\n"),
  );
});

Deno.test("formatTable aligns a column right only where asked", () => {
  assert.equal(
    formatTable(["a", "b"], [["xyz", "1"]], (i) => i === 0),
    ["  a  b", "---  -", "xyz  1"].join("\n"),
  );
});
