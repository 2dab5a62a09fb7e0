/**
 * `deno task serve [--port 8000] [--host 127.0.0.1] [--model FILE ...]
 * [--no-build] [--minify]`: build the browser bundle (`web/build.ts`) and
 * serve the demo page.
 *
 * What it serves, and nothing else:
 * - `/` — `web/index.html`, and `/style.css`;
 * - `/dist/…` — the bundle (`web/dist/` unless told otherwise);
 * - `/wasm/*.wasm` — the `.wasm` binaries of the installed
 *   tfjs-backend-wasm package, found through the import map (never a CDN),
 *   which the page passes to `startBackend({ wasmPaths })`;
 * - `/models/NAME` — each `--model FILE` by its file name, and
 *   `/models/index.json`, the list of names, which the page offers.
 *
 * Listens on 127.0.0.1 by default. Exit status: 0 after Ctrl-C, 2 bad
 * arguments or a missing model file, 1 the bundle or the server failed.
 *
 * @example Serve a model file from code (port 0: any free port)
 * ```ts ignore
 * import { startServer } from "./serve.ts";
 * const server = await startServer({ port: 0, models: ["runs/run/model.crtm"] });
 * if (server._tag === "Left") throw new Error(server.left.message);
 * console.log(`${server.right.url}?model=/models/model.crtm`);
 * await server.right.close();
 * ```
 *
 * @module
 */
import { type Either, left, right } from "fp-ts/lib/Either.js";
import { basename, resolve, sep } from "node:path";
import { describeError } from "../mod.ts";
import { buildBundle, DEFAULT_DIST, parseFlags } from "./build.ts";

const here = new URL("./", import.meta.url).pathname;

/** Options of {@linkcode startServer}. */
export interface ServeOptions {
  /** Interface to listen on (default 127.0.0.1: this machine only). */
  readonly hostname?: string;
  /** Port (default 8000; 0 picks a free one, see `Served.url`). */
  readonly port?: number;
  /** The bundle folder served under `/dist/` (default `web/dist/`). */
  readonly distDir?: string;
  /** Model files served under `/models/<file name>`. */
  readonly models?: readonly string[];
}

/** A running server. */
export interface Served {
  /** The page's address, e.g. `http://127.0.0.1:8000/`. */
  readonly url: URL;
  /** Stop listening and wait for open requests to finish. */
  close(): Promise<void>;
}

/** The server could not start; `message` says what to fix. */
export interface ServeError {
  /** Discriminant. */
  readonly _tag: "ServeError";
  /** What went wrong, naming the file or port. */
  readonly message: string;
}

const fail = (message: string): Either<ServeError, never> => left({ _tag: "ServeError", message });

const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  // WebAssembly.instantiateStreaming insists on this type.
  ".wasm": "application/wasm",
};

const typeOf = (path: string): string => {
  const dot = path.lastIndexOf(".");
  return (dot >= 0 ? TYPES[path.slice(dot)] : undefined) ?? "application/octet-stream";
};

/** `path` percent-decoded, or null when an escape is malformed (`%zz`, a truncated UTF-8 sequence). */
const decodePath = (path: string): string | null => {
  try {
    return decodeURIComponent(path);
  } catch {
    return null;
  }
};

/**
 * `rel` (a URL path below a route, still percent-encoded) as a file inside
 * `dir`, or null when it would leave `dir` (`..`, an encoded slash).
 */
const inside = (dir: string, rel: string): string | null => {
  const decoded = decodePath(rel);
  if (decoded === null) return null;
  if (decoded.includes("\0") || decoded.includes("\\")) return null;
  const base = resolve(dir);
  const file = resolve(base, `.${sep}${decoded}`);
  return file.startsWith(base + sep) ? file : null;
};

/** The installed tfjs-backend-wasm's `dist/` folder, where its `.wasm` files are. */
export const wasmDistDir = (): string =>
  new URL("./", import.meta.resolve("@tensorflow/tfjs-backend-wasm")).pathname;

const text = (status: number, body: string): Response =>
  new Response(body + "\n", {
    status,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });

const sendFile = async (file: string, head: boolean): Promise<Response> => {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.IsADirectory) {
      return text(404, `not found: ${basename(file)}`);
    }
    throw e;
  }
  return new Response(head ? null : bytes as Uint8Array<ArrayBuffer>, {
    headers: {
      "content-type": typeOf(file),
      "content-length": String(bytes.length),
      // The bundle is rebuilt at every start and model files change: never cache.
      "cache-control": "no-store",
    },
  });
};

/** The request handler: exported for tests that want no socket. */
export const handler = (
  opts: { distDir: string; models: ReadonlyMap<string, string>; wasmDir: string },
) =>
(req: Request): Response | Promise<Response> => {
  if (req.method !== "GET" && req.method !== "HEAD") {
    return new Response("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
  }
  const head = req.method === "HEAD";
  const path = new URL(req.url).pathname;
  // Checked once for every route, so no route can throw a URIError (a 500) on it.
  if (decodePath(path) === null) {
    const shown = path.length > 80 ? `${path.slice(0, 80)}…` : path;
    return text(400, `bad request: malformed percent-escape in the path ${shown}`);
  }
  if (path === "/" || path === "/index.html") return sendFile(`${here}index.html`, head);
  if (path === "/style.css") return sendFile(`${here}style.css`, head);
  if (path.startsWith("/dist/")) {
    const file = inside(opts.distDir, path.slice("/dist/".length));
    return file === null ? text(400, `bad path: ${path}`) : sendFile(file, head);
  }
  if (path.startsWith("/wasm/")) {
    const name = path.slice("/wasm/".length);
    if (!/^[\w.-]+\.wasm$/.test(name)) return text(404, `not found: ${path}`);
    return sendFile(`${opts.wasmDir}${name}`, head);
  }
  if (path === "/models/index.json") {
    return new Response(JSON.stringify([...opts.models.keys()]), {
      headers: { "content-type": TYPES[".json"], "cache-control": "no-store" },
    });
  }
  if (path.startsWith("/models/")) {
    const file = opts.models.get(decodePath(path.slice("/models/".length)) ?? "");
    if (file === undefined) {
      const known = [...opts.models.keys()].join(", ") || "none; pass --model FILE";
      return text(404, `no model ${path} (served models: ${known})`);
    }
    return sendFile(file, head);
  }
  return text(404, `not found: ${path}`);
};

/** Model files by the name they are served under; Left names a missing file or a clash. */
const findModels = async (
  files: readonly string[],
): Promise<Either<ServeError, Map<string, string>>> => {
  const models = new Map<string, string>();
  for (const m of files) {
    const name = basename(m);
    try {
      if (!(await Deno.stat(m)).isFile) return fail(`--model ${m}: not a file`);
    } catch (e) {
      return fail(`--model ${m}: ${describeError(e, { NotFound: "not found" })}`);
    }
    if (models.has(name)) return fail(`--model ${m}: a model named ${name} is served already`);
    models.set(name, resolve(m));
  }
  return right(models);
};

/**
 * Serve the page, the bundle in `opts.distDir`, the installed `.wasm`
 * binaries and `opts.models`. Does not build the bundle (see
 * {@linkcode buildBundle}). Left when a model file is missing, two share a
 * name, or the port is taken.
 */
export const startServer = async (
  opts: ServeOptions = {},
): Promise<Either<ServeError, Served>> => {
  const found = await findModels(opts.models ?? []);
  if (found._tag === "Left") return found;
  const models = found.right;
  const port = opts.port ?? 8000;
  const hostname = opts.hostname ?? "127.0.0.1";
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve(
      { port, hostname, onListen: () => {} },
      handler({
        distDir: opts.distDir ?? DEFAULT_DIST,
        models,
        wasmDir: wasmDistDir(),
      }),
    );
  } catch (e) {
    const why = describeError(e, { AddrInUse: "the port is in use (pick another with --port)" });
    return fail(`cannot listen on ${hostname}:${port}: ${why}`);
  }
  const addr = server.addr;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return right({
    url: new URL(`http://${host}:${addr.port}/`),
    close: () => server.shutdown(),
  });
};

const USAGE =
  `deno task serve [--port 8000] [--host 127.0.0.1] [--model FILE ...] [--no-build] [--minify]

Builds the browser bundle into web/dist/ and serves the demo page.
  --port N        port to listen on (default 8000; 0 = any free port)
  --host NAME     interface (default 127.0.0.1; 0.0.0.0 exposes it to the network)
  --model FILE    a model file (deploy/model_file.ts format) to serve under /models/; repeatable
  --no-build      serve web/dist/ as it is
  --minify        minify the bundle`;

/** The command line; returns the exit status once the server stops. */
export const main = async (argv: readonly string[]): Promise<number> => {
  const values = parseFlags("serve", argv, {
    port: { type: "string" },
    host: { type: "string" },
    model: { type: "string", multiple: true },
    "no-build": { type: "boolean" },
    minify: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  }, USAGE);
  if (values === null) return 2;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const port = values.port === undefined ? 8000 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`serve: --port must be an integer in [0, 65535], got "${values.port}"`);
    return 2;
  }
  // Bad model paths fail before the (slower) build.
  const models = await findModels(values.model ?? []);
  if (models._tag === "Left") {
    console.error(`serve: ${models.left.message}`);
    return 2;
  }
  if (values["no-build"] !== true) {
    console.error("bundling mod.ts and web/app.ts …");
    const built = await buildBundle({ minify: values.minify ?? false });
    if (built._tag === "Left") {
      console.error(built.left.message);
      return 1;
    }
    console.error(
      `bundled ${(built.right.bytes / 1e6).toFixed(2)} MB in ${Math.round(built.right.ms)} ms`,
    );
  }
  const server = await startServer({
    port,
    ...(values.host !== undefined ? { hostname: values.host } : {}),
    models: values.model ?? [],
  });
  if (server._tag === "Left") {
    console.error(`serve: ${server.left.message}`);
    return server.left.message.startsWith("--model") ? 2 : 1;
  }
  const { url, close } = server.right;
  const first = values.model?.[0];
  const page = first === undefined ? url : new URL(`?model=/models/${basename(first)}`, url);
  console.log(`serving the crt demo at ${page} (Ctrl-C stops)`);
  await new Promise<void>((done) => {
    const stop = () => {
      Deno.removeSignalListener("SIGINT", stop);
      done();
    };
    Deno.addSignalListener("SIGINT", stop);
  });
  await close();
  return 0;
};

if (import.meta.main) Deno.exit(await main(Deno.args));
