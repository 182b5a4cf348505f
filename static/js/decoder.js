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
   * @param {{name: string, stride: number, shape: number[], data: Float32Array}[]} levels finest first
   */
  async setPyramid(levels, { warmup = true } = {}) {
    const buffers = [...new Set(levels.map((l) => l.data.buffer))];
    const msg = { type: "setPyramid", warmup, levels: levels.map((l) => ({ name: l.name, stride: l.stride, shape: l.shape, data: l.data })) };
    return this._call(msg, buffers);
  }

  /**
   * Build the decoder session for a canvas size ahead of time (e.g. while the next image is
   * prefetched), so that its setPyramid does not wait for it. Resolves to {sessionMs, fixed}.
   */
  async prepare(height, width) {
    return this._call({ type: "prepare", height, width });
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

/** How long a decoder worker may take to start before it is restarted single-threaded. */
export const START_TIMEOUT_MS = 45_000;

async function startDecoder(url, manifest, opts) {
  const worker = new Worker(new URL("./decoder_worker.js", import.meta.url), { type: "module", name: "decoder" });
  const decoder = new Decoder(worker);
  let timer = null;
  const timeoutMs = opts.startTimeoutMs ?? START_TIMEOUT_MS;
  try {
    const base = new URL(url, self.location.href);
    const split = opts.split !== false && manifest.split ? manifest.split : null;
    const started = decoder._call({
      type: "init",
      // split decoder: its two graphs lie beside decoder.onnx (same folder, same route)
      modelUrl: split ? new URL(split.click.file, base).href : base.href,
      contextUrl: split ? new URL(split.context.file, base).href : null,
      names: {
        features: manifest.features.map((f) => f.name),
        strides: manifest.features.map((f) => f.stride),
        channels: manifest.features.map((f) => f.channels),
        clickMap: manifest.clickMap,
        output: manifest.output,
      },
      numThreads: opts.numThreads,
      preferWebGPU: opts.preferWebGPU ?? true,
      dimParams: manifest.dimParams ?? null,
      staticShapes: opts.staticShapes ?? true,
    });
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new DecoderStartTimeout(timeoutMs)), timeoutMs);
    });
    decoder.info = await Promise.race([started, timeout]);
  } catch (e) {
    decoder.terminate();
    throw e;
  } finally {
    clearTimeout(timer);
  }
  return decoder;
}

export class DecoderStartTimeout extends DecoderError {
  constructor(ms) {
    super(`the decoder did not start within ${Math.round(ms / 1000)} s`);
    this.name = "DecoderStartTimeout";
  }
}

/**
 * Start a worker and load the decoder into it.
 *
 * A worker that has not started after `startTimeoutMs` (default START_TIMEOUT_MS) is stopped
 * and started again with one WebAssembly thread and no WebGPU: a browser that cannot bring up
 * onnxruntime-web's thread pool (seen in Firefox ESR on a loaded machine) still gets a working
 * decoder. `info.fallback` then says so, for the page to show.
 * @param {string} url of decoder.onnx
 * @param {{features: {name: string, stride: number, channels: number}[], clickMap: string, output: string,
 *   dimParams?: object[]|null, split?: object|null}} manifest normalised (manifest.js)
 * @param {{numThreads?: number, preferWebGPU?: boolean, staticShapes?: boolean, split?: boolean, startTimeoutMs?: number}} [opts]
 *   staticShapes false: one dynamic-shape session for every canvas (default: a fixed-shape session
 *   per canvas size when the graph's dimensions can be known; see decoder_worker.js);
 *   split false: run decoder.onnx per click even when the manifest offers the split decoder
 *   (its context graph once per image + its click graph per click; the default when offered)
 * @returns {Promise<Decoder>} with `info`: {backend, numThreads, crossOriginIsolated, loadMs, fallback?, ...}
 */
export async function loadDecoder(url, manifest, opts = {}) {
  try {
    return await startDecoder(url, manifest, opts);
  } catch (e) {
    if (!(e instanceof DecoderStartTimeout) || opts.numThreads === 1) throw e;
    console.warn(`${e.message}; starting it again with one thread`);
    const decoder = await startDecoder(url, manifest, { ...opts, numThreads: 1, preferWebGPU: false, startTimeoutMs: undefined });
    decoder.info.fallback = `${e.message} with threads; it runs on one thread (slower clicks)`;
    return decoder;
  }
}
