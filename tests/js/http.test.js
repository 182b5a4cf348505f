// static/js/http.js: the CSRF header on state-changing requests only, taken from the page's meta tag.
import assert from "node:assert/strict";
import { test } from "node:test";

import { csrfToken, http } from "../../static/js/http.js";

test("http() sends X-CSRF-Token on POST/PUT/PATCH/DELETE, not on GET; keeps a given header", async () => {
  const calls = [];
  globalThis.fetch = async (url, init) => {
    calls.push({ url, init });
    return { ok: true };
  };
  assert.equal(csrfToken(), ""); // no document (a worker): no token
  globalThis.document = { querySelector: (sel) => (sel === 'meta[name="csrf-token"]' ? { getAttribute: () => "tok123" } : null) };
  try {
    assert.equal(csrfToken(), "tok123");
    await http("/a");
    await http("/b", { method: "post", body: "{}", headers: { "Content-Type": "application/json" } });
    for (const m of ["PUT", "PATCH", "DELETE"]) await http("/c", { method: m });
    await http("/d", { method: "POST", headers: { "X-CSRF-Token": "mine" } });
  } finally {
    delete globalThis.document;
  }
  assert.equal(calls[0].init.headers.has("X-CSRF-Token"), false);
  assert.equal(calls[0].init.method, "GET");
  assert.equal(calls[1].init.headers.get("X-CSRF-Token"), "tok123");
  assert.equal(calls[1].init.headers.get("Content-Type"), "application/json");
  assert.equal(calls[1].init.method, "POST");
  assert.deepEqual(calls.slice(2, 5).map((c) => c.init.headers.get("X-CSRF-Token")), ["tok123", "tok123", "tok123"]);
  assert.equal(calls[5].init.headers.get("X-CSRF-Token"), "mine");
  assert.ok(calls.every((c) => c.init.credentials === "same-origin"));
});

test("no static/js module calls fetch() directly: every request goes through http.js", async () => {
  const { readdir, readFile } = await import("node:fs/promises");
  const dir = new URL("../../static/js/", import.meta.url);
  const offenders = [];
  for (const name of await readdir(dir)) {
    if (!name.endsWith(".js") || name === "http.js") continue;
    const src = (await readFile(new URL(name, dir), "utf8")).replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, "");
    if (/(^|[^\w.])fetch\(|XMLHttpRequest|sendBeacon/.test(src)) offenders.push(name);
  }
  assert.deepEqual(offenders, []);
});
