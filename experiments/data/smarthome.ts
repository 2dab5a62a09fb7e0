/**
 * Toyota Smarthome-style clip classification data: the dataset's facts
 * (classes, subjects) and the reader for clips given as per-frame feature
 * vectors. Beside it: the evaluation protocols and splits
 * (`smarthome_protocols.ts`), the fixed-length clip sampling, the clip store
 * and class-balanced batches (`smarthome_store.ts`), and the generator of
 * synthetic datasets in the same layout (`smarthome_sample.ts`).
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
 * @example Generate a small dataset, read it and split it
 * ```ts
 * import assert from "node:assert/strict";
 * import { readClipTable } from "./smarthome.ts";
 * import { PROTOCOLS, splitClips } from "./smarthome_protocols.ts";
 * import { writeSampleDataset } from "./smarthome_sample.ts";
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
import { readNpyHeader } from "../io/npy.ts";

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
