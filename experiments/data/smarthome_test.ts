import assert from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import { encodeNpy } from "../io/npy.ts";
import { createRng } from "../loop/rng.ts";
import { classCounts, type Protocol, PROTOCOLS, splitClips } from "./smarthome_protocols.ts";
import {
  type ClipRecord,
  type ClipTable,
  featuresFile,
  parseClasses,
  parseClipsCsv,
  readClipTable,
  SMARTHOME_CV_CLASSES,
} from "./smarthome.ts";
import { ClipStore, drawBatch, featureStats, resampleIndex } from "./smarthome_store.ts";
import { writeSampleDataset } from "./smarthome_sample.ts";

/** A dataset directory from rows `[id, label, subject, camera, frames]`, F features per frame. */
async function writeDataset(
  classes: readonly string[],
  rows: readonly (readonly [string, string | number, number, number, number])[],
  f: number,
): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "crt-sh-" });
  await Deno.mkdir(join(dir, "features"));
  await Deno.writeTextFile(join(dir, "classes.txt"), classes.join("\n") + "\n");
  const csv = ["clip_id,label,subject,camera,frames", ...rows.map((r) => r.join(","))];
  await Deno.writeTextFile(join(dir, "clips.csv"), csv.join("\n") + "\n");
  for (const [id, , , , t] of rows) {
    const data = Float32Array.from({ length: t * f }, (_, i) => i);
    await Deno.writeFile(featuresFile(dir, id), encodeNpy({ shape: [t, f], data }));
  }
  return dir;
}

const problems = (r: E.Either<{ message: string }, unknown>): string => {
  if (E.isRight(r)) assert.fail("expected a Left");
  return r.left.message;
};

Deno.test("readClipTable reads the documented layout", async () => {
  const dir = await writeDataset(
    ["Walk", "Sitdown"],
    [["a", 0, 3, 1, 5], ["b", "Sitdown", 2, 2, 7]],
    4,
  );
  try {
    const r = await readClipTable(dir);
    if (E.isLeft(r)) assert.fail(r.left.message);
    assert.equal(r.right.featureDim, 4);
    assert.deepEqual(r.right.classes, ["Walk", "Sitdown"]);
    assert.deepEqual(r.right.clips[1], {
      id: "b",
      label: 1,
      subject: 2,
      camera: 2,
      frames: 7,
      line: 3,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseClasses: at least two unique names", () => {
  assert.match(
    problems(parseClasses("Walk\n", "classes.txt")),
    /1 class\(es\); a classifier needs at least 2/,
  );
  assert.match(
    problems(parseClasses("Walk\nSit\nWalk\n", "classes.txt")),
    /^classes\.txt:3: class "Walk" repeats line 1$/,
  );
  assert.match(
    problems(parseClasses("Walk\n\nSit\n", "classes.txt")),
    /classes\.txt:2: blank line/,
  );
  assert.deepEqual(parseClasses("Walk\r\nSit\r\n\r\n", "c"), E.right(["Walk", "Sit"]));
});

Deno.test("parseClipsCsv names every bad row by line", () => {
  const classes = ["Walk", "Sitdown"];
  const csv = [
    "# Toyota Smarthome, I3D features",
    "frames,camera,subject,label,clip_id,notes",
    "40,1,3,0,ok,extra columns are ignored",
    "40,1,3,2,out,",
    "40,1,3,Jump,unknown,",
    "40,1,3,1,ok,",
    "0,1,3,1,noframes,",
    "40,x,3,1,badcamera,",
    "40,1,3,1,../escape,",
    "40,1,3",
    "",
  ].join("\n");
  const msg = problems(parseClipsCsv(csv, classes, "clips.csv"));
  const lines = msg.split("\n");
  assert.deepEqual(lines, [
    "clips.csv:4: label 2 is out of range: classes.txt has 2 classes (0..1)",
    'clips.csv:5: label "Jump" is neither a class index nor a name in classes.txt',
    'clips.csv:6: clip_id "ok" repeats line 3',
    'clips.csv:7: frames "0" is not a positive integer',
    'clips.csv:8: camera "x" is not a non-negative integer',
    "clips.csv:9: clip_id \"../escape\" must be letters, digits, '.', '_' or '-' (it names features/<clip_id>.npy)",
    "clips.csv:10: 3 fields, the header has 6",
  ]);
  assert.match(
    problems(parseClipsCsv("clip_id,label,subject,frames\n", classes, "clips.csv")),
    /^clips\.csv:1: no column "camera" in the header/,
  );
  assert.match(problems(parseClipsCsv("", classes, "clips.csv")), /clips\.csv: empty/);
  assert.match(
    problems(parseClipsCsv("clip_id,label,subject,camera,frames\n", classes, "clips.csv")),
    /no clips/,
  );
});

Deno.test("readClipTable checks every features file against its row", async () => {
  const dir = await writeDataset(
    ["Walk", "Sitdown"],
    [["a", 0, 3, 1, 5], ["b", 1, 3, 1, 5], ["c", 1, 3, 1, 5], ["d", 0, 3, 1, 5], ["e", 0, 3, 1, 5]],
    4,
  );
  try {
    await Deno.remove(featuresFile(dir, "a")); // missing
    await Deno.writeFile(
      featuresFile(dir, "b"),
      encodeNpy({ shape: [6, 4], data: new Float32Array(24) }),
    ); // T
    await Deno.writeFile(
      featuresFile(dir, "c"),
      encodeNpy({ shape: [5, 3], data: new Float32Array(15) }),
    ); // F
    const whole = encodeNpy({ shape: [5, 4], data: new Float32Array(20) });
    await Deno.writeFile(featuresFile(dir, "d"), whole.subarray(0, whole.length - 8)); // truncated
    const bad = encodeNpy({ shape: [5, 4], data: new Float32Array(20) });
    bad.set(new TextEncoder().encode("<f8"), 10 + "{'descr': '".length);
    await Deno.writeFile(featuresFile(dir, "e"), bad); // dtype
    const msg = problems(await readClipTable(dir));
    const csv = join(dir, "clips.csv");
    assert.ok(msg.includes(`${featuresFile(dir, "a")}: missing (${csv}:2, clip a)`), msg);
    assert.ok(msg.includes(`${featuresFile(dir, "b")}: 6 frames, but ${csv}:3 says 5`), msg);
    assert.ok(
      msg.includes(
        `${featuresFile(dir, "c")}: 3 features per frame, but ${featuresFile(dir, "b")} has 4`,
      ),
      msg,
    );
    assert.ok(msg.includes(`${featuresFile(dir, "d")}: truncated`), msg);
    assert.ok(msg.includes(`${featuresFile(dir, "e")}: dtype '<f8' (float64)`), msg);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readClipTable: a missing directory names classes.txt and the layout", async () => {
  const msg = problems(await readClipTable("/nonexistent/smarthome"));
  assert.match(
    msg,
    /^\/nonexistent\/smarthome\/classes\.txt: missing \(the dataset layout is in README\.md/,
  );
});

/** A table of synthetic records (no files), for the protocol tests. */
const table = (clips: ClipRecord[], classes: readonly string[]): ClipTable => ({
  dir: "/data",
  classes,
  clips,
  featureDim: 4,
});

const grid = (classes: number): ClipRecord[] => {
  const out: ClipRecord[] = [];
  let line = 2;
  for (const subject of [2, 3, 4, 10]) {
    for (const camera of [1, 2, 5, 3]) {
      for (let label = 0; label < classes; label++) {
        for (let r = 0; r < 3; r++) {
          out.push({ id: `c${line}`, label, subject, camera, frames: 10, line: line++ });
        }
      }
    }
  }
  return out;
};

Deno.test("splitClips: cross-subject keeps subjects apart and holds out a tenth of each class", () => {
  const names = ["Walk", "Sitdown", "Readbook"];
  const s = splitClips(table(grid(3), names), PROTOCOLS["cross-subject"], { seed: 1 });
  if (E.isLeft(s)) assert.fail(s.left);
  const { train, valid, test } = s.right;
  assert.ok(train.every((c) => [3, 4].includes(c.subject)));
  assert.ok(valid.every((c) => [3, 4].includes(c.subject)));
  assert.ok(test.every((c) => [2, 10].includes(c.subject)));
  assert.equal(train.length + valid.length, 2 * 4 * 3 * 3);
  assert.deepEqual(classCounts(valid, 3), [2, 2, 2]); // round(0.1 · 24) per class
  assert.equal(new Set([...train, ...valid].map((c) => c.id)).size, train.length + valid.length);
  // Deterministic in the seed, different across seeds.
  const again = splitClips(table(grid(3), names), PROTOCOLS["cross-subject"], { seed: 1 });
  const other = splitClips(table(grid(3), names), PROTOCOLS["cross-subject"], { seed: 2 });
  assert.ok(E.isRight(again) && E.isRight(other));
  assert.deepEqual(again.right.valid.map((c) => c.id), valid.map((c) => c.id));
  assert.notDeepEqual(other.right.valid.map((c) => c.id), valid.map((c) => c.id));
});

Deno.test("splitClips: cross-view selects cameras and renumbers labels to the protocol's classes", () => {
  // classes.txt in another order, with extra classes the protocol leaves out.
  const names = ["Cook.Cut", ...[...SMARTHOME_CV_CLASSES].reverse(), "WatchTV"];
  const s = splitClips(table(grid(names.length), names), PROTOCOLS["cross-view-1"], { seed: 1 });
  if (E.isLeft(s)) assert.fail(s.left);
  assert.deepEqual(s.right.classes, SMARTHOME_CV_CLASSES);
  assert.ok(s.right.train.every((c) => c.camera === 1));
  assert.ok(s.right.valid.every((c) => c.camera === 5));
  assert.ok(s.right.test.every((c) => c.camera === 2));
  // "Walk" is line 1 of classes.txt here (index 1) and label 18 in the protocol.
  const original = new Map(grid(names.length).map((c) => [c.id, c.label]));
  for (const c of s.right.test) {
    assert.equal(SMARTHOME_CV_CLASSES[c.label], names[original.get(c.id)!]);
  }
  assert.equal(s.right.test.length, 4 * 19 * 3); // Cook.Cut and WatchTV left out
});

Deno.test("splitClips names what is wrong with a protocol", () => {
  const names = ["Walk", "Sitdown"];
  const wrong: readonly (readonly [string, Protocol, RegExp])[] = [
    [
      "classes missing from classes.txt",
      PROTOCOLS["cross-view-2"],
      /^protocol cross-view-2: class\(es\) Cutbread, .* not in \/data\/classes\.txt$/,
    ],
    [
      "nobody to train on",
      { ...PROTOCOLS["cross-subject"], train: { subjects: [99], cameras: null } },
      /no training clips \(subjects 99, cameras any\); are clips\.csv's subject and camera the dataset's ids/,
    ],
    [
      "a subject in two sets",
      { ...PROTOCOLS["cross-subject"], test: { subjects: [3], cameras: null } },
      /is in both the training and the test set/,
    ],
  ];
  for (const [what, protocol, message] of wrong) {
    const split = splitClips(table(grid(2), names), protocol, { seed: 1 });
    const said = problems(E.mapLeft((m: string) => ({ message: m }))(split));
    assert.match(said, message, `${what}: ${said}`);
  }
});

Deno.test("resampleIndex: evenly spaced frames of a long clip, repeated frames of a short one", () => {
  const idx = (t: number, l: number) => Array.from({ length: l }, (_, i) => resampleIndex(i, t, l));
  assert.deepEqual(idx(16, 4), [2, 6, 10, 14]);
  assert.deepEqual(idx(3, 6), [0, 0, 1, 1, 2, 2]);
  assert.deepEqual(idx(5, 5), [0, 1, 2, 3, 4]);
  // Every position reads a frame of the clip, in order.
  for (const [t, l] of [[7, 128], [1000, 128], [128, 128], [1, 16]]) {
    const x = idx(t, l);
    assert.ok(x.every((v, i) => v >= 0 && v < t && (i === 0 || v >= x[i - 1])));
  }
});

Deno.test("ClipStore packs resampled, standardised clips; non-finite features are named", async () => {
  const dir = await writeDataset(["Walk", "Sitdown"], [["a", 0, 3, 1, 8], ["b", 1, 3, 1, 2]], 3);
  try {
    const t = await readClipTable(dir);
    if (E.isLeft(t)) assert.fail(t.left.message);
    const store = new ClipStore(t.right, { clipFrames: 4 });
    const batch = await store.batch(t.right.clips);
    // Clip a: frames 1, 3, 5, 7 of values i = 3·frame + feature; clip b: frames 0, 0, 1, 1.
    assert.deepEqual(Array.from(batch.subarray(0, 6)), [3, 4, 5, 9, 10, 11]);
    assert.deepEqual(Array.from(batch.subarray(12, 18)), [0, 1, 2, 0, 1, 2]);
    const stats = await featureStats(store, t.right.clips, { maxClips: 10, seed: 1 });
    // Feature 0 over the 10 frames: 0, 3, ..., 21 and 0, 3.
    const f0 = [0, 3, 6, 9, 12, 15, 18, 21, 0, 3];
    const mean = f0.reduce((a, b) => a + b) / 10;
    const std = Math.sqrt(f0.reduce((a, b) => a + (b - mean) ** 2, 0) / 10);
    assert.ok(Math.abs(stats.mean[0] - mean) < 1e-5 && Math.abs(stats.std[0] - std) < 1e-4);
    store.standardize(stats);
    const z = await store.batch(t.right.clips.slice(0, 1));
    assert.ok(Math.abs(z[0] - (3 - mean) / std) < 1e-5);
    const nan = Float32Array.from({ length: 24 }, (_, i) => (i === 7 ? NaN : i));
    await Deno.writeFile(featuresFile(dir, "a"), encodeNpy({ shape: [8, 3], data: nan }));
    await assert.rejects(
      () => new ClipStore(t.right, { clipFrames: 4 }).batch(t.right.clips),
      new RegExp(`${featuresFile(dir, "a")}: frame 2, feature 1 is NaN`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("drawBatch: class-balanced batches see rare classes as often as common ones", () => {
  const clips: ClipRecord[] = [];
  for (let i = 0; i < 90; i++) {
    clips.push({ id: `a${i}`, label: 0, subject: 3, camera: 1, frames: 9, line: i });
  }
  for (let i = 0; i < 10; i++) {
    clips.push({ id: `b${i}`, label: 1, subject: 3, camera: 1, frames: 9, line: i });
  }
  clips.push({ id: "none", label: 0, subject: 3, camera: 1, frames: 9, line: 0 });
  const share = (balance: "classBalanced" | "uniform") => {
    const drawn = drawBatch(clips, 3, { balance, batchSize: 20_000, rng: createRng(5) });
    return classCounts(drawn, 3).map((n) => n / drawn.length);
  };
  const balanced = share("classBalanced");
  assert.ok(Math.abs(balanced[1] - 0.5) < 0.02, `${balanced}`);
  assert.equal(balanced[2], 0); // a class without training clips is never drawn
  const uniform = share("uniform");
  assert.ok(Math.abs(uniform[1] - 10 / 101) < 0.02, `${uniform}`);
});

Deno.test("writeSampleDataset: the class shows in the first part of each clip only", async () => {
  const dir = await Deno.makeTempDir({ prefix: "crt-sh-" });
  try {
    const counts = await writeSampleDataset(dir, {
      clips: 60,
      dim: 32,
      classes: 3,
      minFrames: 40,
      maxFrames: 40,
      signalFraction: 0.25,
      signal: 2,
      seed: 4,
    });
    assert.equal(counts.reduce((a, b) => a + b), 60);
    assert.ok(counts[0] > counts[2]); // imbalanced
    const t = await readClipTable(dir);
    if (E.isLeft(t)) assert.fail(t.left.message);
    const store = new ClipStore(t.right, { clipFrames: 40 });
    // Mean squared value: 1 + signal² = 5 in the first 10 frames, 1 after.
    let head = 0, tail = 0;
    for (const c of t.right.clips) {
      const x = await store.raw(c);
      for (let i = 0; i < x.length; i++) {
        if (i < 10 * 32) head += x[i] * x[i];
        else tail += x[i] * x[i];
      }
    }
    head /= 60 * 10 * 32;
    tail /= 60 * 30 * 32;
    assert.ok(Math.abs(head - 5) < 0.6 && Math.abs(tail - 1) < 0.1, `${head} ${tail}`);
    // Every protocol finds training and test clips.
    for (const p of ["cross-subject"] as const) {
      const s = splitClips(t.right, PROTOCOLS[p], { seed: 1 });
      assert.ok(E.isRight(s) && s.right.test.length > 0);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
