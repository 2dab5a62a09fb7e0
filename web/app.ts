/// <reference lib="dom" />
/**
 * The demo page's script (`web/index.html`): starts the WebAssembly backend,
 * loads a model file (from a URL or a file picker) and continues the prompt
 * as you type. Bundled with `mod.ts` by `web/build.ts`; everything it uses
 * comes from the library, so the page runs the same code as Deno does.
 *
 * The page reports its progress in `body[data-state]` — `starting`, `idle`
 * (backend up, no model), `loading`, `ready`, `generating`, `done`, `error` —
 * which the browser test (`tests/browser_test.ts`) waits on.
 *
 * `#continuation[data-generations]` counts the continuations shown and
 * `#speed[data-tokens-per-second]` holds the last speed as a number.
 *
 * Query parameters: `model=URL` loads a model at start; `backend=cpu` runs on
 * the slow JavaScript backend instead, for comparison.
 *
 * Type-checked on its own (`deno check web`, in `deno task check`): its DOM
 * library reference would clash with Deno's stream types in other files.
 *
 * @module
 */
import {
  decodeModelFile,
  describeError,
  generate,
  type LoadedModel,
  loadModel,
  startBackend,
} from "../mod.ts";

/** The element with id `id`, which the page must have. */
const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`web/index.html has no element #${id}`);
  return el as T;
};

const ui = {
  urlForm: $<HTMLFormElement>("model-url-form"),
  url: $<HTMLInputElement>("model-url"),
  served: $<HTMLDataListElement>("served-models"),
  file: $<HTMLInputElement>("model-file"),
  info: $<HTMLDListElement>("model-info"),
  prompt: $<HTMLTextAreaElement>("prompt"),
  maxTokens: $<HTMLInputElement>("max-tokens"),
  temperature: $<HTMLInputElement>("temperature"),
  topK: $<HTMLInputElement>("top-k"),
  seed: $<HTMLInputElement>("seed"),
  output: $<HTMLOutputElement>("continuation"),
  speed: $<HTMLParagraphElement>("speed"),
  backendName: $<HTMLElement>("backend-name"),
  backendSimd: $<HTMLElement>("backend-simd"),
  backendKernels: $<HTMLElement>("backend-kernels"),
  backendMatmul: $<HTMLElement>("backend-matmul"),
  backendReason: $<HTMLElement>("backend-reason"),
  status: $<HTMLParagraphElement>("status"),
};

type PageState = "starting" | "idle" | "loading" | "ready" | "generating" | "done" | "error";

const show = (state: PageState, message: string): void => {
  document.body.dataset.state = state;
  ui.status.textContent = message;
};

/** Pause after the last keystroke before generating, ms. */
const DEBOUNCE_MS = 250;

let model: { loaded: LoadedModel; name: string } | null = null;

// --- model loading ------------------------------------------------------------

const fact = (dl: HTMLDListElement, term: string, value: string): void => {
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  dd.textContent = value;
  dl.append(dt, dd);
};

/** Decode and load a model file's bytes; `name` says where they came from. */
const loadBytes = async (bytes: Uint8Array, name: string): Promise<void> => {
  show("loading", `Loading ${name}…`);
  ui.prompt.disabled = true;
  const t0 = performance.now();
  try {
    const file = await decodeModelFile(bytes);
    const loaded = await loadModel(file);
    model?.loaded.dispose();
    model = { loaded, name };
    const ms = performance.now() - t0;
    const spec = file.spec;
    ui.info.replaceChildren();
    fact(ui.info, "file", `${name} (${(bytes.length / 1024).toFixed(1)} KiB)`);
    fact(ui.info, "model", spec._tag);
    fact(
      ui.info,
      "size",
      `${spec.nLayers} layer(s), dModel ${spec.dModel}, ${spec.nHeads} heads, ` +
        `segments of ${spec.segmentLen} tokens`,
    );
    fact(ui.info, "parameters", loaded.program.paramCount.toLocaleString("en"));
    fact(ui.info, "vocabulary", `${file.vocab.length.toLocaleString("en")} words`);
    fact(ui.info, "weights", file.quantization);
    ui.info.hidden = false;
    ui.prompt.disabled = false;
    show("ready", `Loaded ${name} in ${Math.round(ms)} ms. Type a prompt.`);
    if (ui.prompt.value.trim() !== "") schedule();
  } catch (e) {
    // The model loaded before (if any) stays in use.
    if (model !== null) ui.prompt.disabled = false;
    show("error", `Could not load ${name}: ${describeError(e)}`);
  }
};

const loadUrl = async (url: string): Promise<void> => {
  show("loading", `Fetching ${url}…`);
  let response: Response;
  try {
    response = await fetch(url);
  } catch (e) {
    show("error", `Could not fetch ${url}: ${describeError(e)}`);
    return;
  }
  if (!response.ok) {
    const said = (await response.text()).trim();
    show("error", `Could not fetch ${url}: ${response.status} ${response.statusText}. ${said}`);
    return;
  }
  await loadBytes(new Uint8Array(await response.arrayBuffer()), url);
};

// --- generation ----------------------------------------------------------------

/** A number field's value, or its default when empty or out of range. */
const numberOf = (input: HTMLInputElement, fallback: number): number => {
  const v = input.valueAsNumber;
  const min = input.min === "" ? -Infinity : Number(input.min);
  const max = input.max === "" ? Infinity : Number(input.max);
  return Number.isFinite(v) && v >= min && v <= max ? v : fallback;
};

let timer: ReturnType<typeof setTimeout> | undefined;
/** Continuations shown so far (in `#continuation[data-generations]`, for tests). */
let generations = 0;

/** Generate once typing has paused; a newer keystroke restarts the wait. */
const schedule = (): void => {
  clearTimeout(timer);
  timer = setTimeout(run, DEBOUNCE_MS);
};

const run = (): void => {
  if (model === null) return;
  const prompt = ui.prompt.value;
  if (prompt.trim() === "") {
    ui.output.replaceChildren();
    ui.speed.textContent = "";
    show("ready", "Type a prompt.");
    return;
  }
  const { loaded, name } = model;
  show("generating", "Generating…");
  // Let the status paint before the (synchronous) generation takes the thread.
  setTimeout(() => {
    const maxTokens = Math.round(numberOf(ui.maxTokens, 20));
    const temperature = numberOf(ui.temperature, 0);
    const topK = Math.round(numberOf(ui.topK, 0));
    const seed = Math.round(numberOf(ui.seed, 0));
    try {
      // Token times: the first one includes reading the prompt, the rest are one step each.
      const times: number[] = [];
      const t0 = performance.now();
      const out = generate(loaded, prompt, {
        maxTokens,
        temperature,
        seed,
        ...(topK > 0 ? { topK } : {}),
        onToken: () => times.push(performance.now()),
      });
      const promptSpan = document.createElement("span");
      promptSpan.className = "prompt";
      promptSpan.textContent = prompt.trimEnd();
      const newSpan = document.createElement("span");
      newSpan.className = "new";
      newSpan.textContent = (out.text.startsWith("\n") ? "" : " ") + out.text;
      ui.output.replaceChildren(promptSpan, newSpan);
      const n = out.ids.length;
      const first = (times[0] ?? t0) - t0;
      // Steady-state speed, from the second token on (one token: the whole call).
      const perSecond = n > 1
        ? (n - 1) / ((times[n - 1] - times[0]) / 1000)
        : n / ((performance.now() - t0) / 1000);
      ui.speed.textContent = `${perSecond.toFixed(1)} tokens/s (${n} tokens; the first, ` +
        `after reading ${loaded.encode(prompt).length} prompt tokens, in ${first.toFixed(0)} ms)`;
      ui.speed.dataset.tokensPerSecond = String(perSecond);
      generations++;
      ui.output.dataset.generations = String(generations);
      show("done", `Generated ${n} tokens with ${name}.`);
    } catch (e) {
      show("error", `Generation failed: ${describeError(e)}`);
    }
  }, 0);
};

// --- start-up ------------------------------------------------------------------

const start = async (): Promise<void> => {
  const query = new URLSearchParams(location.search);
  const backend = query.get("backend") === "cpu" ? "cpu" : "wasm";
  // The server serves the installed tfjs-backend-wasm's .wasm files under /wasm/.
  const started = await startBackend({ backend, wasmPaths: new URL("wasm/", location.href).href });
  if (started._tag === "Left") {
    ui.backendName.textContent = "failed";
    show("error", started.left.message);
    return;
  }
  const info = started.right;
  ui.backendName.textContent = info.name;
  ui.backendSimd.textContent = info.simd ? "yes" : "no";
  // Which build of our kernels runs: relaxed SIMD where the browser has it, else SIMD128; and
  // with relaxed SIMD, which int8 dot sequence measured faster here.
  ui.backendKernels.textContent = info.kernels === undefined
    ? "–"
    : info.int8Dot === undefined
    ? info.kernels
    : `${info.kernels} (int8 ${info.int8Dot})`;
  ui.backendMatmul.textContent = info.matmul;
  ui.backendReason.textContent = info.reason ?? "–";
  show("idle", "Backend ready. Load a model file.");

  ui.urlForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const url = ui.url.value.trim();
    if (url === "") show("error", "Enter the URL of a model file first.");
    else void loadUrl(url);
  });
  ui.file.addEventListener("change", async () => {
    const picked = ui.file.files?.[0];
    if (picked !== undefined) {
      await loadBytes(new Uint8Array(await picked.arrayBuffer()), picked.name);
    }
  });
  ui.prompt.addEventListener("input", schedule);
  for (const input of [ui.maxTokens, ui.temperature, ui.topK, ui.seed]) {
    input.addEventListener("change", schedule);
  }

  // The models the server offers, as suggestions for the URL field.
  fetch("models/index.json").then((r) => (r.ok ? r.json() : [])).then((names: unknown) => {
    if (!Array.isArray(names)) return;
    for (const n of names) {
      const option = document.createElement("option");
      option.value = `/models/${encodeURIComponent(String(n))}`;
      ui.served.append(option);
    }
  }).catch(() => {/* a plain static host has no index: suggestions are optional */});

  const initial = query.get("model");
  if (initial !== null) {
    ui.url.value = initial;
    await loadUrl(initial);
  }
};

start().catch((e) => show("error", `The page failed to start: ${describeError(e)}`));
