/**
 * A model file loaded onto the active tfjs backend, and next-token streams
 * over it. Web APIs only (no Deno): the same code runs in a browser.
 *
 * A {@linkcode TokenStream} is a decode loop (`Program.openDecoder`, batch
 * 1) behind a small handle: its state is CRT's memory vector (or XL's
 * cache) plus the open segment's key/value cache, which it extends in
 * place, so its size does not grow with the number of tokens fed, and each
 * token costs O(t) attention plus one row of the output layer.
 *
 * @module
 */
import type { Params, Program } from "../core/program.ts";
import type { Decoder, LogitsAs } from "../core/decoder.ts";
import { compile } from "../core/compile.ts";
import { unflattenParams } from "../core/params.ts";
import { tf } from "../ops/tf.ts";
import { encodeQ8, packable } from "../ops/quant.ts";
import { canStream } from "../spec/stream.ts";
import { decodeModelFile, type ModelFile, ModelFileError } from "./model_file.ts";
import { Vocab } from "./vocab.ts";

/**
 * Next-token probabilities over a growing token sequence, one stream of text.
 *
 * @example
 * ```ts
 * import type { TokenStream } from "./loaded.ts";
 * const argmax = (p: Float32Array) => p.reduce((best, v, i) => (v > p[best] ? i : best), 0);
 * const greedy = (s: TokenStream, first: number, n: number): number[] => {
 *   const out: number[] = [];
 *   let next = argmax(s.feed([first]));
 *   for (let i = 0; i < n; i++) {
 *     out.push(next);
 *     next = argmax(s.feed([next]));
 *   }
 *   return out;
 * };
 * ```
 */
export interface TokenStream {
  /** Feed tokens (one or more); the next-token probabilities after the last one, length V. */
  feed(tokens: ArrayLike<number>): Float32Array;
  /** Feed tokens (one or more); the next-token logits after the last one, length V. */
  logits(tokens: ArrayLike<number>): Float32Array;
  /**
   * Feed tokens; the probabilities after each of them (n arrays of length V,
   * n · V floats: for scoring and tests, not for long texts).
   */
  feedAll(tokens: ArrayLike<number>): Float32Array[];
  /**
   * Feed tokens; for each, the natural log of the probability of
   * `targets[i]` as the next token (the backend's float32 log-softmax of
   * the logits, so no underflow where a probability would). Runs a segment
   * at a time, so any length is fine.
   */
  logProbs(tokens: ArrayLike<number>, targets: ArrayLike<number>): Float64Array;
  /**
   * Feed tokens and draw the next one in the same step, inside the kernel:
   * softmax(logits / temperature) over the `topK` most likely (0: all),
   * with `uniform` in [0, 1) — the same uniform, tokens and options give the
   * same id. Only the id comes back to the host.
   */
  draw(
    tokens: ArrayLike<number>,
    opts: { readonly temperature: number; readonly topK: number },
    uniform: number,
  ): number;
  /** Tokens fed so far. */
  readonly fed: number;
  /** Release the stream's tensors; it cannot be fed afterwards. */
  dispose(): void;
}

/**
 * A model ready to run: the file it came from, the compiled program, its
 * parameters as tensors, the vocabulary's text ↔ ids, and streams.
 *
 * @example
 * ```ts
 * import type { LoadedModel } from "./loaded.ts";
 * const continuation = (m: LoadedModel, prompt: string): string => {
 *   const s = m.openStream();
 *   const p = s.feed(m.encode(prompt));
 *   const best = p.indexOf(Math.max(...p));
 *   s.dispose();
 *   return m.decode([best]);
 * };
 * ```
 */
export interface LoadedModel {
  /** The decoded model file. */
  readonly file: ModelFile;
  /** The program compiled from its spec. */
  readonly program: Program;
  /** Its parameters on the active backend. */
  readonly params: Params;
  /** Token ids of `text` (words split on whitespace, `<eos>` per line break, unknown → `<unk>`). */
  encode(text: string): Int32Array;
  /** Text of token ids (`<eos>` becomes a line break). */
  decode(ids: ArrayLike<number>): string;
  /** A new stream starting from the model's initial state. */
  openStream(): TokenStream;
  /** Release the parameters and every stream still open. */
  dispose(): void;
}

class Streamer implements TokenStream {
  #decoder: Decoder | null;
  #fed = 0;

  constructor(
    readonly program: Program,
    readonly params: Params,
    readonly onDispose: (s: Streamer) => void,
  ) {
    this.#decoder = program.openDecoder(params);
  }

  get fed(): number {
    return this.#decoder?.fed ?? this.#fed;
  }

  /** Checked int32 ids. */
  #ids(tokens: ArrayLike<number>, what: string): Int32Array {
    if (this.#decoder === null) throw new Error(`${what}: the stream was disposed`);
    const v = this.program.spec.vocabSize;
    if (tokens.length === 0) throw new RangeError(`${what}: no tokens given`);
    const ids = new Int32Array(tokens.length);
    for (let i = 0; i < tokens.length; i++) {
      const id = tokens[i];
      if (!Number.isInteger(id) || id < 0 || id >= v) {
        throw new RangeError(
          `${what}: token ${id} at index ${i} is not an id of the vocabulary [0, ${v})`,
        );
      }
      ids[i] = id;
    }
    return ids;
  }

  /**
   * Advance by `ids`; the logits read out ([n, V] or [1, V]) as a host array,
   * or their softmax or log-softmax over the vocabulary, as `back` says —
   * computed on the backend by tfjs's kernel (one call for all rows; a
   * float64 loop of `Math.exp` over 10,000 words on the host cost ~0.2 ms a
   * row, as much as a third of an int8 token).
   */
  #step(ids: Int32Array, readout: "all" | "last", back: LogitsAs): Float32Array {
    return this.#decoder!.logits(ids, readout, back);
  }

  feed(tokens: ArrayLike<number>): Float32Array {
    const ids = this.#ids(tokens, "feed");
    return this.#step(ids, "last", "softmax");
  }

  logits(tokens: ArrayLike<number>): Float32Array {
    return this.#step(this.#ids(tokens, "logits"), "last", "logits");
  }

  draw(
    tokens: ArrayLike<number>,
    opts: { readonly temperature: number; readonly topK: number },
    uniform: number,
  ): number {
    const ids = this.#ids(tokens, "draw");
    return this.#decoder!.draw(ids, opts, uniform);
  }

  feedAll(tokens: ArrayLike<number>): Float32Array[] {
    const ids = this.#ids(tokens, "feedAll");
    const v = this.program.spec.vocabSize;
    const probs = this.#step(ids, "all", "softmax");
    return Array.from({ length: ids.length }, (_, i) => probs.slice(i * v, (i + 1) * v));
  }

  logProbs(tokens: ArrayLike<number>, targets: ArrayLike<number>): Float64Array {
    const ids = this.#ids(tokens, "logProbs");
    const tgt = this.#ids(targets, "logProbs targets");
    if (tgt.length !== ids.length) {
      throw new RangeError(`logProbs: ${ids.length} tokens but ${tgt.length} targets`);
    }
    const v = this.program.spec.vocabSize, s = this.program.spec.segmentLen;
    const out = new Float64Array(ids.length);
    let at = 0;
    while (at < ids.length) {
      // Up to the end of the open segment: the logits of one segment at most are on the host.
      const n = Math.min(ids.length - at, s - this.#decoder!.fed % s);
      const logp = this.#step(ids.subarray(at, at + n), "all", "logSoftmax");
      for (let i = 0; i < n; i++) out[at + i] = logp[i * v + tgt[at + i]];
      at += n;
    }
    return out;
  }

  dispose(): void {
    if (this.#decoder === null) return;
    this.#fed = this.#decoder.fed;
    this.#decoder.dispose();
    this.#decoder = null;
    this.onDispose(this);
  }
}

/**
 * Load a model file (its bytes, or an already decoded {@linkcode ModelFile})
 * onto the active tfjs backend: decode and verify it, compile its spec and
 * upload its parameters. The backend must already be started
 * (`startBackend`). Throws {@linkcode ModelFileError} for a bad file or a
 * spec this crt cannot compile.
 *
 * @example Stream a few tokens through a tiny model
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { compile } from "../core/compile.ts";
 * import { flattenParams } from "../core/params.ts";
 * import { referenceCrt } from "../spec/reference_specs.ts";
 * import { encodeModelFile } from "./model_file.ts";
 * import { loadModel } from "./loaded.ts";
 *
 * await startBackend({ backend: "cpu" });
 * const spec = {
 *   ...referenceCrt,
 *   vocabSize: 4,
 *   dModel: 8,
 *   nHeads: 2,
 *   dFF: 16,
 *   nLayers: 1,
 *   segmentLen: 3,
 *   memory: { ...referenceCrt.memory, dMemory: 8 },
 * };
 * const program = compile(spec);
 * if (program._tag === "Left") throw new Error(program.left.message);
 * const params = Object.fromEntries(
 *   Object.entries(flattenParams(program.right.init(0)))
 *     .map(([k, t]) => [k, { shape: t.shape, data: t.dataSync() as Float32Array }]),
 * );
 * const bytes = await encodeModelFile({
 *   spec,
 *   vocab: ["<eos>", "a", "b", "<unk>"],
 *   params,
 *   meta: {},
 * });
 * const model = await loadModel(bytes);
 * const stream = model.openStream();
 * const p = stream.feed(model.encode("a b a b"));
 * assert.equal(p.length, 4);
 * assert.ok(Math.abs(p.reduce((s, x) => s + x, 0) - 1) < 1e-5);
 * model.dispose();
 * ```
 */
export async function loadModel(bytes: Uint8Array | ModelFile): Promise<LoadedModel> {
  const file = bytes instanceof Uint8Array ? await decodeModelFile(bytes) : bytes;
  // Int8 weights stay int8: each is one q8 tensor (ops/quant.ts) the program reads as such.
  const quantized: Record<string, 0 | 1> = {};
  for (const [path, p] of Object.entries(file.params)) {
    if (p.q8 !== undefined && (p.q8.axis === 0 || packable(p.shape[0], p.shape[1]))) {
      quantized[path] = p.q8.axis;
    }
  }
  const compiled = compile(file.spec, { quantized });
  if (compiled._tag === "Left") {
    throw new ModelFileError(
      "spec",
      `spec: cannot compile (${compiled.left.stage}): ${compiled.left.message}`,
    );
  }
  const program = compiled.right;
  const leaves: Record<string, tf.Tensor> = {};
  try {
    for (const [path, p] of Object.entries(file.params)) {
      const axis = quantized[path];
      leaves[path] = axis === undefined || p.q8 === undefined
        ? tf.tensor(p.data, p.shape, "float32")
        : tf.tensor(encodeQ8(p.q8, p.shape[0], p.shape[1], axis), undefined, "int32");
    }
  } catch (e) {
    for (const t of Object.values(leaves)) t.dispose();
    throw e;
  }
  const params = unflattenParams(program.layout, leaves);
  const vocab = new Vocab(file.vocab);
  const open = new Set<Streamer>();
  let disposed = false;
  return {
    file,
    program,
    params,
    encode: (text) => vocab.tokenize(text).ids,
    decode: (ids) => vocab.detokenize(ids),
    openStream: () => {
      if (disposed) throw new Error("openStream: the model was disposed");
      if (!canStream(program.spec)) {
        throw new Error(
          `openStream: next-token streams need token input and an LM readout; this ` +
            `${program.spec._tag} has a ${program.spec.readout._tag} readout`,
        );
      }
      const s = new Streamer(program, params, (x) => open.delete(x));
      open.add(s);
      return s;
    },
    dispose: () => {
      if (disposed) return;
      for (const s of [...open]) s.dispose();
      for (const t of Object.values(leaves)) t.dispose();
      disposed = true;
    },
  };
}
