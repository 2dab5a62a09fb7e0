import assert from "node:assert/strict";
import { join } from "node:path";
import {
  cancelTasks,
  expandIndices,
  parseSbatchArgs,
  queryAccounting,
  queryArrayTasks,
  submitSbatch,
  taskPhase,
} from "./slurm.ts";
import { quoteShell } from "./shell.ts";

/** What a fake Slurm command prints and how it exits (after `sleep` seconds, when given). */
interface Behaviour {
  readonly stdout?: string;
  readonly stderr?: string;
  readonly code?: number;
  readonly sleep?: number;
}

/**
 * A folder with a fake Slurm command `name` that records its argv (one
 * word per line in `<name>.args`) and its `SLURM_CONF`, prints `stdout`
 * and `stderr` and exits with `code`.
 */
const fakeBin = async (name: string, behaviour: Behaviour): Promise<string> => {
  const dir = await Deno.makeTempDir();
  const script = [
    "#!/bin/bash",
    `printf '%s\\n' "$@" > "${dir}/${name}.args"`,
    `printf '%s' "\${SLURM_CONF:-}" > "${dir}/${name}.conf"`,
    // exec: a killed fake leaves no child holding the pipes open.
    ...(behaviour.sleep === undefined ? [] : [`exec sleep ${behaviour.sleep}`]),
    `printf '%s' ${quoteShell([behaviour.stdout ?? ""])}`,
    `printf '%s' ${quoteShell([behaviour.stderr ?? ""])} >&2`,
    `exit ${behaviour.code ?? 0}`,
  ].join("\n");
  await Deno.writeTextFile(join(dir, name), script, { mode: 0o755 });
  return dir;
};

/** Lines as a command prints them, each ending in a newline. */
const printed = (...lines: string[]): string => lines.map((l) => `${l}\n`).join("");

/**
 * Runs `body` with one {@linkcode fakeBin} folder of command `name` per
 * entry of `behaviours` (by the same keys), then removes the folders.
 */
const withFakeBins = async <K extends string>(
  name: string,
  behaviours: Readonly<Record<K, Behaviour>>,
  body: (bins: Readonly<Record<K, string>>) => Promise<void>,
): Promise<void> => {
  const bins: Partial<Record<K, string>> = {};
  try {
    for (const key of Object.keys(behaviours) as K[]) {
      bins[key] = await fakeBin(name, behaviours[key]);
    }
    await body(bins as Record<K, string>);
  } finally {
    for (const dir of Object.values<string | undefined>(bins)) {
      if (dir !== undefined) await Deno.remove(dir, { recursive: true });
    }
  }
};

const argsOf = (bin: string, name: string): string[] =>
  Deno.readTextFileSync(join(bin, `${name}.args`)).split("\n").slice(0, -1);

Deno.test("parseSbatchArgs: words for sbatch, without a shell", () => {
  const r = parseSbatchArgs(`-p gpu --account="my lab" -J 'a b' --exclusive -vQ`);
  assert(r._tag === "Right");
  assert.deepEqual(r.right, ["-p", "gpu", "--account=my lab", "-J", "a b", "--exclusive", "-vQ"]);
  assert.deepEqual(parseSbatchArgs(""), { _tag: "Right", right: [] });
  // An option's value may contain the reserved letters: only option words are checked.
  const v = parseSbatchArgs("-p area --comment=-a -Jerror");
  assert(v._tag === "Right", JSON.stringify(v));
});

Deno.test("parseSbatchArgs: refuses options the sweep sets, in every spelling", () => {
  for (
    const text of [
      "--array=0-3",
      "--array 0-3",
      "--arr=1",
      "-a 1",
      "-a1",
      "-va1",
      "--output=x",
      "-o x",
      "--error=x",
      "-e x",
      "--wrap=true",
      "-p cpu --",
    ]
  ) {
    const r = parseSbatchArgs(text);
    assert(r._tag === "Left" && r.left._tag === "InvalidSbatchArgs", text);
    assert.match(r.left.message, /^--sbatch: /);
  }
  const shell = parseSbatchArgs("-p cpu; rm x");
  assert(shell._tag === "Left" && shell.left._tag === "InvalidSbatchArgs");
  assert.match(shell.left.message, /shell syntax/);
});

Deno.test("submitSbatch: reads the job id; the extra arguments come before the script", async () => {
  await withFakeBins("sbatch", { bin: { stdout: "4242\n" } }, async ({ bin }) => {
    const r = await submitSbatch("/srv/s.sbatch", {
      bin,
      extraArgs: ["-p", "a b"],
      env: { SLURM_CONF: "/srv/slurm.conf" },
    });
    assert(r._tag === "Right");
    assert.equal(r.right.jobId, 4242);
    assert.equal(r.right.cluster, null);
    assert.deepEqual(argsOf(bin, "sbatch"), ["--parsable", "-p", "a b", "/srv/s.sbatch"]);
    assert.equal(Deno.readTextFileSync(join(bin, "sbatch.conf")), "/srv/slurm.conf");
  });
  await withFakeBins("sbatch", { onCluster: { stdout: "17;tiger\n" } }, async ({ onCluster }) => {
    const r = await submitSbatch("/srv/s.sbatch", { bin: onCluster });
    assert(r._tag === "Right" && r.right.jobId === 17 && r.right.cluster === "tiger");
  });
});

Deno.test("submitSbatch: a refusal, a missing sbatch, odd output and a hang are typed errors", async () => {
  const behaviours = {
    refused: {
      stderr: "sbatch: error: Batch job submission failed: Invalid account or account/partition",
      code: 1,
    },
    odd: { stdout: "Submitted batch job 12\n" },
    hangs: { sleep: 5 },
  };
  await withFakeBins("sbatch", behaviours, async ({ refused, odd, hangs }) => {
    const r = await submitSbatch("/srv/s.sbatch", { bin: refused });
    assert(r._tag === "Left" && r.left._tag === "SlurmCommandFailed");
    assert.equal(r.left.command, "sbatch");
    assert.equal(r.left.exitCode, 1);
    assert.match(r.left.stderr, /Invalid account/);
    assert.match(r.left.message, /^sbatch --parsable \/srv\/s.sbatch: exit 1: .*Invalid account/);

    const missing = await submitSbatch("/srv/s.sbatch", { bin: join(refused, "nowhere") });
    assert(missing._tag === "Left" && missing.left._tag === "SlurmCommandMissing");
    assert.match(missing.left.message, /sbatch: not found/);

    const o = await submitSbatch("/srv/s.sbatch", { bin: odd });
    assert(o._tag === "Left" && o.left._tag === "SlurmOutputUnreadable");
    assert.match(o.left.message, /expected a job id/);

    const h = await submitSbatch("/srv/s.sbatch", { bin: hangs, timeoutMs: 300 });
    assert(h._tag === "Left" && h.left._tag === "SlurmCommandTimedOut");
    assert.equal(h.left.timeoutMs, 300);
  });
});

Deno.test("taskPhase and expandIndices: Slurm's words and index lists", () => {
  assert.equal(taskPhase("RUNNING"), "running");
  assert.equal(taskPhase("COMPLETING"), "running");
  assert.equal(taskPhase("COMPLETED"), "completed");
  assert.equal(taskPhase("CANCELLED by 1000"), "ended");
  assert.equal(taskPhase("TIMEOUT"), "ended");
  assert.equal(taskPhase("REQUEUED"), "waiting");
  assert.equal(taskPhase("SOMETHING_NEW"), "unknown");
  assert.deepEqual(expandIndices("4"), [4]);
  assert.deepEqual(expandIndices("[0-2,5]"), [0, 1, 2, 5]);
  assert.deepEqual(expandIndices("[1-7:3%2]"), [1, 4, 7]);
  for (const bad of ["", "N/A", "3-1", "a", "[1-", "1-2:0"]) {
    assert.equal(expandIndices(bad), null, bad);
  }
});

Deno.test("queryArrayTasks: one state per task index, pending ranges expanded", async () => {
  const stdout = printed(
    "7|3|7|PENDING|Resources",
    "7|[4-5]|7|PENDING|Priority",
    "7|1|9|CANCELLED|None",
    "7|0|8|RUNNING|None",
    "7|2|10|COMPLETED|None",
  );
  await withFakeBins("squeue", { bin: { stdout } }, async ({ bin }) => {
    const r = await queryArrayTasks(7, { bin });
    assert(r._tag === "Right");
    assert.deepEqual(r.right.map((t) => [t.taskIndex, t.jobId, t.state, t.phase, t.reason]), [
      [0, 8, "RUNNING", "running", null],
      [1, 9, "CANCELLED", "ended", null],
      [2, 10, "COMPLETED", "completed", null],
      [3, 7, "PENDING", "waiting", "Resources"],
      [4, 7, "PENDING", "waiting", "Priority"],
      [5, 7, "PENDING", "waiting", "Priority"],
    ]);
    assert(r.right.every((t) => t.arrayJobId === 7 && t.exit === null));
    const args = argsOf(bin, "squeue");
    assert(args.includes("--jobs=7") && args.includes("--array") && args.includes("--states=all"));
  });
});

Deno.test("queryArrayTasks: an unknown job and unreadable lines are typed errors", async () => {
  const behaviours = {
    gone: { stderr: "slurm_load_jobs error: Invalid job id specified", code: 1 },
    empty: { stdout: "" },
    odd: { stdout: "7 RUNNING\n" },
  };
  await withFakeBins("squeue", behaviours, async ({ gone, empty, odd }) => {
    const g = await queryArrayTasks(7, { bin: gone });
    assert(g._tag === "Left" && g.left._tag === "SlurmJobUnknown" && g.left.jobId === 7);
    assert.match(g.left.stderr, /Invalid job id/);
    assert.match(g.left.message, /MinJobAge/);
    const e = await queryArrayTasks(7, { bin: empty });
    assert(e._tag === "Left" && e.left._tag === "SlurmJobUnknown");
    const o = await queryArrayTasks(7, { bin: odd });
    assert(o._tag === "Left" && o.left._tag === "SlurmOutputUnreadable");
    assert.match(o.left.message, /cannot read the line "7 RUNNING"/);
  });
});

Deno.test("queryAccounting: states and exit codes from sacct; disabled accounting is an error", async () => {
  const behaviours = {
    bin: {
      stdout: printed(
        "12_0|13|COMPLETED|0:0",
        "12_1|14|CANCELLED by 0|0:15",
        "12_2|15|FAILED|3:0",
        "12_[3-4]|12|PENDING|0:0",
      ),
    },
    disabled: { stderr: "Slurm accounting storage is disabled", code: 1 },
  };
  await withFakeBins("sacct", behaviours, async ({ bin, disabled }) => {
    const r = await queryAccounting(12, { bin });
    assert(r._tag === "Right");
    assert.deepEqual(r.right.map((t) => [t.taskIndex, t.jobId, t.phase, t.exit]), [
      [0, 13, "completed", { code: 0, signal: 0 }],
      [1, 14, "ended", { code: 0, signal: 15 }],
      [2, 15, "ended", { code: 3, signal: 0 }],
      [3, 12, "waiting", { code: 0, signal: 0 }],
      [4, 12, "waiting", { code: 0, signal: 0 }],
    ]);
    const d = await queryAccounting(12, { bin: disabled });
    assert(d._tag === "Left" && d.left._tag === "SlurmCommandFailed");
    assert.match(d.left.stderr, /accounting storage is disabled/);
  });
});

Deno.test("cancelTasks: names each task, or the whole array", async () => {
  await withFakeBins("scancel", { bin: {} }, async ({ bin }) => {
    assert.deepEqual(await cancelTasks(5, { bin, taskIndices: [1, 3] }), {
      _tag: "Right",
      right: undefined,
    });
    assert.deepEqual(argsOf(bin, "scancel"), ["5_1", "5_3"]);
    await cancelTasks(5, { bin });
    assert.deepEqual(argsOf(bin, "scancel"), ["5"]);
  });
});
