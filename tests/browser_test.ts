/**
 * The browser demo end to end, in headless Chromium: build the bundle
 * (`web/build.ts`), serve it (`web/serve.ts`) with a model file made here —
 * a randomly initialised tiny CRT written by `encodeModelFile` — open the
 * page, type a prompt, and check that the page generates the continuation
 * Deno computes from the same file, on the wasm backend with the portable
 * matmul (a browser has no FFI); that it follows further typing, loads an
 * int8 file from the file picker, and reports bad model files.
 * Saves a screenshot to `.ci/out/browser.png`.
 *
 * Chromium is Debian's (`apt-get install chromium`, which `.ci/run` does),
 * driven by playwright-core over a pipe; playwright downloads no browser.
 * Without `/usr/bin/chromium` (or `CRT_CHROMIUM`) the test is skipped with a
 * message, except under CI, where it fails.
 *
 * Run it with `deno task test:browser` (`deno test -A`): playwright-core
 * reads `/proc/sys/fs/binfmt_misc/WSLInterop` when it loads, which Deno
 * allows only under `--allow-all`, so `deno task test` leaves it out and
 * `deno task ok` runs it as a step of its own.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  compile,
  type CrtSpec,
  encodeModelFile,
  generate,
  loadModel,
  referenceCrt,
  startBackend,
} from "../mod.ts";
import { flattenParams } from "../core/params.ts";
import { buildBundle } from "../web/build.ts";
import { startServer } from "../web/serve.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "./_browser.ts";

const root = new URL("../", import.meta.url);
const SCREENSHOT = new URL(".ci/out/browser.png", root).pathname;

const haveChromium = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();
const underCi = (Deno.env.get("CI") ?? "") !== "" && Deno.env.get("CI") !== "false";
if (!haveChromium && !underCi) {
  console.warn(
    `tests/browser_test.ts: SKIPPED, no Chromium at ${CHROMIUM} ` +
      `(apt-get install chromium, or set CRT_CHROMIUM to its path)`,
  );
}

/** playwright-core, or a clear error when this runs without `-A`. */
const loadPlaywright = async (): Promise<typeof import("playwright-core")> => {
  try {
    return await import("playwright-core");
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable) {
      throw new Error(
        "playwright-core needs --allow-all (it reads /proc/sys/fs/binfmt_misc/WSLInterop): " +
          "run `deno task test:browser` or `deno test -A tests/browser_test.ts`",
        { cause: e },
      );
    }
    throw e;
  }
};

/** A tiny CRT over a small word vocabulary: fast to load and to run. */
const VOCAB = [
  "<unk>",
  "the",
  "a",
  "cat",
  "dog",
  "sat",
  "ran",
  "on",
  "under",
  "mat",
  "tree",
  "and",
  "then",
  "slept",
  "barked",
  "quietly",
  "loudly",
  "<eos>",
];
const SPEC: CrtSpec = {
  ...referenceCrt,
  vocabSize: VOCAB.length,
  dModel: 16,
  nHeads: 2,
  dFF: 32,
  nLayers: 1,
  dropout: 0,
  segmentLen: 4,
  memory: { ...referenceCrt.memory, dMemory: 16 },
};
const PROMPT = "the cat sat on";
/** Typed after the first continuation: the page must follow. */
const MORE = " the mat and then";
const MAX_TOKENS = 12;

/**
 * The model file: parameters drawn from seed 1, whose greedy continuations
 * of the two prompts differ (seed 7's fall into the same loop), so the test
 * sees whether the page follows the prompt.
 */
const makeModelFile = (opts: { int8?: boolean } = {}): Promise<Uint8Array> => {
  const program = compile(SPEC);
  if (program._tag === "Left") throw new Error(program.left.message);
  const params = program.right.init(1);
  const flat = flattenParams(params);
  const entries = Object.entries(flat).map(([path, t]) => {
    const data = t.dataSync() as Float32Array;
    return [path, { shape: [...t.shape] as number[], data: Float32Array.from(data) }] as const;
  });
  for (const t of Object.values(flat)) t.dispose();
  return encodeModelFile({
    spec: SPEC,
    vocab: VOCAB,
    params: Object.fromEntries(entries),
    meta: { note: "randomly initialised for tests/browser_test.ts" },
  }, opts);
};

/** Deno's greedy continuation of `prompt` by the model in `bytes`: what the page must show. */
const continuation = async (bytes: Uint8Array, prompt: string) => {
  const model = await loadModel(bytes);
  try {
    return generate(model, prompt, { maxTokens: MAX_TOKENS, temperature: 0 });
  } finally {
    model.dispose();
  }
};

Deno.test({
  name: "web: the page loads a model file, generates as you type and shows its backend",
  ignore: !haveChromium && !underCi,
  // playwright-core keeps a pipe and timers of its own between calls.
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  assert.ok(
    haveChromium,
    `no Chromium at ${CHROMIUM}: CI must install it (apt-get install chromium, see .ci/run)`,
  );
  const work = await Deno.makeTempDir({ prefix: "crt-browser-" });
  const cleanups: (() => Promise<unknown>)[] = [() => Deno.remove(work, { recursive: true })];
  try {
    // What Deno makes of the same file: the page must show exactly this.
    const started = await startBackend({ matmul: "portable" });
    if (started._tag === "Left") throw started.left;
    const bytes = await makeModelFile();
    await Deno.writeFile(`${work}/tiny.crtm`, bytes);
    const expected = await continuation(bytes, PROMPT);
    assert.equal(expected.ids.length, MAX_TOKENS);
    const expectedMore = await continuation(bytes, PROMPT + MORE);

    const built = await buildBundle({ outDir: `${work}/dist` });
    if (built._tag === "Left") throw new Error(built.left.message);
    const served = await startServer({
      port: 0,
      distDir: built.right.outDir,
      models: [`${work}/tiny.crtm`],
    });
    if (served._tag === "Left") throw new Error(served.left.message);
    cleanups.unshift(served.right.close);

    const { chromium } = await loadPlaywright();
    const context = await chromium.launchPersistentContext(`${work}/profile`, {
      executablePath: CHROMIUM,
      headless: true,
      args: ["--headless", ...CHROMIUM_ARGS],
    });
    cleanups.unshift(() => context.close());
    const page = context.pages()[0] ?? await context.newPage();
    const problems: string[] = [];
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error") problems.push(`console error: ${m.text()}`);
    });
    // Everything the page needs comes from our server: no CDN, no other host.
    const elsewhere: string[] = [];
    page.on("request", (r) => {
      if (!r.url().startsWith(served.right.url.href) && !r.url().startsWith("data:")) {
        elsewhere.push(r.url());
      }
    });
    /** Wait for the page's state `s`; an unexpected "error" state fails at once, with its message. */
    const state = async (s: string): Promise<void> => {
      const either = `body[data-state="${s}"], body[data-state="error"]`;
      const reached = await page.waitForSelector(either, { timeout: 30_000 }).then(
        () => page.getAttribute("body", "data-state"),
        () => null,
      );
      if (reached === s) return;
      const now = await page.getAttribute("body", "data-state");
      throw new Error(
        `page never reached "${s}" (now "${now}": ${await page.textContent("#status")})`,
      );
    };

    // Each step needs the one before: stop at the first failure.
    const ok = await t.step(
      "the page starts the wasm backend and loads the served model",
      async () => {
        await page.goto(new URL("?model=/models/tiny.crtm", served.right.url).href);
        await state("ready");
        assert.equal(await page.textContent("#backend-name"), "wasm");
        assert.equal(await page.textContent("#backend-matmul"), "portable");
        // Chromium has relaxed SIMD: the page says which build of our kernels runs (and, relaxed,
        // which int8 dot sequence its start-up timing kept).
        assert.match(
          (await page.textContent("#backend-kernels")) ?? "",
          /^(relaxed \(int8 (dot16|dotadd)\)|simd128)$/,
        );
        assert.match((await page.textContent("#backend-reason")) ?? "", /no Deno FFI/);
        assert.match((await page.textContent("#model-info")) ?? "", /vocabulary18 words/);
        // The whole library loads in a browser: no module of mod.ts touches Deno on import.
        const exported = await page.evaluate("import('/dist/mod.js').then((m) => Object.keys(m))");
        assert.ok(Array.isArray(exported) && exported.includes("compile"), String(exported));
        assert.ok(exported.includes("startBackend") && exported.includes("decodeModelSpec"));
      },
    );

    if (!ok) return;
    const typed = await t.step(
      "typing a prompt generates Deno's continuation and shows tokens/s",
      async () => {
        await page.fill("#max-tokens", String(MAX_TOKENS));
        await page.fill("#temperature", "0");
        const generations = async () =>
          Number(await page.getAttribute("#continuation", "data-generations") ?? 0);
        await page.locator("#prompt").pressSequentially(PROMPT, { delay: 15 });
        await state("done");
        const shown = (await page.textContent("#continuation .new"))?.trim();
        assert.equal(shown, expected.text.trim());
        assert.equal(
          await generations(),
          1,
          "typing is debounced: one continuation, not one a key",
        );
        // Typing on continues the longer prompt.
        await page.locator("#prompt").pressSequentially(MORE, { delay: 15 });
        await page.waitForSelector('#continuation[data-generations="2"]', { timeout: 30_000 });
        await state("done");
        const more = (await page.textContent("#continuation .new"))?.trim();
        assert.equal(more, expectedMore.text.trim());
        assert.notEqual(more, shown);
        const speed = Number(await page.getAttribute("#speed", "data-tokens-per-second"));
        assert.ok(speed > 0, `tokens/s shown: ${await page.textContent("#speed")}`);
        assert.match((await page.textContent("#speed")) ?? "", /tokens\/s/);
        await Deno.mkdir(new URL(".ci/out/", root), { recursive: true });
        await page.screenshot({ path: SCREENSHOT, fullPage: true });
      },
    );

    if (!typed) return;
    await t.step("an int8 file from the file picker loads and matches Deno", async () => {
      const int8 = await makeModelFile({ int8: true });
      const want = await continuation(int8, PROMPT + MORE);
      await page.setInputFiles("#model-file", {
        name: "tiny-int8.crtm",
        mimeType: "application/octet-stream",
        buffer: Buffer.from(int8),
      });
      await page.waitForSelector('#continuation[data-generations="3"]', { timeout: 30_000 });
      await state("done");
      assert.match((await page.textContent("#model-info")) ?? "", /weightsint8/);
      assert.equal((await page.textContent("#continuation .new"))?.trim(), want.text.trim());
    });

    await t.step("a missing or corrupt model file is reported, not thrown", async () => {
      await page.fill("#model-url", "/models/missing.crtm");
      await page.click("#model-url-form button");
      await state("error");
      assert.match((await page.textContent("#status")) ?? "", /missing\.crtm.*404/);
      await page.setInputFiles("#model-file", {
        name: "junk.crtm",
        mimeType: "application/octet-stream",
        buffer: Buffer.from("not a model file"),
      });
      await page.waitForSelector('#status:has-text("Could not load junk.crtm")', {
        timeout: 30_000,
      });
      await state("error");
      assert.match((await page.textContent("#status")) ?? "", /Could not load junk\.crtm: \S/);
    });

    // The 404 of the missing file is the one console error the page should have logged.
    assert.deepEqual(
      problems.filter((p) => !/status of 404/.test(p)),
      [],
      "the page logged errors",
    );
    assert.deepEqual(elsewhere, [], "the page fetched from other hosts");
  } finally {
    for (const c of cleanups) await c().catch(() => {});
  }
});
