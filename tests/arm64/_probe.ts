/**
 * Run by the arm64 Deno under emulation (`deno task test:arm64`): starts the
 * default backend and prints what it reports as one JSON line, so the task
 * can show the tier and check that the native matmul found the arm64 OpenBLAS.
 *
 * @module
 */
import { startBackend } from "../../ops/backend.ts";
import { loadBlas } from "../../ops/blas.ts";

const started = await startBackend();
if (started._tag === "Left") {
  console.error(started.left.message);
  Deno.exit(1);
}
const blas = loadBlas();
const library = blas._tag === "Right" ? blas.right.library : null;
if (blas._tag === "Right") blas.right.close();
console.log(JSON.stringify({ build: Deno.build.target, ...started.right, library }));
