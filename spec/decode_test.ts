import assert from "node:assert/strict";
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import { pipe } from "fp-ts/lib/function.js";
import {
  checkWith,
  decodeWith,
  describeValue,
  joinPath,
  SpecError,
  type SpecIssue,
  toSpecError,
} from "./decode.ts";
import {
  intAtLeast,
  NonNegativeInt,
  NonNegativeNumber,
  numberWhere,
  oneOf,
  optional,
  PositiveInt,
  PositiveNumber,
  Probability,
  strict,
  taggedUnion,
} from "./combinators.ts";
// A real record codec (five fields: literal lists and a size) to decode through.
import { MemorySpec as Memory } from "./codecs.ts";

/** The issues of a decode that must fail. */
function issuesOf<A>(r: E.Either<SpecError, A>): readonly SpecIssue[] {
  if (E.isRight(r)) assert.fail(`expected a Left, got ${JSON.stringify(r.right)}`);
  return r.left.issues;
}

function valueOf<A>(r: E.Either<SpecError, A>): A {
  if (E.isLeft(r)) assert.fail(`expected a Right, got:\n${r.left.message}`);
  return r.right;
}

Deno.test("SpecError carries _tag, issues and a one-line-per-issue message", () => {
  const e = new SpecError([
    { path: "a.b", message: "bad" },
    { path: "a[1]", message: "worse" },
  ]);
  assert.equal(e._tag, "SpecError");
  assert.equal(e.name, "SpecError");
  assert.equal(e.message, "a.b: bad\na[1]: worse");
  assert.equal(e.issues.length, 2);
  assert.ok(e instanceof Error);
});

Deno.test("describeValue names the value and its type", () => {
  assert.equal(describeValue("256"), '"256" (string)');
  assert.equal(describeValue(3), "3 (number)");
  assert.equal(describeValue(false), "false (boolean)");
  assert.equal(describeValue(null), "null");
  assert.equal(describeValue(undefined), "undefined");
  assert.equal(describeValue([1, 2]), "an array of length 2");
  assert.equal(describeValue({}), "an object");
  assert.equal(describeValue("x".repeat(100)).length < 60, true);
});

Deno.test("joinPath uses dots for names, brackets for indices and odd keys", () => {
  assert.equal(joinPath("model", "dModel"), "model.dModel");
  assert.equal(joinPath("model.blocks", 1), "model.blocks[1]");
  assert.equal(joinPath("model", "a b"), 'model["a b"]');
});

Deno.test("PositiveInt accepts integers >= 1 and explains every rejection", () => {
  assert.equal(valueOf(decodeWith(PositiveInt, "x", 1)), 1);
  const cases: [unknown, string][] = [
    [-4, "x: must be a positive integer, got -4"],
    [0, "x: must be a positive integer, got 0"],
    [1.5, "x: must be a positive integer, got 1.5"],
    [NaN, "x: must be a positive integer, got NaN"],
    [Infinity, "x: must be a positive integer, got Infinity"],
    ["256", 'x: expected a positive integer, got "256" (string)'],
    [null, "x: expected a positive integer, got null"],
  ];
  for (const [u, message] of cases) {
    const r = decodeWith(PositiveInt, "x", u);
    assert.ok(E.isLeft(r));
    assert.equal(r.left.message, message);
  }
});

Deno.test("NonNegativeInt, PositiveNumber, NonNegativeNumber and Probability bound their ranges", () => {
  assert.ok(NonNegativeInt.is(0) && !NonNegativeInt.is(-1) && !NonNegativeInt.is(0.5));
  assert.ok(PositiveNumber.is(1e-3) && !PositiveNumber.is(0) && !PositiveNumber.is(Infinity));
  assert.ok(NonNegativeNumber.is(0) && !NonNegativeNumber.is(-1e-9) && !NonNegativeNumber.is(NaN));
  assert.ok(Probability.is(0) && Probability.is(0.999) && !Probability.is(1));
  assert.ok(!Probability.is(-0.1) && !Probability.is(NaN));
  assert.deepEqual(issuesOf(decodeWith(Probability, "p", 1)), [
    { path: "p", message: "must be a number in [0, 1), got 1" },
  ]);
});

Deno.test("intAtLeast states its bound", () => {
  assert.deepEqual(issuesOf(decodeWith(intAtLeast(2), "k", 1)), [
    { path: "k", message: "must be an integer >= 2, got 1" },
  ]);
  assert.equal(valueOf(decodeWith(intAtLeast(2), "k", 2)), 2);
});

Deno.test("numberWhere builds a codec with a custom reason", () => {
  const Even = numberWhere({
    name: "Even",
    expected: "an even integer",
    accepts: (n) => Number.isInteger(n) && n % 2 === 0,
  });
  assert.equal(Even.expected, "an even integer");
  assert.deepEqual(issuesOf(decodeWith(Even, "n", 3)), [
    { path: "n", message: "must be an even integer, got 3" },
  ]);
});

Deno.test("oneOf names the allowed values for unknown strings and non-strings", () => {
  const Cell = oneOf(["gru", "ncgru"], "cell");
  assert.equal(valueOf(decodeWith(Cell, "c", "ncgru")), "ncgru");
  assert.deepEqual(issuesOf(decodeWith(Cell, "c", "lstm")), [
    { path: "c", message: 'unknown cell "lstm" (expected gru, ncgru)' },
  ]);
  assert.deepEqual(issuesOf(decodeWith(Cell, "c", 3)), [
    { path: "c", message: "expected a cell (one of gru, ncgru), got 3 (number)" },
  ]);
  assert.deepEqual(Cell.values, ["gru", "ncgru"]);
});

const Outer = strict({ memory: Memory, on: t.boolean }, "Outer");
const goodMemory = {
  cell: "gru",
  dMemory: 8,
  injection: "prependToken",
  rnnInput: "mean",
  orthogonal: "candidate",
};

Deno.test("strict rejects an unknown nested field, naming its path and the allowed fields", () => {
  const r = decodeWith(Outer, "model", { memory: { ...goodMemory, cel: "gru" }, on: true });
  assert.deepEqual(issuesOf(r), [{
    path: "model.memory.cel",
    message: "unknown field (expected one of cell, dMemory, injection, rnnInput, orthogonal)",
  }]);
});

Deno.test("strict reports missing fields, wrong types and unknown fields together", () => {
  const r = decodeWith(Outer, "cfg", { memory: { ...goodMemory, dMemory: "8" }, extra: 1 });
  assert.deepEqual(issuesOf(r), [
    { path: "cfg.memory.dMemory", message: 'expected a positive integer, got "8" (string)' },
    { path: "cfg.on", message: "missing field (expected a boolean)" },
    { path: "cfg.extra", message: "unknown field (expected one of memory, on)" },
  ]);
});

Deno.test("strict returns a fresh object with only the declared fields", () => {
  const input = { memory: goodMemory, on: false };
  const out = valueOf(decodeWith(Outer, "cfg", input));
  assert.deepEqual(out, input);
  assert.notEqual(out, input);
  assert.ok(Outer.is(input));
  assert.ok(!Outer.is({ ...input, more: 1 }));
  assert.deepEqual(Outer.encode(out), input);
});

Deno.test("strict rejects non-objects and arrays at the root", () => {
  for (const u of [null, 3, "x", [], [goodMemory]]) {
    const issues = issuesOf(decodeWith(Memory, "m", u));
    assert.equal(issues.length, 1);
    assert.equal(issues[0].path, "m");
    assert.match(issues[0].message, /^expected an object, got /);
  }
});

Deno.test("strict treats inherited properties as missing", () => {
  const proto = { on: true };
  const u = Object.assign(Object.create(proto), { memory: goodMemory });
  assert.deepEqual(issuesOf(decodeWith(Outer, "cfg", u)), [
    { path: "cfg.on", message: "missing field (expected a boolean)" },
  ]);
});

const Shape = taggedUnion({
  square: strict({ _tag: t.literal("square"), side: PositiveInt }, "Square"),
  disc: strict({ _tag: t.literal("disc"), radius: PositiveInt }, "Disc"),
}, { name: "Shape", noun: "shape kind" });

Deno.test("taggedUnion reports only the selected branch's errors", () => {
  assert.deepEqual(issuesOf(decodeWith(Shape, "s", { _tag: "disc", radius: 0, side: 1 })), [
    { path: "s.radius", message: "must be a positive integer, got 0" },
    { path: "s.side", message: "unknown field (expected one of _tag, radius)" },
  ]);
  assert.deepEqual(valueOf(decodeWith(Shape, "s", { _tag: "square", side: 2 })), {
    _tag: "square",
    side: 2,
  });
});

Deno.test("taggedUnion names an unknown, missing or mistyped _tag", () => {
  assert.deepEqual(issuesOf(decodeWith(Shape, "s", { _tag: "star" })), [
    { path: "s._tag", message: 'unknown shape kind "star" (expected square, disc)' },
  ]);
  assert.deepEqual(issuesOf(decodeWith(Shape, "s", { side: 1 })), [
    { path: "s._tag", message: "missing field (expected a shape kind: one of square, disc)" },
  ]);
  assert.deepEqual(issuesOf(decodeWith(Shape, "s", { _tag: 1 })), [
    { path: "s._tag", message: "expected a shape kind (one of square, disc), got 1 (number)" },
  ]);
  // "constructor" is on Object.prototype, not a branch.
  assert.equal(issuesOf(decodeWith(Shape, "s", { _tag: "constructor" }))[0].path, "s._tag");
  assert.ok(!Shape.is({ _tag: "toString" }));
});

Deno.test("toSpecError writes array indices in brackets", () => {
  const Blocks = strict({ blocks: t.readonlyArray(strict({ n: PositiveInt }, "Block")) }, "Cfg");
  assert.deepEqual(issuesOf(decodeWith(Blocks, "model", { blocks: [{ n: 1 }, { n: 0 }, 7] })), [
    { path: "model.blocks[1].n", message: "must be a positive integer, got 0" },
    { path: "model.blocks[2]", message: "expected an object, got 7 (number)" },
  ]);
});

Deno.test("toSpecError handles plain io-ts codecs and merges a failing io-ts union", () => {
  const r = t.type({ n: t.number, k: t.union([t.literal("a"), t.literal("b")]) }).decode({
    n: "3",
    k: "c",
  });
  assert.ok(E.isLeft(r));
  assert.deepEqual(toSpecError(r.left, "cfg").issues, [
    { path: "cfg.n", message: 'expected a number, got "3" (string)' },
    { path: "cfg.k", message: 'expected "a" or "b", got "c" (string)' },
  ]);
});

Deno.test("checkWith turns cross-field issues into a SpecError", () => {
  const Range = strict({ lo: PositiveInt, hi: PositiveInt }, "Range");
  const decode = (u: unknown) =>
    pipe(
      decodeWith(Range, "range", u),
      E.chain(
        checkWith((r) => r.lo <= r.hi ? [] : [{ path: "range.lo", message: "exceeds range.hi" }]),
      ),
    );
  assert.deepEqual(valueOf(decode({ lo: 1, hi: 2 })), { lo: 1, hi: 2 });
  assert.equal(issuesOf(decode({ lo: 3, hi: 2 }))[0].message, "exceeds range.hi");
});

Deno.test("optional: an absent field is accepted and left out; a present one is checked", () => {
  const Train = strict({ batchSize: PositiveInt, seed: optional(PositiveInt) }, "Train");
  type Train = t.TypeOf<typeof Train>;
  const noSeed: Train = { batchSize: 2 }; // compiles: the field is optional in the type
  assert.deepEqual(decodeWith(Train, "train", noSeed), E.right({ batchSize: 2 }));
  assert.deepEqual(
    decodeWith(Train, "train", { batchSize: 2, seed: undefined }),
    E.right({ batchSize: 2 }),
  );
  assert.deepEqual(
    decodeWith(Train, "train", { batchSize: 2, seed: 7 }),
    E.right({ batchSize: 2, seed: 7 }),
  );
  const bad = decodeWith(Train, "train", { batchSize: 2, seed: 0 });
  assert.ok(E.isLeft(bad));
  assert.equal(bad.left.message, "train.seed: must be a positive integer, got 0");
  assert.ok(Train.is({ batchSize: 1 }) && !Train.is({ batchSize: 1, seed: "x" }));
  assert.deepEqual(Train.encode({ batchSize: 3 }), { batchSize: 3 });
  // A required field is still required.
  const missing = decodeWith(Train, "train", { seed: 7 });
  assert.ok(E.isLeft(missing));
  assert.equal(
    missing.left.message,
    "train.batchSize: missing field (expected a positive integer)",
  );
});

Deno.test("decodeWith: an index into an array under a wrapper codec is written in brackets", () => {
  const Ids = new t.Type<readonly number[] | null, readonly number[] | null, unknown>(
    "Ids | null",
    (u): u is readonly number[] | null => u === null || t.readonlyArray(PositiveInt).is(u),
    (u, c) => (u === null ? t.success(null) : t.readonlyArray(PositiveInt).validate(u, c)),
    t.identity,
  );
  const r = decodeWith(strict({ ids: Ids }, "S"), "s", { ids: [1, 0] });
  assert.ok(E.isLeft(r));
  assert.equal(r.left.message, "s.ids[1]: must be a positive integer, got 0");
});
