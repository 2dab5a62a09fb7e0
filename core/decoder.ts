/**
 * A decode loop: one stream (batch 1) that owns its state, fed a token at a
 * time — what generation and a device's next-token loop run. Where
 * `Program.inferStep` takes a stream and gives a new one (tensors in,
 * tensors out, so any stream can be fed twice), a decoder keeps the open
 * segment's caches in buffers with room for the whole segment and extends
 * them in place, and its carried state beside them: on the wasm backend a
 * single token, wherever it falls in the segment, runs the step planned
 * once for its position onto those buffers (ops/fusion/decoder.ts), with
 * no tensor made or freed. Every other step — several tokens at once,
 * every row read out, a model or backend the plan does not cover (e.g.
 * Transformer-XL) — runs through `inferStep` / `drawStep`
 * on the same state, so the values are theirs, bit for bit, whichever path
 * a token takes.
 *
 * @module
 */
import type { ModelSpec } from "../spec/types.ts";
import { canStream, openShapes } from "../spec/stream.ts";
import { tf } from "../ops/tf.ts";
import { heapArena, offsetOf, type WasmBackend } from "../ops/heap.ts";
import {
  type CacheBuffer,
  type HeapStep,
  planHeapStep,
  type StateBuffer,
} from "../ops/fusion/decoder.ts";
import { stateShapes } from "../spec/stages.ts";
import { flattenParams } from "./params.ts";
import type { Executables } from "./pipeline.ts";
import type { Params, Program, Stream, Tensor } from "./program.ts";
import { cacheLenOf } from "./segments.ts";
import { checkDrawOptions } from "./stream.ts";
import { numel } from "../spec/params.ts";

/**
 * One stream of tokens at batch 1 that owns its state ({@linkcode Program}'s
 * `openDecoder`).
 *
 * @example Greedy continuation
 * ```ts
 * import type { Decoder } from "./decoder.ts";
 * const greedy = (d: Decoder, prompt: Int32Array, n: number): number[] => {
 *   const out: number[] = [];
 *   let next = d.draw(prompt, { temperature: 0, topK: 0 }, 0);
 *   for (let i = 0; i < n; i++) {
 *     out.push(next);
 *     next = d.draw(Int32Array.of(next), { temperature: 0, topK: 0 }, 0);
 *   }
 *   return out;
 * };
 * ```
 */
export interface Decoder {
  /** Tokens fed so far. */
  readonly fed: number;
  /**
   * Feed `tokens`; the logits after the last one ([V], `readout: "last"`,
   * the default) or after each ([n · V], `"all"`), a host array of the
   * caller's — or, with `as`, their softmax or log-softmax over the
   * vocabulary (tfjs's kernels, each row on its own).
   */
  logits(tokens: Int32Array, readout?: "last" | "all", as?: LogitsAs): Float32Array;
  /**
   * Feed `tokens` and draw the next token from the last logits in the same
   * step (`drawStep`'s draw: temperature, top-k, one uniform in [0, 1)).
   */
  draw(
    tokens: Int32Array,
    opts: { readonly temperature: number; readonly topK: number },
    uniform: number,
  ): number;
  /** Free the decoder's tensors and buffers; it cannot be fed afterwards. */
  dispose(): void;
}

/** What {@linkcode Decoder}'s `logits` hands back: the logits, or their (log-)softmax. */
export type LogitsAs = "logits" | "softmax" | "logSoftmax";

/** `logits` [.., V] read to the host as `as` says. */
const readAs = (logits: Tensor, as: LogitsAs): Float32Array => {
  if (as === "logits") return logits.dataSync() as Float32Array;
  // Not through tf.tidy: it would walk the returned array element by element, looking for tensors.
  const p = as === "softmax" ? tf.softmax(logits) : tf.logSoftmax(logits);
  try {
    return p.dataSync() as Float32Array;
  } finally {
    p.dispose();
  }
};

/**
 * Copy the first `rows` rows of each of a cache's `outer` blocks between
 * layouts with `fromCap` and `toCap` rows a block (floats, offsets in floats).
 */
const copyBlocks = (
  c: { readonly outer: number; readonly inner: number },
  rows: number,
  src: Float32Array,
  from: number,
  fromCap: number,
  dst: Float32Array,
  to: number,
  toCap: number,
): void => {
  for (let o = 0; o < c.outer; o++) {
    const f = from + o * fromCap * c.inner;
    dst.set(src.subarray(f, f + rows * c.inner), to + o * toCap * c.inner);
  }
};

/** The open caches on the heap and the plans that extend them. */
interface HeapForm {
  readonly b: WasmBackend;
  /** Frees the buffers below (the plans free their own). */
  readonly free: () => void;
  readonly caches: Map<string, CacheBuffer & { readonly axis: number }>;
  /** The carried state (`stateShapes` names), each its own buffer. */
  readonly states: Map<string, StateBuffer & { readonly shape: readonly number[] }>;
  readonly ids: number;
  readonly logits: number;
  readonly plans: Map<string, HeapStep | null>;
}

/**
 * The decoders of a program compiled from `spec`: step graphs from `exes`,
 * every step the plan does not cover through `streams`.
 */
export const decoderRunner = (
  spec: ModelSpec,
  exes: Executables,
  streams: Pick<Program, "openStream" | "inferStep" | "drawStep" | "disposeState">,
): Program["openDecoder"] =>
(params: Params): Decoder => {
  const sLen = spec.segmentLen, v = spec.vocabSize;
  const flat = flattenParams(params);
  /** The state as tensors (the `inferStep` form), or null while the open caches are on the heap. */
  let stream: Stream | null = streams.openStream(1);
  /** The carried state while the caches are on the heap. */
  let carried: Record<string, Tensor> = {};
  let t0 = 0, fed = 0;
  const openIds = new Int32Array(sLen);
  let heap: HeapForm | null | undefined; // undefined: not tried yet; null: no plan here
  let disposed = false;

  // Token models with a step graph; Transformer-XL's carried cache grows over the first segments
  // (and its steps concatenate the layer inputs): its steps run as tensors.
  const plannable = canStream(spec) && spec.input?._tag !== "features" && spec._tag !== "xl" &&
    sLen >= 3;

  const makeHeap = (): HeapForm | null => {
    if (!plannable || tf.getBackend() !== "wasm") return null;
    const b = tf.backend() as unknown as WasmBackend;
    const cacheLen = cacheLenOf(spec, stream?.state ?? carried);
    const at = (start: number) => openShapes(spec, { batchSize: 1, start, cacheLen });
    const [s1, s2, last] = [at(1), at(2), at(sLen - 1)];
    const arena = heapArena(b, "decoder"), alloc = arena.alloc;
    const caches = new Map<string, CacheBuffer & { axis: number }>();
    for (const [name, s] of Object.entries(s1)) {
      const axis = s.findIndex((n, i) => n !== s2[name][i]);
      if (axis < 1) continue; // fixed for the segment (CRT's slot): not a buffer of ours
      const outer = numel(s.slice(1, axis)), inner = numel(s.slice(axis + 1));
      // Room for the step that closes the segment: its block and readout write one row more.
      const cap = last[name][axis] + (s2[name][axis] - s[axis]);
      caches.set(name, { at: alloc(4 * outer * cap * inner), cap, outer, inner, axis });
    }
    const states = new Map<string, StateBuffer & { shape: readonly number[] }>();
    for (const [name, shape] of Object.entries(stateShapes(spec, 1, cacheLen))) {
      const floats = numel(shape);
      states.set(name, { at: alloc(4 * floats), floats, shape });
    }
    const [ids, logits] = [alloc(4), alloc(4 * v)];
    return { b, free: arena.free, caches, states, ids, logits, plans: new Map() };
  };

  const planFor = (h: HeapForm, draw?: { temperature: number; topK: number }) => {
    const key = draw === undefined ? `${t0}` : `${t0} ${draw.temperature} ${draw.topK}`;
    let plan = h.plans.get(key);
    if (plan === undefined) {
      const exe = exes.step({
        batchSize: 1,
        start: t0,
        count: 1,
        cacheLen: cacheLenOf(spec, stream?.state ?? carried),
        readout: "last",
        ...(draw === undefined ? {} : { draw }),
      });
      plan = planHeapStep(h.b, exe.graph, flat, h);
      h.plans.set(key, plan);
    }
    return plan;
  };

  /** Move the carried state and the open caches from tensors onto the heap. */
  const toHeap = (h: HeapForm): void => {
    const s = stream!;
    const heapF = h.b.wasm.HEAPF32;
    carried = {};
    for (const [name, t] of Object.entries(s.state)) {
      if (!name.startsWith("open:")) {
        const st = h.states.get(name);
        if (st === undefined || t.size !== st.floats) carried[name] = t;
        else {
          const src = offsetOf(h.b, t) >>> 2;
          heapF.copyWithin(st.at >>> 2, src, src + st.floats);
          t.dispose();
        }
        continue;
      }
      const c = h.caches.get(name.slice(5));
      if (c === undefined) {
        carried[name] = t; // passed on unchanged by the plan's steps
        continue;
      }
      const rows = t.shape[c.axis];
      copyBlocks(c, rows, heapF, offsetOf(h.b, t) >>> 2, rows, heapF, c.at >>> 2, c.cap);
      t.dispose();
    }
    stream = null;
  };

  /** The state as a stream of tensors again (the caches copied off the heap). */
  const toStream = (h: HeapForm): Stream => {
    if (stream !== null) return stream;
    const state: Record<string, Tensor> = { ...carried };
    const shapes = openShapes(spec, {
      batchSize: 1,
      start: t0,
      cacheLen: cacheLenOf(spec, carried),
    });
    const heapF = h.b.wasm.HEAPF32;
    for (const [name, st] of h.states) {
      const data = heapF.slice(st.at >>> 2, (st.at >>> 2) + st.floats);
      state[name] = tf.tensor(data, st.shape as number[], "float32");
    }
    for (const [name, c] of h.caches) {
      const shape = shapes[name];
      if (shape === undefined) continue; // no open segment
      const rows = shape[c.axis];
      const data = new Float32Array(c.outer * rows * c.inner);
      copyBlocks(c, rows, heapF, c.at >>> 2, c.cap, data, 0, rows);
      state[`open:${name}`] = tf.tensor(data, shape as number[], "float32");
    }
    carried = {};
    return stream = { state, open: openIds.slice(0, t0), batchSize: 1 };
  };

  const check = (tokens: Int32Array, what: string): void => {
    if (disposed) throw new Error(`decoder ${what}: the decoder was disposed`);
    if (tokens.length === 0) throw new RangeError(`decoder ${what}: no tokens given`);
  };

  /** The planned step for one token at t0, or null (then the tensor step runs). */
  const fastPath = (
    tokens: Int32Array,
    draw?: { temperature: number; topK: number },
  ): { h: HeapForm; plan: HeapStep } | null => {
    if (tokens.length !== 1) return null;
    const id = tokens[0];
    if (!(id >= 0 && id < v)) return null; // inferStep names the bad id
    if (heap === undefined) heap = makeHeap();
    if (heap === null || tf.getBackend() !== "wasm") return null;
    const plan = planFor(heap, draw);
    if (plan === null) return null;
    if (stream !== null) toHeap(heap);
    heap.b.wasm.HEAP32[heap.ids >>> 2] = id;
    return { h: heap, plan };
  };

  /** After a planned step: one more token open, or the segment closed. */
  const advanced = (id: number): void => {
    openIds[t0++] = id;
    if (t0 === sLen) t0 = 0;
    fed++;
  };

  /** Take the stream a tensor step gave back, releasing the one it was fed. */
  const took = (before: Stream, after: Stream, n: number): void => {
    streams.disposeState(before.state);
    stream = after;
    t0 = after.open.length;
    openIds.set(after.open);
    fed += n;
  };

  return {
    get fed() {
      return fed;
    },
    logits: (tokens, readout = "last", as = "logits") => {
      check(tokens, "logits");
      if (readout === "last") {
        const f = fastPath(tokens);
        if (f !== null) {
          f.plan.run(0);
          advanced(tokens[0]);
          const at = f.h.logits >>> 2;
          const host = f.h.b.wasm.HEAPF32.slice(at, at + v);
          if (as === "logits") return host;
          const t = tf.tensor2d(host, [1, v]);
          try {
            return readAs(t, as);
          } finally {
            t.dispose();
          }
        }
      }
      const before = heap ? toStream(heap) : stream!;
      const r = streams.inferStep(params, before, tokens, { readout });
      try {
        return readAs(r.logits, as);
      } finally {
        r.logits.dispose();
        took(before, r.stream, tokens.length);
      }
    },
    draw: (tokens, opts, uniform) => {
      check(tokens, "draw");
      if (!(uniform >= 0 && uniform < 1)) {
        throw new RangeError(`decoder draw: the uniform ${uniform} is not in [0, 1)`);
      }
      checkDrawOptions("decoder draw", opts);
      const f = fastPath(tokens, { temperature: opts.temperature, topK: opts.topK });
      if (f !== null) {
        const id = f.plan.run(uniform);
        advanced(tokens[0]);
        return id;
      }
      const before = heap ? toStream(heap) : stream!;
      const r = streams.drawStep(params, before, tokens, {
        temperature: opts.temperature,
        topK: opts.topK,
        uniforms: Float32Array.of(uniform),
      });
      took(before, r.stream, tokens.length);
      return r.tokens[0];
    },
    dispose: () => {
      if (disposed) return;
      disposed = true;
      if (stream !== null) streams.disposeState(stream.state);
      else streams.disposeState(carried);
      if (heap) {
        for (const p of heap.plans.values()) p?.free();
        heap.free();
      }
    },
  };
};
