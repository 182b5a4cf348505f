"""Generate ``tests/vectors/clickmap.json``: shared test vectors for the click-map rules.

The click rules are implemented twice: in Python (``model_export/clicks.py``,
``model_export/geometry.py``; training, evaluation, server) and in JavaScript
(``static/js/clickmap.js``, ``static/js/geometry.js``; the browser). Both are checked
against the same vectors (``tests/test_clickmap_vectors.py`` and
``tests/js/clickmap.test.js``), so a change on one side that is not mirrored on the
other fails a test.

The expected values below are computed by the Python implementation. To rewrite the
JSON after a deliberate change of the rules:

    python tests/vectors/make_clickmap_vectors.py

then check the diff of the JSON by eye: it is the change of behaviour. The pytest suite
fails while the committed JSON differs from what this script would write.

Format of the JSON (maps are lists of row strings, one digit per pixel, so that a map
reads as a picture):

- ``labels``: the label values; ``disk``: the click disk of radius 5 drawn on an 11x11
  map, and its pixel count.
- ``click_cases``: start from a fresh map (all 2) of ``height`` x ``width``, draw the
  ``clicks`` in order (``radius`` 5 unless given), compare with ``expected``.
- ``update_cases``: ``update_from_prediction(map, pred)`` must give ``expected``
  (``pred`` rows: 1 foreground, 0 background).
- ``sequences``: a fresh map, then ``steps`` in order; a step is either a click or a
  prediction (the map is updated from it); ``expected`` is the map after that step.
- ``invalid_clicks``: clicks outside the map; both implementations must refuse them.
- ``invalid_updates``: a prediction whose shape differs from the map's; refused.
- ``geometry``: ``CanvasGeometry.for_image(image_h, image_w, longest_side)`` must give
  ``expected``; each ``image_to_canvas`` entry maps image pixel (y, x) to ``canvas``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(REPO))

from model_export import clicks as cm  # noqa: E402
from model_export.geometry import CanvasGeometry  # noqa: E402

OUT = Path(__file__).with_name("clickmap.json")


def rows_of(m: np.ndarray) -> list[str]:
    """A map as row strings, one digit per pixel."""
    return ["".join(str(int(v)) for v in row) for row in m]


def array_of(rows: list[str]) -> np.ndarray:
    """Row strings back to a uint8 map."""
    return np.array([[int(c) for c in r] for r in rows], dtype=np.uint8)


def P(y: int, x: int) -> dict:
    """A positive click."""
    return {"y": y, "x": x, "positive": True}


def N(y: int, x: int) -> dict:
    """A negative click."""
    return {"y": y, "x": x, "positive": False}


# --------------------------------------------------------------------------------------
# Clicks drawn into a fresh map: (name, height, width, clicks[, radius])
# --------------------------------------------------------------------------------------
CLICK_CASES = [
    # The disk itself, and one click per edge and corner of a 12x14 map.
    ("centre of 11x11: the whole disk", 11, 11, [P(5, 5)]),
    ("top edge", 12, 14, [P(0, 7)]),
    ("bottom edge", 12, 14, [P(11, 7)]),
    ("left edge", 12, 14, [N(6, 0)]),
    ("right edge", 12, 14, [N(6, 13)]),
    ("top-left corner", 12, 14, [P(0, 0)]),
    ("top-right corner", 12, 14, [P(0, 13)]),
    ("bottom-left corner", 12, 14, [N(11, 0)]),
    ("bottom-right corner", 12, 14, [N(11, 13)]),
    ("one pixel in from the corner", 12, 14, [P(1, 1)]),
    ("disk just touching the edges (5, 5)", 12, 14, [P(5, 5)]),
    # Overlaps: the newest click wins, whatever the older label was.
    ("negative over positive: newest wins", 12, 18, [P(6, 6), N(6, 11)]),
    ("positive over negative: newest wins", 12, 18, [N(6, 6), P(6, 11)]),
    ("same pixel clicked twice, sign flipped", 11, 11, [P(5, 5), N(5, 5)]),
    ("three overlapping clicks", 14, 14, [P(4, 4), N(7, 7), P(9, 9)]),
    # Degenerate maps.
    ("1x1 map", 1, 1, [P(0, 0)]),
    ("1-pixel-wide column", 15, 1, [P(7, 0)]),
    ("1-pixel-high row", 1, 15, [N(0, 3)]),
    ("1-pixel-wide column, click at the end", 9, 1, [N(8, 0)]),
    ("3x3 map, click in the middle", 3, 3, [P(1, 1)]),
    ("3x3 map, click in a corner", 3, 3, [N(2, 0)]),
    # Non-square maps.
    ("7x13", 7, 13, [P(3, 6), N(0, 12)]),
    ("13x7", 13, 7, [P(6, 3), N(12, 0)]),
    ("40x25, scattered clicks", 40, 25, [P(3, 3), N(20, 12), P(36, 22), N(10, 24), P(39, 0), N(22, 15)]),
    ("25x40, scattered clicks", 25, 40, [P(12, 20), N(0, 39), P(24, 1), N(13, 24)]),
    # Other radii (the rule is the same; the product uses 5).
    ("radius 2", 7, 7, [P(3, 3)], 2),
    ("radius 0: a single pixel", 3, 4, [N(1, 2)], 0),
]

# --------------------------------------------------------------------------------------
# Updates from a prediction: (name, map rows, pred rows)
# --------------------------------------------------------------------------------------
UPDATE_CASES = [
    (
        # Row 0: every label under a foreground prediction; row 1: under background.
        "every transition: row 0 pred fg, row 1 pred bg",
        ["01234", "01234"],
        ["11111", "00000"],
    ),
    (
        "definite labels never change",
        ["0404", "4040"],
        ["0011", "1100"],
    ),
    (
        "unknown map, checkerboard prediction",
        ["2222", "2222", "2222"],
        ["1010", "0101", "1010"],
    ),
    (
        "mixed 5x6",
        ["012340", "123401", "234012", "340123", "401234"],
        ["110010", "011001", "101100", "000111", "111000"],
    ),
]

# --------------------------------------------------------------------------------------
# Sequences of clicks and predictions: (name, height, width, steps)
# --------------------------------------------------------------------------------------
def blob(h: int, w: int, *rects: tuple[int, int, int, int]) -> list[str]:
    """A hand-made prediction: 1 inside any rectangle (y0, y1, x0, x1, inclusive), else 0."""
    p = np.zeros((h, w), dtype=np.uint8)
    for y0, y1, x0, x1 in rects:
        p[y0 : y1 + 1, x0 : x1 + 1] = 1
    return rows_of(p)


SEQUENCES = [
    (
        # What a session might look like: each prediction is what a model might answer.
        "click, predict, update, repeated four times",
        14,
        24,
        [
            {"click": P(6, 7)},
            {"pred": blob(14, 24, (2, 11, 3, 14))},
            {"click": N(7, 18)},
            {"pred": blob(14, 24, (1, 12, 1, 12))},
            {"click": P(12, 3)},
            {"pred": blob(14, 24, (0, 13, 0, 11), (5, 8, 12, 16))},
            {"click": N(2, 10)},  # overlaps the first positive disk: newest wins
            {"pred": blob(14, 24, (4, 13, 0, 11))},
        ],
    ),
    (
        "the same prediction twice: 2 -> 3 -> 3 and 2 -> 1 -> 1; then the opposite twice: 3 -> 2 -> 1, 1 -> 2 -> 3",
        4,
        6,
        [
            {"click": P(0, 0)},
            {"pred": ["111111", "111111", "000000", "000000"]},
            {"pred": ["111111", "111111", "000000", "000000"]},
            {"pred": ["000000", "000000", "111111", "111111"]},
            {"pred": ["000000", "000000", "111111", "111111"]},
        ],
    ),
]

INVALID_CLICKS = [
    (5, 7, N(-1, 0)),
    (5, 7, P(0, -1)),
    (5, 7, P(5, 0)),
    (5, 7, N(0, 7)),
    (5, 7, P(5, 7)),
    (1, 1, P(1, 0)),
]

# (map height, map width, pred height, pred width)
INVALID_UPDATES = [
    (3, 4, 4, 3),  # same number of pixels, transposed
    (3, 4, 3, 5),
    (3, 4, 2, 4),
]

# --------------------------------------------------------------------------------------
# Geometry: (name, image_h, image_w, longest_side, extra image points)
# Every case also maps the four corners and the centre pixel.
# --------------------------------------------------------------------------------------
GEOMETRY_CASES = [
    ("1x1, native", 1, 1, None, []),
    ("1x1 -> 512", 1, 1, 512, []),
    ("1x7, native", 1, 7, None, []),
    ("1x7 -> 512", 1, 7, 512, []),
    ("7x1 -> 512", 7, 1, 512, []),
    ("1x2048 -> 512: short side rounds to 0, kept at 1", 1, 2048, 512, []),
    ("2x2048 -> 512: 0.5 rounds to 0 (half to even), kept at 1", 2, 2048, 512, []),
    ("10x2048 -> 512: 2.5 rounds to 2 (half to even; JS Math.round gives 3)", 10, 2048, 512, []),
    ("6x1024 -> 512: 3.0 exact", 6, 1024, 512, []),
    ("7x1024 -> 512: 3.5 rounds to 4", 7, 1024, 512, []),
    ("961x1024 -> 512: 480.5 rounds to 480, canvas 480 (481 would pad to 512)", 961, 1024, 512, [(960, 1023)]),
    ("1024x1001 -> 512: 500.5 rounds to 500", 1024, 1001, 512, [(511, 500), (1023, 999)]),
    ("480x640, native", 480, 640, None, [(123, 456)]),
    ("480x640 -> 512", 480, 640, 512, [(123, 456), (1, 1), (2, 2)]),
    ("640x480 -> 512", 640, 480, 512, [(456, 123)]),
    ("333x777, native: padded to 352x800", 333, 777, None, [(332, 776), (100, 700)]),
    ("333x777 -> 512", 333, 777, 512, [(332, 776), (100, 700)]),
    ("300x200 -> 512: upscaled", 300, 200, 512, [(150, 100), (299, 199)]),
    ("512x512 -> 512: unchanged", 512, 512, 512, [(100, 200)]),
    ("513x512 -> 512", 513, 512, 512, [(256, 256), (512, 511)]),
    ("2000x3000 -> 512", 2000, 3000, 512, [(1000, 1500), (1999, 2999), (3, 5)]),
    ("1080x1920 -> 512", 1080, 1920, 512, [(540, 960), (1079, 1919)]),
    ("4032x3024 -> 512", 4032, 3024, 512, [(2016, 1512)]),
    ("1500x1000 -> 1024", 1500, 1000, 1024, [(750, 500)]),
    ("600x800, native", 600, 800, None, [(599, 799)]),
    # Points off the grid: fractional coordinates and pixels outside the image clamp.
    ("100x60 -> 512, fractional and outside points", 100, 60, 512, [(10.25, 3.7), (-3, -3), (100, 60), (250, 7)]),
]


# --------------------------------------------------------------------------------------
# Computing the expected values with the Python implementation
# --------------------------------------------------------------------------------------
def _click(d: dict) -> cm.Click:
    return cm.Click(y=d["y"], x=d["x"], positive=d["positive"])


def click_cases() -> list[dict]:
    out = []
    for case in CLICK_CASES:
        name, h, w, clicks = case[:4]
        radius = case[4] if len(case) > 4 else cm.CLICK_RADIUS
        m = cm.new_click_map(h, w)
        for c in clicks:
            cm.add_click(m, _click(c), radius=radius)
        entry = {"name": name, "height": h, "width": w, "radius": radius, "clicks": clicks}
        entry["expected"] = rows_of(m)
        out.append(entry)
    return out


def update_cases() -> list[dict]:
    out = []
    for name, m_rows, p_rows in UPDATE_CASES:
        new = cm.update_from_prediction(array_of(m_rows), array_of(p_rows))
        out.append({"name": name, "map": m_rows, "pred": p_rows, "expected": rows_of(new)})
    return out


def sequences() -> list[dict]:
    out = []
    for name, h, w, steps in SEQUENCES:
        m = cm.new_click_map(h, w)
        done = []
        for step in steps:
            before = m.copy()
            if "click" in step:
                cm.add_click(m, _click(step["click"]))
            else:
                m = cm.update_from_prediction(m, array_of(step["pred"]))
            repeated = done and done[-1].get("pred") is not None and done[-1].get("pred") == step.get("pred")
            if np.array_equal(before, m) and not repeated:  # a step that changes nothing tests nothing
                raise AssertionError(f"sequence {name!r}: step {step} leaves the map unchanged")
            done.append({**step, "expected": rows_of(m)})
        out.append({"name": name, "height": h, "width": w, "steps": done})
    return out


def invalid_clicks() -> list[dict]:
    out = []
    for h, w, c in INVALID_CLICKS:
        try:
            cm.add_click(cm.new_click_map(h, w), _click(c))
        except ValueError:
            out.append({"height": h, "width": w, "click": c})
        else:
            raise AssertionError(f"clicks.py accepted {c} on a {h}x{w} map")
    return out


def invalid_updates() -> list[dict]:
    out = []
    for mh, mw, ph, pw in INVALID_UPDATES:
        try:
            cm.update_from_prediction(cm.new_click_map(mh, mw), np.zeros((ph, pw), np.uint8))
        except ValueError:
            out.append({"map_height": mh, "map_width": mw, "pred_height": ph, "pred_width": pw})
        else:
            raise AssertionError(f"clicks.py accepted a {ph}x{pw} prediction for a {mh}x{mw} map")
    return out


def geometry_cases() -> list[dict]:
    out = []
    for name, h, w, longest, extra in GEOMETRY_CASES:
        g = CanvasGeometry.for_image(h, w, longest)
        expected = g.to_dict()
        del expected["image_h"], expected["image_w"]
        points = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h // 2, w // 2), *extra]
        seen = []
        for p in points:
            if p not in seen:
                seen.append(p)
        mappings = [{"y": y, "x": x, "canvas": list(g.image_to_canvas(y, x))} for y, x in seen]
        out.append(
            {
                "name": name,
                "image_h": h,
                "image_w": w,
                "longest_side": longest,
                "expected": expected,
                "image_to_canvas": mappings,
            }
        )
    return out


def build() -> dict:
    disk = cm.new_click_map(11, 11)
    cm.add_click(disk, cm.Click(5, 5, True))
    return {
        "about": (
            "Shared test vectors of the click-map rules (spec 1.2) and canvas geometry, checked "
            "by tests/test_clickmap_vectors.py (Python) and tests/js/clickmap.test.js (JS). "
            "Generated by `python tests/vectors/make_clickmap_vectors.py` from model_export/clicks.py "
            "and model_export/geometry.py; do not edit by hand. Maps are row strings, one digit per pixel."
        ),
        "labels": {
            "definite_bg": cm.DEFINITE_BG,
            "possible_bg": cm.POSSIBLE_BG,
            "unknown": cm.UNKNOWN,
            "possible_fg": cm.POSSIBLE_FG,
            "definite_fg": cm.DEFINITE_FG,
        },
        "disk": {
            "radius": cm.CLICK_RADIUS,
            "pixels": len(cm.disk_offsets(cm.CLICK_RADIUS)),
            "on_11x11": rows_of(disk),
        },
        "click_cases": click_cases(),
        "update_cases": update_cases(),
        "sequences": sequences(),
        "invalid_clicks": invalid_clicks(),
        "invalid_updates": invalid_updates(),
        "geometry": geometry_cases(),
    }


# --------------------------------------------------------------------------------------
# Writing: JSON with maps one row per line and small objects on one line
# --------------------------------------------------------------------------------------
def _dump(v, indent: int = 0, width: int = 100) -> str:
    flat = json.dumps(v, separators=(", ", ": "))
    is_rows = isinstance(v, list) and len(v) > 1 and all(isinstance(s, str) for s in v)
    if not isinstance(v, (list, dict)) or (not is_rows and indent + len(flat) <= width):
        return flat
    pad = " " * (indent + 2)
    if isinstance(v, list):
        items = [pad + _dump(x, indent + 2, width) for x in v]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    items = [pad + json.dumps(k) + ": " + _dump(x, indent + 2, width) for k, x in v.items()]
    return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"


def render() -> str:
    """The exact text of clickmap.json."""
    return _dump(build()) + "\n"


def main() -> None:
    OUT.write_text(render())
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
