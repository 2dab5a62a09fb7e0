/**
 * What the deploy command lines share: output streams, exit statuses,
 * argument parsing with readable errors, reading files and starting the
 * backend. Deno-only (the CLIs are the only deploy code that touches files).
 *
 * @module
 */
import { describeError } from "../spec/errors.ts";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { type BackendInfo, startBackend } from "../ops/backend.ts";
import { isBlasCoreName } from "../ops/blas.ts";

/** Where a command writes (injected by tests). */
export interface CliIo {
  /** Results. */
  readonly stdout: (text: string) => void;
  /** Messages, errors and progress. */
  readonly stderr: (text: string) => void;
}

const writeSync = (stream: { writeSync(p: Uint8Array): number }) => (text: string) => {
  const bytes = new TextEncoder().encode(text);
  for (let done = 0; done < bytes.length;) done += stream.writeSync(bytes.subarray(done));
};

/** Deno's stdout and stderr. */
export const defaultIo: CliIo = { stdout: writeSync(Deno.stdout), stderr: writeSync(Deno.stderr) };

/** Exit statuses: 0 success (and `--help`), 1 a failure while working, 2 bad input. */
export const EXIT = { ok: 0, failed: 1, badInput: 2 } as const;

/** A bad-input problem: the message is printed and the command exits with 2. */
export class BadInput extends Error {
  override readonly name = "BadInput";
}

/** `parseArgs` with unknown options and bad values reported as {@linkcode BadInput}. */
export const parse = <O extends NonNullable<ParseArgsConfig["options"]>>(
  args: readonly string[],
  options: O,
  usage: string,
) => {
  try {
    return parseArgs({ args: [...args], options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new BadInput(`${describeError(e)}\n\n${usage}`);
  }
};

/**
 * How a command's main starts: {@linkcode parse} `args`; with `--help`, print
 * `usage` and return `null` (exit 0); else check that there are
 * `positionals.count` positionals, a {@linkcode BadInput} saying `missing`
 * (none given) or `wrong` (another count) if not.
 */
export const parseCommand = <O extends NonNullable<ParseArgsConfig["options"]>>(
  io: CliIo,
  args: readonly string[],
  options: O,
  usage: string,
  positionals: { readonly count: number; readonly missing: string; readonly wrong: string },
) => {
  const parsed = parse(args, options, usage);
  if ((parsed.values as { help?: boolean }).help === true) {
    io.stdout(`${usage}\n`);
    return null;
  }
  const n = parsed.positionals.length;
  if (n !== positionals.count) {
    throw new BadInput(`${n === 0 ? positionals.missing : positionals.wrong}\n\n${usage}`);
  }
  return parsed;
};

/** A number option: `undefined` when absent, else a finite number checked by `ok`. */
export const numberOption = (
  raw: string | undefined,
  name: string,
  ok: (x: number) => boolean,
  expected: string,
): number | undefined => {
  if (raw === undefined) return undefined;
  const x = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(x) || !ok(x)) {
    throw new BadInput(`--${name}: expected ${expected}, got ${JSON.stringify(raw)}`);
  }
  return x;
};

/** A file's bytes; a missing or unreadable file is {@linkcode BadInput} naming it. */
export const readBytes = async (file: string, what: string): Promise<Uint8Array> => {
  try {
    return await Deno.readFile(file);
  } catch (e) {
    throw new BadInput(`${what} ${file}: ${describeError(e, { NotFound: "not found" })}`);
  }
};

/**
 * Start the backend the `--backend` flag names (wasm by default), with the
 * build of our wasm kernels `--kernels` names (auto, relaxed or simd128; the
 * int8 products differ between them: 7-bit activations in the relaxed build,
 * 14-bit in the SIMD128 one) and the OpenBLAS kernel set `--blas-core`
 * names (a core name or "detect"; default: as the environment says).
 */
export const startNamedBackend = async (
  name: string | undefined,
  kernels?: string,
  blasCore?: string,
): Promise<BackendInfo> => {
  const backend = name ?? "wasm";
  if (backend !== "wasm" && backend !== "cpu") {
    throw new BadInput(`--backend: expected wasm or cpu, got ${JSON.stringify(backend)}`);
  }
  const build = kernels ?? "auto";
  if (build !== "auto" && build !== "relaxed" && build !== "simd128") {
    throw new BadInput(
      `--kernels: expected auto, relaxed or simd128, got ${JSON.stringify(build)}`,
    );
  }
  if (blasCore !== undefined && !isBlasCoreName(blasCore)) {
    throw new BadInput(
      `--blas-core: expected an OpenBLAS core name (e.g. SkylakeX) or detect, got ${
        JSON.stringify(blasCore)
      }`,
    );
  }
  const started = await startBackend({
    backend,
    kernels: build,
    ...(blasCore === undefined ? {} : { blasCore }),
  });
  if (started._tag === "Left") throw started.left;
  return started.right;
};

/** Run a command body: BadInput → 2 with its message, any other error → 1. */
export const runCommand = async (
  io: CliIo,
  body: () => Promise<number>,
  isBadInput: (e: unknown) => boolean = () => false,
): Promise<number> => {
  try {
    return await body();
  } catch (e) {
    if (e instanceof BadInput || isBadInput(e)) {
      io.stderr(`${(e as Error).message}\n`);
      return EXIT.badInput;
    }
    io.stderr(`error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return EXIT.failed;
  }
};

/** A command line: its options, its `--help` text and the positionals it takes. */
export interface CommandLine<O extends NonNullable<ParseArgsConfig["options"]>> {
  /** The `parseArgs` options (a `help` boolean among them). */
  readonly options: O;
  /** Printed for `--help` and after a bad-input message about the arguments. */
  readonly usage: string;
  /** How many positionals, and what to say when there are none or another number. */
  readonly positionals: {
    readonly count: number;
    readonly missing: string;
    readonly wrong: string;
  };
}

/**
 * A command's main: {@linkcode parseCommand} `args` as `line` says, then
 * `body` on the values and positionals, all under {@linkcode runCommand}
 * (bad input → 2 with its message, another error → 1). `--help` prints the
 * usage and returns 0 without running `body`.
 */
export const runCommandLine = <O extends NonNullable<ParseArgsConfig["options"]>>(
  io: CliIo,
  args: readonly string[],
  line: CommandLine<O>,
  body: (parsed: ReturnType<typeof parse<O>>) => Promise<number>,
  isBadInput?: (e: unknown) => boolean,
): Promise<number> =>
  runCommand(io, async () => {
    const parsed = parseCommand(io, args, line.options, line.usage, line.positionals);
    return parsed === null ? EXIT.ok : await body(parsed);
  }, isBadInput);

/** 12345678 → "12.3 MB". */
export const megabytes = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;
