/**
 * Run by the x64 Deno for `deno task test:arm64`: a tiny corpus and a
 * 10-step training run on it, whose folder the task exports and generates
 * from on both architectures. Prints the run folder.
 *
 * @module
 */
import { trainTinyRun } from "../_tiny_run.ts";

try {
  console.log((await trainTinyRun()).runDir);
} catch (e) {
  console.error(`tests/arm64/_train.ts: ${e instanceof Error ? e.message : String(e)}`);
  Deno.exit(1);
}
