/**
 * How much memory a training run needs, estimated from the spec and the
 * batch before anything is allocated: a model too large for the machine is
 * refused with the estimate and the fields that drive it, instead of dying
 * in an allocation with a stack trace. `--dry-run` prints the same figures.
 *
 * The estimate is deliberately simple and errs high: 16 bytes per
 * parameter (float32 weights, their gradient, AdamW's two moments) plus the
 * activations a step keeps for its backward pass — per position of the
 * step, every layer's attention and feed-forward intermediates and its
 * attention weights over the context, and the logits with their gradient
 * (an adaptive softmax's tails for a share of the positions).
 * tfjs keeps its tensors on the WebAssembly heap, which a 32-bit module
 * caps at 4 GiB; the CPU backend is bounded by the machine's memory.
 *
 * @example
 * ```ts
 * import { estimateTrainingMemory } from "./memory.ts";
 * import { referenceCrt } from "../../spec/reference_specs.ts";
 * const m = estimateTrainingMemory(referenceCrt, 7_100_000, { rows: 20, positions: 70 });
 * console.log(m.totalBytes < 2 ** 30); // true
 * ```
 *
 * @module
 */
import type { ModelSpec } from "../../spec/types.ts";

/**
 * A training run's estimated memory, in bytes.
 *
 * @example
 * ```ts
 * import type { MemoryEstimate } from "./memory.ts";
 * const gib = (m: MemoryEstimate) => (m.totalBytes / 2 ** 30).toFixed(2);
 * ```
 */
export interface MemoryEstimate {
  /** Weights, gradients and the optimizer's two moments (16 bytes per parameter). */
  readonly parameterBytes: number;
  /** What one step keeps for its backward pass. */
  readonly activationBytes: number;
  /** Their sum. */
  readonly totalBytes: number;
}

/**
 * Estimates a training step's memory for `paramCount` parameters and a batch
 * of `rows` sequences of `positions` model positions each (B and K·S for a
 * language model, B clips of L frames for a classifier).
 *
 * @example
 * ```ts
 * import { estimateTrainingMemory } from "./memory.ts";
 * import { referenceCrt } from "../../spec/reference_specs.ts";
 * const small = estimateTrainingMemory(referenceCrt, 1e6, { rows: 1, positions: 35 });
 * const big = estimateTrainingMemory(referenceCrt, 1e6, { rows: 20, positions: 35 });
 * console.log(big.activationBytes > small.activationBytes); // true
 * ```
 */
export function estimateTrainingMemory(
  model: ModelSpec,
  paramCount: number,
  batch: { readonly rows: number; readonly positions: number },
): MemoryEstimate {
  const positions = batch.rows * batch.positions;
  const context = model.segmentLen + (model._tag === "xl" ? model.memLen : 0) + 1;
  const perLayer = 12 * model.dModel + 3 * model.dFF + 2 * model.nHeads * context;
  const outputs = outputsPerPosition(model);
  const floats = positions * (model.nLayers * perLayer + 4 * model.dModel + 3 * outputs);
  const parameterBytes = 16 * paramCount;
  const activationBytes = 4 * floats;
  return { parameterBytes, activationBytes, totalBytes: parameterBytes + activationBytes };
}

/**
 * Logits a position keeps: the classes, the vocabulary, or with an adaptive
 * softmax the head (shortlist and one logit per tail) plus the tails' logits
 * of the positions that fall in them, taken as an eighth of the positions
 * for every tail (word frequencies fall off fast; WikiText-103's shares at
 * cutoffs 20k/40k/200k are 6 %, 2 % and 1 %).
 */
const outputsPerPosition = (model: ModelSpec): number => {
  const r = model.readout;
  if (r._tag === "classifier") return r.nClasses;
  if (r._tag !== "adaptive") return model.vocabSize;
  const edges = [...r.cutoffs, model.vocabSize];
  let tails = 0;
  for (let i = 1; i < edges.length; i++) tails += edges[i] - edges[i - 1];
  return r.cutoffs[0] + r.cutoffs.length + tails / 8;
};

/** The WebAssembly heap's ceiling: a 32-bit module addresses at most 4 GiB. */
export const WASM_HEAP_BYTES = 4 * 2 ** 30;

/**
 * The memory a run may use: the WebAssembly heap's 4 GiB on the `wasm`
 * backend (or the machine's memory if smaller), the machine's memory on `cpu`.
 *
 * @example
 * ```ts
 * import { memoryLimit } from "./memory.ts";
 * console.log(memoryLimit("wasm") <= 4 * 2 ** 30); // true
 * ```
 */
export function memoryLimit(backend: "wasm" | "cpu"): number {
  let system = Infinity;
  try {
    system = Deno.systemMemoryInfo().total;
  } catch {
    // Without --allow-sys the machine's size is unknown: the heap's ceiling stands.
  }
  return backend === "wasm" ? Math.min(WASM_HEAP_BYTES, system) : system;
}

const gib = (bytes: number): string =>
  bytes >= 2 ** 40 ? `${(bytes / 2 ** 40).toFixed(1)} TiB` : `${(bytes / 2 ** 30).toFixed(2)} GiB`;

/**
 * `null` when the estimate fits under `limit`; else a message naming the
 * estimate, the limit and the fields that drive the larger part.
 *
 * @example
 * ```ts
 * import { memoryProblem } from "./memory.ts";
 * import { referenceCrt } from "../../spec/reference_specs.ts";
 * const huge = { ...referenceCrt, dModel: 100_000_000 };
 * const m = { parameterBytes: 2 ** 45, activationBytes: 2 ** 30, totalBytes: 2 ** 45 + 2 ** 30 };
 * console.log(memoryProblem(huge, m, 4 * 2 ** 30)?.startsWith("model.dModel")); // true
 * ```
 */
export function memoryProblem(
  model: ModelSpec,
  m: MemoryEstimate,
  limit: number,
  batchFields = "training.batchSize",
): string | null {
  if (m.totalBytes <= limit) return null;
  const dims: [string, number][] = [
    ["model.dModel", model.dModel],
    ["model.dFF", model.dFF],
    ["model.vocabSize", model.vocabSize],
    ["model.nLayers", model.nLayers],
  ];
  dims.sort((a, b) => b[1] - a[1]);
  const [field, value] = dims[0];
  const what = m.parameterBytes >= m.activationBytes
    ? `${field} = ${value}: the parameters, their gradients and AdamW's moments need ` +
      `≈ ${gib(m.parameterBytes)}`
    : `${batchFields} and model.segmentLen: one step's activations need ≈ ${
      gib(m.activationBytes)
    }`;
  return `${what}; the run needs ≈ ${gib(m.totalBytes)} in all, more than the ${gib(limit)} ` +
    `it can have here (nothing was allocated or written)`;
}
