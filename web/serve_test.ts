/**
 * The demo server: what it serves, with which types, and what it refuses.
 * The page itself runs in tests/browser_test.ts.
 */
import assert from "node:assert/strict";
import { handler, startServer, wasmDistDir } from "./serve.ts";

/** Runs `body` with the files and a handler over a temporary dist/ and one model, tiny.crtm. */
const withFiles = async (
  body: (
    files: { dist: string; model: string; serve: ReturnType<typeof handler> },
  ) => Promise<void>,
): Promise<void> => {
  const dir = await Deno.makeTempDir({ prefix: "crt-serve-" });
  try {
    await Deno.mkdir(`${dir}/dist/web`, { recursive: true });
    await Deno.writeTextFile(`${dir}/dist/mod.js`, "export const x = 1;\n");
    await Deno.writeTextFile(`${dir}/dist/web/app.js`, "import './../mod.js';\n");
    await Deno.writeTextFile(`${dir}/secret.txt`, "not for the web\n");
    await Deno.writeFile(`${dir}/tiny.crtm`, Uint8Array.of(1, 2, 3));
    const [dist, model] = [`${dir}/dist`, `${dir}/tiny.crtm`];
    const models = new Map([["tiny.crtm", model]]);
    await body({ dist, model, serve: handler({ distDir: dist, models, wasmDir: wasmDistDir() }) });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
};

Deno.test("web/serve handler: the page, the bundle, the installed wasm and the models, typed", async () => {
  await withFiles(async ({ serve }) => {
    const get = (path: string, method = "GET") =>
      serve(new Request(`http://127.0.0.1${path}`, { method }));
    const cases: [string, number, string][] = [
      ["/", 200, "text/html; charset=utf-8"],
      ["/style.css", 200, "text/css; charset=utf-8"],
      ["/dist/mod.js", 200, "text/javascript; charset=utf-8"],
      ["/dist/web/app.js", 200, "text/javascript; charset=utf-8"],
      // WebAssembly.instantiateStreaming refuses any other type.
      ["/wasm/tfjs-backend-wasm-simd.wasm", 200, "application/wasm"],
      ["/models/tiny.crtm", 200, "application/octet-stream"],
      ["/models/index.json", 200, "application/json; charset=utf-8"],
    ];
    for (const [path, status, type] of cases) {
      const r = await get(path);
      assert.equal(r.status, status, path);
      assert.equal(r.headers.get("content-type"), type, path);
      await r.body?.cancel();
    }
    assert.deepEqual(await (await get("/models/index.json")).json(), ["tiny.crtm"]);
    assert.deepEqual(
      new Uint8Array(await (await get("/models/tiny.crtm")).arrayBuffer()),
      Uint8Array.of(1, 2, 3),
    );
    const head = await get("/dist/mod.js", "HEAD");
    assert.equal(head.headers.get("content-length"), "20");
    assert.equal(await head.text(), "");
  });
});

Deno.test("web/serve handler: nothing outside its folders, no other methods, clear 404s", async () => {
  await withFiles(async ({ serve }) => {
    const status = async (path: string, method = "GET") => {
      const r = await serve(new Request(`http://127.0.0.1${path}`, { method }));
      return [r.status, (await r.text()).trim()] as const;
    };
    // Encoded dots and slashes survive URL parsing; they must not leave dist/.
    assert.equal((await status("/dist/..%2fsecret.txt"))[0], 400);
    assert.equal((await status("/dist/%2e%2e%2fsecret.txt"))[0], 400);
    assert.equal((await status("/dist/a%00.js"))[0], 400);
    // Only .wasm files of the wasm package, not its JavaScript or anything beside it.
    assert.equal((await status("/wasm/tf-backend-wasm.js"))[0], 404);
    assert.equal((await status("/wasm/..%2fpackage.json"))[0], 404);
    assert.equal((await status("/web/serve.ts"))[0], 404);
    assert.deepEqual(await status("/models/other.crtm"), [
      404,
      "no model /models/other.crtm (served models: tiny.crtm)",
    ]);
    assert.equal((await status("/dist/missing.js"))[0], 404);
    assert.equal((await status("/", "POST"))[0], 405);
  });
});

Deno.test("web/serve startServer: a missing model file or a taken port is a Left", async () => {
  const missing = await startServer({ port: 0, models: ["/nonexistent/model.crtm"] });
  assert.equal(missing._tag, "Left");
  if (missing._tag === "Left") {
    assert.equal(missing.left.message, "--model /nonexistent/model.crtm: not found");
  }
  await withFiles(async ({ dist, model }) => {
    const first = await startServer({ port: 0, distDir: dist, models: [model] });
    if (first._tag === "Left") throw new Error(first.left.message);
    try {
      const url = first.right.url;
      assert.equal(url.hostname, "127.0.0.1");
      const page = await fetch(url);
      assert.equal(page.status, 200);
      assert.match(await page.text(), /<title>crt in the browser<\/title>/);
      const clash = await startServer({ port: Number(url.port), distDir: dist });
      assert.equal(clash._tag, "Left");
      if (clash._tag === "Left") assert.match(clash.left.message, /port is in use/);
      const twice = await startServer({ port: 0, models: [model, model] });
      assert.equal(twice._tag, "Left");
      if (twice._tag === "Left") assert.match(twice.left.message, /is served already/);
    } finally {
      await first.right.close();
    }
  });
});

Deno.test("web/serve: a malformed percent-escape is a 400 with a short text body on every route", async () => {
  await withFiles(async ({ dist, model }) => {
    const served = await startServer({ port: 0, distDir: dist, models: [model] });
    if (served._tag === "Left") throw new Error(served.left.message);
    const base: URL = served.right.url;
    try {
      // `%E0%A4%A` is a truncated UTF-8 sequence: decodeURIComponent throws a URIError on it.
      for (
        const path of [
          "/models/%E0%A4%A",
          "/models/%zz",
          "/dist/%E0%A4%A",
          "/wasm/%E0%A4%A.wasm",
          "/%E0%A4%A",
          "/models/index.json%",
        ]
      ) {
        const r: Response = await fetch(new URL(path, base));
        const body = await r.text();
        assert.equal(r.status, 400, `${path}: ${r.status} ${body}`);
        assert.equal(r.headers.get("content-type"), "text/plain; charset=utf-8", path);
        assert.match(body, /^bad request: malformed percent-escape in the path/, path);
        assert.ok(body.length < 200, `${path}: ${body.length} bytes`);
      }
      // Well-formed escapes still work.
      const ok = await fetch(new URL("/models/tiny%2Ecrtm", base));
      assert.equal(ok.status, 200);
      await ok.body?.cancel();
    } finally {
      await served.right.close();
    }
  });
});
