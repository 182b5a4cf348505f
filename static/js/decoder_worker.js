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
 * Split decoder (the manifest's "split", `contextUrl` at init): the part of the decoder that
 * does not depend on the clicks (F1 from F2, the keys and values every I-MSA stage's first
 * block computes from its pyramid level) is its own graph, decoder.context.onnx, run once per
 * image in setPyramid; each click runs only decoder.click.onnx, fed the context's outputs by
 * name (20-27% less time per click in Chromium, same margins up to float rounding). The fixed-shape sessions
 * of the click graph get every symbolic dimension from the shapes of its feeds
 * (session.inputMetadata), the key/value lengths included.
 *
 * Messages in ({id, type, ...}), each answered by {id, ok: true, result} or {id, ok: false, error}:
 *   init       {modelUrl, names: {features: string[], strides: number[], channels: number[], clickMap, output}, numThreads?, preferWebGPU?,
 *              dimParams?: [{name, axis, divisor}], staticShapes?: boolean (default true),
 *              contextUrl?: string (split decoder: modelUrl is then decoder.click.onnx)}
 *              -> {backend, numThreads, crossOriginIsolated, inputNames, outputNames, loadMs, webgpuError,
 *                  split: boolean}
 *   prepare    {height, width} -> {sessionMs, fixed}: build the session for that canvas now
 *   setPyramid {levels: [{name, stride, shape: [C, H, W], data: Float32Array}]} (buffers transferred),
 *              warmup?: boolean -> {warmupMs, sessionMs, fixed, contextMs (split decoder, else null)}
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
let contextSession = null; // split decoder: decoder.context.onnx (dynamic shapes), else null
let featureFeeds = null; // the click graph's inputs but the click map: pyramid levels and/or context outputs
let canvasSize = null;
let staticShapesOn = true;
const feedDims = new Map(); // "HxW" -> {input name: dims} of the click graph's feeds for that canvas

async function fetchBytes(url, what) {
  const resp = await http(url);
  if (!resp.ok) throw new Error(`loading the ${what} failed: HTTP ${resp.status} for ${url}`);
  return new Uint8Array(await resp.arrayBuffer());
}

function missingNames(wanted, have) {
  return wanted.filter((x) => !have.includes(x));
}

async function init({ modelUrl, names: n, numThreads, preferWebGPU = true, dimParams: dims = null, staticShapes = true, contextUrl = null }) {
  const t0 = performance.now();
  const loaded = await loadOrt({ numThreads, preferWebGPU });
  ort = loaded.ort;
  const [bytes, contextBytes] = await Promise.all([
    fetchBytes(modelUrl, "decoder"),
    contextUrl ? fetchBytes(contextUrl, "decoder's context graph") : null,
  ]);
  const made = await createSession(ort, bytes, loaded.webgpu);
  const { backend, webgpuError } = made;
  ({ session, sessionOptions } = made);
  dynamicSession = session;
  modelBytes = bytes;
  staticShapesOn = staticShapes;
  dimParams = staticShapes && Array.isArray(dims) && dims.length ? dims : null;
  let featureInputs = n.features;
  if (contextBytes) {
    contextSession = await ort.InferenceSession.create(contextBytes, sessionOptions);
    const missing = missingNames(n.features, contextSession.inputNames);
    if (missing.length) throw new Error(`the decoder's context graph takes ${contextSession.inputNames.join(", ")}, not ${n.features.join(", ")}`);
    featureInputs = [];
    const known = [...contextSession.outputNames, ...n.features, n.clickMap];
    const unknown = session.inputNames.filter((x) => !known.includes(x));
    if (unknown.length) throw new Error(`the decoder's click graph needs inputs nothing provides: ${unknown.join(", ")}`);
  }
  const missing = missingNames([...featureInputs, n.clickMap], session.inputNames);
  if (missing.length || !session.outputNames.includes(n.output)) {
    throw new Error(
      `the decoder's inputs/outputs (${session.inputNames.join(", ")} -> ${session.outputNames.join(", ")}) ` +
        `do not match its manifest (missing: ${[...missing, ...(session.outputNames.includes(n.output) ? [] : [n.output])].join(", ")})`,
    );
  }
  names = n;
  return {
    backend,
    split: contextSession !== null,
    fixedShapes: fixedShapesPossible(),
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

/** The click graph's input metadata when every input describes its shape, else null. */
function inputShapes() {
  const meta = dynamicSession.inputMetadata;
  return Array.isArray(meta) && meta.length > 0 && meta.every((m) => Array.isArray(m.shape)) ? meta : null;
}

/** True when the click graph's inputs describe their shapes (then fixed sessions take their
 * dimensions from the feeds), or the manifest names the decoder's dimensions. */
function fixedShapesPossible() {
  return staticShapesOn && (inputShapes() !== null || (dimParams !== null && !contextSession));
}

/**
 * freeDimensionOverrides fixing every symbolic dimension of the click graph for an h x w
 * canvas: read off the feeds' dims (by input name, from session.inputMetadata), else from the
 * manifest's dimParams. Null when they cannot all be known.
 */
function overridesFor(h, w) {
  const dims = feedDims.get(`${h}x${w}`);
  const meta = inputShapes();
  if (dims && meta) {
    const out = {};
    for (const m of meta) {
      const d = m.name === names.clickMap ? [1, 1, h, w] : dims[m.name];
      if (!d) return null;
      m.shape.forEach((s, axis) => {
        if (typeof s !== "string") return;
        if (out[s] !== undefined && out[s] !== d[axis]) throw new Error(`dimension ${s} is both ${out[s]} and ${d[axis]}`);
        out[s] = d[axis];
      });
    }
    return out;
  }
  return dimParams && !contextSession ? dimOverrides(dimParams, h, w) : null;
}

/**
 * The fixed-shape session entry of an h x w canvas, made on first use (the last MAX_FIXED are
 * kept): {key, promise (resolves to the session, or null if it could not be built), session}.
 * Null when the canvas' dimensions are not known yet (split decoder before its context ran).
 */
function fixedEntry(h, w) {
  const key = `${h}x${w}`;
  let e = fixedSessions.get(key);
  if (e) {
    fixedSessions.delete(key); // most recently used last
    fixedSessions.set(key, e);
    return e;
  }
  const overrides = overridesFor(h, w);
  if (!overrides) return null;
  e = { key, session: null, promise: null };
  const opts = { ...sessionOptions, freeDimensionOverrides: overrides };
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

/** The split decoder's context for pyramid `levels` ({name, stride, shape, data}): the click
 * graph's feeds that come from it, by name (ort Tensors), and how long it took. */
async function runContext(levels) {
  const feeds = levelTensors(levels);
  const t0 = performance.now();
  const out = await contextSession.run(feeds);
  for (const t of Object.values(out)) {
    if (t.location !== undefined && t.location !== "cpu") throw new Error(`the context graph left ${t.location} tensors`);
  }
  return { tensors: { ...feeds, ...out }, ms: performance.now() - t0 };
}

/** The pyramid levels as the graph inputs named in the manifest (ort Tensors, batch 1). */
function levelTensors(levels) {
  const out = {};
  levels.forEach((lv, i) => {
    out[names.features[i]] = new ort.Tensor("float32", lv.data, [1, ...lv.shape]);
  });
  return out;
}

/** Zero levels of the pyramid for an h x w canvas, as the click graph's manifest describes them. */
function zeroLevels(h, w) {
  return names.strides.map((stride, i) => ({
    shape: [names.channels[i], h / stride, w / stride],
    data: new Float32Array(names.channels[i] * (h / stride) * (w / stride)),
  }));
}

/** Remember the dims of the click graph's feeds for a canvas (what its fixed session is made for). */
function noteFeedDims(h, w, tensors) {
  const dims = {};
  for (const [k, t] of Object.entries(tensors)) dims[k] = t.dims;
  feedDims.set(`${h}x${w}`, dims);
}

async function prepare({ height, width }) {
  if (!dynamicSession) throw new Error("the decoder is not loaded yet");
  if (!fixedShapesPossible()) return { sessionMs: 0, fixed: false };
  const t0 = performance.now();
  if (contextSession && !feedDims.has(`${height}x${width}`)) {
    // learn the key/value lengths of this canvas from a context run on zeros (once per canvas size)
    const { tensors } = await serialised(() => runContext(zeroLevels(height, width)));
    noteFeedDims(height, width, tensors);
  }
  const entry = fixedEntry(height, width);
  const s = entry ? await entry.promise : null;
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
  let contextMs = null;
  if (contextSession) {
    const ctx = await serialised(() => runContext(levels));
    contextMs = ctx.ms;
    for (const name of dynamicSession.inputNames) {
      if (name !== names.clickMap) featureFeeds[name] = ctx.tensors[name];
    }
  } else {
    featureFeeds = levelTensors(levels);
  }
  canvasSize = [h * stride, w * stride];
  const key = canvasSize.join("x");
  noteFeedDims(...canvasSize, featureFeeds);
  // A fixed-shape session that is ready is used at once; one still to be built is built now
  // while the dynamic session answers the first clicks, and takes over when it is ready.
  const entry = fixedShapesPossible() ? fixedEntry(...canvasSize) : null;
  const fixed = entry?.session ?? null;
  await switchTo(fixed ?? dynamicSession, key, false);
  if (entry && !fixed) entry.promise.then((s) => s && switchTo(s, key, true)).catch(() => {});
  const { warmupMs } = warmup ? await warm() : { warmupMs: null };
  return { warmupMs, sessionMs: 0, fixed: fixed !== null, contextMs };
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
