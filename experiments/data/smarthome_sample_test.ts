import assert from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import { readClipTable } from "./smarthome.ts";
import { main } from "./smarthome_sample.ts";
import { denoRun } from "../../tests/_deno.ts";

const run = async (args: string[]) => {
  const out: string[] = [], err: string[] = [];
  const status = await main(args, { stdout: (s) => out.push(s), stderr: (s) => err.push(s) });
  return { status, out: out.join(""), err: err.join("") };
};

Deno.test("smarthome:sample writes a dataset the reader accepts, and says how to train on it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "crt-sample-" });
  try {
    const data = join(dir, "d");
    const r = await run([
      data,
      "--clips",
      "40",
      "--dim",
      "4",
      "--classes",
      "5",
      "--max-frames",
      "80",
    ]);
    assert.equal(r.status, 0, r.err);
    assert.match(r.out, /40 clips of 64–80 frames × 4 features, 5 classes/);
    assert.match(
      r.out,
      /deno task experiment smarthome --quick --data .* --set model\.input\.dim=4 --set model\.readout\.nClasses=5/,
    );
    const table = await readClipTable(data);
    if (E.isLeft(table)) assert.fail(table.left.message);
    assert.equal(table.right.clips.length, 40);
    assert.equal(table.right.featureDim, 4);
    // Never over an existing dataset.
    const again = await run([data]);
    assert.equal(again.status, 2);
    assert.match(again.err, /already holds a dataset \(clips\.csv\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("smarthome:sample: bad arguments exit 2 with the reason", async () => {
  const cases: [string[], RegExp][] = [
    [[], /expected one directory, got 0 arguments/],
    [["d", "--dim", "0"], /--dim "0": expected a positive integer/],
    [["d", "--clips", "10", "--classes", "31"], /need --clips \(10\) ≥ --classes \(31\) ≥ 2/],
    [
      ["d", "--min-frames", "50", "--max-frames", "20"],
      /--max-frames \(20\) is below --min-frames \(50\)/,
    ],
    [["d", "--signal-fraction", "1.5"], /expected a number in \(0, 1\]/],
    [["d", "--bogus"], /Unknown option '--bogus'/],
  ];
  for (const [args, expected] of cases) {
    const r = await run(args);
    assert.equal(r.status, 2, args.join(" "));
    assert.match(r.err, expected);
  }
});

Deno.test("smarthome:sample as a command (its own process, as `deno task` runs it)", async () => {
  // In-process tests import the module whole before calling main; a command runs main while the
  // module is still being evaluated, so a constant declared below the entry point is not there yet.
  const dir = await Deno.makeTempDir({ prefix: "crt-sample-cmd-" });
  try {
    const data = join(dir, "d");
    const script = new URL("./smarthome_sample.ts", import.meta.url).pathname;
    const args = [script, data, "--clips", "12", "--dim", "2", "--classes", "3"];
    await denoRun(["run", "--allow-read", "--allow-write", ...args]);
    const table = await readClipTable(data);
    if (E.isLeft(table)) assert.fail(table.left.message);
    assert.equal(table.right.clips.length, 12);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
