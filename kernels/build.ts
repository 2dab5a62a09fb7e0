/**
 * Rebuilds the WebAssembly kernels from their C sources and checks that the
 * committed binaries match them.
 *
 * `deno task kernels` compiles every entry of {@linkcode KERNELS} with
 * Debian's clang 19 (`apt-get install clang-19 lld-19`), twice: with SIMD128
 * and with relaxed SIMD as well, and writes
 * `kernels/<name>_wasm.ts`: the module as base64, so it loads the same way in
 * Deno, in a browser bundle and from JSR, with no file access. `deno task
 * kernels --check` rebuilds into memory and exits 1 when a committed file
 * differs from what its source gives (CI runs it; clang's output is
 * byte-for-byte repeatable for one compiler version). Without clang, `--check`
 * fails under `CI` and is skipped, with a notice, elsewhere.
 *
 * @module
 */
import { parseArgs } from "node:util";

/** How a kernel module is compiled. */
export interface KernelBuild {
  /** Output stem: `kernels/<name>_wasm.ts`. */
  readonly name: string;
  /** C sources, relative to this folder, linked into one module. */
  readonly sources: readonly string[];
  /** Extra clang flags after the common ones. */
  readonly flags: readonly string[];
  /** What the module is for, written into the generated file. */
  readonly about: string;
}

/** Common flags: wasm32 with SIMD, no libc, no entry point, memory imported. */
const COMMON = [
  "--target=wasm32",
  "-msimd128",
  "-O3",
  "-nostdlib",
  "-ffreestanding",
  "-Wall",
  "-Werror",
  "-Wl,--no-entry",
  "-Wl,--import-memory",
];

/**
 * The second build of every module: relaxed SIMD as well (fused
 * multiply-add, `MADD` in kernels/simd.h), chosen at start-up where the
 * engine validates it (ops/heap.ts), the plain one elsewhere.
 */
const RELAXED = ["-mrelaxed-simd"];

/** The packing loops of gemm.c are explicit SIMD; the auto-vectoriser only slows their edges. */
const NO_AUTOVEC = ["-fno-vectorize", "-fno-slp-vectorize"];

/** Every kernel module of the project. */
export const KERNELS: readonly KernelBuild[] = [
  {
    name: "fused",
    sources: ["fused.c"],
    // memcpy lowers to the bulk-memory instruction memory.copy: there is no libc.
    flags: ["-mbulk-memory"],
    about:
      "fused softmax cross-entropy, AdamW, sum of squares and row gather on tfjs-wasm's own heap",
  },
  {
    name: "gemm",
    sources: ["gemm.c", "gemv.c"],
    flags: [...NO_AUTOVEC, "-mbulk-memory"],
    about: "SIMD GEMM and int8 matrix-vector products (ops/gemm_pool.ts) on tfjs-wasm's own " +
      "heap, for the calling thread",
  },
  {
    name: "gemm_shared",
    sources: ["gemm.c", "gemv.c"],
    flags: [
      ...NO_AUTOVEC,
      // For the pool's worker: the imported memory is declared shared, with a maximum.
      "-matomics",
      "-mbulk-memory",
      "-Wl,--shared-memory",
      "-Wl,--max-memory=2147483648",
    ],
    about: "SIMD GEMM and int8 matrix-vector products (ops/gemm_pool.ts) on a shared memory, " +
      "for the pool's worker",
  },
  {
    name: "blocks",
    sources: [
      "linear.c",
      "norm.c",
      "attention.c",
      "recurrent.c",
      "gemv.c",
      "decode.c",
      "sample.c",
      "gemm.c",
    ],
    flags: [...NO_AUTOVEC, "-mbulk-memory"],
    about:
      "kernels of fused regions (ops/fusion/): linear ends, LayerNorm, attention, GRU gates, " +
      "matrix-vector products (float32 and int8) and the streaming step, on tfjs-wasm's own heap",
  },
];

const CLANG = "clang-19";
const here = new URL(".", import.meta.url);

const run = async (cmd: string, args: string[]): Promise<{ ok: boolean; err: string }> => {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    return { ok: out.success, err: new TextDecoder().decode(out.stderr) };
  } catch (e) {
    return { ok: false, err: e instanceof Deno.errors.NotFound ? "not found" : String(e) };
  }
};

const hex = (b: ArrayBuffer): string =>
  Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");

const base64 = (bytes: Uint8Array): string => {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
};

/** Compile one module with `flags`: its bytes. Checks that no source uses the stack. */
const compile = async (
  k: KernelBuild,
  flags: readonly string[],
  tmp: string,
): Promise<Uint8Array> => {
  const all = [...COMMON, ...k.flags, ...flags];
  for (const source of k.sources) {
    // The kernels share memory they do not own: they must use no stack.
    const asm = `${tmp}/${source}.s`;
    const src = new URL(source, here).pathname;
    const s = await run(CLANG, [...all.filter((f) => !f.startsWith("-Wl")), "-S", "-o", asm, src]);
    if (!s.ok) throw new Error(`${source}: ${CLANG} failed:\n${s.err}`);
    if ((await Deno.readTextFile(asm)).includes("__stack_pointer")) {
      throw new Error(
        `${source}: the compiled code uses the stack (__stack_pointer); kernels must not`,
      );
    }
  }
  const wasm = `${tmp}/${k.name}.wasm`;
  const srcs = k.sources.map((x) => new URL(x, here).pathname);
  const c = await run(CLANG, [...all, "-o", wasm, ...srcs]);
  if (!c.ok) throw new Error(`${k.sources.join(", ")}: ${CLANG} failed:\n${c.err}`);
  return await Deno.readFile(wasm);
};

/** Compile one kernel module, plain and relaxed, and return the text of its `_wasm.ts` file. */
export const buildKernel = async (k: KernelBuild): Promise<string> => {
  const tmp = await Deno.makeTempDir({ prefix: "crt-kernel-" });
  try {
    const plain = await compile(k, [], tmp);
    const relaxed = await compile(k, RELAXED, tmp);
    // The header every source includes is part of what the binary is built from.
    const hashed = [...k.sources, "simd.h"];
    const hashes = await Promise.all(hashed.map(async (x) => {
      const bytes = await Deno.readFile(new URL(x, here));
      return `// ${x} sha256 ${hex(await crypto.subtle.digest("SHA-256", bytes))}`;
    }));
    return [
      `// Generated by kernels/build.ts from kernels/${
        k.sources.join(", kernels/")
      } — do not edit; run \`deno task kernels\`.`,
      `// ${k.about}.`,
      `// ${CLANG} ${[...COMMON, ...k.flags].join(" ")} [${RELAXED.join(" ")}]`,
      ...hashes,
      "",
      `/** The compiled module with SIMD128, base64 (${plain.length} bytes). */`,
      `export const wasmBase64: string =`,
      `  "${base64(plain)}";`,
      "",
      `/** The same with relaxed SIMD, base64 (${relaxed.length} bytes). */`,
      `export const relaxedBase64: string =`,
      `  "${base64(relaxed)}";`,
      "",
    ].join("\n");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
};

const main = async (): Promise<number> => {
  const { values } = parseArgs({ args: Deno.args, options: { check: { type: "boolean" } } });
  if (!(await run(CLANG, ["--version"])).ok) {
    const msg = `${CLANG} not found: install it with \`apt-get install clang-19 lld-19\``;
    if (values.check && !Deno.env.get("CI")) {
      console.error(`kernels: ${msg}; skipping the check that binaries match their sources`);
      return 0;
    }
    console.error(`kernels: ${msg}`);
    return 1;
  }
  let stale = 0;
  for (const k of KERNELS) {
    const text = await buildKernel(k);
    const out = new URL(`${k.name}_wasm.ts`, here);
    if (values.check) {
      const committed = await Deno.readTextFile(out).catch(() => "");
      if (committed !== text) {
        console.error(
          `kernels: kernels/${k.name}_wasm.ts does not match its sources (${
            k.sources.join(", ")
          }); run \`deno task kernels\``,
        );
        stale++;
      } else console.error(`kernels: ${k.name}_wasm.ts matches ${k.sources.join(", ")}`);
    } else {
      await Deno.writeTextFile(out, text);
      console.error(`kernels: wrote kernels/${k.name}_wasm.ts`);
    }
  }
  return stale === 0 ? 0 : 1;
};

if (import.meta.main) Deno.exit(await main());
