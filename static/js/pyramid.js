/**
 * Reader of the quantized feature-pyramid file (format version 1), browser side.
 *
 * Twin of model_export/pyramid_format.py (the writer and the Python reader), checked against
 * the shared vectors in tests/vectors/pyramid/. The byte layout is specified in
 * docs/pyramid-format.md; in short:
 *
 *   0   8  magic 89 49 46 50 59 52 0D 0A ("\x89IFPYR\r\n")
 *   8   2  uint16 LE format version (1)       10  2  uint16 LE flags (0)
 *   12  4  uint32 LE N = JSON header length    16  4  uint32 LE CRC-32 of the header bytes
 *   20  N  JSON header, space-padded so that 20 + N is a multiple of 16
 *   20+N   payload (header.payload.length bytes, CRC-32 in header.payload.crc32)
 *
 * Each level has a scheme: f32, f16, int8 or int4 (per-channel affine, ONNX DequantizeLinear
 * convention x = (q - zeroPoint[c]) * scale[c], plus bias[c] when "bias" is true; int4 packed two
 * per byte, low nibble first), and a filter: "none" or "delta" (codes stored as differences
 * modulo 2^bits of the flat C*H*W sequence).
 *
 * parsePyramid(buffer)          -> {header, levels: [{name, stride, shape, scheme, data: Float32Array}]}
 * parsePyramidQuantized(buffer) -> {header, levels: [{name, stride, shape, scheme, data, scale,
 *                                    zeroPoint, bias}]}: the codes as stored (filter undone), for an
 *                                    in-graph DequantizeLinear(data, scale, zeroPoint, axis=0).
 *
 * Every problem with a file throws PyramidFormatError with a message naming it (the same
 * wording as the Python reader). Arithmetic is float32 exactly as in Python, so both readers
 * give bit-identical values. Typed arrays are views on the input buffer where possible (f32
 * data, scales, int8 codes): do not modify the buffer while using them.
 */

export const MAGIC = Uint8Array.of(0x89, 0x49, 0x46, 0x50, 0x59, 0x52, 0x0d, 0x0a);
export const FORMAT_VERSION = 1;
export const FORMAT_NAME = "interformer-pyramid";
export const PREAMBLE_SIZE = 20;
export const ALIGNMENT = 16;
export const MAX_LEVELS = 16;
export const SCHEMES = Object.freeze(["f32", "f16", "int8", "int4"]);
export const FILTERS = Object.freeze(["none", "delta"]);

const CANVAS_MULTIPLE = 32;
const QRANGE = { int8: [-128, 127], int4: [-8, 7] };
const CANVAS_KEYS = ["image_h", "image_w", "scale", "resized_h", "resized_w", "canvas_h", "canvas_w"];
const TOP_KEYS = ["format", "model", "image", "canvas", "levels", "payload", "extra"];
const LEVEL_KEYS = ["name", "stride", "shape", "scheme", "clip", "bias", "filter", "segments"];
const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

export class PyramidFormatError extends Error {
  constructor(message) {
    super(message);
    this.name = "PyramidFormatError";
  }
}

// ------------------------------------------------------------------------------------------
// CRC-32 (ISO-HDLC, as zlib.crc32): slicing-by-8 tables, ~1 ms per MB.
// ------------------------------------------------------------------------------------------
const CRC_TABLES = (() => {
  const t = new Uint32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n];
    for (let k = 1; k < 8; k++) {
      c = t[c & 0xff] ^ (c >>> 8);
      t[k * 256 + n] = c >>> 0;
    }
  }
  return t;
})();

/**
 * CRC-32 of bytes (zlib.crc32 / PNG / gzip), optionally continuing from `crc`.
 * @param {Uint8Array} bytes
 * @param {number} [crc]
 * @returns {number} unsigned 32-bit
 */
export function crc32(bytes, crc = 0) {
  const T = CRC_TABLES;
  let c = ~crc;
  const n = bytes.length;
  let i = 0;
  for (const end = n - (n % 8); i < end; i += 8) {
    const lo = c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    c =
      T[1792 + (lo & 0xff)] ^
      T[1536 + ((lo >>> 8) & 0xff)] ^
      T[1280 + ((lo >>> 16) & 0xff)] ^
      T[1024 + (lo >>> 24)] ^
      T[768 + bytes[i + 4]] ^
      T[512 + bytes[i + 5]] ^
      T[256 + bytes[i + 6]] ^
      T[bytes[i + 7]];
  }
  for (; i < n; i++) c = T[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

// ------------------------------------------------------------------------------------------
// float16 -> float32 (exact), through a 65536-entry table built on first use.
// ------------------------------------------------------------------------------------------
let F16_TABLE = null;
function f16Table() {
  if (F16_TABLE === null) {
    F16_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const e = (h >>> 10) & 0x1f;
      const m = h & 0x3ff;
      let v;
      if (e === 0) v = m * 2 ** -24;
      else if (e === 31) v = m === 0 ? Infinity : NaN;
      else v = (1 + m / 1024) * 2 ** (e - 15);
      F16_TABLE[h] = sign * v;
    }
  }
  return F16_TABLE;
}

/**
 * IEEE binary16 bit patterns -> Float32Array (exact).
 * @param {Uint16Array} bits
 * @returns {Float32Array}
 */
export function float16ToFloat32(bits) {
  const t = f16Table();
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = t[bits[i]];
  return out;
}

/**
 * Packed int4 (value 2k in the low nibble of byte k, two's complement) -> Int8Array in [-8, 7].
 * @param {Uint8Array} packed
 * @param {number} count
 * @returns {Int8Array}
 */
export function unpackInt4(packed, count) {
  const out = new Int8Array(count);
  for (let j = 0; j < count; j++) {
    const n = (packed[j >> 1] >> ((j & 1) << 2)) & 15;
    out[j] = (n ^ 8) - 8;
  }
  return out;
}

// ------------------------------------------------------------------------------------------
// Header validation (mirrors _validate_header in model_export/pyramid_format.py)
// ------------------------------------------------------------------------------------------
function fail(msg) {
  throw new PyramidFormatError(`header: ${msg}`);
}

const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isInt = (v) => typeof v === "number" && Number.isInteger(v);
const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const js = (v) => JSON.stringify(v);

function obj(v, what, keys) {
  if (!isObj(v)) fail(`${what} must be an object`);
  for (const k of keys) if (!Object.hasOwn(v, k)) fail(`missing field '${k}' in ${what}`);
  for (const k of Object.keys(v)) if (!keys.includes(k)) fail(`unknown field '${k}' in ${what}`);
  return v;
}

function posInt(v, what, zeroOk = false) {
  if (!isInt(v) || v < (zeroOk ? 0 : 1)) {
    fail(`${what} must be a ${zeroOk ? "non-negative" : "positive"} integer, got ${js(v)}`);
  }
  return v;
}

function expectedSegments(scheme, bias, count, channels) {
  if (scheme === "f32") return [["data", "float32", 4 * count]];
  if (scheme === "f16") return [["data", "float16", 2 * count]];
  const segs = [
    ["scale", "float32", 4 * channels],
    ["zero_point", "int8", channels],
  ];
  if (bias) segs.push(["bias", "float32", 4 * channels]);
  segs.push(scheme === "int8" ? ["data", "int8", count] : ["data", "int4x2", Math.ceil(count / 2)]);
  return segs;
}

function validateCanvas(cv) {
  obj(cv, "canvas", CANVAS_KEYS);
  for (const k of CANVAS_KEYS) {
    if (k === "scale") {
      if (!isNum(cv[k]) || cv[k] <= 0) fail(`canvas.scale must be a positive number, got ${js(cv[k])}`);
    } else posInt(cv[k], `canvas.${k}`);
  }
  for (const side of ["h", "w"]) {
    const r = cv[`resized_${side}`];
    const c = cv[`canvas_${side}`];
    if (c % CANVAS_MULTIPLE !== 0 || c !== Math.ceil(r / CANVAS_MULTIPLE) * CANVAS_MULTIPLE) {
      fail(`canvas_${side} ${c} must be resized_${side} ${r} rounded up to a multiple of ${CANVAS_MULTIPLE}`);
    }
  }
  return cv;
}

/** Check a parsed header; return per level {name, stride, shape, scheme, bias, filter, segments}. */
function validateHeader(h) {
  if (!isObj(h)) fail("must be a JSON object");
  obj(h, "the header", TOP_KEYS);
  if (h.format !== FORMAT_NAME) fail(`format must be '${FORMAT_NAME}', got ${js(h.format)}`);
  const m = obj(h.model, "model", ["id", "version"]);
  if (typeof m.id !== "string" || m.id === "") fail("model.id must be a non-empty string");
  if (typeof m.version !== "string") fail("model.version must be a string");
  const im = obj(h.image, "image", ["h", "w"]);
  posInt(im.h, "image.h");
  posInt(im.w, "image.w");
  const cv = validateCanvas(h.canvas);
  if (im.h !== cv.image_h || im.w !== cv.image_w) {
    fail(
      `image size ${im.h}x${im.w} is inconsistent with the canvas ` +
        `(image_h x image_w = ${cv.image_h}x${cv.image_w})`,
    );
  }
  if (!isObj(h.extra)) fail("extra must be an object");
  const p = obj(h.payload, "payload", ["length", "crc32", "alignment"]);
  const plen = posInt(p.length, "payload.length", true);
  if (!isInt(p.crc32) || p.crc32 < 0 || p.crc32 > 0xffffffff) {
    fail(`payload.crc32 must be an integer in [0, 2^32), got ${js(p.crc32)}`);
  }
  if (p.alignment !== ALIGNMENT) fail(`payload.alignment must be ${ALIGNMENT}, got ${js(p.alignment)}`);

  const levels = h.levels;
  if (!Array.isArray(levels) || levels.length < 1 || levels.length > MAX_LEVELS) {
    fail(`levels must be a list of 1 to ${MAX_LEVELS} levels`);
  }
  const names = new Set();
  const spans = [];
  const out = [];
  levels.forEach((lv, i) => {
    obj(lv, `levels[${i}]`, LEVEL_KEYS);
    const name = lv.name;
    if (typeof name !== "string" || name === "") fail(`levels[${i}].name must be a non-empty string`);
    if (names.has(name)) fail(`duplicate level name ${js(name)}`);
    names.add(name);
    const where = `level ${name}`;
    const stride = posInt(lv.stride, `${where} stride`);
    const shape = lv.shape;
    if (!Array.isArray(shape) || shape.length !== 3) fail(`${where} shape must be a list [C, H, W], got ${js(shape)}`);
    for (const s of shape) posInt(s, `${where} shape`);
    const [c, hh, ww] = shape;
    if (hh * stride !== cv.canvas_h || ww * stride !== cv.canvas_w) {
      fail(
        `${where} shape ${js(shape)} at stride ${stride} is inconsistent with the canvas ` +
          `${cv.canvas_h}x${cv.canvas_w} (expected H x W = canvas / stride)`,
      );
    }
    const scheme = lv.scheme;
    if (!SCHEMES.includes(scheme)) fail(`unknown scheme ${js(scheme)} for ${where} (known: ${SCHEMES.join(", ")})`);
    const filter = lv.filter;
    if (!FILTERS.includes(filter)) fail(`unknown filter ${js(filter)} for ${where} (known: ${FILTERS.join(", ")})`);
    if (typeof lv.bias !== "boolean") fail(`${where} bias must be true or false`);
    const clip = lv.clip;
    if (clip !== null && (!isNum(clip) || !(clip > 50 && clip <= 100))) {
      fail(`${where} clip must be null or a percentile in (50, 100], got ${js(clip)}`);
    }
    if ((scheme === "f32" || scheme === "f16") && (lv.bias || filter !== "none" || clip !== null)) {
      fail(`${where}: scheme ${scheme} takes no bias, filter or clip`);
    }
    const count = c * hh * ww;
    const expected = expectedSegments(scheme, lv.bias, count, c);
    const segs = lv.segments;
    if (!isObj(segs)) fail(`${where} segments must be an object`);
    for (const [k] of expected) if (!Object.hasOwn(segs, k)) fail(`${where} is missing segment '${k}'`);
    for (const k of Object.keys(segs)) {
      if (!expected.some(([e]) => e === k)) fail(`${where} has an unexpected segment '${k}' for scheme ${scheme}`);
    }
    const segOut = {};
    for (const [k, dtype, length] of expected) {
      const s = obj(segs[k], `${where} segment '${k}'`, ["offset", "length", "dtype"]);
      if (s.dtype !== dtype) fail(`${where} segment '${k}' dtype must be ${dtype}, got ${js(s.dtype)}`);
      const off = posInt(s.offset, `${where} segment '${k}' offset`, true);
      const len = posInt(s.length, `${where} segment '${k}' length`, true);
      if (len !== length) fail(`${where} segment '${k}' has length ${len}, expected ${length}`);
      if (off % ALIGNMENT !== 0) fail(`${where} segment '${k}' offset ${off} is not aligned to ${ALIGNMENT}`);
      if (off + len > plen) {
        fail(`${where} segment '${k}' [${off}, ${off + len}) lies outside the payload of ${plen} bytes`);
      }
      spans.push([off, off + len, `${name}.${k}`]);
      segOut[k] = [off, len];
    }
    out.push({ name, stride, shape: [c, hh, ww], count, scheme, bias: lv.bias, filter, segments: segOut });
  });
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1] || (a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0));
  for (let i = 1; i < spans.length; i++) {
    if (spans[i][0] < spans[i - 1][1]) fail(`segments ${spans[i - 1][2]} and ${spans[i][2]} overlap`);
  }
  return out;
}

// ------------------------------------------------------------------------------------------
// File parsing
// ------------------------------------------------------------------------------------------
function toBytes(input) {
  let bytes;
  if (input instanceof ArrayBuffer) bytes = new Uint8Array(input);
  else if (ArrayBuffer.isView(input)) bytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  else throw new TypeError("parsePyramid expects an ArrayBuffer or a typed array");
  // Typed views of the payload need it aligned in its ArrayBuffer (Node's pooled Buffers are not).
  if (bytes.byteOffset % ALIGNMENT !== 0) bytes = bytes.slice();
  return bytes;
}

// fatal: invalid UTF-8 is an error; ignoreBOM: a BOM stays in the text and fails JSON.parse, as in Python.
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Check the whole file (preamble, header, payload length and checksums).
 * @returns {{header: object, infos: object[], bytes: Uint8Array, payloadStart: number}}
 */
function parseFile(input) {
  if (!LITTLE_ENDIAN) throw new PyramidFormatError("big-endian platforms are not supported");
  const bytes = toBytes(input);
  const n = bytes.length;
  if (n < PREAMBLE_SIZE) {
    for (let i = 0; i < Math.min(n, MAGIC.length); i++) {
      if (bytes[i] !== MAGIC[i]) throw new PyramidFormatError("bad magic: not an InterFormer pyramid file");
    }
    throw new PyramidFormatError(`truncated: ${n} bytes, shorter than the ${PREAMBLE_SIZE}-byte preamble`);
  }
  for (let i = 0; i < MAGIC.length; i++) {
    if (bytes[i] !== MAGIC[i]) throw new PyramidFormatError("bad magic: not an InterFormer pyramid file");
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, n);
  const version = dv.getUint16(8, true);
  const flags = dv.getUint16(10, true);
  const hlen = dv.getUint32(12, true);
  const hcrc = dv.getUint32(16, true);
  if (version !== FORMAT_VERSION) {
    throw new PyramidFormatError(`unsupported format version ${version} (this reader reads ${FORMAT_VERSION})`);
  }
  if (flags !== 0) {
    throw new PyramidFormatError(
      `unsupported flags 0x${flags.toString(16).padStart(4, "0")} (must be 0 in version ${FORMAT_VERSION})`,
    );
  }
  const start = PREAMBLE_SIZE + hlen;
  if (start > n) {
    throw new PyramidFormatError(`truncated: the header needs ${hlen} bytes, the file has ${n - PREAMBLE_SIZE}`);
  }
  if (start % ALIGNMENT !== 0) {
    throw new PyramidFormatError(`header length ${hlen} does not align the payload to ${ALIGNMENT} bytes`);
  }
  const text = bytes.subarray(PREAMBLE_SIZE, start);
  if (crc32(text) !== hcrc) throw new PyramidFormatError("header checksum mismatch: the header is corrupt");
  let header;
  try {
    header = JSON.parse(UTF8.decode(text));
  } catch (e) {
    throw new PyramidFormatError(`header is not valid JSON: ${e.message}`);
  }
  const infos = validateHeader(header);
  const plen = header.payload.length;
  if (n < start + plen) {
    throw new PyramidFormatError(`truncated: the payload needs ${plen} bytes, the file has ${n - start}`);
  }
  if (n > start + plen) throw new PyramidFormatError(`trailing bytes: ${n - start - plen} bytes after the payload`);
  if (crc32(bytes.subarray(start)) !== header.payload.crc32) {
    throw new PyramidFormatError("payload checksum mismatch: the data is corrupt");
  }
  return { header, infos, bytes, payloadStart: start };
}

function segView(ctx, info, name, Ctor) {
  const [off, len] = info.segments[name];
  const at = ctx.bytes.byteOffset + ctx.payloadStart + off;
  return new Ctor(ctx.bytes.buffer, at, len / Ctor.BYTES_PER_ELEMENT);
}

/** The quantization parameters of an integer level, checked. */
function levelParams(ctx, info) {
  const scale = segView(ctx, info, "scale", Float32Array);
  const zeroPoint = segView(ctx, info, "zero_point", Int8Array);
  const bias = info.bias ? segView(ctx, info, "bias", Float32Array) : null;
  const [qmin, qmax] = QRANGE[info.scheme];
  for (let c = 0; c < scale.length; c++) {
    if (!(Number.isFinite(scale[c]) && scale[c] > 0)) {
      throw new PyramidFormatError(`level ${info.name}: every scale must be finite and positive`);
    }
    if (zeroPoint[c] < qmin || zeroPoint[c] > qmax) {
      throw new PyramidFormatError(`level ${info.name}: zero point out of range [${qmin}, ${qmax}]`);
    }
    if (bias !== null && !Number.isFinite(bias[c])) {
      throw new PyramidFormatError(`level ${info.name}: every bias must be finite`);
    }
  }
  return { scale, zeroPoint, bias };
}

/** int8 codes with the filter undone: a view when there is no filter. */
function int8Codes(ctx, info) {
  const raw = segView(ctx, info, "data", Int8Array);
  if (info.filter !== "delta") return raw;
  const out = new Int8Array(raw.length);
  let acc = 0;
  for (let i = 0; i < raw.length; i++) {
    acc = (acc + raw[i]) & 255;
    out[i] = acc; // Int8Array stores acc modulo 256 as a signed value
  }
  return out;
}

/** int4 codes, packed as stored, with the filter undone: a view when there is no filter. */
function int4Packed(ctx, info) {
  const raw = segView(ctx, info, "data", Uint8Array);
  if (info.filter !== "delta") return raw;
  const out = new Uint8Array(raw.length);
  let acc = 0;
  const n = info.count;
  for (let j = 0; j < n; j += 2) {
    const b = raw[j >> 1];
    acc = (acc + b) & 15;
    let v = acc;
    if (j + 1 < n) {
      acc = (acc + (b >> 4)) & 15;
      v |= acc << 4;
    }
    out[j >> 1] = v;
  }
  return out;
}

function dequantizeLevel(ctx, info) {
  const n = info.count;
  if (info.scheme === "f32") return segView(ctx, info, "data", Float32Array);
  if (info.scheme === "f16") return float16ToFloat32(segView(ctx, info, "data", Uint16Array));
  const { scale, zeroPoint, bias } = levelParams(ctx, info);
  const channels = info.shape[0];
  const hw = n / channels;
  const out = new Float32Array(n);
  const fround = Math.fround;
  if (info.scheme === "int8") {
    const q = int8Codes(ctx, info);
    for (let c = 0, j = 0; c < channels; c++) {
      const s = scale[c];
      const z = zeroPoint[c];
      const end = j + hw;
      if (bias === null) {
        for (; j < end; j++) out[j] = (q[j] - z) * s; // exact product, rounded once on store
      } else {
        const b = bias[c];
        for (; j < end; j++) out[j] = fround((q[j] - z) * s) + b; // float32 product, then float32 sum
      }
    }
    return out;
  }
  // int4: a 16-entry table per channel.
  const packed = int4Packed(ctx, info);
  const lut = new Float32Array(16);
  for (let c = 0, j = 0; c < channels; c++) {
    const s = scale[c];
    const z = zeroPoint[c];
    const b = bias === null ? null : bias[c];
    for (let nib = 0; nib < 16; nib++) {
      const p = ((nib ^ 8) - 8 - z) * s;
      lut[nib] = b === null ? p : fround(p) + b;
    }
    const end = j + hw;
    for (; j < end; j++) out[j] = lut[(packed[j >> 1] >> ((j & 1) << 2)) & 15];
  }
  return out;
}

/**
 * Parse and dequantise a pyramid file.
 * @param {ArrayBuffer|ArrayBufferView} buffer
 * @returns {{header: object, levels: {name: string, stride: number, shape: number[], scheme: string,
 *   data: Float32Array}[]}} data in C order of shape (C, H, W); f32 levels are views on `buffer`.
 */
export function parsePyramid(buffer) {
  const ctx = parseFile(buffer);
  const levels = ctx.infos.map((info) => ({
    name: info.name,
    stride: info.stride,
    shape: info.shape.slice(),
    scheme: info.scheme,
    data: dequantizeLevel(ctx, info),
  }));
  return { header: ctx.header, levels };
}

/**
 * Parse a pyramid file without dequantising the integer levels.
 *
 * Per level: `data` is Float32Array (f32), Uint16Array of binary16 bits (f16), Int8Array of
 * codes (int8), or Uint8Array of packed int4 codes (int4, ONNX INT4 packing; see unpackInt4);
 * the delta filter is undone. `scale` (Float32Array), `zeroPoint` (Int8Array) and `bias`
 * (Float32Array or null) are null for f32/f16. x = (q - zeroPoint[c]) * scale[c] (+ bias[c]).
 * @param {ArrayBuffer|ArrayBufferView} buffer
 */
export function parsePyramidQuantized(buffer) {
  const ctx = parseFile(buffer);
  const levels = ctx.infos.map((info) => {
    const level = { name: info.name, stride: info.stride, shape: info.shape.slice(), scheme: info.scheme };
    if (info.scheme === "f32" || info.scheme === "f16") {
      const data = segView(ctx, info, "data", info.scheme === "f32" ? Float32Array : Uint16Array);
      return { ...level, data, scale: null, zeroPoint: null, bias: null };
    }
    const params = levelParams(ctx, info);
    const data = info.scheme === "int8" ? int8Codes(ctx, info) : int4Packed(ctx, info);
    return { ...level, data, ...params };
  });
  return { header: ctx.header, levels };
}
