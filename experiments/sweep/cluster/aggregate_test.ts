import assert from "node:assert/strict";
import {
  aggregateMembers,
  formatMeanSd,
  meanSd,
  memberTable,
  type SeedResult,
} from "./aggregate.ts";

const row = (member: string, seed: number, patch: Partial<SeedResult> = {}): SeedResult => ({
  member,
  seed,
  segmentLen: 35,
  params: 2_478_410,
  flopsPerToken: 8_412_345,
  flopsPerTokenCore: 123_456,
  validPpl: 170,
  testPpl: null,
  tokensPerSecond: 1000,
  ...patch,
});

Deno.test("meanSd: sample standard deviation (n − 1), none below two values", () => {
  assert.deepEqual(meanSd([1, 2, 3, 4]), { mean: 2.5, sd: Math.sqrt(5 / 3), n: 4 });
  assert.deepEqual(meanSd([7, 7]), { mean: 7, sd: 0, n: 2 });
  assert.deepEqual(meanSd([3]), { mean: 3, sd: null, n: 1 });
  assert.equal(meanSd([]), null);
  // Two passes: exact for large, close values, where a one-pass Σx² − n·mean² cancels.
  assert.deepEqual(meanSd([1e9 + 1, 1e9 + 2, 1e9 + 3]), { mean: 1e9 + 2, sd: 1, n: 3 });
});

Deno.test("aggregateMembers: groups by member in first-seen order, over the seeds that measured", () => {
  const r = aggregateMembers([
    row("crt-half", 1, { validPpl: 170, testPpl: 160, tokensPerSecond: 900 }),
    row("full", 1, { segmentLen: 140, validPpl: 180 }),
    row("crt-half", 2, { validPpl: 174, testPpl: null, tokensPerSecond: 1100 }),
    row("crt-half", 3, { validPpl: 172, testPpl: 164, tokensPerSecond: 1000 }),
  ]);
  assert(r._tag === "Right");
  assert.deepEqual(r.right.map((m) => m.member), ["crt-half", "full"]);
  const half = r.right[0];
  assert.deepEqual(half.seeds, [1, 2, 3]);
  assert.deepEqual(half.validPpl, { mean: 172, sd: 2, n: 3 });
  assert.deepEqual(half.testPpl, { mean: 162, sd: Math.sqrt(8), n: 2 });
  assert.deepEqual(half.tokensPerSecond, { mean: 1000, sd: 100, n: 3 });
  assert.equal(half.params, 2_478_410);
  const full = r.right[1];
  assert.deepEqual(full.validPpl, { mean: 180, sd: null, n: 1 });
  assert.equal(full.testPpl, null);
  assert.equal(full.segmentLen, 140);
});

Deno.test("aggregateMembers: refuses duplicate seeds, disagreeing seeds and non-finite values", () => {
  const dup = aggregateMembers([row("a", 1), row("a", 1)]);
  assert(dup._tag === "Left" && dup.left._tag === "DuplicateSeed" && dup.left.seed === 1);
  for (const field of ["segmentLen", "params", "flopsPerToken", "flopsPerTokenCore"] as const) {
    const r = aggregateMembers([row("a", 1), row("a", 2, { [field]: 1 })]);
    assert(r._tag === "Left" && r.left._tag === "InconsistentSeeds", field);
    assert.equal(r.left.field, field);
    assert.match(r.left.message, /with seed 1 but 1 with seed 2/);
  }
  const nan = aggregateMembers([row("a", 1), row("a", 2, { validPpl: Number.POSITIVE_INFINITY })]);
  assert(nan._tag === "Left" && nan.left._tag === "NonFiniteValue");
  assert.equal(nan.left.field, "validPpl");
  assert.equal(nan.left.seed, 2);
});

Deno.test("formatMeanSd: mean ± sd, the mean alone, a dash, and fewer seeds flagged", () => {
  assert.equal(
    formatMeanSd({ mean: 1234.4, sd: 56.6, n: 2 }, { format: (n) => n.toFixed(0) }),
    "1234 ± 57",
  );
  assert.equal(formatMeanSd({ mean: 1.23456, sd: 0.01, n: 2 }, { digits: 3 }), "1.235 ± 0.010");
  assert.equal(formatMeanSd({ mean: 5, sd: 0, n: 2 }, { digits: 1, of: 2 }), "5.0 ± 0.0");
  assert.equal(formatMeanSd({ mean: 5, sd: 0, n: 2 }, { digits: 1, of: 3 }), "5.0 ± 0.0 (2 of 3)");
  assert.equal(formatMeanSd(null, { digits: 1, of: 3 }), "–");
});

Deno.test("memberTable: one row per member, columns in the header's order", () => {
  const r = aggregateMembers([
    row("crt|half", 1, { validPpl: 170, tokensPerSecond: 900 }),
    row("crt|half", 2, { validPpl: 174, tokensPerSecond: 1100 }),
    row("full", 1, {
      segmentLen: 140,
      params: 12_000,
      flopsPerToken: 2.5e9,
      flopsPerTokenCore: 512,
    }),
  ]);
  assert(r._tag === "Right");
  const lines = memberTable(r.right).trimEnd().split("\n");
  assert.equal(lines.length, 4);
  const cells = (l: string) => l.slice(2, -2).split(/ (?<!\\)\| /);
  assert.deepEqual(cells(lines[0]), [
    "member",
    "segment length",
    "seeds",
    "params",
    "FLOPs/token",
    "FLOPs/token without embedding and output layer",
    "valid ppl",
    "test ppl",
    "tokens/s",
  ]);
  assert.equal(lines[1].split("|").length - 2, 9, "one alignment cell per column");
  assert.deepEqual(cells(lines[2]), [
    "crt\\|half",
    "35",
    "2",
    "2,478,410",
    "8.41 M",
    "123 k",
    "172.0 ± 2.8",
    "–",
    "1,000 ± 141",
  ]);
  assert.deepEqual(cells(lines[3]), [
    "full",
    "140",
    "1",
    "12,000",
    "2.50 G",
    "512",
    "170.0",
    "–",
    "1,000",
  ]);
});
