// The browser's pyramid reader (static/js/pyramid.js) against the shared vectors in
// tests/vectors/pyramid/, which tests/test_pyramid_vectors.py checks against the Python reader.
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import {
  crc32,
  float16ToFloat32,
  parsePyramid,
  parsePyramidQuantized,
  PyramidFormatError,
  unpackInt4,
} from "../../static/js/pyramid.js";

const DIR = new URL("../vectors/pyramid/", import.meta.url);
const V = JSON.parse(readFileSync(new URL("expected.json", DIR), "utf8"));

/** A file as a fresh, 16-aligned ArrayBuffer (what fetch().arrayBuffer() gives). */
function load(name) {
  const b = readFileSync(new URL(name, DIR));
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
}

const bytesOf = (a) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function fromHex(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
  return out;
}

/** Apply the vector's splices (offsets into the base file, ascending): from the last. */
function applySplices(base, splices) {
  let out = new Uint8Array(base);
  for (const sp of [...splices].reverse()) {
    const ins = fromHex(sp.insert);
    const next = new Uint8Array(out.length - sp.delete + ins.length);
    next.set(out.subarray(0, sp.offset), 0);
    next.set(ins, sp.offset);
    next.set(out.subarray(sp.offset + sp.delete), sp.offset + ins.length);
    out = next;
  }
  return out.buffer;
}

describe("pyramid vectors", () => {
  for (const entry of V.files) {
    test(`decode ${entry.file} (${entry.scheme.join(", ")})`, () => {
      const buf = load(entry.file);
      assert.equal(buf.byteLength, entry.bytes);
      const { header, levels } = parsePyramid(buf);
      assert.deepEqual(header, entry.header);
      assert.equal(levels.length, entry.levels.length);
      levels.forEach((lv, i) => {
        const exp = entry.levels[i];
        assert.equal(lv.name, exp.name);
        assert.deepEqual(lv.shape, exp.shape);
        assert.equal(lv.scheme, exp.scheme);
        assert.ok(lv.data instanceof Float32Array);
        assert.equal(lv.data.length, exp.shape[0] * exp.shape[1] * exp.shape[2]);
        assert.equal(crc32(bytesOf(lv.data)), exp.crc32_f32, `${exp.name}: float32 values differ from Python`);
        for (const [idx, v] of exp.samples) assert.equal(lv.data[idx], v, `${exp.name}[${idx}]`);
        let sum = 0;
        for (let k = 0; k < lv.data.length; k++) sum += lv.data[k];
        assert.ok(Math.abs(sum - exp.sum) <= 1e-9 + 1e-12 * Math.abs(exp.sum), `${exp.name} sum`);
      });
    });

    test(`quantized view of ${entry.file}`, () => {
      const buf = load(entry.file);
      const { header, levels } = parsePyramidQuantized(buf);
      assert.deepEqual(header, entry.header);
      levels.forEach((lv, i) => {
        const exp = entry.levels[i];
        const Ctor = { f32: Float32Array, f16: Uint16Array, int8: Int8Array, int4: Uint8Array }[lv.scheme];
        assert.ok(lv.data instanceof Ctor, `${exp.name} data type`);
        assert.equal(crc32(bytesOf(lv.data)), exp.crc32_data, `${exp.name} codes`);
        if (exp.crc32_scale === undefined) {
          assert.equal(lv.scale, null);
          assert.equal(lv.zeroPoint, null);
          assert.equal(lv.bias, null);
          return;
        }
        assert.equal(crc32(bytesOf(lv.scale)), exp.crc32_scale);
        assert.equal(crc32(bytesOf(lv.zeroPoint)), exp.crc32_zero_point);
        assert.equal(lv.bias === null ? null : crc32(bytesOf(lv.bias)), exp.crc32_bias);
        assert.deepEqual(Array.from(lv.scale.subarray(0, 4)), exp.scale_head);
        assert.deepEqual(Array.from(lv.zeroPoint.subarray(0, 4)), exp.zero_point_head);
        assert.deepEqual(lv.bias === null ? null : Array.from(lv.bias.subarray(0, 4)), exp.bias_head);
      });
    });
  }

  test("the quantized view dequantises to parsePyramid's values", () => {
    for (const entry of V.files) {
      const buf = load(entry.file);
      const full = parsePyramid(buf).levels;
      parsePyramidQuantized(buf).levels.forEach((lv, i) => {
        const [c, h, w] = lv.shape;
        const hw = h * w;
        const want = full[i].data;
        let codes = lv.data;
        if (lv.scheme === "f16") codes = float16ToFloat32(lv.data);
        if (lv.scheme === "int4") codes = unpackInt4(lv.data, c * hw);
        for (let j = 0; j < c * hw; j++) {
          let x = codes[j];
          if (lv.scale !== null) {
            const ch = Math.floor(j / hw);
            x = Math.fround((codes[j] - lv.zeroPoint[ch]) * lv.scale[ch]);
            if (lv.bias !== null) x = Math.fround(x + lv.bias[ch]);
          }
          if (x !== want[j]) assert.fail(`${entry.file} ${lv.name}[${j}]: ${x} !== ${want[j]}`);
        }
      });
    }
  });

  test("a Node Buffer at an unaligned offset is read too (copied)", () => {
    const b = readFileSync(new URL("int8.bin", DIR));
    const padded = new Uint8Array(b.length + 3);
    padded.set(b, 3);
    const view = padded.subarray(3);
    const a = parsePyramid(view).levels;
    const e = parsePyramid(load("int8.bin")).levels;
    a.forEach((lv, i) => assert.deepEqual(lv.data, e[i].data));
  });

  for (const c of V.corrupt) {
    test(`refused: ${c.name}`, () => {
      const bad = applySplices(load(c.base), c.splices);
      for (const parse of [parsePyramid, parsePyramidQuantized]) {
        assert.throws(
          () => parse(bad),
          (err) => {
            assert.ok(err instanceof PyramidFormatError, `not a PyramidFormatError: ${err}`);
            const msg = `message ${JSON.stringify(err.message)} lacks ${JSON.stringify(c.error)}`;
            assert.ok(err.message.includes(c.error), msg);
            return true;
          },
        );
      }
    });
  }
});

describe("pyramid helpers", () => {
  test("crc32 matches zlib on known strings", () => {
    const enc = new TextEncoder();
    assert.equal(crc32(enc.encode("")), 0);
    assert.equal(crc32(enc.encode("123456789")), 0xcbf43926); // the CRC-32 check value
    assert.equal(crc32(enc.encode("The quick brown fox jumps over the lazy dog")), 0x414fa339);
    // Continuation and the slicing-by-8 path against the byte-wise tail.
    const data = new Uint8Array(1000).map((_, i) => (i * 31 + 7) & 255);
    assert.equal(crc32(data.subarray(500), crc32(data.subarray(0, 500))), crc32(data));
    assert.equal(crc32(data), 0x8902161e); // zlib.crc32 of the same bytes
    assert.equal(crc32(data.subarray(3)), 0x81110863); // odd start: 997 bytes, a 5-byte tail
  });

  test("float16 conversion", () => {
    const bits = Uint16Array.of(0x0000, 0x8000, 0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x7c00, 0xfc00, 0x3555);
    const f = float16ToFloat32(bits);
    assert.deepEqual(Array.from(f.subarray(0, 7)), [0, -0, 1, -2, 65504, 2 ** -24, 1023 * 2 ** -24]);
    assert.equal(f[7], Infinity);
    assert.equal(f[8], -Infinity);
    assert.equal(f[9], Math.fround(0.333251953125));
  });

  test("int4 unpacking: low nibble first, two's complement", () => {
    assert.deepEqual(Array.from(unpackInt4(Uint8Array.of(0x81, 0x7f, 0x0e), 5)), [1, -8, -1, 7, -2]);
  });

  test("not an ArrayBuffer", () => {
    assert.throws(() => parsePyramid("nope"), TypeError);
  });
});
