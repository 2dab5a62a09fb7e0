/**
 * The report of `bench/peers.ts`: the header, the parity of the models, the
 * checks, the ratio table, our kernel calls and the spread of every side,
 * and the profiles of `--profile`.
 *
 * @module
 */
import { cpuModel, describeLoad, type Load } from "../_load.ts";
import { formatTable } from "../_table.ts";
import type { Cell, Options, PeerRow } from "../peers.ts";
import { type Cast, type Peer, sleep } from "./_cast.ts";
import { median, type Reply } from "./_protocol.ts";
import { ORT_BATCH } from "./_setup.ts";

const fmt = (x: number, digits = 0): string =>
  x.toLocaleString("en", { minimumFractionDigits: digits, maximumFractionDigits: digits });

const table = (header: string[], rows: string[][], right: boolean[]): string =>
  formatTable(header, rows, (i) => right[i]);

/** Every field of an object as `key=value`, so that fields added later show up too. */
const fields = (x: unknown): string =>
  x !== null && typeof x === "object"
    ? Object.entries(x).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
      .join(" ")
    : String(x);

/** Largest |logit| difference onnxruntime may show against PyTorch and still be the same graph. */
const ORT_TOLERANCE = 1e-4;

/** The checks of the run: rows of a table, and whether every one passed. */
export const checks = (procs: readonly Peer[]): { rows: string[][]; ok: boolean } => {
  const rows: string[][] = [];
  let ok = true;
  for (const p of procs) {
    for (const m of p.models) {
      if (typeof m.kv_check_max_abs === "number") {
        const pass = m.kv_check_max_abs < ORT_TOLERANCE;
        ok &&= pass;
        rows.push([
          p.name,
          String(m.segmentLen),
          `${String(m.variant)} stream = segment graph (logits, new memory)`,
          m.kv_check_max_abs.toExponential(1),
          pass ? "ok" : "FAILS",
        ]);
      }
      if (typeof m.check_logits_max_abs_diff === "number") {
        const worst = Math.max(m.check_logits_max_abs_diff, Number(m.check_memory_max_abs_diff));
        const pass = worst < ORT_TOLERANCE;
        ok &&= pass;
        rows.push([
          p.name,
          String(m.segmentLen),
          `ONNX graph = PyTorch, B = ${ORT_BATCH} (logits up to ${
            Number(m.check_logits_max_abs).toFixed(2)
          } in size; new memory)`,
          worst.toExponential(1),
          pass ? "ok" : "FAILS",
        ]);
      }
    }
  }
  return { rows, ok };
};

/** Print the report of a run (everything but `--json`'s rows) to stdout. */
export const printReport = (
  o: Options,
  cast: Cast,
  cells: readonly Cell[],
  rows: readonly PeerRow[],
  load: { before: Load | null; during: Load | null; loadavg: number[] },
): void => {
  const { procs, sides } = cast;
  console.log("# bench:peers: the reference CRT, ours against the runtimes a user would pick");
  console.log(
    `# machine: ${cpuModel()}, ${navigator.hardwareConcurrency} logical cores; load average ` +
      `${load.loadavg.map((x) => x.toFixed(2)).join(" ")} at the start`,
  );
  console.log(
    `# rest of the machine (cores): ${describeLoad(load.before)} in the 2 s before the run, ` +
      `${describeLoad(load.during)} during it; rounds it disturbed (> ${o.busyCores} cores) ` +
      `are rerun, up to ${o.extraRounds} per cell`,
  );
  for (const p of procs.filter((p) => p.name.startsWith("ours"))) {
    const r = p.ready as { backend?: unknown } | null;
    console.log(`# ${p.name} backend: ${fields(r?.backend)}`);
  }
  const files = new Map<string, number>();
  for (const p of procs) {
    for (const m of p.models) {
      if (typeof m.file_bytes === "number") files.set(String(m.weights), m.file_bytes);
    }
  }
  if (files.size > 0) {
    console.log(
      `# ours stream model files: ${
        [...files].map(([w, b]) => `${w} ${(b / 1e6).toFixed(1)} MB`).join(", ")
      } (encodeModelFile, loadModel)`,
    );
  }
  for (const p of procs.filter((p) => !p.name.startsWith("ours"))) {
    const { event: _, ...rest } = (p.ready ?? {}) as Record<string, unknown>;
    const cores = p.models.filter((m) => typeof m.warm_run_cores === "number")
      .map((m) => `S=${m.segmentLen} ${m.warm_run_cores}`);
    console.log(
      `# ${p.name}: ${fields(rest)}${
        cores.length > 0 ? `; cores busy during a warm run: ${cores.join(", ")}` : ""
      }`,
    );
  }
  console.log(
    `# medians of ${o.steps} steps after ${o.warmup} warm-up, every side alternating; ` +
      `ours ${o.threads} threads on both tiers`,
  );

  const parity = o.segmentLens.map((s) => {
    const of = (prefix: string) =>
      procs.filter((p) => p.name.startsWith(prefix)).flatMap((p) => p.models)
        .find((m) => m.segmentLen === s && typeof m.params === "number");
    return [s, of("ours"), of("PyTorch")] as const;
  }).filter(([, a, b]) => a !== undefined || b !== undefined);
  if (parity.length > 0) {
    console.log("\n## Parity (same model, same matmuls)\n");
    const num = (x: number | undefined, div = 1, digits = 0) =>
      x === undefined ? "-" : fmt(x / div, digits);
    console.log(table(
      ["segmentLen", "ours params", "PyTorch params", "ours MFLOP/token", "PyTorch MFLOP/token"],
      parity.map(([s, a, b]) => [
        String(s),
        num(a?.params),
        num(b?.params),
        num(a?.forward_flops_per_token, 1e6, 3),
        num(b?.forward_flops_per_token, 1e6, 3),
      ]),
      [true, true, true, true, true],
    ));
  }

  const c = checks(procs);
  if (c.rows.length > 0) {
    console.log(`\n## Checks (largest |difference|, tolerance ${ORT_TOLERANCE})\n`);
    console.log(table(
      ["peer", "segmentLen", "what", "max |diff|", "result"],
      c.rows,
      [false, true, false, true, false],
    ));
  }

  console.log(
    "\n## Ratio (ours / peer throughput; above 1 we are faster; kernels: ours per step, " +
      "stream per token; other: cores the rest of the machine used in the cell, busy above " +
      `${o.busyCores})\n`,
  );
  const ms = (x: number | undefined) => (x === undefined ? "" : x.toFixed(2));
  console.log(table(
    [
      "phase",
      "S",
      "tier",
      "weights",
      "peer",
      "threads",
      "how",
      "ours tok/s",
      "peer tok/s",
      "ours ms/tok",
      "peer ms/tok",
      "ratio",
      "kernels",
      "other",
    ],
    rows.map((r) => [
      r.phase,
      String(r.segmentLen),
      r.backend.replace("wasm+", ""),
      r.weights,
      r.peer,
      String(r.peer_threads),
      r.peer_variant ?? "",
      fmt(r.ours_tokens_per_s),
      fmt(r.peer_tokens_per_s),
      ms(r.ours_ms_per_token),
      ms(r.peer_ms_per_token),
      r.ratio.toFixed(2),
      r.ours_kernel_calls === undefined ? "-" : fmt(r.ours_kernel_calls, 1),
      r.other_cores === null
        ? "n/a"
        : `${r.other_cores.toFixed(2)}${r.other_cores > o.busyCores ? " busy" : ""}`,
    ]),
    [false, true, false, false, false, true, false, true, true, true, true, true, true, true],
  ));

  if (o.count) {
    console.log("\n## Kernel calls of ours (tfjs dispatches of one untimed step; top kernels)\n");
    console.log(table(
      ["phase", "S", "side", "per step", "per token", "top kernels"],
      cells.flatMap((cell) =>
        [...cell.results].filter(([s, r]) => s.ours !== undefined && r.kernels !== undefined)
          .map(([s, r]) => [
            cell.phase,
            String(cell.segmentLen),
            s.label,
            fmt(r.kernels!.calls),
            cell.phase === "stream" ? fmt(r.kernels!.calls / r.tokensPerStep, 1) : "-",
            Object.entries(r.kernels!.byName).slice(0, 5).map(([k, n]) => `${k} ${n}`).join(", "),
          ])
      ),
      [false, true, false, true, true, false],
    ));
  }

  console.log(
    "\n## Spread (seconds per step: median [min … max]; stream: ms per token; other: cores " +
      "the rest of the machine used meanwhile; rounds: clean / run)\n",
  );
  console.log(table(
    ["phase", "S", "side", "median [min … max]", "other", "rounds"],
    cells.flatMap(({ phase, segmentLen, results, load, rounds }) =>
      [...results].map(([side, c]) => {
        const sorted = [...c.seconds].sort((a, b) => a - b);
        const show = phase === "stream"
          ? (s: number) => (1000 * s / c.tokensPerStep).toFixed(2)
          : (s: number) => s.toFixed(3);
        return [
          phase,
          String(segmentLen),
          side.label,
          `${show(median(sorted))} [${show(sorted[0])} … ${show(sorted.at(-1)!)}]${
            phase === "stream" ? " ms/tok" : " s"
          }`,
          load === null ? "n/a" : load.otherCores.toFixed(2),
          `${rounds.clean}/${rounds.total}`,
        ];
      })
    ),
    [false, true, false, true, true, true],
  ));
  const sideNames = sides.map((s) => s.label).join(", ");
  console.log(
    `\nsides: ${sideNames}. train: B = 20, windows of 2 segments (one BPTT span), tokens/step ` +
      `= 40·S; infer: B = ${ORT_BATCH}, one segment, logits of every position and the new ` +
      "memory; stream: batch 1, one token per call and its logits, a step is one segment, " +
      `a round 1 untimed and ${o.streamSegments} timed segments back to back, after ` +
      `${o.streamWarmup} warm-up ones; ` +
      "kv = key/value cache (ours through a float32 or int8 model file), recompute = the open " +
      "prefix rerun for every token; matvec = PyTorch's decode products as matrix-vector products. " +
      "pytorch-kvcache rows take the fastest of its variants and thread counts (how, threads).",
  );
};

/** `--profile`: one profiled training step of ours and of PyTorch at the first S, as tables. */
export const printProfiles = async (o: Options, cast: Cast): Promise<void> => {
  const s = o.segmentLens[0];
  const procs = cast.procs.filter((p) =>
    p.name.startsWith("ours") || p.name === `PyTorch ${o.threads}t`
  );
  for (const p of procs) {
    await sleep(o.gapMs);
    const r = await p.request({ phase: "profile", segmentLen: s });
    const rows = r.extra.filter((x): x is Reply & { event: "profile" } => x.event === "profile");
    console.log(
      `\n## Profile of one training step, ${p.name}, S=${s} ${JSON.stringify(r.last)}\n`,
    );
    console.log(table(
      ["kernel / op", "ms", "share", "calls", "largest output"],
      rows.map((x) => [
        x.op,
        x.ms.toFixed(1),
        `${(100 * x.share).toFixed(1)} %`,
        String(x.calls),
        Array.isArray(x.largest_output) ? JSON.stringify(x.largest_output) : "",
      ]),
      [false, true, true, true, false],
    ));
  }
};
