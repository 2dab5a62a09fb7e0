/**
 * `deno task generate <MODEL_FILE> [--prompt TEXT] [--max-tokens N]
 * [--temperature T] [--top-k K] [--seed S] [--backend wasm|cpu]
 * [--kernels auto|relaxed|simd128] [--blas-core CORE]`
 *
 * Samples a continuation of the prompt from a model file (deploy/generate.ts)
 * and prints it on stdout as the tokens are drawn (`<eos>` as a line
 * break); the model, the prompt's tokens, the seed and the speed go to
 * stderr. The same seed, prompt and options print the same text.
 *
 * Exit status: 0 done (and `--help`), 2 bad input (file, options), 1 any
 * other failure.
 *
 * @example
 * ```ts
 * import { main } from "./generate_cli.ts";
 * const status = await main(["--help"]);
 * console.log(status); // 0
 * ```
 *
 * @module
 */
import {
  BadInput,
  type CliIo,
  type CommandLine,
  defaultIo,
  EXIT,
  numberOption,
  readBytes,
  runCommandLine,
  startNamedBackend,
} from "./_cli.ts";
import { generateTokens } from "./generate.ts";
import { loadModel } from "./loaded.ts";
import { ModelFileError } from "./model_file.ts";
import { Vocab } from "./vocab.ts";

const USAGE =
  `usage: deno task generate <MODEL_FILE> [--prompt TEXT] [--max-tokens N] [--temperature T]
                           [--top-k K] [--seed S] [--backend wasm|cpu]
                           [--kernels auto|relaxed|simd128] [--blas-core CORE]

  MODEL_FILE         a model file of \`deno task export\`
  --prompt TEXT      text to continue (default: none, start a sentence)
  --max-tokens N     tokens to sample, an integer in [1, 2⁵³ − 1] (default 50); each is printed
                     as it is drawn, so a huge N runs until stopped (Ctrl-C, or a closed pipe)
  --temperature T    ≥ 0; 0 always takes the most likely token (default 1)
  --top-k K          sample among the K most likely tokens (default 0: all)
  --seed S           integer in [0, 2³²) for a reproducible sample (default: random, printed)
  --backend NAME     wasm (default) or cpu
  --kernels BUILD    our wasm kernels' build: auto (default: relaxed SIMD where the engine has
                     it), relaxed or simd128; int8 products quantise activations to 7 or 14 bits
  --blas-core CORE   OpenBLAS's kernels for the native matmul: a core name (e.g. SkylakeX) or
                     detect, in place of the environment's OPENBLAS_CORETYPE (default: as it says)
  -h, --help         this text`;

const OPTIONS = {
  prompt: { type: "string" },
  "max-tokens": { type: "string" },
  temperature: { type: "string" },
  "top-k": { type: "string" },
  seed: { type: "string" },
  backend: { type: "string" },
  kernels: { type: "string" },
  "blas-core": { type: "string" },
  help: { type: "boolean", short: "h", default: false },
} as const;

const COMMAND_LINE: CommandLine<typeof OPTIONS> = {
  options: OPTIONS,
  usage: USAGE,
  positionals: { count: 1, missing: "missing the model file", wrong: "give one model file" },
};

/**
 * The generate command. Returns the exit status.
 *
 * @example
 * ```ts
 * import { main } from "./generate_cli.ts";
 * const err: string[] = [];
 * const status = await main(["model.crtm", "--temperature=-1"], {
 *   stdout: () => {},
 *   stderr: (s) => err.push(s),
 * });
 * console.log(status, err.join("")); // 2 --temperature: expected a number ≥ 0, got "-1"
 * ```
 */
export async function main(args: readonly string[], io: CliIo = defaultIo): Promise<number> {
  return await runCommandLine(io, args, COMMAND_LINE, async ({ values, positionals }) => {
    const maxTokens = numberOption(
      values["max-tokens"],
      "max-tokens",
      (x) => Number.isSafeInteger(x) && x >= 1,
      "an integer in [1, 2⁵³ − 1]",
    ) ?? 50;
    const temperature = numberOption(
      values.temperature,
      "temperature",
      (x) => x >= 0,
      "a number ≥ 0",
    );
    const topK = numberOption(
      values["top-k"],
      "top-k",
      (x) => Number.isInteger(x) && x >= 0,
      "an integer ≥ 0",
    );
    const seed = numberOption(
      values.seed,
      "seed",
      (x) => Number.isInteger(x) && x >= 0 && x <= 0xffffffff,
      "an integer in [0, 2³²)",
    ) ?? crypto.getRandomValues(new Uint32Array(1))[0];
    const bytes = await readBytes(positionals[0], "model file");
    await startNamedBackend(values.backend, values.kernels, values["blas-core"]);
    const model = await loadModel(bytes).catch((e) => {
      throw e instanceof ModelFileError ? new BadInput(`${positionals[0]}: ${e.message}`) : e;
    });
    try {
      const meta = model.file.meta;
      io.stderr(
        `model: ${positionals[0]} (${model.file.spec._tag}, ${model.file.quantization}, ` +
          `from ${String(meta.source ?? "?")}, valid ppl ${
            typeof meta.valid_ppl === "number" ? meta.valid_ppl.toFixed(1) : "?"
          })\n`,
      );
      const vocab = new Vocab(model.file.vocab);
      const tokens = vocab.tokenize(values.prompt ?? "");
      if (tokens.unknown > 0) {
        io.stderr(
          `prompt: ${tokens.unknown} word(s) not in the vocabulary read as <unk> ` +
            `(first: ${JSON.stringify(tokens.firstUnknown?.word)})\n`,
        );
      }
      io.stderr(
        `prompt: ${tokens.ids.length} tokens${
          tokens.ids.length === 0 ? " (starting a sentence)" : ""
        }; seed ${seed}\n`,
      );
      let lineStart = true, drawn = 0, closed = false;
      const t0 = performance.now();
      // Each token is printed as it is drawn: nothing is held back or sized by --max-tokens.
      const ids = generateTokens(model, tokens.ids, {
        maxTokens,
        seed,
        ...(temperature === undefined ? {} : { temperature }),
        ...(topK === undefined ? {} : { topK }),
      });
      try {
        for (const id of ids) {
          drawn++;
          if (id === vocab.eos) {
            io.stdout("\n");
            lineStart = true;
          } else {
            const word = model.decode([id]);
            io.stdout(lineStart ? word : ` ${word}`);
            lineStart = false;
          }
        }
        if (!lineStart) io.stdout("\n");
      } catch (e) {
        // `generate … | head`: the reader has what it wanted; stop drawing, quietly.
        if (!(e instanceof Deno.errors.BrokenPipe)) throw e;
        closed = true;
      }
      const seconds = (performance.now() - t0) / 1000;
      io.stderr(
        `${drawn} tokens in ${seconds.toFixed(2)} s ` +
          `(${(drawn / seconds).toFixed(0)} tokens/s, prompt included); seed ${seed}` +
          `${closed ? " (stopped: stdout was closed)" : ""}\n`,
      );
      return EXIT.ok;
    } finally {
      model.dispose();
    }
  });
}

if (import.meta.main) Deno.exit(await main(Deno.args));
