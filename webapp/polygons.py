"""Masks as COCO polygons that keep every part and every hole, exactly.

A COCO polygon segmentation is a list of polygons (flat ``[x0, y0, x1, y1, ...]``) that readers
(pycocotools ``frPyObjects`` + ``merge``) fill one by one with the even-odd rule and then
unite. So:

* each 4-connected part of the mask becomes one polygon (the list keeps every part);
* a polygon follows the pixel *edges* (vertices on integer pixel corners), so that filling it
  by pixel centres gives back exactly the pixels of the part: ``polygons_to_mask`` of
  ``mask_to_polygons(m)`` equals ``m`` pixel for pixel;
* the part's holes are spliced into its outer boundary through a zero-width bridge walked
  there and back (a "keyhole"), which the even-odd fill ignores -- so the hole stays empty,
  where a separate hole polygon would be filled by the union.

Boundaries are traced on unit pixel edges, oriented with the foreground on the right; at a
corner where two foreground pixels touch diagonally the trace turns right, staying on the
pixel it follows. Collinear vertices are dropped.
"""

from __future__ import annotations

import cv2
import numpy as np

_RIGHT = {(1, 0): (0, 1), (0, 1): (-1, 0), (-1, 0): (0, -1), (0, -1): (1, 0)}
_LEFT = {v: k for k, v in _RIGHT.items()}

Vertex = tuple[int, int]


def _unit_edges(m: np.ndarray) -> dict[Vertex, list[Vertex]]:
    """Outgoing boundary directions per vertex, for a (h, w) bool mask (foreground on the right)."""
    h, w = m.shape
    p = np.zeros((h + 2, w + 2), bool)
    p[1:-1, 1:-1] = m
    out: dict[Vertex, list[Vertex]] = {}

    def add(ys, xs, d):
        for x, y in zip(xs.tolist(), ys.tolist()):
            out.setdefault((x, y), []).append(d)

    i, j = np.nonzero(p[1:, :] & ~p[:-1, :])  # top edges: (j-1, i) -> (j, i)
    add(i, j - 1, (1, 0))
    i, j = np.nonzero(p[:-1, :] & ~p[1:, :])  # bottom edges: (j, i) -> (j-1, i)
    add(i, j, (-1, 0))
    i, j = np.nonzero(p[:, 1:] & ~p[:, :-1])  # left edges: (j, i) -> (j, i-1)
    add(i, j, (0, -1))
    i, j = np.nonzero(p[:, :-1] & ~p[:, 1:])  # right edges: (j, i-1) -> (j, i)
    add(i - 1, j, (0, 1))
    return out


def _rings(m: np.ndarray) -> list[list[Vertex]]:
    """Closed boundary walks (corner vertices only); the first starts at the top-left corner."""
    out = _unit_edges(m)
    rings = []
    while out:
        start = min(out, key=lambda v: (v[1], v[0]))
        v, d = start, None
        corners: list[Vertex] = []
        while True:
            dirs = out[v]
            if d is None or len(dirs) == 1:
                nd = dirs[0]
            else:
                nd = next(c for c in (_RIGHT[d], d, _LEFT[d]) if c in dirs)
            dirs.remove(nd)
            if not dirs:
                del out[v]
            if nd != d:
                corners.append(v)
            v, d = (v[0] + nd[0], v[1] + nd[1]), nd
            if v == start:
                break
        rings.append(_drop_collinear(corners))
    return rings


def _drop_collinear(ring: list[Vertex]) -> list[Vertex]:
    """Remove vertices where the walk goes straight on (also across the start)."""
    n = len(ring)
    keep = []
    for k in range(n):
        a, b, c = ring[k - 1], ring[k], ring[(k + 1) % n]
        cross = (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0])
        if cross != 0 or (b[0] - a[0]) * (c[0] - b[0]) + (b[1] - a[1]) * (c[1] - b[1]) < 0:
            keep.append(b)
    return keep


def _splice(base: list[Vertex], hole: list[Vertex]) -> list[Vertex]:
    """``base`` with ``hole`` walked in through a zero-width bridge from base's nearest vertex."""
    b = np.asarray(base)
    h0 = min(range(len(hole)), key=lambda k: (hole[k][1], hole[k][0]))
    d = ((b - np.asarray(hole[h0])) ** 2).sum(axis=1)
    i = int(np.argmin(d))
    rotated = hole[h0:] + hole[:h0]
    return base[: i + 1] + rotated + [rotated[0], base[i]] + base[i + 1:]


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons of a (h, w) mask: one per 4-connected part, holes kept (see module doc)."""
    m = np.asarray(mask, bool)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=4)
    polys = []
    order = sorted(range(1, n), key=lambda k: (stats[k, cv2.CC_STAT_TOP], stats[k, cv2.CC_STAT_LEFT]))
    for k in order:
        x0, y0, w, h = (int(stats[k, c]) for c in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
        part = labels[y0:y0 + h, x0:x0 + w] == k
        rings = _rings(part)
        poly = rings[0]
        for hole in rings[1:]:
            poly = _splice(poly, hole)
        polys.append([float(c) for x, y in poly for c in (x + x0, y + y0)])
    return polys


def polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """Fill COCO polygons as COCO readers do (pycocotools: even-odd per polygon, union of polygons)."""
    from pycocotools import mask as coco_mask

    from .masks import decode

    if not polygons:
        return np.zeros((height, width), bool)
    merged = coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
    return decode(merged["counts"].decode("ascii"), height, width)
