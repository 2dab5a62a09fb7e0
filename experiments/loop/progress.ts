/**
 * A progress line on stderr: step/total, loss, tokens/s and ETA. On a
 * terminal it rewrites one line in place; otherwise (CI logs, files) it prints
 * a full line every few percent. {@linkcode formatProgress} is the pure part.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createProgress } from "./progress.ts";
 * const lines: string[] = [];
 * const bar = createProgress({ total: 4, label: "train", isTty: false, write: (s) => lines.push(s) });
 * for (let step = 1; step <= 4; step++) bar.update({ step, loss: 5 - step, tokens: 1400 });
 * bar.done();
 * assert(lines.at(-1)?.includes("4/4") === true);
 * ```
 *
 * @module
 */

/**
 * What one progress line shows. `null` fields are not known yet.
 *
 * @example
 * ```ts
 * import { formatProgress, type ProgressSnapshot } from "./progress.ts";
 * const s: ProgressSnapshot = { step: 1, total: 2, loss: null, tokensPerSec: null, etaMs: null };
 * console.log(formatProgress(s));
 * ```
 */
export interface ProgressSnapshot {
  /** Shown first, e.g. `train` or `eval valid`. */
  readonly label?: string;
  /** Steps done. */
  readonly step: number;
  /** Steps in all. */
  readonly total: number;
  /** Latest loss (nats per token). */
  readonly loss: number | null;
  /** Recent throughput. */
  readonly tokensPerSec: number | null;
  /** Estimated time to `total`. */
  readonly etaMs: number | null;
  /** What the rate counts, e.g. `frames`. Default `tok`. */
  readonly unit?: string;
}

/**
 * A duration as `12s`, `4m05s` or `2h07m`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatDuration } from "./progress.ts";
 * assert(formatDuration(245_000) === "4m05s");
 * assert(formatDuration(7_620_000) === "2h07m");
 * ```
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "--";
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

/**
 * A rate with three significant digits and a k/M suffix.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatRate } from "./progress.ts";
 * assert(formatRate(950) === "950");
 * assert(formatRate(12_345) === "12.3k");
 * assert(formatRate(1_200_000) === "1.20M");
 * ```
 */
export function formatRate(x: number): string {
  if (!Number.isFinite(x) || x < 0) return "--";
  // Thresholds at 999.5 so that rounding never shows "1000k".
  if (x >= 999.5e3) return `${(x / 1e6).toPrecision(3)}M`;
  if (x >= 999.5) return `${(x / 1e3).toPrecision(3)}k`;
  return x.toPrecision(3);
}

/**
 * One progress line (no newline or carriage return). Pure.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatProgress } from "./progress.ts";
 * const line = formatProgress({
 *   label: "train", step: 250, total: 1000, loss: 5.4321, tokensPerSec: 12_345, etaMs: 61_000,
 * }, { barWidth: 10 });
 * assert.equal(line, "train [##--------]   250/1000   25.0%  loss 5.432  12.3k tok/s  ETA 1m01s");
 * ```
 */
export function formatProgress(s: ProgressSnapshot, opts: { barWidth?: number } = {}): string {
  const width = opts.barWidth ?? 20;
  const frac = s.total > 0 ? Math.min(1, Math.max(0, s.step / s.total)) : 1;
  const filled = Math.floor(frac * width);
  const bar = `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`;
  const totalStr = String(s.total);
  const parts = [
    `${s.label ? `${s.label} ` : ""}${bar}`,
    `${String(s.step).padStart(totalStr.length)}/${totalStr}`,
    `${(frac * 100).toFixed(1).padStart(5)}%`,
    `loss ${s.loss === null ? "--" : Number.isFinite(s.loss) ? s.loss.toFixed(3) : String(s.loss)}`,
    `${s.tokensPerSec === null ? "--" : formatRate(s.tokensPerSec)} ${s.unit ?? "tok"}/s`,
    `ETA ${s.etaMs === null ? "--" : formatDuration(s.etaMs)}`,
  ];
  return parts.join("  ");
}

/**
 * A live progress reporter; see {@linkcode createProgress}.
 *
 * @example
 * ```ts
 * import { createProgress, type Progress } from "./progress.ts";
 * const bar: Progress = createProgress({ total: 1, isTty: false, write: () => {} });
 * bar.update({ step: 1, loss: 5, tokens: 140 });
 * bar.done();
 * ```
 */
export interface Progress {
  /** Report that `step` steps are done, `tokens` of them since the previous update. */
  update(u: { readonly step: number; readonly loss?: number; readonly tokens: number }): void;
  /** Finish the line (prints the last state if it was not printed yet). */
  done(): void;
}

/**
 * Options for {@linkcode createProgress}.
 *
 * @example
 * ```ts
 * import type { ProgressOptions } from "./progress.ts";
 * const opts: ProgressOptions = { total: 1000, label: "train", everyPercent: 5 };
 * ```
 */
export interface ProgressOptions {
  /** Steps in all. */
  readonly total: number;
  /** Shown first on each line. */
  readonly label?: string;
  /** Default: whether stderr is a terminal. */
  readonly isTty?: boolean;
  /** Default: synchronous write to stderr. */
  readonly write?: (s: string) => void;
  /** Clock in ms; default `performance.now`. */
  readonly now?: () => number;
  /** Not a terminal: print a line each time progress crosses a multiple of this. Default 10 (%). */
  readonly everyPercent?: number;
  /** Terminal: redraw at most this often. Default 100 ms. */
  readonly minIntervalMs?: number;
  /** What `tokens` in updates count, shown in the rate (`frames/s`). Default `tok`. */
  readonly unit?: string;
}

/** Exponential moving average weight of the newest measurement. */
const SMOOTHING = 0.2;

/**
 * A progress reporter. Rates and ETA are exponential moving averages over
 * updates; the first measurement (which includes compilation) is replaced
 * by the second rather than averaged in.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createProgress } from "./progress.ts";
 * let t = 0;
 * const out: string[] = [];
 * const bar = createProgress({ total: 10, isTty: true, write: (s) => out.push(s), now: () => t });
 * t = 1000;
 * bar.update({ step: 1, loss: 6.9, tokens: 700 });
 * assert(out[0].startsWith("\r") && out[0].includes("700 tok/s") && out[0].includes("ETA 9s"));
 * ```
 */
export function createProgress(opts: ProgressOptions): Progress {
  const now = opts.now ?? (() => performance.now());
  const write = opts.write ?? ((s: string) => {
    const bytes = new TextEncoder().encode(s);
    for (let done = 0; done < bytes.length;) done += Deno.stderr.writeSync(bytes.subarray(done));
  });
  const isTty = opts.isTty ?? Deno.stderr.isTerminal();
  const every = opts.everyPercent ?? 10;
  const minInterval = opts.minIntervalMs ?? 100;

  let lastTime = now();
  let lastStep = 0;
  let samples = 0;
  let msPerStep: number | null = null;
  let tokPerSec: number | null = null;
  let loss: number | null = null;
  let step = 0;
  let lastDrawn = -Infinity;
  let lastBucket = 0;
  let printedStep = -1;
  let finished = false;

  const line = (): string =>
    formatProgress({
      label: opts.label,
      step,
      total: opts.total,
      loss,
      tokensPerSec: tokPerSec,
      etaMs: msPerStep === null ? null : Math.max(0, opts.total - step) * msPerStep,
      ...(opts.unit === undefined ? {} : { unit: opts.unit }),
    });
  const draw = (t: number) => {
    write(isTty ? `\r${line()}\x1b[K` : `${line()}\n`);
    lastDrawn = t;
    printedStep = step;
  };

  return {
    update(u) {
      const t = now();
      const dt = t - lastTime;
      const dSteps = u.step - lastStep;
      if (dt > 0 && dSteps > 0) {
        const perStep = dt / dSteps;
        const rate = (u.tokens / dt) * 1000;
        // The first measurement includes start-up (compilation, warm-up): it
        // stands only until the second one replaces it.
        const fresh = samples < 2;
        msPerStep = fresh || msPerStep === null
          ? perStep
          : msPerStep + SMOOTHING * (perStep - msPerStep);
        tokPerSec = fresh || tokPerSec === null ? rate : tokPerSec + SMOOTHING * (rate - tokPerSec);
        samples++;
      }
      lastTime = t;
      lastStep = u.step;
      step = u.step;
      if (u.loss !== undefined) loss = u.loss;
      const last = step >= opts.total;
      if (isTty) {
        if (last || t - lastDrawn >= minInterval) draw(t);
      } else {
        const bucket = opts.total > 0 ? Math.floor((100 * step) / opts.total / every) : 0;
        if (last || bucket > lastBucket) {
          lastBucket = bucket;
          draw(t);
        }
      }
    },
    done() {
      if (finished) return;
      finished = true;
      if (printedStep !== step) draw(now());
      if (isTty) write("\n");
    },
  };
}
