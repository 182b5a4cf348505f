/**
 * The playground page: choose a sample, click, see the mask. UI only; the work is done by
 * pyramid.js (features), manifest.js (is this decoder for these features?), decoder.js (the
 * ONNX decoder in a worker), session.js (clicks, click map, undo) and mask.js (drawing).
 *
 * URL parameters: ?sample=<id> (initial sample), ?threads=<n> (WebAssembly threads),
 * ?webgpu=0 (never try WebGPU).
 *
 * Test hook: window.__playground (see the bottom of this file) lets a browser test drive the
 * page and read its state without scraping pixels.
 */

import { checkPyramid, normalizeManifest } from "./manifest.js";
import { loadDecoder } from "./decoder.js";
import { MaskRenderer } from "./mask.js";
import { parsePyramid } from "./pyramid.js";
import { ClickSession } from "./session.js";
import { http } from "./http.js";

const $ = (id) => document.getElementById(id);
const ui = {
  select: $("sample-select"),
  undo: $("undo"),
  reset: $("reset"),
  status: $("status"),
  backend: $("backend"),
  error: $("error"),
  coiWarning: $("coi-warning"),
  stage: $("stage"),
  imageCanvas: $("image-canvas"),
  overlay: $("overlay-canvas"),
};

const MARKER = { positive: "#22c55e", negative: "#ef4444", radius: 6 };
const params = new URLSearchParams(location.search);

const app = {
  samples: [],
  manifest: null,
  decoder: null,
  sample: null,
  bitmap: null,
  session: null,
  error: null,
  loadId: 0,
};
const renderer = new MaskRenderer();

// ----------------------------------------------------------------------------------------
// Messages
// ----------------------------------------------------------------------------------------
function setStatus(text) {
  ui.status.textContent = text;
}

function showError(message) {
  app.error = message;
  ui.error.textContent = message;
  ui.error.hidden = false;
  setStatus("Not ready.");
  setControls(false);
}

function clearError() {
  app.error = null;
  ui.error.hidden = true;
  ui.error.textContent = "";
}

function setControls(enabled) {
  ui.undo.disabled = !enabled || !app.session?.canUndo;
  ui.reset.disabled = !enabled || !app.session?.canUndo;
  ui.select.disabled = app.samples.length === 0;
}

async function fetchOk(url, what) {
  const resp = await http(url);
  if (!resp.ok) {
    let detail = `HTTP ${resp.status}`;
    try {
      detail = (await resp.json()).error ?? detail;
    } catch {
      /* not JSON */
    }
    throw new Error(`${what}: ${detail}`);
  }
  return resp;
}

// ----------------------------------------------------------------------------------------
// Loading
// ----------------------------------------------------------------------------------------
async function init() {
  ui.coiWarning.hidden = self.crossOriginIsolated === true;
  const listing = await (await fetchOk("/api/playground/samples", "listing the samples")).json();
  app.samples = listing.samples;
  ui.select.replaceChildren(...app.samples.map((s) => new Option(s.title, s.id)));
  if (app.samples.length === 0) throw new Error("there are no sample images");

  setStatus("Loading the decoder…");
  const raw = await (await fetchOk(listing.decoder.manifest, "loading the decoder manifest")).json();
  app.manifest = normalizeManifest(raw);
  const threads = params.has("threads") ? Number.parseInt(params.get("threads"), 10) : undefined;
  app.decoder = await loadDecoder(listing.decoder.model, app.manifest, {
    numThreads: threads,
    preferWebGPU: params.get("webgpu") !== "0",
  });
  const info = app.decoder.info;
  ui.backend.textContent =
    `Decoder ${app.manifest.modelId} (version ${app.manifest.modelVersion}) on ${info.backend}` +
    (info.backend === "wasm" ? ` (${info.numThreads} thread${info.numThreads === 1 ? "" : "s"})` : "") +
    `, loaded in ${info.loadMs.toFixed(0)} ms.` +
    (info.webgpuError ? ` WebGPU could not be used: ${info.webgpuError}` : "") +
    (info.fallback ? ` ${info.fallback}.` : "");

  const wanted = params.get("sample");
  const first = app.samples.find((s) => s.id === wanted) ?? app.samples[0];
  await loadSample(first.id);
}

async function loadSample(id) {
  const sample = app.samples.find((s) => s.id === id);
  if (!sample) throw new Error(`unknown sample ${id}`);
  const loadId = ++app.loadId;
  clearError();
  app.session = null;
  app.sample = sample;
  ui.select.value = id;
  setControls(false);
  setStatus(`Loading ${sample.title}…`);
  const [bitmap, buffer] = await Promise.all([
    fetchOk(sample.image, "loading the image").then((r) => r.blob()).then((b) => createImageBitmap(b)),
    fetchOk(sample.pyramid, "loading the image's features").then((r) => r.arrayBuffer()),
  ]);
  if (loadId !== app.loadId) return; // another sample was chosen meanwhile
  const pyramid = parsePyramid(buffer);
  const { problems, geometry } = checkPyramid(app.manifest, pyramid.header);
  if (problems.length) {
    throw new Error(
      `This decoder (${app.manifest.modelId} version ${app.manifest.modelVersion}) does not match the ` +
        `features of "${sample.title}":\n• ${problems.join("\n• ")}`,
    );
  }
  if (bitmap.width !== geometry.imageW || bitmap.height !== geometry.imageH) {
    throw new Error(
      `the image is ${bitmap.width}x${bitmap.height}, its features are for ${geometry.imageW}x${geometry.imageH}`,
    );
  }
  const { warmupMs } = await app.decoder.setPyramid(pyramid.levels);
  if (loadId !== app.loadId) return;
  app.bitmap = bitmap;
  app.session = new ClickSession(geometry, (m) => app.decoder.predict(m));
  layout();
  redraw();
  setControls(true);
  setStatus(
    `${sample.title}: ready (warm-up ${warmupMs === null ? "skipped" : `${warmupMs.toFixed(1)} ms`}). ` +
      "Click on an object.",
  );
}

// ----------------------------------------------------------------------------------------
// Drawing
// ----------------------------------------------------------------------------------------
function layout() {
  const { imageW, imageH } = app.session.geom;
  const maxW = Math.min(960, document.documentElement.clientWidth - 32);
  const maxH = Math.max(320, window.innerHeight - 260);
  const scale = Math.min(maxW / imageW, maxH / imageH, 2);
  const w = Math.max(1, Math.round(imageW * scale));
  const h = Math.max(1, Math.round(imageH * scale));
  const dpr = window.devicePixelRatio || 1;
  for (const c of [ui.imageCanvas, ui.overlay]) {
    c.width = Math.round(w * dpr);
    c.height = Math.round(h * dpr);
    c.style.width = `${w}px`;
    c.style.height = `${h}px`;
  }
  const ctx = ui.imageCanvas.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(app.bitmap, 0, 0, ui.imageCanvas.width, ui.imageCanvas.height);
}

function redraw() {
  const ctx = ui.overlay.getContext("2d");
  ctx.clearRect(0, 0, ui.overlay.width, ui.overlay.height);
  const s = app.session;
  if (!s) return;
  if (s.current.margin !== null) renderer.draw(ctx, s.current.prediction, s.geom);
  const sx = ui.overlay.width / s.geom.imageW;
  const sy = ui.overlay.height / s.geom.imageH;
  const r = MARKER.radius * (window.devicePixelRatio || 1);
  for (const c of s.current.clicks) {
    ctx.beginPath();
    ctx.arc((c.x + 0.5) * sx, (c.y + 0.5) * sy, r, 0, 2 * Math.PI);
    ctx.fillStyle = c.positive ? MARKER.positive : MARKER.negative;
    ctx.fill();
    ctx.lineWidth = Math.max(1.5, r / 3);
    ctx.strokeStyle = "#ffffff";
    ctx.stroke();
  }
}

function describe(state) {
  const n = state.clicks.length;
  if (n === 0) return `${app.sample.title}: no clicks.`;
  const t = state.timing;
  return t
    ? `Click ${n}: ${t.decoderMs.toFixed(1)} ms decoder, ${t.totalMs.toFixed(1)} ms in all.`
    : `${n} click${n === 1 ? "" : "s"}.`;
}

// ----------------------------------------------------------------------------------------
// Interaction
// ----------------------------------------------------------------------------------------
async function click(x, y, positive) {
  const s = app.session;
  if (!s) throw new Error(app.error ?? "no image is loaded");
  ui.stage.classList.add("busy");
  try {
    const state = await s.addClick(x, y, positive);
    if (s === app.session) {
      redraw();
      setControls(true);
      setStatus(describe(state));
    }
    return state;
  } finally {
    ui.stage.classList.remove("busy");
  }
}

async function undo() {
  const s = app.session;
  if (!s || !s.canUndo) return null;
  const state = await s.undo();
  redraw();
  setControls(true);
  setStatus(`Undone. ${describe(state)}`);
  return state;
}

async function reset() {
  const s = app.session;
  if (!s) return null;
  const state = await s.reset();
  redraw();
  setControls(true);
  setStatus(describe(state));
  return state;
}

function eventToImage(ev) {
  const rect = ui.overlay.getBoundingClientRect();
  const { imageW, imageH } = app.session.geom;
  const x = Math.floor(((ev.clientX - rect.left) / rect.width) * imageW);
  const y = Math.floor(((ev.clientY - rect.top) / rect.height) * imageH);
  return [Math.min(Math.max(x, 0), imageW - 1), Math.min(Math.max(y, 0), imageH - 1)];
}

function onPointer(ev, positive) {
  if (!app.session) return;
  const [x, y] = eventToImage(ev);
  click(x, y, positive).catch((e) => setStatus(`Click failed: ${e.message}`));
}

ui.overlay.addEventListener("click", (ev) => {
  if (ev.button === 0) onPointer(ev, true);
});
ui.overlay.addEventListener("contextmenu", (ev) => {
  ev.preventDefault();
  onPointer(ev, false);
});
ui.undo.addEventListener("click", () => undo().catch((e) => setStatus(e.message)));
ui.reset.addEventListener("click", () => reset().catch((e) => setStatus(e.message)));
ui.select.addEventListener("change", () => loadSample(ui.select.value).catch((e) => showError(e.message)));
window.addEventListener("keydown", (ev) => {
  if ((ev.ctrlKey || ev.metaKey) && !ev.shiftKey && ev.key.toLowerCase() === "z") {
    ev.preventDefault();
    undo().catch((e) => setStatus(e.message));
  }
});
window.addEventListener("resize", () => {
  if (app.session) {
    layout();
    redraw();
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

const settle = (p) =>
  p.then(
    () => ({ ok: !app.error, error: app.error }),
    (e) => {
      showError(e.message);
      return { ok: false, error: e.message };
    },
  );

const ready = settle(init());

window.__playground = {
  /** Resolves to {ok, error} once the first sample is loaded (or loading failed). */
  ready,
  /** Load another sample; resolves to {ok, error}. */
  loadSample: (id) => settle(loadSample(id)),
  /** Click image pixel (x, y); resolves to {clicks, decoderMs, totalMs}. */
  click: async (x, y, positive = true) => {
    const st = await click(x, y, positive);
    return { clicks: st.clicks.length, ...st.timing };
  },
  undo: async () => (await undo())?.clicks.length ?? null,
  reset: async () => (await reset())?.clicks.length ?? null,
  error: () => app.error,
  info: () => ({
    crossOriginIsolated: self.crossOriginIsolated,
    hardwareConcurrency: navigator.hardwareConcurrency,
    decoder: app.decoder?.info ?? null,
    manifest: app.manifest ? { id: app.manifest.modelId, version: app.manifest.modelVersion } : null,
    sample: app.sample?.id ?? null,
  }),
  /**
   * The session as plain data: clickMap is the canvas click map (base64 of canvasH*canvasW
   * bytes, labels 0..4, row-major); mask is the image-size mask packed 8 pixels a byte, most
   * significant bit first (numpy.unpackbits), row-major.
   */
  state: () => {
    const s = app.session;
    if (!s) return null;
    const st = s.current;
    return {
      sample: app.sample.id,
      geometry: s.geom,
      clicks: st.clicks,
      timing: st.timing,
      clickMap: { height: st.clickMap.height, width: st.clickMap.width, base64: toBase64(st.clickMap.data) },
      mask: { height: s.geom.imageH, width: s.geom.imageW, base64: toBase64(packBits(s.imageMask())) },
      // the decoder's low-res output (float32, h4 x w4, row-major), for comparisons with PyTorch
      margin: st.margin
        ? { height: st.margin.h4, width: st.margin.w4, base64: toBase64(new Uint8Array(st.margin.data.buffer, st.margin.data.byteOffset, st.margin.data.byteLength)) }
        : null,
    };
  },
};
