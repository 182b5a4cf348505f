"""Generate ``tests/vectors/pyramid/``: shared test vectors of the pyramid file format.

The format is written by ``model_export/pyramid_format.py`` and read twice: by the same
module (server, tests) and by ``static/js/pyramid.js`` (the browser). Both readers are
checked against these files (``tests/test_pyramid_vectors.py`` and
``tests/js/pyramid.test.js``), so a change on one side that is not mirrored on the other
fails a test. To rewrite them after a deliberate change of the format:

    python tests/vectors/make_pyramid_vectors.py

The pytest suite fails while the committed files differ from what this script writes.

Contents:

- ``<name>.bin``: small pyramids (canvas 64x96, or 32x96 for ``int4_odd``) with
  deterministic data: integer-hash values that are exact dyadic floats (so the data, and
  hence the files, are the same on every machine), per-channel offsets and gains, an
  all-zero channel, a constant channel and an outlier. Channels (8, 16, 32, 64) keep the
  files small; the format does not fix channel counts.
- ``expected.json``:

  - ``files``: per file, its ``scheme`` spec(s), ``bytes``, the full decoded ``header``, and
    per level: ``name``, ``shape``, ``scheme``; ``crc32_f32`` (CRC-32 of the dequantised
    float32 values, little-endian: the exact check), ``sum`` (their float64 sum, for
    people), ``samples`` ([flat index, value] pairs, values exact float32); and the raw view
    as ``parsePyramidQuantized`` returns it: ``crc32_data`` (CRC-32 of the bytes of ``data``:
    float32 / binary16 bits / int8 codes / packed int4 codes, filter undone), and for integer
    levels ``crc32_scale``, ``crc32_zero_point``, ``crc32_bias`` (null without bias) of
    those arrays' bytes, with their first four values in ``scale_head``,
    ``zero_point_head``, ``bias_head``.
  - ``corrupt``: damaged variants of the files. Each is ``base`` (a file above) with one
    list of ``splices`` applied: each deletes ``delete`` bytes at ``offset`` of the base
    file and inserts the bytes of the hex string ``insert`` there (offsets ascending; apply
    from the last); both readers must refuse the result with an error whose message
    contains ``error``.
"""

from __future__ import annotations

import difflib
import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(REPO))

from model_export import pyramid_format as pf  # noqa: E402
from model_export.geometry import CanvasGeometry  # noqa: E402

OUT_DIR = Path(__file__).with_name("pyramid")
CHANNELS = (8, 16, 32, 64)

# (file name, canvas (h, w), channels, scheme spec or one per level)
FILES = [
    ("f32", (64, 96), CHANNELS, "f32"),
    ("f16", (64, 96), CHANNELS, "f16"),
    ("int8", (64, 96), CHANNELS, "int8"),
    ("int4", (64, 96), CHANNELS, "int4"),
    ("int8_clip", (64, 96), CHANNELS, "int8+clip=99.5"),
    ("int8_bias_delta", (64, 96), CHANNELS, "int8+bias+delta"),
    ("int4_clip_bias_delta", (64, 96), CHANNELS, "int4+clip=99+bias+delta"),
    ("mixed", (64, 96), CHANNELS, ["int4+delta", "int8", "int8+bias", "f16"]),
    # Odd channel counts: F4 has 9 x 1 x 3 = 27 values (odd), and channels start mid-byte.
    ("int4_odd", (32, 96), (3, 5, 7, 9), ["int4", "int4+delta", "int4+bias", "int4+bias+delta"]),
]


def _hash(i: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 (wrapping arithmetic): deterministic everywhere."""
    z = i.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def vector_pyramid(canvas_h: int, canvas_w: int, channels: tuple[int, ...], seed: int = 0) -> list[np.ndarray]:
    """Deterministic levels of exact dyadic float32 values (no float rounding anywhere)."""
    with np.errstate(over="ignore"):
        out = []
        for li, c in enumerate(channels):
            s = 4 * 2**li
            h, w = canvas_h // s, canvas_w // s
            n = c * h * w
            base = np.uint64(seed * 1_000_003 + li * 100_003)
            v = (_hash(np.arange(n, dtype=np.uint64) + base) >> np.uint64(52)).astype(np.int64)  # [0, 4096)
            x = ((v - 2048) / 1024.0).reshape(c, h, w)  # [-2, 2), step 2^-10
            ch = _hash(np.arange(c, dtype=np.uint64) + base + np.uint64(7_777_777))
            gain = 2.0 ** ((ch % np.uint64(5)).astype(np.int64) - 2)  # 1/4 .. 4
            shift = ((ch >> np.uint64(8)) % np.uint64(33)).astype(np.int64) / 8.0 - 2.0  # -2 .. 2
            x = x * gain[:, None, None] + shift[:, None, None]  # some channels do not span 0
            x[0] = 0.0  # all-zero channel: scale falls back to 1
            if c > 1:
                x[1] = 0.75  # constant channel
            if c > 2:
                x[2].flat[0] = 40.0  # an outlier, for clipping
            out.append(x.astype(np.float32))
        return out


def meta_for(canvas_h: int, canvas_w: int) -> dict:
    return {
        "model_id": "vector-model",
        "model_version": "1",
        "canvas": CanvasGeometry.for_image(canvas_h, canvas_w),
        "extra": {"note": "shared test vector"},
    }


def _crc(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a).tobytes())


def _f(v) -> float:
    return float(v)


def level_summary(x: np.ndarray, q: pf.QuantizedLevel) -> dict:
    flat = x.reshape(-1)
    n = flat.size
    idx = sorted({0, 1, n // 3, n // 2, (2 * n) // 3, n - 2, n - 1})
    if q.scheme == "int4":
        raw = pf.pack_int4(q.data)
    else:
        raw = q.data.astype({"f32": "<f4", "f16": "<f2", "int8": "i1"}[q.scheme])
    entry = {
        "crc32_f32": _crc(x.astype("<f4")),
        "sum": float(x.astype(np.float64).sum()),
        "samples": [[i, _f(flat[i])] for i in idx],
        "crc32_data": _crc(raw),
    }
    if q.scale is not None:
        entry["crc32_scale"] = _crc(q.scale.astype("<f4"))
        entry["crc32_zero_point"] = _crc(q.zero_point.astype("i1"))
        entry["crc32_bias"] = None if q.bias is None else _crc(q.bias.astype("<f4"))
        entry["scale_head"] = [_f(v) for v in q.scale[:4]]
        entry["zero_point_head"] = [int(v) for v in q.zero_point[:4]]
        entry["bias_head"] = None if q.bias is None else [_f(v) for v in q.bias[:4]]
    return entry


# --------------------------------------------------------------------------------------
# Corrupt variants
# --------------------------------------------------------------------------------------
def _split(data: bytes) -> tuple[dict, bytes, int]:
    hlen = struct.unpack_from("<I", data, 12)[0]
    start = pf.PREAMBLE_SIZE + hlen
    return json.loads(data[pf.PREAMBLE_SIZE : start]), data[start:], hlen


def with_header(data: bytes, edit) -> bytes:
    """The file with its JSON header edited by ``edit(header)`` (checksum recomputed)."""
    header, payload, _ = _split(data)
    edit(header)
    return pf._assemble(header, payload)


def with_header_text(data: bytes, text: bytes) -> bytes:
    """The file with a raw header text (padded, checksum recomputed)."""
    _, payload, _ = _split(data)
    text += b" " * (-(pf.PREAMBLE_SIZE + len(text)) % pf.ALIGNMENT)
    return pf.PREAMBLE.pack(pf.MAGIC, pf.FORMAT_VERSION, 0, len(text), zlib.crc32(text)) + text + payload


def with_payload(data: bytes, offset: int, new: bytes) -> bytes:
    """The file with payload bytes replaced at ``offset`` and the payload checksum fixed."""
    header, payload, _ = _split(data)
    payload = payload[:offset] + new + payload[offset + len(new) :]
    header["payload"]["crc32"] = zlib.crc32(payload)
    return pf._assemble(header, payload)


def set_u16(data: bytes, off: int, v: int) -> bytes:
    return data[:off] + struct.pack("<H", v) + data[off + 2 :]


def set_u32(data: bytes, off: int, v: int) -> bytes:
    return data[:off] + struct.pack("<I", v) + data[off + 4 :]


def flip(data: bytes, off: int) -> bytes:
    return data[:off] + bytes([data[off] ^ 0x01]) + data[off + 1 :]


def _seg_offset(data: bytes, level: int, seg: str) -> int:
    return _split(data)[0]["levels"][level]["segments"][seg]["offset"]


def _level(i: int, **kw):
    def edit(h):
        h["levels"][i].update(kw)

    return edit


def _segment(i: int, seg: str, **kw):
    def edit(h):
        h["levels"][i]["segments"][seg].update(kw)

    return edit


def _del(*path):
    def edit(h):
        d = h
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]

    return edit


def _set(value, *path):
    def edit(h):
        d = h
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value

    return edit


def corrupt_cases(files: dict[str, bytes]) -> list[tuple[str, str, bytes, str]]:
    """(name, base file, corrupted bytes, expected error substring)."""
    i8, i4, f16 = files["int8"], files["int4"], files["f16"]
    _, payload, hlen = _split(i8)
    start = pf.PREAMBLE_SIZE + hlen
    text = i8[pf.PREAMBLE_SIZE:start]

    def swap_shapes(h):  # F1 claims the shape of F2: inconsistent with the canvas
        h["levels"][0]["shape"] = h["levels"][1]["shape"]

    bad_json = "header is not valid JSON"
    canvas_err = "inconsistent with the canvas"
    scale_err = "scale must be finite and positive"
    nan = struct.pack("<f", float("nan"))
    return [
        ("empty file", "int8", b"", "truncated"),
        ("bad magic", "int8", flip(i8, 1), "bad magic"),
        ("a PNG file", "int8", b"\x89PNG\r\n\x1a\n" + bytes(24), "bad magic"),
        ("newline conversion of the magic (CR LF -> LF)", "int8", i8[:6] + i8[7:], "bad magic"),
        ("future format version 2", "int8", set_u16(i8, 8, 2), "unsupported format version 2"),
        ("format version 0", "int8", set_u16(i8, 8, 0), "unsupported format version 0"),
        ("flags set", "int8", set_u16(i8, 10, 1), "unsupported flags"),
        ("truncated in the preamble", "int8", i8[:12], "truncated"),
        ("truncated in the header", "int8", i8[: pf.PREAMBLE_SIZE + hlen // 2], "truncated"),
        ("header length beyond the file", "int8", set_u32(i8, 12, 0xFFFFFFF0), "truncated"),
        ("header length not aligning the payload", "int8", set_u32(i8, 12, hlen - 1), "does not align the payload"),
        ("header byte flipped", "int8", flip(i8, pf.PREAMBLE_SIZE + 10), "header checksum mismatch"),
        ("header checksum flipped", "int8", flip(i8, 16), "header checksum mismatch"),
        ("header JSON garbage", "int8", with_header_text(i8, b'{"format": "interformer-pyr'), bad_json),
        ("header not UTF-8", "int8", with_header_text(i8, b'{"format": "\xff\xfe"}'), bad_json),
        ("header with a UTF-8 BOM", "int8", with_header_text(i8, b"\xef\xbb\xbf" + text.rstrip()), bad_json),
        ("NaN in the header", "int8", with_header_text(i8, text.rstrip().replace(b":null", b":NaN", 1)), bad_json),
        ("header is a JSON array", "int8", with_header_text(i8, b"[1, 2]"), "header: must be a JSON object"),
        ("wrong format name", "int8", with_header(i8, _set("other", "format")), "format must be"),
        ("missing canvas", "int8", with_header(i8, _del("canvas")), "missing field 'canvas'"),
        ("missing model version", "int8", with_header(i8, _del("model", "version")), "missing field 'version'"),
        ("unknown top-level field", "int8", with_header(i8, _set(1, "quality")), "unknown field 'quality'"),
        ("unknown scheme int3", "int8", with_header(i8, _level(0, scheme="int3")), "unknown scheme"),
        ("unknown filter", "int8", with_header(i8, _level(1, filter="zstd")), "unknown filter"),
        ("f16 level with a filter", "f16", with_header(f16, _level(0, filter="delta")), "takes no bias, filter"),
        ("level shape inconsistent with the canvas", "int8", with_header(i8, swap_shapes), canvas_err),
        ("level stride inconsistent with the canvas", "int8", with_header(i8, _level(2, stride=8)), canvas_err),
        ("image size inconsistent with the canvas", "int8", with_header(i8, _set(65, "image", "h")), canvas_err),
        (
            "canvas not padded to a multiple of 32",
            "int8",
            with_header(i8, _set(20, "canvas", "resized_h")),
            "rounded up to a multiple of 32",
        ),
        ("non-integer shape", "int8", with_header(i8, _level(3, shape=[64, 2, 3.5])), "shape must be a positive"),
        ("duplicate level name", "int8", with_header(i8, _level(1, name="F1")), "duplicate level name"),
        ("missing segment", "int8", with_header(i8, _del("levels", 2, "segments", "zero_point")), "missing segment"),
        ("segment with a wrong dtype", "int8", with_header(i8, _segment(0, "data", dtype="uint8")), "dtype must be"),
        ("segment length does not match the shape", "int8", with_header(i8, _segment(0, "data", length=16)),
         "has length 16"),  # fmt: skip
        ("segment outside the payload", "int8", with_header(i8, _segment(3, "data", offset=len(payload) - 16)),
         "outside the payload"),  # fmt: skip
        ("segment not aligned", "int8", with_header(i8, _segment(0, "scale", offset=4)), "not aligned"),
        ("segments overlap", "int8", with_header(i8, _segment(1, "scale", offset=_seg_offset(i8, 0, "data"))),
         "overlap"),  # fmt: skip
        ("payload length disagrees with the file (one byte short)", "int8", i8[:-1], "truncated"),
        ("one trailing byte", "int8", i8 + b"\0", "trailing bytes"),
        ("payload byte flipped", "int8", flip(i8, start + _seg_offset(i8, 0, "data") + 5), "payload checksum mismatch"),
        ("last payload byte flipped", "int4", flip(i4, len(i4) - 1), "payload checksum mismatch"),
        ("zero scale (checksum fixed)", "int8", with_payload(i8, _seg_offset(i8, 1, "scale") + 4, bytes(4)), scale_err),
        ("NaN scale (checksum fixed)", "int4", with_payload(i4, _seg_offset(i4, 0, "scale"), nan), scale_err),
        ("int4 zero point out of range (checksum fixed)", "int4",
         with_payload(i4, _seg_offset(i4, 2, "zero_point"), bytes([8])), "zero point out of range"),  # fmt: skip
    ]


def splices_of(a: bytes, b: bytes) -> list[dict]:
    """Splices turning ``a`` into ``b`` (offsets into ``a``, ascending, non-overlapping)."""
    p, m = 0, min(len(a), len(b))
    while p < m and a[p] == b[p]:
        p += 1
    s = 0
    while s < m - p and a[len(a) - 1 - s] == b[len(b) - 1 - s]:
        s += 1
    sm = difflib.SequenceMatcher(None, a[p : len(a) - s], b[p : len(b) - s], autojunk=False)
    return [
        {"offset": p + i1, "delete": i2 - i1, "insert": b[p + j1 : p + j2].hex()}
        for tag, i1, i2, j1, j2 in sm.get_opcodes()
        if tag != "equal"
    ]


def apply_splices(a: bytes, splices: list[dict]) -> bytes:
    """Apply :func:`splices_of`'s splices (from the last, so the offsets stay valid)."""
    out = bytearray(a)
    for sp in reversed(splices):
        o = sp["offset"]
        out[o : o + sp["delete"]] = bytes.fromhex(sp["insert"])
    return bytes(out)


# --------------------------------------------------------------------------------------
def build() -> tuple[dict[str, bytes], str]:
    """(file name -> bytes, text of expected.json)."""
    files: dict[str, bytes] = {}
    entries = []
    for name, (ch, cw), channels, scheme in FILES:
        pyr = vector_pyramid(ch, cw, channels, seed=len(entries))
        data = pf.encode_pyramid(pyr, meta_for(ch, cw), scheme)
        files[f"{name}.bin"] = data
        qs, header = pf.decode_pyramid_quantized(data)
        levels = []
        for q, lv in zip(qs, header["levels"]):
            x = pf.dequantize_level(q)
            levels.append({"name": lv["name"], "shape": lv["shape"], "scheme": lv["scheme"], **level_summary(x, q)})
        schemes = [str(pf.SchemeSpec.parse(s)) for s in (scheme if isinstance(scheme, list) else [scheme])]
        entries.append(
            {"file": f"{name}.bin", "scheme": schemes, "bytes": len(data), "header": header, "levels": levels}
        )
    corrupt = []
    bases = {e["file"][:-4]: files[e["file"]] for e in entries}
    for cname, base, bad, err in corrupt_cases(bases):
        try:
            pf.decode_pyramid(bad)
        except pf.PyramidFormatError as e:
            if err not in str(e):
                raise AssertionError(f"corrupt case {cname!r}: error {str(e)!r} lacks {err!r}") from None
        else:
            raise AssertionError(f"corrupt case {cname!r}: the Python reader accepted it")
        sp = splices_of(bases[base], bad)
        assert apply_splices(bases[base], sp) == bad
        corrupt.append({"name": cname, "base": f"{base}.bin", "splices": sp, "error": err})
    doc = {
        "about": (
            "Shared test vectors of the pyramid file format, checked by tests/test_pyramid_vectors.py (Python) "
            "and tests/js/pyramid.test.js (JS). Generated by `python tests/vectors/make_pyramid_vectors.py` "
            "from model_export/pyramid_format.py; do not edit by hand. See the generator's docstring."
        ),
        "format_version": pf.FORMAT_VERSION,
        "files": entries,
        "corrupt": corrupt,
    }
    return files, _dump(doc) + "\n"


def _dump(v, indent: int = 0, width: int = 120) -> str:
    """JSON with small objects and lists on one line."""
    flat = json.dumps(v, separators=(", ", ": "))
    if not isinstance(v, (list, dict)) or indent + len(flat) <= width or not v:
        return flat
    pad = " " * (indent + 2)
    if isinstance(v, list):
        items = [pad + _dump(x, indent + 2, width) for x in v]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    items = [pad + json.dumps(k) + ": " + _dump(x, indent + 2, width) for k, x in v.items()]
    return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"


def main() -> None:
    files, text = build()
    OUT_DIR.mkdir(exist_ok=True)
    for old in OUT_DIR.glob("*.bin"):
        if old.name not in files:
            old.unlink()
    for name, data in files.items():
        (OUT_DIR / name).write_bytes(data)
    (OUT_DIR / "expected.json").write_text(text)
    total = sum(len(d) for d in files.values()) + len(text)
    print(f"wrote {len(files)} files and expected.json to {OUT_DIR} ({total:,} bytes)")


if __name__ == "__main__":
    main()
