// The browser's margin -> mask code (static/js/mask.js) against tests/vectors/mask.json,
// computed by model_export/predictor.py (PyTorch bilinear, cv2 INTER_LINEAR).
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import { canvasPrediction, imageMask, linearTaps, resizeBilinear, threshold } from "../../static/js/mask.js";
import { geometryFromHeader } from "../../static/js/manifest.js";

const V = JSON.parse(readFileSync(new URL("../vectors/mask.json", import.meta.url), "utf8"));

/**
 * float32 agreement: PyTorch computes the source positions and weights in float32 and rounds
 * at each step, mask.js works in double and rounds once, so they differ by a few float32 ulps
 * of the inputs' magnitude.
 */
function assertClose(actual, expected, scale, what) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const e = Math.fround(expected[i]);
    const tol = 2e-6 * Math.max(1, scale);
    if (!(Math.abs(actual[i] - e) <= tol)) {
      assert.fail(`${what}: value ${i} is ${actual[i]}, PyTorch gives ${e} (tolerance ${tol})`);
    }
  }
}

function rowsOf(bits, h, w) {
  const rows = [];
  for (let y = 0; y < h; y++) rows.push(Array.from(bits.subarray(y * w, (y + 1) * w)).join(""));
  return rows;
}

/** Compare 0/1 rows with expected rows in which '?' (a value within `tie` of 0) matches anything. */
function assertRows(actual, expected, what) {
  assert.equal(actual.length, expected.length, `${what}: rows`);
  expected.forEach((row, y) => {
    for (let x = 0; x < row.length; x++) {
      if (row[x] !== "?" && row[x] !== actual[y][x]) {
        assert.fail(`${what}: pixel (y=${y}, x=${x}) is ${actual[y][x]}, the predictor gives ${row[x]}`);
      }
    }
  });
}

describe("bilinear resize (align_corners false) against PyTorch", () => {
  for (const c of V.resize_cases) {
    test(`${c.in_h}x${c.in_w} -> ${c.out_h}x${c.out_w}`, () => {
      const out = resizeBilinear(Float32Array.from(c.input), c.in_h, c.in_w, c.out_h, c.out_w);
      assert.ok(out instanceof Float32Array);
      assertClose(out, c.expected, Math.max(...c.input.map(Math.abs)), "resize");
    });
  }

  test("same size is the identity", () => {
    const x = Float32Array.from([1, -2, 3.5, 4, 5, -6]);
    assert.deepEqual(resizeBilinear(x, 2, 3, 2, 3), x);
  });

  test("x4 taps: half-pixel centres, edges clamped", () => {
    const t = linearTaps(3, 12);
    // output 0 and 1 sit left of input 0's centre: both taps are input 0 (src clamped to 0)
    assert.deepEqual([t.i0[0], t.i1[0], t.w1[0]], [0, 1, 0]);
    assert.deepEqual([t.i0[2], t.i1[2], t.w1[2]], [0, 1, 0.125]); // src = 2.5/4 - 0.5
    assert.deepEqual([t.i0[11], t.i1[11]], [2, 2]); // last input replicated
  });

  test("a crop through the row stride", () => {
    const src = Float32Array.from([1, 2, 99, 3, 4, 99]); // 2x3, read as 2x2 with stride 3
    assert.deepEqual(resizeBilinear(src, 2, 2, 2, 2, { stride: 3 }), Float32Array.from([1, 2, 3, 4]));
  });

  test("bad sizes are refused", () => {
    assert.throws(() => resizeBilinear(new Float32Array(4), 2, 2, 0, 2), RangeError);
    assert.throws(() => resizeBilinear(new Float32Array(3), 2, 2, 4, 4), RangeError);
  });
});

describe("margin -> canvas prediction -> image mask, as predictor.py", () => {
  for (const c of V.mask_cases) {
    const g = geometryFromHeader(c.geometry);
    test(`image ${g.imageH}x${g.imageW} on canvas ${g.canvasH}x${g.canvasW} (resized ${g.resizedH}x${g.resizedW})`, () => {
      const { upsampled, prediction } = canvasPrediction(Float32Array.from(c.margin), c.h4, c.w4, g.canvasH, g.canvasW);
      assert.equal(upsampled.length, g.canvasH * g.canvasW);
      assertRows(rowsOf(prediction, g.canvasH, g.canvasW), c.canvas_prediction, "canvas prediction");
      const mask = imageMask(upsampled, g);
      assert.equal(mask.length, g.imageH * g.imageW);
      assertRows(rowsOf(mask, g.imageH, g.imageW), c.image_mask, "image mask");
    });
  }

  test("threshold is strict (> 0)", () => {
    assert.deepEqual(threshold(Float32Array.from([-1, 0, 1e-30, -0])), Uint8Array.from([0, 0, 1, 0]));
  });

  test("a margin of the wrong size is refused", () => {
    assert.throws(() => canvasPrediction(new Float32Array(10), 4, 4, 16, 16), RangeError);
  });
});
