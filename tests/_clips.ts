/**
 * A generated clip dataset in a temporary folder, for the clip tests: written
 * under `DIR/data`, read back as a clip table, and removed afterwards.
 */
import * as E from "fp-ts/lib/Either.js";
import { join } from "node:path";
import { type ClipTable, readClipTable } from "../experiments/data/smarthome.ts";
import { type SampleOptions, writeSampleDataset } from "../experiments/data/smarthome_sample.ts";

/** Runs `f` with a temporary folder holding a generated dataset in `data/`, and its clip table. */
export async function withSampleClips(
  prefix: string,
  opts: SampleOptions,
  f: (dir: string, table: ClipTable) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    await writeSampleDataset(join(dir, "data"), opts);
    const table = await readClipTable(join(dir, "data"));
    if (E.isLeft(table)) throw new Error(table.left.message);
    await f(dir, table.right);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
