/**
 * Kernel dispatches: how many tfjs kernels a piece of work asks the backend
 * for. Each dispatch costs a fixed few microseconds (argument checks, tensor
 * bookkeeping, the call into WebAssembly), so on small shapes the count, not
 * the FLOPs, sets the time; the bench tables print it beside the times.
 *
 * A dispatch is a call of the engine's `runKernel` from outside any other
 * kernel: every op (`tf.add`, …), the ops inside a `customGrad` forward and
 * every op a gradient runs. A kernel that runs further kernels through the
 * engine is one dispatch; what it runs inside is its own business and is not
 * counted (kernels that call their helpers directly never reach the engine).
 *
 * A streaming step that runs without the engine (ops/lower.ts `directGraph`)
 * calls the kernel functions itself: each such call counts as one dispatch.
 *
 * Counting wraps the engine for the duration of one call and is meant for a
 * separate, untimed step: the wrapper itself costs a little per call.
 *
 * @module
 */
import { directCallObservers } from "../ops/lower.ts";
import { tf } from "../ops/tf.ts";

/** What {@linkcode countKernels} saw: dispatches in total and by kernel name. */
export interface KernelCount<R> {
  /** What the counted function returned. */
  readonly result: R;
  /** Top-level kernel dispatches. */
  readonly calls: number;
  /** The same calls by kernel name. */
  readonly byName: ReadonlyMap<string, number>;
}

/**
 * Run `f` and count the tfjs kernel dispatches it makes (see the module doc).
 * Not re-entrant: counting inside a count throws.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../ops/backend.ts";
 * import { tf } from "../ops/tf.ts";
 * import { countKernels } from "./_kernels.ts";
 * await startBackend({ backend: "cpu" });
 * const a = tf.ones([2, 2]);
 * const c = countKernels(() => tf.tidy(() => tf.add(tf.mul(a, a), a).dataSync()));
 * assert.equal(c.calls, 2); // Multiply, Add
 * a.dispose();
 * ```
 */
export const countKernels = <R>(f: () => R): KernelCount<R> => {
  const engine = tf.engine();
  // The engine's own runKernel lives on its prototype: an own property is our wrapper.
  if (Object.hasOwn(engine, "runKernel")) throw new Error("countKernels: already counting");
  const original = engine.runKernel;
  const byName = new Map<string, number>();
  let depth = 0, calls = 0;
  engine.runKernel = function (this: typeof engine, ...args: Parameters<typeof original>) {
    if (depth === 0) {
      calls++;
      byName.set(args[0], (byName.get(args[0]) ?? 0) + 1);
    }
    depth++;
    try {
      return original.apply(this, args);
    } finally {
      depth--;
    }
  } as typeof original;
  const direct = (kernel: string) => {
    if (depth > 0) return;
    calls++;
    byName.set(kernel, (byName.get(kernel) ?? 0) + 1);
  };
  directCallObservers.add(direct);
  try {
    return { result: f(), calls, byName };
  } finally {
    directCallObservers.delete(direct);
    delete (engine as { runKernel?: unknown }).runKernel; // the prototype's shows again
  }
};
