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
