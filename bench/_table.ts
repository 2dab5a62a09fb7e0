/**
 * The benches' plain-text tables: aligned columns two spaces apart, a dashed
 * rule under the header.
 *
 * @module
 */

/**
 * `header` and `rows` as an aligned table, one line a row; column i is
 * right-aligned where `right(i)`, left-aligned otherwise. The default suits
 * the benches' reports: the first two columns (group, name) left, numbers
 * right.
 *
 * @example
 * ```ts
 * import { formatTable } from "./_table.ts";
 *
 * console.log(formatTable(["group", "bench", "ms"], [["train", "crt", "12"]]));
 * // group  bench  ms
 * // -----  -----  --
 * // train  crt    12
 * ```
 */
export const formatTable = (
  header: readonly string[],
  rows: readonly (readonly string[])[],
  right: (column: number) => boolean = (i) => i >= 2,
): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (right(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ");
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
};
