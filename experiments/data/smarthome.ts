/**
 * Toyota Smarthome-style clip classification data: a reader for clips given
 * as per-frame feature vectors, the dataset's evaluation protocols, the
 * fixed-length clip sampling the model reads, class-balanced batches, and a
 * generator of synthetic datasets in the same layout.
 *
 * ## The layout (a directory)
 *
 * ```text
 * DIR/
 *   classes.txt            one class name per line; line i (from 0) is class i
 *   clips.csv              header `clip_id,label,subject,camera,frames`, one row per clip
 *   features/<clip_id>.npy the clip's features: float32 [frames, F], little-endian ('<f4'),
 *                          C order, NumPy .npy format 1.0 (2.0 and 3.0 are read too)
 * ```
 *
 * - `clip_id`: letters, digits, `.`, `_`, `-` (it names the file), unique.
 *   Toyota Smarthome's own names work as they are (`Cook.Cut_p03_r00_v02_c03`).
 * - `label`: the class index (0-based line of `classes.txt`) or the class
 *   name as written there.
 * - `subject`, `camera`: non-negative integers (Smarthome: `p03` → 3,
 *   `c02` → 2); the protocols select on them.
 * - `frames`: T, the number of rows of the clip's `.npy` (checked).
 * - Columns may come in any order; extra columns are ignored; blank lines and
 *   lines starting with `#` are skipped. No quoting: fields hold no commas.
 *
 * F is the same for every clip and must equal the model's `input.dim`.
 * Every row and every file's header is checked before training starts
 * ({@linkcode readClipTable}); each problem names the file and the line.
 *
 * ## Clip length
 *
 * The model reads every clip as exactly L = `clipFrames` frames (a whole
 * number of segments), with no padding and no mask: frame i of the model's
 * input is frame ⌊(i + ½)·T / L⌋ of the clip (nearest-frame resampling —
 * evenly spaced frames when T > L, repeated frames when T < L). The whole
 * clip is always seen, at a rate that depends on its length.
 *
 * ## Protocols
 *
 * A {@linkcode Protocol} is data: which subjects and cameras form the
 * training and test sets, how validation is carved out, and optionally which
 * classes are used. {@linkcode PROTOCOLS} holds Toyota Smarthome's
 * cross-subject (CS) and cross-view (CV1, CV2) splits.
 *
 * @example Generate a small dataset, read it and split it
 * ```ts
 * import assert from "node:assert/strict";
 * import { PROTOCOLS, readClipTable, splitClips, writeSampleDataset } from "./smarthome.ts";
 *
 * const dir = await Deno.makeTempDir();
 * await writeSampleDataset(dir, { clips: 120, dim: 8, seed: 1 });
 * const table = await readClipTable(dir);
 * if (table._tag === "Left") throw new Error(table.left.message);
 * assert.equal(table.right.featureDim, 8);
 * const split = splitClips(table.right, PROTOCOLS["cross-subject"], { seed: 1 });
 * if (split._tag === "Left") throw new Error(split.left);
 * console.log(split.right.train.length, split.right.valid.length, split.right.test.length);
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { describeError } from "../../spec/errors.ts";
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import type { Either } from "../../spec/either.ts";
import { decodeNpy, encodeNpy, readNpyHeader } from "../io/npy.ts";
import { createRng, type Rng } from "../loop/rng.ts";

// ---------------------------------------------------------------------------
// The dataset's facts

/**
 * Toyota Smarthome's 31 activity classes (trimmed clips), in the order of
 * the skeleton baseline's label ids (0 … 30) distributed from the project
 * page. A `classes.txt` in this order makes the protocol presets' class
 * lists line up; any other order works as long as the names match.
 *
 * @example
 * ```ts
 * import { SMARTHOME_CLASSES } from "./smarthome.ts";
 * console.log(SMARTHOME_CLASSES.length, SMARTHOME_CLASSES[0]); // 31 Cook.Cleandishes
 * ```
 */
export const SMARTHOME_CLASSES: readonly string[] = [
  "Cook.Cleandishes",
  "Cook.Cleanup",
  "Cook.Cut",
  "Cook.Stir",
  "Cook.Usestove",
  "Cutbread",
  "Drink.Frombottle",
  "Drink.Fromcan",
  "Drink.Fromcup",
  "Drink.Fromglass",
  "Eat.Attable",
  "Eat.Snack",
  "Enter",
  "Getup",
  "Laydown",
  "Leave",
  "Makecoffee.Pourgrains",
  "Makecoffee.Pourwater",
  "Maketea.Boilwater",
  "Maketea.Insertteabag",
  "Pour.Frombottle",
  "Pour.Fromcan",
  "Pour.Fromkettle",
  "Readbook",
  "Sitdown",
  "Takepills",
  "Uselaptop",
  "Usetelephone",
  "Usetablet",
  "Walk",
  "WatchTV",
];

/** The 12 classes the cross-view protocols leave out (not seen from the test camera). */
const NOT_IN_CROSS_VIEW: ReadonlySet<string> = new Set([
  "Cook.Cleandishes",
  "Cook.Cleanup",
  "Cook.Cut",
  "Cook.Stir",
  "Cook.Usestove",
  "Laydown",
  "Makecoffee.Pourgrains",
  "Makecoffee.Pourwater",
  "Maketea.Boilwater",
  "Maketea.Insertteabag",
  "Pour.Fromkettle",
  "WatchTV",
]);

/**
 * The 19 classes the cross-view protocols use (the activities seen from the
 * test camera), in alphabetical order.
 *
 * @example
 * ```ts
 * import { SMARTHOME_CLASSES, SMARTHOME_CV_CLASSES } from "./smarthome.ts";
 * console.log(SMARTHOME_CV_CLASSES.every((c) => SMARTHOME_CLASSES.includes(c))); // true
 * ```
 */
export const SMARTHOME_CV_CLASSES: readonly string[] = SMARTHOME_CLASSES
  .filter((c) => !NOT_IN_CROSS_VIEW.has(c))
  .sort();

/**
 * The 18 subject ids present in Toyota Smarthome (the numbering has gaps).
 *
 * @example
 * ```ts
 * import { SMARTHOME_SUBJECTS } from "./smarthome.ts";
 * console.log(SMARTHOME_SUBJECTS.length); // 18
 * ```
 */
export const SMARTHOME_SUBJECTS: readonly number[] = [
  2,
  3,
  4,
  6,
  7,
  9,
  10,
  11,
  12,
  13,
  14,
  15,
  16,
  17,
  18,
  19,
  20,
  25,
];

// ---------------------------------------------------------------------------
// Protocols

/**
 * Which clips a set takes: those whose subject is in `subjects` and whose
 * camera is in `cameras`; `null` accepts any.
 *
 * @example
 * ```ts
 * import type { ClipFilter } from "./smarthome.ts";
 * const camera2: ClipFilter = { subjects: null, cameras: [2] };
 * ```
 */
export interface ClipFilter {
  /** Subject ids, or `null` for all. */
  readonly subjects: readonly number[] | null;
  /** Camera ids, or `null` for all. */
  readonly cameras: readonly number[] | null;
}

/**
 * How the validation set is made. `holdout`: a random `fraction` of the
 * training clips of each class (seeded; at least one clip of every class
 * with two or more), removed from training. `filter`: the clips the filter
 * selects (removed from training where the two overlap).
 *
 * @example
 * ```ts
 * import type { ValidationSplit } from "./smarthome.ts";
 * const tenth: ValidationSplit = { _tag: "holdout", fraction: 0.1 };
 * const camera5: ValidationSplit = { _tag: "filter", subjects: null, cameras: [5] };
 * ```
 */
export type ValidationSplit =
  | { readonly _tag: "holdout"; readonly fraction: number }
  | {
    readonly _tag: "filter";
    readonly subjects: readonly number[] | null;
    readonly cameras: readonly number[] | null;
  };

/**
 * An evaluation protocol as data.
 *
 * @example
 * ```ts
 * import { PROTOCOLS, type Protocol } from "./smarthome.ts";
 * const cs: Protocol = PROTOCOLS["cross-subject"];
 * console.log(cs.train.subjects?.join(",")); // 3,4,6,7,9,12,13,15,17,19,25
 * ```
 */
export interface Protocol {
  /** Names the protocol in results (`cross-subject`, `cross-view-1`, ...). */
  readonly name: string;
  /** The training clips (before validation is carved out). */
  readonly train: ClipFilter;
  /** The validation clips. */
  readonly valid: ValidationSplit;
  /** The test clips. */
  readonly test: ClipFilter;
  /**
   * The classes used, by name, in label order; clips of other classes are
   * left out. `null`: every class of `classes.txt`.
   */
  readonly classes: readonly string[] | null;
}

/**
 * Toyota Smarthome's protocols (Das et al., ICCV 2019; as used by the
 * baselines distributed from the project page):
 *
 * - `cross-subject` (CS): train on subjects 3, 4, 6, 7, 9, 12, 13, 15, 17,
 *   19, 25, test on the other 7; all 31 classes. The protocol has no
 *   official validation set: 10 % of each class's training clips are held
 *   out (seeded).
 * - `cross-view-1` (CV1): train on camera 1, validate on camera 5, test on
 *   camera 2; the 19 cross-view classes.
 * - `cross-view-2` (CV2): train on cameras 1, 3, 4, 6, 7, validate on
 *   camera 5, test on camera 2; the 19 cross-view classes.
 *
 * @example
 * ```ts
 * import { PROTOCOLS } from "./smarthome.ts";
 * console.log(Object.keys(PROTOCOLS).join(" ")); // cross-subject cross-view-1 cross-view-2
 * console.log(PROTOCOLS["cross-view-2"].train.cameras?.join(",")); // 1,3,4,6,7
 * ```
 */
export const PROTOCOLS: Readonly<Record<string, Protocol>> = {
  "cross-subject": {
    name: "cross-subject",
    train: { subjects: [3, 4, 6, 7, 9, 12, 13, 15, 17, 19, 25], cameras: null },
    valid: { _tag: "holdout", fraction: 0.1 },
    test: { subjects: [2, 10, 11, 14, 16, 18, 20], cameras: null },
    classes: null,
  },
  "cross-view-1": {
    name: "cross-view-1",
    train: { subjects: null, cameras: [1] },
    valid: { _tag: "filter", subjects: null, cameras: [5] },
    test: { subjects: null, cameras: [2] },
    classes: SMARTHOME_CV_CLASSES,
  },
  "cross-view-2": {
    name: "cross-view-2",
    train: { subjects: null, cameras: [1, 3, 4, 6, 7] },
    valid: { _tag: "filter", subjects: null, cameras: [5] },
    test: { subjects: null, cameras: [2] },
    classes: SMARTHOME_CV_CLASSES,
  },
};

// ---------------------------------------------------------------------------
// Reading

/**
 * One clip: a row of `clips.csv`, checked against its features file.
 *
 * @example
 * ```ts
 * import type { ClipRecord } from "./smarthome.ts";
 * const c: ClipRecord = { id: "Walk_p03_r01_v15_c07", label: 29, subject: 3, camera: 7, frames: 163, line: 2 };
 * ```
 */
export interface ClipRecord {
  /** `clip_id`; the features are `features/<id>.npy`. */
  readonly id: string;
  /** Class index into the table's `classes`. */
  readonly label: number;
  /** Subject id. */
  readonly subject: number;
  /** Camera id. */
  readonly camera: number;
  /** T: frames in the features file. */
  readonly frames: number;
  /** 1-based line of `clips.csv` (for messages). */
  readonly line: number;
}

/**
 * A dataset directory, read and checked.
 *
 * @example
 * ```ts
 * import type { ClipTable } from "./smarthome.ts";
 * const frames = (t: ClipTable) => t.clips.reduce((n, c) => n + c.frames, 0);
 * ```
 */
export interface ClipTable {
  /** The directory. */
  readonly dir: string;
  /** Class names from `classes.txt`, by index. */
  readonly classes: readonly string[];
  /** Every clip, in file order. */
  readonly clips: readonly ClipRecord[];
  /** F: features per frame (the same in every file). */
  readonly featureDim: number;
}

/**
 * Why a dataset directory cannot be used: every problem found (up to a
 * limit), each naming its file and, for `clips.csv`, the line.
 *
 * @example
 * ```ts
 * import { readClipTable } from "./smarthome.ts";
 * const r = await readClipTable("/nonexistent");
 * if (r._tag === "Left") console.log(r.left.message.split("\n")[0]);
 * // /nonexistent/classes.txt: missing (the dataset layout is in README.md, "Toyota Smarthome")
 * ```
 */
export interface ClipDataError {
  /** Discriminant. */
  readonly _tag: "ClipDataError";
  /** Each problem as `file[:line]: what`. */
  readonly problems: readonly string[];
  /** Problems found beyond those listed. */
  readonly more: number;
  /** The problems, one per line. */
  readonly message: string;
}

const MAX_PROBLEMS = 20;

const dataError = (problems: readonly string[], more = 0): ClipDataError => ({
  _tag: "ClipDataError",
  problems,
  more,
  message: problems.join("\n") + (more > 0 ? `\n… and ${more} more problems` : ""),
});

const LAYOUT_HINT = `the dataset layout is in README.md, "Toyota Smarthome"`;

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const COLUMNS = ["clip_id", "label", "subject", "camera", "frames"] as const;

/** Reads a text file, or a problem naming it. */
async function readText(file: string): Promise<Either<string, string>> {
  try {
    return E.right(await Deno.readTextFile(file));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return E.left(`${file}: missing (${LAYOUT_HINT})`);
    return E.left(`${file}: cannot read: ${describeError(e)}`);
  }
}

/**
 * Parses `classes.txt`: one class name per line (trimmed), at least two,
 * unique, no blank lines between names (trailing blank lines are fine).
 *
 * @example
 * ```ts
 * import { parseClasses } from "./smarthome.ts";
 * console.log(parseClasses("Walk\nSitdown\n", "classes.txt")); // { _tag: "Right", right: [ "Walk", "Sitdown" ] }
 * ```
 */
export function parseClasses(text: string, file: string): Either<ClipDataError, string[]> {
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  while (lines.length > 0 && lines[lines.length - 1].trim() === "") lines.pop();
  const problems: string[] = [];
  const seen = new Map<string, number>();
  lines.forEach((raw, i) => {
    const name = raw.trim();
    if (name === "") problems.push(`${file}:${i + 1}: blank line (one class name per line)`);
    else if (seen.has(name)) {
      problems.push(`${file}:${i + 1}: class "${name}" repeats line ${seen.get(name)}`);
    } else seen.set(name, i + 1);
  });
  if (lines.length < 2 && problems.length === 0) {
    problems.push(`${file}: ${lines.length} class(es); a classifier needs at least 2`);
  }
  return problems.length > 0 ? E.left(dataError(problems)) : E.right(lines.map((l) => l.trim()));
}

/**
 * Parses `clips.csv` against the class list: the rows as
 * {@linkcode ClipRecord}s, or every problem with its line (up to 20 listed).
 * Does not look at the features files.
 *
 * @example
 * ```ts
 * import { parseClipsCsv } from "./smarthome.ts";
 * const csv = "clip_id,label,subject,camera,frames\na,Walk,3,1,40\nb,2,3,1,40\n";
 * const r = parseClipsCsv(csv, ["Walk", "Sitdown"], "clips.csv");
 * if (r._tag === "Left") console.log(r.left.message); // clips.csv:3: label 2 is out of range: classes.txt has 2 classes (0..1)
 * ```
 */
export function parseClipsCsv(
  text: string,
  classes: readonly string[],
  file: string,
): Either<ClipDataError, ClipRecord[]> {
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  const problems: string[] = [];
  let more = 0;
  const problem = (p: string) => {
    if (problems.length < MAX_PROBLEMS) problems.push(p);
    else more++;
  };
  const headerAt = lines.findIndex((l) => l.trim() !== "" && !l.trimStart().startsWith("#"));
  if (headerAt < 0) {
    return E.left(dataError([`${file}: empty (expected the header ${COLUMNS.join(",")})`]));
  }
  const header = lines[headerAt].split(",").map((h) => h.trim());
  const col: Record<string, number> = {};
  for (const c of COLUMNS) {
    const i = header.indexOf(c);
    if (i < 0) {
      problem(
        `${file}:${headerAt + 1}: no column "${c}" in the header ` +
          `(expected ${COLUMNS.join(",")}; got ${header.join(",")})`,
      );
    }
    col[c] = i;
  }
  if (problems.length > 0) return E.left(dataError(problems));
  const byName = new Map(classes.map((c, i) => [c, i]));
  const seen = new Map<string, number>();
  const clips: ClipRecord[] = [];
  const nonNegInt = (s: string): number | null => (/^\d+$/.test(s) ? Number(s) : null);
  for (let i = headerAt + 1; i < lines.length; i++) {
    const raw = lines[i];
    if (raw.trim() === "" || raw.trimStart().startsWith("#")) continue;
    const line = i + 1;
    const at = `${file}:${line}`;
    const cells = raw.split(",").map((c) => c.trim());
    if (cells.length < header.length) {
      problem(`${at}: ${cells.length} fields, the header has ${header.length}`);
      continue;
    }
    if (cells.some((c) => c.includes('"'))) {
      problem(`${at}: quoted fields are not supported (no field holds a comma)`);
      continue;
    }
    const id = cells[col.clip_id];
    const labelText = cells[col.label];
    let ok = true;
    if (!ID.test(id)) {
      problem(
        `${at}: clip_id ${JSON.stringify(id)} must be letters, digits, '.', '_' or '-' ` +
          `(it names features/<clip_id>.npy)`,
      );
      ok = false;
    } else if (seen.has(id)) {
      problem(`${at}: clip_id "${id}" repeats line ${seen.get(id)}`);
      ok = false;
    } else seen.set(id, line);
    let label: number | undefined;
    const asInt = nonNegInt(labelText);
    if (asInt !== null) {
      if (asInt >= classes.length) {
        problem(
          `${at}: label ${asInt} is out of range: classes.txt has ${classes.length} classes ` +
            `(0..${classes.length - 1})`,
        );
        ok = false;
      } else label = asInt;
    } else if (byName.has(labelText)) {
      label = byName.get(labelText);
    } else {
      problem(
        `${at}: label ${JSON.stringify(labelText)} is neither a class index nor a name ` +
          `in classes.txt`,
      );
      ok = false;
    }
    const num = (name: "subject" | "camera" | "frames", positive: boolean): number | null => {
      const v = nonNegInt(cells[col[name]]);
      if (v === null || (positive && v === 0)) {
        problem(
          `${at}: ${name} ${JSON.stringify(cells[col[name]])} is not a ` +
            `${positive ? "positive" : "non-negative"} integer`,
        );
        ok = false;
      }
      return v;
    };
    const subject = num("subject", false);
    const camera = num("camera", false);
    const frames = num("frames", true);
    if (ok && label !== undefined && subject !== null && camera !== null && frames !== null) {
      clips.push({ id, label, subject, camera, frames, line });
    }
  }
  if (problems.length === 0 && clips.length === 0) problem(`${file}: no clips (only a header)`);
  return problems.length > 0 ? E.left(dataError(problems, more)) : E.right(clips);
}

/** The path of a clip's features file. */
export const featuresFile = (dir: string, id: string): string => join(dir, "features", `${id}.npy`);

/** Reads just enough of a `.npy` file to check its header, plus its size. */
async function probeNpy(
  file: string,
): Promise<Either<string, { frames: number; dim: number; complete: string | null }>> {
  let f: Deno.FsFile;
  try {
    f = await Deno.open(file, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return E.left(`${file}: missing`);
    return E.left(`${file}: cannot open: ${describeError(e)}`);
  }
  try {
    const size = (await f.stat()).size;
    const head = new Uint8Array(Math.min(size, 4096));
    let got = 0;
    while (got < head.length) {
      const n = await f.read(head.subarray(got));
      if (n === null) break;
      got += n;
    }
    const h = readNpyHeader(head.subarray(0, got), file);
    if (E.isLeft(h)) return E.left(h.left.message);
    const [t, d] = h.right.shape;
    const need = h.right.dataOffset + t * d * 4;
    const complete = size === need
      ? null
      : `${file}: ${size < need ? "truncated" : "trailing bytes"}: ` +
        `shape (${t}, ${d}) float32 needs ${need} bytes with the header, the file has ${size}`;
    return E.right({ frames: t, dim: d, complete });
  } finally {
    f.close();
  }
}

/**
 * Reads and checks a dataset directory: `classes.txt`, every row of
 * `clips.csv`, and the header and size of every `features/<clip_id>.npy`
 * (present, float32 little-endian, C order, 2-D, T rows as the row says, the
 * same F everywhere, no missing or extra bytes). The feature values are read
 * later, per batch. `Left` lists every problem found (up to 20) with its file
 * and line.
 *
 * @example
 * ```ts
 * import { readClipTable } from "./smarthome.ts";
 * const r = await readClipTable("/data/smarthome");
 * if (r._tag === "Left") console.error(r.left.message);
 * else console.log(`${r.right.clips.length} clips, F = ${r.right.featureDim}`);
 * ```
 */
export async function readClipTable(dir: string): Promise<Either<ClipDataError, ClipTable>> {
  const classesFile = join(dir, "classes.txt");
  const clipsFile = join(dir, "clips.csv");
  const classesText = await readText(classesFile);
  if (E.isLeft(classesText)) return E.left(dataError([classesText.left]));
  const classes = parseClasses(classesText.right, classesFile);
  if (E.isLeft(classes)) return classes;
  const clipsText = await readText(clipsFile);
  if (E.isLeft(clipsText)) return E.left(dataError([clipsText.left]));
  const clips = parseClipsCsv(clipsText.right, classes.right, clipsFile);
  if (E.isLeft(clips)) return clips;

  const problems: string[] = [];
  let more = 0;
  const problem = (p: string) => {
    if (problems.length < MAX_PROBLEMS) problems.push(p);
    else more++;
  };
  let dim: { value: number; file: string } | null = null;
  const rows = clips.right;
  // Headers in parallel, a bounded number of files open at a time.
  const probes: Either<string, { frames: number; dim: number; complete: string | null }>[] = [];
  for (let i = 0; i < rows.length; i += 64) {
    const chunk = rows.slice(i, i + 64);
    probes.push(...await Promise.all(chunk.map((c) => probeNpy(featuresFile(dir, c.id)))));
  }
  rows.forEach((c, i) => {
    const p = probes[i];
    const file = featuresFile(dir, c.id);
    const row = `(${clipsFile}:${c.line}, clip ${c.id})`;
    if (E.isLeft(p)) return problem(`${p.left} ${row}`);
    if (p.right.complete !== null) problem(`${p.right.complete} ${row}`);
    if (p.right.frames !== c.frames) {
      problem(`${file}: ${p.right.frames} frames, but ${clipsFile}:${c.line} says ${c.frames}`);
    }
    if (dim === null) dim = { value: p.right.dim, file };
    else if (p.right.dim !== dim.value) {
      problem(
        `${file}: ${p.right.dim} features per frame, but ${dim.file} has ${dim.value} ` +
          `(every clip needs the same F)`,
      );
    }
  });
  if (problems.length > 0) return E.left(dataError(problems, more));
  return E.right({
    dir,
    classes: classes.right,
    clips: rows,
    featureDim: (dim as { value: number } | null)?.value ?? 0,
  });
}

// ---------------------------------------------------------------------------
// Splitting

/**
 * The clips of one protocol, labels renumbered to the protocol's classes.
 *
 * @example
 * ```ts
 * import type { ClipSplit } from "./smarthome.ts";
 * const sizes = (s: ClipSplit) => [s.train.length, s.valid.length, s.test.length];
 * ```
 */
export interface ClipSplit {
  /** The protocol's name. */
  readonly protocol: string;
  /** Class names in label order (the protocol's, or all of `classes.txt`). */
  readonly classes: readonly string[];
  /** Training clips. */
  readonly train: readonly ClipRecord[];
  /** Validation clips. */
  readonly valid: readonly ClipRecord[];
  /** Test clips (may be empty: then the test set is skipped). */
  readonly test: readonly ClipRecord[];
}

const accepts = (f: ClipFilter, c: ClipRecord): boolean =>
  (f.subjects === null || f.subjects.includes(c.subject)) &&
  (f.cameras === null || f.cameras.includes(c.camera));

const describeFilter = (f: ClipFilter): string =>
  `subjects ${f.subjects === null ? "any" : f.subjects.join(",")}, cameras ${
    f.cameras === null ? "any" : f.cameras.join(",")
  }`;

/**
 * Splits a table by a protocol: the classes it uses (labels renumbered in
 * that order), the training, validation and test clips. `Left` names what
 * is wrong: a protocol class missing from `classes.txt`, an empty training
 * or validation set, training and test sets that share clips.
 *
 * @example
 * ```ts
 * import type { ClipTable } from "./smarthome.ts";
 * import { PROTOCOLS, splitClips } from "./smarthome.ts";
 * const testClips = (t: ClipTable) => {
 *   const s = splitClips(t, PROTOCOLS["cross-view-1"], { seed: 1 });
 *   return s._tag === "Right" ? s.right.test.length : 0;
 * };
 * ```
 */
export function splitClips(
  table: ClipTable,
  protocol: Protocol,
  opts: { readonly seed: number },
): Either<string, ClipSplit> {
  const where = `protocol ${protocol.name}`;
  let classes = table.classes;
  let relabel = (label: number): number | null => label;
  if (protocol.classes !== null) {
    const missing = protocol.classes.filter((c) => !table.classes.includes(c));
    if (missing.length > 0) {
      return E.left(
        `${where}: class(es) ${missing.join(", ")} not in ${join(table.dir, "classes.txt")}`,
      );
    }
    classes = protocol.classes;
    const index = new Map(protocol.classes.map((c, i) => [table.classes.indexOf(c), i]));
    relabel = (label) => index.get(label) ?? null;
  }
  const used: ClipRecord[] = [];
  for (const c of table.clips) {
    const label = relabel(c.label);
    if (label !== null) used.push({ ...c, label });
  }
  let train = used.filter((c) => accepts(protocol.train, c));
  const test = used.filter((c) => accepts(protocol.test, c));
  if (train.length === 0) {
    return E.left(
      `${where}: no training clips (${describeFilter(protocol.train)}); are clips.csv's ` +
        `subject and camera the dataset's ids (p03 → 3, c01 → 1)?`,
    );
  }
  const testIds = new Set(test.map((c) => c.id));
  const shared = train.find((c) => testIds.has(c.id));
  if (shared !== undefined) {
    return E.left(`${where}: clip ${shared.id} is in both the training and the test set`);
  }
  let valid: ClipRecord[];
  const v = protocol.valid;
  if (v._tag === "filter") {
    valid = used.filter((c) => accepts(v, c) && !testIds.has(c.id));
    const validIds = new Set(valid.map((c) => c.id));
    train = train.filter((c) => !validIds.has(c.id));
  } else {
    // Per class: shuffle (seeded), hold out round(fraction·n), at least 1 when n ≥ 2.
    const rng = createRng(opts.seed);
    const held = new Set<string>();
    for (let k = 0; k < classes.length; k++) {
      const members = train.filter((c) => c.label === k);
      shuffle(members, rng);
      const n = members.length;
      const take = n < 2 ? 0 : Math.min(n - 1, Math.max(1, Math.round(v.fraction * n)));
      for (const c of members.slice(0, take)) held.add(c.id);
    }
    valid = train.filter((c) => held.has(c.id));
    train = train.filter((c) => !held.has(c.id));
  }
  if (train.length === 0) return E.left(`${where}: validation took every training clip`);
  if (valid.length === 0) {
    return E.left(
      `${where}: no validation clips (${
        v._tag === "filter" ? describeFilter(v) : `holdout ${v.fraction} of too few clips`
      })`,
    );
  }
  return E.right({ protocol: protocol.name, classes, train, valid, test });
}

/** Fisher–Yates shuffle in place. */
function shuffle<A>(xs: A[], rng: Rng): void {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
}

/**
 * Clips per class, by label.
 *
 * @example
 * ```ts
 * import { classCounts } from "./smarthome.ts";
 * console.log(classCounts([{ label: 1 }, { label: 1 }, { label: 0 }], 3)); // [ 1, 2, 0 ]
 * ```
 */
export function classCounts(
  clips: readonly { readonly label: number }[],
  nClasses: number,
): number[] {
  const out = new Array<number>(nClasses).fill(0);
  for (const c of clips) out[c.label]++;
  return out;
}

// ---------------------------------------------------------------------------
// Clip sampling and the clip store

/**
 * The frame of a T-frame clip that position i of an L-frame model input
 * reads: ⌊(i + ½)·T / L⌋ (nearest-frame resampling).
 *
 * @example
 * ```ts
 * import { resampleIndex } from "./smarthome.ts";
 * console.log([0, 1, 2, 3].map((i) => resampleIndex(i, 8, 4))); // [ 1, 3, 5, 7 ]
 * console.log([0, 1, 2, 3].map((i) => resampleIndex(i, 2, 4))); // [ 0, 0, 1, 1 ]
 * ```
 */
export const resampleIndex = (i: number, frames: number, clipFrames: number): number =>
  Math.min(frames - 1, Math.floor(((i + 0.5) * frames) / clipFrames));

/**
 * Per-feature standardisation: x ↦ (x − mean) / std.
 *
 * @example
 * ```ts
 * import type { FeatureStats } from "./smarthome.ts";
 * const identity: FeatureStats = { mean: new Float32Array(4), std: new Float32Array(4).fill(1), clips: 0 };
 * ```
 */
export interface FeatureStats {
  /** Per-feature mean, [F]. */
  readonly mean: Float32Array;
  /** Per-feature standard deviation, [F] (constant features: 1). */
  readonly std: Float32Array;
  /** Clips the statistics were estimated from. */
  readonly clips: number;
}

/**
 * Reads clips' features from a table's directory as the model sees them:
 * resampled to `clipFrames` frames, standardised when `stats` is given,
 * packed [B, L, F]. Keeps the prepared clips in memory up to `cacheBytes`
 * (default 1 GiB), so small datasets are read from disk once.
 *
 * @example
 * ```ts
 * import { ClipStore, readClipTable, writeSampleDataset } from "./smarthome.ts";
 * const dir = await Deno.makeTempDir();
 * await writeSampleDataset(dir, { clips: 40, dim: 4, seed: 3 });
 * const table = await readClipTable(dir);
 * if (table._tag === "Left") throw new Error(table.left.message);
 * const store = new ClipStore(table.right, { clipFrames: 16 });
 * const batch = await store.batch(table.right.clips.slice(0, 2));
 * console.log(batch.length); // 2 · 16 · 4 = 128
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class ClipStore {
  private readonly cache = new Map<string, Float32Array>();
  private cached = 0;
  private readonly cacheBytes: number;
  /** L: frames per clip as the model reads it. */
  readonly clipFrames: number;
  /** F. */
  readonly featureDim: number;
  private stats: FeatureStats | null = null;

  /** A store over `table`'s features directory. */
  constructor(
    readonly table: ClipTable,
    opts: { readonly clipFrames: number; readonly cacheBytes?: number },
  ) {
    this.clipFrames = opts.clipFrames;
    this.featureDim = table.featureDim;
    this.cacheBytes = opts.cacheBytes ?? 2 ** 30;
  }

  /** Standardise every clip read from now on (drops the cache). */
  standardize(stats: FeatureStats): void {
    this.stats = stats;
    this.cache.clear();
    this.cached = 0;
  }

  /**
   * A clip's raw features [T, F], checked: every value finite. Throws an
   * `Error` naming the file (and the frame of a non-finite value).
   */
  async raw(clip: ClipRecord): Promise<Float32Array> {
    const file = featuresFile(this.table.dir, clip.id);
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(file);
    } catch (e) {
      throw new Error(`${file}: cannot read: ${describeError(e)}`);
    }
    const m = decodeNpy(bytes, file);
    if (E.isLeft(m)) throw new Error(m.left.message);
    const [t, f] = m.right.shape;
    if (t !== clip.frames || f !== this.featureDim) {
      throw new Error(
        `${file}: now shape (${t}, ${f}), was (${clip.frames}, ${this.featureDim}) when the ` +
          `dataset was checked: did it change during the run?`,
      );
    }
    const d = m.right.data;
    for (let i = 0; i < d.length; i++) {
      if (!Number.isFinite(d[i])) {
        throw new Error(
          `${file}: frame ${Math.floor(i / f)}, feature ${i % f} is ${
            d[i]
          }: features must be finite`,
        );
      }
    }
    return d;
  }

  /** A clip as the model reads it: [L, F], resampled and standardised. */
  async prepared(clip: ClipRecord): Promise<Float32Array> {
    const hit = this.cache.get(clip.id);
    if (hit !== undefined) return hit;
    const raw = await this.raw(clip);
    const l = this.clipFrames, f = this.featureDim;
    const out = new Float32Array(l * f);
    for (let i = 0; i < l; i++) {
      const src = resampleIndex(i, clip.frames, l) * f;
      out.set(raw.subarray(src, src + f), i * f);
    }
    if (this.stats !== null) {
      const { mean, std } = this.stats;
      for (let i = 0; i < out.length; i++) out[i] = (out[i] - mean[i % f]) / std[i % f];
    }
    if (this.cached + out.byteLength <= this.cacheBytes) {
      this.cache.set(clip.id, out);
      this.cached += out.byteLength;
    }
    return out;
  }

  /** Clips packed as [B, L, F] row-major. */
  async batch(clips: readonly ClipRecord[]): Promise<Float32Array> {
    const size = this.clipFrames * this.featureDim;
    const out = new Float32Array(clips.length * size);
    const parts = await Promise.all(clips.map((c) => this.prepared(c)));
    parts.forEach((p, i) => out.set(p, i * size));
    return out;
  }
}

/**
 * Per-feature mean and standard deviation over every frame of up to
 * `maxClips` clips (a seeded sample when there are more), in float64.
 * Features whose deviation is below 1e-6 get std 1 (left unscaled).
 *
 * @example
 * ```ts
 * import { ClipStore, featureStats, readClipTable, writeSampleDataset } from "./smarthome.ts";
 * const dir = await Deno.makeTempDir();
 * await writeSampleDataset(dir, { clips: 30, dim: 4, classes: 3, seed: 2 });
 * const table = await readClipTable(dir);
 * if (table._tag === "Left") throw new Error(table.left.message);
 * const store = new ClipStore(table.right, { clipFrames: 8 });
 * const stats = await featureStats(store, table.right.clips, { maxClips: 10, seed: 1 });
 * console.log(stats.clips, stats.mean.length); // 10 4
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function featureStats(
  store: ClipStore,
  clips: readonly ClipRecord[],
  opts: { readonly maxClips: number; readonly seed: number },
): Promise<FeatureStats> {
  let sample = [...clips];
  if (sample.length > opts.maxClips) {
    shuffle(sample, createRng(opts.seed));
    sample = sample.slice(0, opts.maxClips);
  }
  const f = store.featureDim;
  const sum = new Float64Array(f), sq = new Float64Array(f);
  let n = 0;
  for (const c of sample) {
    const d = await store.raw(c);
    for (let i = 0; i < d.length; i++) {
      sum[i % f] += d[i];
      sq[i % f] += d[i] * d[i];
    }
    n += c.frames;
  }
  const mean = new Float32Array(f), std = new Float32Array(f);
  for (let k = 0; k < f; k++) {
    const m = sum[k] / n;
    const sd = Math.sqrt(Math.max(0, sq[k] / n - m * m));
    mean[k] = m;
    std[k] = sd < 1e-6 ? 1 : sd;
  }
  return { mean, std, clips: sample.length };
}

/**
 * How training batches are drawn. `classBalanced`: each draw picks a class
 * uniformly among those with training clips, then one of its clips
 * uniformly, so rare classes are seen as often as common ones (the
 * remedy for Smarthome's imbalance). `uniform`: each draw picks a training
 * clip uniformly. Both draw with replacement, from a seeded generator.
 *
 * @example
 * ```ts
 * import type { Balance } from "./smarthome.ts";
 * const b: Balance = "classBalanced";
 * ```
 */
export type Balance = "classBalanced" | "uniform";

/**
 * Draws `batchSize` training clips per call, as {@linkcode Balance} says.
 * Its whole state is `rng`, so a checkpointed generator state resumes the
 * same sequence.
 *
 * @example
 * ```ts
 * import { createRng } from "../loop/rng.ts";
 * import { drawBatch } from "./smarthome.ts";
 * const clips = [
 *   { id: "a", label: 0, subject: 3, camera: 1, frames: 9, line: 2 },
 *   { id: "b", label: 0, subject: 3, camera: 1, frames: 9, line: 3 },
 *   { id: "c", label: 1, subject: 3, camera: 1, frames: 9, line: 4 },
 * ];
 * const batch = drawBatch(clips, 2, { balance: "classBalanced", batchSize: 4, rng: createRng(1) });
 * console.log(batch.length); // 4
 * ```
 */
export function drawBatch(
  clips: readonly ClipRecord[],
  nClasses: number,
  opts: { readonly balance: Balance; readonly batchSize: number; readonly rng: Rng },
): ClipRecord[] {
  const out: ClipRecord[] = [];
  if (opts.balance === "uniform") {
    for (let i = 0; i < opts.batchSize; i++) out.push(clips[opts.rng.int(clips.length)]);
    return out;
  }
  const byClass: ClipRecord[][] = Array.from({ length: nClasses }, () => []);
  for (const c of clips) byClass[c.label].push(c);
  const present = byClass.filter((m) => m.length > 0);
  for (let i = 0; i < opts.batchSize; i++) {
    const members = present[opts.rng.int(present.length)];
    out.push(members[opts.rng.int(members.length)]);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Synthetic datasets

/** Smarthome's subjects with cross-subject training and test subjects alternating. */
const SUBJECT_ORDER = [3, 2, 4, 10, 6, 11, 7, 14, 9, 16, 12, 18, 13, 20, 15, 17, 19, 25];
/** Cameras with the cross-view training (1), test (2) and validation (5) cameras first. */
const CAMERA_ORDER = [1, 2, 5, 3, 4, 6, 7];

/**
 * Options of {@linkcode writeSampleDataset}.
 *
 * @example
 * ```ts
 * import type { SampleOptions } from "./smarthome.ts";
 * const tiny: SampleOptions = { clips: 200, dim: 8, classes: 4, seed: 1 };
 * ```
 */
export interface SampleOptions {
  /** Clips in all. Default 600. */
  readonly clips?: number;
  /** F: features per frame. Default 1024 (the presets' `model.input.dim`). */
  readonly dim?: number;
  /**
   * Number of classes, the first of {@linkcode SMARTHOME_CLASSES} (named
   * `class-k` beyond 31). Default 31.
   */
  readonly classes?: number;
  /** Shortest clip, in frames. Default 64. */
  readonly minFrames?: number;
  /** Longest clip, in frames. Default 192. */
  readonly maxFrames?: number;
  /**
   * The class signal occupies the first `signalFraction` of each clip's
   * frames; the rest is noise. Default 1/8 (the first segment of the
   * presets' 8-segment clips).
   */
  readonly signalFraction?: number;
  /** Signal amplitude over unit noise, per feature. Default 1. */
  readonly signal?: number;
  /**
   * The noise of every frame is A·z + jitter·n: z (unit Gaussian, `noiseRank`
   * values) through a fixed random A [F, noiseRank] scaled to unit variance
   * per feature, plus isotropic jitter n. Low-rank noise, as real features
   * lie near a low-dimensional manifold, keeps a model from telling training
   * clips apart by their noise alone (memorising them). Default 16 (at most F).
   */
  readonly noiseRank?: number;
  /** Standard deviation of the isotropic part of the noise. Default 0.1. */
  readonly jitter?: number;
  /**
   * Class frequencies fall as 1/(k + 1)^imbalance (Smarthome is heavily
   * imbalanced); 0 makes classes equally frequent. Default 1.
   */
  readonly imbalance?: number;
  /** Seed of everything drawn. Default 1. */
  readonly seed?: number;
}

/**
 * Writes a synthetic dataset in the layout {@linkcode readClipTable} reads,
 * built so that only memory across segments can classify it: each class
 * has a random prototype vector, which is added to the frames of the first
 * `signalFraction` of every clip of that class; every frame is also noise of
 * unit variance per feature (low-rank, see `noiseRank`). A model that sees
 * only the end of a clip is at chance.
 * Clip lengths vary uniformly in [minFrames, maxFrames]; subjects
 * (Smarthome's 18 ids) and cameras (1–7) are assigned round-robin within
 * each class, alternating the protocols' sides, so every protocol finds
 * clips of most classes on each side; class frequencies are imbalanced
 * (1/(k + 1)). Resolves to the clip count per class.
 *
 * @example
 * ```ts
 * import { writeSampleDataset } from "./smarthome.ts";
 * const dir = await Deno.makeTempDir();
 * const counts = await writeSampleDataset(dir, { clips: 50, dim: 4, classes: 3 });
 * console.log(counts.reduce((a, b) => a + b, 0)); // 50
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeSampleDataset(dir: string, opts: SampleOptions = {}): Promise<number[]> {
  const n = opts.clips ?? 600;
  const dim = opts.dim ?? 1024;
  const k = opts.classes ?? 31;
  const minFrames = opts.minFrames ?? 64;
  const maxFrames = opts.maxFrames ?? 192;
  const fraction = opts.signalFraction ?? 1 / 8;
  const amplitude = opts.signal ?? 1;
  const imbalance = opts.imbalance ?? 1;
  const rank = Math.min(opts.noiseRank ?? 16, dim);
  const jitter = opts.jitter ?? 0.1;
  if (!(Number.isInteger(n) && n >= k && k >= 2)) {
    throw new RangeError(`writeSampleDataset: need clips ≥ classes ≥ 2, got ${n} and ${k}`);
  }
  if (!(Number.isInteger(minFrames) && minFrames >= 1 && maxFrames >= minFrames)) {
    throw new RangeError(`writeSampleDataset: bad frame range [${minFrames}, ${maxFrames}]`);
  }
  if (!(fraction > 0 && fraction <= 1)) {
    throw new RangeError(`writeSampleDataset: signalFraction must be in (0, 1], got ${fraction}`);
  }
  const rng = createRng(opts.seed ?? 1);
  // Box–Muller on two uniforms, both outputs used.
  let spare: number | null = null;
  const gauss = (): number => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(1 - rng.float())), a = 2 * Math.PI * rng.float();
    spare = r * Math.sin(a);
    return r * Math.cos(a);
  };
  const names = Array.from({ length: k }, (_, i) => SMARTHOME_CLASSES[i] ?? `class-${i}`);
  // Imbalanced counts: every class at least one clip, the rest by weight 1/(i + 1)^imbalance.
  const weights = names.map((_, i) => 1 / Math.pow(i + 1, imbalance));
  const total = weights.reduce((a, b) => a + b, 0);
  const counts = weights.map((w) => 1 + Math.floor(((n - k) * w) / total));
  for (let i = 0; counts.reduce((a, b) => a + b, 0) < n; i = (i + 1) % k) counts[i]++;
  // Prototypes: unit Gaussian per feature, scaled.
  const protos = names.map(() => Float32Array.from({ length: dim }, () => amplitude * gauss()));
  // The noise map A [F, rank], unit variance per feature.
  const mix = Float32Array.from({ length: dim * rank }, () => gauss() / Math.sqrt(rank));
  const z = new Float32Array(rank);
  await Deno.mkdir(join(dir, "features"), { recursive: true });
  await Deno.writeTextFile(join(dir, "classes.txt"), names.join("\n") + "\n");
  const rows = ["clip_id,label,subject,camera,frames"];
  let serial = 0;
  for (let c = 0; c < k; c++) {
    for (let j = 0; j < counts[c]; j++) {
      // Round-robin, so every class with a few clips has some on each side of each protocol.
      const subject = SUBJECT_ORDER[j % SUBJECT_ORDER.length];
      const camera = CAMERA_ORDER[(j + Math.floor(j / CAMERA_ORDER.length)) % CAMERA_ORDER.length];
      const t = minFrames + rng.int(maxFrames - minFrames + 1);
      const id = `${names[c]}_p${String(subject).padStart(2, "0")}_r${
        String(serial++).padStart(4, "0")
      }_c${String(camera).padStart(2, "0")}`;
      const data = new Float32Array(t * dim);
      for (let f = 0; f < t; f++) {
        for (let r = 0; r < rank; r++) z[r] = gauss();
        for (let d = 0; d < dim; d++) {
          let v = jitter * gauss();
          for (let r = 0; r < rank; r++) v += mix[d * rank + r] * z[r];
          data[f * dim + d] = v;
        }
      }
      const signalFrames = Math.max(1, Math.floor(fraction * t));
      for (let f = 0; f < signalFrames; f++) {
        for (let d = 0; d < dim; d++) data[f * dim + d] += protos[c][d];
      }
      await Deno.writeFile(featuresFile(dir, id), encodeNpy({ shape: [t, dim], data }));
      rows.push(`${id},${c},${subject},${camera},${t}`);
    }
  }
  await Deno.writeTextFile(join(dir, "clips.csv"), rows.join("\n") + "\n");
  return counts;
}
