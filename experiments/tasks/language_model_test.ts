import assert from "node:assert/strict";
import { join } from "node:path";
import * as E from "fp-ts/lib/Either.js";
import { ensureBackend } from "../../ops/backend.ts";
import { liveTensors } from "../../core/train.ts";
import { tinyCorpusCrt, tinyExperiment, writeCorpus } from "../../tests/_corpus.ts";
import { checkpointFileName } from "../loop/checkpoint.ts";
import type { Experiment } from "../experiment.ts";
import { type Results, runExperiment, type RunOptions, type RunOutcome } from "./language_model.ts";
import { lockRunFolder } from "../loop/run_folder.ts";

await ensureBackend();

const quiet = { progress: false, log: () => {} } as const;

/** Runs and returns the losses of every step and the outcome. */
async function run(
  exp: Experiment,
  runDir: string,
  opts: Partial<RunOptions> & { stopAfter?: number } = {},
): Promise<{ losses: Map<number, number>; outcome: RunOutcome }> {
  const losses = new Map<number, number>();
  const controller = new AbortController();
  const r = await runExperiment(exp, {
    ...quiet,
    ...opts,
    runDir,
    signal: controller.signal,
    onStep: (s) => {
      losses.set(s.step, s.loss);
      if (s.step === opts.stopAfter) controller.abort();
    },
  });
  if (E.isLeft(r)) assert.fail(`${r.left._tag}: ${r.left.message}`);
  return { losses, outcome: r.right };
}

/** A test given a fresh tiny corpus folder (`tests/_corpus.ts`), removed when it ends. */
function corpusTest(
  name: string,
  fn: (dir: string) => Promise<void>,
  corpus: Parameters<typeof writeCorpus>[0] = {},
): void {
  Deno.test(name, async () => {
    const dir = await writeCorpus(corpus);
    try {
      await fn(dir);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

/**
 * A version 2 checkpoint file as the version 1 writer wrote it: the same
 * payload, the header's version 1 and its `memory` group named `carry`.
 */
function asVersion1(bytes: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
  const headerLen = new DataView(bytes.buffer).getUint32(8, true);
  const header = new TextDecoder().decode(bytes.subarray(12, 12 + headerLen));
  assert.match(header, /"group":"memory"/, "the run carries memory");
  // Same length: "carry" is one byte shorter than "memory", JSON takes a space.
  const old = header.replace('"version":2', '"version":1').replaceAll(
    '"group":"memory"',
    '"group":"carry" ',
  );
  const out = bytes.slice();
  out.set(new TextEncoder().encode(old), 12);
  return out;
}

const completed = (o: RunOutcome): Results => {
  assert.equal(o._tag, "Completed");
  return (o as Extract<RunOutcome, { _tag: "Completed" }>).results;
};

/** A CRT with an NC-GRU memory: its optimizer keeps float64 state on the host. */
const ncgru = {
  ...tinyCorpusCrt,
  memory: { ...tinyCorpusCrt.memory, cell: "ncgru", orthogonal: "candidateAndReset" },
} as const;

corpusTest("runExperiment: a short run lowers the loss and writes the run folder", async (dir) => {
  const exp = tinyExperiment(dir, { steps: 80 });
  const runDir = join(dir, "run");
  const before = liveTensors();
  const { losses, outcome } = await run(exp, runDir);
  assert.equal(liveTensors(), before, "the run leaves no tensors behind");
  const results = completed(outcome);
  const first = [1, 2, 3, 4, 5].map((s) => losses.get(s)!);
  const last = [76, 77, 78, 79, 80].map((s) => losses.get(s)!);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b) / xs.length;
  // ln 41 = 3.71 at the start; the chain's entropy is about 1.7 nats.
  assert.ok(mean(last) < mean(first) - 1, `loss ${mean(first)} -> ${mean(last)}`);
  assert.ok(results.valid_ppl < 20, `valid ppl ${results.valid_ppl}`);
  assert.ok(results.test_ppl !== null && results.test_ppl < 20, `test ppl ${results.test_ppl}`);
  assert.equal(results.test_note, null);
  assert.equal(results.train_steps, 80);
  assert.equal(results.train_tokens, 80 * 48);
  assert.ok(
    results.params > 0 && results.flops_per_token_train > results.flops_per_token_forward,
  );
  for (const f of ["config.json", "metrics.jsonl", "results.json", "curve.svg"]) {
    assert.ok((await Deno.stat(join(runDir, f))).isFile, f);
  }
  const saved = JSON.parse(await Deno.readTextFile(join(runDir, "results.json")));
  assert.deepEqual(saved, JSON.parse(JSON.stringify(results)));
  const records = (await Deno.readTextFile(join(runDir, "metrics.jsonl"))).trim().split("\n")
    .map((l) => JSON.parse(l));
  const train = records.filter((r) => r.kind === "train");
  assert.equal(train.length, 80);
  for (const key of ["step", "loss", "ppl", "lr", "tokens_per_second", "elapsed"]) {
    assert.equal(typeof train[0][key], "number", key);
  }
  assert.equal(records.filter((r) => r.kind === "valid").length, 16); // every 5 steps, and final
  const config = JSON.parse(await Deno.readTextFile(join(runDir, "config.json")));
  assert.deepEqual(config, { ...exp, data: { dir } });
}, { test: true });

corpusTest(
  "runExperiment: without ptb.test.txt, test_ppl is null and the results say it was skipped",
  async (dir) => {
    const messages: string[] = [];
    const exp = tinyExperiment(dir, { steps: 3 });
    const r = await runExperiment(exp, {
      runDir: join(dir, "run"),
      progress: false,
      log: (m) => messages.push(m),
    });
    if (E.isLeft(r)) assert.fail(r.left.message);
    const results = completed(r.right);
    assert.equal(results.test_ppl, null);
    assert.equal(results.test_note, "test split absent: skipped");
    assert.ok(messages.some((m) => m.includes("test split absent: skipped")));
  },
  { test: false },
);

corpusTest(
  "runExperiment: interrupted and resumed, the losses equal an uninterrupted run's (NC-GRU, dropout, epoch wrap)",
  async (dir) => {
    // ~30 windows an epoch: 40 steps cross an epoch boundary (memory reset).
    const tiny = tinyExperiment(dir, { steps: 40, model: ncgru });
    // Records every 3 steps: the interruptions at 7 and 33 fall inside logging intervals.
    const exp = { ...tiny, training: { ...tiny.training, logEvery: 3 } };
    const straight = await run(exp, join(dir, "straight"));
    const straightResults = completed(straight.outcome);

    const runDir = join(dir, "resumed");
    const a = await run(exp, runDir, { stopAfter: 7 });
    assert.equal(a.outcome._tag, "Interrupted");
    assert.equal(a.outcome._tag === "Interrupted" && a.outcome.step, 7);
    assert.match(
      a.outcome._tag === "Interrupted" ? a.outcome.message : "",
      /interrupted; resume with --resume .*resumed/,
    );
    // The checkpoint rewritten as a version 1 file (memory group named
    // `carry`) resumes the same: old run folders still resume.
    const ckpt7 = join(runDir, "checkpoints", checkpointFileName(7));
    await Deno.writeFile(ckpt7, asVersion1(await Deno.readFile(ckpt7)));
    const b = await run(exp, runDir, { resume: true, stopAfter: 33 });
    assert.equal(b.outcome._tag, "Interrupted");
    const c = await run(exp, runDir, { resume: true });
    const resumedResults = completed(c.outcome);

    const resumed = new Map([...a.losses, ...b.losses, ...c.losses]);
    assert.deepEqual([...b.losses.keys()], Array.from({ length: 26 }, (_, i) => 8 + i));
    assert.deepEqual([...c.losses.keys()], Array.from({ length: 7 }, (_, i) => 34 + i));
    for (let s = 1; s <= 40; s++) {
      assert.equal(resumed.get(s), straight.losses.get(s), `loss at step ${s}`);
    }
    assert.equal(resumedResults.valid_ppl, straightResults.valid_ppl);
    // metrics.jsonl holds the same records as the uninterrupted run's (means over 3 steps).
    const steps = async (d: string) =>
      (await Deno.readTextFile(join(d, "metrics.jsonl"))).trim().split("\n").map((l) =>
        JSON.parse(l)
      ).filter((r) => r.kind === "train").map((r) => [r.step, r.loss]);
    assert.deepEqual(await steps(runDir), await steps(join(dir, "straight")));
  },
);

corpusTest("runExperiment: a checkpoint cut off mid-write is never picked up", async (dir) => {
  const exp = tinyExperiment(dir, { steps: 12 });
  const straight = await run(exp, join(dir, "straight"));
  const runDir = join(dir, "run");
  const a = await run(exp, runDir, { stopAfter: 7 });
  assert.equal(a.outcome._tag, "Interrupted");
  // A newer checkpoint cut off mid-write (as if the machine died while
  // writing it in place) and a leftover temporary file of an atomic write.
  const ckpts = join(runDir, "checkpoints");
  const good = await Deno.readFile(join(ckpts, checkpointFileName(7)));
  await Deno.writeFile(join(ckpts, checkpointFileName(9)), good.subarray(0, good.length >> 1));
  await Deno.writeFile(join(ckpts, ".ckpt-10-0000.tmp"), good);
  const messages: string[] = [];
  const b = await run(exp, runDir, { resume: true, log: (m) => messages.push(m) });
  completed(b.outcome);
  assert.ok(messages.some((m) => m.includes(checkpointFileName(9)) && m.includes("truncated")));
  assert.ok(
    messages.some((m) => m.includes(`at step 7 from`) && m.includes(checkpointFileName(7))),
  );
  assert.deepEqual([...b.losses.keys()][0], 8);
  for (const [s, loss] of b.losses) assert.equal(loss, straight.losses.get(s), `step ${s}`);
});

corpusTest(
  "runExperiment: interrupted during the final evaluation, a resume evaluates again",
  async (dir) => {
    const exp = tinyExperiment(dir, { steps: 6 });
    const straight = completed((await run(exp, join(dir, "straight"))).outcome);
    const runDir = join(dir, "run");
    // Aborted at the last step: training completes and is saved, the evaluation stops.
    const a = await run(exp, runDir, { stopAfter: 6 });
    assert.equal(a.outcome._tag, "Interrupted");
    const messages: string[] = [];
    const b = await run(exp, runDir, { resume: true, log: (m) => messages.push(m) });
    assert.equal(b.losses.size, 0, "no training step is repeated");
    assert.ok(messages.some((m) => m.includes("training was complete; evaluating")));
    const results = completed(b.outcome);
    assert.equal(results.valid_ppl, straight.valid_ppl);
    assert.equal(results.train_steps, 6);
    const records = (await Deno.readTextFile(join(runDir, "metrics.jsonl"))).trim().split("\n")
      .map((l) => JSON.parse(l));
    assert.equal(
      records.filter((r) => r.kind === "valid" && r.whole_split && r.step === 6).length,
      1,
    );
  },
);

corpusTest("runExperiment: bad inputs are BadInput with the field or file named", async (dir) => {
  const exp = tinyExperiment(dir, { steps: 2 });
  const bad = async (e: Experiment, opts: Partial<RunOptions> = {}) => {
    const r = await runExperiment(e, { ...quiet, runDir: join(dir, "bad"), ...opts });
    if (E.isRight(r)) assert.fail("expected a Left");
    assert.equal(r.left._tag, "BadInput");
    return r.left.message;
  };
  assert.match(
    await bad({ ...exp, model: { ...exp.model, vocabSize: 10 } }),
    /^model\.vocabSize: 10 is smaller than the vocabulary .* \(41 words\)/,
  );
  assert.match(await bad({ ...exp, data: { dir: join(dir, "nope") } }), /ptb\.train\.txt/);
  assert.match(
    await bad({ ...exp, training: { ...exp.training, lr: -1 } }),
    /^training\.lr: must be a positive number, got -1/,
  );
  assert.match(await bad(exp, { resume: true }), /no config\.json/);
});

corpusTest(
  "runExperiment: --resume refuses a data file that changed since the run started",
  async (dir) => {
    const exp = tinyExperiment(dir, { steps: 10 });
    const runDir = join(dir, "run");
    const first = await run(exp, runDir, { stopAfter: 3 });
    assert.equal(first.outcome._tag, "Interrupted");
    const train = join(dir, "ptb.train.txt");
    const before = await Deno.readTextFile(train);
    await Deno.writeTextFile(train, " w1 w2 w3 \n", { append: true });
    const r = await runExperiment(exp, { ...quiet, runDir, resume: true });
    assert.ok(E.isLeft(r) && r.left._tag === "BadInput", JSON.stringify(r));
    assert.match(
      r.left.message,
      /ptb\.train\.txt changed since the run started \(SHA-256 was [0-9a-f]{64}, now [0-9a-f]{64}\)/,
    );
    // Restored, the same folder resumes and completes.
    await Deno.writeTextFile(train, before);
    const again = await run(exp, runDir, { resume: true });
    assert.equal(again.outcome._tag, "Completed");
  },
);

corpusTest(
  "runExperiment: a run folder another run holds is refused, naming the holder",
  async (dir) => {
    const exp = tinyExperiment(dir, { steps: 4 });
    const runDir = join(dir, "run");
    const lock = await lockRunFolder(runDir);
    assert.ok(E.isRight(lock));
    const r = await runExperiment(exp, { ...quiet, runDir });
    assert.ok(E.isLeft(r) && r.left._tag === "BadInput");
    assert.match(r.left.message, new RegExp(`in use by process ${Deno.pid} on `));
    assert.ok(!(await Deno.stat(join(runDir, "config.json")).then(() => true, () => false)));
    await lock.right.release();
    // Released, the folder is free again.
    const done = await run(exp, runDir);
    assert.equal(done.outcome._tag, "Completed");
    assert.equal(await Deno.readTextFile(join(runDir, "run.lock")), "", "the lock names no holder");
  },
);

corpusTest(
  "runExperiment: a model that cannot fit is refused before anything is written",
  async (dir) => {
    const exp = tinyExperiment(dir, { steps: 4 });
    const runDir = join(dir, "run");
    const huge = { ...exp, model: { ...exp.model, dModel: 100_000_000, nHeads: 2 } };
    const r = await runExperiment(huge, { ...quiet, runDir });
    assert.ok(E.isLeft(r) && r.left._tag === "BadInput", JSON.stringify(r));
    assert.match(r.left.message, /^model\.dModel = 100000000: .*nothing was allocated or written/);
    assert.ok(!(await Deno.stat(runDir).then(() => true, () => false)), "no run folder");
  },
);
