/**
 * `deno task test:arm64`: the core of the suite on 64-bit ARM, under
 * emulation. Run by the x64 Deno, it
 *
 * 1. fetches the pinned arm64 Deno from npm into `.tools/arm64/` (integrity
 *    checked), and installs qemu-user-static and the arm64 C library and
 *    OpenBLAS from Debian multiarch when they are missing (as root with apt;
 *    otherwise it says what to install and exits 1);
 * 2. starts the backend on arm64 and checks its report: the native matmul
 *    tier on the arm64 OpenBLAS, architecture aarch64;
 * 3. runs the chosen test files (or the chosen tests in them) with
 *    `qemu-aarch64-static`, without type checking (the x64 run checks types),
 *    and prints each one's pass/fail counts and wall time;
 * 4. trains a tiny model on x64, exports it on arm64 as float32 and int8,
 *    checks the exports equal x64's bit for bit, and generates text from both
 *    files on both architectures with the same seed: the texts must be equal.
 *
 * Tests that start a Deno subprocess are left out: under user-mode emulation
 * without a binfmt_misc registration a child arm64 executable cannot start.
 *
 * Usage: `deno task test:arm64 [--only SUBSTRING]` (`--only` keeps the
 * test files whose path contains SUBSTRING and skips the generation check).
 *
 * @module
 */
import { join } from "node:path";

/** The arm64 Deno, pinned: the newest linux-arm64-glibc build on npm. */
export const DENO_ARM64 = {
  name: "@deno/linux-arm64-glibc",
  version: "2.9.5",
  integrity:
    "sha512-IuYjsz9PGl7CJcNXMuN27KNDB8Q40brK3SG3l+TXMDVW61ZKwcn0fQHBHnXFiiygEwI8by/fKnASEluhZB1atw==",
} as const;

/** The arm64 libraries the task needs, each with the Debian package that has it. */
export const ARM64_LIBS: readonly { file: string; pkg: string }[] = [
  { file: "/lib/ld-linux-aarch64.so.1", pkg: "libc6:arm64" },
  { file: "/usr/lib/aarch64-linux-gnu/libc.so.6", pkg: "libc6:arm64" },
  { file: "/usr/lib/aarch64-linux-gnu/libgcc_s.so.1", pkg: "libgcc-s1:arm64" },
  { file: "/usr/lib/aarch64-linux-gnu/libopenblas.so.0", pkg: "libopenblas0-pthread:arm64" },
];

/** One step of the plan: a test file, optionally narrowed by `deno test --filter`. */
export interface PlanEntry {
  readonly file: string;
  /** What it shows on arm64. */
  readonly what: string;
  readonly filter?: string;
}

/**
 * A `--filter` regex keeping the tests whose names contain one of `names`.
 * (Deno's filter regexes have no look-ahead, so leaving tests out is done by
 * naming the ones kept.)
 */
export const including = (...names: string[]): string => {
  const esc = names.map((n) => n.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&"));
  return `/(?:${esc.join("|")})/`;
};

export const PLAN: readonly PlanEntry[] = [
  { file: "tests/ops_parity_test.ts", what: "op parity, native matmul tier" },
  {
    file: "tests/ops_matmul_test.ts",
    what: "matmul, native and portable tiers",
    // All but the two that start `deno run` subprocesses (forced native without
    // --allow-ffi; no SharedArrayBuffer).
    filter: including(
      "[native]",
      "[portable]",
      "BatchMatMul replacement",
      // Not "portable tier on two threads": it counts products that found the worker not
      // ready yet, which under emulation some do (timing, not a wrong value).
      "portable tier: the XNNPACK fallback",
      "portable tier: one thread when asked",
      "installMatmul",
      "reports the matmul kernel in use",
    ),
  },
  { file: "tests/ops_fused_test.ts", what: "fused kernels, wasm and cpu" },
  { file: "tests/fusion_test.ts", what: "fusion stage, both tiers" },
  {
    file: "tests/ops_gemm_pool_test.ts",
    what: "GEMM worker pool",
    // All but "its worker survives a … bundle (deno bundle)": it runs the bundle in a subprocess.
    filter: including(
      "one thread matches",
      "two threads match",
      "batches, shared operands",
      "an empty inner dimension",
      "chunksOf",
      "small products stay",
      // Not "starts lazily, retires when idle" nor "a worker that blocks in Atomics.wait":
      // both count worker starts, and under emulation the 30 ms idle timeout retires the
      // worker between products, so it starts again (timing, not a wrong value: in CI the
      // second counted 4 starts for 2 with every product right).
      "stopWorker",
      "loaded by URL",
      "heap grows",
      "without SharedArrayBuffer or Worker",
      "gemvQ8",
      "gemv_q8",
      "timeInt8Dots",
    ),
  },
  { file: "tests/stream_test.ts", what: "streaming equals segment-at-once" },
  { file: "tests/decoder_test.ts", what: "the decode loop equals inferStep and drawStep" },
  {
    file: "experiments/tasks/language_model_test.ts",
    what: "training lowers the loss; resume after an interrupt",
    filter: including("a short run lowers the loss", "interrupted and resumed"),
  },
];

/** Deno's closing line `ok | 5 passed | 0 failed (44s)` (colours stripped), or null. */
export const parseSummary = (
  out: string,
): { passed: number; failed: number; ignored: number } | null => {
  // deno-lint-ignore no-control-regex
  const plain = out.replace(/\x1b\[[0-9;]*m/g, "");
  const m = plain.match(
    /(?:ok|FAILED) \| (\d+) passed(?: \((\d+) steps?\))? \| (\d+) failed(?: \| (\d+) ignored)?/,
  );
  if (m === null) return null;
  return { passed: Number(m[1]), failed: Number(m[3]), ignored: Number(m[4] ?? 0) };
};

const ROOT = new URL("../../", import.meta.url).pathname;
const TOOLS = join(ROOT, ".tools", "arm64");
const ARM_DENO = join(TOOLS, `deno-${DENO_ARM64.version}`, "deno");
const QEMU = "qemu-aarch64-static";
/** The permissions of `deno task test` (tests/arm64 adds nothing). */
const TEST_PERMS = [
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-run",
  "--allow-ffi",
  "--allow-sys",
  "--allow-net=127.0.0.1,localhost",
];
const GEN_PERMS = ["--allow-read", "--allow-env", "--allow-ffi", "--allow-sys"];

class Fatal extends Error {}

const exists = async (p: string): Promise<boolean> => {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
};

interface Ran {
  code: number;
  out: string;
  err: string;
  seconds: number;
}

const run = async (
  cmd: string,
  args: string[],
  opts: { env?: Record<string, string>; inherit?: boolean } = {},
): Promise<Ran> => {
  const t0 = performance.now();
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cmd, {
      args,
      cwd: ROOT,
      env: opts.env,
      stdin: "null",
      stdout: opts.inherit ? "inherit" : "piped",
      stderr: opts.inherit ? "inherit" : "piped",
    }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Fatal(`${cmd}: command not found`);
    throw e;
  }
  const dec = new TextDecoder();
  return {
    code: out.code,
    out: opts.inherit ? "" : dec.decode(out.stdout),
    err: opts.inherit ? "" : dec.decode(out.stderr),
    seconds: (performance.now() - t0) / 1000,
  };
};

const onPath = async (cmd: string): Promise<boolean> =>
  (await run("sh", ["-c", `command -v ${cmd}`])).code === 0;

/** apt-get install `pkgs` when root with apt, else a Fatal naming what to install. */
const aptInstall = async (pkgs: string[], why: string): Promise<void> => {
  const root = Deno.uid() === 0;
  if (!root || !(await onPath("apt-get"))) {
    throw new Fatal(
      `${why}; install ${pkgs.join(" ")} (Debian: ${
        pkgs.some((p) => p.endsWith(":arm64")) ? "dpkg --add-architecture arm64, then " : ""
      }apt-get install ${pkgs.join(" ")})`,
    );
  }
  console.log(`== apt-get install ${pkgs.join(" ")} (${why})`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  if (pkgs.some((p) => p.endsWith(":arm64"))) {
    const arches = (await run("dpkg", ["--print-foreign-architectures"])).out.split(/\s+/);
    if (!arches.includes("arm64")) await mustRun("dpkg", ["--add-architecture", "arm64"]);
  }
  await mustRun("apt-get", ["update", "-qq"], env);
  await mustRun("apt-get", ["install", "-y", "-qq", ...pkgs], env);
};

const mustRun = async (cmd: string, args: string[], env?: Record<string, string>) => {
  const r = await run(cmd, args, env ? { env } : {});
  if (r.code !== 0) {
    throw new Fatal(`${cmd} ${args.join(" ")} failed (exit ${r.code}): ${r.err.trim()}`);
  }
  return r;
};

const ensureHost = async (): Promise<void> => {
  const missing: string[] = [];
  if (!(await onPath(QEMU))) missing.push("qemu-user-static");
  for (const { file, pkg } of ARM64_LIBS) {
    if (!(await exists(file)) && !missing.includes(pkg)) missing.push(pkg);
  }
  if (missing.length > 0) await aptInstall(missing, "the arm64 emulation needs them");
};

/** The pinned arm64 Deno under .tools/arm64/, fetched with `npm pack` when absent. */
const ensureDeno = async (): Promise<void> => {
  if (await exists(ARM_DENO)) return;
  if (!(await onPath("npm"))) throw new Fatal("npm is needed to fetch the arm64 Deno");
  const spec = `${DENO_ARM64.name}@${DENO_ARM64.version}`;
  console.log(`== npm pack ${spec} into ${TOOLS}`);
  await Deno.mkdir(TOOLS, { recursive: true });
  const tmp = await Deno.makeTempDir({ dir: TOOLS, prefix: ".fetch-" });
  try {
    const packed = await mustRun("npm", ["pack", spec, "--json", "--pack-destination", tmp]);
    const [info] = JSON.parse(packed.out) as { filename: string; integrity: string }[];
    if (info.integrity !== DENO_ARM64.integrity) {
      throw new Fatal(
        `${spec}: integrity ${info.integrity} is not the pinned ${DENO_ARM64.integrity}`,
      );
    }
    await mustRun("tar", ["-xzf", join(tmp, info.filename), "-C", tmp]);
    await Deno.mkdir(join(TOOLS, `deno-${DENO_ARM64.version}`), { recursive: true });
    await Deno.rename(join(tmp, "package", "deno"), ARM_DENO);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
};

/** The arm64 Deno under qemu: its own cache, so the x64 one is left as it is. */
const arm = (args: string[], inherit = false): Promise<Ran> =>
  run(QEMU, [ARM_DENO, ...args], {
    env: { DENO_DIR: join(TOOLS, "deno_dir"), NO_COLOR: "1" },
    inherit,
  });

const x64 = (args: string[]): Promise<Ran> =>
  run(Deno.execPath(), args, { env: { NO_COLOR: "1" } });

const fmtS = (s: number) => `${s.toFixed(1)} s`;

interface Row {
  name: string;
  ok: boolean;
  passed: number;
  failed: number;
  seconds: number;
  note: string;
}

const probe = async (rows: Row[]): Promise<void> => {
  const r = await arm(["run", "--no-check", ...GEN_PERMS, "tests/arm64/_probe.ts"]);
  let note = r.err.trim().split("\n").slice(-3).join(" / ");
  let ok = false;
  if (r.code === 0) {
    const info = JSON.parse(r.out.trim().split("\n").at(-1)!);
    console.log(`== arm64 backend: ${JSON.stringify(info)}`);
    const problems = [
      info.arch !== "aarch64" && `arch is ${info.arch}, not aarch64`,
      info.matmul !== "native" && `matmul tier is ${info.matmul}: ${info.reason ?? "?"}`,
    ].filter((p) => p !== false);
    ok = problems.length === 0;
    note = ok
      ? `${info.name}${info.simd ? " simd" : ""}, matmul ${info.matmul} (${info.library}), ` +
        `kernels ${info.kernels}, ${info.arch}`
      : problems.join("; ");
  }
  rows.push({
    name: "backend report",
    ok,
    passed: ok ? 1 : 0,
    failed: ok ? 0 : 1,
    seconds: r.seconds,
    note,
  });
};

const testFile = async (e: PlanEntry, rows: Row[]): Promise<void> => {
  const args = ["test", "--no-check", ...TEST_PERMS];
  if (e.filter !== undefined) args.push("--filter", e.filter);
  args.push(e.file);
  console.log(
    `== arm64: deno test --no-check ${e.file}${e.filter ? ` --filter '${e.filter}'` : ""}`,
  );
  const r = await arm(args);
  const s = parseSummary(r.out);
  const ok = r.code === 0 && s !== null && s.failed === 0 && s.passed > 0;
  if (!ok) console.log(r.out + r.err);
  rows.push({
    name: e.file,
    ok,
    passed: s?.passed ?? 0,
    failed: ok ? 0 : Math.max(1, s?.failed ?? 1),
    seconds: r.seconds,
    note: e.what + (s && s.ignored > 0 ? `; ${s.ignored} ignored` : ""),
  });
};

/** Train on x64, export on arm64, generate from the same files on both. */
const generation = async (rows: Row[]): Promise<void> => {
  const t0 = performance.now();
  const problems: string[] = [];
  const trained = await x64(["run", "-A", "tests/arm64/_train.ts"]);
  if (trained.code !== 0) throw new Fatal(`x64 training failed: ${trained.err}`);
  const runDir = trained.out.trim().split("\n").at(-1)!;
  const dataDir = join(runDir, "..");
  try {
    const gen = ["--prompt", "w1 w2 w3", "--seed", "7", "--max-tokens", "30"];
    for (const q of ["f32", "int8"] as const) {
      const flags = q === "int8" ? ["--int8"] : [];
      const armFile = join(dataDir, `arm64.${q}.crtm`), xFile = join(dataDir, `x64.${q}.crtm`);
      const exp = ["run", "--no-check", ...GEN_PERMS, "--allow-write", "deploy/export_cli.ts"];
      const ea = await arm([...exp, runDir, ...flags, "--out", armFile]);
      if (ea.code !== 0) throw new Fatal(`arm64 export ${q} failed: ${ea.err}`);
      const ex = await x64([...exp, runDir, ...flags, "--out", xFile]);
      if (ex.code !== 0) throw new Fatal(`x64 export ${q} failed: ${ex.err}`);
      const same = await x64(["run", "--allow-read", "tests/arm64/_same_model.ts", armFile, xFile]);
      console.log(`== ${q}: arm64 export vs x64 export: ${same.out.trim()}`);
      if (same.code !== 0) problems.push(`${q} exports ${same.out.trim()}`);
      for (const file of [armFile, xFile]) {
        const g = ["run", "--no-check", ...GEN_PERMS, "deploy/generate_cli.ts", file, ...gen];
        const a = await arm(g), x = await x64(g);
        if (a.code !== 0) throw new Fatal(`arm64 generate failed: ${a.err}`);
        if (x.code !== 0) throw new Fatal(`x64 generate failed: ${x.err}`);
        const label = `${q} file exported on ${file === armFile ? "arm64" : "x64"}`;
        console.log(`== generate (${label}, seed 7, prompt "w1 w2 w3", 30 tokens)`);
        console.log(`   x64:   ${x.out.trim()}`);
        console.log(`   arm64: ${a.out.trim()}`);
        if (a.out !== x.out) problems.push(`${label}: the texts differ`);
      }
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
  const ok = problems.length === 0;
  rows.push({
    name: "export → load → generate",
    ok,
    passed: ok ? 1 : 0,
    failed: ok ? 0 : 1,
    seconds: (performance.now() - t0) / 1000,
    note: ok ? "f32 and int8: exports and texts equal x64's" : problems.join("; "),
  });
};

const main = async (args: string[]): Promise<number> => {
  const at = args.indexOf("--only");
  const only = at >= 0 ? args[at + 1] : undefined;
  if ((at >= 0 && only === undefined) || args.length !== (at >= 0 ? 2 : 0)) {
    console.error("usage: deno task test:arm64 [--only SUBSTRING]");
    return 2;
  }
  const t0 = performance.now();
  const rows: Row[] = [];
  try {
    await ensureHost();
    await ensureDeno();
    const version = await arm(["--version"]);
    if (version.code !== 0) {
      throw new Fatal(`${ARM_DENO} does not start under ${QEMU}: ${version.err}`);
    }
    console.log(`== ${QEMU} ${version.out.split("\n")[0]}`);
    await probe(rows);
    const plan = PLAN.filter((e) => only === undefined || e.file.includes(only));
    if (plan.length === 0) throw new Fatal(`--only ${only}: no test file matches`);
    for (const e of plan) await testFile(e, rows);
    if (only === undefined) await generation(rows);
  } catch (e) {
    if (!(e instanceof Fatal)) throw e;
    console.error(`test:arm64: ${e.message}`);
    return 1;
  }
  console.log("\n== test:arm64 (aarch64 under qemu-user, no type checking)");
  for (const r of rows) {
    console.log(
      `${r.ok ? "PASS" : "FAIL"}  ${r.name.padEnd(28)} ${String(r.passed).padStart(3)} passed ${
        String(r.failed).padStart(2)
      } failed ${fmtS(r.seconds).padStart(8)}  ${r.note}`,
    );
  }
  const passed = rows.reduce((a, r) => a + r.passed, 0);
  const failed = rows.reduce((a, r) => a + r.failed, 0);
  console.log(`wall time ${fmtS((performance.now() - t0) / 1000)}`);
  console.log(`arm64: ${passed} passed, ${failed} failed`);
  return rows.every((r) => r.ok) ? 0 : 1;
};

if (import.meta.main) Deno.exit(await main(Deno.args));
