/**
 * Streams `--tokens` (default 100,000) tokens through a small CRT with
 * feeds of 1 to 60 tokens and prints, as one JSON line, the live tensor
 * count and the JS heap after a full garbage collection at 10,000 tokens
 * and at the end. Run with `--v8-flags=--expose-gc` (loaded_test.ts does):
 * without a forced collection the heap figure mostly measures garbage.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { ensureBackend } from "../ops/backend.ts";
import { tf } from "../ops/tf.ts";
import { referenceCrt } from "../spec/reference_specs.ts";
import { tinyModelFile } from "./_testing.ts";
import { loadModel } from "./loaded.ts";

/** One measurement point. */
interface Point {
  readonly tokens: number;
  readonly tensors: number;
  readonly heapBytes: number;
}

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with --v8-flags=--expose-gc");
const { values } = parseArgs({
  args: Deno.args,
  options: { tokens: { type: "string", default: "100000" } },
});
const total = Number(values.tokens);
await ensureBackend();
// Segments of 25 tokens: 10,000 and 100,000 both end a segment, so the open caches agree.
const spec = {
  ...referenceCrt,
  vocabSize: 7,
  dModel: 8,
  nHeads: 2,
  dFF: 12,
  nLayers: 1,
  segmentLen: 25,
  memory: { ...referenceCrt.memory, dMemory: 6 },
};
const model = await loadModel((await tinyModelFile(spec, { seed: 1 })).bytes);
const stream = model.openStream();
const ids = Int32Array.from({ length: 64 }, (_, i) => (i * 5 + 3) % spec.vocabSize);
// Feed sizes from one token to more than two segments; every step shape recurs within 10k tokens.
const sizes = [1, 2, 5, 24, 60];
const points: Point[] = [];
const measure = (): void => {
  gc();
  gc();
  points.push({
    tokens: stream.fed,
    tensors: tf.memory().numTensors,
    heapBytes: Deno.memoryUsage().heapUsed,
  });
};
const t0 = performance.now();
let k = 0;
for (const stop of [10_000, total]) {
  while (stream.fed < stop) {
    const n = Math.min(sizes[k++ % sizes.length], stop - stream.fed);
    const at = stream.fed % 24;
    stream.feed(ids.subarray(at, at + n));
  }
  measure();
}
const seconds = (performance.now() - t0) / 1000;
model.dispose();
console.log(JSON.stringify({ points, seconds }));
