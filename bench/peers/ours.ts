/**
 * Our side of `bench/peers.ts`: the reference CRT (`referenceCrt`, only S
 * varied) compiled by this project and run on tfjs-wasm with one matmul
 * tier, measured exactly like `torch_ref.py` measures PyTorch:
 *
 * - `train`: full `trainOn` steps (loss, gradients, clip 0.25, AdamW lr
 *   1e-3) on random windows of K = 2 segments per stream, B = 20, the
 *   memory carried from step to step;
 * - `infer`: `Program.forward` on one segment, B = 20, logits for every
 *   position, no gradient tape;
 * - `stream`: batch 1, one token per call, its next-token logits ([V])
 *   read back to the host; one step is one segment of S tokens (the memory
 *   update runs when it fills). Variant `kvcache` (default) runs through a
 *   model file, the deploy path: the parameters encoded by
 *   `encodeModelFile` (float32, or int8 with `--weights int8`), loaded by
 *   `loadModel`, and one `TokenStream`'s `logits` per token (a decode loop,
 *   `Program.openDecoder`, with the key/value cache) — whatever `loadModel`
 *   makes of int8 weights is what is measured. Variant `recompute` reruns
 *   the open prefix of the segment for each token (no key/value cache)
 *   through `Program.inferStep`, on `Program.init`'s parameters.
 * - `profile`: one training step under `tf.profile`: top kernels by time,
 *   the heaviest matmul shapes, peak tensor bytes.
 * - `count` (a serve command flag): one untimed step with its kernel
 *   dispatches counted (`bench/_kernels.ts`).
 *
 * Standalone: `deno run -A bench/peers/ours.ts --tier native --mode train
 * --segment-len 35` prints a model line and a result line (JSON); add
 * `--variant recompute` or `--weights int8` for `--mode stream`. With
 * `--mode serve` it speaks the line protocol of `_protocol.ts`.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { startBackend } from "../../ops/backend.ts";
import { startMatmulWorkers } from "../../ops/matmul.ts";
import { tf } from "../../ops/tf.ts";
import type { Params, Program, Stream } from "../../core/program.ts";
import { compile } from "../../core/compile.ts";
import { flattenParams } from "../../core/params.ts";
import { disposeTraining, startTraining, trainOn, type TrainState } from "../../core/train.ts";
import { loadModel } from "../../deploy/loaded.ts";
import { encodeModelFile } from "../../deploy/model_file.ts";
import { referenceCrt } from "../../spec/reference_specs.ts";
import { countKernels } from "../_kernels.ts";
import {
  type Command,
  median,
  onePer,
  type Phase,
  readLines,
  type Reply,
  type StreamVariant,
  tokenSource,
  type Weights,
} from "./_protocol.ts";

/** Options of one runner; the defaults are the reference setup (docs/substrate.md). */
export interface RunnerOptions {
  /** B for train and infer (stream always uses 1). */
  readonly batchSize: number;
  /** How `stream` runs on `Program.init`'s parameters (default `recompute`). */
  readonly stream?: StreamVariant;
  /** K: segments per training window, all in one BPTT span. */
  readonly bpttSegments: number;
  /** Seed of parameters and token ids. */
  readonly seed: number;
}

/**
 * One phase of our model at one segment length, built once: `step()` runs
 * one step and returns its wall time in seconds, input generation excluded.
 *
 * @example
 * ```ts
 * import type { Runner } from "./ours.ts";
 * const fake: Runner = { tokensPerStep: 1, step: () => 0.001, dispose: () => {} };
 * console.log(fake.tokensPerStep / fake.step()); // tokens/s
 * ```
 */
export interface Runner {
  /** Tokens one step processes: B · K · S (train), B · S (infer), S (stream). */
  readonly tokensPerStep: number;
  /** Run one step; its wall time in seconds. */
  step(): number;
  /** Free every tensor the runner holds. */
  dispose(): void;
}

/**
 * The reference CRT at segment length `segmentLen`, compiled for the active
 * backend; throws when compilation fails (it cannot for the reference spec
 * on wasm or cpu: a failure is a bug to see, not to handle).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startBackend } from "../../ops/backend.ts";
 * import { compileReference } from "./ours.ts";
 * await startBackend({ backend: "cpu" });
 * assert.equal(compileReference(35).paramCount, 7_178_768);
 * ```
 */
export const compileReference = (segmentLen: number): Program => {
  const c = compile({ ...referenceCrt, segmentLen });
  if (E.isLeft(c)) throw new Error(`${c.left.stage}: ${c.left.message}`);
  return c.right;
};

const LR = 1e-3; // the reference recipe (docs/substrate.md); clip 0.25 is defaultAdamW's

/**
 * Build the runner of `phase` for `program` (the backend must be started).
 *
 * @example
 * ```ts
 * import { startBackend } from "../../ops/backend.ts";
 * import { compileReference, makeRunner } from "./ours.ts";
 * await startBackend({ backend: "cpu" });
 * const r = makeRunner("infer", compileReference(4), { batchSize: 1, bpttSegments: 2, seed: 0 });
 * console.log(r.tokensPerStep); // 4
 * r.dispose();
 * ```
 */
export const makeRunner = (phase: Phase, program: Program, opts: RunnerOptions): Runner => {
  const s = program.spec.segmentLen, v = program.spec.vocabSize;
  const ids = tokenSource(opts.seed + 1, v);
  if (phase === "train") {
    const b = opts.batchSize, len = opts.bpttSegments * s;
    let ts: TrainState = startTraining(program, { seed: opts.seed, batchSize: b });
    let n = 0;
    return {
      tokensPerStep: b * len,
      step: () => {
        const window = tf.tensor2d(ids(b * (len + 1)), [b, len + 1], "int32");
        const tokens = tf.slice(window, [0, 0], [b, len]); // [B, K·S]
        const targets = tf.slice(window, [0, 1], [b, len]); // [B, K·S], the next ids
        const t0 = performance.now();
        ts = trainOn(program, ts, { tokens, targets }, {
          lr: LR,
          bpttSegments: opts.bpttSegments,
          seed: n++,
        }).next;
        const dt = performance.now() - t0;
        tf.dispose([window, tokens, targets]);
        return dt / 1000;
      },
      dispose: () => disposeTraining(program, ts),
    };
  }
  const params = program.init(opts.seed);
  const disposeParams = () => tf.dispose(Object.values(flattenParams(params)));
  if (phase === "infer") {
    const b = opts.batchSize;
    const state = program.initState(b);
    return {
      tokensPerStep: b * s,
      step: () => {
        const tokens = tf.tensor2d(ids(b * s), [b, s], "int32");
        const t0 = performance.now();
        // tfjs-wasm runs each kernel synchronously inside the call, so the
        // logits are computed when forward returns; reading them back would
        // time a 28 MB copy that PyTorch's side does not make.
        const out = program.forward(params, state, tokens);
        out.logits.dispose();
        program.disposeState(out.state);
        const dt = performance.now() - t0;
        tokens.dispose();
        return dt / 1000;
      },
      dispose: () => {
        program.disposeState(state);
        disposeParams();
      },
    };
  }
  return streamRunner(program, params, {
    recompute: (opts.stream ?? "recompute") === "recompute",
    ids,
    dispose: disposeParams,
  });
};

/**
 * A batch-1 stream over `program` and `params`: one step feeds one segment,
 * a token per `inferStep`, and reads each token's logits back.
 */
const streamRunner = (
  program: Program,
  params: Params,
  opts: { recompute: boolean; ids: (n: number) => Int32Array; dispose: () => void },
): Runner => {
  const s = program.spec.segmentLen;
  const stepOpts = { recompute: opts.recompute, readout: "last" } as const;
  let stream: Stream = program.openStream(1);
  return {
    tokensPerStep: s,
    step: () => {
      const segment = opts.ids(s);
      const t0 = performance.now();
      for (const id of segment) {
        const r = program.inferStep(params, stream, Int32Array.of(id), stepOpts);
        r.logits.dataSync(); // [1, 1, V]: the next-token logits a sampler reads
        r.logits.dispose();
        program.disposeState(stream.state);
        stream = r.stream;
      }
      return (performance.now() - t0) / 1000;
    },
    dispose: () => {
      program.disposeState(stream.state);
      opts.dispose();
    },
  };
};

/** What {@linkcode makeFileStreamRunner} built: the runner and the model file's size. */
export interface FileStreamRunner extends Runner {
  /** Bytes of the encoded model file. */
  readonly fileBytes: number;
}

/**
 * The key/value-cached stream through a model file, the deploy path:
 * `program.init(seed)`'s parameters encoded with `encodeModelFile` (int8
 * when `weights` is `int8`), loaded back by `loadModel`, streamed by one
 * of its `TokenStream`s, a token and its logits per call. The backend must
 * be started.
 *
 * @example
 * ```ts
 * import { startBackend } from "../../ops/backend.ts";
 * import { compileReference, makeFileStreamRunner } from "./ours.ts";
 * await startBackend({ backend: "cpu" });
 * const r = await makeFileStreamRunner(compileReference(4), { weights: "int8", seed: 0 });
 * console.log(r.fileBytes, r.tokensPerStep / r.step()); // bytes, tokens/s
 * r.dispose();
 * ```
 */
export const makeFileStreamRunner = async (
  program: Program,
  opts: { weights: Weights; seed: number },
): Promise<FileStreamRunner> => {
  const spec = program.spec;
  const params = program.init(opts.seed);
  const leaves = flattenParams(params);
  const host = Object.fromEntries(
    Object.entries(leaves).map(([k, t]) => [k, {
      shape: [...t.shape],
      data: t.dataSync() as Float32Array,
    }]),
  );
  tf.dispose(Object.values(leaves));
  const vocab = Array.from({ length: spec.vocabSize }, (_, i) => (i === 0 ? "<eos>" : `w${i}`));
  const bytes = await encodeModelFile({ spec, vocab, params: host, meta: {} }, {
    int8: opts.weights === "int8",
  });
  const model = await loadModel(bytes);
  // The deploy path a generating loop runs: one TokenStream, a token per call, its logits read.
  const ids = tokenSource(opts.seed + 1, spec.vocabSize);
  const stream = model.openStream();
  const one = [0];
  const runner: Runner = {
    tokensPerStep: spec.segmentLen,
    step: () => {
      const segment = ids(spec.segmentLen);
      const t0 = performance.now();
      for (const id of segment) {
        one[0] = id;
        stream.logits(one); // [V]: the next-token logits a sampler reads
      }
      return (performance.now() - t0) / 1000;
    },
    dispose: () => {
      stream.dispose();
      model.dispose();
    },
  };
  return { ...runner, fileBytes: bytes.length };
};

/** What {@linkcode profileStep} found. */
export interface StepProfile {
  /** Top kernels by time, then the heaviest matmul shapes, as protocol rows. */
  readonly rows: Reply[];
  /** Wall time of the profiled step (the profiler's own timing included). */
  readonly wallMs: number;
  /** Summed time of registered kernels (composite `customGrad` wrappers excluded). */
  readonly kernelMs: number;
  /** Summed time of BatchMatMul calls. */
  readonly matmulMs: number;
  /** Summed time of other kernels whose output has ≥ 2²⁰ elements (the [B·S, V] logits). */
  readonly largeElementwiseMs: number;
  /** Calls of registered kernels. */
  readonly kernelCalls: number;
  /** Matmul FLOPs of the step over `matmulMs`, when `flops` was given. */
  readonly matmulGflops?: number;
  /** Largest tensor byte count seen after any kernel. */
  readonly peakBytes: number;
}

/**
 * Profile one step of `runner`: kernel time by kernel name and by matmul
 * shape, the wall time of the step and the peak tensor bytes during it.
 * `flops` (matmul FLOPs of one step) turns the matmul time into GFLOP/s.
 *
 * Per-kernel times come from tfjs's profiler, which times each kernel call
 * on its own. A `customGrad` op (layerNorm, embedding, crossEntropy,
 * dropout, ...) is recorded as a kernel named after its enclosing scope
 * ("forward") that contains the kernels it runs, which are recorded too; such
 * names have no registered kernel and are left out of the sums so that
 * nothing counts twice. Wall time minus kernel time is dispatch, autograd
 * bookkeeping and JavaScript between kernels.
 *
 * @example
 * ```ts
 * import { startBackend } from "../../ops/backend.ts";
 * import { compileReference, makeRunner, profileStep } from "./ours.ts";
 * await startBackend({ backend: "cpu" });
 * const r = makeRunner("infer", compileReference(4), { batchSize: 1, bpttSegments: 2, seed: 0 });
 * const p = await profileStep(r);
 * console.log(p.rows[0]); // the most expensive kernel
 * r.dispose();
 * ```
 */
export const profileStep = async (
  runner: Runner,
  opts: { top?: number; flops?: number } = {},
): Promise<StepProfile> => {
  const t0 = performance.now();
  const prof = await tf.profile(() => {
    runner.step();
  });
  const wallMs = performance.now() - t0;
  // Per key: time, calls, and the largest output shape (which tensor a kernel spends it on).
  type Tally = Map<string, { ms: number; calls: number; shape: number[]; size: number }>;
  const byName: Tally = new Map(), byShape: Tally = new Map();
  const add = (m: Tally, k: string, ms: number, shape: number[]) => {
    const e = m.get(k) ?? { ms: 0, calls: 0, shape: [], size: -1 };
    const size = shape.reduce((a, d) => a * d, 1);
    const big = size > e.size;
    m.set(k, {
      ms: e.ms + ms,
      calls: e.calls + 1,
      shape: big ? shape : e.shape,
      size: big ? size : e.size,
    });
  };
  const backend = tf.getBackend();
  let largeElementwiseMs = 0;
  for (const k of prof.kernels) {
    if (tf.getKernel(k.name, backend) === undefined) continue; // a composite wrapper
    const ms = k.kernelTimeMs as number;
    const out = k.outputShapes[0] ?? [];
    add(byName, k.name, ms, out);
    if (k.name === "BatchMatMul") {
      add(byShape, `BatchMatMul ${JSON.stringify(k.inputShapes)}`, ms, out);
    } else if (k.outputShapes.some((s) => s.reduce((a, d) => a * d, 1) >= 2 ** 20)) {
      largeElementwiseMs += ms;
    }
  }
  const total = (m: Tally) => [...m.values()].reduce((a, e) => a + e.ms, 0);
  const kernelMs = total(byName), matmulMs = byName.get("BatchMatMul")?.ms ?? 0;
  const rows = (m: Tally, n: number): Reply[] =>
    [...m].sort((a, b) => b[1].ms - a[1].ms).slice(0, n).map(([op, e]) => ({
      event: "profile",
      engine: "ours",
      op,
      ms: e.ms,
      share: e.ms / kernelMs,
      calls: e.calls,
      largest_output: e.shape,
    }));
  return {
    rows: [...rows(byName, opts.top ?? 12), ...rows(byShape, 6)],
    wallMs,
    kernelMs,
    matmulMs,
    largeElementwiseMs,
    kernelCalls: [...byName.values()].reduce((a, e) => a + e.calls, 0),
    ...(opts.flops === undefined ? {} : { matmulGflops: opts.flops / matmulMs / 1e6 }),
    peakBytes: prof.peakBytes,
  };
};

/** Parsed command line of this script. */
interface Cli {
  readonly tier: "native" | "portable";
  readonly mode: Phase | "profile" | "serve";
  /** What `--mode profile` profiles (`--profile train|infer`, default train). */
  readonly profiled: "train" | "infer";
  readonly segmentLen: number;
  readonly warmup: number;
  readonly steps: number;
  readonly threads: number;
  /** How `--mode stream` runs, and through which weights. */
  readonly variant: StreamVariant;
  readonly weights: Weights;
  readonly runner: RunnerOptions;
}

const parseCli = (args: readonly string[]): Cli => {
  const get = (name: string, fallback: string): string => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
  };
  const int = (name: string, fallback: number): number => {
    const x = Number(get(name, String(fallback)));
    if (!Number.isInteger(x) || x < 0) throw new RangeError(`--${name} wants an integer ≥ 0`);
    return x;
  };
  const oneOf = <T extends string>(name: string, choices: readonly T[], fallback: T): T => {
    const v = get(name, fallback);
    if (!(choices as readonly string[]).includes(v)) {
      throw new RangeError(`--${name} ${v}: wants one of ${choices.join(", ")}`);
    }
    return v as T;
  };
  return {
    tier: oneOf("tier", ["native", "portable"], "native"),
    mode: oneOf("mode", ["train", "infer", "stream", "profile", "serve"], "train"),
    profiled: oneOf("profile", ["train", "infer"], "train"),
    segmentLen: int("segment-len", 35),
    warmup: int("warmup", 2),
    steps: Math.max(1, int("steps", 5)),
    threads: int("threads", 2),
    variant: oneOf("variant", ["kvcache", "recompute"] as const, "kvcache"),
    weights: oneOf("weights", ["f32", "int8"], "f32"),
    runner: {
      batchSize: int("batch-size", 20),
      bpttSegments: int("bptt", 2),
      seed: int("seed", 0),
    },
  };
};

const emit = (x: unknown): void => console.log(JSON.stringify(x));

/** Which runner a command wants: its phase and, for `stream`, variant and weights. */
interface RunnerKey {
  readonly phase: Phase;
  readonly segmentLen: number;
  readonly variant: StreamVariant;
  readonly weights: Weights;
}

if (import.meta.main) {
  const cli = parseCli(Deno.args);
  const started = await startBackend({ matmul: cli.tier, blasThreads: cli.threads });
  if (E.isLeft(started)) throw started.left;
  const backend = started.right;
  const programFor = onePer((s: number): Program => compileReference(s));
  const runners = new Map<string, Runner>();
  const runnerFor = async (k: RunnerKey): Promise<Runner> => {
    const stream = k.phase === "stream";
    const name = stream
      ? `stream:${k.variant}:${k.weights}:${k.segmentLen}`
      : `${k.phase}:${k.segmentLen}`;
    const hit = runners.get(name);
    if (hit !== undefined) return hit;
    const p = programFor(k.segmentLen);
    if (stream && k.variant === "kvcache-matvec") {
      throw new RangeError("stream variant kvcache-matvec is PyTorch's; ours streams kvcache");
    }
    if (stream && k.variant === "recompute" && k.weights !== "f32") {
      throw new RangeError("stream --variant recompute runs on float32 parameters only");
    }
    const r = stream && k.variant === "kvcache"
      ? await makeFileStreamRunner(p, { weights: k.weights, seed: cli.runner.seed })
      : makeRunner(k.phase, p, { ...cli.runner, stream: k.variant });
    emit({
      event: "model",
      engine: `ours-${backend.matmul}`,
      phase: k.phase,
      segmentLen: k.segmentLen,
      ...(stream ? { variant: k.variant, weights: k.weights } : {}),
      ...("fileBytes" in r ? { file_bytes: r.fileBytes } : {}),
      params: p.paramCount,
      forward_flops_per_token: p.flops.forwardPerToken,
      train_flops_per_token: p.flops.trainPerToken,
      backend,
    });
    runners.set(name, r);
    return r;
  };
  const keyOf = (cmd: {
    phase: Phase;
    segmentLen: number;
    variant?: StreamVariant;
    weights?: Weights;
  }): RunnerKey => ({
    phase: cmd.phase,
    segmentLen: cmd.segmentLen,
    variant: cmd.variant ?? "kvcache",
    weights: cmd.weights ?? "f32",
  });
  const profile = async (s: number, phase: "train" | "infer" = cli.profiled) => {
    const r = await runnerFor(keyOf({ phase, segmentLen: s }));
    r.step(); // a first step compiles and tiers up; profile the second
    const f = programFor(s).flops;
    const flops = (phase === "train" ? f.trainPerToken : f.forwardPerToken) * r.tokensPerStep;
    const p = await profileStep(r, { flops });
    for (const row of p.rows) emit({ ...row, engine: `ours-${backend.matmul}`, segmentLen: s });
    emit({
      event: "done",
      wall_ms: Math.round(p.wallMs),
      kernel_ms: Math.round(p.kernelMs),
      kernel_calls: p.kernelCalls,
      matmul_ms: Math.round(p.matmulMs),
      matmul_gflops: Math.round((p.matmulGflops ?? 0) * 10) / 10,
      large_elementwise_ms: Math.round(p.largeElementwiseMs),
      peak_tensor_mb: Math.round(p.peakBytes / 2 ** 20),
    });
  };

  if (cli.mode === "serve") {
    emit({ event: "ready", engine: `ours-${backend.matmul}`, backend });
    for await (const line of readLines(Deno.stdin.readable)) {
      if (line.trim() === "") continue;
      const cmd = JSON.parse(line) as Command;
      if (cmd.phase === "profile") {
        await profile(cmd.segmentLen, "train");
        continue;
      }
      const r = await runnerFor(keyOf({ ...cmd, phase: cmd.phase }));
      if (cmd.count === true) {
        const c = countKernels(() => r.step());
        emit({
          event: "kernels",
          calls: c.calls,
          tokens_per_step: r.tokensPerStep,
          by_name: Object.fromEntries([...c.byName].sort((a, b) => b[1] - a[1])),
        });
        continue;
      }
      // The peers' thread pools (OpenBLAS, onnxruntime) live between steps; ours retires its
      // worker after 3 s idle, which a round's other sides can exceed: start it, untimed.
      await startMatmulWorkers();
      const seconds = Array.from({ length: cmd.steps ?? 1 }, () => r.step());
      emit({ event: "steps", seconds, tokens_per_step: r.tokensPerStep });
    }
  } else if (cli.mode === "profile") {
    await profile(cli.segmentLen);
  } else {
    const r = await runnerFor({
      phase: cli.mode,
      segmentLen: cli.segmentLen,
      variant: cli.variant,
      weights: cli.weights,
    });
    for (let i = 0; i < cli.warmup; i++) r.step();
    const seconds = Array.from({ length: cli.steps }, () => r.step());
    const med = median(seconds);
    emit({
      event: "result",
      engine: `ours-${backend.matmul}`,
      phase: cli.mode,
      segmentLen: cli.segmentLen,
      tokens_per_step: r.tokensPerStep,
      seconds,
      median_s: med,
      tokens_per_s: r.tokensPerStep / med,
      ...(cli.mode === "stream" ? { ms_per_token: 1000 * med / r.tokensPerStep } : {}),
    });
  }
  for (const r of runners.values()) r.dispose();
}
