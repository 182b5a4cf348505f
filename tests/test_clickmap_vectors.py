"""The shared click-map vectors (tests/vectors/clickmap.json) against the Python implementation.

tests/js/clickmap.test.js checks the same JSON against the browser's implementation, so a
change of the rules on one side that is not mirrored on the other fails one of the two.
The last tests make sure the committed JSON is what the generator writes today and pin a
few of its values that were checked by hand.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from model_export import clicks as cm
from model_export.geometry import CanvasGeometry

VECTORS_DIR = Path(__file__).with_name("vectors")
VECTORS_PATH = VECTORS_DIR / "clickmap.json"
V = json.loads(VECTORS_PATH.read_text())


def array_of(rows: list[str]) -> np.ndarray:
    return np.array([[int(c) for c in r] for r in rows], dtype=np.uint8)


def rows_of(m: np.ndarray) -> list[str]:
    return ["".join(str(int(v)) for v in row) for row in m]


def click_of(d: dict) -> cm.Click:
    return cm.Click(y=d["y"], x=d["x"], positive=d["positive"])


def _ids(cases: list[dict]) -> list[str]:
    return [c["name"] for c in cases]


def test_labels_and_disk():
    assert V["labels"] == {
        "definite_bg": cm.DEFINITE_BG,
        "possible_bg": cm.POSSIBLE_BG,
        "unknown": cm.UNKNOWN,
        "possible_fg": cm.POSSIBLE_FG,
        "definite_fg": cm.DEFINITE_FG,
    }
    assert V["disk"]["radius"] == cm.CLICK_RADIUS
    assert V["disk"]["pixels"] == len(cm.disk_offsets()) == 81
    m = cm.add_click(cm.new_click_map(11, 11), cm.Click(5, 5, True))
    assert rows_of(m) == V["disk"]["on_11x11"]


@pytest.mark.parametrize("case", V["click_cases"], ids=_ids(V["click_cases"]))
def test_click_case(case):
    m = cm.new_click_map(case["height"], case["width"])
    for c in case["clicks"]:
        cm.add_click(m, click_of(c), radius=case["radius"])
    assert rows_of(m) == case["expected"]


@pytest.mark.parametrize("case", V["update_cases"], ids=_ids(V["update_cases"]))
def test_update_case(case):
    new = cm.update_from_prediction(array_of(case["map"]), array_of(case["pred"]))
    assert rows_of(new) == case["expected"]


@pytest.mark.parametrize("seq", V["sequences"], ids=_ids(V["sequences"]))
def test_sequence(seq):
    m = cm.new_click_map(seq["height"], seq["width"])
    for i, step in enumerate(seq["steps"]):
        if "click" in step:
            cm.add_click(m, click_of(step["click"]))
        else:
            m = cm.update_from_prediction(m, array_of(step["pred"]))
        assert rows_of(m) == step["expected"], f"after step {i}"


def test_invalid_clicks_are_refused():
    assert V["invalid_clicks"]
    for c in V["invalid_clicks"]:
        with pytest.raises(ValueError):
            cm.add_click(cm.new_click_map(c["height"], c["width"]), click_of(c["click"]))


def test_invalid_updates_are_refused():
    assert V["invalid_updates"]
    for c in V["invalid_updates"]:
        pred = np.zeros((c["pred_height"], c["pred_width"]), np.uint8)
        with pytest.raises(ValueError):
            cm.update_from_prediction(cm.new_click_map(c["map_height"], c["map_width"]), pred)


@pytest.mark.parametrize("case", V["geometry"], ids=_ids(V["geometry"]))
def test_geometry_case(case):
    g = CanvasGeometry.for_image(case["image_h"], case["image_w"], case["longest_side"])
    assert g.to_dict() == {"image_h": case["image_h"], "image_w": case["image_w"], **case["expected"]}
    for p in case["image_to_canvas"]:
        assert list(g.image_to_canvas(p["y"], p["x"])) == p["canvas"], (p["y"], p["x"])


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_clickmap_vectors", VECTORS_DIR / "make_clickmap_vectors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_vectors_file_is_up_to_date():
    """The committed JSON is exactly what the generator writes from today's Python rules.

    If this fails after a deliberate change of the rules, run
    ``python tests/vectors/make_clickmap_vectors.py``, review the JSON diff, and make the
    same change in static/js/ (the JS suite checks the new JSON).
    """
    assert VECTORS_PATH.read_text() == _load_generator().render()


def _geometry(name_start: str) -> dict:
    (case,) = [g for g in V["geometry"] if g["name"].startswith(name_start)]
    return case


def test_hand_checked_anchors():
    """A few values of the JSON recomputed by hand, so the vectors do not just echo the code."""
    # Python round is half to even: 961 * 0.5 = 480.5 -> 480 (a multiple of 32: no padding).
    assert _geometry("961x1024")["expected"] == {
        "scale": 0.5, "resized_h": 480, "resized_w": 512, "canvas_h": 480, "canvas_w": 512,
    }  # fmt: skip
    assert _geometry("10x2048")["expected"]["resized_h"] == 2  # 2.5 -> 2
    assert _geometry("1024x1001")["expected"]["resized_w"] == 500  # 500.5 -> 500
    assert _geometry("7x1024")["expected"]["resized_h"] == 4  # 3.5 -> 4
    assert _geometry("1x2048")["expected"]["resized_h"] == 1  # 0.25 -> 0, kept at 1
    # 333x777 native: 333 -> 352 (11 * 32), 777 -> 800 (25 * 32).
    g = _geometry("333x777, native")
    assert (g["expected"]["canvas_h"], g["expected"]["canvas_w"]) == (352, 800)
    # 480x640 -> 512: scale 0.8, 384x512; pixel (123, 456) -> floor(123.5 * 0.8) = 98,
    # floor(456.5 * 0.8) = 365.
    g = _geometry("480x640 -> 512")
    assert (g["expected"]["resized_h"], g["expected"]["resized_w"]) == (384, 512)
    assert {"y": 123, "x": 456, "canvas": [98, 365]} in g["image_to_canvas"]
    # The update table row by row.
    (every,) = [u for u in V["update_cases"] if u["name"].startswith("every transition")]
    assert every["expected"] == ["02334", "01124"]
    # The top-left corner click covers a quarter disk: 6+5+5+5+4+1 = 26 pixels.
    (corner,) = [c for c in V["click_cases"] if c["name"] == "top-left corner"]
    assert "".join(corner["expected"]).count("4") == 26
