import assert from "node:assert/strict";
import { join } from "node:path";
import {
  compactIndices,
  renderSbatchScript,
  type SbatchSpec,
  writeSbatchScript,
} from "./sbatch.ts";

const base: SbatchSpec = {
  jobName: "ptb sweep/1",
  workDir: "/srv/crt",
  logDir: "/srv/crt/runs/ptb-sweep-1",
  tasks: [
    {
      label: "a seed 1",
      argv: ["deno", "task", "experiment", "s", "--member", "a", "--seed", "1"],
    },
    {
      label: "a seed 2",
      argv: ["deno", "task", "experiment", "s", "--member", "a", "--seed", "2"],
    },
    {
      label: "b seed 1",
      argv: ["deno", "task", "experiment", "s", "--member", "b", "--seed", "1"],
    },
  ],
  cpusPerTask: 2,
  memoryMb: 3000,
};

const render = (spec: SbatchSpec): string => {
  const r = renderSbatchScript(spec);
  if (r._tag === "Left") throw new Error(r.left.message);
  return r.right;
};

const directives = (script: string): string[] =>
  script.split("\n").filter((l) => l.startsWith("#SBATCH ")).map((l) => l.slice(8));

Deno.test("compactIndices: sorted runs, duplicates dropped", () => {
  assert.equal(compactIndices([0]), "0");
  assert.equal(compactIndices([3, 1, 2]), "1-3");
  assert.equal(compactIndices([9, 0, 2, 3, 3, 4, 7]), "0,2-4,7,9");
});

Deno.test("renderSbatchScript: directives from the spec, all before the first command", () => {
  const script = render({ ...base, timeLimitMinutes: 90, maxRunning: 2, warnSeconds: 120 });
  assert(script.startsWith("#!/bin/bash\n"));
  assert.deepEqual(directives(script), [
    "--job-name=ptb_sweep_1",
    "--array=0-2%2",
    "--ntasks=1",
    "--cpus-per-task=2",
    "--mem=3000M",
    "--time=90",
    "--output=/srv/crt/runs/ptb-sweep-1/slurm-%A_%a.out",
    "--error=/srv/crt/runs/ptb-sweep-1/slurm-%A_%a.err",
    "--open-mode=append",
    "--requeue",
    "--signal=B:TERM@120",
  ]);
  // sbatch stops at the first line that is not a comment: no directive may follow one.
  const lines = script.split("\n");
  const firstCommand = lines.findIndex((l, i) => i > 0 && l !== "" && !l.startsWith("#"));
  assert(lines.slice(firstCommand).every((l) => !l.startsWith("#SBATCH")));
  // Defaults: no time limit line, a 60 s warning, no throttle.
  const plain = directives(render(base));
  assert(!plain.some((d) => d.startsWith("--time")));
  assert(plain.includes("--signal=B:TERM@60") && plain.includes("--array=0-2"));
});

Deno.test("renderSbatchScript: a subset keeps each task's index; % in the log folder is literal", () => {
  const script = render({ ...base, logDir: "/srv/100%/x", arrayIndices: [2, 0] });
  assert(directives(script).includes("--array=0,2"));
  assert(directives(script).includes("--output=/srv/100%%/x/slurm-%A_%a.out"));
  assert(
    script.includes("  2) label='b seed 1'; cmd=('deno' 'task' 'experiment' 's' '--member' 'b'"),
  );
});

Deno.test("renderSbatchScript: records the extra sbatch arguments, quoted", () => {
  const script = render({ ...base, submitArgs: ["--account=my lab", "-p", "gpu"] });
  assert(
    script.includes("# Submitted with these sbatch arguments: '--account=my lab' '-p' 'gpu'\n"),
  );
});

Deno.test("renderSbatchScript: names the unusable field", () => {
  const cases: ReadonlyArray<[Partial<SbatchSpec>, string]> = [
    [{ jobName: " " }, "jobName"],
    [{ workDir: "crt" }, "workDir"],
    [{ logDir: "runs/x" }, "logDir"],
    [{ logDir: "/srv/my runs" }, "logDir"],
    [{ logDir: "/srv/it's" }, "logDir"],
    [{ tasks: [] }, "tasks"],
    [{ tasks: [{ label: "a", argv: [] }] }, "tasks[0].argv"],
    [{ tasks: [{ label: "a", argv: ["x", "a\0b"] }] }, "tasks[0].argv[1]"],
    [{ tasks: [{ label: "a\nb", argv: ["x"] }] }, "tasks[0].label"],
    [{ cpusPerTask: 0 }, "cpusPerTask"],
    [{ memoryMb: 1.5 }, "memoryMb"],
    [{ timeLimitMinutes: -1 }, "timeLimitMinutes"],
    [{ maxRunning: 0 }, "maxRunning"],
    [{ warnSeconds: Number.NaN }, "warnSeconds"],
    [{ arrayIndices: [] }, "arrayIndices"],
    [{ arrayIndices: [3] }, "arrayIndices"],
  ];
  for (const [patch, field] of cases) {
    const r = renderSbatchScript({ ...base, ...patch });
    assert(r._tag === "Left" && r.left._tag === "InvalidSbatchSpec", field);
    assert.equal(r.left.field, field);
    assert(r.left.message.startsWith(`${field}: `), r.left.message);
  }
});

/** Runs a rendered script with bash as Slurm would, as array task `index`. */
const runAsTask = (script: string, index: string) =>
  new Deno.Command("bash", {
    args: [script],
    env: { SLURM_ARRAY_TASK_ID: index, SLURM_JOB_ID: "77" },
    stdout: "piped",
    stderr: "piped",
  });

Deno.test("renderSbatchScript: bash runs task i's argv word for word, in workDir, with its status", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const odd = ["it's", "a b", "$HOME", "`id`", ""];
    const spec: SbatchSpec = {
      ...base,
      workDir: dir,
      logDir: dir,
      tasks: [
        {
          label: "writes its args",
          argv: ["bash", "-c", 'printf "%s\\0" "$PWD" "$@" > args', "-", ...odd],
        },
        { label: "fails", argv: ["bash", "-c", "exit 3"] },
      ],
    };
    const path = join(dir, "s.sbatch");
    const w = await writeSbatchScript(path, spec);
    assert(w._tag === "Right");
    assert((Deno.statSync(path).mode ?? 0) & 0o100, "executable");
    const ok = await runAsTask(path, "0").output();
    assert.equal(ok.code, 0, new TextDecoder().decode(ok.stderr));
    const args = Deno.readTextFileSync(join(dir, "args")).split("\0").slice(0, -1);
    assert.deepEqual(args, [await Deno.realPath(dir), ...odd]);
    const out = new TextDecoder().decode(ok.stdout);
    assert.match(out, /crt: task 0 \(writes its args\), job 77/);
    assert.match(out, /exited with status 0/);
    assert.equal((await runAsTask(path, "1").output()).code, 3);
    const none = await runAsTask(path, "5").output();
    assert.equal(none.code, 2);
    assert.match(new TextDecoder().decode(none.stderr), /no task 5 in this script/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("renderSbatchScript: SIGTERM to the batch shell reaches the runner, which may finish saving", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A runner that, on SIGTERM, takes a while to "save", writes a marker and exits 7.
    const runner = 'trap "sleep 0.3; echo saved > saved; exit 7" TERM; echo up > up; ' +
      "for i in $(seq 200); do sleep 0.05; done"; // bounded: no orphan if the test fails
    const path = join(dir, "s.sbatch");
    const w = await writeSbatchScript(path, {
      ...base,
      workDir: dir,
      logDir: dir,
      tasks: [{ label: "runner", argv: ["bash", "-c", runner] }],
    });
    assert(w._tag === "Right");
    const child = runAsTask(path, "0").spawn();
    const deadline = Date.now() + 10_000;
    while (!(await Deno.stat(join(dir, "up")).then(() => true, () => false))) {
      assert(Date.now() < deadline, "the runner did not start");
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill("SIGTERM");
    const out = await child.output();
    assert.equal(out.code, 7, "the shell exits with the runner's status");
    assert.equal(Deno.readTextFileSync(join(dir, "saved")), "saved\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeSbatchScript: an unwritable place is an error naming it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    Deno.writeTextFileSync(join(dir, "file"), "");
    const spec = { ...base, workDir: dir, logDir: join(dir, "file", "logs") };
    const r = await writeSbatchScript(join(dir, "s.sbatch"), spec);
    assert(r._tag === "Left" && r.left._tag === "SbatchWriteFailed" && r.left.field === "logDir");
    const r2 = await writeSbatchScript(join(dir, "nope", "s.sbatch"), {
      ...base,
      workDir: dir,
      logDir: dir,
    });
    assert(r2._tag === "Left" && r2.left._tag === "SbatchWriteFailed" && r2.left.field === "path");
    assert.match(r2.left.message, /nope/);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["file"], "no temporary left");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
