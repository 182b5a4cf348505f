"""tests/vectors/mask.json (checked against static/js/mask.js by tests/js/mask.test.js) still
agrees with today's Python predictor (``InterFormerPredictor._upsample`` / ``_to_image``).

Values are compared to float32 rounding, not bit for bit: PyTorch's CPU kernels may round
differently on another CPU. Regenerate with ``python tests/vectors/make_mask_vectors.py``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

VECTORS_DIR = Path(__file__).with_name("vectors")
COMMITTED = json.loads((VECTORS_DIR / "mask.json").read_text())


def _generator():
    spec = importlib.util.spec_from_file_location("make_mask_vectors", VECTORS_DIR / "make_mask_vectors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows_agree(a: list[str], b: list[str]) -> bool:
    return len(a) == len(b) and all(
        len(ra) == len(rb) and all(x == y or "?" in (x, y) for x, y in zip(ra, rb)) for ra, rb in zip(a, b)
    )


def test_committed_mask_vectors_match_the_predictor():
    fresh = _generator().build()
    assert fresh["tie"] == COMMITTED["tie"]
    assert len(fresh["resize_cases"]) == len(COMMITTED["resize_cases"])
    for f, c in zip(fresh["resize_cases"], COMMITTED["resize_cases"]):
        assert {k: f[k] for k in ("in_h", "in_w", "out_h", "out_w", "input")} == {
            k: c[k] for k in ("in_h", "in_w", "out_h", "out_w", "input")
        }
        np.testing.assert_allclose(f["expected"], c["expected"], rtol=0, atol=1e-5)
    assert len(fresh["mask_cases"]) == len(COMMITTED["mask_cases"])
    for f, c in zip(fresh["mask_cases"], COMMITTED["mask_cases"]):
        assert f["geometry"] == c["geometry"] and f["margin"] == c["margin"]
        assert _rows_agree(f["canvas_prediction"], c["canvas_prediction"])
        assert _rows_agree(f["image_mask"], c["image_mask"])


def test_vectors_cover_every_geometry_kind():
    kinds = set()
    for c in COMMITTED["mask_cases"]:
        g = c["geometry"]
        if (g["resized_h"], g["resized_w"]) == (g["image_h"], g["image_w"]):
            kinds.add("native")
        else:
            kinds.add("up" if g["scale"] > 1 else "down")
        assert any("1" in r for r in c["image_mask"]) and any("0" in r for r in c["image_mask"])
    assert kinds == {"native", "up", "down"}
