import assert from "node:assert/strict";
import {
  createProgress,
  formatDuration,
  formatProgress,
  formatRate,
  type Progress,
  type ProgressOptions,
} from "./progress.ts";

/**
 * A progress reporter that writes into `out`, on a clock of its own:
 * `after(ms, update)` moves the clock on by `ms`, then updates.
 */
const recorded = (opts: Omit<ProgressOptions, "write" | "now">) => {
  let t = 0;
  const out: string[] = [];
  const progress = createProgress({ ...opts, write: (s) => out.push(s), now: () => t });
  const after = (ms: number, update: Parameters<Progress["update"]>[0]) => {
    t += ms;
    progress.update(update);
  };
  return { out, after, done: () => progress.done() };
};

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
  const { out, after, done } = recorded({
    total: 8,
    label: "eval",
    isTty: false,
    everyPercent: 25,
  });
  for (let step = 1; step <= 8; step++) after(500, { step, loss: 4, tokens: 100 });
  done();
  assert.deepEqual(out.map((l) => l.match(/ (\d+)\/8 /)?.[1]), ["2", "4", "6", "8"]);
  assert.ok(out.every((l) => l.endsWith("\n") && !l.includes("\r")));
  assert.ok(out[0].includes("200 tok/s  ETA 3s"), out[0]);
});

Deno.test("createProgress: on a terminal, rewrites one line with \\r, throttled, and ends with a newline", () => {
  const { out, after, done } = recorded({ total: 100, isTty: true, minIntervalMs: 100 });
  for (let step = 1; step <= 100; step++) after(10, { step, tokens: 50 });
  done();
  assert.equal(out.at(-1), "\n");
  const lines = out.slice(0, -1);
  assert.ok(lines.every((l) => l.startsWith("\r") && l.endsWith("\x1b[K")));
  assert.ok(lines.length >= 10 && lines.length <= 12, `${lines.length} redraws`);
  assert.ok(/100\/100 {2}100\.0%.*5\.00k tok\/s {2}ETA 0s/.test(lines.at(-1) ?? ""));
});

Deno.test("createProgress: the slow first step is replaced in the ETA by the next one", () => {
  const { out, after } = recorded({ total: 50, isTty: false, everyPercent: 50 });
  after(30_000, { step: 1, tokens: 10 }); // compilation
  for (let step = 2; step <= 25; step++) after(100, { step, tokens: 10 });
  const eta = out[0].match(/ETA (\S+)/)?.[1];
  assert.equal(out.length, 1);
  assert.equal(eta, "3s"); // 25 steps left at 100 ms
});
