"""Training samples: where objects come from, and the cached-embedding dataset.

Two sources, one ``ObjectRef`` each per object mask:

* ``folder_objects`` — folders of ``images/`` + ``masks/`` (one mask PNG per object);
* ``coco_objects`` — COCO-style instance JSON (polygons or RLE, rasterised with pycocotools);
  crowd annotations and objects under ``min_area`` pixels are skipped.

``CachedEmbeddingDataset`` serves, per object: the cached TinyViT embedding of its image, the
image on the decoder canvas (for the adapter's RGB stem) and the object mask on the canvas
(0/1, 255 in the padding). The frozen encoder rules out geometric augmentation after caching,
so variety comes from the object choice and the click simulation; a horizontally flipped view
is used when its embedding is in the cache (``<stem>__flip.npy``).
"""

from __future__ import annotations

import json
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..data import list_samples, load_mask, load_rgb
from ..tinyvit_encoder import CANVAS_SIDE, canvas_geometry, canvas_image
from .feature_cache import cache_path

IGNORE = 255


@dataclass(frozen=True)
class ObjectRef:
    dataset: str  # cache sub-folder (the data folder's name)
    image_path: Path
    mask_path: Path | None = None  # folder source
    coco_ann: dict | None = None  # COCO source: one annotation dict
    coco_hw: tuple[int, int] | None = None

    def load_mask(self) -> np.ndarray:
        if self.mask_path is not None:
            return load_mask(self.mask_path)
        from pycocotools import mask as mask_utils

        assert self.coco_ann is not None and self.coco_hw is not None
        h, w = self.coco_hw
        seg = self.coco_ann["segmentation"]
        if isinstance(seg, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
        elif isinstance(seg.get("counts"), list):
            rle = mask_utils.frPyObjects(seg, h, w)
        else:
            rle = seg
        return mask_utils.decode(rle).astype(np.uint8)


def folder_objects(folder: Path) -> list[ObjectRef]:
    return [ObjectRef(folder.name, s.image_path, mask_path=s.mask_path) for s in list_samples(folder)]


def coco_objects(json_path: Path, images_dir: Path, dataset: str, min_area: int = 1024) -> list[ObjectRef]:
    data = json.loads(Path(json_path).read_text())
    images = {im["id"]: im for im in data["images"]}
    out = []
    for ann in sorted(data["annotations"], key=lambda a: a["id"]):
        if ann.get("iscrowd", 0) or ann.get("area", min_area) < min_area:
            continue
        im = images[ann["image_id"]]
        path = images_dir / im["file_name"]
        if not path.exists():
            continue
        out.append(ObjectRef(dataset, path, coco_ann=ann, coco_hw=(im["height"], im["width"])))
    return out


def discover_objects(data_root: Path) -> list[ObjectRef]:
    """Objects of every training folder under ``data_root`` (a folder with a COCO JSON uses it)."""
    roots = [data_root] if (data_root / "images").is_dir() else sorted(p for p in data_root.iterdir() if p.is_dir())
    objs: list[ObjectRef] = []
    for d in roots:
        jsons = sorted(d.glob("instances*.json"))
        if jsons:
            objs += coco_objects(jsons[0], d / "images", d.name)
        elif (d / "images").is_dir():
            objs += folder_objects(d)
    return objs


def split_holdout(objs: list[ObjectRef], fraction: float = 0.02, seed: int = 0) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """Split by image (never the same image on both sides), deterministically by path hash."""
    train, held = [], []
    for o in objs:
        h = zlib.crc32(f"{seed}:{o.image_path.name}".encode()) / 0xFFFFFFFF
        (held if h < fraction else train).append(o)
    return train, held


def mask_on_canvas(mask: np.ndarray, side: int = CANVAS_SIDE) -> np.ndarray:
    """Object mask (H,W) {0,1,255} -> (side, side) on the decoder canvas, 255 in the padding."""
    g = canvas_geometry(*mask.shape)
    out = np.full((side, side), IGNORE, dtype=np.uint8)
    out[: g.resized_h, : g.resized_w] = cv2.resize(mask, (g.resized_w, g.resized_h), interpolation=cv2.INTER_NEAREST)
    return out


EMBED_STRIDE = 8  # the TinyViT embedding's stride on the decoder canvas
CROP_ALIGN = 32  # crops keep the stride-32 grid of the pyramid aligned with full-canvas inference


def random_crop_window(gt: np.ndarray, crop: int, rng: random.Random) -> tuple[int, int]:
    """Top-left (y, x) of a ``crop`` x ``crop`` window, aligned to 32, holding part of the object.

    A random object pixel is drawn and the window placed at a random aligned position that
    contains it (like mmseg's crop that avoids windows of background only).
    """
    side = gt.shape[0]
    ys, xs = np.nonzero(gt == 1)
    if len(ys) == 0:
        return 0, 0
    i = rng.randrange(len(ys))
    out = []
    for c in (int(ys[i]), int(xs[i])):
        lo = max(0, -(-(c - crop + 1) // CROP_ALIGN) * CROP_ALIGN)
        hi = min(side - crop, (c // CROP_ALIGN) * CROP_ALIGN)
        out.append(rng.randrange(lo, hi + 1, CROP_ALIGN) if hi >= lo else 0)
    return out[0], out[1]


class CachedEmbeddingDataset(Dataset):
    """Per object: cached embedding, canvas image and canvas mask, optionally a random crop.

    ``crop`` (a multiple of 32, e.g. 320) trains on a window of the 512 canvas to save compute
    on CPUs; the I-MSA pooling sizes adapt to the map size, as they do for small images.
    """

    def __init__(self, objects: list[ObjectRef], cache_dir: Path, use_flips: bool = True,
                 crop: int | None = None, seed: int = 0):
        self.cache_dir = Path(cache_dir)
        self.objects = [o for o in objects if cache_path(self.cache_dir, o.dataset, o.image_path.stem).exists()]
        self.use_flips = use_flips
        if crop is not None and (crop % CROP_ALIGN or not 0 < crop <= CANVAS_SIDE):
            raise ValueError(f"crop must be a multiple of {CROP_ALIGN} in (0, {CANVAS_SIDE}], got {crop}")
        self.crop = crop
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.objects)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        o = self.objects[i]
        emb_path = cache_path(self.cache_dir, o.dataset, o.image_path.stem)
        flip_path = emb_path.with_name(emb_path.stem + "__flip.npy")
        flip = self.use_flips and flip_path.exists() and self.rng.random() < 0.5
        emb = np.load(flip_path if flip else emb_path).astype(np.float32)
        rgb = load_rgb(o.image_path)
        mask = o.load_mask()
        if flip:
            rgb, mask = rgb[:, ::-1].copy(), mask[:, ::-1].copy()
        image, gt = canvas_image(rgb), mask_on_canvas(mask)
        if self.crop is not None and self.crop < CANVAS_SIDE:
            y, x = random_crop_window(gt, self.crop, self.rng)
            c, e = self.crop, EMBED_STRIDE
            gt = gt[y : y + c, x : x + c]
            image = image[:, y : y + c, x : x + c]
            emb = emb[:, y // e : (y + c) // e, x // e : (x + c) // e]
        return {
            "embedding": torch.from_numpy(np.ascontiguousarray(emb)),
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "gt": torch.from_numpy(np.ascontiguousarray(gt)),
        }
