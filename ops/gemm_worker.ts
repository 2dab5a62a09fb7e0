/**
 * The two-thread GEMM's worker as a module worker of its own, for
 * `startGemmPool(heap, { worker: "url" })` (`ops/gemm_pool.ts`):
 *
 * ```ts ignore
 * new Worker(new URL("./gemm_worker.ts", import.meta.url), { type: "module" });
 * ```
 *
 * The pool's default starts the same code from a `blob:` URL instead
 * (`ops/_gemm_thread.ts`), which needs neither file access in Deno nor a
 * bundler that follows worker URLs; this entry is for pages whose content
 * security policy forbids `blob:` workers. In a browser build it must be
 * bundled as a worker entry of its own (Vite and webpack 5 recognise the
 * `new Worker(new URL(…, import.meta.url))` form; esbuild and `deno bundle`
 * do not, and need it listed as a separate entry point).
 *
 * @module
 */
import { gemmWorker, type GemmWorkerScope } from "./_gemm_thread.ts";

gemmWorker(self as unknown as GemmWorkerScope);
