/**
 * The click map M ("ref_label") and its rules, browser side.
 *
 * Twin of model_export/clicks.py (spec section 1.2); both are checked against the shared
 * vectors in tests/vectors/clickmap.json, so change the rules in both places together.
 *
 * A click map is a plain object { height, width, data }, where data is a Uint8Array of
 * height * width labels in row-major order (pixel (y, x) at data[y * width + x]):
 *   0 definite background, 1 possible background, 2 unknown, 3 possible foreground,
 *   4 definite foreground. A fresh map is 2 everywhere.
 *
 * Both mutating functions work IN PLACE and return the same map object: a 1024x1024 map
 * is 1 MiB, so nothing is copied per click. Keep a copy (cloneClickMap) where the old
 * state is still needed, e.g. for undo.
 */

export const DEFINITE_BG = 0;
export const POSSIBLE_BG = 1;
export const UNKNOWN = 2;
export const POSSIBLE_FG = 3;
export const DEFINITE_FG = 4;
export const NUM_LABELS = 5;

/** Click disk radius in map pixels: every pixel at exact Euclidean distance <= 5 (81 pixels). */
export const DISK_RADIUS = 5;

const halfWidthCache = new Map();

/**
 * Half-widths of the click disk, one per row offset dy = -radius..radius: entry dy + radius
 * is the largest dx with dx*dx + dy*dy <= radius*radius (integer arithmetic, no sqrt).
 * Row dy of the disk is the span dx = -hw..hw. Cached per radius; do not modify.
 * @param {number} radius
 * @returns {Int32Array}
 */
export function diskHalfWidths(radius = DISK_RADIUS) {
  let hw = halfWidthCache.get(radius);
  if (hw === undefined) {
    if (!Number.isInteger(radius) || radius < 0) {
      throw new RangeError(`disk radius must be a non-negative integer, got ${radius}`);
    }
    hw = new Int32Array(2 * radius + 1);
    const r2 = radius * radius;
    for (let dy = -radius; dy <= radius; dy++) {
      let dx = 0;
      while ((dx + 1) * (dx + 1) + dy * dy <= r2) dx++;
      hw[dy + radius] = dx;
    }
    halfWidthCache.set(radius, hw);
  }
  return hw;
}

/**
 * The disk's (dy, dx) offsets in row-major order, as in clicks.py's disk_offsets:
 * an Int32Array [dy0, dx0, dy1, dx1, ...] (81 pairs for radius 5).
 * @param {number} radius
 * @returns {Int32Array}
 */
export function diskOffsets(radius = DISK_RADIUS) {
  const hw = diskHalfWidths(radius);
  let n = 0;
  for (let i = 0; i < hw.length; i++) n += 2 * hw[i] + 1;
  const out = new Int32Array(2 * n);
  let k = 0;
  for (let dy = -radius; dy <= radius; dy++) {
    const h = hw[dy + radius];
    for (let dx = -h; dx <= h; dx++) {
      out[k++] = dy;
      out[k++] = dx;
    }
  }
  return out;
}

function checkSize(height, width) {
  if (!Number.isInteger(height) || !Number.isInteger(width) || height <= 0 || width <= 0) {
    throw new RangeError(`click map size must be positive integers, got ${height}x${width}`);
  }
}

/**
 * A fresh click map: every pixel UNKNOWN.
 * @param {number} height
 * @param {number} width
 * @returns {{height: number, width: number, data: Uint8Array}}
 */
export function newClickMap(height, width) {
  checkSize(height, width);
  const data = new Uint8Array(height * width);
  data.fill(UNKNOWN);
  return { height, width, data };
}

/** An independent copy of a click map. */
export function cloneClickMap(map) {
  return { height: map.height, width: map.width, data: map.data.slice() };
}

/**
 * Draw a click into the map IN PLACE and return the map.
 *
 * Every pixel whose exact Euclidean distance to (y, x) is <= radius becomes DEFINITE_FG
 * (positive) or DEFINITE_BG (negative); the disk is clipped at the map's edges. The newest
 * click overwrites whatever was there, older definite labels included.
 * Throws a RangeError for a click outside the map or non-integer coordinates.
 *
 * @param {{height: number, width: number, data: Uint8Array}} map
 * @param {{y: number, x: number, positive: boolean}} click  map pixel (row y, column x)
 * @param {number} radius
 */
export function addClick(map, { y, x, positive }, radius = DISK_RADIUS) {
  const { height, width, data } = map;
  if (!Number.isInteger(y) || !Number.isInteger(x) || y < 0 || y >= height || x < 0 || x >= width) {
    throw new RangeError(`click (${y}, ${x}) lies outside the ${height}x${width} click map`);
  }
  const hw = diskHalfWidths(radius);
  const value = positive ? DEFINITE_FG : DEFINITE_BG;
  const y0 = Math.max(0, y - radius);
  const y1 = Math.min(height - 1, y + radius);
  for (let yy = y0; yy <= y1; yy++) {
    const h = hw[yy - y + radius];
    const row = yy * width;
    const x0 = Math.max(0, x - h);
    const x1 = Math.min(width - 1, x + h);
    data.fill(value, row + x0, row + x1 + 1);
  }
  return map;
}

// Transition table indexed [2 * old label + (prediction is foreground)].
// Definite labels never change.
const TRANSITIONS = Uint8Array.of(
  DEFINITE_BG, DEFINITE_BG, // 0: unchanged
  POSSIBLE_BG, UNKNOWN, // 1: stays 1 on bg, -> 2 on fg
  POSSIBLE_BG, POSSIBLE_FG, // 2: -> 1 on bg, -> 3 on fg
  UNKNOWN, POSSIBLE_FG, // 3: -> 2 on bg, stays 3 on fg
  DEFINITE_FG, DEFINITE_FG, // 4: unchanged
);

/**
 * Update the map from a binary prediction IN PLACE (spec 1.2 table) and return the map.
 *
 * Unlike clicks.py's update_from_prediction, which returns a new array, this overwrites
 * map.data; clone first if the old map is still needed.
 *
 * @param {{height: number, width: number, data: Uint8Array}} map  labels must be 0..4
 * @param {ArrayLike<number> | {height: number, width: number, data: ArrayLike<number>}} pred
 *   the prediction in the map's row-major layout, foreground where > 0 (normally a
 *   Uint8Array of 0/1); either the bare array of height * width values or an object with
 *   its own height and width, which must then equal the map's.
 */
export function updateFromPrediction(map, pred) {
  const { height, width, data } = map;
  let p = pred;
  if (pred !== null && typeof pred === "object" && "data" in pred && !ArrayBuffer.isView(pred)) {
    if (pred.height !== height || pred.width !== width) {
      throw new RangeError(
        `prediction shape ${pred.height}x${pred.width} does not match click map ${height}x${width}`,
      );
    }
    p = pred.data;
  }
  const n = data.length;
  if (p == null || p.length !== n) {
    throw new RangeError(
      `prediction has ${p == null ? "no" : p.length} values, the ${height}x${width} click map ${n}`,
    );
  }
  const t = TRANSITIONS;
  for (let i = 0; i < n; i++) {
    data[i] = t[(data[i] << 1) | (p[i] > 0 ? 1 : 0)];
  }
  return map;
}
