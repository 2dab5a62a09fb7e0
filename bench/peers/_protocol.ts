/**
 * The line protocol between `bench/peers.ts` and its peers (`ours.ts`,
 * `torch_ref.py`, `ort.mjs`), and small helpers both sides of it use.
 *
 * A peer started with `--mode serve` (`ort.mjs` always serves) prints one
 * `ready` line, then reads one {@linkcode Command} per stdin line and answers
 * each with JSON lines on stdout: a `model` line the first time a (phase,
 * segmentLen, variant) runner is asked for, then `steps` (for `profile`,
 * some `profile` lines and `done`; with `count`, a `kernels` line).
 * Keeping each peer alive across commands lets the driver alternate single
 * steps between peers without paying start-up and warm-up again.
 *
 * @module
 */

/** What a peer measures: training steps, batched inference, or batch-1 streaming. */
export type Phase = "train" | "infer" | "stream";

/**
 * How a stream runs, for the peers that have more than one way:
 * - `kvcache`: one token per call through a per-layer key/value cache (ours:
 *   `Program.inferStep` on a model file's program, see `weights`; PyTorch:
 *   its hand-written cache);
 * - `kvcache-matvec` (PyTorch only): the same cache with every product of
 *   a decode step as matrix-vector products (`torch.addmv`), a tuned
 *   decoder;
 * - `recompute`: every token reruns the open prefix of the segment.
 */
export type StreamVariant = "kvcache" | "kvcache-matvec" | "recompute";

/**
 * One request to a serving peer: run `steps` steps of `phase` at segment
 * length `segmentLen` (building that runner on first use), or profile one
 * training step (`phase: "profile"`). With `count`, run one step with the
 * kernel dispatches counted instead (ours only) and answer `kernels`.
 *
 * @example
 * ```ts
 * import type { Command } from "./_protocol.ts";
 * const cmd: Command = { phase: "stream", segmentLen: 35, steps: 1, variant: "kvcache" };
 * console.log(JSON.stringify(cmd));
 * ```
 */
export interface Command {
  /** What to run. */
  readonly phase: Phase | "profile";
  /** Tokens per segment, S. */
  readonly segmentLen: number;
  /** How many steps (ignored by `profile` and `count`). */
  readonly steps?: number;
  /** How a `stream` step runs (default `kvcache`); ignored by the other phases. */
  readonly variant?: StreamVariant;
  /** Model weights of an ours `stream` step: a float32 or an int8 model file (default f32). */
  readonly weights?: Weights;
  /** Count the kernel dispatches of one (untimed) step instead of timing steps. */
  readonly count?: boolean;
}

/** Model weights: float32, or an int8 model file (one scale per output column). */
export type Weights = "f32" | "int8";

/**
 * A line a peer prints: its readiness, a model description (parameters and
 * FLOPs, printed once per runner), step times, profile rows.
 *
 * @example
 * ```ts
 * import type { Reply } from "./_protocol.ts";
 * const r: Reply = { event: "steps", seconds: [0.71], tokens_per_step: 1400 };
 * if (r.event === "steps") console.log(r.tokens_per_step / r.seconds[0]);
 * ```
 */
export type Reply =
  | { readonly event: "ready"; readonly engine: string; readonly [k: string]: unknown }
  | {
    readonly event: "model";
    readonly engine: string;
    readonly segmentLen: number;
    /** Parameters and matmul FLOPs (ours and PyTorch; an ONNX graph reports neither). */
    readonly params?: number;
    readonly forward_flops_per_token?: number;
    readonly [k: string]: unknown;
  }
  | {
    readonly event: "steps";
    /** Wall time of each step, in seconds, input generation excluded. */
    readonly seconds: readonly number[];
    /** Tokens one step processes (B · K · S for training). */
    readonly tokens_per_step: number;
  }
  | {
    readonly event: "profile";
    readonly engine: string;
    /** A kernel (ours) or operator (PyTorch) name, or a matmul shape. */
    readonly op: string;
    readonly ms: number;
    /** Fraction of the summed kernel time. */
    readonly share: number;
    readonly calls: number;
    readonly [k: string]: unknown;
  }
  | {
    readonly event: "kernels";
    /** Kernel dispatches of one step (see bench/_kernels.ts). */
    readonly calls: number;
    readonly tokens_per_step: number;
    /** The same calls by kernel name, most first. */
    readonly by_name: Readonly<Record<string, number>>;
  }
  | { readonly event: "done"; readonly [k: string]: unknown };

/**
 * The median of a non-empty list (mean of the middle two for even length).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { median } from "./_protocol.ts";
 * assert.equal(median([3, 1, 2]), 2);
 * assert.equal(median([4, 1, 2, 3]), 2.5);
 * ```
 */
export const median = (xs: readonly number[]): number => {
  if (xs.length === 0) throw new RangeError("median of an empty list");
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};

/**
 * Lines of a byte stream, without their line breaks; a last unterminated
 * line is yielded too. (The standard library's TextLineStream would do,
 * but it is not a dependency of this project.)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readLines } from "./_protocol.ts";
 * const bytes = new Blob(["a\nb\r\nc"]).stream();
 * const out: string[] = [];
 * for await (const line of readLines(bytes)) out.push(line);
 * assert.deepEqual(out, ["a", "b", "c"]);
 * ```
 */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffered = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, nl).replace(/\r$/, "");
      buffered = buffered.slice(nl + 1);
    }
  }
  if (buffered.length > 0) yield buffered;
}

/**
 * Deterministic token ids in [0, vocabSize): a 32-bit LCG, so runs repeat
 * without a random-number dependency. Benchmarks need varied ids, not good
 * randomness.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tokenSource } from "./_protocol.ts";
 * const next = tokenSource(1, 10000);
 * const ids = next(5);
 * assert.equal(ids.length, 5);
 * assert.ok(ids.every((t) => t >= 0 && t < 10000));
 * ```
 */
export const tokenSource = (seed: number, vocabSize: number): (n: number) => Int32Array => {
  let state = (seed * 2654435761 + 1) >>> 0;
  return (n) => {
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      out[i] = (state >>> 8) % vocabSize; // the low bits of an LCG cycle fast: drop them
    }
    return out;
  };
};

/**
 * `make` made once per key: the first call with a key makes and keeps the
 * value, later calls return it (both sides keep one program or one process
 * per setting this way).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { onePer } from "./_protocol.ts";
 * let made = 0;
 * const square = onePer((n: number) => (made++, n * n));
 * assert.equal(square(3) + square(3), 18);
 * assert.equal(made, 1);
 * ```
 */
export const onePer = <K, V>(make: (key: K) => V): (key: K) => V => {
  const kept = new Map<K, V>();
  return (key) => {
    if (kept.has(key)) return kept.get(key) as V;
    const v = make(key);
    kept.set(key, v);
    return v;
  };
};
