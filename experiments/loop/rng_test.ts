import assert from "node:assert/strict";
import { createRng, isRngState, restoreRng } from "./rng.ts";

Deno.test("restoreRng: matches the xoshiro128** reference sequence from [1, 2, 3, 4]", () => {
  const r = restoreRng([1, 2, 3, 4]);
  assert.deepEqual([r.next(), r.next(), r.next()], [11520, 0, 5927040]);
});

Deno.test("restoreRng: a restored state reproduces the rest of the sequence exactly", () => {
  const a = createRng(1234);
  for (let i = 0; i < 100; i++) a.next();
  const saved = JSON.parse(JSON.stringify(a.state())); // as through a checkpoint header
  assert.ok(isRngState(saved));
  const b = restoreRng(saved);
  const fromA = Array.from({ length: 50 }, () => [a.next(), a.float(), a.int(10)]);
  const fromB = Array.from({ length: 50 }, () => [b.next(), b.float(), b.int(10)]);
  assert.deepEqual(fromB, fromA);
});

Deno.test("createRng: equal seeds agree, different seeds (including high bits) differ", () => {
  const draw = (seed: number) => {
    const r = createRng(seed);
    return [r.next(), r.next(), r.next()];
  };
  assert.deepEqual(draw(5), draw(5));
  assert.notDeepEqual(draw(5), draw(6));
  assert.notDeepEqual(draw(1), draw(1 + 2 ** 32));
});

Deno.test("Rng: next is uint32, float in [0, 1), int in [0, bound) and roughly uniform", () => {
  const r = createRng(99);
  const counts = new Array<number>(6).fill(0);
  for (let i = 0; i < 6000; i++) {
    const u = r.next();
    assert.ok(Number.isInteger(u) && u >= 0 && u < 2 ** 32);
    const f = r.float();
    assert.ok(f >= 0 && f < 1);
    counts[r.int(6)]++;
  }
  for (const c of counts) assert.ok(c > 850 && c < 1150, `int(6) counts ${counts}`);
  assert.ok(r.state().every((w) => w >= 0 && w < 2 ** 32));
});

Deno.test("restoreRng / Rng.int / createRng: reject invalid input", () => {
  assert.throws(() => restoreRng([0, 0, 0, 0]), RangeError);
  assert.throws(() => restoreRng([1, 2, 3, -1]), RangeError);
  assert.ok(!isRngState([1, 2, 3]));
  assert.ok(!isRngState([1.5, 2, 3, 4]));
  assert.throws(() => createRng(0).int(0), RangeError);
  assert.throws(() => createRng(0.5), RangeError);
});
