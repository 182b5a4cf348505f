/**
 * Zoom and pan of the annotator's image: the map between screen pixels (CSS pixels of the
 * stage, origin top-left) and image pixels.
 *
 *   screen = image * scale + offset          image = (screen - offset) / scale
 *
 * `fit()` shows the whole image centred; `zoomAt()` zooms about a screen point (the point
 * under the cursor stays put); `panBy()` moves the image. Pure logic, tested with node --test.
 */

export class Viewport {
  constructor({ minScale = 0.05, maxScale = 32 } = {}) {
    this.minScale = minScale;
    this.maxScale = maxScale;
    this.scale = 1;
    this.offsetX = 0;
    this.offsetY = 0;
    this.viewW = 1;
    this.viewH = 1;
    this.imageW = 1;
    this.imageH = 1;
  }

  /** Set the stage size (CSS pixels) and the image size; keeps the current zoom. */
  resize(viewW, viewH, imageW = this.imageW, imageH = this.imageH) {
    this.viewW = Math.max(1, viewW);
    this.viewH = Math.max(1, viewH);
    this.imageW = imageW;
    this.imageH = imageH;
  }

  /** The scale at which the whole image fits the stage (with a small margin). */
  fitScale(margin = 8) {
    return Math.min((this.viewW - 2 * margin) / this.imageW, (this.viewH - 2 * margin) / this.imageH);
  }

  /** Show the whole image, centred. */
  fit(margin = 8) {
    this.scale = Math.max(this.minScale, Math.min(this.maxScale, this.fitScale(margin)));
    this.offsetX = (this.viewW - this.imageW * this.scale) / 2;
    this.offsetY = (this.viewH - this.imageH * this.scale) / 2;
  }

  /** Image coordinates (fractional) of a screen point. */
  toImage(sx, sy) {
    return [(sx - this.offsetX) / this.scale, (sy - this.offsetY) / this.scale];
  }

  /** Screen coordinates of an image point. */
  toScreen(ix, iy) {
    return [ix * this.scale + this.offsetX, iy * this.scale + this.offsetY];
  }

  /** The image pixel (integers) under a screen point, or null outside the image. */
  pixelAt(sx, sy) {
    const [ix, iy] = this.toImage(sx, sy);
    const x = Math.floor(ix);
    const y = Math.floor(iy);
    if (x < 0 || y < 0 || x >= this.imageW || y >= this.imageH) return null;
    return [x, y];
  }

  /** Multiply the scale by `factor` (clamped), keeping the image point under (sx, sy) fixed. */
  zoomAt(sx, sy, factor) {
    const [ix, iy] = this.toImage(sx, sy);
    this.scale = Math.max(this.minScale, Math.min(this.maxScale, this.scale * factor));
    this.offsetX = sx - ix * this.scale;
    this.offsetY = sy - iy * this.scale;
  }

  panBy(dx, dy) {
    this.offsetX += dx;
    this.offsetY += dy;
  }
}
