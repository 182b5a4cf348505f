"""The quantized feature-pyramid file format (``.ifpyr``), version 1.

The server computes the feature pyramid F1..F4 once per image and ships it to the browser,
which dequantises it and runs the per-click decoder on it. This module writes and reads that
file; ``static/js/pyramid.js`` is the browser's reader, and the shared vectors in
``tests/vectors/pyramid/`` keep the two in step. ``docs/pyramid-format.md`` is the same
specification with a table of sizes.

File layout (all integers little-endian)
========================================

======  ======  ==========  ==============================================================
offset  size    type        field
======  ======  ==========  ==============================================================
0       8       bytes       magic ``89 49 46 50 59 52 0D 0A`` (``\\x89IFPYR\\r\\n``; the 0x89
                            and the CR LF catch 7-bit and newline-converting transfers)
8       2       uint16      format version, ``1``
10      2       uint16      flags, ``0`` (reserved; readers refuse any other value)
12      4       uint32      ``N``: byte length of the JSON header, padding included
16      4       uint32      CRC-32 of the ``N`` header bytes
20      N       UTF-8       JSON header (an object), padded with spaces (0x20) so that
                            ``20 + N`` is a multiple of 16
20+N    P       bytes       payload, ``P = header["payload"]["length"]``
======  ======  ==========  ==============================================================

The file ends exactly at ``20 + N + P``: a shorter file is truncated, a longer one has
trailing bytes; both are errors. CRC-32 is the common one (ISO-HDLC, as ``zlib.crc32``,
PNG, gzip: reflected polynomial 0xEDB88320, initial and final XOR 0xFFFFFFFF).

JSON header
-----------

Every key below is required; unknown keys are refused (free-form data goes in ``extra``)::

    {
      "format": "interformer-pyramid",
      "model": {"id": "interformer-tinyvit", "version": "1"},        # strings
      "image": {"h": 480, "w": 640},                                 # the original image
      "canvas": {"image_h": 480, "image_w": 640, "scale": 0.8,       # CanvasGeometry.to_dict()
                 "resized_h": 384, "resized_w": 512, "canvas_h": 384, "canvas_w": 512},
      "levels": [                                                    # 1..16 levels, F1 first
        {"name": "F1", "stride": 4, "shape": [32, 96, 128],         # (C, H, W) = (C, canvas_h /
                                                                     #  stride, canvas_w / stride)
         "scheme": "int8", "clip": null, "bias": false, "filter": "none",
         "segments": {                                               # byte ranges of the payload
           "scale":      {"offset": 0,   "length": 128,    "dtype": "float32"},
           "zero_point": {"offset": 128, "length": 32,     "dtype": "int8"},
           "data":       {"offset": 160, "length": 393216, "dtype": "int8"}}},
        ...],
      "payload": {"length": 715616, "crc32": 1841661845, "alignment": 16},
      "extra": {}                                                    # anything JSON (informational)
    }

Checks made by both readers: ``image`` equals ``canvas.image_h/w``; ``canvas_h`` and
``canvas_w`` are multiples of 32, equal to ``resized_h``/``resized_w`` rounded up to 32;
every level's ``shape[1] * stride == canvas_h`` and ``shape[2] * stride == canvas_w``;
level names are unique; every segment lies inside the payload, starts at a multiple of 16
(relative to the payload, which itself starts at a multiple of 16 of the file, so a reader
can view it as a typed array in place), has exactly the length its dtype and count need,
and no two segments overlap. Segment offsets are relative to the start of the payload;
the writer lays them out level by level in the order scale, zero_point, bias, data, with
zero bytes as padding, but readers must not rely on the order.

Schemes (per level)
-------------------

All data is stored in C order of the (C, H, W) level (channel-major, as PyTorch/ONNX NCHW).

``f32``
    ``data``: float32, C*H*W values. Lossless.
``f16``
    ``data``: IEEE binary16, C*H*W values; dequantised exactly to float32. Values above
    65504 in magnitude are refused by the writer.
``int8``
    Per-channel affine, the ONNX ``DequantizeLinear`` convention (axis 0 of CHW)::

        x[c, y, x] = (q[c, y, x] - zero_point[c]) * scale[c]   (+ bias[c] if "bias": true)

    ``scale``: float32 [C], finite and > 0; ``zero_point``: int8 [C] (signed, like q);
    ``data``: int8, C*H*W. Arithmetic is float32: ``q - zero_point`` is an exact integer,
    the product is rounded to float32 once, and the bias (if any) is added in float32, so
    every reader gives bit-identical results.
``int4``
    The same with 4-bit signed values q in [-8, 7] and zero points in [-8, 7] (stored as
    int8 [C]). ``data`` (dtype ``int4x2``): two values per byte, ONNX INT4 packing: value
    ``2k`` in the low nibble of byte ``k``, value ``2k + 1`` in the high nibble, nibbles
    two's complement; ceil(C*H*W / 2) bytes (the last high nibble is 0 if the count is odd).
    The packing runs over the flat C*H*W sequence, so a channel may start mid-byte.

Quantization parameters (how the writer chooses them; readers only apply the formula):

- Range per channel: ``[lo, hi]`` = min/max, or with ``clip=p`` (50 < p <= 100) the
  ``100 - p`` and ``p`` percentiles (numpy's linear interpolation); values outside are
  clamped. ``clip`` is recorded in the header for information.
- Without bias (the default; pure ONNX ``DequantizeLinear``): the range is widened to
  include 0 (as onnxruntime's quantizer does, so that zero_point fits the integer type
  and 0 is exact), ``scale = (hi - lo) / (qmax - qmin)`` rounded up to float32,
  ``zero_point = round(qmin - lo / scale)``, ``q = clamp(round(x / scale) + zero_point)``.
  The error on a value inside the range is at most ``scale / 2`` (plus float32 rounding).
- ``bias: true`` (option ``+bias``): a float32 ``bias`` [C] segment is added and the
  range is *not* widened to 0: ``bias = lo``, ``zero_point = qmin``,
  ``scale = (hi - lo) / (qmax - qmin)``, ``q = clamp(round((x - bias) / scale) + qmin)``.
  All 2^bits codes cover the channel's own range, which helps channels far from 0. In
  ONNX it is ``DequantizeLinear`` followed by ``Add`` of bias reshaped to (C, 1, 1).
- A constant-zero channel gets ``scale = 1``. Rounding is half to even.

Filter (per level, integer schemes only): ``"none"``, or ``"delta"`` (option ``+delta``):
the stored codes are the differences of consecutive codes of the flat C*H*W sequence,
modulo 2^bits (``d[0] = q[0]``, ``d[i] = (q[i] - q[i-1]) mod 2^bits``, stored as the same
bit pattern: int8 bytes, or nibbles packed as above). It does not change the values nor the
raw size; it makes smooth feature maps compress better with HTTP gzip/brotli. Readers undo
it with a running sum modulo 2^bits.

Versioning: any change that alters how bytes are read bumps the format version; readers
refuse versions they do not know. Informational additions go in ``extra``.

API
===

- ``encode_pyramid(levels, meta, scheme) -> bytes``: ``levels`` are float arrays (C, H, W)
  (a leading batch axis of 1 is accepted), ``meta`` is ``{"model_id", "model_version",
  "canvas": CanvasGeometry or its to_dict(), "extra"?: dict}``, ``scheme`` one spec or a
  list of one per level. A spec is a string ``"f32" | "f16" | "int8" | "int4"`` with
  options appended by ``+``: ``"int4+clip=99.9+bias+delta"``, or a dict
  ``{"scheme": "int4", "clip": 99.9, "bias": True, "filter": "delta"}``.
- ``decode_pyramid(data) -> (levels: list of float32 (C, H, W) arrays, header: dict)``.
- ``decode_pyramid_quantized(data) -> (list[QuantizedLevel], header)``: the codes, scales,
  zero points (and biases) as stored (filter undone, int4 unpacked), e.g. to feed an ONNX
  graph that starts with ``DequantizeLinear(q, scale, zero_point, axis=0)``.
- ``quantize_level(x, spec) -> QuantizedLevel`` and ``dequantize_level(q) -> float32``.
- ``write_pyramid_file(path, levels, meta, scheme)`` (atomic: temp file in the same folder,
  fsync, ``os.replace``), ``read_pyramid_file(path)``, ``read_header(data)`` (the validated
  header; the whole file is checked).
- ``synthetic_pyramid(h, w)`` (smooth random GELU-like levels) and ``size_table()`` give the
  size table of the docs: ``python -m model_export.pyramid_format``.
- Every problem with a file raises ``PyramidFormatError`` (a ``ValueError``) with a message
  naming it; bad arguments to the writer raise ``ValueError``.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ALIGNMENT",
    "FORMAT_VERSION",
    "MAGIC",
    "PyramidFormatError",
    "QuantizedLevel",
    "SchemeSpec",
    "decode_pyramid",
    "decode_pyramid_quantized",
    "dequantize_level",
    "encode_pyramid",
    "pack_int4",
    "quantize_level",
    "read_header",
    "read_pyramid_file",
    "synthetic_pyramid",
    "unpack_int4",
    "write_pyramid_file",
]

MAGIC = b"\x89IFPYR\r\n"
FORMAT_VERSION = 1
FORMAT_NAME = "interformer-pyramid"
PREAMBLE = struct.Struct("<8sHHII")  # magic, version, flags, header length, header crc32
PREAMBLE_SIZE = PREAMBLE.size  # 20
ALIGNMENT = 16
MAX_LEVELS = 16
CANVAS_MULTIPLE = 32

SCHEMES = ("f32", "f16", "int8", "int4")
FILTERS = ("none", "delta")
LEVEL_NAMES = ("F1", "F2", "F3", "F4")
LEVEL_STRIDES = (4, 8, 16, 32)
DEFAULT_CHANNELS = (32, 64, 128, 256)

_QRANGE = {"int8": (-128, 127), "int4": (-8, 7)}
_BITS = {"int8": 8, "int4": 4}
_ITEMSIZE = {"float32": 4, "float16": 2, "int8": 1}
_NP_DTYPE = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2"), "int8": np.dtype("i1")}
_DATA_DTYPE = {"f32": "float32", "f16": "float16", "int8": "int8", "int4": "int4x2"}
_F16_MAX = 65504.0
_CANVAS_KEYS = ("image_h", "image_w", "scale", "resized_h", "resized_w", "canvas_h", "canvas_w")
_TOP_KEYS = ("format", "model", "image", "canvas", "levels", "payload", "extra")
_LEVEL_KEYS = ("name", "stride", "shape", "scheme", "clip", "bias", "filter", "segments")


class PyramidFormatError(ValueError):
    """A pyramid file that cannot be read: corrupt, truncated, or not this format/version."""


# ======================================================================================
# Scheme specs
# ======================================================================================
@dataclass(frozen=True)
class SchemeSpec:
    """How one level is stored: ``scheme`` plus the options of the integer schemes."""

    scheme: str = "int8"
    clip: float | None = None  # percentile p: per-channel range [P(100 - p), P(p)]; None: min/max
    bias: bool = False
    filter: str = "none"

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {self.scheme!r} (known: {', '.join(SCHEMES)})")
        if self.filter not in FILTERS:
            raise ValueError(f"unknown filter {self.filter!r} (known: {', '.join(FILTERS)})")
        if not isinstance(self.bias, bool):
            raise ValueError(f"bias must be a bool, got {self.bias!r}")
        if self.clip is not None:
            if isinstance(self.clip, bool) or not isinstance(self.clip, (int, float)):
                raise ValueError(f"clip must be a percentile in (50, 100], got {self.clip!r}")
            if not 50 < float(self.clip) <= 100:
                raise ValueError(f"clip must be a percentile in (50, 100], got {self.clip!r}")
        if self.scheme in ("f32", "f16") and (self.clip is not None or self.bias or self.filter != "none"):
            raise ValueError(f"scheme {self.scheme!r} takes no options (clip, bias, filter are for int8/int4)")

    @classmethod
    def parse(cls, spec: str | dict | SchemeSpec) -> SchemeSpec:
        """``"int4+clip=99.9+bias+delta"``, ``{"scheme": "int4", "clip": 99.9, ...}`` or a SchemeSpec."""
        if isinstance(spec, SchemeSpec):
            return spec
        if isinstance(spec, dict):
            unknown = set(spec) - {"scheme", "clip", "bias", "filter"}
            if unknown:
                raise ValueError(f"unknown scheme option(s) {sorted(unknown)}")
            return cls(**spec)
        if not isinstance(spec, str):
            raise ValueError(f"a scheme is a string or a dict, got {spec!r}")
        name, *opts = spec.strip().split("+")
        kw: dict[str, Any] = {"scheme": name}
        for o in opts:
            if o == "bias":
                kw["bias"] = True
            elif o == "delta":
                kw["filter"] = "delta"
            elif o.startswith("clip="):
                try:
                    kw["clip"] = float(o[5:])
                except ValueError:
                    raise ValueError(f"bad clip option {o!r} in scheme {spec!r}") from None
            else:
                raise ValueError(f"unknown option {o!r} in scheme {spec!r} (options: clip=P, bias, delta)")
        return cls(**kw)

    def __str__(self) -> str:
        s = self.scheme
        if self.clip is not None:
            s += f"+clip={self.clip:g}"
        if self.bias:
            s += "+bias"
        if self.filter == "delta":
            s += "+delta"
        return s


# ======================================================================================
# Quantization of one level
# ======================================================================================
@dataclass
class QuantizedLevel:
    """One level as stored (filter undone, int4 unpacked).

    ``data``: float32 (f32), float16 (f16) or int8 codes (int8; int4 with values in [-8, 7]),
    all of ``shape`` (C, H, W). ``scale`` float32 [C], ``zero_point`` int8 [C], ``bias``
    float32 [C] or None: the integer schemes only. ONNX: ``DequantizeLinear(data, scale,
    zero_point, axis=0)`` (+ ``Add(bias.reshape(C, 1, 1))``).
    """

    spec: SchemeSpec
    shape: tuple[int, int, int]
    data: np.ndarray
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    bias: np.ndarray | None = None

    @property
    def scheme(self) -> str:
        return self.spec.scheme


def _as_level(x: np.ndarray, what: str = "level") -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3 or min(a.shape) <= 0:
        raise ValueError(f"{what} must be a non-empty (C, H, W) array, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{what} must be a float array, got {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} holds non-finite values (NaN or inf)")
    return a


def _round_up_f32(v: np.ndarray) -> np.ndarray:
    """float64 -> the smallest float32 >= v (so a range divided by the scale never exceeds the codes)."""
    f = v.astype(np.float32)
    low = f.astype(np.float64) < v
    return np.where(low, np.nextafter(f, np.float32(np.inf)), f).astype(np.float32)


def quantize_level(x: np.ndarray, spec: str | dict | SchemeSpec = "int8") -> QuantizedLevel:
    """Quantize one (C, H, W) level with ``spec`` (see the module docstring for the rules)."""
    spec = SchemeSpec.parse(spec)
    a = _as_level(x)
    shape = tuple(int(s) for s in a.shape)
    if spec.scheme == "f32":
        return QuantizedLevel(spec, shape, a.astype(np.float32))
    if spec.scheme == "f16":
        if np.abs(a).max() > _F16_MAX:
            raise ValueError(f"values up to {np.abs(a).max():g} overflow float16 (max {_F16_MAX:g}); use f32 or int8")
        return QuantizedLevel(spec, shape, a.astype(np.float16))

    qmin, qmax = _QRANGE[spec.scheme]
    c = shape[0]
    flat = a.reshape(c, -1).astype(np.float64)
    if spec.clip is None or spec.clip == 100:
        lo, hi = flat.min(axis=1), flat.max(axis=1)
    else:
        lo, hi = np.percentile(flat, [100.0 - spec.clip, spec.clip], axis=1)
    if spec.bias:
        bias = lo.astype(np.float32)
        base = bias.astype(np.float64)
        scale = _round_up_f32(np.maximum(hi - base, 0.0) / (qmax - qmin))
        scale[scale <= 0] = 1.0
        zp = np.full(c, qmin, dtype=np.int8)
        q = np.rint((flat - base[:, None]) / scale.astype(np.float64)[:, None]) + qmin
    else:
        bias = None
        lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
        scale = _round_up_f32((hi - lo) / (qmax - qmin))
        scale[scale <= 0] = 1.0
        s64 = scale.astype(np.float64)
        zp = np.clip(np.rint(qmin - lo / s64), qmin, qmax).astype(np.int8)
        q = np.rint(flat / s64[:, None]) + zp.astype(np.float64)[:, None]
    q = np.clip(q, qmin, qmax).astype(np.int8).reshape(shape)
    return QuantizedLevel(spec, shape, q, scale, zp, bias)


def dequantize_level(q: QuantizedLevel) -> np.ndarray:
    """float32 (C, H, W): ``(q - zero_point) * scale (+ bias)`` in float32, per channel."""
    if q.scheme in ("f32", "f16"):
        return q.data.astype(np.float32)
    c = q.shape[0]
    d = q.data.astype(np.float32) - q.zero_point.astype(np.float32).reshape(c, 1, 1)
    out = d * q.scale.astype(np.float32).reshape(c, 1, 1)
    if q.bias is not None:
        out = out + q.bias.astype(np.float32).reshape(c, 1, 1)
    return out.astype(np.float32, copy=False)


# ----- storage helpers: int4 packing and the delta filter -------------------------------
def pack_int4(values: np.ndarray) -> np.ndarray:
    """Flat int values in [-8, 7] -> uint8 bytes, value 2k in the low nibble of byte k (ONNX INT4)."""
    v = np.asarray(values).reshape(-1)
    if v.size and (v.min() < -8 or v.max() > 7):
        raise ValueError("int4 values must lie in [-8, 7]")
    n = (v.astype(np.int16) & 0xF).astype(np.uint8)
    if n.size % 2:
        n = np.append(n, np.uint8(0))
    return (n[0::2] | (n[1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray, count: int) -> np.ndarray:
    """Inverse of :func:`pack_int4`: the first ``count`` values as int8 in [-8, 7]."""
    p = np.asarray(packed, dtype=np.uint8).reshape(-1)
    n = np.empty(p.size * 2, dtype=np.uint8)
    n[0::2] = p & 0xF
    n[1::2] = p >> 4
    return ((n[:count].astype(np.int8) ^ 8) - 8).astype(np.int8)


def _delta_encode(codes: np.ndarray, bits: int) -> np.ndarray:
    """Flat int8 codes -> differences modulo 2^bits (as int8 codes of the same width)."""
    u = codes.reshape(-1).view(np.uint8)
    d = np.diff(u, prepend=np.uint8(0)).astype(np.uint8)  # uint8 arithmetic wraps mod 256
    if bits == 4:
        d &= 0xF
        return ((d.astype(np.int8) ^ 8) - 8).astype(np.int8)
    return d.view(np.int8)


def _delta_decode(codes: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of :func:`_delta_encode`: a running sum modulo 2^bits."""
    s = np.cumsum(codes.reshape(-1).view(np.uint8), dtype=np.uint8)  # wraps mod 256
    if bits == 4:
        s &= 0xF
        return ((s.astype(np.int8) ^ 8) - 8).astype(np.int8)
    return s.view(np.int8)


# ======================================================================================
# Header validation (shared by the writer's self-check and the reader)
# ======================================================================================
def _is_int(v: Any) -> bool:
    # JSON "4.0" is an integer for JavaScript's Number.isInteger; accept it here too.
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and math.isfinite(v) and v.is_integer())


def _is_num(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _fail(msg: str) -> None:
    raise PyramidFormatError(f"header: {msg}")


def _obj(v: Any, what: str, keys: tuple[str, ...]) -> dict:
    if not isinstance(v, dict):
        _fail(f"{what} must be an object")
    for k in keys:
        if k not in v:
            _fail(f"missing field '{k}' in {what}")
    extra = [k for k in v if k not in keys]
    if extra:
        _fail(f"unknown field '{extra[0]}' in {what}")
    return v


def _pos_int(v: Any, what: str, zero_ok: bool = False) -> int:
    if not _is_int(v) or v < (0 if zero_ok else 1):
        _fail(f"{what} must be a {'non-negative' if zero_ok else 'positive'} integer, got {json.dumps(v)}")
    return int(v)


def _expected_segments(scheme: str, bias: bool, count: int, channels: int) -> dict[str, tuple[str, int]]:
    """Segment name -> (dtype, byte length) that a level must have."""
    if scheme == "f32":
        return {"data": ("float32", 4 * count)}
    if scheme == "f16":
        return {"data": ("float16", 2 * count)}
    segs = {"scale": ("float32", 4 * channels), "zero_point": ("int8", channels)}
    if bias:
        segs["bias"] = ("float32", 4 * channels)
    segs["data"] = ("int8", count) if scheme == "int8" else ("int4x2", (count + 1) // 2)
    return segs


def _validate_canvas(cv: Any) -> dict:
    cv = _obj(cv, "canvas", _CANVAS_KEYS)
    for k in _CANVAS_KEYS:
        if k == "scale":
            if not _is_num(cv[k]) or cv[k] <= 0:
                _fail(f"canvas.scale must be a positive number, got {json.dumps(cv[k])}")
        else:
            _pos_int(cv[k], f"canvas.{k}")
    for side in ("h", "w"):
        r, c = int(cv[f"resized_{side}"]), int(cv[f"canvas_{side}"])
        if c % CANVAS_MULTIPLE or c != -(-r // CANVAS_MULTIPLE) * CANVAS_MULTIPLE:
            _fail(
                f"canvas_{side} {c} must be resized_{side} {r} rounded up to a multiple of {CANVAS_MULTIPLE}"
            )
    return cv


def _validate_header(h: Any) -> list[dict]:
    """Check a parsed header; return per level {name, shape, spec, segments} for the decoder."""
    if not isinstance(h, dict):
        _fail("must be a JSON object")
    _obj(h, "the header", _TOP_KEYS)
    if h["format"] != FORMAT_NAME:
        _fail(f"format must be '{FORMAT_NAME}', got {json.dumps(h['format'])}")
    m = _obj(h["model"], "model", ("id", "version"))
    if not isinstance(m["id"], str) or not m["id"]:
        _fail("model.id must be a non-empty string")
    if not isinstance(m["version"], str):
        _fail("model.version must be a string")
    im = _obj(h["image"], "image", ("h", "w"))
    _pos_int(im["h"], "image.h")
    _pos_int(im["w"], "image.w")
    cv = _validate_canvas(h["canvas"])
    if (im["h"], im["w"]) != (cv["image_h"], cv["image_w"]):
        _fail(
            f"image size {im['h']}x{im['w']} is inconsistent with the canvas "
            f"(image_h x image_w = {cv['image_h']}x{cv['image_w']})"
        )
    if not isinstance(h["extra"], dict):
        _fail("extra must be an object")
    p = _obj(h["payload"], "payload", ("length", "crc32", "alignment"))
    plen = _pos_int(p["length"], "payload.length", zero_ok=True)
    if not _is_int(p["crc32"]) or not 0 <= p["crc32"] <= 0xFFFFFFFF:
        _fail(f"payload.crc32 must be an integer in [0, 2^32), got {json.dumps(p['crc32'])}")
    if p["alignment"] != ALIGNMENT:
        _fail(f"payload.alignment must be {ALIGNMENT}, got {json.dumps(p['alignment'])}")

    levels = h["levels"]
    if not isinstance(levels, list) or not 1 <= len(levels) <= MAX_LEVELS:
        _fail(f"levels must be a list of 1 to {MAX_LEVELS} levels")
    names: set[str] = set()
    spans: list[tuple[int, int, str]] = []
    out = []
    for i, lv in enumerate(levels):
        where = f"levels[{i}]"
        _obj(lv, where, _LEVEL_KEYS)
        name = lv["name"]
        if not isinstance(name, str) or not name:
            _fail(f"{where}.name must be a non-empty string")
        if name in names:
            _fail(f"duplicate level name {json.dumps(name)}")
        names.add(name)
        where = f"level {name}"
        stride = _pos_int(lv["stride"], f"{where} stride")
        shape = lv["shape"]
        if not isinstance(shape, list) or len(shape) != 3:
            _fail(f"{where} shape must be a list [C, H, W], got {json.dumps(shape)}")
        c, hh, ww = (_pos_int(s, f"{where} shape") for s in shape)
        if hh * stride != cv["canvas_h"] or ww * stride != cv["canvas_w"]:
            _fail(
                f"{where} shape {json.dumps(shape)} at stride {stride} is inconsistent with the canvas "
                f"{cv['canvas_h']}x{cv['canvas_w']} (expected H x W = canvas / stride)"
            )
        scheme = lv["scheme"]
        if scheme not in SCHEMES:
            _fail(f"unknown scheme {json.dumps(scheme)} for {where} (known: {', '.join(SCHEMES)})")
        filt = lv["filter"]
        if filt not in FILTERS:
            _fail(f"unknown filter {json.dumps(filt)} for {where} (known: {', '.join(FILTERS)})")
        if not isinstance(lv["bias"], bool):
            _fail(f"{where} bias must be true or false")
        clip = lv["clip"]
        if clip is not None and (not _is_num(clip) or not 50 < clip <= 100):
            _fail(f"{where} clip must be null or a percentile in (50, 100], got {json.dumps(clip)}")
        if scheme in ("f32", "f16") and (lv["bias"] or filt != "none" or clip is not None):
            _fail(f"{where}: scheme {scheme} takes no bias, filter or clip")
        count = c * hh * ww
        expected = _expected_segments(scheme, lv["bias"], count, c)
        segs = lv["segments"]
        if not isinstance(segs, dict):
            _fail(f"{where} segments must be an object")
        for k in expected:
            if k not in segs:
                _fail(f"{where} is missing segment '{k}'")
        for k in segs:
            if k not in expected:
                _fail(f"{where} has an unexpected segment '{k}' for scheme {scheme}")
        seg_out = {}
        for k, (dtype, length) in expected.items():
            s = _obj(segs[k], f"{where} segment '{k}'", ("offset", "length", "dtype"))
            if s["dtype"] != dtype:
                _fail(f"{where} segment '{k}' dtype must be {dtype}, got {json.dumps(s['dtype'])}")
            off = _pos_int(s["offset"], f"{where} segment '{k}' offset", zero_ok=True)
            ln = _pos_int(s["length"], f"{where} segment '{k}' length", zero_ok=True)
            if ln != length:
                _fail(f"{where} segment '{k}' has length {ln}, expected {length}")
            if off % ALIGNMENT:
                _fail(f"{where} segment '{k}' offset {off} is not aligned to {ALIGNMENT}")
            if off + ln > plen:
                _fail(f"{where} segment '{k}' [{off}, {off + ln}) lies outside the payload of {plen} bytes")
            spans.append((off, off + ln, f"{name}.{k}"))
            seg_out[k] = (off, ln)
        spec = SchemeSpec(scheme, None if clip is None else float(clip), lv["bias"], filt)
        out.append({"name": name, "stride": stride, "shape": (c, hh, ww), "spec": spec, "segments": seg_out})
    spans.sort()
    for (a0, a1, an), (b0, b1, bn) in zip(spans, spans[1:]):
        if b0 < a1:
            _fail(f"segments {an} and {bn} overlap")
    return out


# ======================================================================================
# Writing
# ======================================================================================
def _canvas_dict(canvas: Any) -> dict:
    d = canvas.to_dict() if hasattr(canvas, "to_dict") else canvas
    if not isinstance(d, dict):
        raise ValueError(f"meta['canvas'] must be a CanvasGeometry or its to_dict(), got {type(canvas).__name__}")
    return {k: d[k] for k in _CANVAS_KEYS if k in d} | {k: v for k, v in d.items() if k not in _CANVAS_KEYS}


def _normalize_meta(meta: dict) -> tuple[dict, dict, dict]:
    if not isinstance(meta, dict):
        raise ValueError("meta must be a dict")
    unknown = set(meta) - {"model_id", "model_version", "canvas", "extra"}
    missing = {"model_id", "model_version", "canvas"} - set(meta)
    if unknown or missing:
        raise ValueError(
            f"meta needs model_id, model_version, canvas (and optionally extra); "
            f"missing {sorted(missing)}, unknown {sorted(unknown)}"
        )
    model = {"id": str(meta["model_id"]), "version": str(meta["model_version"])}
    extra = meta.get("extra", {})
    if not isinstance(extra, dict):
        raise ValueError("meta['extra'] must be a dict")
    canvas = _canvas_dict(meta["canvas"])
    try:
        _validate_canvas(canvas)
    except PyramidFormatError as e:
        raise ValueError(f"meta['canvas'] is not a valid canvas geometry: {e}") from None
    return model, canvas, extra


def _pad(n: int) -> int:
    return -n % ALIGNMENT


def _level_segments(q: QuantizedLevel) -> dict[str, np.ndarray]:
    """The bytes of each segment of a quantized level, in file order."""
    if q.scheme == "f32":
        return {"data": q.data.astype("<f4")}
    if q.scheme == "f16":
        return {"data": q.data.astype("<f2")}
    bits = _BITS[q.scheme]
    codes = q.data.reshape(-1)
    if q.spec.filter == "delta":
        codes = _delta_encode(codes, bits)
    segs = {"scale": q.scale.astype("<f4"), "zero_point": q.zero_point.astype(np.int8)}
    if q.bias is not None:
        segs["bias"] = q.bias.astype("<f4")
    segs["data"] = codes.astype(np.int8) if bits == 8 else pack_int4(codes)
    return segs


def _assemble(header: dict, payload: bytes) -> bytes:
    """Preamble + padded JSON header + payload (the header's payload fields must be set)."""
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    text += b" " * _pad(PREAMBLE_SIZE + len(text))
    pre = PREAMBLE.pack(MAGIC, FORMAT_VERSION, 0, len(text), zlib.crc32(text))
    return pre + text + payload


def encode_pyramid(
    levels: list[np.ndarray],
    meta: dict,
    scheme: str | dict | SchemeSpec | list = "int8",
    names: list[str] | None = None,
    strides: list[int] | None = None,
) -> bytes:
    """Encode a pyramid (F1 first) into the file format; see the module docstring.

    ``names`` default to F1, F2, ...; ``strides`` to 4, 8, 16, ... (each level's H x W must
    be the canvas divided by its stride).
    """
    model, canvas, extra = _normalize_meta(meta)
    if not isinstance(levels, (list, tuple)) or not 1 <= len(levels) <= MAX_LEVELS:
        raise ValueError(f"levels must be a list of 1 to {MAX_LEVELS} arrays")
    n = len(levels)
    specs = list(scheme) if isinstance(scheme, (list, tuple)) else [scheme] * n
    if len(specs) != n:
        raise ValueError(f"got {len(specs)} schemes for {n} levels")
    specs = [SchemeSpec.parse(s) for s in specs]
    names = list(names) if names is not None else [f"F{i + 1}" for i in range(n)]
    strides = list(strides) if strides is not None else [4 * 2**i for i in range(n)]
    if len(names) != n or len(strides) != n:
        raise ValueError("names and strides need one entry per level")

    payload = bytearray()
    level_headers = []
    for i, (x, spec) in enumerate(zip(levels, specs)):
        a = _as_level(x, f"level {names[i]}")
        ch, cw = canvas["canvas_h"], canvas["canvas_w"]
        if a.shape[1] * strides[i] != ch or a.shape[2] * strides[i] != cw:
            raise ValueError(
                f"level {names[i]} of shape {tuple(a.shape)} at stride {strides[i]} is inconsistent "
                f"with the canvas {ch}x{cw}"
            )
        q = quantize_level(a, spec)
        segs = {}
        for k, arr in _level_segments(q).items():
            payload += b"\0" * _pad(len(payload))
            b = arr.tobytes()
            segs[k] = {"offset": len(payload), "length": len(b), "dtype": _dtype_name(q.scheme, k)}
            payload += b
        level_headers.append(
            {
                "name": names[i],
                "stride": int(strides[i]),
                "shape": [int(s) for s in q.shape],
                "scheme": spec.scheme,
                "clip": None if spec.clip is None else float(spec.clip),
                "bias": spec.bias,
                "filter": spec.filter,
                "segments": segs,
            }
        )
    payload += b"\0" * _pad(len(payload))
    payload = bytes(payload)
    header = {
        "format": FORMAT_NAME,
        "model": model,
        "image": {"h": canvas["image_h"], "w": canvas["image_w"]},
        "canvas": canvas,
        "levels": level_headers,
        "payload": {"length": len(payload), "crc32": zlib.crc32(payload), "alignment": ALIGNMENT},
        "extra": extra,
    }
    try:
        _validate_header(json.loads(json.dumps(header, allow_nan=False)))
    except PyramidFormatError as e:  # bad meta (canvas, names, ...): the caller's mistake
        raise ValueError(str(e)) from None
    except (TypeError, ValueError) as e:
        raise ValueError(f"meta is not JSON-serialisable: {e}") from None
    return _assemble(header, payload)


def _dtype_name(scheme: str, segment: str) -> str:
    if segment == "data":
        return _DATA_DTYPE[scheme]
    return "int8" if segment == "zero_point" else "float32"


def write_pyramid_file(path: str | os.PathLike, levels: list[np.ndarray], meta: dict, scheme="int8", **kw) -> int:
    """Encode and write atomically (temp file in the same folder, fsync, ``os.replace``); returns the size."""
    data = encode_pyramid(levels, meta, scheme, **kw)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return len(data)


# ======================================================================================
# Reading
# ======================================================================================
def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _parse(data: bytes | bytearray | memoryview) -> tuple[dict, list[dict], memoryview]:
    """Check everything up to the payload checksum; return header, level infos, payload."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    mv = memoryview(data).cast("B")
    n = len(mv)
    if n < PREAMBLE_SIZE:
        k = min(n, len(MAGIC))
        if bytes(mv[:k]) != MAGIC[:k]:
            raise PyramidFormatError("bad magic: not an InterFormer pyramid file")
        raise PyramidFormatError(f"truncated: {n} bytes, shorter than the {PREAMBLE_SIZE}-byte preamble")
    magic, version, flags, hlen, hcrc = PREAMBLE.unpack_from(mv, 0)
    if magic != MAGIC:
        raise PyramidFormatError("bad magic: not an InterFormer pyramid file")
    if version != FORMAT_VERSION:
        raise PyramidFormatError(f"unsupported format version {version} (this reader reads {FORMAT_VERSION})")
    if flags != 0:
        raise PyramidFormatError(f"unsupported flags 0x{flags:04x} (must be 0 in version {FORMAT_VERSION})")
    start = PREAMBLE_SIZE + hlen
    if start > n:
        raise PyramidFormatError(f"truncated: the header needs {hlen} bytes, the file has {n - PREAMBLE_SIZE}")
    if start % ALIGNMENT:
        raise PyramidFormatError(f"header length {hlen} does not align the payload to {ALIGNMENT} bytes")
    text = mv[PREAMBLE_SIZE:start]
    if zlib.crc32(text) != hcrc:
        raise PyramidFormatError("header checksum mismatch: the header is corrupt")
    try:
        header = json.loads(bytes(text).decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise PyramidFormatError(f"header is not valid JSON: {e}") from None
    infos = _validate_header(header)
    plen = int(header["payload"]["length"])
    if n < start + plen:
        raise PyramidFormatError(f"truncated: the payload needs {plen} bytes, the file has {n - start}")
    if n > start + plen:
        raise PyramidFormatError(f"trailing bytes: {n - start - plen} bytes after the payload")
    payload = mv[start:]
    if zlib.crc32(payload) != header["payload"]["crc32"]:
        raise PyramidFormatError("payload checksum mismatch: the data is corrupt")
    return header, infos, payload


def _seg(payload: memoryview, info: dict, name: str, dtype: str) -> np.ndarray:
    off, ln = info["segments"][name]
    return np.frombuffer(payload, dtype=_NP_DTYPE[dtype], count=ln // _ITEMSIZE[dtype], offset=off)


def _read_level(payload: memoryview, info: dict) -> QuantizedLevel:
    spec, shape = info["spec"], info["shape"]
    name = info["name"]
    count = shape[0] * shape[1] * shape[2]
    if spec.scheme in ("f32", "f16"):
        d = _seg(payload, info, "data", "float32" if spec.scheme == "f32" else "float16")
        return QuantizedLevel(spec, shape, d.reshape(shape).copy())
    scale = _seg(payload, info, "scale", "float32").copy()
    zp = _seg(payload, info, "zero_point", "int8").copy()
    bias = _seg(payload, info, "bias", "float32").copy() if spec.bias else None
    if not np.all(np.isfinite(scale) & (scale > 0)):
        raise PyramidFormatError(f"level {name}: every scale must be finite and positive")
    qmin, qmax = _QRANGE[spec.scheme]
    if zp.min() < qmin or zp.max() > qmax:
        raise PyramidFormatError(f"level {name}: zero point out of range [{qmin}, {qmax}]")
    if bias is not None and not np.all(np.isfinite(bias)):
        raise PyramidFormatError(f"level {name}: every bias must be finite")
    off, ln = info["segments"]["data"]
    raw = np.frombuffer(payload, dtype=np.int8, count=ln, offset=off)
    codes = raw if spec.scheme == "int8" else unpack_int4(raw.view(np.uint8), count)
    if spec.filter == "delta":
        codes = _delta_decode(codes, _BITS[spec.scheme])
    return QuantizedLevel(spec, shape, codes.reshape(shape).copy(), scale, zp, bias)


def read_header(data: bytes | bytearray | memoryview) -> dict:
    """The validated JSON header (the whole file is checked, checksums included)."""
    return _parse(data)[0]


def decode_pyramid_quantized(data: bytes | bytearray | memoryview) -> tuple[list[QuantizedLevel], dict]:
    """The levels as stored (filter undone, int4 unpacked) and the header."""
    header, infos, payload = _parse(data)
    return [_read_level(payload, i) for i in infos], header


def decode_pyramid(data: bytes | bytearray | memoryview) -> tuple[list[np.ndarray], dict]:
    """float32 (C, H, W) arrays, F1 first, and the header; raises PyramidFormatError on a bad file."""
    qs, header = decode_pyramid_quantized(data)
    return [dequantize_level(q) for q in qs], header


def read_pyramid_file(path: str | os.PathLike) -> tuple[list[np.ndarray], dict]:
    return decode_pyramid(Path(path).read_bytes())


# ======================================================================================
# A realistic-ish synthetic pyramid (sizes, tests, smoke tests)
# ======================================================================================
def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) bilinear upsampling matrix (align_corners=False)."""
    pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    pos = np.clip(pos, 0, n_in - 1)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    t = pos - i0
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), i0] += 1 - t
    m[np.arange(n_out), i1] += t
    return m


def synthetic_pyramid(
    canvas_h: int,
    canvas_w: int,
    channels: tuple[int, ...] = DEFAULT_CHANNELS,
    seed: int = 0,
    smooth: bool = True,
    strides: tuple[int, ...] | None = None,
) -> list[np.ndarray]:
    """A stand-in for a real pyramid (levels at ``strides``, default 4, 8, 16, ...): per level, smooth random fields through GroupNorm-like
    per-channel affine maps and a GELU (as the adapter's levels end), plus a little fine
    noise. ``smooth=False`` gives white noise through the same maps. Real images are the
    real measure; this only gives sizes and compressibility the right order of magnitude.
    """
    rng = np.random.default_rng(seed)
    out = []
    for i, c in enumerate(channels):
        s = strides[i] if strides is not None else 4 * 2**i
        h, w = canvas_h // s, canvas_w // s
        if smooth:
            lh, lw = max(2, h // 4), max(2, w // 4)
            low = rng.standard_normal((c, lh, lw))
            f = _interp_matrix(h, lh) @ low @ _interp_matrix(w, lw).T
            f /= f.std(axis=(1, 2), keepdims=True) + 1e-6
            f = f + 0.15 * rng.standard_normal(f.shape)
        else:
            f = rng.standard_normal((c, h, w))
        gain = np.exp(rng.normal(0.0, 0.4, c))[:, None, None]
        shift = rng.normal(0.0, 0.7, c)[:, None, None]
        z = gain * f + shift
        gelu = 0.5 * z * (1 + np.tanh(0.7978845608 * (z + 0.044715 * z**3)))
        out.append(gelu.astype(np.float32))
    return out


def size_table(canvas: int = 512, schemes: tuple | None = None, seed: int = 0) -> list[dict]:
    """Bytes per file for each scheme on a synthetic canvas x canvas pyramid: raw, and gzip -6
    (Python's gzip module) of the smooth pyramid and of a white-noise one (a pessimistic bound).
    A scheme may be a list of one spec per level."""
    import gzip

    from .geometry import CanvasGeometry

    schemes = schemes or (
        "f32", "f16", "int8", "int8+delta", "int8+bias", "int4", "int4+delta", "int4+bias", "int4+clip=99.9",
        ["int4", "int8", "int8", "int8"], ["int4", "int4", "int8", "int8"],
    )  # fmt: skip
    meta = {"model_id": "synthetic", "model_version": "0", "canvas": CanvasGeometry.for_image(canvas, canvas)}
    pyr = synthetic_pyramid(canvas, canvas, seed=seed)
    noise = synthetic_pyramid(canvas, canvas, seed=seed, smooth=False)
    rows = []
    for s in schemes:
        data = encode_pyramid(pyr, meta, s)
        dec, _ = decode_pyramid(data)
        hdr = PREAMBLE_SIZE + struct.unpack_from("<I", data, 12)[0]
        err = max(float(np.abs(a - b).max()) for a, b in zip(pyr, dec))
        sq = sum(float(((a.astype(np.float64) - b) ** 2).sum()) for a, b in zip(pyr, dec))
        rows.append(
            {
                "scheme": s if isinstance(s, str) else " / ".join(s),
                "bytes": len(data),
                "header_bytes": hdr,
                "gzip_bytes": len(gzip.compress(data, compresslevel=6, mtime=0)),
                "gzip_white_noise_bytes": len(gzip.compress(encode_pyramid(noise, meta, s), compresslevel=6, mtime=0)),
                "max_abs_err": err,
                "rmse": math.sqrt(sq / sum(a.size for a in pyr)),
            }
        )
    return rows


if __name__ == "__main__":  # python -m model_export.pyramid_format: the size table of the docs
    n = sum(c * (512 // s) ** 2 for c, s in zip(DEFAULT_CHANNELS, LEVEL_STRIDES))
    print(f"512x512 canvas, default channels {DEFAULT_CHANNELS}: {n} values")
    print("| scheme | bytes | bytes/value | gzip, smooth | gzip, white noise | max abs err | RMSE |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in size_table():
        print(
            f"| `{r['scheme']}` | {r['bytes']:,} | {r['bytes'] / n:.3f} | {r['gzip_bytes']:,} "
            f"| {r['gzip_white_noise_bytes']:,} | {r['max_abs_err']:.2g} | {r['rmse']:.2g} |"
        )
