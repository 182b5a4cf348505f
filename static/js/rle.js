/**
 * COCO run-length encoding of masks, as the API takes and gives them (webapp/masks.py):
 * column-major (Fortran order), runs alternating background/foreground, starting with a
 * (possibly empty) run of background.
 *
 *   encodeRLE(mask, h, w)      -> {size: [h, w], counts: [n0, n1, ...]} (uncompressed)
 *   decodeRLE({size, counts})  -> Uint8Array h*w, row-major 0/1; counts may be the
 *                                 compressed string form (pycocotools' rleFrString)
 *
 * Pure functions (no DOM), tested with node --test.
 */

/** @param {ArrayLike<number>} mask h*w row-major, non-zero = foreground */
export function encodeRLE(mask, h, w) {
  if (mask.length !== h * w) throw new RangeError(`mask has ${mask.length} values, not ${h}x${w}`);
  const counts = [];
  let value = 0; // the value of the current run
  let run = 0;
  for (let x = 0; x < w; x++) {
    for (let y = 0; y < h; y++) {
      const v = mask[y * w + x] ? 1 : 0;
      if (v !== value) {
        counts.push(run);
        run = 0;
        value = v;
      }
      run++;
    }
  }
  counts.push(run);
  return { size: [h, w], counts };
}

/** Runs of a compressed COCO RLE string. */
export function countsFromString(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0;
    let k = 0;
    let more = true;
    while (more) {
      if (p >= s.length) throw new RangeError("the RLE string ends in the middle of a number");
      const c = s.charCodeAt(p) - 48;
      if (c < 0 || c >= 64) throw new RangeError(`invalid character ${JSON.stringify(s[p])} in the RLE string`);
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p++;
      k++;
      if (!more && c & 0x10) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

/** @returns {Uint8Array} h*w row-major 0/1 */
export function decodeRLE(rle) {
  const [h, w] = rle.size;
  const counts = typeof rle.counts === "string" ? countsFromString(rle.counts) : rle.counts;
  const total = counts.reduce((a, b) => a + b, 0);
  if (total !== h * w) throw new RangeError(`the RLE runs add up to ${total} pixels, not ${h}x${w}`);
  const out = new Uint8Array(h * w);
  let i = 0; // column-major index
  for (let r = 0; r < counts.length; r++) {
    const n = counts[r];
    if (r % 2 === 1) {
      for (let j = i; j < i + n; j++) out[(j % h) * w + Math.floor(j / h)] = 1;
    }
    i += n;
  }
  return out;
}

/** Foreground pixel count and [x, y, w, h] bounding box (null when empty). */
export function maskStats(mask, h, w) {
  let area = 0;
  let x0 = w;
  let y0 = h;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (mask[y * w + x]) {
        area++;
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  }
  return { area, bbox: area ? [x0, y0, x1 - x0 + 1, y1 - y0 + 1] : null };
}
