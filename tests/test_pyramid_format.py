"""The pyramid file format (model_export/pyramid_format.py): round trips, error bounds, sizes,
corruption, the ONNX DequantizeLinear convention and the atomic write.

The browser's reader is checked against shared vectors in tests/test_pyramid_vectors.py and
tests/js/pyramid.test.js.
"""

from __future__ import annotations

import json
import os
import struct
import zlib

import numpy as np
import pytest

from model_export import pyramid_format as pf
from model_export.geometry import CanvasGeometry

SCHEMES = [
    "f32",
    "f16",
    "int8",
    "int8+clip=99.9",
    "int8+bias",
    "int8+delta",
    "int4",
    "int4+clip=99",
    "int4+bias+delta",
    "int8+clip=99.5+bias+delta",
]
# (image h, w, longest side) -> canvases 64x96, 320x480 (non-square), 512x512, 384x512.
IMAGES = [(64, 96, None), (320, 480, None), (512, 512, None), (480, 640, 512)]
_PYRAMIDS: dict = {}


def geometry(h, w, longest=None) -> CanvasGeometry:
    return CanvasGeometry.for_image(h, w, longest)


def meta(g: CanvasGeometry, **kw) -> dict:
    return {"model_id": "test-model", "model_version": "7", "canvas": g, **kw}


def pyramid(g: CanvasGeometry, seed: int = 0) -> list[np.ndarray]:
    key = (g.canvas_h, g.canvas_w, seed)
    if key not in _PYRAMIDS:
        _PYRAMIDS[key] = pf.synthetic_pyramid(g.canvas_h, g.canvas_w, seed=seed)
    return _PYRAMIDS[key]


def n_values(g: CanvasGeometry, channels=pf.DEFAULT_CHANNELS) -> int:
    return sum(c * (g.canvas_h // s) * (g.canvas_w // s) for c, s in zip(channels, pf.LEVEL_STRIDES))


def channel_range(x: np.ndarray, spec: pf.SchemeSpec) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel range the rules of the docstring give, recomputed independently."""
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    if spec.clip is None:
        lo, hi = flat.min(1), flat.max(1)
    else:
        lo, hi = np.percentile(flat, [100 - spec.clip, spec.clip], axis=1)
    if not spec.bias:
        lo, hi = np.minimum(lo, 0), np.maximum(hi, 0)
    return lo, hi


def assert_error_bound(x: np.ndarray, y: np.ndarray, q: pf.QuantizedLevel):
    """Per element: f32 exact; f16 within half an ulp; int: within scale / 2 of the clamped value."""
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    if q.scheme == "f32":
        assert np.array_equal(x, y)
        return
    if q.scheme == "f16":
        tol = np.maximum(np.abs(x64) * 2.0**-11, 2.0**-25)
        assert np.all(np.abs(y64 - x64) <= tol)
        return
    lo, hi = channel_range(x, q.spec)
    c = x.shape[0]
    target = np.clip(x64, lo.reshape(c, 1, 1), hi.reshape(c, 1, 1))
    half = q.scale.astype(np.float64).reshape(c, 1, 1) / 2
    slack = 1e-6 * (np.abs(x64) + np.abs(lo).reshape(c, 1, 1) + np.abs(hi).reshape(c, 1, 1)) + 1e-12
    err = np.abs(y64 - target)
    assert np.all(err <= half + slack), float((err - half).max())
    # And the step is what the range asks for: (hi - lo) / (2^bits - 1), in float32 (with bias,
    # lo is the float32 bias, which may differ from the percentile by half an ulp).
    levels = 255 if q.scheme == "int8" else 15
    want = np.maximum((hi - lo) / levels, 0)
    nz = want > 0
    assert np.allclose(q.scale[nz], want[nz], rtol=1e-6, atol=0)
    assert np.all(q.scale[~nz] == 1.0)


# --------------------------------------------------------------------------------------
# Round trips and error bounds
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("image", IMAGES, ids=lambda t: f"{t[0]}x{t[1]}" + (f"->{t[2]}" if t[2] else ""))
@pytest.mark.parametrize("scheme", SCHEMES)
def test_round_trip(scheme, image):
    g = geometry(*image)
    pyr = pyramid(g)
    data = pf.encode_pyramid(pyr, meta(g, extra={"who": "test"}), scheme)
    levels, header = pf.decode_pyramid(data)
    qs, header_q = pf.decode_pyramid_quantized(data)
    assert header == header_q
    assert header["canvas"] == g.to_dict()
    assert header["image"] == {"h": g.image_h, "w": g.image_w}
    assert header["model"] == {"id": "test-model", "version": "7"}
    assert header["extra"] == {"who": "test"}
    spec = pf.SchemeSpec.parse(scheme)
    assert len(levels) == 4
    for i, (x, y, q, lv) in enumerate(zip(pyr, levels, qs, header["levels"])):
        s = pf.LEVEL_STRIDES[i]
        assert lv["name"] == f"F{i + 1}" and lv["stride"] == s
        assert y.dtype == np.float32
        assert y.shape == x.shape == (pf.DEFAULT_CHANNELS[i], g.canvas_h // s, g.canvas_w // s)
        assert (lv["scheme"], lv["clip"], lv["bias"], lv["filter"]) == (spec.scheme, spec.clip, spec.bias, spec.filter)
        assert q.spec == spec
        # The reader's quantized view is exactly what quantize_level gives, and dequantises the same.
        ref = pf.quantize_level(x, spec)
        assert np.array_equal(q.data, ref.data)
        if ref.scale is not None:
            assert np.array_equal(q.scale, ref.scale) and np.array_equal(q.zero_point, ref.zero_point)
            assert (q.bias is None) == (ref.bias is None) and (q.bias is None or np.array_equal(q.bias, ref.bias))
        assert np.array_equal(y, pf.dequantize_level(ref))
        assert_error_bound(x, y, q)


def test_mixed_schemes_per_level_and_custom_names():
    g = geometry(320, 480)
    pyr = pyramid(g)
    schemes = ["int4+delta", {"scheme": "int8", "bias": True}, pf.SchemeSpec("int8", clip=99.0), "f16"]
    data = pf.encode_pyramid(pyr, meta(g), schemes, names=["a", "b", "c", "d"])
    levels, header = pf.decode_pyramid(data)
    assert [lv["scheme"] for lv in header["levels"]] == ["int4", "int8", "int8", "f16"]
    assert [lv["name"] for lv in header["levels"]] == ["a", "b", "c", "d"]
    assert header["levels"][0]["filter"] == "delta" and header["levels"][1]["bias"] is True
    assert header["levels"][2]["clip"] == 99.0
    assert np.array_equal(levels[3], pyr[3].astype(np.float16).astype(np.float32))


def test_fewer_levels_and_batch_axis():
    g = geometry(64, 64)
    pyr = [x[None] for x in pyramid(g)[:2]]  # (1, C, H, W) is accepted
    levels, header = pf.decode_pyramid(pf.encode_pyramid(pyr, meta(g), "f32"))
    assert len(levels) == 2 and np.array_equal(levels[1], pyr[1][0])


def test_special_values_int8():
    """Constant, all-zero, all-positive and all-negative channels; exact zeros stay zero."""
    x = np.zeros((6, 8, 8), np.float32)
    x[1] = 3.5  # constant positive
    x[2] = -2.0  # constant negative
    x[3] = np.linspace(5, 6, 64).reshape(8, 8)  # far from 0
    x[4] = np.linspace(-1, 2, 64).reshape(8, 8)
    x[4, 0, 0] = 0.0
    x[5] = np.linspace(-6, -5, 64).reshape(8, 8)
    for bias in (False, True):
        q = pf.quantize_level(x, pf.SchemeSpec("int8", bias=bias))
        y = pf.dequantize_level(q)
        assert np.all(y[0] == 0)
        assert np.all(np.abs(y[1] - 3.5) <= q.scale[1] / 2)
        assert np.all(np.abs(y[2] + 2.0) <= q.scale[2] / 2)
        assert_error_bound(x, y, q)
        if not bias:
            assert y[4, 0, 0] == 0.0  # zero is exact when the range includes it
            assert q.scale[3] == pytest.approx(6 / 255, rel=1e-6)  # widened to [0, 6]
        else:
            assert q.scale[3] == pytest.approx(1 / 255, rel=1e-6)  # its own range [5, 6]
            assert np.all(q.zero_point == -128) and y[1, 0, 0] == 3.5 and y[2, 0, 0] == -2.0
    # Clipping: one outlier no longer stretches the step; it is clamped to the top of the range.
    z = np.linspace(-1, 1, 10_000, dtype=np.float32).reshape(1, 100, 100)
    z[0, 0, 0] = 100.0
    plain, clipped = pf.quantize_level(z, "int8"), pf.quantize_level(z, "int8+clip=99.9")
    assert clipped.scale[0] < plain.scale[0] / 20
    assert pf.dequantize_level(clipped)[0, 0, 0] < 1.1


def test_int4_pack_unpack_and_delta():
    rng = np.random.default_rng(1)
    for n in (1, 2, 7, 64, 1001):
        v = rng.integers(-8, 8, n).astype(np.int8)
        packed = pf.pack_int4(v)
        assert packed.dtype == np.uint8 and packed.size == (n + 1) // 2
        assert np.array_equal(pf.unpack_int4(packed, n), v)
        for bits in (4, 8):
            codes = v if bits == 4 else rng.integers(-128, 128, n).astype(np.int8)
            d = pf._delta_encode(codes, bits)
            assert np.array_equal(pf._delta_decode(d, bits), codes)
    # ONNX INT4 packing: element 0 in the low nibble.
    assert pf.pack_int4(np.array([1, -8, -1, 7, -2], np.int8)).tolist() == [0x81, 0x7F, 0x0E]
    with pytest.raises(ValueError):
        pf.pack_int4(np.array([8]))


def test_scheme_spec_parsing():
    s = pf.SchemeSpec.parse("int4+clip=99.9+bias+delta")
    assert s == pf.SchemeSpec("int4", 99.9, True, "delta") and str(s) == "int4+clip=99.9+bias+delta"
    assert pf.SchemeSpec.parse({"scheme": "f16"}) == pf.SchemeSpec("f16")
    assert pf.SchemeSpec.parse(s) is s
    for bad in ("int3", "int8+zstd", "int8+clip=abc", "int8+clip=40", "f16+bias", "f32+delta", 8,
                {"scheme": "int8", "bits": 8}):  # fmt: skip
        with pytest.raises(ValueError):
            pf.SchemeSpec.parse(bad)


# --------------------------------------------------------------------------------------
# The ONNX DequantizeLinear convention
# --------------------------------------------------------------------------------------
def _dql_model(q: pf.QuantizedLevel):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    c = q.shape[0]
    if q.scheme == "int8":
        opset = 13
        x = numpy_helper.from_array(q.data, "q")
        zp = numpy_helper.from_array(q.zero_point, "zp")
    else:
        opset = 21
        x = helper.make_tensor("q", TensorProto.INT4, q.shape, q.data.reshape(-1).tolist())
        zp = helper.make_tensor("zp", TensorProto.INT4, [c], q.zero_point.tolist())
    inits = [x, zp, numpy_helper.from_array(q.scale, "scale")]
    nodes = [helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["deq" if q.bias is not None else "y"], axis=0)]
    if q.bias is not None:
        inits.append(numpy_helper.from_array(q.bias.reshape(c, 1, 1), "bias"))
        nodes.append(helper.make_node("Add", ["deq", "bias"], ["y"]))
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(q.shape))
    graph = helper.make_graph(nodes, "dql", [], [out], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


@pytest.mark.parametrize("scheme", ["int8", "int8+bias", "int4", "int4+bias+clip=99"])
def test_onnx_dequantize_linear_gives_the_same_values(scheme):
    ort = pytest.importorskip("onnxruntime")
    g = geometry(64, 96)
    x = pyramid(g)[1]
    data = pf.encode_pyramid(pyramid(g), meta(g), scheme)
    q = pf.decode_pyramid_quantized(data)[0][1]
    want = pf.decode_pyramid(data)[0][1]
    try:
        sess = ort.InferenceSession(_dql_model(q), providers=["CPUExecutionProvider"])
    except Exception as e:  # an onnxruntime without INT4 DequantizeLinear
        if q.scheme == "int4":
            pytest.skip(f"onnxruntime cannot run INT4 DequantizeLinear: {e}")
        raise
    (got,) = sess.run(None, {})
    assert got.dtype == np.float32 and got.shape == x.shape
    assert np.array_equal(got, want)


# --------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------
def _align(n: int) -> int:
    return -(-n // 16) * 16


def test_sizes_512(capsys):
    g = geometry(512, 512)
    n = n_values(g)
    assert n == 983_040
    rows = []
    for scheme in ["f32", "f16", "int8", "int8+bias", "int4", "int4+bias", "int4+delta"]:
        data = pf.encode_pyramid(pyramid(g), meta(g), scheme)
        hlen = struct.unpack_from("<I", data, 12)[0]
        spec = pf.SchemeSpec.parse(scheme)
        payload = 0
        for c, s in zip(pf.DEFAULT_CHANNELS, pf.LEVEL_STRIDES):
            count = c * (512 // s) ** 2
            per = {"f32": 4 * count, "f16": 2 * count, "int8": count, "int4": (count + 1) // 2}[spec.scheme]
            if spec.scheme in ("int8", "int4"):
                payload += _align(4 * c) + _align(c) + (_align(4 * c) if spec.bias else 0)
            payload += _align(per)
        assert len(data) == 20 + hlen + payload and hlen < 2048
        rows.append((scheme, len(data), len(data) / n))
    per_value = {s: b for s, _, b in rows}
    assert 4.0 < per_value["f32"] < 4.003 and 2.0 < per_value["f16"] < 2.003
    assert 1.0 < per_value["int8"] < 1.005 and 1.0 < per_value["int8+bias"] < 1.007
    assert 0.5 < per_value["int4"] < 0.505
    assert dict((s, b) for s, b, _ in rows)["int4"] <= 500_000  # the wire goal, before HTTP compression
    with capsys.disabled():
        print("\n512x512 pyramid (983,040 values): " + ", ".join(f"{s} {b:,} B ({v:.3f} B/value)" for s, b, v in rows))


# --------------------------------------------------------------------------------------
# Corrupt and truncated files
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_file() -> bytes:
    g = geometry(32, 96)
    pyr = pf.synthetic_pyramid(32, 96, channels=(3, 5, 7, 9), seed=3)
    return pf.encode_pyramid(pyr, meta(g), ["int4", "int8+delta", "int4+bias+delta", "f16"])


def _split(data: bytes) -> tuple[dict, bytes]:
    hlen = struct.unpack_from("<I", data, 12)[0]
    return json.loads(data[20 : 20 + hlen]), data[20 + hlen :]


def _rewrite(data: bytes, edit) -> bytes:
    header, payload = _split(data)
    edit(header)
    return pf._assemble(header, payload)


def _raises(data, match: str):
    with pytest.raises(pf.PyramidFormatError, match=match):
        pf.decode_pyramid(data)
    with pytest.raises(pf.PyramidFormatError, match=match):
        pf.decode_pyramid_quantized(data)


def test_every_single_bit_flip_is_detected(small_file):
    """No flipped bit anywhere (preamble, header, padding, payload) decodes silently."""
    assert isinstance(pf.PyramidFormatError("x"), ValueError)
    for i in range(len(small_file)):
        for mask in (0x01, 0x80):
            bad = bytearray(small_file)
            bad[i] ^= mask
            with pytest.raises(pf.PyramidFormatError):
                pf.decode_pyramid(bytes(bad))


def test_every_truncation_is_detected(small_file):
    for n in list(range(0, 64)) + list(range(64, len(small_file), 7)) + [len(small_file) - 1]:
        _raises(small_file[:n], "truncated")
    _raises(small_file + b"\0", "trailing bytes")


def test_named_corruptions(small_file):
    d = small_file
    header, payload = _split(d)
    _raises(b"GIF89a" + d[6:], "bad magic")
    _raises(d[:8] + struct.pack("<H", 2) + d[10:], "unsupported format version 2")
    _raises(d[:10] + struct.pack("<H", 4) + d[12:], "unsupported flags")
    _raises(d[:20] + b"{garbage" + d[28:], "header checksum mismatch")
    text = b'{"format": '
    text += b" " * (-(20 + len(text)) % 16)
    _raises(pf.PREAMBLE.pack(pf.MAGIC, 1, 0, len(text), zlib.crc32(text)) + text + payload, "header is not valid JSON")
    flipped = bytearray(d)
    flipped[-5] ^= 0xFF
    _raises(bytes(flipped), "payload checksum mismatch")
    _raises(_rewrite(d, lambda h: h["levels"][0].update(scheme="int2")), "unknown scheme")
    _raises(_rewrite(d, lambda h: h["levels"][1].update(shape=[5, 4, 6])), "inconsistent with the canvas")
    _raises(_rewrite(d, lambda h: h["canvas"].update(image_w=97)), "inconsistent with the canvas")
    _raises(_rewrite(d, lambda h: h["levels"][3]["segments"]["data"].update(length=2)), "has length 2")
    _raises(_rewrite(d, lambda h: h["payload"].update(length=h["payload"]["length"] + 16)), "truncated")
    _raises(_rewrite(d, lambda h: h["payload"].update(crc32=(h["payload"]["crc32"] + 1) % 2**32)), "payload checksum")
    _raises(_rewrite(d, lambda h: h.pop("levels")), "missing field 'levels'")
    _raises(_rewrite(d, lambda h: h.update(levels=[])), "levels must be a list of 1 to 16")


def test_decode_accepts_bytes_like(small_file):
    ref, _ = pf.decode_pyramid(small_file)
    for buf in (bytearray(small_file), memoryview(small_file)):
        got, _ = pf.decode_pyramid(buf)
        assert all(np.array_equal(a, b) for a, b in zip(ref, got))
    assert pf.read_header(small_file)["levels"][0]["scheme"] == "int4"
    with pytest.raises(TypeError):
        pf.decode_pyramid("not bytes")


# --------------------------------------------------------------------------------------
# Writer argument checks
# --------------------------------------------------------------------------------------
def test_encoder_refuses_bad_input():
    g = geometry(64, 96)
    pyr = pyramid(g)
    bad_nan = [x.copy() for x in pyr]
    bad_nan[2][0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        pf.encode_pyramid(bad_nan, meta(g), "int8")
    with pytest.raises(ValueError, match="inconsistent with the canvas"):
        pf.encode_pyramid(pyr, meta(geometry(96, 64)), "int8")
    with pytest.raises(ValueError, match="unknown scheme"):
        pf.encode_pyramid(pyr, meta(g), "int3")
    with pytest.raises(ValueError, match="schemes for 4 levels"):
        pf.encode_pyramid(pyr, meta(g), ["int8", "int4"])
    with pytest.raises(ValueError, match="overflow float16"):
        pf.encode_pyramid([pyr[0] * 1e5, *pyr[1:]], meta(g), "f16")
    with pytest.raises(ValueError, match="meta needs"):
        pf.encode_pyramid(pyr, {"canvas": g}, "int8")
    bad_canvas = g.to_dict() | {"canvas_h": 70}
    with pytest.raises(ValueError, match="canvas"):
        pf.encode_pyramid(pyr, meta(g) | {"canvas": bad_canvas}, "int8")
    with pytest.raises(ValueError):
        pf.encode_pyramid([p.astype(np.int32) for p in pyr], meta(g), "int8")
    with pytest.raises(ValueError, match="JSON"):
        pf.encode_pyramid(pyr, meta(g, extra={"x": object()}), "int8")


# --------------------------------------------------------------------------------------
# Atomic write
# --------------------------------------------------------------------------------------
def test_write_pyramid_file_is_atomic(tmp_path, monkeypatch):
    g = geometry(64, 96)
    pyr = pyramid(g)
    path = tmp_path / "img.ifpyr"
    n = pf.write_pyramid_file(path, pyr, meta(g), "int8")
    assert n == path.stat().st_size
    assert path.read_bytes() == pf.encode_pyramid(pyr, meta(g), "int8")
    assert [p.name for p in tmp_path.iterdir()] == ["img.ifpyr"]
    levels, _ = pf.read_pyramid_file(path)
    assert len(levels) == 4
    before = path.read_bytes()

    # A failure while encoding leaves the old file as it was and nothing else.
    with pytest.raises(ValueError):
        pf.write_pyramid_file(path, pyr, meta(g), "int3")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["img.ifpyr"]

    # A crash between writing the temp file and the rename: the old file is intact, no temp left.
    def boom(src, dst):
        assert os.path.dirname(src) == os.path.dirname(os.fspath(dst))  # same folder: rename is atomic
        assert pf.decode_pyramid(open(src, "rb").read())  # the temp file was complete
        raise OSError("disk gone")

    monkeypatch.setattr(pf.os, "replace", boom)
    with pytest.raises(OSError, match="disk gone"):
        pf.write_pyramid_file(path, pyr, meta(g), "int4")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["img.ifpyr"]
    monkeypatch.undo()

    # Overwriting replaces the file in one step.
    pf.write_pyramid_file(path, pyr, meta(g), "int4")
    assert pf.read_header(path.read_bytes())["levels"][0]["scheme"] == "int4"
