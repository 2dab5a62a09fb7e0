/**
 * A streaming step planned onto buffers a decode loop owns: the step graph
 * of one token in the middle of a segment (spec/stream.ts) — an `embed`
 * region, one `decodeBlock` per layer, an `lmHead` — lowered once to calls
 * of the regions' heap kernels on fixed offsets. The open segment's caches
 * are the loop's buffers, each with room for the whole segment, and the
 * step extends them in place; the intermediate rows, the kernels' scratch,
 * the token id and the logits have buffers of their own, made once per
 * plan. A token then makes no tensor, frees nothing and looks nothing up:
 * what the tensor step (ops/lower.ts `directGraph`) spends per token on
 * tfjs's bookkeeping and on copying the caches into new ones goes.
 *
 * The values are the direct step's, bit for bit: the same kernels run in
 * the same order on the same data (a cache extended in place holds the rows
 * a copy would). A graph with any other node — a segment's first or last
 * step, Transformer-XL's layer inputs, a feed of the carried state — has no
 * plan (`planHeapStep` gives null) and runs as tensors.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import type { Graph } from "../../spec/ops.ts";
import { fusedKernel, inferenceBindingOf, type KernelBinding } from "../fusion.ts";
import { offsetOf, type WasmBackend } from "../heap.ts";
import { directCallObservers } from "../lower.ts";
import { blockOnHeap, blockParamsOnHeap, blockWorkBytes, DECODE_BLOCK } from "./decode.ts";
import { EMBED, embedOnHeap, embedTables, headOnHeap, headWorkBytes, LM_HEAD } from "./stream.ts";
import { heapWeight } from "./weights.ts";

/**
 * An open-segment cache a decode loop holds on the heap: `outer` blocks of
 * `cap` rows of `inner` floats (k/v [H, cap, E]; CRT's rows h [cap, D]),
 * of which the first `rows` (the graph's shape says how many) are filled.
 */
export interface CacheBuffer {
  /** Byte offset of its first float. */
  readonly at: number;
  /** Rows of the growing axis it has room for. */
  readonly cap: number;
  readonly outer: number;
  readonly inner: number;
}

/** A step planned on heap buffers. */
export interface HeapStep {
  /**
   * Run the step on the token id at the plan's `ids` offset; the drawn id
   * when the step draws (`uniform` its uniform), else -1 (the logits are at
   * the plan's `logits` offset).
   */
  run(uniform: number): number;
  /** Free the plan's own buffers. */
  free(): void;
}

/** A value of the planned walk: a tensor (a parameter), or floats on the heap. */
type Value =
  | { readonly tag: "tensor"; readonly t: tf.TensorInfo }
  | { readonly tag: "heap"; readonly at: number; readonly cache?: string }
  | { readonly tag: "drawn" };

/**
 * Plan `graph` (one streaming step at batch 1 on the wasm backend `b`) onto
 * heap buffers: parameters from `fixed`, the token id at `ids` (int32), the
 * open caches `open:NAME` in `caches` (extended in place), the logits into
 * `logits` ([V] floats). Null when the graph has a node or an output the
 * plan does not cover.
 */
export const planHeapStep = (
  b: WasmBackend,
  graph: Graph,
  fixed: Readonly<Record<string, tf.TensorInfo>>,
  bufs: {
    readonly ids: number;
    readonly logits: number;
    readonly caches: ReadonlyMap<string, CacheBuffer>;
  },
): HeapStep | null => {
  const owned: number[] = [];
  const alloc = (bytes: number): number => {
    const raw = b.wasm._malloc(bytes + 16) >>> 0;
    if (raw === 0) throw new RangeError(`decode step: cannot allocate ${bytes} bytes`);
    owned.push(raw);
    return (raw + 15) & ~15;
  };
  const free = () => {
    for (const raw of owned.splice(0)) b.wasm._free(raw);
  };
  const values: (Value | undefined)[] = new Array(graph.nodes.length);
  const outs: (readonly Value[])[] = new Array(graph.nodes.length);
  const calls: ((uniform: number) => number)[] = [];
  const kernels: string[] = [];
  let drawn = false;
  const fail = (): null => (free(), null);
  const heapAt = (id: number): number | undefined => {
    const v = values[id];
    return v?.tag === "heap" ? v.at : undefined;
  };
  for (const node of graph.nodes) {
    const op = node.op;
    if (op._tag === "input") {
      const name = op.name;
      if (name in fixed) values[node.id] = { tag: "tensor", t: fixed[name] };
      else if (name === "tokens") values[node.id] = { tag: "heap", at: bufs.ids };
      else if (name.startsWith("open:") && bufs.caches.has(name.slice(5))) {
        const c = bufs.caches.get(name.slice(5))!;
        values[node.id] = { tag: "heap", at: c.at, cache: name.slice(5) };
      }
      // Any other feed (the carried state, the uniforms) has no value here: a call reading one
      // has no plan.
      continue;
    }
    if (op._tag === "part") {
      const v = outs[node.inputs[0]]?.[op.index];
      if (v === undefined) return fail();
      values[node.id] = v;
      continue;
    }
    if (op._tag !== "fused") return fail();
    const k = fusedKernel(op.kind, "wasm");
    const binding = k === undefined ? undefined : inferenceBindingOf(k, op);
    if (binding === undefined) return fail();
    const ins: Record<string, number> = {};
    binding.inputs.forEach((n, i) => n !== null && (ins[n] = node.inputs[i]));
    const planned = planCall(b, graph, node.shape, binding, ins, {
      values,
      heapAt,
      alloc,
      logits: bufs.logits,
      caches: bufs.caches,
    });
    if (planned === null) return fail();
    outs[node.id] = planned.outs;
    values[node.id] = planned.outs[0];
    calls.push(planned.call);
    kernels.push(binding.kernel);
    if (planned.outs.some((o) => o.tag === "drawn")) drawn = true;
  }
  // Every output must be what the plan writes: the logits (or the drawn id), or a cache in place.
  for (const [name, id] of Object.entries(graph.outputs)) {
    const v = values[id];
    if (name === "logits" && v?.tag === "heap" && v.at === bufs.logits) continue;
    if (name === "tokens" && v?.tag === "drawn") continue;
    if (name.startsWith("open:") && v?.tag === "heap" && v.cache === name.slice(5)) {
      const c = bufs.caches.get(v.cache)!;
      if (c.at === v.at) continue;
    }
    return fail();
  }
  return {
    run: (uniform) => {
      if (directCallObservers.size > 0) {
        for (const k of kernels) for (const observe of directCallObservers) observe(k);
      }
      let id = -1;
      for (const call of calls) {
        const r = call(uniform);
        if (r >= 0) id = r;
      }
      return drawn ? id : -1;
    },
    free,
  };
};

/** What `planCall` reads of the walk so far and how it gets buffers. */
interface PlanCtx {
  readonly values: readonly (Value | undefined)[];
  readonly heapAt: (id: number) => number | undefined;
  readonly alloc: (bytes: number) => number;
  readonly logits: number;
  readonly caches: ReadonlyMap<string, CacheBuffer>;
}

/** One region's call on fixed offsets, and its outputs; null for a region the plan cannot run. */
const planCall = (
  b: WasmBackend,
  graph: Graph,
  shape: readonly number[],
  binding: KernelBinding,
  ins: Readonly<Record<string, number>>,
  ctx: PlanCtx,
): { outs: readonly Value[]; call: (uniform: number) => number } | null => {
  const tensors = (names: readonly string[]): Record<string, tf.TensorInfo> | null => {
    const t: Record<string, tf.TensorInfo> = {};
    for (const n of names) {
      const v = ctx.values[ins[n]];
      if (v?.tag !== "tensor") return null;
      t[n] = v.t;
    }
    return t;
  };
  const attrs = binding.attrs;
  switch (binding.kernel) {
    case EMBED: {
      const t = tensors(["table", "pos"]);
      const ids = ctx.heapAt(ins.ids);
      if (t === null || ids === undefined || shape[0] !== 1) return null;
      const n = shape[1], d = shape[2];
      const out = ctx.alloc(4 * n * d);
      const tables = embedTables(b, { table: t.table, pos: t.pos }, attrs);
      const c = { ...tables, ids, nb: 1, n, d, start: attrs.start as number, out };
      return { outs: [{ tag: "heap", at: out }], call: () => (embedOnHeap(b, c), -1) };
    }
    case DECODE_BLOCK: {
      const x = ctx.heapAt(ins.x);
      const kv = [ctx.values[ins.kc], ctx.values[ins.vc]];
      if (x === undefined || shape[0] !== 1 || binding.keep !== 3) return null;
      if (!kv.every((v) => v?.tag === "heap" && v.cache !== undefined)) return null;
      const [kc, vc] = kv as Extract<Value, { tag: "heap" }>[];
      const bufK = ctx.caches.get(kc.cache!)!, bufV = ctx.caches.get(vc.cache!)!;
      const p = graph.nodes[ins.kc].shape[2], r = shape[1], d = shape[2];
      const names = binding.inputs.filter((n): n is string =>
        n !== null && !["x", "kc", "vc"].includes(n)
      );
      const params = tensors(names);
      if (params === null || bufK.cap !== bufV.cap || p + r > bufK.cap) return null;
      const heap = blockParamsOnHeap(b, params);
      const xo = ctx.alloc(4 * r * d);
      const work = ctx.alloc(blockWorkBytes(r, p, d, heap.w.w1.n));
      const c = {
        x,
        r,
        p,
        heads: attrs.heads as number,
        eps: attrs.eps as number,
        kc: kc.at,
        vc: vc.at,
        ps: bufK.cap,
        ko: kc.at,
        vo: vc.at,
        ts: bufK.cap,
        xo,
        ...heap,
        work,
      };
      return {
        outs: [{ tag: "heap", at: xo }, kc, vc],
        call: () => (blockOnHeap(b, c), -1),
      };
    }
    case LM_HEAD: {
      const x = ctx.heapAt(ins.x);
      const t = tensors(["g", "b", "w", "hb"]);
      if (x === undefined || t === null || shape.length === 0) return null;
      const xs = graph.nodes[ins.x].shape;
      if (xs[0] !== 1) return null;
      const rows = attrs.rows as "all" | "last" | "none";
      const draw = attrs.draw === true, keep = attrs.keep === true;
      if (rows !== "last") return null;
      const d = xs[2], v = attrs.vocab as number;
      const outs: Value[] = [draw ? { tag: "drawn" } : { tag: "heap", at: ctx.logits }];
      let keepArgs: { prev: number; t0: number; kept: number } | undefined;
      if (keep) {
        const prev = ctx.values[ins.prev];
        if (prev?.tag !== "heap" || prev.cache === undefined) return null;
        const t0 = graph.nodes[ins.prev].shape[1];
        if (t0 + xs[1] > ctx.caches.get(prev.cache)!.cap) return null;
        keepArgs = { prev: prev.at, t0, kept: prev.at };
        outs.push(prev);
      } else if (ins.prev !== undefined) return null;
      const base = {
        x,
        nb: 1,
        r: xs[1],
        slot: attrs.slot === true,
        rows,
        eps: attrs.eps as number,
        g: offsetOf(b, t.g),
        b: offsetOf(b, t.b),
        w: heapWeight(b, t.w, d, v),
        hb: offsetOf(b, t.hb),
        ...(keepArgs === undefined ? {} : { keep: keepArgs }),
        logits: ctx.logits,
      };
      const plain = { ...base, work: ctx.alloc(headWorkBytes(base, d, v)) };
      if (!draw) return { outs, call: () => (headOnHeap(b, plain), -1) };
      const u = new Float32Array(1);
      const drawing = {
        ...plain,
        draw: { uniforms: u, temperature: attrs.temperature as number, topK: attrs.topK as number },
      };
      return {
        outs,
        call: (uniform) => {
          u[0] = uniform;
          return headOnHeap(b, drawing)![0];
        },
      };
    }
    default:
      return null;
  }
};
