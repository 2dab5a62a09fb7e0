/**
 * The one door to TensorFlow.js for the rest of the project: core/ and
 * experiments/ import tfjs through here so that only ops/ depends on
 * `@tensorflow/*` directly.
 *
 * @module
 */
export * as tf from "@tensorflow/tfjs-core";
export type { Tensor } from "@tensorflow/tfjs-core";
