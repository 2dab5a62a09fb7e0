/**
 * What `bench/peers.ts`'s peers need on the machine: Debian's PyTorch, the
 * onnxruntime packages and the segment graphs exported from the PyTorch
 * model, installed and exported when missing; and where the bench's files
 * are and its progress log, which every part of the command uses.
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { Options } from "../peers.ts";

/** The Python of the PyTorch peer: Debian's python3-torch installs for the system interpreter. */
export const PYTHON = "/usr/bin/python3";
const INSTALL = ["apt-get", "install", "-y", "python3-torch", "libopenblas0-pthread"];
/** The infer cell's B, the batch the segment graph is exported for. */
export const ORT_BATCH = 20;
const BENCH = new URL("../", import.meta.url);
/** The repository's root folder: where the peers run. */
export const ROOT = decodeURIComponent(new URL("../", BENCH).pathname);
/** A path relative to bench/, the folder of `bench/peers.ts`. */
export const path = (rel: string): string => decodeURIComponent(new URL(rel, BENCH).pathname);

/** Progress goes to stderr (stdout may be the JSON rows). */
export const log = (msg: string): void => console.error(msg);

const succeeds = async (cmd: string, args: string[]): Promise<boolean> => {
  try {
    const r = await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output();
    return r.success;
  } catch {
    return false; // not installed at all
  }
};

/** Run a command with its output on our stderr (stdout may be the JSON rows). */
const runLoud = async (argv: string[], env: Record<string, string> = {}): Promise<boolean> => {
  log(`$ ${argv.join(" ")}`);
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { DEBIAN_FRONTEND: "noninteractive", ...env },
  }).spawn();
  const forward = (s: ReadableStream<Uint8Array>) =>
    s.pipeTo(new WritableStream({ write: (chunk) => void Deno.stderr.writeSync(chunk) }));
  await Promise.all([forward(child.stdout), forward(child.stderr)]);
  return (await child.status).success;
};

/**
 * Make `import torch` work for `/usr/bin/python3`, installing Debian's
 * PyTorch and OpenBLAS when it does not (without OpenBLAS, Debian's torch
 * runs on the reference BLAS, 10× slower). Throws with what to do when it
 * cannot.
 */
export const ensurePyTorch = async (): Promise<void> => {
  if (await succeeds(PYTHON, ["-c", "import torch"])) {
    log(`PyTorch peer: present (${PYTHON} -c "import torch" works)`);
    return;
  }
  log(`PyTorch peer: ${PYTHON} -c "import torch" fails; installing it with apt-get`);
  let ok = await runLoud(INSTALL);
  if (!ok) {
    // A fresh machine may have no package lists yet.
    ok = await runLoud(["apt-get", "update"]) && await runLoud(INSTALL);
  }
  if (!ok || !(await succeeds(PYTHON, ["-c", "import torch"]))) {
    throw new Error(
      `cannot install the PyTorch peer; as root run: ${INSTALL.join(" ")} (then rerun)`,
    );
  }
  log("PyTorch peer: installed");
};

/**
 * The onnxruntime packages in node_modules/ (Deno puts them there from
 * deno.json's imports, skipping their install scripts) and, for the web
 * peer under Node, a Node that runs it. Throws with what to do.
 */
export const ensureOnnxRuntime = async (o: Options): Promise<void> => {
  const wanted = o.peers.filter((p) => p.startsWith("onnxruntime-"));
  const missing = () =>
    wanted.filter((p) => {
      try {
        Deno.statSync(`${ROOT}node_modules/${p}/package.json`);
        return false;
      } catch {
        return true;
      }
    });
  if (missing().length > 0 && !(await runLoud([Deno.execPath(), "install"]))) {
    throw new Error("`deno install` failed: the onnxruntime peers need node_modules/");
  }
  if (missing().length > 0) {
    throw new Error(`${missing().join(", ")} not in node_modules/ after \`deno install\``);
  }
  if (wanted.includes("onnxruntime-web") && o.ortWebHost === "node") {
    if (
      !(await succeeds("node", ["-e", "if (+process.versions.node.split('.')[0] < 20) throw 1"]))
    ) {
      throw new Error(
        "onnxruntime-web runs under Node ≥ 20 here and `node` is missing or older " +
          "(apt-get install nodejs), or pass --ort-web-host deno, or leave it out of --peers",
      );
    }
  }
};

/**
 * The folder of the exported segment graphs: one per version of the
 * PyTorch model's source, so that an edit to torch_ref.py exports afresh.
 */
const onnxFolder = async (o: Options): Promise<string> => {
  const source = await Deno.readFile(path("./peers/torch_ref.py"));
  const tag = createHash("sha256").update(source).digest("hex").slice(0, 12);
  return `${o.cache}/onnx-${tag}`;
};

/** Export the segment graph at every S unless the cache has it. */
export const ensureOnnxGraphs = async (o: Options): Promise<string> => {
  const dir = await onnxFolder(o);
  for (const s of o.segmentLens) {
    const file = `${dir}/crt_b${ORT_BATCH}_s${s}.onnx`;
    try {
      Deno.statSync(file);
      log(`ONNX graph: ${file} (cached)`);
      continue;
    } catch {
      // not exported yet
    }
    log(`ONNX graph: exporting S=${s} with torch.onnx.export into ${dir}`);
    const ok = await runLoud([
      PYTHON,
      path("./peers/torch_ref.py"),
      "--mode",
      "export",
      "--segment-len",
      String(s),
      "--batch-size",
      String(ORT_BATCH),
      "--out",
      dir,
      "--threads",
      String(o.threads),
    ]);
    if (!ok) throw new Error(`torch_ref.py --mode export failed for S=${s} (its output is above)`);
  }
  return dir;
};
