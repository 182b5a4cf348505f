"""Accepted objects as the API receives and returns them.

A client saves an object with (JSON)::

    {"class": "cat" | <label class id>,      (or "class_id": <label class id>)
     "rle": {"size": [h, w], "counts": [...] | "..."}   or   "mask_png": "<base64 PNG>",
     "clicks": [{"x": 12.5, "y": 40, "positive": true, "t": 0}, ...],
     "time_spent": 7.3}

``x``/``y`` are image pixel coordinates, ``t`` milliseconds since the object was started and
``time_spent`` seconds. ``parse_object`` checks all of it and says what is wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import masks
from .models import AnnotationObject, Image, LabelClass, Project, iso

MAX_CLICKS = 1000
MAX_TIME_SPENT = 24 * 3600.0


class PayloadError(ValueError):
    """The request body cannot be accepted; the message says why."""


@dataclass
class ObjectInput:
    label_class: LabelClass
    mask: np.ndarray
    clicks: list[dict]
    time_spent: float


def _number(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def label_class_of(data: dict, project: Project) -> LabelClass:
    key = data.get("class_id", data.get("class"))
    if key is None:
        raise PayloadError('"class" is missing (a label class name or id)')
    for c in project.label_classes:
        if (isinstance(key, int) and not isinstance(key, bool) and c.id == key) or (isinstance(key, str) and c.name == key):
            return c
    names = ", ".join(c.name for c in project.label_classes)
    raise PayloadError(f"unknown label class {key!r}; the project's classes are: {names}")


def _clicks(value: object, image: Image) -> list[dict]:
    if not isinstance(value, list):
        raise PayloadError('"clicks" must be a list of {"x", "y", "positive", "t"}')
    if len(value) > MAX_CLICKS:
        raise PayloadError(f"at most {MAX_CLICKS} clicks per object")
    out = []
    for i, c in enumerate(value):
        if not isinstance(c, dict):
            raise PayloadError(f"click {i} is not an object")
        x, y, t = _number(c.get("x")), _number(c.get("y")), _number(c.get("t"))
        if x is None or y is None or not (0 <= x <= image.width and 0 <= y <= image.height):
            raise PayloadError(f"click {i}: x, y must be numbers within the {image.width}x{image.height} image")
        if not isinstance(c.get("positive"), bool):
            raise PayloadError(f'click {i}: "positive" must be true or false')
        if t is None or t < 0:
            raise PayloadError(f'click {i}: "t" must be a number of milliseconds >= 0')
        out.append({"x": x, "y": y, "positive": c["positive"], "t": t})
    return out


def parse_object(data: object, image: Image, project: Project) -> ObjectInput:
    if not isinstance(data, dict):
        raise PayloadError("expected a JSON object body")
    label_class = label_class_of(data, project)
    has_rle, has_png = "rle" in data, "mask_png" in data
    if has_rle == has_png:
        raise PayloadError('give the mask as exactly one of "rle" or "mask_png"')
    try:
        if has_rle:
            mask = masks.mask_from_rle(data["rle"], image.height, image.width)
        else:
            mask = masks.mask_from_png(data["mask_png"], image.height, image.width)
    except masks.MaskError as e:
        raise PayloadError(str(e)) from None
    if not mask.any():
        raise PayloadError("the mask is empty")
    time_spent = _number(data.get("time_spent"))
    if time_spent is None or not 0 <= time_spent <= MAX_TIME_SPENT:
        raise PayloadError('"time_spent" must be a number of seconds between 0 and 86400')
    return ObjectInput(label_class, mask, _clicks(data.get("clicks"), image), time_spent)


def object_json(o: AnnotationObject, image: Image) -> dict:
    return {
        "id": o.id,
        "image_id": o.image_id,
        "class_id": o.label_class_id,
        "class": o.label_class.name,
        "category_id": o.label_class.category_id,
        "rle": masks.rle_json(o.rle_counts, image.height, image.width),
        "area": o.area,
        "bbox": o.bbox,
        "clicks": o.clicks,
        "time_spent": o.time_spent,
        "author_id": o.author_id,
        "author": o.author.username,
        "created_at": iso(o.created_at),
        "client_id": o.client_id,
    }
