"""The click map M ("ref_label") and the click rules of InterFormer.

This module is the single Python implementation of every click rule: drawing a click disk
into M, updating M from a prediction, and choosing the next click from an error map (the
deepest-point rule used by NoC evaluation and, with a candidate factor, by training-time
click simulation). The JavaScript twin lives in ``static/js/clickmap.js``; both are checked
against the shared vectors in ``tests/vectors/clickmap.json``.

Labels (spec section 1.2): 0 definite background, 1 possible background, 2 unknown,
3 possible foreground, 4 definite foreground. M starts at 2 everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DEFINITE_BG = 0
POSSIBLE_BG = 1
UNKNOWN = 2
POSSIBLE_FG = 3
DEFINITE_FG = 4
NUM_LABELS = 5

CLICK_RADIUS = 5
IGNORE_LABEL = 255


@dataclass(frozen=True)
class Click:
    """One click in pixel coordinates of the map it is drawn into (row ``y``, column ``x``)."""

    y: int
    x: int
    positive: bool


def new_click_map(height: int, width: int) -> np.ndarray:
    """A fresh click map: every pixel UNKNOWN (uint8, shape (height, width))."""
    if height <= 0 or width <= 0:
        raise ValueError(f"click map size must be positive, got {height}x{width}")
    return np.full((height, width), UNKNOWN, dtype=np.uint8)


def disk_offsets(radius: int = CLICK_RADIUS) -> np.ndarray:
    """Integer (dy, dx) offsets with exact Euclidean distance <= radius (81 for radius 5)."""
    r = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(r, r, indexing="ij")
    keep = dy * dy + dx * dx <= radius * radius
    return np.stack([dy[keep], dx[keep]], axis=1)


def add_click(m: np.ndarray, click: Click, radius: int = CLICK_RADIUS) -> np.ndarray:
    """Draw ``click`` into M in place and return M.

    Every pixel whose exact Euclidean distance to the click is <= ``radius`` becomes 4
    (positive) or 0 (negative); the disk is clipped at the map's edges. The newest click
    overwrites whatever was there, older definite labels included (spec 7.7).
    """
    h, w = m.shape
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (click.y, click.x)):
        raise ValueError(f"click coordinates must be integers, got ({click.y!r}, {click.x!r})")
    if not (0 <= click.y < h and 0 <= click.x < w):
        raise ValueError(f"click ({click.y}, {click.x}) lies outside the {h}x{w} click map")
    off = disk_offsets(radius)
    ys = off[:, 0] + click.y
    xs = off[:, 1] + click.x
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    m[ys[inside], xs[inside]] = DEFINITE_FG if click.positive else DEFINITE_BG
    return m


# Transition table indexed [old label, prediction]; definite labels never change.
_TRANSITIONS = np.array(
    [
        [DEFINITE_BG, DEFINITE_BG],  # 0: unchanged
        [POSSIBLE_BG, UNKNOWN],  # 1: stays 1 on bg, -> 2 on fg
        [POSSIBLE_BG, POSSIBLE_FG],  # 2: -> 1 on bg, -> 3 on fg
        [UNKNOWN, POSSIBLE_FG],  # 3: -> 2 on bg, stays 3 on fg
        [DEFINITE_FG, DEFINITE_FG],  # 4: unchanged
    ],
    dtype=np.uint8,
)


def update_from_prediction(m: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Return a new M updated from a binary prediction of the same shape (spec 1.2 table)."""
    if m.shape != pred.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match click map {m.shape}")
    return _TRANSITIONS[m, (pred > 0).astype(np.intp)]


def _check_same_shape(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match ground truth {gt.shape}")


def _error_distances(
    pred: np.ndarray, gt: np.ndarray, clicked: list[Click] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact L2 distance transforms of the FN and FP regions, image border as boundary.

    Clicked pixels are removed from both regions *before* the transform (spec section 3, as the
    authors' code does), so an ignored click acts as a boundary and is not clicked again next
    to itself.
    """
    valid = gt != IGNORE_LABEL
    fg = gt == 1
    pred_fg = pred > 0
    fn = fg & ~pred_fg & valid
    fp = ~fg & pred_fg & valid
    for c in clicked or ():
        if not (0 <= c.y < gt.shape[0] and 0 <= c.x < gt.shape[1]):
            raise ValueError(f"clicked pixel ({c.y}, {c.x}) lies outside the {gt.shape} map")
        fn[c.y, c.x] = False
        fp[c.y, c.x] = False
    dts = []
    for region in (fn, fp):
        padded = np.pad(region.astype(np.uint8), 1)
        dts.append(cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1])
    return dts[0], dts[1]


def next_click(
    pred: np.ndarray,
    gt: np.ndarray,
    clicked: list[Click] | None = None,
    candidate_k: float = 1.0,
    rng: np.random.Generator | None = None,
) -> Click | None:
    """Choose the next simulated click from the errors of ``pred`` against ``gt``.

    ``gt`` holds 0 background, 1 foreground and 255 ignore (ignored pixels are never errors).
    The click goes into the FN region if its deepest point is deeper than the FP region's,
    else into the FP region. With ``candidate_k == 1`` it is the deepest pixel (the first in
    row-major order, as in the standard NoC protocol); with k > 1 (training) it is drawn at
    random among pixels deeper than max / k. Pixels already clicked are excluded. Returns None
    when there is no error left.
    """
    _check_same_shape(pred, gt)
    fn_dt, fp_dt = _error_distances(pred, gt, clicked)
    fn_max, fp_max = float(fn_dt.max()), float(fp_dt.max())
    if fn_max <= 0.0 and fp_max <= 0.0:
        return None
    positive = fn_max > fp_max
    dt, dmax = (fn_dt, fn_max) if positive else (fp_dt, fp_max)
    if candidate_k <= 1.0:
        ys, xs = np.nonzero(dt == dmax)
        i = 0
    else:
        ys, xs = np.nonzero(dt > dmax / (candidate_k + 1e-8))
        i = int((rng or np.random.default_rng()).integers(len(ys)))
    return Click(y=int(ys[i]), x=int(xs[i]), positive=positive)


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Foreground IoU of a binary prediction against a {0, 1, 255} mask, ignoring 255."""
    _check_same_shape(pred, gt)
    valid = gt != IGNORE_LABEL
    p = (pred > 0) & valid
    g = (gt == 1) & valid
    union = np.count_nonzero(p | g)
    if union == 0:
        return 1.0
    return np.count_nonzero(p & g) / union
