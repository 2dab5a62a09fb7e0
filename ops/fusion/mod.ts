/**
 * The kernels of fused regions, registered at backend start-up: each
 * module's tfjs kernels (by name, on the wasm backend) and each region
 * kind's entry in ops/fusion.ts.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { registerFusedKernel } from "../fusion.ts";
import { attentionKernel, attentionKernels } from "./attention.ts";
import { blocks } from "./blocks.ts";
import { linearKernel, linearKernels } from "./linear.ts";
import { layerNormKernels } from "./norm.ts";
import { recurrentKernel, recurrentKernels } from "./recurrent.ts";
import { decodeBlockKernel, decodeKernels } from "./decode.ts";
import { q8FusedKernels, q8Kernels } from "./q8.ts";
import { streamFusedKernels, streamKernels } from "./stream.ts";
import { sampleKernels } from "./sample.ts";

const TFJS_KERNELS: readonly tf.KernelConfig[] = [
  ...linearKernels,
  ...layerNormKernels,
  ...attentionKernels,
  ...recurrentKernels,
  ...decodeKernels,
  ...q8Kernels,
  ...streamKernels,
  ...sampleKernels,
];

/**
 * Register every kernel of fused regions (idempotent; `startBackend` calls
 * it), and compile their module so that the first call need not.
 *
 * @example
 * ```ts
 * import { fusedKernel } from "../fusion.ts";
 * import { registerFusionKernels } from "./mod.ts";
 * await registerFusionKernels();
 * console.log(fusedKernel("linear", "wasm")?.kind); // "linear"
 * ```
 */
export const registerFusionKernels = async (): Promise<void> => {
  for (const k of TFJS_KERNELS) {
    if (tf.getKernel(k.kernelName, k.backendName) === undefined) tf.registerKernel(k);
  }
  for (
    const k of [
      linearKernel,
      attentionKernel,
      recurrentKernel,
      decodeBlockKernel,
      ...q8FusedKernels,
      ...streamFusedKernels,
    ]
  ) {
    registerFusedKernel(k);
  }
  await blocks.compile();
};
