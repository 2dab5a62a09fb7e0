/**
 * `deno task smarthome:sample DIR [--clips N] [--dim F] [--classes K]
 * [--min-frames T] [--max-frames T] [--signal-fraction P] [--seed N]`
 *
 * Writes a synthetic Toyota Smarthome-style dataset into DIR, in the layout
 * `deno task experiment smarthome --data DIR` reads (`classes.txt`,
 * `clips.csv`, `features/<clip_id>.npy`): imbalanced classes named after
 * Smarthome's, Smarthome's subject ids and cameras 1–7, and a class signal
 * only in the first eighth of every clip (noise after it), so that only a
 * model that carries memory across segments classifies it well. The
 * defaults (600 clips of 64–192 frames, F = 1024, ≈ 300 MB) fit the
 * presets as they are.
 *
 * Exit status: 0 written, 2 bad arguments or DIR already holds a dataset,
 * 1 a write failed.
 *
 * @example
 * ```ts
 * import { main } from "./smarthome_sample.ts";
 * const dir = await Deno.makeTempDir();
 * const status = await main([dir, "--clips", "40", "--dim", "4"], { stdout: () => {}, stderr: () => {} });
 * console.log(status); // 0
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { describeError } from "../../spec/errors.ts";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { exists } from "./ptb.ts";
import { writeSampleDataset } from "./smarthome.ts";

const USAGE = `usage: deno task smarthome:sample DIR [options]

  DIR                    where to write classes.txt, clips.csv and features/ (created)
  --clips N              clips in all (default 600)
  --dim F                features per frame (default 1024, the presets' model.input.dim)
  --classes K            classes, named after Toyota Smarthome's 31 (default 31)
  --min-frames T         shortest clip (default 64)
  --max-frames T         longest clip (default 192)
  --signal-fraction P    share of each clip's frames, from its start, carrying the class (default 0.125)
  --seed N               seed (default 1)
  -h, --help             this text
`;

/** Where the command writes (injected by tests). */
export interface SampleIo {
  /** The summary. */
  readonly stdout: (text: string) => void;
  /** Errors. */
  readonly stderr: (text: string) => void;
}

const defaultIo: SampleIo = {
  stdout: (s) => void Deno.stdout.writeSync(new TextEncoder().encode(s)),
  stderr: (s) => void Deno.stderr.writeSync(new TextEncoder().encode(s)),
};

/**
 * The command: parses `args`, writes the dataset, returns the exit status.
 *
 * @example
 * ```ts
 * import { main } from "./smarthome_sample.ts";
 * console.log(await main(["--dim", "x"], { stdout: () => {}, stderr: () => {} })); // 2
 * ```
 */
export async function main(args: readonly string[], io: SampleIo = defaultIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      allowPositionals: true,
      strict: true,
      options: {
        clips: { type: "string" },
        dim: { type: "string" },
        classes: { type: "string" },
        "min-frames": { type: "string" },
        "max-frames": { type: "string" },
        "signal-fraction": { type: "string" },
        seed: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    io.stderr(`${describeError(e)}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout(USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    io.stderr(`expected one directory, got ${positionals.length} arguments\n\n${USAGE}`);
    return 2;
  }
  const dir = positionals[0];
  const ints: Record<string, number | undefined> = {};
  for (const key of ["clips", "dim", "classes", "min-frames", "max-frames", "seed"] as const) {
    const raw = values[key];
    if (raw === undefined) continue;
    if (!/^\d+$/.test(raw) || (key !== "seed" && Number(raw) === 0)) {
      io.stderr(`--${key} ${JSON.stringify(raw)}: expected a positive integer\n`);
      return 2;
    }
    ints[key] = Number(raw);
  }
  let fraction: number | undefined;
  if (values["signal-fraction"] !== undefined) {
    fraction = Number(values["signal-fraction"]);
    if (!(fraction > 0 && fraction <= 1)) {
      io.stderr(`--signal-fraction ${values["signal-fraction"]}: expected a number in (0, 1]\n`);
      return 2;
    }
  }
  if (await exists(join(dir, "clips.csv"))) {
    io.stderr(`${dir} already holds a dataset (clips.csv): choose an empty directory\n`);
    return 2;
  }
  const opts = {
    ...(ints.clips === undefined ? {} : { clips: ints.clips }),
    ...(ints.dim === undefined ? {} : { dim: ints.dim }),
    ...(ints.classes === undefined ? {} : { classes: ints.classes }),
    ...(ints["min-frames"] === undefined ? {} : { minFrames: ints["min-frames"] }),
    ...(ints["max-frames"] === undefined ? {} : { maxFrames: ints["max-frames"] }),
    ...(ints.seed === undefined ? {} : { seed: ints.seed }),
    ...(fraction === undefined ? {} : { signalFraction: fraction }),
  };
  const clips = opts.clips ?? 600, classes = opts.classes ?? 31;
  const minF = opts.minFrames ?? 64, maxF = opts.maxFrames ?? 192;
  if (classes < 2 || clips < classes) {
    io.stderr(`need --clips (${clips}) ≥ --classes (${classes}) ≥ 2\n`);
    return 2;
  }
  if (maxF < minF) {
    io.stderr(`--max-frames (${maxF}) is below --min-frames (${minF})\n`);
    return 2;
  }
  try {
    const counts = await writeSampleDataset(dir, opts);
    io.stdout(
      `${dir}: ${clips} clips of ${minF}–${maxF} frames × ${opts.dim ?? 1024} features, ` +
        `${classes} classes (${Math.max(...counts)} to ${Math.min(...counts)} clips each)\n` +
        `train on it: deno task experiment smarthome --quick --data ${dir}` +
        (opts.dim !== undefined && opts.dim !== 1024 ? ` --set model.input.dim=${opts.dim}` : "") +
        (classes !== 31 ? ` --set model.readout.nClasses=${classes}` : "") +
        "\n",
    );
    return 0;
  } catch (e) {
    io.stderr(`${dir}: cannot write: ${describeError(e)}\n`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
