/**
 * A learning-curve chart as a standalone SVG string, with no dependencies:
 * two stacked panels sharing the step axis, train loss on top and valid
 * perplexity below (two panels rather than two y-axes on one, so neither
 * scale is read against the other's gridlines).
 *
 * @example
 * ```ts
 * import { learningCurveSvg } from "./svg.ts";
 * const svg = learningCurveSvg([
 *   { step: 0, trainLoss: 9.2 },
 *   { step: 100, trainLoss: 6.1, validPpl: 480 },
 *   { step: 200, trainLoss: 5.4, validPpl: 260 },
 * ], { title: "ptb-crt" });
 * const file = await Deno.makeTempFile({ suffix: ".svg" });
 * await Deno.writeTextFile(file, svg);
 * await Deno.remove(file);
 * ```
 *
 * @module
 */

/**
 * One logged point. A missing or non-finite value leaves a gap in its curve.
 *
 * @example
 * ```ts
 * import type { CurvePoint } from "./svg.ts";
 * const p: CurvePoint = { step: 500, trainLoss: 5.1, validPpl: 210 };
 * ```
 */
export interface CurvePoint {
  /** Optimizer step (x axis). */
  readonly step: number;
  /** Training loss in nats per token at this step. */
  readonly trainLoss?: number;
  /** Validation perplexity at this step. */
  readonly validPpl?: number;
}

/**
 * Options for {@linkcode learningCurveSvg}.
 *
 * @example
 * ```ts
 * import type { CurveOptions } from "./svg.ts";
 * const opts: CurveOptions = { title: "ptb-crt", width: 900 };
 * ```
 */
export interface CurveOptions {
  /** Shown above the chart (escaped). */
  readonly title?: string;
  /** Pixels. Default 720. */
  readonly width?: number;
  /** Pixels per panel plot area. Default 220. */
  readonly panelHeight?: number;
  /** Label of the lower panel, which plots `validPpl`. Default `valid perplexity`. */
  readonly validLabel?: string;
}

/**
 * About `count` round tick values (1, 2 or 5 × 10^k apart) covering
 * `[lo, hi]`: the first tick ≤ lo, the last ≥ hi.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { niceTicks } from "./svg.ts";
 * assert(niceTicks(0.3, 9.7, 5).join(",") === "0,2,4,6,8,10");
 * ```
 */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
    throw new RangeError("niceTicks: bounds must be finite");
  }
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi === lo) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  // Round the raw spacing to the nearest of 1, 2, 5, 10 on a log scale.
  const err = raw / mag;
  const step = mag *
    (err >= Math.sqrt(50) ? 10 : err >= Math.sqrt(10) ? 5 : err >= Math.sqrt(2) ? 2 : 1);
  const first = Math.floor(lo / step + 1e-9);
  const last = Math.ceil(hi / step - 1e-9);
  const ticks: number[] = [];
  // Multiply rather than accumulate, so ticks carry no float drift.
  for (let i = first; i <= last; i++) ticks.push(roundTo(i * step, step));
  return ticks;
}

function decimalsFor(step: number): number {
  return Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
}

function roundTo(v: number, step: number): number {
  return Number(v.toFixed(decimalsFor(step)));
}

function tickLabel(v: number, step: number): string {
  if (Math.abs(v) >= 1e4 && v % 1000 === 0) return `${v / 1000}k`;
  return v.toFixed(decimalsFor(step));
}

function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function n(v: number): string {
  return String(Math.round(v * 100) / 100);
}

interface Panel {
  readonly label: string;
  readonly color: string;
  readonly series: readonly (readonly [number, number])[][];
}

/**
 * The opening lines of a standalone SVG: the `<svg>` element, a white
 * background and, when there is one, the title centred at baseline `titleY`.
 */
function svgHead(
  width: number,
  height: number,
  title: string | undefined,
  titleY: number,
): string[] {
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
  ];
  if (title) {
    out.push(
      `<text x="${n(width / 2)}" y="${titleY}" text-anchor="middle" font-size="14" ` +
        `font-weight="bold">${escapeXml(title)}</text>`,
    );
  }
  return out;
}

/** Splits points into runs of finite values (a gap wherever a value is missing or not finite). */
function runsOf(
  points: readonly CurvePoint[],
  pick: (p: CurvePoint) => number | undefined,
): [number, number][][] {
  const runs: [number, number][][] = [];
  let run: [number, number][] = [];
  for (const p of points) {
    const y = pick(p);
    if (y !== undefined && Number.isFinite(y) && Number.isFinite(p.step)) {
      run.push([p.step, y]);
    } else if (y !== undefined && run.length > 0) {
      runs.push(run);
      run = [];
    }
  }
  if (run.length > 0) runs.push(run);
  return runs;
}

/**
 * An SVG document plotting train loss and valid perplexity against step.
 * Points are sorted by step; missing values are skipped, non-finite ones
 * (a diverged loss) break the line. Pure.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { learningCurveSvg } from "./svg.ts";
 * const svg = learningCurveSvg([{ step: 1, trainLoss: 7 }, { step: 2, trainLoss: 6, validPpl: 400 }]);
 * assert(svg.startsWith("<svg") && svg.includes("valid perplexity"));
 * ```
 */
export function learningCurveSvg(points: readonly CurvePoint[], opts: CurveOptions = {}): string {
  const width = opts.width ?? 720;
  const ph = opts.panelHeight ?? 220;
  const m = { left: 64, right: 20, top: opts.title ? 40 : 16, gap: 44, bottom: 44 };
  const height = m.top + 2 * ph + m.gap + m.bottom;
  const pw = width - m.left - m.right;
  const sorted = [...points].sort((a, b) => a.step - b.step);
  const panels: Panel[] = [
    { label: "train loss", color: "#1f77b4", series: runsOf(sorted, (p) => p.trainLoss) },
    {
      label: opts.validLabel ?? "valid perplexity",
      color: "#d62728",
      series: runsOf(sorted, (p) => p.validPpl),
    },
  ];
  const steps = panels.flatMap((p) => p.series.flat().map(([x]) => x));
  const xTicks = steps.length > 0 ? niceTicks(Math.min(...steps), Math.max(...steps), 6) : [0, 1];
  const x0 = xTicks[0];
  const x1 = xTicks[xTicks.length - 1];
  const xStep = xTicks.length > 1 ? xTicks[1] - xTicks[0] : 1;
  const sx = (x: number) => m.left + ((x - x0) / (x1 - x0)) * pw;

  const out = svgHead(width, height, opts.title, 24);
  panels.forEach((panel, i) => {
    const top = m.top + i * (ph + m.gap);
    const bottom = top + ph;
    const ys = panel.series.flat().map(([, y]) => y);
    const yTicks = ys.length > 0 ? niceTicks(Math.min(...ys), Math.max(...ys), 5) : [0, 1];
    const y0 = yTicks[0];
    const y1 = yTicks[yTicks.length - 1];
    const yStep = yTicks.length > 1 ? yTicks[1] - yTicks[0] : 1;
    const sy = (y: number) => bottom - ((y - y0) / (y1 - y0)) * ph;
    const id = panel.label.replace(/[^A-Za-z0-9_-]+/g, "-");
    out.push(`<g class="panel" id="${id}">`);
    for (const t of yTicks) {
      const y = n(sy(t));
      out.push(`<line x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#e5e5e5"/>`);
      out.push(`<line x1="${m.left - 4}" y1="${y}" x2="${m.left}" y2="${y}" stroke="#444444"/>`);
      out.push(
        `<text x="${m.left - 7}" y="${y}" text-anchor="end" dominant-baseline="middle">` +
          `${tickLabel(t, yStep)}</text>`,
      );
    }
    // The frame goes over the gridlines.
    out.push(
      `<rect x="${m.left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#888888"/>`,
    );
    for (const t of xTicks) {
      const x = n(sx(t));
      out.push(`<line x1="${x}" y1="${bottom}" x2="${x}" y2="${bottom + 4}" stroke="#444444"/>`);
      out.push(
        `<text x="${x}" y="${bottom + 16}" text-anchor="middle">${tickLabel(t, xStep)}</text>`,
      );
    }
    const cy = n(top + ph / 2);
    out.push(
      `<text x="16" y="${cy}" text-anchor="middle" transform="rotate(-90 16 ${cy})">${
        escapeXml(panel.label)
      }</text>`,
    );
    if (panel.series.length === 0) {
      out.push(
        `<text x="${
          n(m.left + pw / 2)
        }" y="${cy}" text-anchor="middle" fill="#888888">no data</text>`,
      );
    }
    for (const run of panel.series) {
      const pts = run.map(([x, y]) => `${n(sx(x))},${n(sy(y))}`).join(" ");
      out.push(
        `<polyline fill="none" stroke="${panel.color}" stroke-width="1.5" points="${pts}"/>`,
      );
      if (run.length < 50) {
        for (const [x, y] of run) {
          out.push(`<circle cx="${n(sx(x))}" cy="${n(sy(y))}" r="2.5" fill="${panel.color}"/>`);
        }
      }
    }
    out.push(`</g>`);
  });
  out.push(`<text x="${n(m.left + pw / 2)}" y="${height - 8}" text-anchor="middle">step</text>`);
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

/**
 * Options for {@linkcode confusionMatrixSvg}.
 *
 * @example
 * ```ts
 * import type { ConfusionSvgOptions } from "./svg.ts";
 * const opts: ConfusionSvgOptions = { title: "smarthome: test, cross-subject", cell: 18 };
 * ```
 */
export interface ConfusionSvgOptions {
  /** Shown above the matrix (escaped). */
  readonly title?: string;
  /** Pixels per cell. Default 22. */
  readonly cell?: number;
}

/**
 * A confusion matrix as a standalone SVG heatmap: rows are true classes,
 * columns predicted ones; each cell is shaded by its share of the row (the
 * class's recall on the diagonal) and shows its count; each row ends with
 * the class's clip count and accuracy. Pure.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { confusionMatrixSvg } from "./svg.ts";
 * const svg = confusionMatrixSvg([[8, 2], [1, 4]], ["Walk", "Sit<down>"], { title: "test" });
 * assert(svg.startsWith("<svg") && svg.includes("Sit&#60;down&#62;"));
 * ```
 */
export function confusionMatrixSvg(
  m: readonly (readonly number[])[],
  classes: readonly string[],
  opts: ConfusionSvgOptions = {},
): string {
  const c = classes.length;
  if (m.length !== c || m.some((r) => r.length !== c)) {
    throw new RangeError(`confusionMatrixSvg: a ${m.length}-row matrix for ${c} class names`);
  }
  const cell = opts.cell ?? 22;
  const labelW = Math.max(60, 7 * Math.max(...classes.map((s) => s.length)) + 12);
  const top = (opts.title ? 34 : 10) + labelW;
  const left = labelW;
  const right = 110;
  const footer = "predicted class (columns) · true class (rows) · right: clips · accuracy";
  // Wide enough for the title (≈ 8 px a character at 14 px bold) and the footer (≈ 6 px).
  const width = Math.max(
    left + c * cell + right,
    opts.title ? 8 * opts.title.length + 20 : 0,
    6 * footer.length + 20,
  );
  const height = top + c * cell + 40;
  const out = svgHead(width, height, opts.title, 22);
  const fontSize = Math.min(11, Math.max(7, cell * 0.45));
  m.forEach((row, t) => {
    const total = row.reduce((a, b) => a + b, 0);
    const y = top + t * cell;
    out.push(
      `<text x="${left - 6}" y="${n(y + cell / 2)}" text-anchor="end" ` +
        `dominant-baseline="middle">${escapeXml(classes[t])}</text>`,
    );
    row.forEach((count, p) => {
      const share = total > 0 ? count / total : 0;
      const x = left + p * cell;
      // White to dark blue by the row share; the diagonal in green.
      const [r0, g0, b0] = p === t ? [26, 127, 55] : [31, 80, 160];
      const mix = (v: number) => Math.round(255 - share * (255 - v));
      out.push(
        `<rect x="${x}" y="${y}" width="${cell}" height="${cell}" ` +
          `fill="rgb(${mix(r0)},${mix(g0)},${mix(b0)})" stroke="#dddddd"/>`,
      );
      if (count > 0) {
        out.push(
          `<text x="${n(x + cell / 2)}" y="${n(y + cell / 2)}" text-anchor="middle" ` +
            `dominant-baseline="middle" font-size="${n(fontSize)}" ` +
            `fill="${share > 0.5 ? "#ffffff" : "#222222"}">${count}</text>`,
        );
      }
    });
    const acc = total > 0 ? `${(100 * row[t] / total).toFixed(0)} %` : "–";
    out.push(
      `<text x="${left + c * cell + 8}" y="${n(y + cell / 2)}" dominant-baseline="middle">` +
        `${total} · ${acc}</text>`,
    );
  });
  classes.forEach((name, p) => {
    const x = n(left + p * cell + cell / 2);
    const y = top - 6;
    out.push(
      `<text x="${x}" y="${y}" text-anchor="start" dominant-baseline="middle" ` +
        `transform="rotate(-90 ${x} ${y})">${escapeXml(name)}</text>`,
    );
  });
  out.push(`<text x="${n(width / 2)}" y="${height - 12}" text-anchor="middle">${footer}</text>`);
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
