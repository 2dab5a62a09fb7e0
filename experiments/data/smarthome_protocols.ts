/**
 * Toyota Smarthome's evaluation protocols as data, and the split of a clip
 * table by one of them (training, validation and test clips, labels
 * renumbered to the protocol's classes).
 *
 * ## Protocols
 *
 * A {@linkcode Protocol} is data: which subjects and cameras form the
 * training and test sets, how validation is carved out, and optionally which
 * classes are used. {@linkcode PROTOCOLS} holds Toyota Smarthome's
 * cross-subject (CS) and cross-view (CV1, CV2) splits.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import type { Either } from "../../spec/either.ts";
import { join } from "node:path";
import { createRng, shuffle } from "../loop/rng.ts";
import { type ClipRecord, type ClipTable, SMARTHOME_CV_CLASSES } from "./smarthome.ts";
// ---------------------------------------------------------------------------
// Protocols

/**
 * Which clips a set takes: those whose subject is in `subjects` and whose
 * camera is in `cameras`; `null` accepts any.
 *
 * @example
 * ```ts
 * import type { ClipFilter } from "./smarthome_protocols.ts";
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
 * import type { ValidationSplit } from "./smarthome_protocols.ts";
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
 * import { PROTOCOLS, type Protocol } from "./smarthome_protocols.ts";
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
 * import { PROTOCOLS } from "./smarthome_protocols.ts";
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
// Splitting

/**
 * The clips of one protocol, labels renumbered to the protocol's classes.
 *
 * @example
 * ```ts
 * import type { ClipSplit } from "./smarthome_protocols.ts";
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
 * import { PROTOCOLS, splitClips } from "./smarthome_protocols.ts";
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

/**
 * Clips per class, by label.
 *
 * @example
 * ```ts
 * import { classCounts } from "./smarthome_protocols.ts";
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
