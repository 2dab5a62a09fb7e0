/**
 * A streaming step planned onto buffers a decode loop owns: the step graph
 * of one token at one position of a segment (spec/stream.ts) — an `embed`
 * region, one `decodeBlock` per layer, an `lmHead`; at the segment's start
 * also the memory token's `linear`, a reshape and a concat; at its end the
 * mean of its rows and the `recurrent` memory update — lowered once to
 * calls of the regions' heap kernels on fixed offsets. The open segment's
 * caches and the carried state are the loop's buffers, the caches with
 * room for the whole segment, extended in place; the intermediate rows,
 * the kernels' scratch, the token id and the logits have buffers of their
 * own, made once per plan. A token then makes no tensor, frees nothing and looks nothing up:
 * what the tensor step (ops/lower.ts `directGraph`) spends per token on
 * tfjs's bookkeeping and on copying the caches into new ones goes.
 *
 * The values are the direct step's, bit for bit: the same kernels run in
 * the same order on the same data (a cache extended in place holds the rows
 * a copy would; the mean sums as tfjs's wasm kernel does). A graph with any
 * other node or feed — Transformer-XL's layer inputs, CRT's passed-on slot
 * row, several rows read out — has no plan (`planHeapStep` gives null) and
 * runs as tensors.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import type { Graph } from "../../spec/ops.ts";
import { fusedKernel, inferenceBindingOf, type KernelBinding } from "../fusion.ts";
import { heapArena, offsetOf, type WasmBackend } from "../heap.ts";
import { numel } from "../../spec/params.ts";
import { directCallObservers } from "../lower.ts";
import { blockOnHeap, blockParamsOnHeap, blockWorkBytes, DECODE_BLOCK } from "./decode.ts";
import { EMBED, embedOnHeap, embedTables, headOnHeap, headWorkBytes, LM_HEAD } from "./stream.ts";
import { heapWeight } from "./weights.ts";
import { LINEAR, linearOnHeap } from "./linear.ts";
import { RECURRENT, recurrentOnHeap, recurrentParamsOnHeap } from "./recurrent.ts";

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

/** A carried state `state:NAME` a decode loop holds on the heap: `floats` floats at `at`. */
export interface StateBuffer {
  readonly at: number;
  readonly floats: number;
}

/**
 * Plan `graph` (one streaming step at batch 1 on the wasm backend `b`) onto
 * heap buffers: parameters from `fixed`, the token id at `ids` (int32), the
 * open caches `open:NAME` in `caches` (extended in place, or written from
 * their first row at a segment's start), the carried state `state:NAME` in
 * `states` (the new state copied back into them when the step closes the
 * segment), the logits into `logits` ([V] floats). Null when the graph has
 * a node or an output the plan does not cover.
 */
export const planHeapStep = (
  b: WasmBackend,
  graph: Graph,
  fixed: Readonly<Record<string, tf.TensorInfo>>,
  bufs: {
    readonly ids: number;
    readonly logits: number;
    readonly caches: ReadonlyMap<string, CacheBuffer>;
    readonly states: ReadonlyMap<string, StateBuffer>;
  },
): HeapStep | null => {
  const { alloc, free } = heapArena(b, "decode step");
  const values: (Value | undefined)[] = new Array(graph.nodes.length);
  const outs: (readonly Value[])[] = new Array(graph.nodes.length);
  const calls: ((uniform: number) => number)[] = [];
  const kernels: string[] = [];
  const fail = (): null => (free(), null);
  const heapAt = (id: number): number | undefined => {
    const v = values[id];
    return v?.tag === "heap" ? v.at : undefined;
  };
  // Where the open caches the step gives back are written: output i of node n → cache name.
  const dests = new Map<string, string>();
  for (const [name, id] of Object.entries(graph.outputs)) {
    if (!name.startsWith("open:") || !bufs.caches.has(name.slice(5))) continue;
    const op = graph.nodes[id].op;
    dests.set(
      op._tag === "part" ? `${graph.nodes[id].inputs[0]}:${op.index}` : `${id}:0`,
      name.slice(5),
    );
  }
  const dest = (id: number, index: number) => {
    const name = dests.get(`${id}:${index}`);
    return name === undefined ? undefined : { name, ...bufs.caches.get(name)! };
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
      } else if (name.startsWith("state:") && bufs.states.has(name.slice(6))) {
        values[node.id] = { tag: "heap", at: bufs.states.get(name.slice(6))!.at };
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
    if (op._tag === "reshape" || (op._tag === "concat" && node.inputs.length === 1)) {
      const v = values[node.inputs[0]];
      if (v?.tag !== "heap") return fail();
      values[node.id] = { tag: "heap", at: v.at }; // a view: the same floats
      continue;
    }
    if (op._tag === "concat" || op._tag === "mean") {
      const planned = op._tag === "concat"
        ? planConcat(b, graph, node.id, op.axis, values, alloc)
        : planMean(b, graph, node.id, op.axis, values, alloc);
      if (planned === null) return fail();
      values[node.id] = { tag: "heap", at: planned.at };
      calls.push(planned.call);
      kernels.push(op._tag === "concat" ? "Concat" : "Mean");
      continue;
    }
    if (op._tag !== "fused") return fail();
    const k = fusedKernel(op.kind, "wasm");
    const binding = k === undefined ? undefined : inferenceBindingOf(k, op);
    if (binding === undefined) return fail();
    const ins: Record<string, number> = {};
    binding.inputs.forEach((n, i) => n !== null && (ins[n] = node.inputs[i]));
    const planned = planCall(b, graph, node.id, binding, ins, {
      values,
      heapAt,
      alloc,
      logits: bufs.logits,
      caches: bufs.caches,
      dest,
    });
    if (planned === null) return fail();
    outs[node.id] = planned.outs;
    values[node.id] = planned.outs[0];
    calls.push(planned.call);
    kernels.push(binding.kernel);
  }
  // Every output must be what the plan writes: the logits (or the drawn id), a cache in place,
  // or a new carried state, copied into its buffer once every call has read the old one.
  for (const [name, id] of Object.entries(graph.outputs)) {
    const v = values[id];
    if (name === "logits" && v?.tag === "heap" && v.at === bufs.logits) continue;
    if (name === "tokens" && v?.tag === "drawn") continue;
    if (name.startsWith("open:") && v?.tag === "heap" && v.cache === name.slice(5)) {
      const c = bufs.caches.get(v.cache)!;
      if (c.at === v.at) continue;
    }
    const state = name.startsWith("state:") ? bufs.states.get(name.slice(6)) : undefined;
    const floats = floatsOf(graph, id);
    if (state !== undefined && v?.tag === "heap" && state.floats === floats) {
      const from = v.at >>> 2, to = state.at >>> 2;
      calls.push(() => (b.wasm.HEAPF32.copyWithin(to, from, from + floats), -1));
      continue;
    }
    return fail();
  }
  return {
    run: (uniform) => {
      if (directCallObservers.size > 0) {
        for (const k of kernels) for (const observe of directCallObservers) observe(k);
      }
      let id = -1; // the readout's draw, if it draws
      for (const call of calls) id = Math.max(id, call(uniform));
      return id;
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
  /** The cache output `index` of node `id` is written to, if it is one the step gives back. */
  readonly dest: (id: number, index: number) => (CacheBuffer & { name: string }) | undefined;
}

/** The node's floats: its shape's size. */
const floatsOf = (graph: Graph, id: number): number => numel(graph.nodes[id].shape);

/** A plain op along `axis` planned onto a buffer of its own: that buffer and the call. */
type PlanOp = (
  b: WasmBackend,
  graph: Graph,
  id: number,
  axis: number,
  values: readonly (Value | undefined)[],
  alloc: (bytes: number) => number,
) => { at: number; call: () => number } | null;

/**
 * A concatenation at batch 1 whose axis has only size-1 axes before it: its
 * inputs' floats one after another, copied into a buffer of its own.
 */
const planConcat: PlanOp = (b, graph, id, axis, values, alloc) => {
  const node = graph.nodes[id];
  const a = axis < 0 ? axis + node.shape.length : axis;
  if (node.shape.slice(0, a).some((n) => n !== 1)) return null;
  const moves: [number, number, number][] = []; // from, to, floats
  const at = alloc(4 * floatsOf(graph, id));
  let to = at >>> 2;
  for (const i of node.inputs) {
    const v = values[i];
    if (v?.tag !== "heap") return null;
    moves.push([v.at >>> 2, to, floatsOf(graph, i)]);
    to += floatsOf(graph, i);
  }
  return {
    at,
    call: () => {
      const h = b.wasm.HEAPF32;
      for (const [f, t, n] of moves) h.copyWithin(t, f, f + n);
      return -1;
    },
  };
};

/**
 * A mean over one axis, as tfjs's wasm `Mean` computes it: per output, the
 * float32 sum of its values in order, divided by their count (float32
 * arithmetic through `Math.fround`: exact for one operation on two floats).
 */
const planMean: PlanOp = (b, graph, id, axis, values, alloc) => {
  const x = graph.nodes[graph.nodes[id].inputs[0]];
  const v = values[x.id];
  if (v?.tag !== "heap") return null;
  const a = axis < 0 ? axis + x.shape.length : axis;
  const outer = numel(x.shape.slice(0, a)), r = x.shape[a], inner = numel(x.shape.slice(a + 1));
  const at = alloc(4 * outer * inner);
  const src = v.at >>> 2, dst = at >>> 2;
  const fr = Math.fround;
  return {
    at,
    call: () => {
      const h = b.wasm.HEAPF32;
      for (let o = 0; o < outer; o++) {
        for (let j = 0; j < inner; j++) {
          let sum = 0;
          for (let i = 0; i < r; i++) sum = fr(sum + h[src + (o * r + i) * inner + j]);
          h[dst + o * inner + j] = fr(sum / r);
        }
      }
      return -1;
    },
  };
};

/** One region's call on fixed offsets, and its outputs; null for a region the plan cannot run. */
const planCall = (
  b: WasmBackend,
  graph: Graph,
  id: number,
  binding: KernelBinding,
  ins: Readonly<Record<string, number>>,
  ctx: PlanCtx,
): { outs: readonly Value[]; call: (uniform: number) => number } | null => {
  const shape = graph.nodes[id].shape;
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
  if (shape[0] !== 1) return null;
  switch (binding.kernel) {
    case EMBED: {
      const t = tensors(["table", "pos"]);
      const ids = ctx.heapAt(ins.ids);
      if (t === null || ids === undefined) return null;
      const n = shape[1], d = shape[2];
      const out = ctx.alloc(4 * n * d);
      const tables = embedTables(b, { table: t.table, pos: t.pos }, attrs);
      const c = { ...tables, ids, nb: 1, n, d, start: attrs.start as number, out };
      return { outs: [{ tag: "heap", at: out }], call: () => (embedOnHeap(b, c), -1) };
    }
    case LINEAR: {
      const x = ctx.heapAt(ins.x);
      const t = tensors(["w", ...(ins.bias === undefined ? [] : ["bias"])]);
      const residual = ins.residual === undefined ? 0 : ctx.heapAt(ins.residual);
      if (x === undefined || t === null || residual === undefined || shape.length !== 2) {
        return null;
      }
      const [m, n] = shape, k = graph.nodes[ins.x].shape[1];
      const transposeW = attrs.transposeW === true;
      const w = heapWeight(b, t.w, k, n);
      const out = ctx.alloc(4 * m * n);
      const bias = t.bias === undefined ? 0 : offsetOf(b, t.bias);
      const c = { x, m, w, transposeW, bias, residual, relu: attrs.relu === true, out };
      return { outs: [{ tag: "heap", at: out }], call: () => (linearOnHeap(b, c), -1) };
    }
    case RECURRENT: {
      const x = ctx.heapAt(ins.x), h = ctx.heapAt(ins.h);
      const names = binding.inputs.filter((n): n is string => n !== null && n !== "x" && n !== "h");
      const params = tensors(names);
      if (x === undefined || h === undefined || params === null || shape.length !== 2) return null;
      const din = graph.nodes[ins.x].shape[1], m = shape[1];
      const [out, hc, saved, gx, hr, hz] = [m, m, 3 * m, 3 * m, m, m].map((n) => ctx.alloc(4 * n));
      const c = {
        x,
        h,
        nb: 1,
        ...recurrentParamsOnHeap(b, params, din, m),
        out,
        hc,
        saved,
        gx,
        hr,
        hz,
      };
      return {
        outs: [{ tag: "heap", at: out }, { tag: "heap", at: hc }, { tag: "heap", at: saved }],
        call: () => (recurrentOnHeap(b, c), -1),
      };
    }
    case DECODE_BLOCK: {
      const x = ctx.heapAt(ins.x);
      if (x === undefined) return null;
      const r = shape[1], d = shape[2];
      let p = 0, k: CacheBuffer & { name?: string }, v: CacheBuffer & { name?: string };
      let kv: readonly [Value, Value];
      if (ins.kc !== undefined) {
        // Cached rows: the caches extended in place (and given back there, if at all).
        const c = [ctx.values[ins.kc], ctx.values[ins.vc]];
        if (!c.every((u) => u?.tag === "heap" && u.cache !== undefined)) return null;
        const [kc, vc] = c as Extract<Value, { tag: "heap" }>[];
        k = ctx.caches.get(kc.cache!)!, v = ctx.caches.get(vc.cache!)!;
        for (const [i, name] of [[1, kc.cache], [2, vc.cache]] as const) {
          const to = ctx.dest(id, i);
          if (to !== undefined && to.name !== name) return null;
        }
        p = graph.nodes[ins.kc].shape[2];
        kv = [kc, vc];
      } else {
        // The segment's first rows: the caches written from their first row.
        const dk = ctx.dest(id, 1), dv = ctx.dest(id, 2);
        if (dk === undefined || dv === undefined) return null;
        k = dk, v = dv;
        kv = [{ tag: "heap", at: dk.at, cache: dk.name }, {
          tag: "heap",
          at: dv.at,
          cache: dv.name,
        }];
      }
      const names = binding.inputs.filter((n): n is string =>
        n !== null && !["x", "kc", "vc"].includes(n)
      );
      const params = tensors(names);
      if (params === null || k.cap !== v.cap || p + r > k.cap) return null;
      const heap = blockParamsOnHeap(b, params);
      const xo = ctx.alloc(4 * r * d);
      const work = ctx.alloc(blockWorkBytes(r, p, d, heap.w.w1.n));
      const c = {
        x,
        r,
        p,
        heads: attrs.heads as number,
        eps: attrs.eps as number,
        kc: p === 0 ? 0 : k.at,
        vc: p === 0 ? 0 : v.at,
        ps: k.cap,
        ko: k.at,
        vo: v.at,
        ts: k.cap,
        xo,
        ...heap,
        work,
      };
      return { outs: [{ tag: "heap", at: xo }, ...kv], call: () => (blockOnHeap(b, c), -1) };
    }
    case LM_HEAD: {
      const x = ctx.heapAt(ins.x);
      const t = tensors(["g", "b", "w", "hb"]);
      if (x === undefined || t === null) return null;
      const xs = graph.nodes[ins.x].shape;
      const rows = attrs.rows as "all" | "last" | "none";
      const draw = attrs.draw === true, keep = attrs.keep === true, slot = attrs.slot === true;
      if (rows !== "last") return null;
      const d = xs[2], v = attrs.vocab as number, n = xs[1] - (slot ? 1 : 0);
      const outs: Value[] = [draw ? { tag: "drawn" } : { tag: "heap", at: ctx.logits }];
      let keepArgs: { prev: number; t0: number; kept: number } | undefined;
      if (keep) {
        let kept: Extract<Value, { tag: "heap" }>, t0 = 0;
        if (ins.prev !== undefined) {
          // The rows so far, extended in place.
          const prev = ctx.values[ins.prev];
          if (prev?.tag !== "heap" || prev.cache === undefined) return null;
          const to = ctx.dest(id, outs.length);
          if (to !== undefined && to.name !== prev.cache) return null;
          t0 = graph.nodes[ins.prev].shape[1];
          kept = prev;
        } else {
          const to = ctx.dest(id, outs.length);
          if (to === undefined) return null;
          kept = { tag: "heap", at: to.at, cache: to.name };
        }
        if (t0 + n > ctx.caches.get(kept.cache!)!.cap) return null;
        keepArgs = { prev: kept.at, t0, kept: kept.at };
        outs.push(kept);
      } else if (ins.prev !== undefined) return null;
      const base = {
        x,
        nb: 1,
        r: xs[1],
        slot,
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
