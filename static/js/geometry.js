/**
 * Where an image sits on a model's canvas, browser side.
 *
 * Twin of model_export/geometry.py, checked against the shared vectors in
 * tests/vectors/clickmap.json. The canvas is the image resized by `scale` (1 for a model
 * that works at the native size, longest side -> longestSide otherwise), padded at the
 * bottom and right to a multiple of 32. The click map, the features and the logits all
 * live on the canvas.
 *
 * The arithmetic is written in the same order as the Python so that both give the same
 * IEEE doubles, and rounding is Python's round(): half to even (roundHalfEven(2.5) === 2,
 * where Math.round(2.5) === 3).
 */

export const STRIDE = 32;

/**
 * Python's round() for a finite number: to the nearest integer, ties to the even one.
 * @param {number} v
 * @returns {number}
 */
export function roundHalfEven(v) {
  const f = Math.floor(v);
  const d = v - f; // exact for doubles
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

function ceilTo(v, m) {
  return Math.ceil(v / m) * m;
}

/**
 * Geometry of an h x w image on the canvas; longestSide null/undefined keeps the image size.
 * @param {number} h
 * @param {number} w
 * @param {number | null} [longestSide]
 * @returns {{imageH: number, imageW: number, scale: number, resizedH: number,
 *            resizedW: number, canvasH: number, canvasW: number}}
 */
export function canvasGeometry(h, w, longestSide = null) {
  if (!Number.isInteger(h) || !Number.isInteger(w) || h <= 0 || w <= 0) {
    throw new RangeError(`image size must be positive integers, got ${h}x${w}`);
  }
  const native = longestSide === null || longestSide === undefined;
  if (!native && !(Number.isInteger(longestSide) && longestSide > 0)) {
    throw new RangeError(`longestSide must be a positive integer or null, got ${longestSide}`);
  }
  const scale = native ? 1.0 : longestSide / Math.max(h, w);
  const resizedH = native ? h : Math.max(1, roundHalfEven(h * scale));
  const resizedW = native ? w : Math.max(1, roundHalfEven(w * scale));
  return {
    imageH: h,
    imageW: w,
    scale,
    resizedH,
    resizedW,
    canvasH: ceilTo(resizedH, STRIDE),
    canvasW: ceilTo(resizedW, STRIDE),
  };
}

/**
 * Map an image pixel (row y, column x; fractions allowed) to the canvas pixel that holds
 * its centre, clamped to the resized image.
 * @returns {[number, number]} [canvas row, canvas column]
 */
export function imageToCanvas(geom, y, x) {
  const cy = Math.floor(((y + 0.5) * geom.resizedH) / geom.imageH);
  const cx = Math.floor(((x + 0.5) * geom.resizedW) / geom.imageW);
  return [
    Math.min(Math.max(cy, 0), geom.resizedH - 1),
    Math.min(Math.max(cx, 0), geom.resizedW - 1),
  ];
}
