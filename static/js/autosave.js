/**
 * Autosave for the annotation page: the work in progress is kept in the browser (IndexedDB)
 * and on the server, and comes back after a reload, a crash or a dropped connection.
 *
 * Two stores in one IndexedDB database per user (`interformer-annotate-u<id>`):
 *
 * - "drafts" (key: image id): the current object's clicks, class and elapsed time, with `rev`
 *   (a counter that only grows: milliseconds, +1 on ties). `DraftSync` writes it here at once
 *   and pushes the newest one to `PUT /api/images/<id>/draft` (debounced, retried until it
 *   goes through; the server keeps the highest rev, so late retries change nothing).
 * - "outbox" (key: client id): accepted objects not yet confirmed by the server. An object is
 *   written here before it is sent and deleted once saved; after a reload the page sends what
 *   is left again with the same client id, and the server answers the first copy instead of
 *   making a second (webapp/api.py), so nothing is lost and nothing doubles.
 *
 * `openStore` falls back to an in-memory store when IndexedDB is unavailable (the server
 * copy still works).
 */

let lastRev = 0;

/** A strictly growing revision number (milliseconds since 1970, +1 when two fall together). */
export function nextRev(now = Date.now()) {
  lastRev = Math.max(now, lastRev + 1);
  return lastRev;
}

/** A random id for an object, sent with it so that a resend is recognised. */
export function newClientId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

class MemoryStore {
  constructor() {
    this.maps = { drafts: new Map(), outbox: new Map() };
  }
  async get(store, key) {
    return this.maps[store].get(key);
  }
  async put(store, value) {
    this.maps[store].set(store === "drafts" ? value.imageId : value.clientId, value);
  }
  async delete(store, key) {
    this.maps[store].delete(key);
  }
  async all(store) {
    return [...this.maps[store].values()];
  }
}

class IdbStore {
  constructor(db) {
    this.db = db;
  }
  _tx(store, mode) {
    return this.db.transaction(store, mode).objectStore(store);
  }
  get(store, key) {
    return request(this._tx(store, "readonly").get(key));
  }
  put(store, value) {
    return request(this._tx(store, "readwrite").put(value));
  }
  delete(store, key) {
    return request(this._tx(store, "readwrite").delete(key));
  }
  all(store) {
    return request(this._tx(store, "readonly").getAll());
  }
}

/** The user's store (IndexedDB, or memory when it cannot be opened). */
export async function openStore(name) {
  if (!globalThis.indexedDB) return new MemoryStore();
  try {
    const req = indexedDB.open(name, 1);
    req.onupgradeneeded = () => {
      req.result.createObjectStore("drafts", { keyPath: "imageId" });
      req.result.createObjectStore("outbox", { keyPath: "clientId" });
    };
    return new IdbStore(await request(req));
  } catch {
    return new MemoryStore();
  }
}

/**
 * Drafts kept locally at once and pushed to the server (newest only, debounced, retried).
 *
 *   const sync = new DraftSync({ store, send: (imageId, draft) => fetch(...) });
 *   sync.save(imageId, { clicks, class_id, elapsed_ms });   // local now, server soon
 *   const d = await sync.load(imageId, serverDraft);        // the newer of the two
 *
 * `send` resolves when the server stored it, or throws; an error with `retriable === false`
 * (the server refused: 4xx) stops retrying that draft and is passed to `onError`.
 */
export class DraftSync {
  constructor({ store, send, onError = () => {}, debounceMs = 300, delays = [1000, 2000, 4000, 8000, 15000] }) {
    this.store = store;
    this.send = send;
    this.onError = onError;
    this.debounceMs = debounceMs;
    this.delays = delays;
    this.pending = new Map(); // imageId -> draft not yet on the server
    this.timer = null;
    this.attempt = 0;
    this.flushing = null;
  }

  /** Keep the draft of `imageId` (locally now, on the server soon); resolves once local. */
  async save(imageId, data) {
    const draft = { imageId, rev: nextRev(), ...data, savedAt: Date.now() };
    this.pending.set(imageId, draft);
    this._schedule(this.debounceMs);
    await this.store.put("drafts", draft);
    return draft;
  }

  /** The newer of the local and the server draft of `imageId` (null if neither). */
  async load(imageId, serverDraft) {
    const local = await this.store.get("drafts", imageId);
    if (local && (!serverDraft || local.rev > serverDraft.rev)) {
      if (!local.synced) {
        this.pending.set(imageId, local); // it never reached the server: send it now
        this._schedule(0);
      }
      lastRev = Math.max(lastRev, local.rev);
      return local;
    }
    if (serverDraft) lastRev = Math.max(lastRev, serverDraft.rev);
    return serverDraft ?? null;
  }

  /** Forget the local draft of `imageId` (after submit). */
  async clear(imageId) {
    this.pending.delete(imageId);
    await this.store.delete("drafts", imageId);
  }

  /** Push now (e.g. when the connection is back); resolves when this attempt has ended. */
  async flush() {
    clearTimeout(this.timer);
    await this._flush();
  }

  get unsynced() {
    return this.pending.size;
  }

  _schedule(ms) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this._flush(), ms);
  }

  async _flush() {
    if (this.flushing) {
      await this.flushing;
      if (this.pending.size) this._schedule(0);
      return;
    }
    this.flushing = (async () => {
      for (const [imageId, draft] of [...this.pending]) {
        try {
          await this.send(imageId, draft);
          this.attempt = 0;
          if (this.pending.get(imageId) === draft) {
            this.pending.delete(imageId);
            await this.store.put("drafts", { ...draft, synced: true });
          }
        } catch (e) {
          if (e?.retriable === false) {
            if (this.pending.get(imageId) === draft) this.pending.delete(imageId);
            this.onError(e, imageId);
            continue;
          }
          const delay = this.delays[Math.min(this.attempt, this.delays.length - 1)];
          this.attempt++;
          this._schedule(delay);
          return;
        }
      }
    })();
    try {
      await this.flushing;
    } finally {
      this.flushing = null;
    }
  }
}
