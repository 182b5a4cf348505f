"""Object masks: COCO RLE in and out, PNG masks in.

Stored form: COCO's *compressed* RLE counts string (pycocotools), column-major, starting with a
run of background, for a mask of the image's size. Accepted from clients:

* ``{"size": [h, w], "counts": [n0, n1, ...]}`` -- uncompressed RLE (easy to produce in JS), or
  ``{"size": [h, w], "counts": "<compressed string>"}``;
* a PNG of the image's size, base64 (``data:image/png;base64,...`` or bare): foreground where
  the alpha channel (if any), else the grey value, is non-zero.

Untrusted RLE is decoded here in numpy after checking that the runs add up to h*w (pycocotools'
own decoder trusts its input), then re-encoded canonically with pycocotools.
"""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from pycocotools import mask as coco_mask


class MaskError(ValueError):
    """A mask that cannot be accepted; the message says why."""


def encode(mask: np.ndarray) -> str:
    """Compressed COCO RLE counts of a (h, w) boolean mask."""
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return rle["counts"].decode("ascii")


def decode(counts: str, height: int, width: int) -> np.ndarray:
    """(h, w) bool mask of a stored compressed RLE (checked like client input)."""
    return mask_from_counts(counts_from_string(counts), height, width)


def rle_json(counts: str, height: int, width: int) -> dict:
    return {"size": [height, width], "counts": counts}


def counts_from_string(s: str) -> list[int]:
    """Runs of a compressed COCO RLE string (pycocotools' rleFrString, with checks)."""
    counts: list[int] = []
    p = 0
    n = len(s)
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n:
                raise MaskError("the RLE counts string ends in the middle of a number")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise MaskError(f"the RLE counts string has an invalid character {s[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if k > 7:
                raise MaskError("the RLE counts string has a number that is too long")
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def mask_from_counts(counts: list[int], height: int, width: int) -> np.ndarray:
    total = height * width
    if any(not isinstance(c, int) or isinstance(c, bool) or c < 0 for c in counts):
        raise MaskError("RLE counts must be non-negative integers")
    if sum(counts) != total:
        raise MaskError(f"the RLE runs add up to {sum(counts)} pixels; the image has {height}x{width} = {total}")
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    return flat.reshape(width, height).T  # column-major


def mask_from_rle(rle: object, height: int, width: int) -> np.ndarray:
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise MaskError('"rle" must be {"size": [height, width], "counts": ...}')
    size = rle["size"]
    if not isinstance(size, list) or [int(v) if isinstance(v, int) else None for v in size] != [height, width]:
        raise MaskError(f"the RLE size is {size!r}; the image is [height, width] = [{height}, {width}]")
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts_from_string(counts)
    elif not isinstance(counts, list):
        raise MaskError("RLE counts must be a list of integers or a compressed COCO string")
    return mask_from_counts(counts, height, width)


def mask_from_png(b64: object, height: int, width: int) -> np.ndarray:
    from PIL import Image

    if not isinstance(b64, str):
        raise MaskError('"mask_png" must be a base64 string')
    if b64.startswith("data:"):
        b64 = b64.partition(",")[2]
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise MaskError('"mask_png" is not valid base64') from None
    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as im:
            if im.size != (width, height):
                raise MaskError(f"the mask PNG is {im.size[0]}x{im.size[1]}; the image is {width}x{height}")
            im.load()
            if "A" in im.getbands() or (im.mode == "P" and "transparency" in im.info):
                plane = im.convert("RGBA").getchannel("A")
            else:
                plane = im.convert("L")
            return np.asarray(plane) > 0
    except MaskError:
        raise
    except Exception:  # noqa: BLE001 -- any decoder error: not a usable PNG
        raise MaskError('"mask_png" is not a decodable PNG') from None


def area_and_bbox(mask: np.ndarray) -> tuple[int, list[float]]:
    """Pixel count and COCO bbox [x, y, w, h] (pixel-edge coordinates)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return 0, [0.0, 0.0, 0.0, 0.0]
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    return len(xs), [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)]
