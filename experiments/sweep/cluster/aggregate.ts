/**
 * A sweep's results over seeds: each member's mean ± standard deviation of
 * validation and test perplexity and of throughput, beside the numbers that
 * do not depend on the seed (segment length, parameters, FLOPs per token
 * with and without the embedding and the output layer), and the markdown
 * table of them. Rows are plain data, one per (member, seed).
 *
 * The standard deviation is the sample one (divided by n − 1), as reported
 * over seeds; with a single seed there is none and the table shows the mean
 * alone.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { aggregateMembers, memberTable, type SeedResult } from "./aggregate.ts";
 * const row = (seed: number, validPpl: number): SeedResult => ({
 *   member: "crt-half", seed, segmentLen: 35, params: 2_500_000,
 *   flopsPerToken: 8_410_000, flopsPerTokenCore: 1_230_000,
 *   validPpl, testPpl: null, tokensPerSecond: 1500,
 * });
 * const members = aggregateMembers([row(1, 170), row(2, 174), row(3, 172)]);
 * assert(members._tag === "Right");
 * assert.equal(members.right[0].validPpl?.mean, 172);
 * assert.equal(members.right[0].validPpl?.sd, 2);
 * assert.match(memberTable(members.right), /\| crt-half \| 35 \| 3 \| .* \| 172\.0 ± 2\.0 \| – \|/);
 * ```
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";

/**
 * One finished run: one member trained with one seed.
 *
 * @example
 * ```ts
 * import type { SeedResult } from "./aggregate.ts";
 * const r: SeedResult = {
 *   member: "crt-half", seed: 1, segmentLen: 35, params: 2_500_000,
 *   flopsPerToken: 8_410_000, flopsPerTokenCore: 1_230_000,
 *   validPpl: 172.4, testPpl: null, tokensPerSecond: 1500,
 * };
 * ```
 */
export interface SeedResult {
  /** The member's label. */
  readonly member: string;
  /** The seed it was trained with. */
  readonly seed: number;
  /** Tokens per segment. */
  readonly segmentLen: number;
  /** Trainable parameters. */
  readonly params: number;
  /** FLOPs per token of a forward pass, everything counted. */
  readonly flopsPerToken: number;
  /**
   * FLOPs per token of a forward pass without the embedding and the output
   * layer: what segment length and memory change, which a large output
   * layer hides in the total.
   */
  readonly flopsPerTokenCore: number;
  /** Validation perplexity; `null` when not measured. */
  readonly validPpl: number | null;
  /** Test perplexity; `null` when not measured (e.g. a withheld test split). */
  readonly testPpl: number | null;
  /** Training throughput. */
  readonly tokensPerSecond: number;
}

/**
 * Mean and sample standard deviation of `n` values.
 *
 * @example
 * ```ts
 * import type { MeanSd } from "./aggregate.ts";
 * const m: MeanSd = { mean: 172, sd: 2, n: 3 };
 * ```
 */
export interface MeanSd {
  readonly mean: number;
  /** Sample standard deviation (n − 1); `null` with fewer than 2 values. */
  readonly sd: number | null;
  /** How many values. */
  readonly n: number;
}

/**
 * Mean and sample standard deviation of `values`; `null` for none. Sums
 * squared deviations from the mean (two passes), which keeps the spread of
 * large, close values that `Σx² − n·mean²` would cancel away.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { meanSd } from "./aggregate.ts";
 * assert.deepEqual(meanSd([2, 4, 6]), { mean: 4, sd: 2, n: 3 });
 * assert.deepEqual(meanSd([5]), { mean: 5, sd: null, n: 1 });
 * assert.equal(meanSd([]), null);
 * ```
 */
export function meanSd(values: readonly number[]): MeanSd | null {
  const n = values.length;
  if (n === 0) return null;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  if (n === 1) return { mean, sd: null, n };
  const ss = values.reduce((a, v) => a + (v - mean) ** 2, 0);
  return { mean, sd: Math.sqrt(ss / (n - 1)), n };
}

/**
 * One member over its seeds.
 *
 * @example
 * ```ts
 * import type { MemberAggregate } from "./aggregate.ts";
 * const line = (m: MemberAggregate) => `${m.member}: ${m.seeds.length} seeds, valid ${m.validPpl?.mean}`;
 * ```
 */
export interface MemberAggregate {
  readonly member: string;
  /** Its seeds, in the order the rows came. */
  readonly seeds: readonly number[];
  readonly segmentLen: number;
  readonly params: number;
  readonly flopsPerToken: number;
  readonly flopsPerTokenCore: number;
  /** Over the seeds that measured it; `null` when none did. */
  readonly validPpl: MeanSd | null;
  /** Over the seeds that measured it; `null` when none did. */
  readonly testPpl: MeanSd | null;
  readonly tokensPerSecond: MeanSd;
}

/**
 * Why rows could not be aggregated.
 *
 * @example
 * ```ts
 * import type { AggregateError } from "./aggregate.ts";
 * const show = (e: AggregateError) => `${e.member}: ${e.message}`;
 * ```
 */
export type AggregateError =
  | {
    /** Two rows for the same member and seed. */
    readonly _tag: "DuplicateSeed";
    readonly member: string;
    readonly seed: number;
    readonly message: string;
  }
  | {
    /** A number that does not depend on the seed differs between a member's seeds. */
    readonly _tag: "InconsistentSeeds";
    readonly member: string;
    /** The field, e.g. `params`. */
    readonly field: string;
    readonly message: string;
  }
  | {
    /** A value is not a finite number (a diverged run belongs out of the table, by name). */
    readonly _tag: "NonFiniteValue";
    readonly member: string;
    readonly seed: number;
    readonly field: string;
    readonly message: string;
  };

const FIXED = ["segmentLen", "params", "flopsPerToken", "flopsPerTokenCore"] as const;
const MEASURED = ["validPpl", "testPpl", "tokensPerSecond"] as const;

/**
 * Groups rows by member (in order of first appearance) and aggregates each
 * over its seeds; refuses duplicate (member, seed) rows, seeds of a member
 * that disagree on what does not depend on the seed, and non-finite values.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { aggregateMembers, type SeedResult } from "./aggregate.ts";
 * const r: SeedResult = {
 *   member: "a", seed: 1, segmentLen: 8, params: 10, flopsPerToken: 20, flopsPerTokenCore: 5,
 *   validPpl: 9, testPpl: null, tokensPerSecond: 100,
 * };
 * const twice = aggregateMembers([r, r]);
 * assert(twice._tag === "Left" && twice.left._tag === "DuplicateSeed");
 * ```
 */
export function aggregateMembers(
  rows: readonly SeedResult[],
): E.Either<AggregateError, MemberAggregate[]> {
  const groups = new Map<string, SeedResult[]>();
  for (const row of rows) {
    for (const field of [...FIXED, ...MEASURED]) {
      const v = row[field];
      if (v !== null && !Number.isFinite(v)) {
        return E.left({
          _tag: "NonFiniteValue",
          member: row.member,
          seed: row.seed,
          field,
          message: `${row.member} seed ${row.seed}: ${field} is ${v}`,
        });
      }
    }
    const group = groups.get(row.member) ?? [];
    if (group.some((r) => r.seed === row.seed)) {
      return E.left({
        _tag: "DuplicateSeed",
        member: row.member,
        seed: row.seed,
        message: `${row.member} seed ${row.seed}: two results`,
      });
    }
    const first = group[0];
    const differs = first === undefined ? undefined : FIXED.find((f) => first[f] !== row[f]);
    if (first !== undefined && differs !== undefined) {
      return E.left({
        _tag: "InconsistentSeeds",
        member: row.member,
        field: differs,
        message: `${row.member}: ${differs} is ${first[differs]} with seed ${first.seed} ` +
          `but ${row[differs]} with seed ${row.seed}`,
      });
    }
    groups.set(row.member, [...group, row]);
  }
  const measured = (group: readonly SeedResult[], f: "validPpl" | "testPpl") =>
    meanSd(group.flatMap((r) => (r[f] === null ? [] : [r[f]])));
  return E.right(
    [...groups.entries()].map(([member, group]) => ({
      member,
      seeds: group.map((r) => r.seed),
      segmentLen: group[0].segmentLen,
      params: group[0].params,
      flopsPerToken: group[0].flopsPerToken,
      flopsPerTokenCore: group[0].flopsPerTokenCore,
      validPpl: measured(group, "validPpl"),
      testPpl: measured(group, "testPpl"),
      // Non-empty group: at least one value.
      tokensPerSecond: meanSd(group.map((r) => r.tokensPerSecond)) as MeanSd,
    })),
  );
}

/**
 * `mean ± sd` with `digits` decimals (`format` for other number styles):
 * the mean alone for one value, `–` for none, and ` (n of N)` when only
 * n of the member's N seeds measured it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatMeanSd } from "./aggregate.ts";
 * assert.equal(formatMeanSd({ mean: 172.04, sd: 1.96, n: 3 }, { digits: 1 }), "172.0 ± 2.0");
 * assert.equal(formatMeanSd({ mean: 172.04, sd: null, n: 1 }, { digits: 1, of: 3 }), "172.0 (1 of 3)");
 * assert.equal(formatMeanSd(null, { digits: 1 }), "–");
 * ```
 */
export function formatMeanSd(
  m: MeanSd | null,
  opts: {
    /** Decimals for mean and sd (ignored when `format` is given). */
    readonly digits?: number;
    /** Number formatting; default `toFixed(digits)`. */
    readonly format?: (n: number) => string;
    /** The member's seed count, to flag values measured by fewer seeds. */
    readonly of?: number;
  },
): string {
  if (m === null) return "–";
  const fmt = opts.format ?? ((n: number) => n.toFixed(opts.digits ?? 1));
  const sd = m.sd === null ? "" : ` ± ${fmt(m.sd)}`;
  const partial = opts.of !== undefined && m.n < opts.of ? ` (${m.n} of ${opts.of})` : "";
  return `${fmt(m.mean)}${sd}${partial}`;
}

const fmtInt = (n: number): string => Math.round(n).toLocaleString("en-US");

/** FLOPs in G, M or k with three significant digits, e.g. `8.41 M`, `123 k`. */
const fmtFlops = (n: number): string => {
  const [div, unit] = n >= 1e9
    ? [1e9, "G"]
    : n >= 1e6
    ? [1e6, "M"]
    : n >= 1e3
    ? [1e3, "k"]
    : [1, ""];
  const v = n / div;
  return `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${unit}`.trimEnd();
};

/** A label safe inside a markdown table cell. */
const cell = (s: string): string => s.replaceAll("|", "\\|").replace(/\s+/g, " ");

/**
 * The markdown table of a sweep's members: segment length, seeds,
 * parameters, forward FLOPs per token with and without the embedding and
 * output layer, valid and test perplexity and training tokens/s, each
 * measured one as mean ± sd over the seeds.
 *
 * @example
 * ```ts
 * import { memberTable } from "./aggregate.ts";
 * console.log(memberTable([]).split("\n")[0]);
 * // | member | segment length | seeds | params | FLOPs/token | FLOPs/token without embedding and output layer | valid ppl | test ppl | tokens/s |
 * ```
 */
export function memberTable(members: readonly MemberAggregate[]): string {
  const head = [
    "| member | segment length | seeds | params | FLOPs/token " +
    "| FLOPs/token without embedding and output layer | valid ppl | test ppl | tokens/s |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  const body = members.map((m) => {
    const of = m.seeds.length;
    return [
      cell(m.member),
      `${m.segmentLen}`,
      `${of}`,
      fmtInt(m.params),
      fmtFlops(m.flopsPerToken),
      fmtFlops(m.flopsPerTokenCore),
      formatMeanSd(m.validPpl, { digits: 1, of }),
      formatMeanSd(m.testPpl, { digits: 1, of }),
      formatMeanSd(m.tokensPerSecond, { format: fmtInt, of }),
    ].join(" | ");
  });
  return [...head, ...body.map((b) => `| ${b} |`)].join("\n") + "\n";
}
