/**
 * Helpers for the deploy tests: tiny models as model-file bytes.
 *
 * @module
 */
import type { Program } from "../core/program.ts";
import { compile } from "../core/compile.ts";
import { flattenParams } from "../core/params.ts";
import type { ModelSpec } from "../spec/types.ts";
import { encodeModelFile, type ModelFile } from "./model_file.ts";

/** The parameters of `program.init(seed)` as host tensors, by path. */
export const hostParams = (program: Program, seed: number): ModelFile["params"] => {
  const params = program.init(seed);
  const out: ModelFile["params"] = {};
  for (const [path, t] of Object.entries(flattenParams(params))) {
    out[path] = { shape: [...t.shape], data: Float32Array.from(t.dataSync() as Float32Array) };
    t.dispose();
  }
  return out;
};

/** A vocabulary of V words: `<eos>`, `w1` … `w(V−2)`, `<unk>`. */
export const testVocab = (v: number): string[] =>
  Array.from({ length: v }, (_, i) => (i === 0 ? "<eos>" : i === v - 1 ? "<unk>" : `w${i}`));

/** A model file of `spec` with parameters drawn from `seed` (needs a started backend). */
export const tinyModelFile = async (
  spec: ModelSpec,
  opts: { seed?: number; int8?: boolean; meta?: Record<string, unknown> } = {},
): Promise<{ bytes: Uint8Array; params: ModelFile["params"]; vocab: string[] }> => {
  const program = compile(spec);
  if (program._tag === "Left") throw new Error(program.left.message);
  const params = hostParams(program.right, opts.seed ?? 0);
  const vocab = testVocab(spec.vocabSize);
  const bytes = await encodeModelFile(
    { spec, vocab, params, meta: opts.meta ?? { source: "test" } },
    { int8: opts.int8 ?? false },
  );
  return { bytes, params, vocab };
};

/**
 * A copy of model-file `bytes` with one float of tensor `name` set to
 * `value` — element `index` of a float32 tensor, or with `scale` scale
 * `index` of an int8 one — and the checksum recomputed, so the file passes
 * every check but the values. Reads the layout itself, not through the decoder.
 */
export const withFloat = async (
  bytes: Uint8Array,
  name: string,
  index: number,
  value: number,
  opts: { scale?: boolean } = {},
): Promise<Uint8Array> => {
  const out = bytes.slice();
  const view = new DataView(out.buffer);
  const h = view.getUint32(12, true);
  const header = JSON.parse(new TextDecoder().decode(out.subarray(24, 24 + h)));
  const row = (header.tensors as { name: string; offset: number; scale?: { offset: number } }[])
    .find((r) => r.name === name);
  if (row === undefined) throw new Error(`withFloat: no tensor ${name}`);
  const offset = opts.scale === true ? row.scale?.offset : row.offset;
  if (offset === undefined) throw new Error(`withFloat: ${name} has no scales`);
  view.setFloat32(24 + h + offset + 4 * index, value, true);
  const body = out.subarray(0, out.length - 32);
  out.set(new Uint8Array(await crypto.subtle.digest("SHA-256", body)), out.length - 32);
  return out;
};
