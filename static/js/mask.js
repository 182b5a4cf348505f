/**
 * From the decoder's margin to masks, and drawing a mask cheaply.
 *
 * The decoder gives the foreground-minus-background margin at stride 4 of the canvas. As in
 * model_export/predictor.py:
 *
 *   canvas prediction = bilinear upsample of the margin to the canvas (half-pixel centres,
 *                       PyTorch F.interpolate(mode="bilinear", align_corners=False)) > 0
 *                       -> updates the click map (clickmap.js updateFromPrediction);
 *   image mask        = that upsampled margin cropped to the image's resized extent, resized
 *                       bilinearly to the image size (cv2.resize INTER_LINEAR, the same
 *                       half-pixel rule) > 0.
 *
 * The interpolation is computed in double precision and stored as float32, so values agree
 * with PyTorch/OpenCV to float32 rounding (about 1e-7 relative), not bit for bit; only
 * pixels whose margin is within that of 0 can fall on the other side of the threshold.
 *
 * Pure functions (no DOM) except MaskRenderer, so that Node's test runner can check them.
 */

/**
 * Source taps of a half-pixel-centred linear resize along one axis: output i reads inputs
 * i0[i] and i1[i] with weights w0[i] and w1[i]. src = (i + 0.5) * in / out - 0.5, clamped
 * at 0 below; at the last input both taps are the same pixel (edge replicate).
 * @returns {{i0: Int32Array, i1: Int32Array, w0: Float64Array, w1: Float64Array}}
 */
export function linearTaps(inSize, outSize) {
  if (!Number.isInteger(inSize) || !Number.isInteger(outSize) || inSize <= 0 || outSize <= 0) {
    throw new RangeError(`resize sizes must be positive integers, got ${inSize} -> ${outSize}`);
  }
  const i0 = new Int32Array(outSize);
  const i1 = new Int32Array(outSize);
  const w0 = new Float64Array(outSize);
  const w1 = new Float64Array(outSize);
  const scale = inSize / outSize;
  for (let i = 0; i < outSize; i++) {
    let src = (i + 0.5) * scale - 0.5;
    if (src < 0) src = 0;
    const lo = Math.min(Math.floor(src), inSize - 1);
    const lam = Math.min(Math.max(src - lo, 0), 1);
    i0[i] = lo;
    i1[i] = lo < inSize - 1 ? lo + 1 : lo;
    w0[i] = 1 - lam;
    w1[i] = lam;
  }
  return { i0, i1, w0, w1 };
}

/**
 * Bilinear resize with half-pixel centres (align_corners false, no antialiasing) of an
 * inH x inW window of a row-major array.
 * @param {ArrayLike<number>} src
 * @param {number} inH
 * @param {number} inW
 * @param {number} outH
 * @param {number} outW
 * @param {{stride?: number, out?: Float32Array}} [opts] stride: the row length of `src`
 *   (default inW; a larger one reads the top-left inH x inW window, i.e. a crop)
 * @returns {Float32Array} outH * outW values, row-major
 */
export function resizeBilinear(src, inH, inW, outH, outW, opts = {}) {
  const stride = opts.stride ?? inW;
  if (stride < inW || src.length < (inH - 1) * stride + inW) {
    throw new RangeError(`source of ${src.length} values is too small for ${inH}x${inW} (row stride ${stride})`);
  }
  const out = opts.out ?? new Float32Array(outH * outW);
  if (out.length !== outH * outW) throw new RangeError(`out has ${out.length} values, need ${outH * outW}`);
  const ty = linearTaps(inH, outH);
  const tx = linearTaps(inW, outW);
  const { i0: x0, i1: x1, w0: b0, w1: b1 } = tx;
  for (let y = 0; y < outH; y++) {
    const r0 = ty.i0[y] * stride;
    const r1 = ty.i1[y] * stride;
    const a0 = ty.w0[y];
    const a1 = ty.w1[y];
    const row = y * outW;
    for (let x = 0; x < outW; x++) {
      const c0 = x0[x];
      const c1 = x1[x];
      const t0 = src[r0 + c0] * b0[x] + src[r0 + c1] * b1[x];
      const t1 = src[r1 + c0] * b0[x] + src[r1 + c1] * b1[x];
      out[row + x] = t0 * a0 + t1 * a1;
    }
  }
  return out;
}

/** 1 where value > 0, else 0. */
export function threshold(values) {
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = values[i] > 0 ? 1 : 0;
  return out;
}

/**
 * The stride-4 margin upsampled to the canvas, and the canvas prediction.
 * @param {Float32Array} margin h4 * w4 values
 * @returns {{upsampled: Float32Array, prediction: Uint8Array}} both canvasH * canvasW
 */
export function canvasPrediction(margin, h4, w4, canvasH, canvasW) {
  if (margin.length !== h4 * w4) throw new RangeError(`margin has ${margin.length} values, not ${h4}x${w4}`);
  const upsampled = resizeBilinear(margin, h4, w4, canvasH, canvasW);
  return { upsampled, prediction: threshold(upsampled) };
}

/**
 * The mask on the image (predictor.py _to_image): the upsampled canvas margin cropped to
 * the resized extent, resized to the image size if that differs, > 0.
 * @param {Float32Array} upsampled canvasH * canvasW (canvasPrediction().upsampled)
 * @param {{imageH: number, imageW: number, resizedH: number, resizedW: number, canvasH: number, canvasW: number}} geom
 * @returns {Uint8Array} imageH * imageW, 1 = foreground
 */
export function imageMask(upsampled, geom) {
  const { imageH, imageW, resizedH, resizedW, canvasW } = geom;
  if (resizedH === imageH && resizedW === imageW) {
    const out = new Uint8Array(imageH * imageW);
    for (let y = 0; y < imageH; y++) {
      const r = y * canvasW;
      for (let x = 0; x < imageW; x++) out[y * imageW + x] = upsampled[r + x] > 0 ? 1 : 0;
    }
    return out;
  }
  return threshold(resizeBilinear(upsampled, resizedH, resizedW, imageH, imageW, { stride: canvasW }));
}

/**
 * Draws a canvas prediction over an image on a 2D canvas, at a cost independent of the
 * image size: the resized extent of the prediction (at most the model canvas, e.g. 512x512)
 * is written once into a small ImageData and scaled by drawImage with smoothing off.
 */
export class MaskRenderer {
  /** @param {{fill?: [number, number, number, number]}} [opts] fill RGBA (0..255) of foreground */
  constructor(opts = {}) {
    this.fill = opts.fill ?? [30, 144, 255, 115];
    this.small = null;
    this.smallCtx = null;
  }

  /** The prediction's resized extent as RGBA pixels in an (offscreen) canvas. */
  _paint(prediction, geom) {
    const { resizedH: h, resizedW: w, canvasW } = geom;
    if (!this.small || this.small.width !== w || this.small.height !== h) {
      this.small = typeof OffscreenCanvas !== "undefined" ? new OffscreenCanvas(w, h) : Object.assign(document.createElement("canvas"), { width: w, height: h });
      this.smallCtx = this.small.getContext("2d");
      this.image = this.smallCtx.createImageData(w, h);
    }
    const px = new Uint32Array(this.image.data.buffer);
    const [r, g, b, a] = this.fill;
    const on = ((a << 24) | (b << 16) | (g << 8) | r) >>> 0; // little-endian RGBA
    for (let y = 0; y < h; y++) {
      const src = y * canvasW;
      const dst = y * w;
      for (let x = 0; x < w; x++) px[dst + x] = prediction[src + x] ? on : 0;
    }
    this.smallCtx.putImageData(this.image, 0, 0);
  }

  /**
   * Draw `prediction` (canvasH * canvasW, 0/1) over the whole of ctx's canvas, which shows
   * the image stretched to its size.
   */
  draw(ctx, prediction, geom) {
    this._paint(prediction, geom);
    ctx.save();
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(this.small, 0, 0, geom.resizedW, geom.resizedH, 0, 0, ctx.canvas.width, ctx.canvas.height);
    ctx.restore();
  }
}

/**
 * The outline of a mask: foreground pixels with a 4-neighbour that is background or outside.
 * @param {ArrayLike<number>} mask h*w row-major 0/1
 * @returns {Uint8Array} h*w 0/1
 */
export function maskOutline(mask, h, w) {
  const out = new Uint8Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!mask[i]) continue;
      if (x === 0 || y === 0 || x === w - 1 || y === h - 1 || !mask[i - 1] || !mask[i + 1] || !mask[i - w] || !mask[i + w]) out[i] = 1;
    }
  }
  return out;
}
