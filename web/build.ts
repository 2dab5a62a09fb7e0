/**
 * Build the browser bundle: `mod.ts` (the library) and `web/app.ts` (the demo
 * page's script), bundled for the browser by `deno bundle` (esbuild) with
 * code splitting, so the page runs the very chunks `mod.js` exports and the
 * tfjs backends stay lazy chunks of their own (a page that only uses wasm
 * never downloads the cpu backend).
 *
 * Output, in `web/dist/` by default (gitignored; rebuilt, never committed):
 * `mod.js` (mod.ts for the browser), `web/app.js` (the page), shared
 * `chunk-*.js` / `dist-*.js` files and their source maps.
 *
 * `deno task bundle` runs this; `deno task serve` runs it before serving.
 * The `.wasm` binaries are not copied: `web/serve.ts` serves them from the
 * installed tfjs-backend-wasm package.
 *
 * Exit status: 0 built, 1 the bundler failed (its message on stderr).
 *
 * @example Build into a folder of your own
 * ```ts ignore
 * import { buildBundle } from "./build.ts";
 * const built = await buildBundle({ outDir: await Deno.makeTempDir() });
 * if (built._tag === "Left") throw new Error(built.left.message);
 * console.log(built.right.app, built.right.bytes);
 * ```
 *
 * @module
 */
import { type Either, left, right } from "fp-ts/lib/Either.js";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { describeError } from "../mod.ts";

const root = new URL("../", import.meta.url);

/** The default output folder, `web/dist/`. */
export const DEFAULT_DIST: string = new URL("web/dist/", root).pathname;

/** Options of {@linkcode buildBundle}. */
export interface BuildOptions {
  /** Output folder (default `web/dist/`); emptied first. */
  readonly outDir?: string;
  /** Minify (default false: readable output with source maps). */
  readonly minify?: boolean;
}

/** What {@linkcode buildBundle} wrote. */
export interface Built {
  /** The output folder. */
  readonly outDir: string;
  /** The library entry, `mod.js`, as a path inside `outDir`. */
  readonly mod: string;
  /** The page entry, `web/app.js`, as a path inside `outDir`. */
  readonly app: string;
  /** Total bytes of the JavaScript written (source maps excluded). */
  readonly bytes: number;
  /** Wall time of the bundler, ms. */
  readonly ms: number;
}

/** The bundler failed; `message` holds its output. */
export interface BuildError {
  /** Discriminant. */
  readonly _tag: "BuildError";
  /** What failed, with the bundler's own words. */
  readonly message: string;
}

const fail = (message: string): Either<BuildError, never> => left({ _tag: "BuildError", message });

/** The JavaScript files under `dir` and their sizes. */
const jsFiles = async (dir: string, prefix = ""): Promise<{ path: string; size: number }[]> => {
  const out: { path: string; size: number }[] = [];
  for await (const e of Deno.readDir(dir)) {
    const rel = prefix + e.name;
    if (e.isDirectory) out.push(...await jsFiles(`${dir}/${e.name}`, `${rel}/`));
    else if (e.name.endsWith(".js")) {
      out.push({ path: rel, size: (await Deno.stat(`${dir}/${e.name}`)).size });
    }
  }
  return out;
};

/**
 * Empty `dir` for a fresh build (old chunks have other hashes and would pile
 * up), but only when it is missing, empty or an earlier bundle (has `mod.js`):
 * `--out .` must not wipe a folder by mistake.
 */
const emptyBundleDir = async (dir: string): Promise<Either<BuildError, void>> => {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) names.push(e.name);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return right(undefined);
    return fail(`cannot read the output folder ${dir}: ${describeError(e)}`);
  }
  if (names.length > 0 && !names.includes("mod.js")) {
    return fail(
      `refusing to empty ${dir}: it is not empty and holds no earlier bundle (mod.js); ` +
        `pick an empty or new folder`,
    );
  }
  await Deno.remove(dir, { recursive: true });
  return right(undefined);
};

/**
 * Bundle `mod.ts` and `web/app.ts` for the browser into `opts.outDir`
 * (emptied first), with the Deno running this script.
 */
export const buildBundle = async (opts: BuildOptions = {}): Promise<Either<BuildError, Built>> => {
  const outDir = opts.outDir ?? DEFAULT_DIST;
  const emptied = await emptyBundleDir(outDir);
  if (emptied._tag === "Left") return emptied;
  const args = [
    "bundle",
    "--quiet",
    "--platform=browser",
    "--format=esm",
    "--code-splitting",
    "--sourcemap=linked",
    ...(opts.minify === true ? ["--minify"] : []),
    "--outdir",
    outDir,
    "mod.ts",
    "web/app.ts",
  ];
  const t0 = performance.now();
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(Deno.execPath(), {
      args,
      cwd: root.pathname,
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    return fail(`could not run ${Deno.execPath()} bundle: ${describeError(e)}`);
  }
  const ms = performance.now() - t0;
  if (!out.success) {
    const said = new TextDecoder().decode(out.stderr).trim();
    return fail(`deno ${args.join(" ")} failed (exit ${out.code}):\n${said}`);
  }
  const files = await jsFiles(outDir);
  const names = new Set(files.map((f) => f.path));
  for (const entry of ["mod.js", "web/app.js"]) {
    if (!names.has(entry)) {
      return fail(`the bundler wrote no ${entry} in ${outDir} (it wrote ${[...names].join(", ")})`);
    }
  }
  const bytes = files.reduce((s, f) => s + f.size, 0);
  return right({ outDir, mod: "mod.js", app: "web/app.js", bytes, ms });
};

/**
 * A web command's flags (`parseArgs`, strict, no positionals). A bad flag is
 * printed as `command: reason`, then `usage` when given, and gives `null`
 * (the command exits with 2).
 */
export const parseFlags = <O extends NonNullable<ParseArgsConfig["options"]>>(
  command: string,
  argv: readonly string[],
  options: O,
  usage?: string,
) => {
  try {
    return parseArgs({ args: [...argv], options }).values;
  } catch (e) {
    console.error(`${command}: ${describeError(e)}${usage === undefined ? "" : `\n\n${usage}`}`);
    return null;
  }
};

/** `deno task bundle [--minify] [--out DIR]`: build and report sizes; the exit status. */
export const main = async (argv: readonly string[]): Promise<number> => {
  const values = parseFlags("bundle", argv, {
    minify: { type: "boolean" },
    out: { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (values === null) return 2;
  if (values.help) {
    console.log("deno task bundle [--minify] [--out DIR]   (default DIR: web/dist/)");
    return 0;
  }
  const built = await buildBundle({
    minify: values.minify ?? false,
    ...(values.out !== undefined ? { outDir: values.out } : {}),
  });
  if (built._tag === "Left") {
    console.error(built.left.message);
    return 1;
  }
  const b = built.right;
  console.log(
    `bundled mod.ts and web/app.ts into ${b.outDir} ` +
      `(${(b.bytes / 1e6).toFixed(2)} MB of JavaScript, ${Math.round(b.ms)} ms)`,
  );
  return 0;
};

if (import.meta.main) Deno.exit(await main(Deno.args));
