/**
 * onnxruntime-web set-up shared by the workers that run models (decoder_worker.js and the
 * latency benchmark's bench/page/bench_worker.js), so that every model runs under the same
 * configuration:
 *
 * - onnxruntime-web from our own origin (/vendor/ort/): the WebAssembly build (ort.wasm.min.mjs)
 *   normally, the build with WebGPU (ort.all.min.mjs) when the browser offers a WebGPU adapter;
 * - WebAssembly threads: the count asked for, else min(4, hardwareConcurrency) when the page is
 *   cross-origin isolated (SharedArrayBuffer), else 1; no proxy worker (we are a worker);
 * - a WebGPU session first when there is an adapter, WebAssembly (graph optimisation "all") if
 *   that cannot be created.
 */

const ORT_BASE = new URL("/vendor/ort/", self.location.href).href;

export function defaultThreads() {
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

/**
 * Import onnxruntime-web and configure it.
 * @returns {Promise<{ort: object, webgpu: boolean}>} webgpu: an adapter exists (ort.all.min.mjs loaded)
 */
export async function loadOrt({ numThreads, preferWebGPU = true } = {}) {
  const adapter = preferWebGPU ? await webgpuAdapter() : null;
  const ort = await import(ORT_BASE + (adapter ? "ort.all.min.mjs" : "ort.wasm.min.mjs"));
  ort.env.wasm.wasmPaths = ORT_BASE;
  ort.env.wasm.numThreads = Number.isInteger(numThreads) && numThreads > 0 ? numThreads : defaultThreads();
  ort.env.wasm.proxy = false; // we are the worker already
  return { ort, webgpu: adapter !== null };
}

/**
 * Create a session for model `bytes`: WebGPU first when `webgpu`, else (or if it fails) wasm.
 * @returns {Promise<{session: object, backend: "webgpu"|"wasm", sessionOptions: object, webgpuError: string|null}>}
 *   sessionOptions: what the session was made with (to make more sessions of the same kind)
 */
export async function createSession(ort, bytes, webgpu) {
  let webgpuError = null;
  if (webgpu) {
    const sessionOptions = { executionProviders: ["webgpu"] };
    try {
      return { session: await ort.InferenceSession.create(bytes, sessionOptions), backend: "webgpu", sessionOptions, webgpuError };
    } catch (e) {
      webgpuError = String(e?.message ?? e);
    }
  }
  const sessionOptions = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
  return { session: await ort.InferenceSession.create(bytes, sessionOptions), backend: "wasm", sessionOptions, webgpuError };
}
