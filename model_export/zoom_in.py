"""Zoom-in ROI rule of InterFormer (spec section 2; official ``ClickSegmentorZoomIn.get_roi``).

Given the previous prediction P and the click map M *after* the current click was drawn:

1. mask = (P == 1) | (M == 4) | (M == 0); tight box (left, up, right, bottom), right/bottom
   exclusive; an empty mask gives the whole canvas (0, 0, W, H).
2. Expand about the centre, in float32 arithmetic exactly as the official torch code does:
   ``xc = (left + right) / 2``; ``left' = round(xc - r * (xc - left))`` clipped at 0 and
   ``right' = round(xc - r * (xc - right))`` clipped at W (same for up/bottom with ``yc`` and H),
   with r = float32(expand_ratio); each product and difference is rounded to float32 before the
   next operation, and ``round`` is half-to-even (torch.round / numpy.round).
3. Minimum size: ``left' = min(left', clip(round(xc - min_size / 2), 0))``,
   ``right' = max(right', clip(round(xc + min_size / 2), None, W))`` (same vertically).
4. Snap outward to the stride: left/up = floor(v / stride) * stride, right/bottom =
   ceil(v / stride) * stride.

Pure numpy (no torch), so the server and tools can use it; the result is a tuple of Python ints
in canvas pixels. Checked against the official fixture ROIs and against a literal torch
transcription of the official code on random boxes.
"""

from __future__ import annotations

import numpy as np

from .clicks import DEFINITE_BG, DEFINITE_FG

__all__ = ["expand_bbox", "get_roi", "mask_bbox"]

_F = np.float32


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight box (left, up, right, bottom) of a 2-D boolean mask, right/bottom exclusive; whole map if empty."""
    h, w = mask.shape
    rows, cols = mask.any(axis=1), mask.any(axis=0)
    if not rows.any():
        return (0, 0, w, h)
    ys, xs = np.flatnonzero(rows), np.flatnonzero(cols)
    return (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)


def _round(v: np.float32) -> np.float32:
    return np.round(_F(v))  # half to even, stays float32


def expand_bbox(
    bbox: tuple[int, int, int, int], ratio: float, height: int, width: int, min_size: int = 0
) -> tuple[int, int, int, int]:
    """Steps 2-3 of the rule above (official ``expand_bbox`` with equal h/w ratio and minimum)."""
    left, up, right, bottom = (_F(v) for v in bbox)
    r = _F(ratio)
    xc = _F(left + right) / _F(2.0)
    yc = _F(up + bottom) / _F(2.0)

    def lo(c: np.float32, v: np.float32) -> np.float32:
        return max(_round(c - _F(r * _F(c - v))), _F(0))

    def hi(c: np.float32, v: np.float32, limit: int) -> np.float32:
        return min(_round(c - _F(r * _F(c - v))), _F(limit))

    nl, nr = lo(xc, left), hi(xc, right, width)
    nu, nb = lo(yc, up), hi(yc, bottom, height)
    if min_size > 0:
        half = _F(min_size / 2.0)
        nl = min(nl, max(_round(xc - half), _F(0)))
        nr = max(nr, min(_round(xc + half), _F(width)))
        nu = min(nu, max(_round(yc - half), _F(0)))
        nb = max(nb, min(_round(yc + half), _F(height)))
    return (int(nl), int(nu), int(nr), int(nb))


def get_roi(
    prev_pred: np.ndarray,
    m: np.ndarray,
    expand_ratio: float = 1.4,
    min_size: int = 32,
    stride: int = 32,
) -> tuple[int, int, int, int]:
    """Zoom-in window (left, up, right, bottom) on the canvas, right/bottom exclusive.

    ``prev_pred``: previous binary prediction on the canvas (bool or 0/1; all zero before the
    first click); ``m``: click map after the current click. Both (H, W).
    """
    prev_pred = np.asarray(prev_pred)
    m = np.asarray(m)
    if prev_pred.shape != m.shape or m.ndim != 2:
        raise ValueError(f"prev_pred {prev_pred.shape} and m {m.shape} must be equal 2-D shapes")
    h, w = m.shape
    mask = (prev_pred == 1) | (m == DEFINITE_FG) | (m == DEFINITE_BG)
    left, up, right, bottom = expand_bbox(mask_bbox(mask), expand_ratio, h, w, min_size)
    s = _F(stride)
    left = int(np.floor(_F(left) / s) * s)
    up = int(np.floor(_F(up) / s) * s)
    right = int(np.ceil(_F(right) / s) * s)
    bottom = int(np.ceil(_F(bottom) / s) * s)
    return (left, up, right, bottom)
