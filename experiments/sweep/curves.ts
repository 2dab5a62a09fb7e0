/**
 * One picture of a sweep: every member's validation perplexity against
 * step, one colour per member, one line per seed.
 *
 * @module
 */
import { niceTicks } from "../io/svg.ts";

/**
 * A member's curves: one run of points per seed.
 *
 * @example
 * ```ts
 * import type { MemberCurves } from "./curves.ts";
 * const c: MemberCurves = { label: "crt-s35", seeds: [[{ step: 100, ppl: 420 }, { step: 200, ppl: 300 }]] };
 * ```
 */
export interface MemberCurves {
  readonly label: string;
  /** Per seed, its validation points in step order. */
  readonly seeds: readonly (readonly { readonly step: number; readonly ppl: number }[])[];
}

/** Colours that stay apart for the colour-blind (Okabe–Ito), then repeat. */
const COLOURS = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#000000"];

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const px = (v: number): string => String(Math.round(v * 10) / 10);

/**
 * An SVG document with every member's validation curves on one log-scale
 * perplexity axis (a legend names the members; each seed is its own line).
 * Points that are not finite are left out. Pure.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sweepCurvesSvg } from "./curves.ts";
 * const svg = sweepCurvesSvg("tiny", [
 *   { label: "a", seeds: [[{ step: 1, ppl: 300 }, { step: 2, ppl: 200 }]] },
 *   { label: "b", seeds: [] },
 * ]);
 * assert(svg.startsWith("<svg") && svg.includes(">a</text>") && svg.includes("b (no curve)"));
 * ```
 */
export function sweepCurvesSvg(title: string, members: readonly MemberCurves[]): string {
  const width = 760, plotH = 360;
  const m = { left: 64, right: 170, top: 40, bottom: 44 };
  const pw = width - m.left - m.right;
  const height = m.top + plotH + m.bottom;
  const clean = members.map((c) => ({
    label: c.label,
    seeds: c.seeds
      .map((run) =>
        run.filter((p) => Number.isFinite(p.step) && Number.isFinite(p.ppl) && p.ppl > 0)
      )
      .filter((run) => run.length > 0),
  }));
  const points = clean.flatMap((c) => c.seeds.flat());
  const xs = points.map((p) => p.step);
  const ys = points.map((p) => Math.log10(p.ppl));
  const xTicks = xs.length > 0 ? niceTicks(Math.min(...xs), Math.max(...xs), 6) : [0, 1];
  const yTicks = ys.length > 0 ? niceTicks(Math.min(...ys), Math.max(...ys), 5) : [1, 3];
  const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]];
  const [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
  const sx = (x: number) => m.left + ((x - x0) / (x1 - x0 || 1)) * pw;
  const sy = (y: number) => m.top + plotH - ((Math.log10(y) - y0) / (y1 - y0 || 1)) * plotH;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${px(m.left + pw / 2)}" y="24" text-anchor="middle" font-size="14" ` +
    `font-weight="bold">${esc(title)}</text>`,
  ];
  for (const t of yTicks) {
    const y = px(m.top + plotH - ((t - y0) / (y1 - y0 || 1)) * plotH);
    out.push(`<line x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(
      `<text x="${m.left - 7}" y="${y}" text-anchor="end" dominant-baseline="middle">` +
        `${Math.round(10 ** t)}</text>`,
    );
  }
  out.push(
    `<rect x="${m.left}" y="${m.top}" width="${pw}" height="${plotH}" fill="none" stroke="#888888"/>`,
  );
  for (const t of xTicks) {
    const x = px(sx(t));
    const bottom = m.top + plotH;
    out.push(`<line x1="${x}" y1="${bottom}" x2="${x}" y2="${bottom + 4}" stroke="#444444"/>`);
    out.push(`<text x="${x}" y="${bottom + 16}" text-anchor="middle">${t}</text>`);
  }
  const cy = px(m.top + plotH / 2);
  out.push(
    `<text x="16" y="${cy}" text-anchor="middle" transform="rotate(-90 16 ${cy})">` +
      `valid perplexity (log scale)</text>`,
  );
  out.push(
    `<text x="${px(m.left + pw / 2)}" y="${height - 8}" text-anchor="middle">step</text>`,
  );
  clean.forEach((c, i) => {
    const colour = COLOURS[i % COLOURS.length];
    for (const run of c.seeds) {
      const pts = run.map((p) => `${px(sx(p.step))},${px(sy(p.ppl))}`).join(" ");
      out.push(`<polyline fill="none" stroke="${colour}" stroke-width="1.5" points="${pts}"/>`);
    }
    const ly = m.top + 10 + i * 18;
    const lx = m.left + pw + 14;
    out.push(
      `<line x1="${lx}" y1="${ly}" x2="${
        lx + 18
      }" y2="${ly}" stroke="${colour}" stroke-width="2"/>`,
    );
    const label = c.seeds.length === 0 ? `${c.label} (no curve)` : c.label;
    out.push(
      `<text x="${lx + 24}" y="${ly}" dominant-baseline="middle">${esc(label)}</text>`,
    );
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}
