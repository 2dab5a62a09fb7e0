/**
 * The demo page's generation speed in headless Chromium, on a model of the
 * reference size (the reference CRT, randomly initialised: V = 10,000,
 * 7.2 M parameters), float32 and int8 model files: what a user of the page
 * sees, in tokens/s (steady state, from the page's own `#speed`), with the
 * backend and the kernel build the page reports.
 *
 * `deno run -A bench/browser_bench.ts [--root DIR] [--tokens 64] [--runs 3]`
 * serves the page of the checkout at `--root` (default: this one) with
 * `deno task serve`, so two checkouts can be compared on one machine (e.g. a
 * clone of an older commit). Needs Debian's Chromium (`CRT_CHROMIUM` for
 * another binary) and playwright-core; prints one line per model file.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { compile, encodeModelFile, referenceCrt, startBackend } from "../mod.ts";
import { flattenParams } from "../core/params.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "../tests/_browser.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    root: { type: "string" },
    tokens: { type: "string", default: "64" },
    runs: { type: "string", default: "3" },
    port: { type: "string", default: "8765" },
  },
});
const root = values.root ?? new URL("../", import.meta.url).pathname;
const tokens = Number(values.tokens), runs = Number(values.runs), port = Number(values.port);

// Reference-size model files of random weights, written where the server reads them.
await startBackend({ backend: "cpu" });
const spec = { ...referenceCrt, dropout: 0 };
const program = compile(spec);
if (program._tag === "Left") throw new Error(program.left.message);
const flat = flattenParams(program.right.init(1));
const params = Object.fromEntries(
  Object.entries(flat).map((
    [k, t],
  ) => [k, { shape: [...t.shape], data: Float32Array.from(t.dataSync() as Float32Array) }]),
);
const vocab = Array.from({ length: spec.vocabSize }, (_, i) => (i === 0 ? "<eos>" : `w${i}`));
const dir = await Deno.makeTempDir({ prefix: "crt-browser-bench-" });
const files = { "reference-f32.crtm": false, "reference-int8.crtm": true };
for (const [name, int8] of Object.entries(files)) {
  const bytes = await encodeModelFile({ spec, vocab, params, meta: { note: "random" } }, { int8 });
  await Deno.writeFile(`${dir}/${name}`, bytes);
}

const server = new Deno.Command(Deno.execPath(), {
  args: [
    "task",
    "serve",
    "--port",
    String(port),
    ...Object.keys(files).flatMap((n) => ["--model", `${dir}/${n}`]),
  ],
  cwd: root,
  stdout: "piped",
  stderr: "piped",
}).spawn();
const { chromium } = await import("playwright-core");
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: [...CHROMIUM_ARGS],
});
try {
  const base = `http://127.0.0.1:${port}/`;
  for (let i = 0; i < 100; i++) {
    const up = await fetch(base).then((r) => (r.body?.cancel(), r.ok)).catch(() => false);
    if (up) break;
    if (i === 99) throw new Error(`the page did not come up at ${base}`);
    await new Promise((r) => setTimeout(r, 300));
  }
  for (const name of Object.keys(files)) {
    const page = await browser.newPage();
    await page.goto(`${base}?model=/models/${name}`);
    await page.waitForSelector('body[data-state="ready"]', { timeout: 120_000 });
    const text = async (id: string) => (await page.textContent(`#${id}`))?.trim() ?? "?";
    await page.fill("#max-tokens", String(tokens));
    await page.fill("#temperature", "0.8");
    const speeds: number[] = [];
    for (let r = 0; r < runs; r++) {
      await page.fill("#seed", String(r + 1));
      await page.fill("#prompt", `w${r + 2} w${r + 3} w5`);
      await page.waitForSelector(`#continuation[data-generations="${r + 1}"]`, {
        timeout: 300_000,
      });
      speeds.push(Number(await page.getAttribute("#speed", "data-tokens-per-second")));
    }
    speeds.sort((a, b) => a - b);
    const kernels = (await page.$("#backend-kernels")) === null
      ? "(not shown)"
      : await text("backend-kernels");
    console.log(
      `${name}: ${speeds[Math.floor(speeds.length / 2)].toFixed(1)} tokens/s (median of ${runs}, ` +
        `${tokens} tokens each; ${speeds.map((s) => s.toFixed(1)).join(", ")}); backend ` +
        `${await text("backend-name")}, SIMD ${await text("backend-simd")}, matmul ` +
        `${await text("backend-matmul")}, kernels ${kernels}`,
    );
    await page.close();
  }
} finally {
  await browser.close();
  server.kill("SIGTERM");
  await server.output();
  await Deno.remove(dir, { recursive: true });
}
