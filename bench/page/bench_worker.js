/**
 * A generic onnxruntime-web worker for the latency benchmark: the models the product's
 * decoder_worker.js cannot run (SAM's prompt decoder, the decoder with int8 pyramid inputs).
 *
 * Its onnxruntime set-up is the product's (static/js/ort_session.js, also used by
 * decoder_worker.js), so that every model of the benchmark runs under the same configuration.
 *
 * Messages in ({id, type, ...}), answered by {id, ok: true, result} or {id, ok: false, error}:
 *   init            {modelUrl, numThreads?, preferWebGPU?} -> {backend, numThreads, crossOriginIsolated,
 *                   inputNames, outputNames, loadMs, webgpuError}
 *   setStatic       {tensors: [{name, type, dims, data}]} (buffers transferred): feeds kept for every run
 *   predictClickMap {name, output, clickMap: Uint8Array, height, width} -> {margin, h4, w4, ms}
 *                   (the product worker's `predict`: labels -> float32, run, read the output)
 *   run             {tensors: [{name, type, dims, data}], outputs: string[]} ->
 *                   {outputs: {name: {data, dims}}, ms}   (ms: session.run + reading the outputs)
 */

import { createSession, loadOrt } from "/static/js/ort_session.js";

let ort = null;
let session = null;
let staticFeeds = {};

async function init({ modelUrl, numThreads, preferWebGPU = true }) {
  const t0 = performance.now();
  const loaded = await loadOrt({ numThreads, preferWebGPU });
  ort = loaded.ort;
  const resp = await fetch(modelUrl);
  if (!resp.ok) throw new Error(`loading the model failed: HTTP ${resp.status} for ${modelUrl}`);
  const bytes = new Uint8Array(await resp.arrayBuffer());
  const made = await createSession(ort, bytes, loaded.webgpu);
  session = made.session;
  return {
    backend: made.backend,
    numThreads: made.backend === "wasm" ? ort.env.wasm.numThreads : null,
    crossOriginIsolated: self.crossOriginIsolated,
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    loadMs: performance.now() - t0,
    webgpuError: made.webgpuError,
  };
}

function toTensors(list) {
  const out = {};
  for (const t of list) out[t.name] = new ort.Tensor(t.type, t.data, t.dims);
  return out;
}

async function readOutput(t) {
  let data = t.location === "cpu" || t.location === undefined ? t.data : await t.getData(true);
  if (!(data.buffer instanceof ArrayBuffer) || data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength) {
    data = data.slice();
  }
  return data;
}

function setStatic({ tensors }) {
  if (!session) throw new Error("the model is not loaded yet");
  for (const t of Object.values(staticFeeds)) t.dispose?.();
  staticFeeds = toTensors(tensors);
  return {};
}

async function predictClickMap({ name, output, clickMap, height, width }) {
  const cm = new Float32Array(height * width);
  for (let i = 0; i < cm.length; i++) cm[i] = clickMap[i];
  const feeds = { ...staticFeeds, [name]: new ort.Tensor("float32", cm, [1, 1, height, width]) };
  const t0 = performance.now();
  const out = await session.run(feeds, [output]);
  const t = out[output];
  const data = await readOutput(t);
  const ms = performance.now() - t0;
  const [, , h4, w4] = t.dims;
  return { margin: data, h4, w4, ms };
}

async function run({ tensors, outputs }) {
  const feeds = { ...staticFeeds, ...toTensors(tensors) };
  const t0 = performance.now();
  const out = await session.run(feeds, outputs);
  const result = {};
  for (const n of outputs) result[n] = { data: await readOutput(out[n]), dims: out[n].dims };
  const ms = performance.now() - t0;
  return { outputs: result, ms };
}

async function handle(msg) {
  switch (msg.type) {
    case "init":
      return { result: await init(msg) };
    case "setStatic":
      return { result: setStatic(msg) };
    case "predictClickMap": {
      const r = await predictClickMap(msg);
      return { result: r, transfer: [r.margin.buffer] };
    }
    case "run": {
      const r = await run(msg);
      return { result: r, transfer: Object.values(r.outputs).map((o) => o.data.buffer) };
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
