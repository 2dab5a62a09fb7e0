import assert from "node:assert/strict";
import type { Phase } from "./peers/_protocol.ts";
import { type Cell, parseOptions, rowsOf } from "./peers.ts";
import { Peer, type Side } from "./peers/_cast.ts";

/** A side without a process: rowsOf never talks to one. */
const side = (x: Partial<Side> & { label: string }): Side =>
  ({ proc: null, phases: [], weights: "f32", ...x }) as unknown as Side;

const cellOf = (phase: Phase, times: [Side, number][], tokens: number): Cell => ({
  phase,
  segmentLen: 35,
  results: new Map(times.map(([s, sec]) => [s, { seconds: [sec, sec], tokensPerStep: tokens }])),
  load: { otherCores: 0.04, stealCores: 0 },
  rounds: { total: 2, clean: 2 },
});

Deno.test("rowsOf pairs the ways of streaming and takes each peer's fastest side", () => {
  const native = { tier: "native" } as const;
  const kvF32 = side({ label: "kv f32", ours: native, variant: "kvcache" });
  const kvInt8 = side({ label: "kv int8", ours: native, variant: "kvcache", weights: "int8" });
  const recompute = side({ label: "recompute", ours: native, variant: "recompute" });
  const torchRe = side({
    label: "torch recompute",
    variant: "recompute",
    peer: { name: "pytorch", threads: 2 },
  });
  const kv1 = side({
    label: "kv 1t",
    variant: "kvcache",
    peer: { name: "pytorch-kvcache", threads: 1 },
  });
  const kv2 = side({
    label: "kv matvec 2t",
    variant: "kvcache-matvec",
    peer: { name: "pytorch-kvcache", threads: 2 },
  });
  // Seconds per 35-token step: ours 0.07 (2 ms/token) and 0.035 (1 ms); PyTorch kv 1t 0.14, matvec 0.105.
  const rows = rowsOf(cellOf("stream", [
    [kvF32, 0.07],
    [kvInt8, 0.035],
    [recompute, 0.35],
    [torchRe, 0.7],
    [kv1, 0.14],
    [kv2, 0.105],
  ], 35));
  assert.equal(rows.length, 3); // kv f32 and int8 against pytorch-kvcache; recompute against pytorch
  const [f32, int8, re] = rows;
  assert.deepEqual(
    [f32.peer, f32.weights, f32.peer_threads, f32.peer_variant],
    ["pytorch-kvcache", "f32", 2, "kvcache-matvec"], // the faster of the two PyTorch kv sides
  );
  assert.equal(f32.ours_ms_per_token, 2);
  assert.equal(f32.peer_ms_per_token, 3);
  assert.equal(f32.ratio, 1.5);
  assert.equal(f32.pytorch_tokens_per_s, f32.peer_tokens_per_s);
  assert.equal(int8.weights, "int8");
  assert.equal(int8.ratio, 3);
  assert.deepEqual([re.peer, re.peer_variant, re.ratio], ["pytorch", "recompute", 2]);
  assert.equal(re.other_cores, 0.04);
});

Deno.test("rowsOf gives one row per peer in a batch cell, PyTorch's field on PyTorch rows only", () => {
  const ours = side({ label: "ours portable", ours: { tier: "portable" } });
  const torch = side({ label: "PyTorch", peer: { name: "pytorch", threads: 2 } });
  const ort = side({ label: "ort", peer: { name: "onnxruntime-web", threads: 2 } });
  const rows = rowsOf(cellOf("infer", [[ours, 0.5], [torch, 0.25], [ort, 1]], 700));
  assert.deepEqual(rows.map((r) => [r.peer, r.ratio, r.backend]), [
    ["pytorch", 0.5, "wasm+portable"],
    ["onnxruntime-web", 2, "wasm+portable"],
  ]);
  assert.equal(rows[0].pytorch_tokens_per_s, 2800);
  assert.equal("pytorch_tokens_per_s" in rows[1], false);
  assert.equal("ours_ms_per_token" in rows[0], false);
});

Deno.test("parseOptions: stream warm-up and segments, the OpenBLAS core, and bad values named", () => {
  const d = parseOptions([]);
  assert.deepEqual([d.streamWarmup, d.streamSegments, d.blasCore], [20, 4, null]);
  const o = parseOptions([
    "--stream-warmup",
    "3",
    "--stream-segments",
    "2",
    "--blas-core",
    "detect",
  ]);
  assert.deepEqual([o.streamWarmup, o.streamSegments, o.blasCore], [3, 2, "detect"]);
  assert.throws(
    () => parseOptions(["--stream-segments", "0"]),
    /--stream-segments wants an integer ≥ 1/,
  );
  assert.throws(
    () => parseOptions(["--blas-core", "a b"]),
    /--blas-core wants an OpenBLAS core name/,
  );
});

Deno.test("Peer: an env entry set to null is left out of the child's environment", async () => {
  // A variable of this test's own (the process environment is shared with other test files).
  const name = "CRT_PEERS_TEST_VARIABLE";
  Deno.env.set(name, "inherited");
  try {
    // The child prints its view of both variables as the protocol's ready line.
    const script = 'printf \'{"event":"ready","gone":"%s","n":"%s"}\\n\' ' +
      `"\${${name}-none}" "\${OPENBLAS_NUM_THREADS-}"`;
    const p = new Peer("env", ["sh", "-c", script], { [name]: null, OPENBLAS_NUM_THREADS: "1" });
    await p.start();
    await p.close();
    assert.deepEqual(p.ready, { event: "ready", gone: "none", n: "1" });
  } finally {
    Deno.env.delete(name);
  }
});
