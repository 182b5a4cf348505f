/**
 * The per-click decoder in a Web Worker (module type), on onnxruntime-web.
 *
 * onnxruntime-web is loaded from our own origin (/vendor/ort/): the WebAssembly build
 * (ort.wasm.min.mjs) normally, the build with WebGPU (ort.all.min.mjs) when the browser
 * offers a WebGPU adapter; if the WebGPU session cannot be created the worker falls back to
 * WebAssembly. WebAssembly threads: min(4, hardwareConcurrency) when the page is cross-origin
 * isolated (SharedArrayBuffer), else 1; the page may ask for another count.
 *
 * Messages in ({id, type, ...}), each answered by {id, ok: true, result} or {id, ok: false, error}:
 *   init       {modelUrl, names: {features: string[], clickMap, output}, numThreads?, preferWebGPU?}
 *              -> {backend, numThreads, crossOriginIsolated, inputNames, outputNames, loadMs, webgpuError}
 *   setPyramid {levels: [{name, shape: [C, H, W], data: Float32Array}]} (buffers transferred),
 *              warmup?: boolean -> {warmupMs}
 *   predict    {clickMap: Uint8Array (labels 0..4, transferred), height, width}
 *              -> {margin: Float32Array (transferred), h4, w4, ms}  (ms: session.run only)
 */

const ORT_BASE = new URL("/vendor/ort/", self.location.href).href;

let ort = null;
let session = null;
let names = null;
let featureFeeds = null;
let canvasSize = null;

function defaultThreads() {
  if (!self.crossOriginIsolated) return 1;
  return Math.max(1, Math.min(4, self.navigator.hardwareConcurrency || 1));
}

async function webgpuAdapter() {
  if (!self.navigator.gpu) return null;
  try {
    return await self.navigator.gpu.requestAdapter();
  } catch {
    return null;
  }
}

async function init({ modelUrl, names: n, numThreads, preferWebGPU = true }) {
  const t0 = performance.now();
  const adapter = preferWebGPU ? await webgpuAdapter() : null;
  ort = await import(ORT_BASE + (adapter ? "ort.all.min.mjs" : "ort.wasm.min.mjs"));
  ort.env.wasm.wasmPaths = ORT_BASE;
  ort.env.wasm.numThreads = Number.isInteger(numThreads) && numThreads > 0 ? numThreads : defaultThreads();
  ort.env.wasm.proxy = false; // we are the worker already
  const resp = await fetch(modelUrl);
  if (!resp.ok) throw new Error(`loading the decoder failed: HTTP ${resp.status} for ${modelUrl}`);
  const bytes = new Uint8Array(await resp.arrayBuffer());
  let backend = null;
  let webgpuError = null;
  if (adapter) {
    try {
      session = await ort.InferenceSession.create(bytes, { executionProviders: ["webgpu"] });
      backend = "webgpu";
    } catch (e) {
      webgpuError = String(e?.message ?? e);
    }
  }
  if (!session) {
    session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    backend = "wasm";
  }
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
    numThreads: backend === "wasm" ? ort.env.wasm.numThreads : null,
    crossOriginIsolated: self.crossOriginIsolated,
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    loadMs: performance.now() - t0,
    webgpuError,
  };
}

async function run(clickMap, height, width) {
  const cm = new Float32Array(height * width);
  for (let i = 0; i < cm.length; i++) cm[i] = clickMap[i];
  const feeds = { ...featureFeeds, [names.clickMap]: new ort.Tensor("float32", cm, [1, 1, height, width]) };
  const t0 = performance.now();
  const out = await session.run(feeds, [names.output]);
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

function setPyramid({ levels, warmup = true }) {
  if (!session) throw new Error("the decoder is not loaded yet");
  if (levels.length !== names.features.length) {
    throw new Error(`the decoder takes ${names.features.length} feature levels, got ${levels.length}`);
  }
  for (const t of Object.values(featureFeeds ?? {})) t.dispose?.();
  featureFeeds = {};
  levels.forEach((lv, i) => {
    featureFeeds[names.features[i]] = new ort.Tensor("float32", lv.data, [1, ...lv.shape]);
  });
  const [, h, w] = levels[0].shape;
  canvasSize = [h * 4, w * 4];
  return warmup ? warm() : { warmupMs: null };
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
