import assert from "node:assert/strict";
import { join } from "node:path";
import * as E from "fp-ts/lib/Either.js";
import { ensureBackend } from "../../ops/backend.ts";
import { tinyExperiment, writeCorpus } from "../../tests/_corpus.ts";
import type { Sweep } from "../sweep_spec.ts";
import { runExperiment } from "../tasks/language_model.ts";
import { collectSweep, outputLayerFlops } from "./collect.ts";
import { sweepTasks } from "./plan.ts";
import { openSweepFolder, runSweep, runTaskOf, taskGuard } from "./sweep.ts";

await ensureBackend();

const quiet = { progress: false, log: () => {} } as const;

/** Two tiny members: segment 6 and segment 3, `steps` steps each. */
const twoMembers = (dir: string, steps: number): Sweep => {
  const base = tinyExperiment(dir, { steps });
  return {
    name: "tiny-sweep",
    description: "two segment lengths",
    members: [
      { label: "crt-s6", experiment: base },
      {
        label: "crt-s3",
        experiment: {
          ...base,
          model: { ...base.model, segmentLen: 3 },
          training: { ...base.training, tokens: steps * 48 },
        },
      },
    ],
  };
};

/** Runs `body` on a fresh generated corpus in `dir`, with `dir/sweep` for a sweep folder; removes `dir`. */
const withCorpus = async (body: (dir: string, sweepDir: string) => Promise<void>) => {
  const dir = await writeCorpus();
  try {
    await body(dir, join(dir, "sweep"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
};

/** {@linkcode twoMembers} of `steps` steps, its sweep folder created at `sweepDir`. */
const openTwoMembers = async (dir: string, sweepDir: string, steps: number): Promise<Sweep> => {
  const sweep = twoMembers(dir, steps);
  assert.ok(E.isRight(await openSweepFolder(sweep, sweepDir, { create: true })));
  return sweep;
};

Deno.test("runSweep: members × seeds in their run folders, the table with mean ± sd, curves", async () => {
  await withCorpus(async (dir, sweepDir) => {
    const sweep = { ...twoMembers(dir, 4), seeds: 2 };
    const r = await runSweep(sweep, { ...quiet, sweepDir });
    if (E.isLeft(r)) assert.fail(r.left.message);
    if (r.right._tag !== "Completed") return assert.fail(r.right._tag);
    const c = r.right.collected;
    assert.ok(c.complete, c.problems.join("\n"));
    const seed0 = sweep.members[0].experiment.seed;
    assert.deepEqual(
      c.rows.map((x) => [x.task.label, x.task.seed]),
      [["crt-s6", seed0], ["crt-s6", seed0 + 1], ["crt-s3", seed0], ["crt-s3", seed0 + 1]],
    );
    // Seeds differ: two runs of one member train differently.
    assert.notEqual(c.rows[0].results.valid_ppl, c.rows[1].results.valid_ppl);
    assert.equal(c.rows[3].results.train_tokens, 4 * 48);
    for (const { task } of c.rows) {
      assert.ok((await Deno.stat(join(task.runDir, "results.json"))).isFile);
      assert.equal(task.runDir, join(sweepDir, task.label, `seed-${task.seed}`));
    }
    const md = await Deno.readTextFile(join(sweepDir, "sweep.md"));
    assert.ok(md.includes(c.table));
    // mean ± sd over the 2 seeds, beside the FLOPs without the embedding and output layer.
    assert.match(
      md,
      /\| crt-s3 \| 3 \| 2 \| [0-9,]+ \| [0-9.]+ k \| [0-9.]+ k \| [0-9.]+ ± [0-9.]+ \|/,
    );
    const json = JSON.parse(await Deno.readTextFile(join(sweepDir, "sweep.json")));
    assert.equal(json.rows.length, 4);
    assert.equal(json.members.length, 2);
    assert.equal(json.complete, true);
    const core = json.rows[0].results.flops_per_token_forward -
      outputLayerFlops(sweep.members[0].experiment.model);
    assert.equal(json.rows[0].flops_per_token_core, core);
    assert.ok(core > 0 && core < json.rows[0].results.flops_per_token_forward);
    const svg = await Deno.readTextFile(join(sweepDir, "curves.svg"));
    assert.ok(svg.includes(">crt-s6</text>") && svg.includes(">crt-s3</text>"));
    // Resumed, every task is kept: nothing runs again.
    const logs: string[] = [];
    const again = await runSweep(sweep, {
      ...quiet,
      log: (m) => logs.push(m),
      sweepDir,
      resume: true,
    });
    assert.ok(E.isRight(again) && again.right._tag === "Completed");
    assert.equal(logs.filter((l) => l.endsWith("finished earlier, kept")).length, 4);
  });
});

Deno.test("runTaskOf: one member and seed; again it resumes, then does nothing", async () => {
  await withCorpus(async (dir, sweepDir) => {
    const sweep = await openTwoMembers(dir, sweepDir, 6);
    const task = sweepTasks(sweep, sweepDir)[1];
    const stop = new AbortController();
    const first = await runTaskOf(task, {
      ...quiet,
      signal: stop.signal,
      onStep: ({ step }) => step === 3 && stop.abort(),
    });
    assert.ok(E.isRight(first) && first.right._tag === "Interrupted" && first.right.step === 3);
    const second = await runTaskOf(task, quiet);
    if (E.isLeft(second) || second.right._tag !== "Finished") return assert.fail("not finished");
    assert.equal(second.right.kept, false);
    assert.equal(second.right.results.train_tokens, 6 * 48);
    const third = await runTaskOf(task, quiet);
    assert.ok(E.isRight(third) && third.right._tag === "Finished" && third.right.kept);
    // Only that task ran: the collected table names the other as missing.
    const c = await collectSweep(sweep, sweepDir);
    if (E.isLeft(c)) return assert.fail(c.left.message);
    assert.equal(c.right.complete, false);
    assert.deepEqual(c.right.statuses.map((s) => s.state), ["missing", "finished"]);
    assert.match(c.right.problems.join("\n"), /^crt-s6 seed 1: missing \(never started\)$/);
  });
});

Deno.test("openSweepFolder: another sweep is refused; a new seed count is written", async () => {
  await withCorpus(async (dir, sweepDir) => {
    const sweep = await openTwoMembers(dir, sweepDir, 2);
    const other = { ...sweep, members: [sweep.members[0]] };
    const refused = await openSweepFolder(other, sweepDir, { create: false });
    assert.ok(E.isLeft(refused) && refused.left._tag === "BadInput");
    assert.match(
      refused.left.message,
      /holds a different sweep \("tiny-sweep", members crt-s6, crt-s3\)/,
    );
    const more = await openSweepFolder({ ...sweep, seeds: 3 }, sweepDir, { create: false });
    assert.ok(E.isRight(more));
    const saved = JSON.parse(await Deno.readTextFile(join(sweepDir, "config.json")));
    assert.equal(saved.seeds, 3);
    const none = await openSweepFolder(sweep, join(dir, "nowhere"), { create: false });
    assert.ok(E.isLeft(none) && /not a sweep folder/.test(none.left.message));
  });
});

Deno.test("taskGuard: a sweep budget (per seed) lends later tasks what earlier ones left", () => {
  const e = tinyExperiment("/nowhere", { steps: 1 });
  const member = (label: string, maxSeconds: number | null) => ({
    label,
    experiment: { ...e, training: { ...e.training, maxSeconds } },
  });
  const members = [member("a", 100), member("b", 100), member("c", null)];
  const sweep: Sweep = { name: "s", description: "", members, maxSeconds: 400 };
  const tasks = sweepTasks(sweep, "/s");
  // 400 / 3 − 30 = 103.3 > 100: lent.
  assert.ok(
    Math.abs(taskGuard(sweep, tasks, 0, { elapsed: 0, outside: 30 })! - (400 / 3 - 30)) < 1e-9,
  );
  // After a slow first task only 180 s are left: 180 / 2 − 30 = 60 < 100, its own guard stands.
  assert.equal(taskGuard(sweep, tasks, 1, { elapsed: 220, outside: 30 }), undefined);
  // A task with no guard of its own stays unlimited; no budget, no lending.
  assert.equal(taskGuard(sweep, tasks, 2, { elapsed: 0, outside: 0 }), undefined);
  assert.equal(
    taskGuard({ ...sweep, maxSeconds: undefined }, tasks, 0, { elapsed: 0, outside: 0 }),
    undefined,
  );
  // Two seeds: twice the budget over twice the tasks.
  const two = { ...sweep, seeds: 2 };
  const six = sweepTasks(two, "/s");
  assert.equal(six.length, 6);
  assert.ok(Math.abs(taskGuard(two, six, 0, { elapsed: 0, outside: 30 })! - (800 / 6 - 30)) < 1e-9);
});

Deno.test("runSweep: the sweep's budget overrides a task's guard without changing its config", async () => {
  await withCorpus(async (dir, sweepDir) => {
    const base = tinyExperiment(dir, { steps: 3 });
    // Alone, a 1 ms guard would stop training before its first step.
    const experiment = { ...base, training: { ...base.training, maxSeconds: 0.001 } };
    const logs: string[] = [];
    const r = await runSweep(
      { name: "budget", description: "", members: [{ label: "m", experiment }], maxSeconds: 600 },
      { ...quiet, log: (m) => logs.push(m), sweepDir },
    );
    if (E.isLeft(r)) assert.fail(r.left.message);
    if (r.right._tag !== "Completed") return assert.fail(r.right._tag);
    assert.equal(r.right.collected.rows[0].results.stopped_by, "tokens");
    assert.equal(r.right.collected.rows[0].results.train_steps, 3);
    assert.ok(
      logs.some((l) => /^m seed 1: training guard 570 s \(own 0\.001 s;/.test(l)),
      logs.join("\n"),
    );
    const runDir = join(sweepDir, "m", `seed-${experiment.seed}`);
    const config = JSON.parse(await Deno.readTextFile(join(runDir, "config.json")));
    assert.equal(config.training.maxSeconds, 0.001);
    const alone = await runExperiment(experiment, { ...quiet, runDir: join(dir, "alone") });
    if (E.isLeft(alone)) assert.fail(alone.left.message);
    if (alone.right._tag !== "Completed") return assert.fail(alone.right._tag);
    assert.equal(alone.right.results.stopped_by, "maxSeconds");
  });
});
