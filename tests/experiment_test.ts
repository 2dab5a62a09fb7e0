/**
 * `deno task experiment` end to end, as a subprocess: exit statuses and the
 * messages that name what is wrong, `--dry-run`, and Ctrl-C then `--resume`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { tinyExperiment, writeCorpus } from "./_corpus.ts";
import { TASK_PERMISSIONS } from "../experiments/sweep/submit.ts";

const CLI = new URL("../experiments/cli.ts", import.meta.url).pathname;
// The permissions `deno task experiment` and a sweep's Slurm task give the runner.
const PERMISSIONS = TASK_PERMISSIONS;

const command = (args: string[]) =>
  new Deno.Command(Deno.execPath(), {
    args: ["run", ...PERMISSIONS, CLI, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await command(args).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** The tiny experiment as a `--config` patch over the `ptb` preset. */
async function tinyConfig(dir: string, steps: number): Promise<string> {
  const { model, training, evaluation } = tinyExperiment(dir, { steps });
  const file = join(dir, "tiny.json");
  await Deno.writeTextFile(file, JSON.stringify({ model, training, evaluation }));
  return file;
}

Deno.test("experiment cli: bad input exits 2 with a message naming what is wrong", async (t) => {
  const dir = await writeCorpus();
  try {
    const config = await tinyConfig(dir, 3);
    const cases: { name: string; args: string[]; expect: RegExp }[] = [
      {
        name: "unknown preset",
        args: ["ptb-nope"],
        expect:
          /unknown experiment "ptb-nope" \(known: ptb, ptb-full, ptb-xl, ptb-sweep, wt103, wt103-full, wt103-xl[,)]/,
      },
      {
        name: "unknown --set path",
        args: ["ptb", "--set", "training.lrr=1"],
        expect: /--set training\.lrr: .*training has no key "lrr"; did you mean "lr"/,
      },
      {
        name: "wrongly typed --set value",
        args: ["ptb", "--set", "training.lr=fast"],
        expect: /training\.lr: expected a positive number, got "fast" \(string\)/,
      },
      {
        name: "a model rule broken by --set",
        args: ["ptb", "--set", "model.nHeads=3"],
        expect: /model\.nHeads: 3 does not divide model\.dModel \(256\)/,
      },
      {
        name: "unknown option",
        args: ["ptb", "--fast"],
        expect: /unknown option --fast/,
      },
    ];
    for (const c of cases) {
      await t.step(c.name, async () => {
        const r = await cli(c.args);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, c.expect);
      });
    }
    await t.step("--config with an unknown key names the file and the path", async () => {
      const file = join(dir, "bad.json");
      await Deno.writeTextFile(file, JSON.stringify({ training: { learningRate: 1 } }));
      const r = await cli(["ptb", "--config", file]);
      assert.equal(r.code, 2);
      assert.ok(r.stderr.includes(file), r.stderr);
      assert.match(r.stderr, /training\.learningRate/);
    });
    await t.step("a corrupt data file", async () => {
      const bad = await Deno.makeTempDir({ dir, prefix: "corrupt-" });
      await Deno.copyFile(join(dir, "ptb.valid.txt"), join(bad, "ptb.valid.txt"));
      await Deno.writeFile(join(bad, "ptb.train.txt"), Uint8Array.of(0x61, 0x20, 0, 0xff, 0x0a));
      const r = await cli(["ptb", "--config", config, "--data", bad, "--out", join(dir, "runs")]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /ptb\.train\.txt: contains a NUL byte/);
    });
    await t.step("a missing data file", async () => {
      const bad = await Deno.makeTempDir({ dir, prefix: "missing-" });
      await Deno.copyFile(join(dir, "ptb.train.txt"), join(bad, "ptb.train.txt"));
      const r = await cli(["ptb", "--config", config, "--data", bad, "--out", join(dir, "runs")]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /ptb\.valid\.txt: file not found; put ptb\.train\.txt/);
    });
    await t.step("--resume of a folder that is not a run", async () => {
      const r = await cli(["ptb", "--resume", join(dir, "nothing-here")]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /nothing-here\/config\.json: not found/);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("experiment cli: --dry-run prints the resolved experiment, parameters and FLOPs as JSON", async () => {
  const r = await cli(["ptb", "--quick", "--dry-run", "--set", "training.lr=3e-4"]);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.experiment.name, "ptb-quick");
  assert.equal(out.experiment.training.lr, 3e-4);
  assert.equal(out.experiment.model._tag, "crt");
  assert.ok(out.params > 7e6 && out.params < 7.3e6, `params ${out.params}`);
  assert.ok(out.flops_per_token_forward > 8e6 && out.flops_per_token_forward < 9e6);
  assert.ok(out.flops_per_token_train > 2.5 * out.flops_per_token_forward);
  const sweep = await cli(["ptb-sweep", "--quick", "--dry-run"]);
  assert.equal(sweep.code, 0, sweep.stderr);
  const members = JSON.parse(sweep.stdout).members;
  assert.deepEqual(members.map((m: { label: string }) => m.label), [
    "transformer-s140",
    "transformer-s70",
    "crt-s70",
    "crt-s35",
    "crt-s18",
  ]);
});

/** Waits until a run under `out` has logged a few steps; returns its folder. */
async function trainingUnderWay(out: string): Promise<string> {
  for (let i = 0; i < 600; i++) {
    await new Promise((r) => setTimeout(r, 50));
    try {
      for await (const e of Deno.readDir(out)) {
        const metrics = await Deno.readTextFile(join(out, e.name, "metrics.jsonl")).catch(() => "");
        if (metrics.split("\n").length > 5) return join(out, e.name);
      }
    } catch {
      // not created yet
    }
  }
  throw new Error("training did not start");
}

for (const [signal, status] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  Deno.test(`experiment cli: ${signal} saves and exits ${status}; --resume finishes the run`, async () => {
    const dir = await writeCorpus();
    try {
      const config = await tinyConfig(dir, 200);
      const out = join(dir, "runs");
      const child = command(["ptb", "--config", config, "--data", dir, "--out", out]).spawn();
      const runDir = await trainingUnderWay(out);
      child.kill(signal);
      const first = await child.output();
      const stderr = new TextDecoder().decode(first.stderr);
      assert.equal(first.code, status, stderr);
      assert.ok(stderr.includes(`interrupted; resume with --resume ${runDir}`), stderr);
      const saved = [...Deno.readDirSync(join(runDir, "checkpoints"))].map((e) => e.name);
      assert.ok(saved.some((n) => /^ckpt-\d{9}\.bin$/.test(n)), saved.join(", "));
      assert.equal(await Deno.readTextFile(join(runDir, "run.lock")), "", "the lock is dropped");

      const resumed = await cli(["ptb", "--resume", runDir]);
      assert.equal(resumed.code, 0, resumed.stderr);
      assert.match(resumed.stderr, /resuming .* at step \d+/);
      const results = JSON.parse(await Deno.readTextFile(join(runDir, "results.json")));
      assert.equal(results.train_steps, 200);
      assert.deepEqual(JSON.parse(resumed.stdout), results);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

const exists = (path: string) => Deno.stat(path).then(() => true, () => false);

Deno.test("experiment cli: a second --resume of a folder a live run holds exits 2 naming its pid", async () => {
  const dir = await writeCorpus();
  try {
    const config = await tinyConfig(dir, 100_000);
    const out = join(dir, "runs");
    const child = command(["ptb", "--config", config, "--data", dir, "--out", out]).spawn();
    try {
      const runDir = await trainingUnderWay(out);
      const second = await cli(["ptb", "--resume", runDir]);
      assert.equal(second.code, 2, second.stderr);
      assert.match(second.stderr, new RegExp(`in use by process ${child.pid}\\b`));
    } finally {
      child.kill("SIGINT");
      await child.output();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("experiment cli: two runs started at once with one --out get a folder each", async () => {
  const dir = await writeCorpus();
  try {
    const config = await tinyConfig(dir, 6);
    const out = join(dir, "runs");
    const args = ["ptb", "--config", config, "--data", dir, "--out", out];
    const [a, b] = await Promise.all([cli(args), cli(args)]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const folders = [...Deno.readDirSync(out)].map((e) => e.name).sort();
    assert.equal(folders.length, 2, folders.join(", "));
    for (const f of folders) {
      const steps = (await Deno.readTextFile(join(out, f, "metrics.jsonl")))
        .split("\n").filter((l) => l.includes('"kind":"train"')).map((l) => JSON.parse(l).step);
      assert.deepEqual(steps, [1, 2, 3, 4, 5, 6], `${f}: each step logged once`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("experiment cli: a model too large for memory exits 2 before allocating or writing", async () => {
  // Enough text for the ptb preset's 1,400-token window, so that only the size is wrong.
  const dir = await writeCorpus({ trainLines: 400 });
  try {
    const out = join(dir, "runs");
    const args = ["ptb", "--data", dir, "--out", out, "--set", "model.dModel=100000000"];
    const r = await cli(args);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /model\.dModel = 100000000: .* need ≈ [\d.]+ TiB/);
    assert.doesNotMatch(r.stderr, /RangeError|at .*\.ts:\d+/);
    assert.deepEqual(await exists(out) ? [...Deno.readDirSync(out)] : [], []);
    const dry = await cli([...args, "--dry-run"]);
    assert.equal(dry.code, 2, dry.stderr);
    const printed = JSON.parse(dry.stdout);
    assert.equal(printed.memory.fits, false);
    assert.ok(printed.memory.total_bytes > printed.memory.limit_bytes);
    const ok = await cli(["ptb", "--data", dir, "--dry-run"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(JSON.parse(ok.stdout).memory.fits, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
