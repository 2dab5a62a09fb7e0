/**
 * `deno task score <MODEL_FILE> <TEXT_FILE> [--backend wasm|cpu]
 * [--kernels auto|relaxed|simd128] [--blas-core CORE] [--json]`
 *
 * The perplexity of a text file under a model file, read as one stream
 * (deploy/score.ts): words split on whitespace, `<eos>` at the end of every
 * line as in PTB (a last line without a line break included), words not in
 * the vocabulary read as `<unk>`. Prints the tokens, the mean NLL, the
 * perplexity and the speed on stdout (`--json`: one JSON object); progress
 * on stderr.
 *
 * Exit status: 0 done (and `--help`), 2 bad input (files, options), 1 any
 * other failure.
 *
 * @example
 * ```ts
 * import { main } from "./score_cli.ts";
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
  readBytes,
  runCommandLine,
  startNamedBackend,
} from "./_cli.ts";
import { loadModel } from "./loaded.ts";
import { ModelFileError } from "./model_file.ts";
import { scoreIds } from "./score.ts";
import { Vocab } from "./vocab.ts";

const USAGE = `usage: deno task score <MODEL_FILE> <TEXT_FILE> [--backend wasm|cpu]
                        [--kernels auto|relaxed|simd128] [--blas-core CORE] [--json]

  MODEL_FILE       a model file of \`deno task export\`
  TEXT_FILE        UTF-8 text, one sentence per line (PTB style: <eos> ends every line)
  --backend NAME   wasm (default) or cpu
  --kernels BUILD  our wasm kernels' build: auto (default: relaxed SIMD where the engine has it),
                   relaxed or simd128; int8 products quantise activations to 7 or 14 bits
  --blas-core CORE OpenBLAS's kernels for the native matmul: a core name (e.g. SkylakeX) or
                   detect, in place of the environment's OPENBLAS_CORETYPE (default: as it says)
  --json           print the result as one JSON object
  -h, --help       this text`;

const OPTIONS = {
  backend: { type: "string" },
  kernels: { type: "string" },
  "blas-core": { type: "string" },
  json: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

const COMMAND_LINE: CommandLine<typeof OPTIONS> = {
  options: OPTIONS,
  usage: USAGE,
  positionals: {
    count: 2,
    missing: "give a model file and a text file",
    wrong: "give a model file and a text file",
  },
};

/**
 * The score command. Returns the exit status.
 *
 * @example
 * ```ts
 * import { main } from "./score_cli.ts";
 * const err: string[] = [];
 * const status = await main(["only-one-file.crtm"], { stdout: () => {}, stderr: (s) => err.push(s) });
 * console.log(status); // 2: a model file and a text file are needed
 * ```
 */
export async function main(args: readonly string[], io: CliIo = defaultIo): Promise<number> {
  return await runCommandLine(io, args, COMMAND_LINE, async ({ values, positionals }) => {
    const [modelPath, textPath] = positionals;
    const modelBytes = await readBytes(modelPath, "model file");
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(
        await readBytes(textPath, "text file"),
      );
    } catch (e) {
      if (e instanceof BadInput) throw e;
      throw new BadInput(`text file ${textPath}: not UTF-8 text`);
    }
    const backend = await startNamedBackend(values.backend, values.kernels, values["blas-core"]);
    const t0 = performance.now();
    const model = await loadModel(modelBytes).catch((e) => {
      throw e instanceof ModelFileError ? new BadInput(`${modelPath}: ${e.message}`) : e;
    });
    const loadSeconds = (performance.now() - t0) / 1000;
    try {
      const vocab = new Vocab(model.file.vocab);
      // PTB: <eos> after every line, the last one too.
      const tokens = vocab.tokenize(text.endsWith("\n") || text === "" ? text : `${text}\n`);
      if (tokens.ids.length < 2) {
        throw new BadInput(`text file ${textPath}: fewer than 2 tokens, nothing to predict`);
      }
      if (tokens.unknown > 0) {
        io.stderr(
          `${tokens.unknown} word(s) not in the vocabulary read as <unk> (first: ` +
            `${JSON.stringify(tokens.firstUnknown?.word)}, line ${tokens.firstUnknown?.line})\n`,
        );
      }
      const s = scoreIds(model, tokens.ids, {
        onProgress: (done, total) => {
          const rate = done / ((performance.now() - t0) / 1000 - loadSeconds);
          io.stderr(
            `scored ${done.toLocaleString("en")}/${total.toLocaleString("en")} ` +
              `(${Math.round((100 * done) / total)} %), ${rate.toFixed(0)} tokens/s\n`,
          );
        },
      });
      const result = {
        model: modelPath,
        text: textPath,
        quantization: model.file.quantization,
        backend: `${backend.name}${backend.simd ? " simd" : ""}, matmul ${backend.matmul}${
          backend.blasCore === undefined ? "" : ` (OpenBLAS ${backend.blasCore})`
        }${backend.kernels === undefined ? "" : `, kernels ${backend.kernels}`}${
          backend.int8Dot === undefined ? "" : ` (int8 ${backend.int8Dot})`
        }`,
        tokens: s.tokens,
        unknown_words: tokens.unknown,
        nll: s.nll,
        ppl: s.ppl,
        tokens_per_second: s.tokensPerSecond,
        seconds: s.seconds,
        load_seconds: loadSeconds,
      };
      if (values.json) {
        io.stdout(`${JSON.stringify(result)}\n`);
      } else {
        io.stdout(
          `${textPath}: ${s.tokens.toLocaleString("en")} tokens scored ` +
            `(${tokens.unknown} unknown words)\n` +
            `NLL ${s.nll.toFixed(4)} nats/token, ppl ${s.ppl.toFixed(2)}\n` +
            `${s.tokensPerSecond.toFixed(0)} tokens/s (${
              s.seconds.toFixed(1)
            } s; model loaded in ` +
            `${loadSeconds.toFixed(2)} s; ${result.backend}; ${model.file.quantization} weights)\n`,
        );
      }
      return EXIT.ok;
    } finally {
      model.dispose();
    }
  });
}

if (import.meta.main) Deno.exit(await main(Deno.args));
