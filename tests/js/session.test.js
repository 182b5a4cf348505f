// The click session state machine (static/js/session.js) with a stand-in decoder.
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { DEFINITE_BG, DEFINITE_FG, POSSIBLE_BG, POSSIBLE_FG, UNKNOWN } from "../../static/js/clickmap.js";
import { canvasGeometry } from "../../static/js/geometry.js";
import { ClickSession, SessionError } from "../../static/js/session.js";

const geom = canvasGeometry(48, 64, 32); // resized 24x32, canvas 32x32

/** A stand-in decoder: margin +1 in the stride-4 cells that hold a definite-fg pixel, else -1; records its inputs. */
function fakeDecoder(delayMs = 0) {
  const calls = [];
  const predict = async (m) => {
    calls.push(m.data.slice());
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
    const h4 = m.height / 4;
    const w4 = m.width / 4;
    const margin = new Float32Array(h4 * w4).fill(-1);
    for (let y = 0; y < m.height; y++) {
      for (let x = 0; x < m.width; x++) {
        if (m.data[y * m.width + x] === DEFINITE_FG) margin[(y >> 2) * w4 + (x >> 2)] = 1;
      }
    }
    return { margin, h4, w4, ms: 1 };
  };
  return { predict, calls };
}

describe("ClickSession", () => {
  test("add click -> predict -> update, in predictor.py's order", async () => {
    const dec = fakeDecoder();
    const s = new ClickSession(geom, dec.predict);
    const st = await s.addClick(10, 20, true);
    // the decoder saw the click disk on a fresh map (2 elsewhere), not yet updated
    const seen = dec.calls[0];
    assert.equal(seen[10 * 32 + 5], DEFINITE_FG); // image (x=10, y=20) -> canvas (10, 5)
    assert.equal(seen[0], UNKNOWN);
    // after the update: fg prediction -> 3, bg -> 1, the disk stays 4
    assert.equal(st.clickMap.data[10 * 32 + 5], DEFINITE_FG);
    assert.equal(st.clickMap.data[0], POSSIBLE_BG);
    assert.ok(st.clickMap.data.includes(POSSIBLE_FG));
    assert.deepEqual(s.clicks, [{ x: 10, y: 20, positive: true }]);
    assert.equal(s.imageMask().length, 48 * 64);
    assert.ok(s.imageMask().includes(1));
  });

  test("undo restores the previous click map and mask exactly; reset clears", async () => {
    const s = new ClickSession(geom, fakeDecoder().predict);
    const first = await s.addClick(10, 20, true);
    const m1 = first.clickMap.data.slice();
    const mask1 = s.imageMask();
    await s.addClick(50, 30, false);
    assert.equal(s.clicks.length, 2);
    assert.ok(s.current.clickMap.data.includes(DEFINITE_BG));
    await s.undo();
    assert.deepEqual(s.current.clickMap.data, m1);
    assert.deepEqual(s.imageMask(), mask1);
    await s.reset();
    assert.equal(s.clicks.length, 0);
    assert.ok(s.current.clickMap.data.every((v) => v === UNKNOWN));
    assert.ok(s.imageMask().every((v) => v === 0));
    await assert.rejects(s.undo(), SessionError);
  });

  test("clicks are serialised: each sees the map its predecessor left", async () => {
    const dec = fakeDecoder(5);
    const s = new ClickSession(geom, dec.predict);
    const p1 = s.addClick(10, 20, true);
    const p2 = s.addClick(60, 40, true);
    const p3 = s.undo();
    await Promise.all([p1, p2, p3]);
    assert.equal(dec.calls.length, 2);
    assert.equal(dec.calls[1][0], POSSIBLE_BG); // the 2nd call saw the 1st click's update
    assert.equal(s.clicks.length, 1);
  });

  test("clicks outside the image or not integers are refused", async () => {
    const s = new ClickSession(geom, fakeDecoder().predict);
    await assert.rejects(s.addClick(64, 0, true), SessionError);
    await assert.rejects(s.addClick(0, -1, true), SessionError);
    await assert.rejects(s.addClick(1.5, 2, true), SessionError);
    assert.equal(s.clicks.length, 0);
  });

  test("a failed prediction leaves the state alone and does not block later clicks", async () => {
    let fail = true;
    const dec = fakeDecoder();
    const s = new ClickSession(geom, (m) => (fail ? Promise.reject(new Error("boom")) : dec.predict(m)));
    await assert.rejects(s.addClick(1, 1, true), /boom/);
    fail = false;
    await s.addClick(1, 1, true);
    assert.equal(s.clicks.length, 1);
  });
});
