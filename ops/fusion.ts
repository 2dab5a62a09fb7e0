/**
 * The registry of kernels for fused regions: which region kinds the active
 * backend runs as one kernel of our own, and how.
 *
 * A fused region (an IR `fused` node, made by core/fuse.ts from a region the
 * model code marked) means its body; a {@linkcode FusedKernel} computes the
 * same values in one tfjs kernel dispatch instead of one per op. The fusion
 * stage asks {@linkcode canFuse} whether a region should become a fused node
 * at all (its kind has a kernel on this backend and the kernel takes these
 * shapes, with a gradient when the graph will be differentiated); the
 * lowering runs {@linkcode fusedKernel}'s `run`, or the body op by op where
 * no kernel is registered.
 *
 * The kernels themselves live in `ops/fusion/` and register here when the
 * backend starts (`registerFusionKernels`, ops/fusion/mod.ts).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { DType, FusedAttrs, Node, Op, Shape } from "../spec/ops.ts";

/** Which tfjs kernels one op's lowering runs, by registered kernel name. */
export interface KernelUse {
  /**
   * Kernels run forward. Includes `Identity`, which tfjs runs to save a
   * tensor for the backward pass whenever a gradient tape is recording.
   */
  readonly forward: readonly string[];
  /** Kernels run by the op's gradient. */
  readonly backward: readonly string[];
}

/** How lowered ops run: train/eval mode and where dropout seeds come from. */
export interface LowerCtx {
  /** Dropout is active only when training. */
  readonly training: boolean;
  /** Called once per active dropout op for its mask seed; make it deterministic for reproducible runs. */
  readonly seed: () => number;
}

/** A region as the fusion stage sees it: its kind, attributes and the shapes it reads and gives. */
export interface FusedRegion {
  /** The region's kind (`linear`, `attention`, …). */
  readonly kind: string;
  /** Its attributes (see `Op` `fused`). */
  readonly attrs: FusedAttrs;
  /** Shapes and dtypes of its inputs, in order. */
  readonly inputs: readonly { readonly shape: Shape; readonly dtype: DType }[];
  /** Shapes and dtypes of its outputs, in order. */
  readonly outputs: readonly { readonly shape: Shape; readonly dtype: DType }[];
}

/**
 * How a fused region runs as one tfjs kernel call, fixed for its op: the
 * kernel's name and attributes, the kernel's name for each region input in
 * order (`null`: not passed), and how many of the kernel's outputs, in
 * order, are the region's (the kernel may make more, which the caller
 * drops). The lowering runs it through the engine ({@linkcode runFusedKernel});
 * the direct step runner (ops/lower.ts `directGraph`) binds it once per
 * node and calls the kernel function itself.
 */
export interface KernelBinding {
  readonly kernel: string;
  readonly attrs: tf.NamedAttrMap;
  readonly inputs: readonly (string | null)[];
  /** The region's outputs: the first `keep` of the kernel's (all when absent). */
  readonly keep?: number;
}

/** The named inputs of a {@linkcode KernelBinding}'s kernel for the region's inputs. */
export const boundInputs = <T>(b: KernelBinding, inputs: readonly T[]): Record<string, T> => {
  const named: Record<string, T> = {};
  for (let i = 0; i < b.inputs.length; i++) {
    const name = b.inputs[i];
    if (name !== null) named[name] = inputs[i];
  }
  return named;
};

/** A kernel of our own for one kind of fused region. */
export interface FusedKernel {
  /** The region kind it computes. */
  readonly kind: string;
  /** The tfjs backends it runs on (`wasm`, `cpu`). */
  readonly backends: readonly string[];
  /**
   * Whether it takes this region: its shapes and attributes, and a gradient
   * when `gradients` (the graph has a loss and may be differentiated).
   */
  readonly supports: (region: FusedRegion, opts: { readonly gradients: boolean }) => boolean;
  /**
   * Every output of the region (differentiable with respect to the inputs
   * when the region was fused for a graph with gradients). Needed unless the
   * kernel has a `bind`, which then runs it.
   */
  readonly run?: (
    op: Extract<Op, { _tag: "fused" }>,
    inputs: readonly tf.Tensor[],
    ctx: LowerCtx,
  ) => tf.Tensor[];
  /**
   * For inference-only regions that are one tfjs kernel call: how, made once
   * per op ({@linkcode bindingOf}); the lowering runs it through the engine
   * ({@linkcode runFusedKernel}), and graphs made only of such regions run
   * without the engine (ops/lower.ts `directGraph`).
   */
  readonly bind?: (op: Extract<Op, { _tag: "fused" }>) => KernelBinding;
  /**
   * For regions whose `run` records a gradient: the one kernel call their
   * forward value is when none is wanted (no tape, no dropout), made once
   * per op. Graphs run without the engine use it (`directGraph`, which is
   * inference only by construction); undefined where the forward value is
   * not one call.
   */
  readonly bindInference?: (op: Extract<Op, { _tag: "fused" }>) => KernelBinding | undefined;
  /** The tfjs kernels `run` dispatches, forward and in its gradient. */
  readonly kernels: KernelUse;
}

/** Run a region bound by a {@linkcode KernelBinding} through the tfjs engine: its outputs. */
const runCall = (b: KernelBinding, inputs: readonly tf.Tensor[]): tf.Tensor[] => {
  const out = tf.engine().runKernel(b.kernel, boundInputs(b, inputs), b.attrs) as
    | tf.Tensor
    | tf.Tensor[];
  const all = Array.isArray(out) ? out : [out];
  if (b.keep === undefined || b.keep === all.length) return all;
  for (const t of all.slice(b.keep)) t.dispose();
  return all.slice(0, b.keep);
};

const bindings = new WeakMap<object, KernelBinding>();

/** How `kernel` calls its tfjs kernel for `op`, made once per op (undefined: it has no `bind`). */
export const bindingOf = (
  kernel: FusedKernel,
  op: Extract<Op, { _tag: "fused" }>,
): KernelBinding | undefined => {
  if (kernel.bind === undefined) return undefined;
  let b = bindings.get(op);
  if (b === undefined) bindings.set(op, b = kernel.bind(op));
  return b;
};

const inferenceBindings = new WeakMap<object, KernelBinding | null>();

/**
 * How `kernel` computes `op`'s forward value in one tfjs kernel call when no
 * gradient is wanted: its `bind`, else its `bindInference` (made once per
 * op), else undefined.
 */
export const inferenceBindingOf = (
  kernel: FusedKernel,
  op: Extract<Op, { _tag: "fused" }>,
): KernelBinding | undefined => {
  const b = bindingOf(kernel, op);
  if (b !== undefined || kernel.bindInference === undefined) return b;
  let i = inferenceBindings.get(op);
  if (i === undefined) inferenceBindings.set(op, i = kernel.bindInference(op) ?? null);
  return i ?? undefined;
};

/** Every output of a region on its kernel: through its binding, else the kernel's own `run`. */
export const runFusedKernel = (
  kernel: FusedKernel,
  op: Extract<Op, { _tag: "fused" }>,
  inputs: readonly tf.Tensor[],
  ctx: LowerCtx,
): tf.Tensor[] => {
  const b = bindingOf(kernel, op);
  if (b !== undefined) return runCall(b, inputs);
  return kernel.run!(op, inputs, ctx);
};

const registry = new Map<string, FusedKernel>();

/**
 * Register the kernel of a region kind (replacing an earlier one of the
 * same kind). Idempotent; `startBackend` registers the project's kernels.
 *
 * @example
 * ```ts
 * import { fusedKernel, registerFusedKernel } from "./fusion.ts";
 * registerFusedKernel({
 *   kind: "example",
 *   backends: ["cpu"],
 *   supports: () => true,
 *   run: () => [],
 *   kernels: { forward: [], backward: [] },
 * });
 * console.log(fusedKernel("example", "cpu")?.kind); // "example"
 * ```
 */
export const registerFusedKernel = (k: FusedKernel): void => {
  if (k.run === undefined && k.bind === undefined) {
    throw new TypeError(`fused kernel ${k.kind}: it needs run or bind`);
  }
  registry.set(k.kind, k);
};

/**
 * The kernel that runs regions of `kind` on `backend`, if one is registered.
 *
 * @example
 * ```ts
 * import { fusedKernel } from "./fusion.ts";
 * console.log(fusedKernel("no-such-kind", "wasm")); // undefined
 * ```
 */
export const fusedKernel = (kind: string, backend: string): FusedKernel | undefined => {
  const k = registry.get(kind);
  return k !== undefined && k.backends.includes(backend) ? k : undefined;
};

/**
 * Whether `backend` runs `region` as one kernel: what the fusion stage asks
 * before it makes a fused node. `gradients`: the graph will be
 * differentiated, so the kernel needs a gradient.
 *
 * @example
 * ```ts
 * import { canFuse } from "./fusion.ts";
 * const region = { kind: "no-such-kind", attrs: {}, inputs: [], outputs: [] };
 * console.log(canFuse(region, { backend: "wasm", gradients: false })); // false
 * ```
 */
export const canFuse = (
  region: FusedRegion,
  opts: { readonly backend: string; readonly gradients: boolean },
): boolean => fusedKernel(region.kind, opts.backend)?.supports(region, opts) ?? false;

/**
 * The input nodes of a fused region's body, in order (`in:0`, `in:1`, …):
 * their shapes and dtypes are the region's own (a q8 weight absorbed from
 * a `dequantize` is an input of dtype q8, dequantised inside the body).
 */
export const bodyInputs = (op: Extract<Op, { _tag: "fused" }>): Node[] =>
  op.body.nodes.filter((n) => n.op._tag === "input");

const epsOf = new WeakMap<object, number>();

/** The eps of the LayerNorms in a fused region's body (the model's; 1e-5 when it has none). */
export const layerNormEps = (op: Extract<Op, { _tag: "fused" }>): number => {
  const have = epsOf.get(op);
  if (have !== undefined) return have;
  let eps = 1e-5;
  for (const n of op.body.nodes) if (n.op._tag === "layerNorm") eps = n.op.eps;
  epsOf.set(op, eps);
  return eps;
};
