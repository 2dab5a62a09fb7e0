import assert from "node:assert/strict";
import { createProgress, formatDuration, formatProgress, formatRate } from "./progress.ts";

Deno.test("formatProgress: shows bar, step/total, percent, loss, tokens/s and ETA", () => {
  const line = formatProgress(
    {
      label: "train",
      step: 3,
      total: 40,
      loss: 6.12345,
      tokensPerSec: 1_234_567,
      etaMs: 3_725_000,
    },
    { barWidth: 8 },
  );
  assert.equal(line, "train [--------]   3/40    7.5%  loss 6.123  1.23M tok/s  ETA 1h02m");
});

Deno.test("formatProgress: unknown values show as --, NaN loss is visible, step is clamped in the bar", () => {
  const line = formatProgress({ step: 0, total: 5, loss: null, tokensPerSec: null, etaMs: null }, {
    barWidth: 4,
  });
  assert.equal(line, "[----]  0/5    0.0%  loss --  -- tok/s  ETA --");
  const nan = formatProgress({ step: 7, total: 5, loss: NaN, tokensPerSec: 3, etaMs: 0 }, {
    barWidth: 4,
  });
  assert.equal(nan, "[####]  7/5  100.0%  loss NaN  3.00 tok/s  ETA 0s");
});

Deno.test("formatDuration / formatRate: units", () => {
  assert.deepEqual([0, 59_400, 60_000, 3_599_000, 3_600_000].map(formatDuration), [
    "0s",
    "59s",
    "1m00s",
    "59m59s",
    "1h00m",
  ]);
  assert.deepEqual([0, 12.345, 999, 1000, 45_678, 9_999_999].map(formatRate), [
    "0.00",
    "12.3",
    "999",
    "1.00k",
    "45.7k",
    "10.0M",
  ]);
});

Deno.test("createProgress: not a terminal, prints one line per 25% and the last step", () => {
  let t = 0;
  const out: string[] = [];
  const p = createProgress({
    total: 8,
    label: "eval",
    isTty: false,
    everyPercent: 25,
    write: (s) => out.push(s),
    now: () => t,
  });
  for (let step = 1; step <= 8; step++) {
    t += 500;
    p.update({ step, loss: 4, tokens: 100 });
  }
  p.done();
  assert.deepEqual(out.map((l) => l.match(/ (\d+)\/8 /)?.[1]), ["2", "4", "6", "8"]);
  assert.ok(out.every((l) => l.endsWith("\n") && !l.includes("\r")));
  assert.ok(out[0].includes("200 tok/s  ETA 3s"), out[0]);
});

Deno.test("createProgress: on a terminal, rewrites one line with \\r, throttled, and ends with a newline", () => {
  let t = 0;
  const out: string[] = [];
  const p = createProgress({
    total: 100,
    isTty: true,
    write: (s) => out.push(s),
    now: () => t,
    minIntervalMs: 100,
  });
  for (let step = 1; step <= 100; step++) {
    t += 10;
    p.update({ step, tokens: 50 });
  }
  p.done();
  assert.equal(out.at(-1), "\n");
  const lines = out.slice(0, -1);
  assert.ok(lines.every((l) => l.startsWith("\r") && l.endsWith("\x1b[K")));
  assert.ok(lines.length >= 10 && lines.length <= 12, `${lines.length} redraws`);
  assert.ok(/100\/100 {2}100\.0%.*5\.00k tok\/s {2}ETA 0s/.test(lines.at(-1) ?? ""));
});

Deno.test("createProgress: the slow first step is replaced in the ETA by the next one", () => {
  let t = 0;
  const out: string[] = [];
  const p = createProgress({
    total: 50,
    isTty: false,
    everyPercent: 50,
    write: (s) => out.push(s),
    now: () => t,
  });
  t += 30_000; // compilation
  p.update({ step: 1, tokens: 10 });
  for (let step = 2; step <= 25; step++) {
    t += 100;
    p.update({ step, tokens: 10 });
  }
  const eta = out[0].match(/ETA (\S+)/)?.[1];
  assert.equal(out.length, 1);
  assert.equal(eta, "3s"); // 25 steps left at 100 ms
});
