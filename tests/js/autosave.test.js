// The autosave's pure parts (static/js/autosave.js): growing revisions, the newer of the local
// and the server draft, retries until the server has the newest draft, refusals stop.
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { DraftSync, newClientId, nextRev, openStore } from "../../static/js/autosave.js";

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

describe("autosave", () => {
  test("revisions only grow, also within one millisecond", () => {
    const a = nextRev(1000);
    const b = nextRev(1000);
    const c = nextRev(5);
    assert.ok(b > a && c > b);
  });

  test("client ids are distinct and long enough for the server", () => {
    const ids = new Set(Array.from({ length: 50 }, () => newClientId()));
    assert.equal(ids.size, 50);
    for (const id of ids) assert.match(id, /^[A-Za-z0-9_-]{8,64}$/);
  });

  test("the newest draft reaches the server after failures; older ones are not sent", async () => {
    const store = await openStore("test"); // no IndexedDB in node: the memory store
    const sent = [];
    let fail = 2;
    const sync = new DraftSync({
      store,
      debounceMs: 1,
      delays: [1, 1],
      send: async (imageId, d) => {
        if (fail-- > 0) throw new Error("network down");
        sent.push([imageId, d.clicks.length]);
      },
    });
    await sync.save(7, { clicks: [1], class_id: 1, elapsed_ms: 10 });
    await sync.save(7, { clicks: [1, 2], class_id: 1, elapsed_ms: 20 });
    for (let i = 0; i < 50 && sync.unsynced; i++) await tick(5);
    assert.equal(sync.unsynced, 0);
    assert.deepEqual(sent, [[7, 2]]);
    assert.equal((await store.get("drafts", 7)).synced, true);
  });

  test("load picks the newer of the local and the server draft and resends an unsynced one", async () => {
    const store = await openStore("test2");
    const sent = [];
    const sync = new DraftSync({ store, debounceMs: 1000, send: async (_id, d) => sent.push(d.rev) });
    await store.put("drafts", { imageId: 3, rev: 50, clicks: [1, 2, 3] });
    assert.equal((await sync.load(3, { rev: 40, clicks: [1] })).rev, 50);
    await tick(10);
    assert.deepEqual(sent, [50]); // it had never reached the server
    assert.equal((await sync.load(3, { rev: 60, clicks: [] })).rev, 60);
    assert.equal(await sync.load(9, null), null);
  });

  test("a refusal (4xx) stops retrying and is reported", async () => {
    const store = await openStore("test3");
    const errors = [];
    let calls = 0;
    const sync = new DraftSync({
      store,
      debounceMs: 1,
      delays: [1],
      onError: (e, id) => errors.push([id, e.message]),
      send: async () => {
        calls++;
        throw Object.assign(new Error("locked by another annotator"), { retriable: false });
      },
    });
    await sync.save(4, { clicks: [], class_id: null, elapsed_ms: 0 });
    await tick(30);
    assert.equal(calls, 1);
    assert.deepEqual(errors, [[4, "locked by another annotator"]]);
    assert.equal(sync.unsynced, 0);
  });
});
