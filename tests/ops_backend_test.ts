/**
 * Backend start-up: nothing happens on import, cpu works when asked for,
 * repeated starts are no-ops, and failures come back as `Left`.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { Tracer } from "../spec/graph.ts";
import { BackendError, startBackend } from "../ops/backend.ts";
import { checkKernels, evalTf } from "../ops/lower.ts";
import { freshDeno, repoUrl } from "./_deno.ts";

Deno.test("startBackend: importing ops/backend.ts registers, initialises and installs nothing", async () => {
  // A fresh process, so nothing else this test file imported can interfere.
  const probe = `
    import * as tf from "@tensorflow/tfjs-core";
    import "${repoUrl("ops/backend.ts")}";
    console.log(JSON.stringify({
      factories: ["wasm", "cpu"].filter((b) => tf.findBackendFactory(b) !== null),
      active: tf.engine().backendName ?? null,
      gradients: tf.getGradient("BatchMatMul") !== undefined,
    }));
  `;
  const seen = JSON.parse(await freshDeno(probe));
  assert.deepEqual(seen, { factories: [], active: null, gradients: false });
});

Deno.test("startBackend: cpu starts on request, runs ops and their gradients", async () => {
  const started = await startBackend({ backend: "cpu" });
  assert.equal(started._tag, "Right");
  if (started._tag !== "Right") return;
  assert.deepEqual(started.right, {
    name: "cpu",
    simd: false,
    matmul: "stock",
    arch: Deno.build.arch,
  });
  assert.equal(tf.getBackend(), "cpu");
  const g = tf.tidy(() => {
    const x = tf.tensor2d([[1, -2], [3, 4]]);
    const f = (a: tf.Tensor) =>
      tf.sum(evalTf({ _tag: "relu" }, [a], { training: false, seed: () => 0 }));
    return [...tf.grad(f)(x).dataSync()];
  });
  assert.deepEqual(g, [1, 0, 1, 1]);
  const tr = new Tracer();
  const graph = tr.finish({ y: tr.ops().softmax(tr.input("x", "data", [2, 3])) });
  assert.equal(checkKernels(graph, "cpu")._tag, "Right");
});

Deno.test("startBackend: a second start of the same backend is a no-op", async () => {
  const first = await startBackend({ backend: "cpu" });
  const instance = tf.findBackend("cpu");
  const second = await startBackend({ backend: "cpu" });
  assert.deepEqual(second, first);
  assert.equal(tf.findBackend("cpu"), instance, "the backend was not re-created");
});

Deno.test("startBackend: wasm is the default, found in the installed package", async () => {
  const started = await startBackend();
  assert.equal(started._tag, "Right");
  if (started._tag !== "Right") return;
  assert.equal(started.right.name, "wasm");
  assert.equal(typeof started.right.simd, "boolean");
  assert.equal(tf.getBackend(), "wasm");
  assert.deepEqual([...tf.tidy(() => tf.matMul(tf.ones([2, 3]), tf.ones([3, 1]))).dataSync()], [
    3,
    3,
  ]);
  // Switching back and forth keeps working (setWasmPaths must not run twice).
  assert.equal((await startBackend({ backend: "cpu" }))._tag, "Right");
  assert.equal((await startBackend({ backend: "wasm" }))._tag, "Right");
  assert.equal(tf.getBackend(), "wasm");
});

Deno.test("startBackend: the info names the CPU architecture (aarch64 on a 64-bit ARM board)", async () => {
  for (const backend of ["cpu", "wasm"] as const) {
    const started = await startBackend({ backend });
    if (started._tag !== "Right") throw started.left;
    assert.equal(started.right.arch, Deno.build.arch, backend);
  }
  assert.ok(["x86_64", "aarch64"].includes(Deno.build.arch), Deno.build.arch);
});

Deno.test("startBackend: an unknown backend is a Left with a readable BackendError", async () => {
  const started = await startBackend({ backend: "tpu" as never });
  assert.equal(started._tag, "Left");
  if (started._tag !== "Left") return;
  assert.ok(started.left instanceof BackendError);
  assert.equal(started.left._tag, "BackendError");
  assert.match(started.left.message, /cannot start tfjs backend 'tpu': unknown backend/);
});

Deno.test("startBackend: without a Deno global (a browser) wasm runs the portable matmul and says why", async () => {
  // Fresh processes: the wasm binaries' location is fixed at the first wasm start.
  const backend = repoUrl("ops/backend.ts");
  const seen = JSON.parse(
    await freshDeno(`
    const { startBackend, wasmDistUrl } = await import("${backend}");
    const url = wasmDistUrl();
    Reflect.deleteProperty(globalThis, "Deno");
    const notAFolder = await startBackend({ wasmPaths: url + "tfjs-backend-wasm-simd.wasm" });
    const started = await startBackend({ wasmPaths: url });
    console.log(JSON.stringify({ notAFolder: notAFolder.left?.message, started: started.right }));
  `),
  );
  assert.match(seen.notAFolder, /wasmPaths must be a URL prefix ending in "\/"/);
  assert.equal(seen.started.name, "wasm");
  assert.equal(seen.started.matmul, "portable");
  assert.match(seen.started.reason, /no Deno FFI/);
  const wrong = await freshDeno(`
    const { startBackend } = await import("${backend}");
    const r = await startBackend({ wasmPaths: "file:///nonexistent-crt-wasm/" });
    console.log(r._tag === "Left" ? r.left.message : "started");
  `);
  assert.match(wrong, /binaries were looked up in file:\/\/\/nonexistent-crt-wasm\//);
});
