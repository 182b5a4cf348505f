"""A project's annotations out: COCO JSON, and a zip of PNG masks.

COCO (``coco_export``): ``images``, ``categories`` (one per label class, id = position + 1,
in order), ``annotations`` with ``iscrowd`` 0, ``area``, ``bbox`` and the mask twice:

* ``segmentation`` -- polygons that keep every part and hole exactly (webapp/polygons.py);
  with ``segmentation="rle"`` it is the COCO RLE instead;
* ``rle`` -- the stored COCO RLE ``{"size": [h, w], "counts": "..."}`` (lossless);

plus ``attributes`` (clicks, time spent, author, created_at) and the image's sha256 and
annotation status. Deleted objects are left out.

PNG zip (``png_masks_zip``), per image (``<stem>`` = the image id, 6 digits):

* ``objects/<stem>/<n>.png`` -- each object's binary mask (L, 0/255), lossless even where
  objects overlap; ``n`` counts the image's objects from 1 in creation order;
* ``instances/<stem>.png`` -- 16-bit instance map: pixel = ``n`` of the object on top (later
  objects cover earlier ones), 0 = background;
* ``semantic/<stem>.png`` -- palette PNG: pixel = category id of the object on top, 0 =
  background, the palette holds the label classes' colours;
* ``index.json`` -- categories, and per image its file name, size and objects
  (``n``, object id, category id, class name, file).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from . import masks
from .models import AnnotationObject, Image, Project, User, iso, utcnow
from .polygons import mask_to_polygons


def _live_objects(session: Session, project: Project) -> dict[int, list[AnnotationObject]]:
    rows = session.scalars(
        select(AnnotationObject)
        .join(Image, AnnotationObject.image_id == Image.id)
        .where(Image.project_id == project.id, AnnotationObject.deleted_at.is_(None))
        .options(selectinload(AnnotationObject.author), selectinload(AnnotationObject.label_class))
        .order_by(AnnotationObject.image_id, AnnotationObject.id)
    ).all()
    out: dict[int, list[AnnotationObject]] = {}
    for o in rows:
        out.setdefault(o.image_id, []).append(o)
    return out


def _images(session: Session, project: Project) -> list[Image]:
    return list(session.scalars(select(Image).where(Image.project_id == project.id).order_by(Image.id)).all())


def categories(project: Project) -> list[dict]:
    return [{"id": c.category_id, "name": c.name, "supercategory": "", "color": c.color} for c in project.label_classes]


def coco_export(session: Session, project: Project, segmentation: str = "polygons") -> dict:
    if segmentation not in ("polygons", "rle"):
        raise ValueError("segmentation is 'polygons' or 'rle'")
    images = _images(session, project)
    objects = _live_objects(session, project)
    anns = []
    for image in images:
        for o in objects.get(image.id, []):
            rle = masks.rle_json(o.rle_counts, image.height, image.width)
            polys = mask_to_polygons(masks.decode(o.rle_counts, image.height, image.width))
            author: User = o.author
            anns.append({
                "id": o.id,
                "image_id": image.id,
                "category_id": o.label_class.category_id,
                "segmentation": polys if segmentation == "polygons" else rle,
                "rle": rle,
                "area": o.area,
                "bbox": o.bbox,
                "iscrowd": 0,
                "attributes": {
                    "clicks": o.clicks,
                    "time_spent": o.time_spent,
                    "author": author.username,
                    "created_at": iso(o.created_at),
                },
            })
    return {
        "info": {
            "description": f"InterFormer Studio project {project.name!r}",
            "version": "1.0",
            "model_id": project.model_id,
            "date_created": iso(utcnow()),
        },
        "licenses": [],
        "images": [
            {
                "id": im.id,
                "file_name": im.filename,
                "width": im.width,
                "height": im.height,
                "sha256": im.checksum,
                "annotation_status": im.annotation_status,
            }
            for im in images
        ],
        "categories": categories(project),
        "annotations": anns,
    }


def _png(array: np.ndarray, mode: str | None = None, palette: list[int] | None = None) -> bytes:
    im = PILImage.fromarray(array, mode) if mode else PILImage.fromarray(array)
    if palette is not None:
        im.putpalette(palette)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _palette(project: Project) -> list[int]:
    pal = [0, 0, 0] * 256
    for c in project.label_classes:
        r, g, b = (int(c.color[i:i + 2], 16) for i in (1, 3, 5))
        pal[3 * c.category_id: 3 * c.category_id + 3] = [r, g, b]
    return pal


def stem(image: Image) -> str:
    return f"{image.id:06d}"


def _image_entries(image: Image, objs: list[AnnotationObject], palette: list[int]) -> Iterator[tuple[str, bytes]]:
    h, w = image.height, image.width
    instances = np.zeros((h, w), np.uint16)
    semantic = np.zeros((h, w), np.uint8)
    s = stem(image)
    for n, o in enumerate(objs, start=1):
        m = masks.decode(o.rle_counts, h, w)
        yield f"objects/{s}/{n}.png", _png(np.where(m, 255, 0).astype(np.uint8), "L")
        instances[m] = n
        semantic[m] = o.label_class.category_id
    yield f"instances/{s}.png", _png(instances)
    yield f"semantic/{s}.png", _png(semantic, "P", palette)


def png_masks_zip(session: Session, project: Project) -> bytes:
    """The zip's bytes (see the module docstring)."""
    if len(project.label_classes) > 255:
        raise ValueError("a semantic PNG holds at most 255 classes")
    palette = _palette(project)
    objects = _live_objects(session, project)
    index = {"project": project.name, "categories": categories(project), "images": []}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for image in _images(session, project):
            objs = objects.get(image.id, [])
            for name, data in _image_entries(image, objs, palette):
                zf.writestr(name, data)
            s = stem(image)
            index["images"].append({
                "id": image.id,
                "file_name": image.filename,
                "width": image.width,
                "height": image.height,
                "instances": f"instances/{s}.png",
                "semantic": f"semantic/{s}.png",
                "objects": [
                    {"n": n, "object_id": o.id, "category_id": o.label_class.category_id,
                     "class": o.label_class.name, "file": f"objects/{s}/{n}.png"}
                    for n, o in enumerate(objs, start=1)
                ],
            })
        zf.writestr("index.json", json.dumps(index, indent=2))
    return buf.getvalue()
