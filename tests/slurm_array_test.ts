/**
 * The sweep's Slurm pieces (experiments/sweep/cluster/) on a real one-node Slurm
 * (tests/_slurm.ts): an array job of 4 tasks, each a small resumable bash
 * script that counts steps into a progress file and leaves a `done` marker
 * (run again, it continues from its progress or does nothing when done).
 * One task is cancelled mid-run with `scancel`, the other three finish, the
 * cancelled one is re-submitted alone (`--array=1`) and must resume from
 * the step it had reached. Prints the job ids, the tasks' states and the
 * cancelled task's step counts before and after.
 *
 * What it relies on: `squeue` for task states (the cluster keeps no
 * accounting, so no `sacct`), the tasks' own files for progress and
 * completion, and the Slurm log files `slurm-%A_%a.out` in the sweep folder.
 *
 * Needs root and Slurm (`apt-get install slurm-wlm munge`, which `.ci/run`
 * does); without them the test is skipped with a message, except under CI,
 * where it fails.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type SbatchSpec, writeSbatchScript } from "../experiments/sweep/cluster/sbatch.ts";
import { submitSbatch } from "../experiments/sweep/cluster/slurm.ts";
import { cancelMidRun, showTasks, untilArrayEnds } from "./_slurm_jobs.ts";
import { parseSlurmdC, renderSlurmConf, slurmClusterTest } from "./_slurm.ts";

/** Steps each task counts to; one step every STEP_SECONDS. */
const STEPS = 20;
const STEP_SECONDS = 0.15;
/** The whole test, cluster start to stop, must end well within this. */
const LIMIT_MS = 90_000;

/**
 * A resumable "runner": continues from `DIR/progress`, one step per tick,
 * each step written atomically, `done` at the end; logs each start and
 * interruption to `DIR/starts`. Exits 143 when interrupted.
 */
const TASK_SCRIPT = `#!/bin/bash
dir=$1; steps=$2; tick=$3
mkdir -p "$dir"
if [ -e "$dir/done" ]; then echo "already done"; exit 0; fi
step=0
[ -e "$dir/progress" ] && step=$(cat "$dir/progress")
echo "start $step" >> "$dir/starts"
trap 'echo "interrupted $step" >> "$dir/starts"; exit 143' TERM
while [ "$step" -lt "$steps" ]; do
  sleep "$tick" & wait $!
  step=$((step + 1))
  echo "$step" > "$dir/progress.tmp" && mv "$dir/progress.tmp" "$dir/progress"
done
touch "$dir/done"
echo "finished at $step"
`;

const readInt = (path: string): number | null => {
  try {
    return Number(Deno.readTextFileSync(path).trim());
  } catch {
    return null;
  }
};

/** The local addresses of listening TCP sockets on `port` (`/proc/net/tcp`, read with cat). */
const listeners = async (port: number): Promise<string[]> => {
  const out = await new Deno.Command("cat", {
    args: ["/proc/net/tcp", "/proc/net/tcp6"],
    stdout: "piped",
    stderr: "null",
  }).output();
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  return new TextDecoder().decode(out.stdout).split("\n").flatMap((line) => {
    const f = line.trim().split(/\s+/); // sl local_address rem_address st …
    return f.length > 3 && f[3] === "0A" && f[1].endsWith(`:${hexPort}`)
      ? [f[1].split(":")[0]]
      : [];
  });
};

Deno.test("tests/_slurm.ts: slurm.conf for the machine slurmd -C reports, on loopback", () => {
  const machine = parseSlurmdC(
    "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105\nUpTime=0-02:34:41\n",
  );
  assert(machine !== null);
  assert.deepEqual(machine, {
    node: "vm",
    cpus: 2,
    boards: 1,
    socketsPerBoard: 1,
    coresPerSocket: 2,
    threadsPerCore: 1,
    realMemory: 24105,
  });
  assert.equal(parseSlurmdC("NodeName=vm CPUs=two"), null);
  const conf = renderSlurmConf({
    dir: "/t/c",
    machine,
    ports: { slurmctld: 7001, slurmd: 7002 },
    user: "root",
  });
  const lines = new Set(conf.split("\n"));
  for (
    const want of [
      "SlurmctldHost=vm(127.0.0.1)",
      "SlurmctldPort=7001",
      "SlurmdPort=7002",
      "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny",
      "ProctrackType=proctrack/linuxproc",
      "TaskPlugin=task/none",
      "SelectType=select/cons_tres",
      "SelectTypeParameters=CR_CPU_Memory",
      "AccountingStorageType=accounting_storage/none",
      "StateSaveLocation=/t/c/state",
      "SlurmdSpoolDir=/t/c/spool/%n",
      "AuthInfo=socket=/t/c/munge/munge.socket",
      "NodeName=vm NodeAddr=127.0.0.1 CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 " +
      "ThreadsPerCore=1 RealMemory=24105 State=UNKNOWN",
    ]
  ) assert(lines.has(want), want);
});

slurmClusterTest(
  "slurm: a 4-task array runs, a cancelled task resumes from its progress when re-submitted",
  { file: "tests/slurm_array_test.ts", prefix: "crt-slurm-test-", limitMs: LIMIT_MS },
  async (cluster, root, watch) => {
    const sweepDir = join(root, "sweep");
    const { slurm } = watch;
    const { ports } = cluster;
    // Both daemons listen on 127.0.0.1 (0100007F in /proc/net/tcp) and nowhere else.
    for (const [name, port] of Object.entries(ports)) {
      assert.deepEqual(await listeners(port), ["0100007F"], `${name} on port ${port}`);
    }
    await Deno.mkdir(sweepDir);
    const taskScript = join(root, "task.sh");
    await Deno.writeTextFile(taskScript, TASK_SCRIPT, { mode: 0o755 });
    const labels = ["a seed 1", "a seed 2", "b seed 1", "b seed 2"];
    const runDir = (i: number) => join(sweepDir, labels[i].replaceAll(" ", "-"));
    const spec: SbatchSpec = {
      jobName: "crt-test-sweep",
      workDir: root,
      logDir: sweepDir,
      tasks: labels.map((label, i) => ({
        label,
        argv: ["bash", taskScript, runDir(i), `${STEPS}`, `${STEP_SECONDS}`],
      })),
      cpusPerTask: 1,
      memoryMb: 64,
      timeLimitMinutes: 5,
    };
    const script = join(sweepDir, "sweep.sbatch");
    const written = await writeSbatchScript(script, spec);
    assert(written._tag === "Right", JSON.stringify(written));

    const job = await submitSbatch(script, slurm);
    if (job._tag === "Left") throw new Error(job.left.message);
    const jobId = job.right.jobId;
    console.log(
      `slurm: submitted array job ${jobId} (4 tasks, node ${cluster.machine.node})`,
    );

    // Task 1 a few steps in: cancel it. All four end: 0, 2, 3 completed, 1 cancelled.
    const victim = 1;
    const states = await cancelMidRun(
      watch,
      { jobId, count: 4, victim },
      "task 1 to be a few steps in",
      () => (readInt(join(runDir(victim), "progress")) ?? 0) >= 3,
    );
    console.log(`slurm: job ${jobId} tasks: ${showTasks(states)}`);
    const before = readInt(join(runDir(victim), "progress"));
    assert(before !== null && before >= 3 && before < STEPS, `task 1 stopped at ${before}`);
    assert.throws(() => Deno.statSync(join(runDir(victim), "done")), "task 1 not done yet");

    // Re-submit the unfinished task only; it keeps its index and resumes.
    const again = await writeSbatchScript(script, { ...spec, arrayIndices: [victim] });
    assert(again._tag === "Right" && again.right.includes("#SBATCH --array=1\n"));
    const job2 = await submitSbatch(script, slurm);
    if (job2._tag === "Left") throw new Error(job2.left.message);
    const jobId2 = job2.right.jobId;
    const states2 = await untilArrayEnds(watch, "the re-submitted task to end", jobId2, 1);
    console.log(`slurm: re-submitted job ${jobId2} tasks: ${showTasks(states2)}`);
    assert.deepEqual(states2.map((t) => [t.taskIndex, t.state]), [[victim, "COMPLETED"]]);

    // Every task finished; the cancelled one continued from where it stopped.
    for (let i = 0; i < 4; i++) {
      assert.equal(readInt(join(runDir(i), "progress")), STEPS, labels[i]);
      assert(Deno.statSync(join(runDir(i), "done")).isFile, labels[i]);
    }
    const starts = Deno.readTextFileSync(join(runDir(victim), "starts")).trim().split("\n");
    const resumedAt = Number(starts.at(-1)?.replace("start ", ""));
    console.log(
      `slurm: task 1 (${labels[victim]}) cancelled at step ${before}, resumed at step ` +
        `${resumedAt}, finished at step ${STEPS}; its starts: ${starts.join(" | ")}`,
    );
    assert.equal(starts[0], "start 0");
    assert.equal(resumedAt, before, "the re-submitted task resumed from its progress");
    for (const i of [0, 2, 3]) {
      assert.equal(Deno.readTextFileSync(join(runDir(i), "starts")), "start 0\n", labels[i]);
    }

    // Logs: one per task per submission in the sweep folder, headed by the script's line.
    const log = (id: number, i: number) => join(sweepDir, `slurm-${id}_${i}.out`);
    for (const i of [0, 2, 3]) {
      assert.match(Deno.readTextFileSync(log(jobId, i)), new RegExp(`finished at ${STEPS}`));
    }
    assert.match(
      Deno.readTextFileSync(log(jobId2, victim)),
      new RegExp(`crt: task 1 \\(a seed 2\\), job \\d+, on .*\\n(.|\\n)*exited with status 0`),
    );
  },
);
