/**
 * The repository stands alone: no tracked file points at a document a user
 * of the repository does not have, and every relative link in README.md and
 * docs/*.md reaches a file the repository tracks.
 *
 * The forbidden names are built from pieces below, so that this file does
 * not match itself.
 */
import assert from "node:assert/strict";
import { dirname, join, posix } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

/** Names of files outside the repository that nothing in it may mention. */
const FORBIDDEN: readonly string[] = [
  ["SUB", "STRATE"].join(""),
  ["PAPER", "md"].join("."),
  ["STYLE", "md"].join("."),
];

/** The files git tracks under `root`, relative to it (forward slashes). */
function trackedFiles(root: string): string[] {
  const out = new Deno.Command("git", {
    args: ["-C", root, "ls-files", "-z"],
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  if (out.code !== 0) {
    throw new Error(
      `git ls-files failed in ${root}: ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
  return new TextDecoder().decode(out.stdout).split("\0").filter((f) => f !== "");
}

function readText(root: string, file: string): string | null {
  try {
    return new TextDecoder().decode(Deno.readFileSync(join(root, file)));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.IsADirectory) return null;
    throw e;
  }
}

/** `file:line: mentions NAME` for every line of a tracked file that names a forbidden file. */
function forbiddenMentions(root: string, files: readonly string[]): string[] {
  const hits: string[] = [];
  for (const file of files) {
    const text = readText(root, file);
    if (text === null || !FORBIDDEN.some((n) => text.includes(n))) continue;
    text.split("\n").forEach((line, i) => {
      for (const name of FORBIDDEN) {
        if (line.includes(name)) hits.push(`${file}:${i + 1}: mentions ${name}`);
      }
    });
  }
  return hits;
}

/** The markdown files whose links are checked: README.md and docs/*.md. */
const linkedDocs = (files: readonly string[]): string[] =>
  files.filter((f) => f === "README.md" || /^docs\/[^/]+\.md$/.test(f));

/** Link targets of a markdown text, with line numbers, outside code blocks and code spans. */
function linkTargets(text: string): { line: number; target: string }[] {
  const out: { line: number; target: string }[] = [];
  let fenced = false;
  text.split("\n").forEach((raw, i) => {
    if (/^\s*(```|~~~)/.test(raw)) {
      fenced = !fenced;
      return;
    }
    if (fenced) return;
    const line = raw.replace(/`[^`]*`/g, "");
    for (const m of line.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      out.push({ line: i + 1, target: m[1] });
    }
    const ref = /^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/.exec(line);
    if (ref !== null) out.push({ line: i + 1, target: ref[1] });
  });
  return out;
}

/** `file:line: link to TARGET …` for every relative link that reaches no tracked file. */
function brokenLinks(root: string, files: readonly string[]): string[] {
  const tracked = new Set(files);
  const dirs = new Set(files.flatMap((f) => {
    const parts = f.split("/");
    return parts.slice(1).map((_, i) => parts.slice(0, i + 1).join("/"));
  }));
  const broken: string[] = [];
  for (const doc of linkedDocs(files)) {
    const text = readText(root, doc);
    if (text === null) continue;
    for (const { line, target } of linkTargets(text)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("#")) continue; // URL, anchor
      const path = decodeURIComponent(target.replace(/[#?].*$/, ""));
      const resolved = posix.normalize(
        path.startsWith("/") ? path.slice(1) : posix.join(posix.dirname(doc), path),
      ).replace(/\/$/, "");
      if (resolved.startsWith("..")) {
        broken.push(`${doc}:${line}: link to ${target} leaves the repository`);
      } else if (!tracked.has(resolved) && !dirs.has(resolved) && resolved !== ".") {
        broken.push(`${doc}:${line}: link to ${target}: ${resolved} is not a tracked file`);
      }
    }
  }
  return broken;
}

const gitWorks = (() => {
  try {
    return new Deno.Command("git", { args: ["-C", ROOT, "rev-parse"], stderr: "null" })
      .outputSync().code === 0;
  } catch {
    return false;
  }
})();
if (!gitWorks) {
  console.warn(`tests/standalone_test.ts: skipped, ${ROOT} is not a git checkout (or no git)`);
}

Deno.test({
  name: "standalone: no tracked file mentions a document outside the repository",
  ignore: !gitWorks,
  fn() {
    const hits = forbiddenMentions(ROOT, trackedFiles(ROOT));
    assert.deepEqual(hits, [], `files outside the repository are mentioned:\n${hits.join("\n")}`);
  },
});

Deno.test({
  name: "standalone: every relative link in README.md and docs/*.md reaches a tracked file",
  ignore: !gitWorks,
  fn() {
    const files = trackedFiles(ROOT);
    assert.ok(linkedDocs(files).includes("README.md"), "README.md is not tracked");
    const broken = brokenLinks(ROOT, files);
    assert.deepEqual(broken, [], `broken links:\n${broken.join("\n")}`);
  },
});

Deno.test({
  name: "standalone: the checks find a mention and a broken link in a repository that has them",
  ignore: !gitWorks,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "crt-standalone-" });
    try {
      const write = (f: string, s: string) => {
        Deno.mkdirSync(dirname(join(dir, f)), { recursive: true });
        Deno.writeTextFileSync(join(dir, f), s);
      };
      write(
        "README.md",
        [
          "See [the model](docs/model.md), [speed](docs/speed.md#top), [web](https://example.org/x),",
          "[here](#usage), [the code](src/), [gone](docs/gone.md) and [up](../outside.md).",
          "`[not a link](nowhere.md)`",
          "```",
          "[also not](nowhere.md)",
          "```",
          "[ref]: docs/missing.md",
        ].join("\n"),
      );
      write("docs/model.md", "Back to the [README](../README.md).\n");
      write("docs/speed.md", "Unlinked.\n");
      write("src/a.ts", `// numbers from ${FORBIDDEN[0]}\nconst x = 1;\n`);
      write("untracked.md", FORBIDDEN[1]);
      const git = (...args: string[]) => {
        const out = new Deno.Command("git", { args: ["-C", dir, ...args], stderr: "piped" })
          .outputSync();
        assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      };
      git("init", "-q");
      git("add", "README.md", "docs", "src");
      const files = trackedFiles(dir);
      assert.deepEqual(forbiddenMentions(dir, files), [`src/a.ts:1: mentions ${FORBIDDEN[0]}`]);
      assert.deepEqual(brokenLinks(dir, files), [
        "README.md:2: link to docs/gone.md: docs/gone.md is not a tracked file",
        "README.md:2: link to ../outside.md leaves the repository",
        "README.md:7: link to docs/missing.md: docs/missing.md is not a tracked file",
      ]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
