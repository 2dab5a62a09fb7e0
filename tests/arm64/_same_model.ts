/**
 * Run by the x64 Deno for `deno task test:arm64`: whether two model files
 * hold the same spec, vocabulary, quantization and weights bit for bit (their
 * `meta.created` stamps differ). Prints "same" or what differs; exit 1 then.
 *
 * @module
 */
import { decodeModelFile } from "../../deploy/model_file.ts";

const [a, b] = await Promise.all(
  Deno.args.slice(0, 2).map(async (f) => decodeModelFile(await Deno.readFile(f))),
);
const diffs: string[] = [];
if (JSON.stringify(a.spec) !== JSON.stringify(b.spec)) diffs.push("spec");
if (JSON.stringify(a.vocab) !== JSON.stringify(b.vocab)) diffs.push("vocab");
if (a.quantization !== b.quantization) diffs.push("quantization");
const bits = (x: Float32Array) => new Uint32Array(x.buffer, x.byteOffset, x.length);
for (const path of new Set([...Object.keys(a.params), ...Object.keys(b.params)])) {
  const x = a.params[path], y = b.params[path];
  if (x === undefined || y === undefined) diffs.push(`${path}: only in one`);
  else if (JSON.stringify(x.shape) !== JSON.stringify(y.shape)) diffs.push(`${path}: shape`);
  else if (!bits(x.data).every((v, i) => v === bits(y.data)[i])) diffs.push(`${path}: values`);
}
console.log(diffs.length === 0 ? "same" : `differ: ${diffs.join(", ")}`);
Deno.exit(diffs.length === 0 ? 0 : 1);
