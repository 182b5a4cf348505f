/**
 * The click session of one image: the state machine behind the playground's clicks.
 *
 * Same order and rules as model_export/predictor.py's add_click: map the image pixel to the
 * canvas (geometry.js), draw the click disk into a copy of the click map (clickmap.js),
 * predict, upsample the margin to the canvas (mask.js) and update the click map from that
 * prediction. Every click pushes a new state; undo pops it (the previous click map and mask
 * come back exactly), reset returns to the fresh state. Operations are serialised: a click
 * made while the previous one is still being decoded waits for it, so each click sees the
 * click map its predecessors left.
 */

import { addClick, cloneClickMap, newClickMap, updateFromPrediction } from "./clickmap.js";
import { imageToCanvas } from "./geometry.js";
import { canvasPrediction, imageMask } from "./mask.js";

export class SessionError extends Error {
  constructor(message) {
    super(message);
    this.name = "SessionError";
  }
}

export class ClickSession {
  /**
   * @param {object} geom canvas geometry (geometry.js canvasGeometry form)
   * @param {(clickMap: {height: number, width: number, data: Uint8Array}) =>
   *   Promise<{margin: Float32Array, h4: number, w4: number, ms: number}>} predict
   *   the decoder; must not keep or modify the map it is given
   */
  constructor(geom, predict) {
    this.geom = geom;
    this.predictFn = predict;
    this.queue = Promise.resolve();
    this.history = [this._fresh()];
    this.redoStack = [];
  }

  _fresh() {
    const { canvasH, canvasW } = this.geom;
    return {
      clickMap: newClickMap(canvasH, canvasW),
      prediction: new Uint8Array(canvasH * canvasW),
      upsampled: null,
      margin: null,
      clicks: [],
      timing: null,
    };
  }

  /** Run `fn` after every operation queued before it; failures do not block later ones. */
  _enqueue(fn) {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => {});
    return run;
  }

  /** The current state: {clickMap, prediction (canvas, 0/1), margin, clicks, timing}. */
  get current() {
    return this.history[this.history.length - 1];
  }

  /** Clicks so far in image pixels {x, y, positive}, oldest first. */
  get clicks() {
    return this.current.clicks.slice();
  }

  get canUndo() {
    return this.history.length > 1;
  }

  get canRedo() {
    return this.redoStack.length > 0;
  }

  /** Wait until every queued operation has run. */
  idle() {
    return this.queue;
  }

  /**
   * Add a click at image pixel (x, y); resolves to the new state once decoded.
   * @returns {Promise<object>}
   */
  addClick(x, y, positive) {
    const { imageH, imageW } = this.geom;
    if (!Number.isInteger(x) || !Number.isInteger(y) || x < 0 || y < 0 || x >= imageW || y >= imageH) {
      return Promise.reject(new SessionError(`click (x=${x}, y=${y}) lies outside the ${imageW}x${imageH} image`));
    }
    return this._enqueue(async () => {
      const prev = this.current;
      const [cy, cx] = imageToCanvas(this.geom, y, x);
      const m = addClick(cloneClickMap(prev.clickMap), { y: cy, x: cx, positive: Boolean(positive) });
      const t0 = performance.now();
      const r = await this.predictFn(m);
      const { upsampled, prediction } = canvasPrediction(r.margin, r.h4, r.w4, this.geom.canvasH, this.geom.canvasW);
      updateFromPrediction(m, prediction);
      const state = {
        clickMap: m,
        prediction,
        upsampled,
        margin: { data: r.margin, h4: r.h4, w4: r.w4 },
        clicks: [...prev.clicks, { x, y, positive: Boolean(positive) }],
        timing: { decoderMs: r.ms, totalMs: performance.now() - t0 },
      };
      // Keep memory per undo step small: only the newest state keeps its canvas-size margin.
      prev.upsampled = null;
      this.history.push(state);
      this.redoStack = [];
      return state;
    });
  }

  /** Remove the last click (its click map and mask go back to the previous ones). */
  undo() {
    return this._enqueue(() => {
      if (!this.canUndo) throw new SessionError("nothing to undo: no clicks yet");
      const undone = this.history.pop();
      undone.upsampled = null;
      this.redoStack.push(undone);
      return this.current;
    });
  }

  /** Re-apply the last undone click (no decoding: its state comes back as it was). */
  redo() {
    return this._enqueue(() => {
      if (!this.canRedo) throw new SessionError("nothing to redo");
      this.current.upsampled = null;
      this.history.push(this.redoStack.pop());
      return this.current;
    });
  }

  /** Forget every click; keep the image. */
  reset() {
    return this._enqueue(() => {
      this.history = [this._fresh()];
      this.redoStack = [];
      return this.current;
    });
  }

  /** The current mask at image resolution (Uint8Array imageH * imageW of 0/1; zeros before the first click). */
  imageMask() {
    const st = this.current;
    if (st.margin === null) return new Uint8Array(this.geom.imageH * this.geom.imageW);
    if (st.upsampled === null) {
      st.upsampled = canvasPrediction(st.margin.data, st.margin.h4, st.margin.w4, this.geom.canvasH, this.geom.canvasW).upsampled;
    }
    return imageMask(st.upsampled, this.geom);
  }
}
