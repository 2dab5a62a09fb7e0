import assert from "node:assert/strict";
import { learningCurveSvg, niceTicks } from "./svg.ts";

/** Checks that every tag is closed in order: enough to catch broken markup without a parser. */
function assertBalanced(svg: string) {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z][\w-]*)[^>]*?(\/?)>/g)) {
    const [, close, name, selfClose] = m;
    if (selfClose) continue;
    if (close) assert.equal(stack.pop(), name, `unexpected </${name}>`);
    else stack.push(name);
  }
  assert.deepEqual(stack, []);
}

Deno.test("niceTicks: round values (1, 2, 5 × 10^k apart) covering the range", () => {
  assert.deepEqual(niceTicks(0.3, 9.7, 5), [0, 2, 4, 6, 8, 10]);
  assert.deepEqual(niceTicks(0, 1000, 4), [0, 200, 400, 600, 800, 1000]);
  assert.deepEqual(niceTicks(150, 2300, 6), [0, 500, 1000, 1500, 2000, 2500]);
  assert.deepEqual(niceTicks(4.12, 4.58, 5), [4.1, 4.2, 4.3, 4.4, 4.5, 4.6]);
  assert.deepEqual(niceTicks(-3, 0.2, 5), [-3, -2.5, -2, -1.5, -1, -0.5, 0, 0.5]);
  // A flat range is widened rather than divided by zero.
  assert.deepEqual(niceTicks(5, 5, 4), [4.4, 4.6, 4.8, 5, 5.2, 5.4, 5.6]);
  assert.deepEqual(niceTicks(0, 0, 4), [-1, -0.5, 0, 0.5, 1]);
});

Deno.test("learningCurveSvg: a valid SVG with both panels, axes, ticks and labels", () => {
  const points = [
    { step: 0, trainLoss: 9.2 },
    { step: 500, trainLoss: 6.1, validPpl: 480 },
    { step: 1000, trainLoss: 5.4, validPpl: 260 },
    { step: 1500, trainLoss: 5.0 },
    { step: 2000, trainLoss: 4.8, validPpl: 190 },
  ];
  const svg = learningCurveSvg(points, { title: "ptb <crt> & co" });
  assertBalanced(svg);
  assert.match(
    svg,
    /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="720" height="\d+" viewBox=/,
  );
  assert.match(svg, /ptb &#60;crt&#62; &#38; co/);
  assert.ok(svg.includes(">train loss</text>") && svg.includes(">valid perplexity</text>"));
  assert.ok(svg.includes(">step</text>"));
  const polylines = [...svg.matchAll(/<polyline [^>]*points="([^"]*)"/g)].map((m) =>
    m[1].split(" ").length
  );
  assert.deepEqual(polylines, [5, 3]);
  for (
    const label of [
      ">0</text>",
      ">1000</text>",
      ">2000</text>",
      ">4</text>",
      ">10</text>",
      ">500</text>",
    ]
  ) {
    assert.ok(svg.includes(label), `missing tick ${label}`);
  }
  assert.ok(!/NaN|Infinity|undefined/.test(svg));
});

Deno.test("learningCurveSvg: non-finite values break the line; unordered input is sorted; empty panel says so", () => {
  const svg = learningCurveSvg([
    { step: 3, trainLoss: 4 },
    { step: 1, trainLoss: 6 },
    { step: 2, trainLoss: 5 },
    { step: 4, trainLoss: NaN },
    { step: 5, trainLoss: 3.5 },
    { step: 6, trainLoss: 3 },
  ]);
  assertBalanced(svg);
  const polylines = [...svg.matchAll(/points="([^"]*)"/g)].map((m) => m[1].split(" "));
  assert.equal(polylines.length, 2);
  assert.equal(polylines[0].length, 3);
  const xs = polylines[0].map((p) => Number(p.split(",")[0]));
  assert.deepEqual(xs, [...xs].sort((a, b) => a - b));
  assert.ok(svg.includes(">no data</text>"));
  assert.ok(!/NaN/.test(svg));
  assertBalanced(learningCurveSvg([]));
});
