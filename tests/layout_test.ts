/**
 * The layout README.md draws is the layout of the code: every import
 * between the top-level folders follows an arrow of README's picture
 * ("How it is built"), and every folder the picture names exists.
 */
import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

/** README's arrows: what each folder's published code may import of ours. */
const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  spec: [],
  kernels: [],
  ops: ["spec", "kernels"],
  core: ["spec", "ops"],
  experiments: ["spec", "core", "ops"],
  deploy: ["spec", "core", "ops", "experiments"],
  web: ["mod.ts"],
};

function* sources(dir: string): Generator<string> {
  for (const e of Deno.readDirSync(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory && e.name !== "dist" && e.name !== "node_modules") yield* sources(p);
    else if (e.isFile && e.name.endsWith(".ts")) yield p;
  }
}

/** `from "…"` specifiers of the import and export statements of a file (not its doc examples). */
const specifiers = (text: string): string[] =>
  [...text.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s+"(\.[^"]+)"/gm)].map((m) => m[1]);

/** The top-level folder (or root file) a repository path is in. */
const topOf = (file: string): string => relative(ROOT, file).split("/")[0];

Deno.test("layout: every import between top-level folders follows README's picture", () => {
  const wrong: string[] = [];
  for (const [top, allowed] of Object.entries(ALLOWED)) {
    for (const file of sources(join(ROOT, top))) {
      // Tests and private helpers (`_*.ts`) may reach across; the published code may not.
      const name = file.split("/").at(-1)!;
      if (name.endsWith("_test.ts") || name.startsWith("_")) continue;
      for (const spec of specifiers(Deno.readTextFileSync(file))) {
        const target = topOf(normalize(join(dirname(file), spec)));
        if (target !== top && !allowed.includes(target)) {
          wrong.push(`${relative(ROOT, file)} imports ${spec} (${top} → ${target})`);
        }
      }
    }
  }
  assert.deepEqual(wrong, [], wrong.join("\n"));
});

Deno.test("layout: the folders README's layout names exist", () => {
  const readme = Deno.readTextFileSync(join(ROOT, "README.md"));
  const section = readme.slice(readme.indexOf("## How it is built"));
  const named = [
    ...section.matchAll(/`((?:experiments|spec|core|ops|deploy|web|kernels)\/[\w/]*)`/g),
  ]
    .map((m) => m[1])
    .concat(
      // The experiments/ bullets name its folders by role, relative to it.
      [...section.matchAll(/`(loop|tasks|data|io|sweep|sweep\/cluster)\/`/g)].map((m) =>
        `experiments/${m[1]}`
      ),
    );
  assert.ok(named.length > 10, "the section names the folders");
  const missing = named.filter((p) => {
    try {
      Deno.statSync(join(ROOT, p));
      return false;
    } catch {
      return true;
    }
  });
  assert.deepEqual(missing, []);
});
