// The browser's click-map rules (static/js/clickmap.js, static/js/geometry.js) against the
// shared vectors tests/vectors/clickmap.json, which tests/test_clickmap_vectors.py checks
// against the Python implementation. Run: node --test tests/js/
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import {
  addClick,
  cloneClickMap,
  DEFINITE_BG,
  DEFINITE_FG,
  DISK_RADIUS,
  diskHalfWidths,
  diskOffsets,
  newClickMap,
  POSSIBLE_BG,
  POSSIBLE_FG,
  UNKNOWN,
  updateFromPrediction,
} from "../../static/js/clickmap.js";
import { canvasGeometry, imageToCanvas, roundHalfEven } from "../../static/js/geometry.js";

const V = JSON.parse(readFileSync(new URL("../vectors/clickmap.json", import.meta.url), "utf8"));

/** Row strings ("0123", ...) -> {height, width, data}. */
function fromRows(rows) {
  const height = rows.length;
  const width = rows[0].length;
  const data = new Uint8Array(height * width);
  rows.forEach((r, y) => {
    for (let x = 0; x < width; x++) data[y * width + x] = r.charCodeAt(x) - 48;
  });
  return { height, width, data };
}

/** {height, width, data} -> row strings, to compare (and print) maps as pictures. */
function toRows(map) {
  const rows = [];
  for (let y = 0; y < map.height; y++) {
    rows.push(Array.from(map.data.subarray(y * map.width, (y + 1) * map.width)).join(""));
  }
  return rows;
}

describe("click map vectors", () => {
  test("labels and disk", () => {
    assert.deepEqual(
      [DEFINITE_BG, POSSIBLE_BG, UNKNOWN, POSSIBLE_FG, DEFINITE_FG],
      [V.labels.definite_bg, V.labels.possible_bg, V.labels.unknown, V.labels.possible_fg, V.labels.definite_fg],
    );
    assert.equal(DISK_RADIUS, V.disk.radius);
    assert.equal(diskOffsets(DISK_RADIUS).length / 2, V.disk.pixels);
    assert.deepEqual(toRows(addClick(newClickMap(11, 11), { y: 5, x: 5, positive: true })), V.disk.on_11x11);
  });

  for (const c of V.click_cases) {
    test(`click: ${c.name}`, () => {
      const m = newClickMap(c.height, c.width);
      for (const click of c.clicks) assert.equal(addClick(m, click, c.radius), m);
      assert.deepEqual(toRows(m), c.expected);
    });
  }

  for (const c of V.update_cases) {
    test(`update: ${c.name}`, () => {
      const m = fromRows(c.map);
      assert.equal(updateFromPrediction(m, fromRows(c.pred).data), m);
      assert.deepEqual(toRows(m), c.expected);
      // The same with the prediction given with its shape.
      const m2 = fromRows(c.map);
      updateFromPrediction(m2, fromRows(c.pred));
      assert.deepEqual(toRows(m2), c.expected);
    });
  }

  for (const s of V.sequences) {
    test(`sequence: ${s.name}`, () => {
      const m = newClickMap(s.height, s.width);
      s.steps.forEach((step, i) => {
        if (step.click) addClick(m, step.click);
        else updateFromPrediction(m, fromRows(step.pred).data);
        assert.deepEqual(toRows(m), step.expected, `after step ${i}`);
      });
    });
  }

  test("clicks outside the map are refused", () => {
    for (const c of V.invalid_clicks) {
      const m = newClickMap(c.height, c.width);
      assert.throws(() => addClick(m, c.click), RangeError, JSON.stringify(c));
      assert.ok(m.data.every((v) => v === UNKNOWN), "a refused click leaves the map alone");
    }
  });

  test("predictions of another shape are refused", () => {
    for (const c of V.invalid_updates) {
      const m = newClickMap(c.map_height, c.map_width);
      const data = new Uint8Array(c.pred_height * c.pred_width);
      assert.throws(() => updateFromPrediction(m, { height: c.pred_height, width: c.pred_width, data }), RangeError);
      if (data.length !== m.data.length) assert.throws(() => updateFromPrediction(m, data), RangeError);
      assert.ok(m.data.every((v) => v === UNKNOWN));
    }
  });
});

describe("geometry vectors", () => {
  for (const g of V.geometry) {
    test(`geometry: ${g.name}`, () => {
      const geom = canvasGeometry(g.image_h, g.image_w, g.longest_side);
      const e = g.expected;
      assert.deepEqual(geom, {
        imageH: g.image_h,
        imageW: g.image_w,
        scale: e.scale,
        resizedH: e.resized_h,
        resizedW: e.resized_w,
        canvasH: e.canvas_h,
        canvasW: e.canvas_w,
      });
      for (const p of g.image_to_canvas) {
        assert.deepEqual(imageToCanvas(geom, p.y, p.x), p.canvas, `image pixel (${p.y}, ${p.x})`);
      }
    });
  }
});

describe("JS-only details", () => {
  test("roundHalfEven is Python's round", () => {
    const cases = [
      [0.5, 0], [1.5, 2], [2.5, 2], [3.5, 4], [480.5, 480], [500.5, 500], [2.4999999999999996, 2],
      [2.5000000000000004, 3], [-0.5, 0], [-1.5, -2], [-2.5, -2], [7, 7], [0, 0],
    ];
    for (const [v, want] of cases) assert.equal(roundHalfEven(v), want, `round(${v})`);
  });

  test("disk half-widths are floor(sqrt(25 - dy^2))", () => {
    assert.deepEqual(Array.from(diskHalfWidths(5)), [0, 3, 4, 4, 4, 5, 4, 4, 4, 3, 0]);
  });

  test("update is in place, clone is independent", () => {
    const m = newClickMap(2, 2);
    const before = cloneClickMap(m);
    updateFromPrediction(m, Uint8Array.of(1, 0, 1, 0));
    assert.deepEqual(toRows(m), ["31", "31"]);
    assert.deepEqual(toRows(before), ["22", "22"]);
  });

  test("any positive prediction value is foreground (as pred > 0 in Python)", () => {
    const m = newClickMap(1, 4);
    updateFromPrediction(m, Float32Array.of(0.25, 0, -1, 255));
    assert.deepEqual(toRows(m), ["3113"]);
  });

  test("a 1024x1024 map: clicks and updates touch exactly the expected pixels", () => {
    const m = newClickMap(1024, 1024);
    addClick(m, { y: 0, x: 0, positive: true });
    addClick(m, { y: 512, x: 512, positive: false });
    addClick(m, { y: 1023, x: 1023, positive: true });
    const pred = new Uint8Array(1024 * 1024);
    pred.fill(1, 0, 512 * 1024); // top half foreground
    updateFromPrediction(m, pred);
    const counts = [0, 0, 0, 0, 0];
    for (const v of m.data) counts[v]++;
    // Corner disks: 26 pixels each (hand count in tests/test_clicks.py). The centre disk has
    // 35 pixels in rows 507..511 (widths 1+7+9+9+9) and 46 in rows 512..517 (11+9+9+9+7+1).
    // Top half: unknown -> 3 under fg; bottom half: unknown -> 1 under bg.
    const half = 512 * 1024;
    assert.deepEqual(counts, [81, half - 26 - 46, 0, half - 26 - 35, 52]);
  });
});
