"""The shared pyramid-format vectors (tests/vectors/pyramid/) against the Python reader.

tests/js/pyramid.test.js checks the same files against the browser's reader
(static/js/pyramid.js), so a change of the format on one side that is not mirrored on the
other fails one of the two. The last tests make sure the committed files are what the
generator writes today, and pin a few values checked by hand.
"""

from __future__ import annotations

import importlib.util
import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from model_export import pyramid_format as pf

VECTORS_DIR = Path(__file__).with_name("vectors")
PYR_DIR = VECTORS_DIR / "pyramid"
V = json.loads((PYR_DIR / "expected.json").read_text())


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_pyramid_vectors", VECTORS_DIR / "make_pyramid_vectors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


GEN = _load_generator()


def _crc(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a).tobytes())


@pytest.mark.parametrize("entry", V["files"], ids=[e["file"] for e in V["files"]])
def test_file_decodes_as_expected(entry):
    data = (PYR_DIR / entry["file"]).read_bytes()
    assert len(data) == entry["bytes"]
    levels, header = pf.decode_pyramid(data)
    assert header == entry["header"]
    qs, _ = pf.decode_pyramid_quantized(data)
    assert len(levels) == len(qs) == len(entry["levels"])
    for x, q, exp in zip(levels, qs, entry["levels"]):
        assert x.dtype == np.float32 and list(x.shape) == exp["shape"]
        assert q.scheme == exp["scheme"]
        assert _crc(x.astype("<f4")) == exp["crc32_f32"], exp["name"]
        assert float(x.astype(np.float64).sum()) == pytest.approx(exp["sum"], rel=1e-12, abs=1e-9)
        flat = x.reshape(-1)
        for i, v in exp["samples"]:
            assert flat[i] == np.float32(v), (exp["name"], i)
        raw = pf.pack_int4(q.data) if q.scheme == "int4" else q.data
        assert _crc(raw) == exp["crc32_data"]
        if q.scale is None:
            assert "crc32_scale" not in exp
            continue
        assert _crc(q.scale.astype("<f4")) == exp["crc32_scale"]
        assert _crc(q.zero_point) == exp["crc32_zero_point"]
        assert (None if q.bias is None else _crc(q.bias.astype("<f4"))) == exp["crc32_bias"]
        assert q.scale[:4].tolist() == exp["scale_head"]
        assert q.zero_point[:4].tolist() == exp["zero_point_head"]
        assert (None if q.bias is None else q.bias[:4].tolist()) == exp["bias_head"]


@pytest.mark.parametrize("case", V["corrupt"], ids=[c["name"] for c in V["corrupt"]])
def test_corrupt_variant_is_refused(case):
    base = (PYR_DIR / case["base"]).read_bytes()
    bad = GEN.apply_splices(base, case["splices"])
    assert bad != base
    with pytest.raises(pf.PyramidFormatError, match=None) as ei:
        pf.decode_pyramid(bad)
    assert case["error"] in str(ei.value)


def test_vectors_are_up_to_date():
    """The committed files are exactly what the generator writes from today's format.

    After a deliberate change of the format: ``python tests/vectors/make_pyramid_vectors.py``,
    review the diff of expected.json, mirror the change in static/js/pyramid.js.
    """
    files, text = GEN.build()
    assert sorted(p.name for p in PYR_DIR.glob("*.bin")) == sorted(files)
    for name, data in files.items():
        assert (PYR_DIR / name).read_bytes() == data, name
    assert (PYR_DIR / "expected.json").read_text() == text


def test_vectors_are_small():
    total = sum(p.stat().st_size for p in PYR_DIR.iterdir())
    assert total < 200_000, total


def test_hand_checked_anchors():
    """Values recomputed by hand from the formulas, so the vectors do not only echo the code."""
    data = (PYR_DIR / "int8.bin").read_bytes()
    # Preamble: magic, version 1, flags 0, header length such that the payload is 16-aligned.
    assert data[:8] == b"\x89IFPYR\r\n" and data[8:12] == b"\x01\x00\x00\x00"
    hlen = int.from_bytes(data[12:16], "little")
    assert (20 + hlen) % 16 == 0 and int.from_bytes(data[16:20], "little") == zlib.crc32(data[20 : 20 + hlen])
    qs, header = pf.decode_pyramid_quantized(data)
    levels, _ = pf.decode_pyramid(data)
    # 64x96 canvas: F1..F4 are 16x24, 8x12, 4x6, 2x3.
    assert [lv["shape"][1:] for lv in header["levels"]] == [[16, 24], [8, 12], [4, 6], [2, 3]]
    f1 = qs[0]
    # Channel 0 is all zero: range [0, 0] -> scale 1 (fallback), zero point round(-128 - 0) = -128.
    assert f1.scale[0] == 1.0 and f1.zero_point[0] == -128 and np.all(f1.data[0] == -128)
    assert np.all(levels[0][0] == 0.0)
    # Channel 1 is the constant 0.75: range widened to [0, 0.75] -> scale 0.75 / 255 (rounded up
    # to float32), zero point -128, code round(0.75 / scale) - 128 = 127, decoded 255 * scale.
    s = np.float32(0.75 / 255)
    if float(s) < 0.75 / 255:
        s = np.nextafter(s, np.float32(1))
    assert f1.scale[1] == s and f1.zero_point[1] == -128 and np.all(f1.data[1] == 127)
    assert np.all(levels[0][1] == np.float32(255) * s)
    # Channel 2 holds the outlier 40.0 first: its code is 127 (the top of the range) and it
    # decodes to within scale / 2.
    assert f1.data[2].flat[0] == 127
    assert abs(float(levels[0][2].flat[0]) - 40.0) <= f1.scale[2] / 2
    # With bias, channel 1 (constant 0.75): bias 0.75, scale 1, zero point -128, every code -128.
    qb, _ = pf.decode_pyramid_quantized((PYR_DIR / "int8_bias_delta.bin").read_bytes())
    assert qb[0].bias[1] == 0.75 and qb[0].scale[1] == 1.0 and np.all(qb[0].data[1] == -128)
    # The delta filter stores q[0], then differences: the stored bytes of F1 start with
    # q[0] and q[1] - q[1 - 1] (all of channel 0 is -128: differences 0).
    raw = (PYR_DIR / "int8_bias_delta.bin").read_bytes()
    _, hdr = pf.decode_pyramid(raw)
    start = 20 + int.from_bytes(raw[12:16], "little") + hdr["levels"][0]["segments"]["data"]["offset"]
    stored = np.frombuffer(raw, np.int8, 4, start)
    assert stored.tolist() == [qb[0].data.flat[0], 0, 0, 0]
