"""Generate ``tests/vectors/mask.json``: vectors for the browser's margin -> mask code.

``static/js/mask.js`` upsamples the decoder's stride-4 margin to the canvas and maps it to
the image exactly as ``model_export/predictor.py`` does (PyTorch ``F.interpolate(bilinear,
align_corners=False)``, then cv2 ``INTER_LINEAR`` to the image size). The expected values
below come from those Python functions themselves (``InterFormerPredictor._upsample`` and
``_to_image``); ``tests/js/mask.test.js`` checks the JavaScript against them and
``tests/test_mask_vectors.py`` checks that the committed file still agrees with today's
Python. Regenerate after a deliberate change:

    python tests/vectors/make_mask_vectors.py

Format:

- ``resize_cases``: ``input`` (``in_h`` x ``in_w`` float32 values, row-major) resized to
  ``out_h`` x ``out_w`` by PyTorch: ``expected`` (float32 values, printed exactly).
- ``mask_cases``: a canvas ``geometry`` (CanvasGeometry.to_dict()), a stride-4 ``margin``
  (``h4`` x ``w4``); ``canvas_prediction`` (canvas rows of 0/1) and ``image_mask`` (image
  rows of 0/1) as the predictor makes them. A ``?`` marks a pixel whose value is within
  ``tie`` of 0, where float rounding may legitimately decide either way (none in practice).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(REPO))

OUT = Path(__file__).with_name("mask.json")
TIE = 1e-5

# (in_h, in_w, out_h, out_w): the decoder's x4, odd sizes, non-integer up and down scales, 1 pixel.
RESIZES = [(3, 5, 12, 20), (7, 5, 28, 20), (5, 7, 13, 11), (9, 6, 4, 5), (6, 9, 5, 17), (1, 1, 4, 4), (2, 3, 8, 12), (4, 4, 4, 4)]
# (image_h, image_w, longest_side): up-scaled, down-scaled, native (crop only) and portrait.
GEOMETRIES = [(10, 13, 32), (80, 60, 32), (27, 40, None), (40, 21, 64)]



class _NoNetwork:
    """The mask rules (upsampling, crop, resize) need no network: a stand-in ``DecodeModel``."""

    def eval(self):
        return self

    def complete_pyramid(self, feats):
        return list(feats)

    def decode(self, feats, ref_label, roi=None):
        raise AssertionError("the mask vectors never decode")

def _f32_list(a: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(a, np.float32).ravel()]  # float32 -> shortest exact double repr


def _rows(mask: np.ndarray, values: np.ndarray) -> list[str]:
    out = []
    for mrow, vrow in zip(mask, values):
        out.append("".join("?" if abs(v) < TIE else ("1" if m else "0") for m, v in zip(mrow, vrow)))
    return out


def build() -> dict:
    import cv2

    from model_export.geometry import CanvasGeometry
    from model_export.predictor import InterFormerPredictor

    rng = np.random.default_rng(20240607)
    resize_cases = []
    for ih, iw, oh, ow in RESIZES:
        x = (rng.standard_normal((ih, iw)) * 2).astype(np.float32)
        y = InterFormerPredictor._upsample(x, oh, ow)
        resize_cases.append({"in_h": ih, "in_w": iw, "out_h": oh, "out_w": ow, "input": _f32_list(x), "expected": _f32_list(y)})

    mask_cases = []
    pred = InterFormerPredictor(_NoNetwork(), pipeline=None)
    for ih, iw, ls in GEOMETRIES:
        g = CanvasGeometry.for_image(ih, iw, longest_side=ls)
        h4, w4 = g.canvas_h // 4, g.canvas_w // 4
        # A smooth blob plus noise: a mask with curved edges and a few islands.
        yy, xx = np.mgrid[0:h4, 0:w4]
        blob = 2.5 - np.hypot((yy - h4 * 0.45) / (h4 * 0.3), (xx - w4 * 0.55) / (w4 * 0.3)) * 2.5
        margin = (blob + rng.standard_normal((h4, w4)) * 0.8).astype(np.float32)
        pred.set_pyramid([], g)
        up = pred._upsample(margin, g.canvas_h, g.canvas_w)
        crop = up[: g.resized_h, : g.resized_w]
        img_vals = crop if (g.resized_h, g.resized_w) == (ih, iw) else cv2.resize(crop, (iw, ih), interpolation=cv2.INTER_LINEAR)
        mask = pred._to_image(margin)
        assert np.array_equal(mask, img_vals > 0)
        mask_cases.append(
            {
                "geometry": g.to_dict(),
                "h4": h4,
                "w4": w4,
                "margin": _f32_list(margin),
                "canvas_prediction": _rows(up > 0, up),
                "image_mask": _rows(mask, img_vals),
            }
        )
    return {"tie": TIE, "resize_cases": resize_cases, "mask_cases": mask_cases}


def _dump(v, indent: int = 0, width: int = 110) -> str:
    """JSON with maps one row per line and short lists on one line."""
    flat = json.dumps(v, separators=(", ", ": "))
    is_rows = isinstance(v, list) and len(v) > 1 and all(isinstance(s, str) for s in v)
    if not isinstance(v, (list, dict)) or (not is_rows and indent + len(flat) <= width):
        return flat
    pad = " " * (indent + 2)
    if isinstance(v, list) and not is_rows and all(isinstance(x, (int, float)) for x in v):
        # long number lists: wrapped, several per line
        lines, cur = [], ""
        for s in (json.dumps(x) for x in v):
            if cur and len(pad) + len(cur) + len(s) + 2 > width:
                lines.append(pad + cur.rstrip())
                cur = ""
            cur += s + ", "
        lines.append(pad + cur.rstrip(", "))
        return "[\n" + ",\n".join(x.rstrip(",") for x in lines) + "\n" + " " * indent + "]"
    if isinstance(v, list):
        items = [pad + _dump(x, indent + 2, width) for x in v]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    items = [pad + json.dumps(k) + ": " + _dump(x, indent + 2, width) for k, x in v.items()]
    return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"


def render() -> str:
    return _dump(build()) + "\n"


def main() -> None:
    OUT.write_text(render())
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
