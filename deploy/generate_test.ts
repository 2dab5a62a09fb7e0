import assert from "node:assert/strict";
import { join } from "node:path";
import { seeded } from "../core/random.ts";
import { ensureBackend } from "../ops/backend.ts";
import { tf } from "../ops/tf.ts";
import { tinyCrtGru } from "../tests/_tiny.ts";
import { tinyModelFile, withFloat } from "./_testing.ts";
import { generate, generateTokens, sampleToken } from "./generate.ts";
import { main } from "./generate_cli.ts";
import { loadModel } from "./loaded.ts";

await ensureBackend();

const spec = { ...tinyCrtGru, vocabSize: 12 };
const file = await tinyModelFile(spec, { seed: 3 });

Deno.test("generate: the same seed gives the same text, another seed another", async () => {
  const m = await loadModel(file.bytes);
  const opts = { maxTokens: 40, temperature: 1.5 };
  const a = generate(m, "w1 w2", { ...opts, seed: 7 });
  const b = generate(m, "w1 w2", { ...opts, seed: 7 });
  const c = generate(m, "w1 w2", { ...opts, seed: 8 });
  assert.equal(a.ids.length, 40);
  assert.deepEqual(a.ids, b.ids);
  assert.equal(a.text, b.text);
  assert.notDeepEqual(a.ids, c.ids);
  assert.equal(a.text, m.decode(a.ids));
  m.dispose();
});

Deno.test("generate: temperature 0 and top-k 1 are greedy decoding", async () => {
  const m = await loadModel(file.bytes);
  const prompt = m.encode("w3 w4 w5");
  const words: string[] = [];
  const greedy = generate(m, prompt, {
    maxTokens: 12,
    temperature: 0,
    onToken: (_id, w) => words.push(w),
  });
  const topOne = generate(m, prompt, { maxTokens: 12, topK: 1, seed: 1 });
  // By hand: feed the prompt, then always the most likely token.
  const s = m.openStream();
  let p = s.feed(prompt);
  const want: number[] = [];
  for (let i = 0; i < 12; i++) {
    const best = p.indexOf(Math.max(...p));
    want.push(best);
    p = s.feed([best]);
  }
  assert.deepEqual(Array.from(greedy.ids), want);
  assert.deepEqual(Array.from(topOne.ids), want);
  assert.deepEqual(words, want.map((id) => m.decode([id])));
  m.dispose();
});

Deno.test("sampleToken: draws follow p, p^(1/T) and the top-k renormalisation", () => {
  const p = Float32Array.of(0.5, 0.3, 0.2);
  const freq = (opts: { temperature?: number; topK?: number }) => {
    const rng = seeded(11);
    const n = 20_000, counts = [0, 0, 0];
    for (let i = 0; i < n; i++) counts[sampleToken(p, opts, rng.uniform)]++;
    return counts.map((c) => c / n);
  };
  const close = (got: number[], want: number[]) =>
    got.forEach((g, i) => assert.ok(Math.abs(g - want[i]) < 0.015, `${got} vs ${want}`));
  close(freq({}), [0.5, 0.3, 0.2]);
  const t2 = [0.5, 0.3, 0.2].map(Math.sqrt), z = t2.reduce((a, b) => a + b);
  close(freq({ temperature: 2 }), t2.map((x) => x / z));
  close(freq({ topK: 2 }), [0.625, 0.375, 0]);
  // Ties at the k-th place go to the lower id.
  assert.equal(sampleToken(Float32Array.of(0.2, 0.4, 0.4), { topK: 1 }, () => 0.5), 1);
});

Deno.test("generate: bad options are named", async () => {
  const m = await loadModel(file.bytes);
  for (
    const [opts, message] of [
      [{ maxTokens: -1 }, /maxTokens must be an integer in \[0, 2⁵³ − 1\], got -1/],
      [
        { maxTokens: 2 ** 53 },
        /maxTokens must be an integer in \[0, 2⁵³ − 1\], got 9007199254740992/,
      ],
      [{ maxTokens: 3, temperature: NaN }, /temperature must be a finite number ≥ 0, got NaN/],
      [{ maxTokens: 3, topK: 1.5 }, /topK must be an integer/],
      [{ maxTokens: 3, seed: -2 }, /seed must be an integer in \[0, 2³² − 1\], got -2/],
    ] as const
  ) {
    assert.throws(() => generate(m, "w1", opts), message);
  }
  // An empty prompt starts a sentence; zero tokens is an empty result.
  assert.equal(generate(m, "", { maxTokens: 3, seed: 1 }).ids.length, 3);
  assert.equal(generate(m, "w1", { maxTokens: 0 }).text, "");
  m.dispose();
});

Deno.test("deno task generate: reproducible output, exit 2 on bad input", async () => {
  const dir = await Deno.makeTempDir({ prefix: "crt-generate-" });
  const path = join(dir, "model.crtm");
  await Deno.writeFile(path, file.bytes);
  const run = async (...args: string[]) => {
    const out: string[] = [], err: string[] = [];
    const code = await main(args, { stdout: (s) => out.push(s), stderr: (s) => err.push(s) });
    return { code, out: out.join(""), err: err.join("") };
  };
  const a = await run(path, "--prompt", "w1 w2", "--seed", "5", "--max-tokens", "20");
  const b = await run(path, "--prompt", "w1 w2", "--seed", "5", "--max-tokens", "20");
  assert.equal(a.code, 0, a.err);
  assert.equal(a.out, b.out);
  assert.equal(a.out.trim().split(/\s+/).length <= 20, true);
  assert.match(a.err, /seed 5/);
  const bad = await run(path, "--temperature=-1");
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--temperature: expected a number ≥ 0, got "-1"/);
  assert.equal((await run(join(dir, "missing.crtm"))).code, 2);
  const corrupt = file.bytes.slice();
  corrupt[200] ^= 1;
  await Deno.writeFile(path, corrupt);
  const c = await run(path);
  assert.equal(c.code, 2);
  assert.match(c.err, /checksum mismatch/);
  assert.equal((await run("--nope")).code, 2);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("deno task generate: a model file with a NaN weight is an error naming file and tensor", async () => {
  const dir = await Deno.makeTempDir({ prefix: "crt-generate-nan-" });
  const path = join(dir, "nan.crtm");
  await Deno.writeFile(path, await withFloat(file.bytes, "embed", 0, NaN));
  const out: string[] = [], err: string[] = [];
  const code = await main([path, "--seed", "1"], {
    stdout: (s) => out.push(s),
    stderr: (s) => err.push(s),
  });
  assert.equal(code, 2);
  assert.equal(out.join(""), "");
  assert.match(err.join(""), /nan\.crtm: header\.tensors\[\d+\] \(embed\): element 0 is NaN/);
  assert.doesNotMatch(err.join(""), /\n\s+at /); // no stack trace
  await Deno.remove(dir, { recursive: true });
});

Deno.test("generateTokens: lazy under a huge maxTokens, a prefix of the collected run, closed on return", async () => {
  const m = await loadModel(file.bytes);
  const opts = { temperature: 1.2, topK: 5, seed: 9 };
  const before = tf.memory().numTensors;
  // Number.MAX_SAFE_INTEGER tokens: nothing may be sized by it, the first ids come at once.
  const it = generateTokens(m, "w1 w2", { ...opts, maxTokens: Number.MAX_SAFE_INTEGER });
  const first: number[] = [];
  for (const id of it) {
    first.push(id);
    if (first.length === 8) break; // calls it.return(): the stream is released
  }
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual(first, Array.from(generate(m, "w1 w2", { ...opts, maxTokens: 8 }).ids));
  assert.deepEqual(it.next(), { done: true, value: undefined });
  // Options are checked at the call, not at the first next().
  assert.throws(() => generateTokens(m, "w1", { maxTokens: 2 ** 60 }), RangeError);
  assert.deepEqual([...generateTokens(m, "w1", { maxTokens: 0 })], []);
  m.dispose();
});

Deno.test("deno task generate: a huge --max-tokens streams at once; bad values exit 2", async () => {
  const dir = await Deno.makeTempDir({ prefix: "crt-generate-max-" });
  const path = join(dir, "model.crtm");
  await Deno.writeFile(path, file.bytes);
  // A reader that closes the pipe after 10 writes (`… | head`): the command stops, exit 0.
  const out: string[] = [], err: string[] = [];
  const code = await main([path, "--seed", "3", "--max-tokens", "99999999999"], {
    stdout: (s) => {
      if (out.length === 10) throw new Deno.errors.BrokenPipe("broken pipe (os error 32)");
      out.push(s);
    },
    stderr: (s) => err.push(s),
  });
  assert.equal(code, 0, err.join(""));
  assert.equal(out.length, 10);
  assert.match(err.join(""), /11 tokens in .*stopped: stdout was closed/);
  for (const bad of ["0", "-3", "1.5", "1e20", "9007199254740992", "ten", ""]) {
    const e: string[] = [];
    const status = await main([path, `--max-tokens=${bad}`], {
      stdout: () => {},
      stderr: (s) => e.push(s),
    });
    assert.equal(status, 2, `--max-tokens ${JSON.stringify(bad)}: ${e.join("")}`);
    assert.equal(
      e.join(""),
      `--max-tokens: expected an integer in [1, 2⁵³ − 1], got ${JSON.stringify(bad)}\n`,
    );
  }
  await Deno.remove(dir, { recursive: true });
});
