/**
 * A sweep through the experiment command on a real one-node Slurm
 * (tests/_slurm.ts): 2 members × 2 seeds on a small generated corpus,
 * submitted with `--slurm`, one task cancelled mid-run with `scancel`, the
 * sweep re-submitted (`--slurm --resume`: only the unfinished task goes,
 * and it resumes from its checkpoint), then `--collect` merges the table.
 * Prints the job ids, the four tasks' states, the cancelled task's steps
 * before and after, and the merged table.
 *
 * Needs root and Slurm (`apt-get install slurm-wlm munge`, which `.ci/run`
 * does); without them the test is skipped with a message, except under CI,
 * where it fails.
 */
import assert from "node:assert/strict";
import { join, resolve } from "node:path";
import { tinyExperiment, writeCorpus } from "./_corpus.ts";
import type { Sweep } from "../experiments/sweep_spec.ts";
import { cancelMidRun, showTasks, untilArrayEnds } from "./_slurm_jobs.ts";
import { slurmClusterTest } from "./_slurm.ts";

/** The whole test, cluster start to stop, must end well within this. */
const LIMIT_MS = 240_000;
const CLI = resolve("experiments/cli.ts");

/** The highest step in a run folder's metrics.jsonl (0 when none). */
const lastStep = async (runDir: string): Promise<number> => {
  const text = await Deno.readTextFile(join(runDir, "metrics.jsonl")).catch(() => "");
  return text.split("\n").reduce((m, line) => {
    try {
      const r = JSON.parse(line);
      return r.kind === "train" ? Math.max(m, r.step) : m;
    } catch {
      return m;
    }
  }, 0);
};

slurmClusterTest(
  "slurm: a 2 × 2 sweep through the CLI; a cancelled task resumes on re-submit; --collect",
  { file: "tests/slurm_sweep_test.ts", prefix: "crt-slurm-sweep-", limitMs: LIMIT_MS },
  async (cluster, root, watch) => {
    const experiment = async (...args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", CLI, "ptb-sweep", ...args],
        env: { ...cluster.env },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const d = new TextDecoder();
      return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
    };
    const data = await writeCorpus({ trainLines: 300 });
    // Long enough to cancel one mid-run: 300 steps, a checkpoint every 10.
    const base = tinyExperiment(data, { steps: 300 });
    const training = { ...base.training, checkpointEvery: 10, validEvery: 100 };
    const at = (segmentLen: number) => ({
      ...base,
      model: { ...base.model, segmentLen },
      training: { ...training, tokens: 300 * 4 * 2 * segmentLen },
    });
    const sweep: Sweep = {
      name: "ptb-sweep-quick",
      description: "a tiny sweep on a generated corpus",
      members: [{ label: "crt-s6", experiment: at(6) }, { label: "crt-s3", experiment: at(3) }],
      seeds: 2,
      slurm: { cpusPerTask: 1, memoryMb: 1024, timeLimitMinutes: 10 },
    };
    const sweepDir = join(root, "sweep");
    await Deno.mkdir(sweepDir);
    await Deno.writeTextFile(join(sweepDir, "config.json"), JSON.stringify(sweep, null, 2));
    const seed = base.seed;
    const runDir = (label: string, s: number) => join(sweepDir, label, `seed-${s}`);
    const tasks = [["crt-s6", seed], ["crt-s6", seed + 1], ["crt-s3", seed], [
      "crt-s3",
      seed + 1,
    ]]
      .map(([label, s]) => ({ label: label as string, seed: s as number }));

    const first = await experiment("--slurm", "--resume", sweepDir);
    assert.equal(first.code, 0, first.stderr);
    const jobId = Number(first.stdout.trim());
    assert.ok(Number.isInteger(jobId) && jobId > 0, first.stdout);
    assert.match(
      first.stderr,
      /submitted job \d+: 4 array tasks \(crt-s6 seed 1, crt-s6 seed 2/,
    );
    const script = await Deno.readTextFile(join(sweepDir, "slurm", "sweep.sbatch"));
    assert.match(script, /#SBATCH --array=0-3\n/);
    assert.match(script, /#SBATCH --cpus-per-task=1\n#SBATCH --mem=1024M\n#SBATCH --time=10\n/);
    console.log(`slurm sweep: submitted array job ${jobId}`);

    // Task 1 past its first checkpoints: cancel it. All four end: 0, 2, 3 completed.
    const victim = 1;
    const victimDir = runDir(tasks[victim].label, tasks[victim].seed);
    const states = await cancelMidRun(
      watch,
      { jobId, count: 4, victim },
      "task 1 to be a few checkpoints in",
      async () => (await lastStep(victimDir)) >= 50,
    );
    console.log(`slurm sweep: job ${jobId} tasks: ${showTasks(states)}`);
    const before = await lastStep(victimDir);
    assert.ok(before >= 50 && before < 300, `task 1 stopped at step ${before}`);
    const victimLog = join(sweepDir, "slurm", `slurm-${jobId}_${victim}.err`);
    assert.match(await Deno.readTextFile(victimLog), /SIGTERM: finishing the current step/);

    // Collect now: three finished, task 1 unfinished, named with its log.
    const partial = await experiment("--collect", sweepDir);
    assert.equal(partial.code, 1, partial.stderr);
    assert.match(
      partial.stderr,
      new RegExp(
        `not finished: crt-s6 seed ${seed + 1}: unfinished \\(last recorded step \\d+\\), ` +
          `interrupted: re-submit to resume; log .*slurm-${jobId}_1\\.out`,
      ),
    );

    // Re-submit: only task 1 goes, and resumes from its checkpoint.
    const second = await experiment("--slurm", "--resume", sweepDir);
    assert.equal(second.code, 0, second.stderr);
    const jobId2 = Number(second.stdout.trim());
    assert.match(
      second.stderr,
      new RegExp(`submitted job ${jobId2}: 1 array tasks \\(crt-s6 seed ${seed + 1}\\)`),
    );
    assert.match(
      await Deno.readTextFile(join(sweepDir, "slurm", "sweep.sbatch")),
      /#SBATCH --array=1\n/,
    );
    const states2 = await untilArrayEnds(watch, "the re-submitted task to end", jobId2, 1);
    assert.deepEqual(states2.map((t) => [t.taskIndex, t.state]), [[victim, "COMPLETED"]]);
    const resumedLog = await Deno.readTextFile(
      join(sweepDir, "slurm", `slurm-${jobId2}_${victim}.err`),
    );
    const resumedAt = Number(/resuming .* at step (\d+)/.exec(resumedLog)?.[1]);
    const results = JSON.parse(await Deno.readTextFile(join(victimDir, "results.json")));
    console.log(
      `slurm sweep: re-submitted job ${jobId2}: ${victim}=${states2[0].state}; task 1 ` +
        `cancelled at step ${before}, resumed at step ${resumedAt} (its last checkpoint), ` +
        `finished at step ${results.train_steps}`,
    );
    assert.ok(resumedAt > 0 && resumedAt <= before && before - resumedAt < 10 + 1, resumedLog);
    assert.equal(results.train_steps, 300);

    // Everything finished: --collect exits 0 with both members over 2 seeds.
    const done = await experiment("--collect", sweepDir);
    assert.equal(done.code, 0, done.stderr);
    console.log(`slurm sweep: merged table\n${done.stdout.trim()}`);
    for (const label of ["crt-s6", "crt-s3"]) {
      assert.match(
        done.stdout,
        new RegExp(`\\| ${label} \\| \\d \\| 2 \\| [0-9,]+ \\| .* \\| [0-9.]+ ± [0-9.]+ \\|`),
      );
    }
    const json = JSON.parse(await Deno.readTextFile(join(sweepDir, "sweep.json")));
    assert.equal(json.complete, true);
    assert.deepEqual(
      json.rows.map((r: { member: string; seed: number }) => [r.member, r.seed]),
      tasks.map((t) => [t.label, t.seed]),
    );
    assert.ok(
      (await Deno.readTextFile(join(sweepDir, "curves.svg"))).includes(">crt-s3</text>"),
    );
    // Once more: nothing left to submit.
    const third = await experiment("--slurm", "--resume", sweepDir);
    assert.equal(third.code, 0, third.stderr);
    assert.match(third.stderr, /every task has finished; nothing submitted/);
    await Deno.remove(data, { recursive: true });
  },
);
