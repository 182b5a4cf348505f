// The annotator's pure parts: RLE (static/js/rle.js), the save queue (static/js/saver.js),
// zoom/pan (static/js/viewport.js) and redo in the click session (static/js/session.js).
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { DEFINITE_FG } from "../../static/js/clickmap.js";
import { canvasGeometry } from "../../static/js/geometry.js";
import { countsFromString, decodeRLE, encodeRLE, maskStats } from "../../static/js/rle.js";
import { SaveError, SaveQueue, httpError } from "../../static/js/saver.js";
import { ClickSession, SessionError } from "../../static/js/session.js";
import { Viewport } from "../../static/js/viewport.js";

// 5x7 mask and its pycocotools encoding (np.asfortranarray; counts b'01:2H000003N')
const SMALL = [1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1];

describe("rle", () => {
  test("encode: column-major, starting with background", () => {
    const r = encodeRLE(Uint8Array.from(SMALL), 5, 7);
    assert.deepEqual(r.size, [5, 7]);
    assert.deepEqual(r.counts, [0, 1, 10, 3, 2, 3, 2, 3, 2, 3, 5, 1]);
    assert.deepEqual(encodeRLE(new Uint8Array(6), 2, 3).counts, [6]);
    assert.deepEqual(encodeRLE(new Uint8Array(6).fill(1), 2, 3).counts, [0, 6]);
  });

  test("decode pycocotools' compressed string and our counts", () => {
    assert.deepEqual(countsFromString("01:2H000003N"), [0, 1, 10, 3, 2, 3, 2, 3, 2, 3, 5, 1]);
    assert.deepEqual([...decodeRLE({ size: [5, 7], counts: "01:2H000003N" })], SMALL);
    const big = new Uint8Array(40 * 50);
    for (let y = 3; y < 30; y++) for (let x = 10; x < 45; x++) if (y < 10 || y >= 12) big[y * 50 + x] = 1;
    const s = "c<72;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;;EE;`6";
    assert.deepEqual(decodeRLE({ size: [40, 50], counts: s }), big);
    assert.deepEqual(decodeRLE(encodeRLE(big, 40, 50)), big);
    assert.throws(() => decodeRLE({ size: [5, 5], counts: [3, 3] }), RangeError);
  });

  test("area and bbox", () => {
    assert.deepEqual(maskStats(Uint8Array.from(SMALL), 5, 7), { area: 14, bbox: [0, 0, 7, 5] });
    assert.deepEqual(maskStats(new Uint8Array(4), 2, 2), { area: 0, bbox: null });
  });
});

/** A sleep that waits until the test releases it. */
function manualSleep() {
  const pending = [];
  const sleep = (ms, signal) =>
    new Promise((resolve) => {
      pending.push({ ms, resolve });
      signal.wake = resolve;
    });
  return { sleep, pending };
}
const tick = () => new Promise((r) => setTimeout(r, 0));

describe("SaveQueue", () => {
  test("saves, and retries network errors with growing delays until saved", async () => {
    let calls = 0;
    const { sleep, pending } = manualSleep();
    const states = [];
    const q = new SaveQueue({
      send: async () => {
        calls++;
        if (calls < 3) throw new TypeError("Failed to fetch");
        return { id: 7 };
      },
      sleep,
      delays: [10, 20],
      onChange: (j) => states.push(j.state),
    });
    const job = q.add({ a: 1 });
    await tick();
    assert.equal(job.state, "retrying");
    assert.equal(job.error, "Failed to fetch");
    assert.deepEqual(q.unsaved, [job]);
    pending.shift().resolve();
    await tick();
    assert.equal(pending[0].ms, 20);
    q.retry(job); // cut the wait short
    await q.idle();
    assert.equal(job.state, "saved");
    assert.deepEqual(job.result, { id: 7 });
    assert.equal(job.attempts, 3);
    assert.deepEqual(q.unsaved, []);
    assert.deepEqual(states, ["saving", "retrying", "saving", "retrying", "saving", "saved"]);
  });

  test("a refused save (4xx) stops as failed, is kept, and can be retried by hand", async () => {
    let refuse = true;
    const q = new SaveQueue({
      send: async () => {
        if (refuse) throw httpError(400, "the mask is empty");
        return { id: 1 };
      },
    });
    const job = q.add({});
    await q.idle();
    assert.equal(job.state, "failed");
    assert.equal(job.error, "the mask is empty");
    assert.deepEqual(q.failed, [job]);
    refuse = false;
    q.retry(job);
    await q.idle();
    assert.equal(job.state, "saved");
  });

  test("5xx and 429 are retriable, other 4xx are not; cancel stops a waiting job", async () => {
    assert.equal(httpError(500).retriable, true);
    assert.equal(httpError(429).retriable, true);
    assert.equal(httpError(403).retriable, false);
    assert.ok(httpError(400) instanceof SaveError);
    const { sleep } = manualSleep();
    const q = new SaveQueue({ send: async () => { throw httpError(503, "busy"); }, sleep });
    const job = q.add({});
    await tick();
    assert.equal(job.state, "retrying");
    assert.equal(q.cancel(job), true);
    await q.idle();
    assert.equal(job.state, "cancelled");
    assert.deepEqual(q.unsaved, []);
  });
});

describe("Viewport", () => {
  test("fit centres the image; toImage and toScreen are inverses", () => {
    const v = new Viewport();
    v.resize(1000, 500, 200, 100);
    v.fit(0);
    assert.equal(v.scale, 5);
    assert.deepEqual([v.offsetX, v.offsetY], [0, 0]);
    v.resize(1000, 600);
    v.fit(0);
    assert.deepEqual([v.offsetX, v.offsetY], [0, 50]);
    assert.deepEqual(v.toImage(...v.toScreen(12.5, 40)), [12.5, 40]);
    assert.deepEqual(v.pixelAt(7, 52), [1, 0]);
    assert.equal(v.pixelAt(7, 40), null);
  });

  test("zoomAt keeps the point under the cursor; scale is clamped; pan moves", () => {
    const v = new Viewport({ maxScale: 8 });
    v.resize(400, 400, 100, 100);
    v.fit(0);
    const before = v.toImage(123, 77);
    v.zoomAt(123, 77, 1.5);
    assert.equal(v.scale, 6);
    const after = v.toImage(123, 77);
    assert.ok(Math.abs(before[0] - after[0]) < 1e-9 && Math.abs(before[1] - after[1]) < 1e-9);
    v.zoomAt(0, 0, 100);
    assert.equal(v.scale, 8);
    const [x, y] = v.toScreen(10, 10);
    v.panBy(5, -3);
    assert.deepEqual(v.toScreen(10, 10), [x + 5, y - 3]);
  });
});

describe("ClickSession redo", () => {
  const geom = canvasGeometry(48, 64, 32);
  const predict = async (m) => {
    const h4 = m.height / 4;
    const w4 = m.width / 4;
    const margin = new Float32Array(h4 * w4).fill(-1);
    for (let i = 0; i < m.data.length; i++) if (m.data[i] === DEFINITE_FG) margin[((i / m.width) >> 2) * w4 + ((i % m.width) >> 2)] = 1;
    return { margin, h4, w4, ms: 1 };
  };

  test("redo brings an undone click back exactly; a new click forgets it", async () => {
    const s = new ClickSession(geom, predict);
    await s.addClick(10, 20, true);
    await s.addClick(50, 30, true);
    const map2 = s.current.clickMap.data.slice();
    const mask2 = s.imageMask();
    assert.equal(s.canRedo, false);
    await s.undo();
    assert.equal(s.canRedo, true);
    await s.redo();
    assert.deepEqual(s.current.clickMap.data, map2);
    assert.deepEqual(s.imageMask(), mask2);
    assert.equal(s.clicks.length, 2);
    await s.undo();
    await s.addClick(5, 5, false);
    assert.equal(s.canRedo, false);
    await assert.rejects(s.redo(), SessionError);
    await s.undo();
    await s.reset();
    assert.equal(s.canRedo, false);
  });
});

describe("maskOutline", () => {
  test("keeps the border pixels of the foreground", async () => {
    const { maskOutline } = await import("../../static/js/mask.js");
    const m = new Uint8Array(25);
    for (let y = 1; y < 5; y++) for (let x = 1; x < 4; x++) m[y * 5 + x] = 1;
    const o = maskOutline(m, 5, 5);
    const rows = [];
    for (let y = 0; y < 5; y++) rows.push([...o.subarray(y * 5, y * 5 + 5)].join(""));
    assert.deepEqual(rows, ["00000", "01110", "01010", "01010", "01110"]);
  });
});
