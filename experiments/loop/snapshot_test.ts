import assert from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import type { Program } from "../../core/program.ts";
import { compile } from "../../core/compile.ts";
import { flattenParams } from "../../core/params.ts";
import { disposeTraining, startTraining, trainOn, type TrainState } from "../../core/train.ts";
import { ensureBackend } from "../../ops/backend.ts";
import { tf } from "../../ops/tf.ts";
import { randomTokens, tinyCrtNcgru } from "../../tests/_tiny.ts";
import { decodeCheckpoint, encodeCheckpoint } from "./checkpoint_format.ts";
import { f64ToTensor, restoreTraining, snapshotTraining, tensorToF64 } from "./snapshot.ts";

await ensureBackend();

const bits = (x: Float64Array) => Array.from(new BigUint64Array(x.slice().buffer));

Deno.test("f64ToTensor / tensorToF64: any float64 survives a checkpoint file bit for bit", async () => {
  // Random bit patterns, including halves that read as float32 NaNs, -0 and subnormals.
  const words = new Uint32Array(64);
  for (let i = 0; i < words.length; i++) {
    words[i] = (Math.imul(i + 1, 2654435761) ^ (i << 20)) >>> 0;
  }
  words[0] = 0x7fc00001; // a float32 NaN payload in the low word
  words[1] = 0x3ff00000;
  words[2] = 0xffc00000;
  words[3] = 0x00000001;
  const x = new Float64Array(words.buffer).map((v) => (Number.isFinite(v) ? v : 1.5));
  x[5] = -0;
  x[6] = 5e-324;
  const bytes = await encodeCheckpoint({
    step: 1,
    data: { epoch: 0, position: 0 },
    rng: {},
    optimizer: { scalars: {}, tensors: { x: f64ToTensor(x, [4, 8]) } },
    params: { odd: { shape: [1], data: Float32Array.of(1) } }, // puts x at an offset ≡ 4 (mod 8)
    memory: {},
    meta: null,
  });
  const back = await decodeCheckpoint(bytes);
  if (E.isLeft(back)) assert.fail(back.left);
  const t = back.right.optimizer.tensors.x;
  assert.deepEqual(t.shape, [4, 8, 2]);
  assert.deepEqual(bits(tensorToF64(t)), bits(x));
  assert.throws(() => f64ToTensor(x, [3]), RangeError);
  assert.throws(() => tensorToF64({ shape: [3], data: new Float32Array(3) }), RangeError);
});

const compiled = (): Program => {
  const p = compile(tinyCrtNcgru);
  if (E.isLeft(p)) throw new Error(p.left.message);
  return p.right;
};

const step = (program: Program, ts: TrainState, i: number) => {
  const b = 2, len = 6;
  const tokens = tf.tensor2d(randomTokens(b * len, 7, 100 + i), [b, len], "int32");
  const targets = tf.tensor2d(randomTokens(b * len, 7, 200 + i), [b, len], "int32");
  const out = trainOn(program, ts, { tokens, targets }, { lr: 1e-2, bpttSegments: 2, seed: i });
  tokens.dispose();
  targets.dispose();
  return out;
};

Deno.test("snapshotTraining / restoreTraining: an NC-GRU training state continues exactly", () => {
  const program = compiled();
  let ts = startTraining(program, { seed: 4, batchSize: 2 });
  for (let i = 0; i < 3; i++) ts = step(program, ts, i).next;
  const snap = snapshotTraining(program, ts);
  assert.ok(Object.keys(snap.optimizer.tensors).some((k) => k.startsWith("cayley:")));
  const copy = restoreTraining(program, snap, ts.step);
  if (E.isLeft(copy)) assert.fail(copy.left);
  const restored: TrainState = copy.right;
  assert.equal(restored.step, 3);
  assert.equal(restored.opt.step, ts.opt.step);
  for (const [i, c] of ts.opt.cayley.entries()) {
    const r = restored.opt.cayley[i];
    for (const k of ["a", "inv", "m", "v", "d"] as const) {
      assert.deepEqual(bits(r[k]), bits(c[k]), k);
    }
  }
  let a = ts, b = restored;
  for (let i = 3; i < 6; i++) {
    const sa = step(program, a, i), sb = step(program, b, i);
    assert.equal(sb.loss, sa.loss, `step ${i + 1}`);
    a = sa.next;
    b = sb.next;
  }
  const pa = flattenParams(a.params), pb = flattenParams(b.params);
  for (const k of Object.keys(pa)) assert.deepEqual(pb[k].dataSync(), pa[k].dataSync(), k);
  disposeTraining(program, a);
  disposeTraining(program, b);
});

Deno.test("restoreTraining: a snapshot of another model is refused with a reason", () => {
  const program = compiled();
  const ts = startTraining(program, { seed: 1, batchSize: 2 });
  const snap = snapshotTraining(program, ts);
  const [first] = Object.keys(snap.params);
  const missing = { ...snap, params: Object.fromEntries(Object.entries(snap.params).slice(1)) };
  const r = restoreTraining(program, missing, 0);
  assert.ok(E.isLeft(r) && r.left === `no parameter ${first} in the checkpoint`);
  const wrong = {
    ...snap,
    params: { ...snap.params, [first]: { shape: [1], data: new Float32Array(1) } },
  };
  const w = restoreTraining(program, wrong, 0);
  assert.ok(E.isLeft(w) && w.left.startsWith(`parameter ${first} is [1] in the checkpoint`));
  const noCayley = {
    ...snap,
    optimizer: {
      ...snap.optimizer,
      tensors: Object.fromEntries(
        Object.entries(snap.optimizer.tensors).filter(([k]) => !k.endsWith(":inv")),
      ),
    },
  };
  assert.ok(E.isLeft(restoreTraining(program, noCayley, 0)));
  disposeTraining(program, ts);
});
