"""Reading segmentation folders: ``images/`` + ``masks/`` (0 background, 1 foreground, 255 ignore).

Mask ``<stem>.png`` belongs to image ``<stem>.<ext>``; an image with several objects has masks
``<stem>_<k>.png`` instead. Each mask is one sample (one object).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_MULTI = re.compile(r"^(?P<stem>.+)_(?P<k>\d+)$")


@dataclass(frozen=True)
class Sample:
    image_path: Path
    mask_path: Path

    @property
    def name(self) -> str:
        return self.mask_path.stem


def list_samples(folder: str | Path) -> list[Sample]:
    """All (image, mask) samples of a folder, sorted by mask name.

    Raises ValueError when the folder lacks ``images/`` or ``masks/`` or a mask has no image.
    """
    root = Path(folder)
    img_dir, mask_dir = root / "images", root / "masks"
    if not img_dir.is_dir() or not mask_dir.is_dir():
        raise ValueError(f"{root} must contain images/ and masks/ folders")
    images = {p.stem: p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
    samples = []
    for mp in sorted(mask_dir.glob("*.png")):
        img = images.get(mp.stem)
        if img is None:
            m = _MULTI.match(mp.stem)
            img = images.get(m.group("stem")) if m else None
        if img is None:
            raise ValueError(f"mask {mp.name} has no matching image in {img_dir}")
        samples.append(Sample(img, mp))
    return samples


def load_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file as RGB uint8 (H, W, 3)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def load_mask(path: str | Path) -> np.ndarray:
    """Decode a label mask as uint8 (H, W) with values in {0, 1, 255}."""
    with Image.open(path) as im:
        m = np.asarray(im.convert("L") if im.mode not in ("L", "P") else im, dtype=np.uint8)
    return m.copy()
