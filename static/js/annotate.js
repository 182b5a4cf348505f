/**
 * The annotation page (templates/annotate.html), grown from the playground: the same
 * modules do the work -- pyramid.js (features), manifest.js (decoder/features check),
 * decoder.js (the ONNX decoder in a worker), session.js (clicks, undo, redo) and mask.js
 * (margin -> mask) -- and this file adds the annotator's parts: zoom and pan (viewport.js),
 * accepted objects with classes, hide and delete, saving with retry (saver.js, rle.js),
 * submit and next, prefetch of the next image, and the keyboard.
 *
 * Crowdsourcing (docs/crowdsourcing.md): images come from the queue (`POST .../queue/next`
 * takes the next one with a lock; an image in the URL is claimed), a heartbeat keeps the lock,
 * a rejected image shows the reviewer's comment, and submit shows completion codes.
 * Autosave (autosave.js): the current object's clicks are kept in IndexedDB and on the server
 * and replayed after a reload; accepted objects wait in an IndexedDB outbox until the server
 * has them and are sent again after a reload or when the connection returns, each with its
 * client id so that the server never stores one twice.
 *
 * URL: /annotate/<project>[/<image>] (without an image: the project's next open image).
 * Parameters: ?threads=<n> (WebAssembly threads), ?webgpu=0 (never try WebGPU).
 *
 * Test hook: window.__annotate (bottom of this file).
 */

import { DraftSync, newClientId, openStore } from "./autosave.js";
import { http } from "./http.js";
import { loadDecoder } from "./decoder.js";
import { canvasLongestSide, checkPyramid, normalizeManifest } from "./manifest.js";
import { canvasGeometry } from "./geometry.js";
import { maskOutline } from "./mask.js";
import { parsePyramid } from "./pyramid.js";
import { decodeRLE, encodeRLE, maskStats } from "./rle.js";
import { SaveQueue, httpError } from "./saver.js";
import { ClickSession } from "./session.js";
import { Viewport } from "./viewport.js";

const $ = (id) => document.getElementById(id);
const root = $("app");
const ui = {
  stage: $("stage"),
  view: $("view"),
  stageMessage: $("stage-message"),
  imageName: $("image-name"),
  error: $("error"),
  status: $("status"),
  backend: $("backend"),
  decoderWarning: $("decoder-warning"),
  undo: $("undo"),
  redo: $("redo"),
  reset: $("reset"),
  accept: $("accept"),
  fit: $("fit"),
  classSelect: $("class-select"),
  opacity: $("opacity"),
  outline: $("outline"),
  objectList: $("object-list"),
  objectCount: $("object-count"),
  saveStatus: $("save-status"),
  submit: $("submit"),
  help: $("help"),
  helpButton: $("help-button"),
  reviewNote: $("review-note"),
  codes: $("completion-codes"),
};

const params = new URLSearchParams(location.search);
const CURRENT_COLOR = [30, 144, 255];
const MARKER = { positive: "#22c55e", negative: "#ef4444", radius: 6 };
const POLL_MS = 1500;

const app = {
  projectId: Number(root.dataset.projectId),
  project: null,
  manifest: null,
  decoder: null,
  image: null, // the API's image JSON
  assignment: null, // the queue's assignment of this image to us (null for admins)
  userId: Number(root.dataset.userId),
  store: null, // autosave.js store (IndexedDB)
  restoring: false, // replaying a draft: do not save it again click by click
  bitmap: null,
  geom: null,
  session: null,
  mask: null, // the current object's image mask (Uint8Array, 0/1) or null before the first click
  maskLayer: null,
  clickTimes: [], // ms since the object was started, per click index
  objectStart: performance.now(),
  objects: [], // accepted objects of this image
  classIndex: 0,
  opacity: 0.5,
  outline: false,
  hideAll: false,
  prefetched: null, // {id, promise}
  submitting: false, // the submit request is in flight
  loadId: 0,
  error: null,
  done: false,
};
const viewport = new Viewport();
let nextLocalId = 1;

// ----------------------------------------------------------------------------------------
// Messages and controls
// ----------------------------------------------------------------------------------------
function setStatus(text) {
  ui.status.textContent = text;
}

function showError(message) {
  app.error = message;
  ui.error.textContent = message;
  ui.error.hidden = false;
  updateControls();
}

function clearError() {
  app.error = null;
  ui.error.hidden = true;
  ui.error.textContent = "";
}

function setStageMessage(text) {
  ui.stageMessage.textContent = text;
}

function updateControls() {
  const s = app.session;
  ui.undo.disabled = !s?.canUndo;
  ui.redo.disabled = !s?.canRedo;
  ui.reset.disabled = !s?.canUndo;
  ui.accept.disabled = !s || !app.mask;
  ui.submit.disabled = !s;
}

async function fetchOk(url, what, init) {
  let resp;
  try {
    resp = await http(url, init);
  } catch (e) {
    throw new Error(`${what}: ${e.message}`);
  }
  if (!resp.ok) {
    let detail = `HTTP ${resp.status}`;
    try {
      detail = (await resp.json()).error ?? detail;
    } catch {
      /* not JSON */
    }
    const err = new Error(`${what}: ${detail}`);
    err.status = resp.status;
    throw err;
  }
  return resp;
}

const getJSON = async (url, what) => (await fetchOk(url, what, { headers: { Accept: "application/json" } })).json();
const postJSON = async (url, what) =>
  (await fetchOk(url, what, { method: "POST", headers: { Accept: "application/json" } })).json();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ----------------------------------------------------------------------------------------
// Classes
// ----------------------------------------------------------------------------------------
function hexToRgb(hex) {
  const m = /^#?([0-9a-f]{6})$/i.exec(hex || "");
  const v = m ? Number.parseInt(m[1], 16) : 0xff8800;
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

function classById(id) {
  return app.project.classes.find((c) => c.id === id) ?? { id, name: `class ${id}`, color: "#888888" };
}

function setClass(index) {
  if (!app.project || index < 0 || index >= app.project.classes.length) return;
  app.classIndex = index;
  ui.classSelect.value = String(index);
}

// ----------------------------------------------------------------------------------------
// Loading
// ----------------------------------------------------------------------------------------
async function init() {
  const body = await getJSON(root.dataset.projectUrl, "loading the project");
  app.project = body.project;
  ui.classSelect.replaceChildren(
    ...app.project.classes.map((c, i) => new Option(i < 9 ? `${i + 1}  ${c.name}` : c.name, String(i))),
  );
  setClass(0);
  setStatus("Loading the decoder…");
  const raw = await getJSON(app.project.decoder.manifest, "loading the decoder manifest");
  app.manifest = normalizeManifest(raw);
  const threads = params.has("threads") ? Number.parseInt(params.get("threads"), 10) : undefined;
  app.decoder = await loadDecoder(app.project.decoder.model, app.manifest, {
    numThreads: threads,
    preferWebGPU: params.get("webgpu") !== "0",
  });
  const info = app.decoder.info;
  const warnings = [];
  if (self.crossOriginIsolated !== true) {
    warnings.push("This page is not cross-origin isolated: the decoder runs on a single thread and clicks will be slower.");
  }
  if (info.fallback) warnings.push(`The decoder could not use threads: ${info.fallback}.`);
  ui.decoderWarning.textContent = warnings.join(" ");
  ui.decoderWarning.hidden = warnings.length === 0;
  ui.backend.textContent =
    `Decoder ${app.manifest.modelId} on ${info.backend}` +
    (info.backend === "wasm" ? ` (${info.numThreads} thread${info.numThreads === 1 ? "" : "s"})` : "");

  app.store = await openStore(`interformer-annotate-u${app.userId}`);
  drafts.store = app.store;
  const wanted = root.dataset.imageId;
  if (wanted) {
    const work = await postJSON(`/api/images/${wanted}/claim`, "opening the image");
    await openImage(work.image, work.assignment);
  } else {
    await openNext();
  }
  startHeartbeat();
}

/** Take the next image from the queue (locked for us) and open it. */
async function openNext() {
  const work = await postJSON(app.project.urls.queue_next, "taking the next image");
  if (work.image) await openImage(work.image, work.assignment);
  else finished();
}

function finished() {
  app.done = true;
  app.session = null;
  app.image = null;
  app.assignment = null;
  showReviewNote(null);
  app.bitmap = null;
  app.objects = [];
  renderObjects();
  draw();
  ui.imageName.textContent = "";
  setStageMessage("Every image of this project is submitted. Thank you!");
  setStatus("No open image left.");
  updateControls();
}

/** Wait until the image's pyramid is ready (polling); returns the fresh image JSON. */
async function waitForFeatures(image, loadId) {
  let im = image;
  while (im.feature_status !== "done") {
    if (im.feature_status === "failed") {
      throw new Error(`the features of ${im.filename} could not be computed: ${im.feature_error ?? "unknown error"}`);
    }
    setStageMessage(`Waiting for the features of ${im.filename} (${im.feature_status})…`);
    await sleep(POLL_MS);
    if (loadId !== app.loadId) return null;
    im = (await getJSON(`/api/images/${im.id}`, "checking the image")).image;
  }
  return im;
}

/** Fetch an image's pixels and pyramid: {bitmap, buffer}. */
function fetchImageData(image) {
  return Promise.all([
    fetchOk(image.urls.file, "loading the image").then((r) => r.blob()).then((b) => createImageBitmap(b)),
    fetchOk(image.urls.pyramid, "loading the image's features").then((r) => r.arrayBuffer()),
  ]).then(([bitmap, buffer]) => ({ bitmap, buffer }));
}

/** Start loading the project's next open image after `afterId` (if its features are ready). */
async function prefetchNext(afterId) {
  try {
    const next = (await getJSON(`${app.project.urls.next}?after=${afterId}`, "finding the next image")).image;
    if (!next || next.feature_status !== "done") return;
    if (app.prefetched?.id === next.id) return;
    const promise = fetchImageData(next);
    promise.catch(() => {}); // a failed prefetch is fetched again when needed
    app.prefetched = { id: next.id, promise };
    prepareDecoder(next);
  } catch {
    /* prefetch is best effort */
  }
}

/** Let the decoder build its session for `image`'s canvas size now (free when it has one). */
function prepareDecoder(image) {
  if (!app.manifest?.dimParams || !app.decoder || !(image.width > 0 && image.height > 0)) return;
  const rule = app.manifest.canvas;
  const longest = rule ? canvasLongestSide(rule, image.height, image.width) : null;
  const g = canvasGeometry(image.height, image.width, longest);
  app.decoder.prepare(g.canvasH, g.canvasW).catch(() => {}); // best effort, like the prefetch
}

function showReviewNote(assignment) {
  const comment = assignment?.reviewed_at && assignment.status === "active" ? assignment.review_comment : null;
  ui.reviewNote.hidden = !comment;
  ui.reviewNote.textContent = comment ? `Sent back by the reviewer: ${comment}` : "";
}

async function openImage(image, assignment = null) {
  const loadId = ++app.loadId;
  clearError();
  app.assignment = assignment;
  showReviewNote(assignment);
  app.done = false;
  app.session = null;
  app.mask = null;
  app.maskLayer = null;
  app.objects = [];
  renderObjects();
  updateControls();
  ui.imageName.textContent = image.filename;
  setStatus(`Loading ${image.filename}…`);
  setStageMessage(`Loading ${image.filename}…`);
  const ready = await waitForFeatures(image, loadId);
  if (!ready) return;
  let data = null;
  if (app.prefetched?.id === ready.id) {
    data = await app.prefetched.promise.catch(() => null);
    app.prefetched = null;
  }
  if (!data) data = await fetchImageData(ready);
  const existing = (await getJSON(ready.urls.objects, "loading the image's objects")).objects;
  if (loadId !== app.loadId) return;
  const pyramid = parsePyramid(data.buffer);
  const { problems, geometry } = checkPyramid(app.manifest, pyramid.header);
  if (problems.length) {
    throw new Error(`The decoder does not match the features of ${ready.filename}:\n• ${problems.join("\n• ")}`);
  }
  if (data.bitmap.width !== geometry.imageW || data.bitmap.height !== geometry.imageH) {
    throw new Error(`the image is ${data.bitmap.width}x${data.bitmap.height}, its features are for ${geometry.imageW}x${geometry.imageH}`);
  }
  await app.decoder.setPyramid(pyramid.levels);
  if (loadId !== app.loadId) return;
  app.image = ready;
  app.bitmap = data.bitmap;
  app.geom = geometry;
  app.session = new ClickSession(geometry, (m) => app.decoder.predict(m));
  app.objects = existing.map((o) => ({
    localId: nextLocalId++,
    serverId: o.id,
    classId: o.class_id,
    mask: decodeRLE(o.rle),
    hidden: false,
    job: null,
    layer: null,
    deleting: false,
    error: null,
  }));
  await replayOutbox(ready, existing);
  startObject();
  const u = `${root.dataset.baseUrl}/${ready.id}${location.search}`;
  if (location.pathname + location.search !== u) history.replaceState(null, "", u);
  setStageMessage("");
  layout();
  viewport.fit();
  draw();
  renderObjects();
  updateControls();
  setStatus(`${ready.filename}: click on an object (left: add, right: remove). ? for the shortcuts.`);
  await restoreDraft(ready, loadId);
  prefetchNext(ready.id);
}

// ----------------------------------------------------------------------------------------
// Autosave: drafts (current object) and the outbox (accepted objects not yet saved)
// ----------------------------------------------------------------------------------------
async function sendDraft(imageId, draft) {
  let resp;
  try {
    resp = await http(`/api/images/${imageId}/draft`, {
      method: "PUT",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ rev: draft.rev, clicks: draft.clicks, class_id: draft.class_id, elapsed_ms: draft.elapsed_ms }),
    });
  } catch (e) {
    throw new Error(`network error: ${e.message}`); // retriable
  }
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw httpError(resp.status, body.error || `HTTP ${resp.status}`);
  return body;
}

const drafts = new DraftSync({
  store: null, // set in init (openStore)
  send: sendDraft,
  onError: (e, imageId) => {
    if (imageId === app.image?.id) showError(`Your work in progress could not be kept on the server: ${e.message}`);
  },
});

function currentClicks() {
  const s = app.session;
  if (!s) return [];
  return s.clicks.map((c, i) => ({ x: c.x, y: c.y, positive: c.positive, t: Math.max(0, Math.round(app.clickTimes[i] ?? 0)) }));
}

/** Keep the current object's state (IndexedDB now, the server soon). */
function saveDraft() {
  if (!app.image || app.restoring || !drafts.store) return Promise.resolve(null);
  const cls = app.project.classes[app.classIndex];
  return drafts.save(app.image.id, {
    clicks: currentClicks(),
    class_id: cls?.id ?? null,
    elapsed_ms: Math.round(performance.now() - app.objectStart),
  });
}

/** Replay the newer of the local and the server draft of `image` (its clicks, class, time). */
async function restoreDraft(image, loadId) {
  let server = null;
  try {
    server = (await getJSON(`/api/images/${image.id}/draft`, "loading the draft")).draft;
  } catch {
    /* offline: the local copy will do */
  }
  const draft = await drafts.load(image.id, server);
  if (!draft || loadId !== app.loadId || !draft.clicks?.length) return;
  const s = app.session;
  const ci = app.project.classes.findIndex((c) => c.id === draft.class_id);
  if (ci >= 0) setClass(ci);
  app.restoring = true;
  try {
    let state = null;
    for (const c of draft.clicks) state = await s.addClick(c.x, c.y, c.positive);
    if (s !== app.session) return;
    app.clickTimes = draft.clicks.map((c) => c.t);
    app.objectStart = performance.now() - (draft.elapsed_ms ?? 0);
    afterSessionChange(state);
    setStatus(`Restored your unfinished object (${draft.clicks.length} click${draft.clicks.length === 1 ? "" : "s"}).`);
  } finally {
    app.restoring = false;
  }
}

/** Objects accepted earlier but not confirmed by the server: show and send them again. */
async function replayOutbox(image, existing) {
  if (!app.store) return;
  const onServer = new Set(existing.map((o) => o.client_id).filter(Boolean));
  for (const entry of await app.store.all("outbox")) {
    if (entry.imageId !== image.id) continue;
    if (onServer.has(entry.clientId)) {
      await app.store.delete("outbox", entry.clientId); // saved, only the answer was lost
      continue;
    }
    if (saver.jobs.some((j) => j.payload.body.client_id === entry.clientId && j.state !== "cancelled")) continue;
    const o = { localId: nextLocalId++, serverId: null, classId: entry.body.class_id, mask: decodeRLE(entry.body.rle),
      hidden: false, job: null, layer: null, deleting: false, error: null };
    app.objects.push(o);
    o.job = saver.add({ url: entry.url, body: entry.body }, { obj: o, imageId: image.id, clientId: entry.clientId });
  }
}

/** Send what waits in the outbox for images other than the one open (after a crash). */
async function replayOtherImages() {
  if (!app.store) return;
  for (const entry of await app.store.all("outbox")) {
    if (entry.imageId === app.image?.id) continue;
    if (saver.jobs.some((j) => j.payload.body.client_id === entry.clientId)) continue;
    saver.add({ url: entry.url, body: entry.body }, { obj: null, imageId: entry.imageId, clientId: entry.clientId });
  }
}

let heartbeatTimer = null;
function startHeartbeat() {
  clearInterval(heartbeatTimer);
  const every = Math.max(5, Math.min(60, (app.project.settings?.lock_timeout_s ?? 1800) / 3)) * 1000;
  heartbeatTimer = setInterval(async () => {
    const a = app.assignment;
    if (!a || app.submitting || document.hidden) return;
    const resp = await http(`/api/assignments/${a.id}/heartbeat`, { method: "POST" }).catch(() => null);
    if (a !== app.assignment || app.submitting) return; // submitted or moved on meanwhile: not news
    if (resp && resp.status === 409) {
      const body = await resp.json().catch(() => ({}));
      showError(body.error || "This image was handed to another annotator.");
    }
  }, every);
}

window.addEventListener("online", () => {
  for (const job of saver.jobs) if (job.state === "retrying") saver.retry(job);
  drafts.flush();
  setStatus("Back online: sending what was kept.");
});
window.addEventListener("offline", () => setStatus("Offline: your work is kept in this browser and sent when the connection returns."));

function startObject() {
  app.objectStart = performance.now();
  app.clickTimes = [];
  app.mask = null;
  app.maskLayer = null;
}

// ----------------------------------------------------------------------------------------
// Drawing
// ----------------------------------------------------------------------------------------
/** An image-size canvas of a mask in `rgb` (filled, or its outline). */
function maskLayer(mask, w, h, rgb, outline) {
  const src = outline ? maskOutline(mask, h, w) : mask;
  const c = typeof OffscreenCanvas !== "undefined" ? new OffscreenCanvas(w, h) : Object.assign(document.createElement("canvas"), { width: w, height: h });
  const ctx = c.getContext("2d");
  const img = ctx.createImageData(w, h);
  const px = new Uint32Array(img.data.buffer);
  const on = ((255 << 24) | (rgb[2] << 16) | (rgb[1] << 8) | rgb[0]) >>> 0;
  for (let i = 0; i < src.length; i++) if (src[i]) px[i] = on;
  ctx.putImageData(img, 0, 0);
  return c;
}

function layout() {
  const r = ui.stage.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  ui.view.width = Math.max(1, Math.round(r.width * dpr));
  ui.view.height = Math.max(1, Math.round(r.height * dpr));
  if (app.geom) viewport.resize(r.width, r.height, app.geom.imageW, app.geom.imageH);
}

function draw() {
  const ctx = ui.view.getContext("2d");
  const dpr = window.devicePixelRatio || 1;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, ui.view.width, ui.view.height);
  if (!app.bitmap || !app.geom) return;
  const { imageW: w, imageH: h } = app.geom;
  const v = viewport;
  ctx.setTransform(dpr * v.scale, 0, 0, dpr * v.scale, dpr * v.offsetX, dpr * v.offsetY);
  ctx.imageSmoothingEnabled = v.scale < 4;
  ctx.drawImage(app.bitmap, 0, 0);
  ctx.imageSmoothingEnabled = false;
  const alpha = app.outline ? Math.max(app.opacity, 0.9) : app.opacity;
  if (!app.hideAll) {
    for (const o of app.objects) {
      if (o.hidden) continue;
      if (!o.layer || o.layerOutline !== app.outline) {
        o.layer = maskLayer(o.mask, w, h, hexToRgb(classById(o.classId).color), app.outline);
        o.layerOutline = app.outline;
      }
      ctx.globalAlpha = alpha;
      ctx.drawImage(o.layer, 0, 0);
    }
  }
  if (app.mask) {
    if (!app.maskLayer || app.maskLayerOutline !== app.outline) {
      app.maskLayer = maskLayer(app.mask, w, h, CURRENT_COLOR, app.outline);
      app.maskLayerOutline = app.outline;
    }
    ctx.globalAlpha = alpha;
    ctx.drawImage(app.maskLayer, 0, 0);
  }
  ctx.globalAlpha = 1;
  // click markers, in screen pixels
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  for (const c of app.session?.current.clicks ?? []) {
    const [sx, sy] = v.toScreen(c.x + 0.5, c.y + 0.5);
    ctx.beginPath();
    ctx.arc(sx, sy, MARKER.radius, 0, 2 * Math.PI);
    ctx.fillStyle = c.positive ? MARKER.positive : MARKER.negative;
    ctx.fill();
    ctx.lineWidth = 2;
    ctx.strokeStyle = "#ffffff";
    ctx.stroke();
  }
}

// ----------------------------------------------------------------------------------------
// Clicks
// ----------------------------------------------------------------------------------------
function afterSessionChange(state) {
  app.mask = state.margin === null ? null : app.session.imageMask();
  app.maskLayer = null;
  draw();
  updateControls();
  saveDraft();
}

async function click(x, y, positive) {
  const s = app.session;
  if (!s) throw new Error(app.error ?? "no image is loaded");
  const t = performance.now() - app.objectStart;
  ui.stage.classList.add("busy");
  try {
    const state = await s.addClick(x, y, positive);
    app.clickTimes[state.clicks.length - 1] = t;
    if (s === app.session) {
      afterSessionChange(state);
      const tm = state.timing;
      setStatus(`Click ${state.clicks.length}: ${tm.decoderMs.toFixed(1)} ms decoder, ${tm.totalMs.toFixed(1)} ms in all.`);
    }
    return state;
  } finally {
    ui.stage.classList.remove("busy");
  }
}

async function sessionOp(name) {
  const s = app.session;
  if (!s) return null;
  if ((name === "undo" || name === "reset") && !s.canUndo) return null;
  if (name === "redo" && !s.canRedo) return null;
  const state = await s[name]();
  if (s === app.session) {
    afterSessionChange(state);
    setStatus(`${name[0].toUpperCase()}${name.slice(1)}: ${state.clicks.length} click${state.clicks.length === 1 ? "" : "s"}.`);
  }
  return state;
}

// ----------------------------------------------------------------------------------------
// Objects: accept, save (with retry), hide, delete
// ----------------------------------------------------------------------------------------
async function sendObject(payload) {
  let resp;
  try {
    resp = await http(payload.url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(payload.body),
    });
  } catch (e) {
    throw new Error(`network error: ${e.message}`); // retriable
  }
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw httpError(resp.status, body.error || `HTTP ${resp.status}`);
  return body.object;
}

const saver = new SaveQueue({
  send: sendObject,
  onChange: (job) => {
    const o = job.obj;
    if (job.state === "saved" || job.state === "cancelled") app.store?.delete("outbox", job.clientId);
    if (job.state === "saved" && o) {
      o.serverId = job.result.id;
      if (o.deleting) deleteObject(o);
    }
    renderObjects();
  },
});

async function accept() {
  const s = app.session;
  if (!s) return null;
  await s.idle();
  if (s !== app.session || !s.clicks.length) return null;
  const { imageW: w, imageH: h } = app.geom;
  const mask = s.imageMask();
  if (maskStats(mask, h, w).area === 0) {
    setStatus("The mask is empty: add a positive click inside the object first.");
    return null;
  }
  const cls = app.project.classes[app.classIndex];
  const clicks = s.clicks.map((c, i) => ({ x: c.x, y: c.y, positive: c.positive, t: Math.max(0, Math.round(app.clickTimes[i] ?? 0)) }));
  const timeSpent = (performance.now() - app.objectStart) / 1000;
  const o = { localId: nextLocalId++, serverId: null, classId: cls.id, mask, hidden: false, job: null, layer: null, deleting: false, error: null };
  app.objects.push(o);
  const clientId = newClientId();
  const payload = {
    url: app.image.urls.objects,
    body: { class_id: cls.id, rle: encodeRLE(mask, h, w), clicks, time_spent: timeSpent, client_id: clientId },
  };
  // into the outbox first: a crash or reload before the server answers loses nothing. If the
  // local store fails (quota, closed), the save still goes to the server; only the crash
  // protection is missing, and the user is told.
  let outboxError = null;
  try {
    await app.store?.put("outbox", { clientId, imageId: app.image.id, userId: app.userId, ...payload });
  } catch (e) {
    outboxError = e;
    console.warn("accept: the local outbox could not keep the object", e);
  }
  // the next object starts before the save is handed over: a fast answer never sees old clicks
  await s.reset();
  startObject();
  afterSessionChange(s.current);
  o.job = saver.add(payload, { obj: o, imageId: app.image.id, clientId });
  renderObjects();
  setStatus(
    `Object ${app.objects.length} (${cls.name}) accepted. Click on the next object.` +
      (outboxError ? " (This browser could not keep a local copy: keep the page open until it is saved.)" : ""),
  );
  return o.localId;
}

async function deleteObject(o) {
  if (o.job && o.job.state !== "saved") {
    if (saver.cancel(o.job)) {
      removeObject(o);
      return;
    }
    o.deleting = true; // being sent: delete once saved (saver onChange)
    renderObjects();
    return;
  }
  o.deleting = true;
  o.error = null;
  renderObjects();
  try {
    await fetchOk(`/api/objects/${o.serverId}`, "deleting the object", { method: "DELETE" });
    removeObject(o);
  } catch (e) {
    o.deleting = false;
    o.error = e.message;
    renderObjects();
  }
}

// The class of an accepted object, changed in the object list (PATCH; mask and clicks stay).
function classPicker(o) {
  const sel = document.createElement("select");
  sel.className = "object-class";
  sel.title = o.serverId == null ? "The class can change once the object is saved" : "Change this object's class";
  sel.setAttribute("aria-label", "Class of this object");
  for (const c of app.project.classes) sel.append(new Option(c.name, String(c.id), false, c.id === o.classId));
  sel.disabled = o.serverId == null || o.deleting || o.changingClass;
  sel.addEventListener("change", () => changeClass(o, Number(sel.value)));
  return sel;
}

async function changeClass(o, classId) {
  const before = o.classId;
  o.classId = classId;
  o.changingClass = true;
  o.error = null;
  renderObjects();
  draw();
  try {
    const resp = await fetchOk(`/api/objects/${o.serverId}`, "changing the object's class", {
      method: "PATCH",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ class_id: classId }),
    });
    o.classId = (await resp.json()).object.class_id;
  } catch (e) {
    o.classId = before; // the server kept the old class: show it, and why
    o.error = e.message;
    showError(e.message);
  } finally {
    o.changingClass = false;
    renderObjects();
    draw();
  }
}

function removeObject(o) {
  const i = app.objects.indexOf(o);
  if (i >= 0) app.objects.splice(i, 1);
  renderObjects();
  draw();
}

/** An object's save state: its job's, "saving" while it is being queued (accepted, no job yet), else "saved". */
function saveState(o) {
  if (o.job) return o.job.state;
  return o.serverId === null ? "saving" : "saved";
}

function saveText(o) {
  if (o.deleting) return ["deleting…", "saving"];
  if (o.error) return [o.error, "failed"];
  const state = saveState(o);
  if (state === "saved") return ["saved", "saved"];
  if (state === "saving") return ["saving…", "saving"];
  if (state === "retrying") return [`not saved (${o.job.error}); retrying in ${Math.round(o.job.retryInMs / 1000)} s`, "retrying"];
  return [`not saved: ${o.job.error}`, "failed"];
}

function button(text, title, onclick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.title = title;
  b.addEventListener("click", onclick);
  return b;
}

function renderObjects() {
  const items = app.objects.map((o, i) => {
    const li = document.createElement("li");
    li.dataset.localId = String(o.localId);
    const cls = classById(o.classId);
    li.classList.toggle("hidden-object", o.hidden);
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.setProperty("--c", cls.color);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `${i + 1}.`;
    const [text, kind] = saveText(o);
    const save = document.createElement("span");
    save.className = `save save-${kind}`;
    save.textContent = text;
    li.append(sw, name, classPicker(o), save);
    if (o.job && (o.job.state === "failed" || o.job.state === "retrying")) {
      li.append(button("Retry", "Try to save it again now", () => saver.retry(o.job)));
    }
    li.append(
      button(o.hidden ? "Show" : "Hide", "Hide or show this object", () => {
        o.hidden = !o.hidden;
        renderObjects();
        draw();
      }),
      button("Delete", "Delete this object", () => deleteObject(o)),
    );
    return li;
  });
  ui.objectList.replaceChildren(...items);
  ui.objectCount.textContent = String(app.objects.length);
  const unsaved = saver.unsaved;
  const failed = unsaved.filter((j) => j.state === "failed");
  ui.saveStatus.className = failed.length ? "save-failed" : "muted";
  ui.saveStatus.textContent = failed.length
    ? `${failed.length} object${failed.length === 1 ? "" : "s"} could not be saved: ${failed[0].error}. Retry or delete.`
    : unsaved.length
      ? `Saving ${unsaved.length} object${unsaved.length === 1 ? "" : "s"}…` +
        (unsaved.some((j) => j.state === "retrying") ? ` (retrying: ${unsaved.find((j) => j.state === "retrying").error})` : "")
      : app.objects.length
        ? "Every object is saved."
        : "";
}

// ----------------------------------------------------------------------------------------
// Submit and next
// ----------------------------------------------------------------------------------------
async function submit() {
  if (!app.session) return { ok: false, error: "no image is loaded" };
  if (app.session.clicks.length) {
    const msg = "Accept (Enter) or reset (Esc) the current object before submitting.";
    setStatus(msg);
    return { ok: false, error: msg };
  }
  const image = app.image;
  ui.submit.disabled = true;
  setStatus("Waiting for the objects to be saved…");
  await saver.idle();
  const failed = saver.failed.filter((j) => j.imageId === image.id);
  if (failed.length) {
    const msg = `${failed.length} object(s) of this image could not be saved: retry or delete them before submitting.`;
    setStatus(msg);
    updateControls();
    return { ok: false, error: msg };
  }
  let body;
  app.submitting = true; // no heartbeat for a slot being closed (it would answer 409)
  try {
    body = await (await fetchOk(image.urls.submit, "submitting the image", { method: "POST", headers: { Accept: "application/json" } })).json();
  } catch (e) {
    app.submitting = false;
    setStatus(e.message);
    updateControls();
    return { ok: false, error: e.message };
  }
  app.assignment = null;
  app.submitting = false;
  await drafts.clear(image.id);
  showCodes(body.completion_codes);
  if (image !== app.image) return { ok: true, next: null };
  await openNext();
  return { ok: true, next: app.image?.id ?? null };
}

function showCodes(codes) {
  if (!codes?.length) return;
  ui.codes.hidden = false;
  ui.codes.textContent = `Completion code${codes.length === 1 ? "" : "s"}: ` + codes.map((c) => `batch ${c.batch}: ${c.code}`).join(" · ");
}

// ----------------------------------------------------------------------------------------
// Events
// ----------------------------------------------------------------------------------------
function stagePoint(ev) {
  const r = ui.stage.getBoundingClientRect();
  return [ev.clientX - r.left, ev.clientY - r.top];
}

const report = (p) => p.catch((e) => setStatus(e.message));
let drag = null;

ui.stage.addEventListener("pointerdown", (ev) => {
  if (ev.button !== 0 && ev.button !== 1) return;
  ui.stage.setPointerCapture(ev.pointerId);
  drag = { x: ev.clientX, y: ev.clientY, button: ev.button, moved: ev.button === 1 };
  ui.stage.focus();
});
ui.stage.addEventListener("pointermove", (ev) => {
  if (!drag) return;
  const dx = ev.clientX - drag.x;
  const dy = ev.clientY - drag.y;
  if (!drag.moved && Math.hypot(dx, dy) < 4) return;
  drag.moved = true;
  ui.stage.classList.add("panning");
  viewport.panBy(dx, dy);
  drag.x = ev.clientX;
  drag.y = ev.clientY;
  draw();
});
ui.stage.addEventListener("pointerup", (ev) => {
  const d = drag;
  drag = null;
  ui.stage.classList.remove("panning");
  if (!d || d.moved || d.button !== 0 || !app.session) return;
  const px = viewport.pixelAt(...stagePoint(ev));
  if (px) report(click(px[0], px[1], true));
});
ui.stage.addEventListener("pointercancel", () => {
  drag = null;
  ui.stage.classList.remove("panning");
});
ui.stage.addEventListener("contextmenu", (ev) => {
  ev.preventDefault();
  if (!app.session) return;
  const px = viewport.pixelAt(...stagePoint(ev));
  if (px) report(click(px[0], px[1], false));
});
ui.stage.addEventListener(
  "wheel",
  (ev) => {
    ev.preventDefault();
    if (!app.geom) return;
    const unit = ev.deltaMode === 1 ? 16 : ev.deltaMode === 2 ? 400 : 1;
    viewport.zoomAt(...stagePoint(ev), Math.exp(-ev.deltaY * unit * 0.0015));
    draw();
  },
  { passive: false },
);

function zoomCentre(factor) {
  if (!app.geom) return;
  viewport.zoomAt(viewport.viewW / 2, viewport.viewH / 2, factor);
  draw();
}

ui.undo.addEventListener("click", () => report(sessionOp("undo")));
ui.redo.addEventListener("click", () => report(sessionOp("redo")));
ui.reset.addEventListener("click", () => report(sessionOp("reset")));
ui.accept.addEventListener("click", () => report(accept()));
ui.submit.addEventListener("click", () => report(submit()));
ui.fit.addEventListener("click", () => {
  viewport.fit();
  draw();
});
ui.classSelect.addEventListener("change", () => {
  setClass(Number(ui.classSelect.value));
  saveDraft();
});
ui.opacity.addEventListener("input", () => {
  app.opacity = Number(ui.opacity.value) / 100;
  draw();
});
ui.outline.addEventListener("change", () => {
  app.outline = ui.outline.checked;
  draw();
});
ui.helpButton.addEventListener("click", () => ui.help.showModal());

window.addEventListener("keydown", (ev) => {
  if (ui.help.open) return; // the dialog handles Esc itself
  const t = ev.target;
  if (t?.tagName === "TEXTAREA" || (t?.tagName === "INPUT" && !["range", "checkbox"].includes(t.type))) return;
  const mod = ev.ctrlKey || ev.metaKey;
  const key = ev.key;
  let handled = true;
  if (mod && !ev.shiftKey && key.toLowerCase() === "z") report(sessionOp("undo"));
  else if (mod && ((ev.shiftKey && key.toLowerCase() === "z") || key.toLowerCase() === "y")) report(sessionOp("redo"));
  else if (mod && key === "Enter") report(submit());
  else if (mod || ev.altKey) handled = false;
  else if (key === "Enter") report(accept());
  else if (key === "Escape") report(sessionOp("reset"));
  else if (key === "?") ui.help.showModal();
  else if (/^[1-9]$/.test(key)) setClass(Number(key) - 1);
  else if (key === "o" || key === "O") {
    app.outline = !app.outline;
    ui.outline.checked = app.outline;
    draw();
  } else if (key === "h" || key === "H") {
    app.hideAll = !app.hideAll;
    draw();
  } else if (key === "f" || key === "F") {
    viewport.fit();
    draw();
  } else if (key === "+" || key === "=") zoomCentre(1.25);
  else if (key === "-") zoomCentre(0.8);
  else handled = false;
  if (handled) ev.preventDefault();
});

window.addEventListener("resize", () => {
  layout();
  draw();
});
window.addEventListener("beforeunload", (ev) => {
  if (saver.unsaved.length) {
    ev.preventDefault();
    ev.returnValue = "Some objects are not saved yet.";
  }
});

// ----------------------------------------------------------------------------------------
// Test hook
// ----------------------------------------------------------------------------------------
function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** 0/1 bytes -> bits, most significant first (numpy.packbits). */
function packBits(bits) {
  const out = new Uint8Array(Math.ceil(bits.length / 8));
  for (let i = 0; i < bits.length; i++) if (bits[i]) out[i >> 3] |= 0x80 >> (i & 7);
  return out;
}

const packed = (mask) => ({ height: app.geom.imageH, width: app.geom.imageW, base64: toBase64(packBits(mask)) });

const settle = (p) =>
  p.then(
    () => ({ ok: !app.error, error: app.error }),
    (e) => {
      showError(e.message);
      setStageMessage("");
      setStatus("Not ready.");
      return { ok: false, error: e.message };
    },
  );

const ready = settle(
  (async () => {
    await init();
    await replayOtherImages();
  })(),
);

window.__annotate = {
  /** Resolves to {ok, error} once the first image is loaded (or loading failed). */
  ready,
  /** Click image pixel (x, y); resolves to the number of clicks. */
  click: async (x, y, positive = true) => (await click(x, y, positive)).clicks.length,
  undo: async () => (await sessionOp("undo"))?.clicks.length ?? null,
  redo: async () => (await sessionOp("redo"))?.clicks.length ?? null,
  reset: async () => (await sessionOp("reset"))?.clicks.length ?? null,
  /** Accept the current object; resolves to its local id (null if nothing to accept). */
  accept: () => accept(),
  /** Submit the image; resolves to {ok, next, error}. */
  submit: () => submit(),
  /** Resolves once every queued save has ended (saved or failed). */
  saved: () => saver.idle(),
  /** Resolves once the draft of the open image is on the server (or gave up). */
  draftSynced: () => drafts.flush(),
  /** The IndexedDB outbox (objects not confirmed by the server) and the local draft. */
  outbox: async () => (app.store ? (await app.store.all("outbox")).map((e) => ({ clientId: e.clientId, imageId: e.imageId })) : []),
  localDraft: async () => (app.store && app.image ? (await app.store.get("drafts", app.image.id)) ?? null : null),
  /** Client (page) coordinates of the centre of image pixel (x, y). */
  imageToClient: (x, y) => {
    const r = ui.stage.getBoundingClientRect();
    const [sx, sy] = viewport.toScreen(x + 0.5, y + 0.5);
    return [r.left + sx, r.top + sy];
  },
  zoomAt: (sx, sy, factor) => {
    viewport.zoomAt(sx, sy, factor);
    draw();
  },
  error: () => app.error,
  /**
   * The page as plain data; masks are image-size, packed 8 pixels a byte, most significant
   * bit first (numpy.unpackbits), row-major. `mask` is the current object's (what is drawn).
   */
  state: () => ({
    projectId: app.projectId,
    imageId: app.image?.id ?? null,
    done: app.done,
    geometry: app.geom,
    clicks: app.session?.clicks ?? [],
    canUndo: app.session?.canUndo ?? false,
    canRedo: app.session?.canRedo ?? false,
    classIndex: app.classIndex,
    outline: app.outline,
    hideAll: app.hideAll,
    opacity: app.opacity,
    viewport: { scale: viewport.scale, offsetX: viewport.offsetX, offsetY: viewport.offsetY },
    mask: app.geom ? packed(app.mask ?? new Uint8Array(app.geom.imageW * app.geom.imageH)) : null,
    objects: app.objects.map((o) => ({
      localId: o.localId,
      serverId: o.serverId,
      classId: o.classId,
      hidden: o.hidden,
      save: saveState(o),
      error: o.job?.error ?? o.error,
      mask: packed(o.mask),
    })),
    prefetched: app.prefetched?.id ?? null,
    assignment: app.assignment,
    draftsUnsynced: drafts.unsynced,
  }),
};
