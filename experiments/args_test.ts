import assert from "node:assert/strict";
import { tempDir } from "../tests/_temp.ts";
import * as E from "fp-ts/lib/Either.js";
import { type Cli, type CliError, parseCli } from "./args.ts";
import {
  applySets,
  mergePatch,
  override,
  type OverrideError,
  parseSetValue,
  readConfigFile,
  setPath,
} from "./overrides.ts";

function cli(argv: string[]): Cli {
  const r = parseCli(argv);
  if (E.isLeft(r)) assert.fail(`${r.left._tag}: ${r.left.message}`);
  return r.right;
}

function cliError(argv: string[]): CliError {
  const r = parseCli(argv);
  if (E.isRight(r)) assert.fail(`expected an error for ${argv.join(" ")}`);
  return r.left;
}

function overrideError(r: E.Either<OverrideError, unknown>): OverrideError {
  if (E.isRight(r)) assert.fail("expected an OverrideError");
  return r.left;
}

/** What a command line without the sweep options says about them. */
const NO_SWEEP_FLAGS = {
  seeds: null,
  member: null,
  seed: null,
  slurm: false,
  sbatch: null,
  collect: null,
} as const;

Deno.test("parseCli: a bare name gets the defaults", () => {
  assert.deepEqual(cli(["ptb-crt"]), {
    name: "ptb-crt",
    quick: false,
    data: null,
    out: null,
    config: null,
    set: [],
    resume: null,
    dryRun: false,
    backend: "wasm",
    matmul: "auto",
    ...NO_SWEEP_FLAGS,
  });
});

Deno.test("parseCli: every option, in any order, --set repeatable and order-preserving", () => {
  const c = cli([
    "--quick",
    "--data",
    "/d",
    "ptb-crt",
    "--out=/o",
    "--config",
    "x.json",
    "--set",
    "training.lr=3e-4",
    "--set=model.memory.cell=ncgru",
    "--set",
    "meta.note=a=b",
    "--resume",
    "runs/r1",
    "--dry-run",
    "--backend",
    "cpu",
    "--matmul",
    "portable",
  ]);
  assert.deepEqual(c, {
    name: "ptb-crt",
    quick: true,
    data: "/d",
    out: "/o",
    config: "x.json",
    set: [
      { path: "training.lr", raw: "3e-4" },
      { path: "model.memory.cell", raw: "ncgru" },
      { path: "meta.note", raw: "a=b" },
    ],
    resume: "runs/r1",
    dryRun: true,
    backend: "cpu",
    matmul: "portable",
    ...NO_SWEEP_FLAGS,
  });
});

Deno.test("parseCli: the sweep options, and the combinations that make no sense", () => {
  const m = cli(["ptb-sweep", "--member", "crt-s35", "--seed", "2", "--seeds", "3"]);
  assert.deepEqual([m.member, m.seed, m.seeds, m.slurm], ["crt-s35", 2, 3, false]);
  const s = cli(["ptb-sweep", "--slurm", "--sbatch=--partition=cpu --qos=low"]);
  assert.deepEqual([s.slurm, s.sbatch], [true, "--partition=cpu --qos=low"]);
  assert.equal(cli(["ptb-sweep", "--collect", "runs/s"]).collect, "runs/s");
  const bad = (argv: string[], option: string, message: RegExp) => {
    const e = cliError(argv);
    assert.ok(e._tag === "InvalidOption" && e.option === option, `${argv.join(" ")}: ${e.message}`);
    assert.match(e.message, message);
  };
  bad(["ptb-sweep", "--seeds", "0"], "--seeds", /--seeds "0": expected an integer ≥ 1/);
  bad(["ptb-sweep", "--seeds", "2.5"], "--seeds", /expected an integer/);
  bad(["ptb-sweep", "--member", "a", "--seed=-1"], "--seed", /expected an integer ≥ 0/);
  bad(["ptb-sweep", "--seed", "1"], "--seed", /--seed needs --member NAME/);
  bad(["ptb-sweep", "--sbatch=-p x"], "--sbatch", /--sbatch needs --slurm/);
  bad(["ptb-sweep", "--slurm", "--member", "a"], "--slurm", /no --member/);
  bad(["ptb-sweep", "--collect", "d", "--slurm"], "--collect", /none of --slurm/);
  bad(["ptb-sweep", "--collect", "d", "--resume", "d"], "--collect", /none of/);
});

Deno.test("parseCli: errors are tagged and say what was wrong", () => {
  const unknown = cliError(["ptb-crt", "--lr", "1"]);
  assert.ok(unknown._tag === "UnknownOption" && unknown.option === "--lr");
  assert.match(unknown.message, /unknown option --lr[\s\S]*usage:/);
  const missingValue = cliError(["ptb-crt", "--data"]);
  assert.ok(missingValue._tag === "InvalidOption");
  assert.match(missingValue.message, /--data/);
  const backend = cliError(["ptb-crt", "--backend", "webgpu"]);
  assert.ok(backend._tag === "InvalidOption" && backend.option === "--backend");
  assert.match(backend.message, /expected one of wasm, cpu/);
  const matmul = cliError(["ptb-crt", "--matmul", "gpu"]);
  assert.ok(matmul._tag === "InvalidOption" && matmul.option === "--matmul");
  assert.match(matmul.message, /--matmul "gpu": expected one of auto, native, portable/);
  assert.equal(cliError([])._tag, "MissingName");
  const two = cliError(["a", "b"]);
  assert.ok(two._tag === "UnexpectedArgument" && two.argument === "b");
  const set = cliError(["a", "--set", "training.lr"]);
  assert.ok(set._tag === "BadSet");
  assert.match(set.message, /expected path=value/);
  assert.equal(cliError(["a", "--set", "=3"])._tag, "BadSet");
  const help = cliError(["-h"]);
  assert.ok(help._tag === "HelpRequested" && help.message.startsWith("usage:"));
});

Deno.test("parseSetValue: JSON when it parses, else the string", () => {
  assert.deepEqual(
    ["1", "-2.5e-3", "true", "null", '"7"', "[1,2]", '{"a":1}', "ncgru", "Infinity", "", " 3 "].map(
      parseSetValue,
    ),
    [1, -2.5e-3, true, null, "7", [1, 2], { a: 1 }, "ncgru", "Infinity", "", 3],
  );
});

const BASE = {
  model: { dModel: 256, memory: { cell: "gru", dMemory: 128 }, readout: { _tag: "lm", tie: true } },
  training: { lr: 1e-3, steps: 1000, warmup: 100 },
  blocks: [{ dFF: 512 }, { dFF: 1024 }],
};

Deno.test("setPath: replaces one field, parsing the value, without touching the base", () => {
  const r = setPath(BASE, "training.lr", "3e-4");
  assert.ok(E.isRight(r));
  assert.deepEqual(r.right, { ...BASE, training: { ...BASE.training, lr: 3e-4 } });
  assert.equal(BASE.training.lr, 1e-3);
  const cell = setPath(BASE, "model.memory.cell", "ncgru");
  assert.ok(E.isRight(cell));
  assert.deepEqual((cell.right as typeof BASE).model.memory, { cell: "ncgru", dMemory: 128 });
  const idx = setPath(BASE, "blocks[1].dFF", "2048");
  assert.ok(E.isRight(idx));
  assert.deepEqual((idx.right as typeof BASE).blocks, [{ dFF: 512 }, { dFF: 2048 }]);
  const dotted = setPath(BASE, "blocks.0.dFF", "8");
  assert.ok(E.isRight(dotted) && (dotted.right as typeof BASE).blocks[0].dFF === 8);
  const subtree = setPath(BASE, "model.readout", '{"_tag":"classifier","nClasses":31}');
  assert.ok(E.isRight(subtree));
  assert.deepEqual((subtree.right as typeof BASE).model.readout, {
    _tag: "classifier",
    nClasses: 31,
  });
});

Deno.test("setPath: an unknown path is an error naming the path and the nearest valid keys", () => {
  const typo = overrideError(setPath(BASE, "training.lrr", "1"));
  assert.ok(typo._tag === "UnknownPath");
  assert.equal(typo.path, "training.lrr");
  assert.equal(typo.parent, "training");
  assert.deepEqual(typo.known, ["lr", "steps", "warmup"]);
  assert.deepEqual(typo.nearest[0], "lr");
  assert.match(
    typo.message,
    /unknown path "training\.lrr": training has no key "lrr"; did you mean "lr"/,
  );
  assert.match(typo.message, /valid keys: lr, steps, warmup/);

  const top = overrideError(setPath(BASE, "trainig.lr", "1"));
  assert.ok(top._tag === "UnknownPath" && top.nearest[0] === "training");
  assert.match(top.message, /the experiment has no key "trainig"/);

  const newKey = overrideError(setPath(BASE, "model.memory.size", "3"));
  assert.ok(newKey._tag === "UnknownPath" && newKey.parent === "model.memory");

  const scalar = overrideError(setPath(BASE, "training.lr.value", "3"));
  assert.match(scalar.message, /training\.lr is a number, it has no fields/);

  const range = overrideError(setPath(BASE, "blocks[2].dFF", "3"));
  assert.match(range.message, /blocks is a list of 2; index 2 is out of range/);

  assert.equal(overrideError(setPath(BASE, "training..lr", "1"))._tag, "BadPath");
  assert.equal(overrideError(setPath(BASE, "", "1"))._tag, "BadPath");
});

Deno.test("applySets: applies in order, later wins, stops at the first error", () => {
  const r = applySets(BASE, [
    { path: "training.lr", raw: "1" },
    { path: "training.lr", raw: "2" },
  ]);
  assert.ok(E.isRight(r) && (r.right as typeof BASE).training.lr === 2);
  const e = overrideError(
    applySets(BASE, [{ path: "training.lr", raw: "1" }, { path: "nope", raw: "1" }]),
  );
  assert.equal(e._tag === "UnknownPath" && e.path, "nope");
});

Deno.test("override: deep-merges plain objects, replaces arrays, switches union variants", () => {
  const merged = override(BASE, {
    model: { memory: { dMemory: 64 } },
    blocks: [{ dFF: 1 }],
    training: { lr: undefined, steps: 5 },
  });
  assert.deepEqual(merged.model, { ...BASE.model, memory: { cell: "gru", dMemory: 64 } });
  assert.deepEqual(merged.blocks, [{ dFF: 1 }]);
  assert.deepEqual(merged.training, { lr: 1e-3, steps: 5, warmup: 100 });
  assert.equal(BASE.model.memory.dMemory, 128);

  type Readout = { _tag: "lm"; tie: boolean } | { _tag: "classifier"; nClasses: number };
  const base: { readout: Readout } = { readout: { _tag: "lm", tie: true } };
  const switched = override(base, { readout: { _tag: "classifier", nClasses: 31 } });
  assert.deepEqual(switched.readout, { _tag: "classifier", nClasses: 31 });
});

Deno.test("mergePatch: a config-file patch may only name existing keys", () => {
  const ok = mergePatch(BASE, {
    training: { lr: 5e-4 },
    model: { readout: { _tag: "classifier", nClasses: 31 } },
  });
  assert.ok(E.isRight(ok));
  assert.equal((ok.right as typeof BASE).training.steps, 1000);
  assert.deepEqual((ok.right as typeof BASE).model.readout, { _tag: "classifier", nClasses: 31 });
  const bad = overrideError(mergePatch(BASE, { model: { memory: { dMemroy: 64 } } }));
  assert.ok(bad._tag === "UnknownPath" && bad.path === "model.memory.dMemroy");
  assert.deepEqual(bad.nearest, ["dMemory"]);
});

Deno.test("readConfigFile: reads JSON; missing or malformed files are tagged errors", async () => {
  await using tmp = await tempDir("crt-args-");
  const dir = tmp.path;
  await Deno.writeTextFile(`${dir}/ok.json`, '{"training":{"lr":0.01}}');
  await Deno.writeTextFile(`${dir}/bad.json`, "{ training: 1 ");
  assert.deepEqual(await readConfigFile(`${dir}/ok.json`), E.right({ training: { lr: 0.01 } }));
  const missing = await readConfigFile(`${dir}/none.json`);
  assert.ok(E.isLeft(missing) && missing.left._tag === "ConfigUnreadable");
  const bad = await readConfigFile(`${dir}/bad.json`);
  assert.ok(E.isLeft(bad) && bad.left._tag === "ConfigNotJson");
  assert.match(bad.left.message, /bad\.json: not JSON/);
});
