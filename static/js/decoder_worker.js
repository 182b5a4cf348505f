/**
 * The per-click decoder in a Web Worker (module type), on onnxruntime-web.
 *
 * onnxruntime-web is set up by ort_session.js: from our own origin, WebGPU when the browser
 * has it (else, or if its session fails, WebAssembly), WebAssembly threads when the page is
 * cross-origin isolated; the page may ask for another thread count.
 *
 * Sessions per canvas: the decoder graph has dynamic height and width, and with them a large
 * shape-arithmetic subgraph (the I-MSA pooling sizes follow the canvas): 2403 nodes. When the
 * manifest names the graph's symbolic dimensions (dimParams) the worker creates one session per
 * canvas size with every dimension fixed (freeDimensionOverrides); onnxruntime then folds the
 * shape arithmetic into constants at load time (380 nodes), and every click runs faster. Such
 * a session is built ahead of time (`prepare`, while the next image is prefetched) or when a
 * pyramid of a new canvas size arrives; until it is ready the dynamic session made at init
 * answers, so opening an image never waits for a session build. The last MAX_FIXED are kept.
 * The dynamic session is also the fallback (no dimParams, staticShapes false, or a fixed
 * session that failed to build). Runs are serialised, whichever session they use.
 *
 * Messages in ({id, type, ...}), each answered by {id, ok: true, result} or {id, ok: false, error}:
 *   init       {modelUrl, names: {features: string[], clickMap, output}, numThreads?, preferWebGPU?,
 *              dimParams?: [{name, axis, divisor}], staticShapes?: boolean (default true)}
 *              -> {backend, numThreads, crossOriginIsolated, inputNames, outputNames, loadMs, webgpuError}
 *   prepare    {height, width} -> {sessionMs, fixed}: build the session for that canvas now
 *   setPyramid {levels: [{name, stride, shape: [C, H, W], data: Float32Array}]} (buffers transferred),
 *              warmup?: boolean -> {warmupMs, sessionMs, fixed}
 *   predict    {clickMap: Uint8Array (labels 0..4, transferred), height, width}
 *              -> {margin: Float32Array (transferred), h4, w4, ms, fixed}  (ms: session.run only;
 *              fixed: answered by a fixed-shape session)
 */

import { http } from "./http.js";
import { dimOverrides } from "./manifest.js";
import { createSession, loadOrt } from "./ort_session.js";

const MAX_FIXED = 3; // fixed-canvas sessions kept (the open image, the prefetched one, one more)

let ort = null;
let session = null; // the session the current pyramid runs on
let dynamicSession = null;
let modelBytes = null;
let sessionOptions = null;
let dimParams = null;
const fixedSessions = new Map(); // "HxW" -> Promise<InferenceSession>, least recently used first
const retired = new Set(); // dropped from fixedSessions while in use: released once left
let names = null;
let featureFeeds = null;
let canvasSize = null;

async function init({ modelUrl, names: n, numThreads, preferWebGPU = true, dimParams: dims = null, staticShapes = true }) {
  const t0 = performance.now();
  const loaded = await loadOrt({ numThreads, preferWebGPU });
  ort = loaded.ort;
  const resp = await http(modelUrl);
  if (!resp.ok) throw new Error(`loading the decoder failed: HTTP ${resp.status} for ${modelUrl}`);
  const bytes = new Uint8Array(await resp.arrayBuffer());
  const made = await createSession(ort, bytes, loaded.webgpu);
  const { backend, webgpuError } = made;
  ({ session, sessionOptions } = made);
  dynamicSession = session;
  modelBytes = bytes;
  dimParams = staticShapes && Array.isArray(dims) && dims.length ? dims : null;
  const missing = [...n.features, n.clickMap].filter((x) => !session.inputNames.includes(x));
  if (missing.length || !session.outputNames.includes(n.output)) {
    throw new Error(
      `the decoder's inputs/outputs (${session.inputNames.join(", ")} -> ${session.outputNames.join(", ")}) ` +
        `do not match its manifest (missing: ${[...missing, ...(session.outputNames.includes(n.output) ? [] : [n.output])].join(", ")})`,
    );
  }
  names = n;
  return {
    backend,
    fixedShapes: dimParams !== null,
    numThreads: backend === "wasm" ? ort.env.wasm.numThreads : null,
    crossOriginIsolated: self.crossOriginIsolated,
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    loadMs: performance.now() - t0,
    webgpuError,
  };
}

let runChain = Promise.resolve(); // session runs one after the other, whichever session

/** Run `fn` after every run queued before it (a switch of sessions never overlaps two runs). */
function serialised(fn) {
  const p = runChain.then(fn);
  runChain = p.catch(() => {});
  return p;
}

async function runOn(sess, clickMap, height, width) {
  const cm = new Float32Array(height * width);
  for (let i = 0; i < cm.length; i++) cm[i] = clickMap[i];
  const feeds = { ...featureFeeds, [names.clickMap]: new ort.Tensor("float32", cm, [1, 1, height, width]) };
  const t0 = performance.now();
  const out = await sess.run(feeds, [names.output]);
  const t = out[names.output];
  let data = t.location === "cpu" || t.location === undefined ? t.data : await t.getData(true);
  const ms = performance.now() - t0;
  const [n, c, h4, w4] = t.dims;
  if (t.dims.length !== 4 || n !== 1 || c !== 1 || h4 * 4 !== height || w4 * 4 !== width) {
    throw new Error(`the decoder returned logits of shape [${t.dims}], expected [1, 1, ${height / 4}, ${width / 4}]`);
  }
  if (!(data instanceof Float32Array)) throw new Error(`the decoder returned ${t.type} logits, expected float32`);
  // A fresh, unshared buffer that can be transferred to the page.
  if (!(data.buffer instanceof ArrayBuffer) || data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength) {
    data = data.slice();
  }
  return { margin: data, h4, w4, ms };
}

/** A click on the current pyramid, on the session current when its turn comes. */
function run(clickMap, height, width) {
  return serialised(async () => {
    const sess = session;
    return { ...(await runOn(sess, clickMap, height, width)), fixed: sess !== dynamicSession };
  });
}

/**
 * The fixed-shape session entry of an h x w canvas, made on first use (the last MAX_FIXED are
 * kept): {key, promise (resolves to the session, or null if it could not be built), session}.
 */
function fixedEntry(h, w) {
  const key = `${h}x${w}`;
  let e = fixedSessions.get(key);
  if (e) {
    fixedSessions.delete(key); // most recently used last
    fixedSessions.set(key, e);
    return e;
  }
  e = { key, session: null, promise: null };
  const opts = { ...sessionOptions, freeDimensionOverrides: dimOverrides(dimParams, h, w) };
  e.promise = ort.InferenceSession.create(modelBytes, opts).then(
    (s) => (e.session = s),
    (err) => {
      fixedSessions.delete(key);
      console.warn(`decoder: no fixed-shape session for ${key} (${err?.message ?? err}); using the dynamic one`);
      return null;
    },
  );
  fixedSessions.set(key, e);
  for (const [k, old] of fixedSessions) {
    if (fixedSessions.size <= MAX_FIXED) break;
    fixedSessions.delete(k);
    old.promise.then((s) => (s === null ? null : s === session ? retired.add(s) : s.release?.()));
  }
  return e;
}

async function prepare({ height, width }) {
  if (!dynamicSession) throw new Error("the decoder is not loaded yet");
  if (!dimParams) return { sessionMs: 0, fixed: false };
  const t0 = performance.now();
  const s = await fixedEntry(height, width).promise;
  return { sessionMs: performance.now() - t0, fixed: s !== null };
}

/** Use `next` for the clicks from now on (after a warm-up run on it if `warmFirst`); release
 * retired sessions. */
async function switchTo(next, key, warmFirst) {
  if (warmFirst) await serialised(() => runOn(next, new Uint8Array(canvasSize[0] * canvasSize[1]).fill(2), ...canvasSize));
  if (key !== canvasSize.join("x")) return; // another pyramid came meanwhile
  session = next;
  for (const s of retired) {
    if (s === session) continue;
    retired.delete(s);
    s.release?.();
  }
}

async function setPyramid({ levels, warmup = true }) {
  if (!dynamicSession) throw new Error("the decoder is not loaded yet");
  if (levels.length !== names.features.length) {
    throw new Error(`the decoder takes ${names.features.length} feature levels, got ${levels.length}`);
  }
  const [, h, w] = levels[0].shape;
  const stride = levels[0].stride ?? 4; // the first level shipped: F1 (stride 4) or F2 (stride 8)
  await runChain; // the previous pyramid's clicks are done with the feeds
  for (const t of Object.values(featureFeeds ?? {})) t.dispose?.();
  featureFeeds = {};
  levels.forEach((lv, i) => {
    featureFeeds[names.features[i]] = new ort.Tensor("float32", lv.data, [1, ...lv.shape]);
  });
  canvasSize = [h * stride, w * stride];
  const key = canvasSize.join("x");
  // A fixed-shape session that is ready is used at once; one still to be built is built now
  // while the dynamic session answers the first clicks, and takes over when it is ready.
  const entry = dimParams ? fixedEntry(h * stride, w * stride) : null;
  const fixed = entry?.session ?? null;
  await switchTo(fixed ?? dynamicSession, key, false);
  if (entry && !fixed) entry.promise.then((s) => s && switchTo(s, key, true)).catch(() => {});
  const { warmupMs } = warmup ? await warm() : { warmupMs: null };
  return { warmupMs, sessionMs: 0, fixed: fixed !== null };
}

/** One throw-away run on a fresh click map, so that the first real click is not the slow one. */
async function warm() {
  const [h, w] = canvasSize;
  const fresh = new Uint8Array(h * w).fill(2);
  const t0 = performance.now();
  await run(fresh, h, w);
  return { warmupMs: performance.now() - t0 };
}

async function handle(msg) {
  switch (msg.type) {
    case "init":
      return { result: await init(msg) };
    case "prepare":
      return { result: await prepare(msg) };
    case "setPyramid":
      return { result: await setPyramid(msg) };
    case "predict": {
      if (!featureFeeds) throw new Error("no pyramid set");
      const r = await run(msg.clickMap, msg.height, msg.width);
      return { result: r, transfer: [r.margin.buffer] };
    }
    default:
      throw new Error(`unknown message type ${msg.type}`);
  }
}

self.onmessage = async (e) => {
  const { id } = e.data;
  try {
    const { result, transfer = [] } = await handle(e.data);
    self.postMessage({ id, ok: true, result }, transfer);
  } catch (err) {
    self.postMessage({ id, ok: false, error: String(err?.message ?? err) });
  }
};
