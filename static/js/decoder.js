/**
 * Main-thread API of the per-click decoder, which runs in a Web Worker (decoder_worker.js).
 *
 *   const decoder = await loadDecoder("/api/playground/decoder.onnx", manifest);   // manifest.js form
 *   await decoder.setPyramid(levels);           // once per image: pyramid.js parsePyramid().levels
 *   const {margin, h4, w4, ms} = await decoder.predict(clickMap);   // per click
 *
 * `ms` is the worker's session.run time, `roundTripMs` adds the messages to and from the
 * worker. The page's click map is copied, never transferred, so the caller keeps it.
 */

export class DecoderError extends Error {
  constructor(message) {
    super(message);
    this.name = "DecoderError";
  }
}

export class Decoder {
  constructor(worker) {
    this.worker = worker;
    this.nextId = 1;
    this.pending = new Map();
    this.info = null;
    worker.onmessage = (e) => {
      const { id, ok, result, error } = e.data;
      const p = this.pending.get(id);
      if (!p) return;
      this.pending.delete(id);
      if (ok) p.resolve(result);
      else p.reject(new DecoderError(error));
    };
    worker.onerror = (e) => {
      e.preventDefault?.();
      this._failAll(`the decoder worker failed: ${e.message ?? "script error"}`);
    };
    worker.onmessageerror = () => this._failAll("a message from the decoder worker could not be read");
  }

  _failAll(message) {
    for (const p of this.pending.values()) p.reject(new DecoderError(message));
    this.pending.clear();
  }

  _call(msg, transfer = []) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...msg, id }, transfer);
    });
  }

  /**
   * Send an image's pyramid to the worker once; the arrays' buffers are transferred (they
   * become unusable here). Resolves when the worker is ready to predict (after a warm-up run).
   * @param {{name: string, shape: number[], data: Float32Array}[]} levels F1 first
   */
  async setPyramid(levels, { warmup = true } = {}) {
    const buffers = [...new Set(levels.map((l) => l.data.buffer))];
    const msg = { type: "setPyramid", warmup, levels: levels.map((l) => ({ name: l.name, shape: l.shape, data: l.data })) };
    return this._call(msg, buffers);
  }

  /**
   * Decode one click map.
   * @param {{height: number, width: number, data: Uint8Array}} clickMap the canvas click map (clickmap.js)
   * @returns {Promise<{margin: Float32Array, h4: number, w4: number, ms: number, roundTripMs: number}>}
   */
  async predict(clickMap) {
    const t0 = performance.now();
    const data = clickMap.data.slice();
    const r = await this._call({ type: "predict", clickMap: data, height: clickMap.height, width: clickMap.width }, [data.buffer]);
    r.roundTripMs = performance.now() - t0;
    return r;
  }

  terminate() {
    this._failAll("the decoder was closed");
    this.worker.terminate();
  }
}

/**
 * Start a worker and load the decoder into it.
 * @param {string} url of decoder.onnx
 * @param {{features: {name: string}[], clickMap: string, output: string}} manifest normalised (manifest.js)
 * @param {{numThreads?: number, preferWebGPU?: boolean}} [opts]
 * @returns {Promise<Decoder>} with `info`: {backend, numThreads, crossOriginIsolated, loadMs, ...}
 */
export async function loadDecoder(url, manifest, opts = {}) {
  const worker = new Worker(new URL("./decoder_worker.js", import.meta.url), { type: "module", name: "decoder" });
  const decoder = new Decoder(worker);
  try {
    decoder.info = await decoder._call({
      type: "init",
      modelUrl: new URL(url, self.location.href).href,
      names: { features: manifest.features.map((f) => f.name), clickMap: manifest.clickMap, output: manifest.output },
      numThreads: opts.numThreads,
      preferWebGPU: opts.preferWebGPU ?? true,
    });
  } catch (e) {
    decoder.terminate();
    throw e;
  }
  return decoder;
}
