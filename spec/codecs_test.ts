import assert from "node:assert/strict";
import type * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import type { SpecError, SpecIssue } from "./decode.ts";
import {
  type BlockFields,
  checkModelSpec,
  type CrtSpec,
  decodeModelSpec,
  type InputSpec,
  type MemorySpec,
  type ModelSpec,
  type Positional,
  type Readout,
  type TransformerSpec,
  type XlSpec,
} from "./codecs.ts";
import type * as types from "./types.ts";
import { referenceCrt, referenceTransformer, referenceXl } from "./reference_specs.ts";

// ---------------------------------------------------------------------------
// The decoded types are exactly the shapes the rest of the code was written
// against: what each codec decodes is its type of types.ts, to the letter
// (readonly, optional fields, literal lists), not only assignable both ways
// as codecs.ts checks at compile time.

type Equals<X, Y> = (<T>() => T extends X ? 1 : 2) extends (<T>() => T extends Y ? 1 : 2) ? true
  : false;
function assertType<_T extends true>(): void {}

assertType<Equals<t.TypeOf<typeof Positional>, types.Positional>>();
assertType<Equals<t.TypeOf<typeof Readout>, types.Readout>>();
assertType<Equals<t.TypeOf<typeof InputSpec>, types.InputSpec>>();
assertType<Equals<t.TypeOf<typeof MemorySpec>, types.MemorySpec>>();
assertType<Equals<t.TypeOf<typeof BlockFields>, types.BlockFields>>();
assertType<Equals<t.TypeOf<typeof CrtSpec>, types.CrtSpec>>();
assertType<Equals<t.TypeOf<typeof TransformerSpec>, types.TransformerSpec>>();
assertType<Equals<t.TypeOf<typeof XlSpec>, types.XlSpec>>();
assertType<Equals<t.TypeOf<typeof ModelSpec>, types.ModelSpec>>();

// ---------------------------------------------------------------------------
// Helpers

function issuesOf(u: unknown): readonly SpecIssue[] {
  const r = decodeModelSpec(u);
  if (E.isRight(r)) assert.fail(`expected a Left, got ${JSON.stringify(r.right)}`);
  return r.left.issues;
}

function messageOf(u: unknown): string {
  return issuesOf(u).map((i) => `${i.path}: ${i.message}`).join("\n");
}

function valueOf(u: unknown): ModelSpec {
  const r = decodeModelSpec(u);
  if (E.isLeft(r)) assert.fail(`expected a Right, got:\n${r.left.message}`);
  return r.right;
}

/** A mutable deep copy of a reference spec, to break on purpose. */
function copy(spec: ModelSpec): Record<string, unknown> & { memory: Record<string, unknown> } {
  return JSON.parse(JSON.stringify(spec));
}

const references: readonly ModelSpec[] = [referenceCrt, referenceTransformer, referenceXl];

// ---------------------------------------------------------------------------
// Reference specs

Deno.test("decodeModelSpec accepts each reference spec unchanged", () => {
  for (const spec of references) assert.deepEqual(valueOf(spec), spec);
});

Deno.test("decodeModelSpec round-trips each reference spec through JSON", () => {
  for (const spec of references) {
    const again = valueOf(JSON.parse(JSON.stringify(spec)));
    assert.deepEqual(again, spec);
    assert.equal(JSON.stringify(again), JSON.stringify(spec));
  }
});

Deno.test("referenceCrt, referenceTransformer and referenceXl hold the reference settings (docs/substrate.md)", () => {
  const blocks = { vocabSize: 10000, dModel: 256, nHeads: 4, dFF: 1024, nLayers: 2, dropout: 0.1 };
  const readout = { _tag: "lm", tie: false };
  const memory = {
    cell: "gru",
    dMemory: 256,
    injection: "prependToken",
    rnnInput: "mean",
    orthogonal: "candidate",
  };
  const positional = "learned";
  assert.deepEqual(referenceCrt, {
    _tag: "crt",
    ...blocks,
    segmentLen: 35,
    readout,
    positional,
    memory,
  });
  assert.deepEqual(referenceTransformer, {
    _tag: "transformer",
    ...blocks,
    segmentLen: 70,
    readout,
    positional,
  });
  assert.deepEqual(referenceXl, { _tag: "xl", ...blocks, segmentLen: 35, readout, memLen: 35 });
});

Deno.test("referenceCrt is deeply frozen", () => {
  assert.ok(Object.isFrozen(referenceCrt));
  assert.ok(Object.isFrozen(referenceCrt.memory));
  assert.ok(Object.isFrozen(referenceCrt.readout));
});

// ---------------------------------------------------------------------------
// Structural errors

Deno.test("decodeModelSpec rejects an unknown top-level field by path", () => {
  assert.equal(
    messageOf({ ...referenceCrt, bpttSegments: 2 }),
    "model.bpttSegments: unknown field (expected one of _tag, vocabSize, dModel, nHeads, dFF, " +
      "nLayers, dropout, segmentLen, readout, input, positional, memory)",
  );
});

Deno.test("decodeModelSpec rejects an unknown nested field by path", () => {
  const spec = copy(referenceCrt);
  spec.memory.cel = "gru";
  assert.equal(
    messageOf(spec),
    "model.memory.cel: unknown field (expected one of cell, dMemory, injection, rnnInput, orthogonal)",
  );
});

Deno.test("decodeModelSpec reports a missing field with what it expects", () => {
  const { dFF: _, ...spec } = referenceCrt;
  assert.equal(messageOf(spec), "model.dFF: missing field (expected a positive integer)");
});

Deno.test("decodeModelSpec says what it expected and got for a string in a number field", () => {
  assert.equal(
    messageOf({ ...referenceCrt, dModel: "256" }),
    'model.dModel: expected a positive integer, got "256" (string)',
  );
  assert.equal(
    messageOf({ ...referenceCrt, readout: { _tag: "lm", tie: "no" } }),
    'model.readout.tie: expected a boolean, got "no" (string)',
  );
});

Deno.test("decodeModelSpec rejects zero and negative sizes in every size field", () => {
  const sizes = ["dModel", "nHeads", "dFF", "nLayers", "segmentLen"] as const;
  for (const k of sizes) {
    for (const bad of [0, -4]) {
      assert.equal(
        messageOf({ ...referenceTransformer, [k]: bad }),
        `model.${k}: must be a positive integer, got ${bad}`,
      );
    }
  }
  assert.equal(
    messageOf({ ...referenceCrt, vocabSize: 1 }),
    "model.vocabSize: must be an integer >= 2, got 1",
  );
  const spec = copy(referenceCrt);
  spec.memory.dMemory = 0;
  assert.equal(messageOf(spec), "model.memory.dMemory: must be a positive integer, got 0");
  assert.equal(
    messageOf({ ...referenceCrt, dFF: 1024.5 }),
    "model.dFF: must be a positive integer, got 1024.5",
  );
});

Deno.test("decodeModelSpec accepts memLen 0 for xl and rejects a negative one", () => {
  assert.equal(valueOf({ ...referenceXl, memLen: 0 })._tag, "xl");
  assert.equal(
    messageOf({ ...referenceXl, memLen: -1 }),
    "model.memLen: must be a non-negative integer, got -1",
  );
});

Deno.test("decodeModelSpec names the allowed cells for an unknown cell", () => {
  const spec = copy(referenceCrt);
  spec.memory.cell = "lstm";
  assert.equal(messageOf(spec), 'model.memory.cell: unknown cell "lstm" (expected gru, ncgru)');
});

Deno.test("decodeModelSpec names every switch's allowed values", () => {
  assert.equal(
    messageOf({ ...referenceCrt, positional: "rotary" }),
    'model.positional: unknown positional encoding "rotary" (expected learned, sinusoidal)',
  );
  const spec = copy(referenceCrt);
  spec.memory.rnnInput = "last";
  spec.memory.injection = "append";
  assert.equal(
    messageOf(spec),
    'model.memory.injection: unknown injection "append" (expected prependToken, addToEmbeddings)\n' +
      'model.memory.rnnInput: unknown RNN input "last" (expected tokens, mean, slot)',
  );
});

Deno.test("decodeModelSpec names the model kinds for an unknown _tag", () => {
  assert.equal(
    messageOf({ ...referenceCrt, _tag: "foo" }),
    'model._tag: unknown model kind "foo" (expected crt, transformer, xl)',
  );
  assert.equal(
    messageOf({ ...referenceCrt, readout: { _tag: "ctc" } }),
    'model.readout._tag: unknown readout kind "ctc" (expected lm, adaptive, classifier)',
  );
});

Deno.test("decodeModelSpec reports only the selected kind's errors", () => {
  // A crt's fields under the transformer tag: only `memory` is foreign.
  assert.equal(
    messageOf({ ...referenceCrt, _tag: "transformer" }),
    "model.memory: unknown field (expected one of _tag, vocabSize, dModel, nHeads, dFF, " +
      "nLayers, dropout, segmentLen, readout, input, positional)",
  );
});

Deno.test("decodeModelSpec keeps dropout in [0, 1)", () => {
  for (const bad of [1, 1.5, -0.1]) {
    assert.equal(
      messageOf({ ...referenceCrt, dropout: bad }),
      `model.dropout: must be a number in [0, 1), got ${bad}`,
    );
  }
  assert.equal(valueOf({ ...referenceCrt, dropout: 0 }).dropout, 0);
});

Deno.test("decodeModelSpec requires at least 2 classes for a classifier", () => {
  const readout = { _tag: "classifier", nClasses: 1, pool: "memory" };
  assert.equal(
    messageOf({ ...referenceCrt, readout }),
    "model.readout.nClasses: must be an integer >= 2, got 1",
  );
  const ok = valueOf({ ...referenceCrt, readout: { ...readout, nClasses: 31 } });
  assert.deepEqual(ok.readout, { _tag: "classifier", nClasses: 31, pool: "memory" });
});

Deno.test("decodeModelSpec allows tie only on the lm readout", () => {
  assert.equal(valueOf({ ...referenceCrt, readout: { _tag: "lm", tie: true } }).readout._tag, "lm");
  assert.equal(
    messageOf({
      ...referenceCrt,
      readout: { _tag: "classifier", nClasses: 31, pool: "mean", tie: true },
    }),
    "model.readout.tie: unknown field (expected one of _tag, nClasses, pool)",
  );
});

Deno.test("decodeModelSpec reports many issues together", () => {
  const spec = copy(referenceCrt);
  spec.dModel = -4;
  spec.dropout = 2;
  spec.extra = true;
  spec.memory.cell = "lstm";
  assert.deepEqual(issuesOf(spec).map((i) => i.path), [
    "model.dModel",
    "model.dropout",
    "model.memory.cell",
    "model.extra",
  ]);
});

Deno.test("decodeModelSpec uses the caller's root in every path", () => {
  const r = decodeModelSpec({ ...referenceCrt, nHeads: 3 }, "experiment.model");
  assert.ok(E.isLeft(r));
  assert.equal(
    r.left.message,
    "experiment.model.nHeads: 3 does not divide experiment.model.dModel (256)",
  );
});

// ---------------------------------------------------------------------------
// Cross-field rules

Deno.test("decodeModelSpec rejects nHeads that does not divide dModel", () => {
  const r = decodeModelSpec({ ...referenceCrt, nHeads: 3 });
  assert.ok(E.isLeft(r));
  const e: SpecError = r.left;
  assert.equal(e._tag, "SpecError");
  assert.equal(e.message, "model.nHeads: 3 does not divide model.dModel (256)");
  assert.deepEqual(e.issues, [
    { path: "model.nHeads", message: "3 does not divide model.dModel (256)" },
  ]);
  for (const spec of [referenceTransformer, referenceXl]) {
    assert.equal(
      messageOf({ ...spec, nHeads: 3 }),
      "model.nHeads: 3 does not divide model.dModel (256)",
    );
  }
});

Deno.test("decodeModelSpec requires an even dMemory for ncgru only", () => {
  const spec = copy(referenceCrt);
  spec.memory.cell = "ncgru";
  spec.memory.dMemory = 255;
  assert.equal(
    messageOf(spec),
    "model.memory.dMemory: must be even for the ncgru cell (its skew-symmetric A initialises " +
      "as 2×2 blocks), got 255",
  );
  spec.memory.cell = "gru";
  assert.equal(valueOf(spec)._tag, "crt");
});

Deno.test("decodeModelSpec accepts either orthogonal value with the gru cell", () => {
  const spec = copy(referenceCrt);
  spec.memory.orthogonal = "candidateAndReset";
  assert.equal(valueOf(spec)._tag, "crt");
});

Deno.test("decodeModelSpec requires a prepended memory token for rnnInput slot", () => {
  const spec = copy(referenceCrt);
  spec.memory.rnnInput = "slot";
  assert.equal(valueOf(spec)._tag, "crt");
  spec.memory.injection = "addToEmbeddings";
  assert.equal(
    messageOf(spec),
    `model.memory.rnnInput: "slot" reads the memory token's output, which needs ` +
      `model.memory.injection "prependToken" (got "addToEmbeddings")`,
  );
});

Deno.test("decodeModelSpec allows the memory pool of a classifier only on crt", () => {
  const readout = { _tag: "classifier", nClasses: 31, pool: "memory" };
  assert.equal(valueOf({ ...referenceCrt, readout }).readout._tag, "classifier");
  assert.equal(
    messageOf({ ...referenceTransformer, readout }),
    `model.readout.pool: "memory" reads the persistent memory, which only crt has ` +
      `(model._tag is "transformer"); use "mean"`,
  );
  assert.equal(issuesOf({ ...referenceXl, readout })[0].path, "model.readout.pool");
  assert.equal(valueOf({ ...referenceXl, readout: { ...readout, pool: "mean" } })._tag, "xl");
});

Deno.test("checkModelSpec reports every cross-field issue of a typed spec", () => {
  const spec: CrtSpec = {
    ...referenceCrt,
    nHeads: 3,
    memory: { ...referenceCrt.memory, cell: "ncgru", dMemory: 7 },
  };
  assert.deepEqual(checkModelSpec(spec).map((i) => i.path), [
    "model.nHeads",
    "model.memory.dMemory",
  ]);
  assert.deepEqual(checkModelSpec(referenceCrt), []);
});

// ---------------------------------------------------------------------------
// Totality

/** A small deterministic PRNG (mulberry32), so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function randomValue(next: () => number, depth: number): unknown {
  const atoms: unknown[] = [
    null,
    undefined,
    0,
    -1,
    3,
    0.5,
    NaN,
    Infinity,
    "",
    "crt",
    "xl",
    "gru",
    "__proto__",
    true,
    false,
  ];
  const k = Math.floor(next() * (depth > 0 ? 4 : 2));
  if (k <= 1) return atoms[Math.floor(next() * atoms.length)];
  if (k === 2) {
    return Array.from({ length: Math.floor(next() * 3) }, () => randomValue(next, depth - 1));
  }
  const keys = ["_tag", "memory", "readout", "dModel", "cell", "x", "constructor"];
  const o: Record<string, unknown> = {};
  for (const key of keys) if (next() < 0.4) o[key] = randomValue(next, depth - 1);
  return o;
}

/** Replaces one random leaf or subtree of `spec` with a random value. */
function mutate(spec: unknown, next: () => number): unknown {
  if (typeof spec !== "object" || spec === null || next() < 0.3) return randomValue(next, 2);
  const o = { ...(spec as Record<string, unknown>) };
  const keys = Object.keys(o);
  const key = keys[Math.floor(next() * keys.length)];
  if (key !== undefined) o[key] = mutate(o[key], next);
  return o;
}

Deno.test("decodeModelSpec never throws: odd inputs decode to Left", () => {
  const odd: unknown[] = [
    null,
    undefined,
    0,
    NaN,
    "crt",
    true,
    [],
    [referenceCrt],
    {},
    { _tag: null },
    { _tag: "crt" },
    { _tag: "__proto__" },
    { _tag: "hasOwnProperty" },
    Object.create(null),
    JSON.parse('{"_tag":"crt","__proto__":{"dModel":256}}'),
    { ...referenceCrt, memory: null },
    { ...referenceCrt, memory: [] },
    { ...referenceCrt, readout: "lm" },
    { ...referenceCrt, readout: { _tag: "lm", tie: true, nested: { deep: [1, { x: 2 }] } } },
    () => referenceCrt,
    Symbol("spec"),
    10n,
    new Date(0),
    new Map([["_tag", "crt"]]),
  ];
  for (const [i, u] of odd.entries()) {
    const r = decodeModelSpec(u);
    assert.ok(E.isLeft(r), `accepted odd[${i}]`);
    assert.ok(r.left.issues.length > 0);
    assert.ok(r.left.issues.every((i) => i.path.startsWith("model")));
  }
});

Deno.test("decodeModelSpec never throws on random values and random mutations of valid specs", () => {
  const next = rng(20250501);
  for (let i = 0; i < 2000; i++) {
    const u = i % 2 === 0 ? randomValue(next, 4) : mutate(references[i % references.length], next);
    const r = decodeModelSpec(u);
    if (E.isLeft(r)) {
      assert.ok(r.left.issues.length > 0);
      for (const issue of r.left.issues) assert.ok(issue.message.length > 0);
    } else {
      // Whatever is accepted is a consistent spec that round-trips.
      assert.deepEqual(checkModelSpec(r.right), []);
      assert.deepEqual(valueOf(JSON.parse(JSON.stringify(r.right))), r.right);
    }
  }
});
