import assert from "node:assert/strict";
import { confusionCsv, confusionMatrix, scoreConfusion } from "./classification.ts";
import { confusionMatrixSvg } from "../io/svg.ts";

Deno.test("confusionMatrix counts (true, predicted) pairs and rejects labels out of range", () => {
  const m = confusionMatrix(Int32Array.of(0, 0, 1, 2, 2, 2), Int32Array.of(0, 1, 1, 2, 0, 2), 3);
  assert.deepEqual(m, [[1, 1, 0], [0, 1, 0], [1, 0, 2]]);
  assert.throws(
    () => confusionMatrix([0, 3], [0, 0], 3),
    /label 3 or prediction 0 not in \[0, 3\)/,
  );
  assert.throws(() => confusionMatrix([0], [0, 1], 3), /1 labels but 2 predictions/);
});

Deno.test("scoreConfusion: mean per-class accuracy weighs rare classes like common ones", () => {
  // 90 clips of a common class all right, 10 of a rare class all wrong:
  // overall 90 %, per-class mean 50 %. A class absent from the set is not averaged.
  const s = scoreConfusion([[90, 0, 0], [10, 0, 0], [0, 0, 0]], ["Walk", "Takepills", "Leave"]);
  assert.equal(s.accuracy, 0.9);
  assert.equal(s.meanClassAccuracy, 0.5);
  assert.equal(s.classesScored, 2);
  assert.deepEqual(s.perClass[2], { name: "Leave", clips: 0, correct: 0, accuracy: null });
  assert.deepEqual(s.perClass[1], { name: "Takepills", clips: 10, correct: 0, accuracy: 0 });
  assert.throws(() => scoreConfusion([[0]], ["a", "b"]), /a 1-row matrix for 2 class names/);
});

Deno.test("confusionCsv: header of predicted classes, a row per true class, names quoted when needed", () => {
  const csv = confusionCsv([[2, 1], [0, 3]], ["Walk", 'Say "hi", then go']);
  assert.equal(
    csv,
    'true\\predicted,Walk,"Say ""hi"", then go"\nWalk,2,1\n"Say ""hi"", then go",0,3\n',
  );
});

Deno.test("confusionMatrixSvg: one cell per pair, counts shown, row accuracy, escaped names", () => {
  const svg = confusionMatrixSvg([[8, 2], [0, 5]], ["Walk", "A<B"], { title: "t & u" });
  assert.ok(svg.startsWith("<svg") && svg.trimEnd().endsWith("</svg>"));
  assert.equal((svg.match(/<rect x="\d+" y="\d+" width="22"/g) ?? []).length, 4);
  assert.ok(svg.includes(">8</text>") && svg.includes(">2</text>") && svg.includes(">5</text>"));
  assert.ok(!svg.includes(">0</text>")); // empty cells stay blank
  assert.ok(svg.includes("10 · 80 %") && svg.includes("5 · 100 %"));
  assert.ok(svg.includes("A&#60;B") && svg.includes("t &#38; u"));
  assert.throws(() => confusionMatrixSvg([[1]], ["a", "b"]), /1-row matrix for 2 class names/);
});
