"""Where an image sits on a model's canvas.

Every model works on a *canvas*: the image resized by ``scale`` (1.0 for the faithful
InterFormer, longest side -> 512 for the TinyViT default model), then padded at the bottom
and right to a multiple of 32. The click map M, the pyramid and the logits all live on the
canvas; masks are mapped back to the image. The browser uses the same rules
(``static/js/geometry.js``), checked by the shared vectors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

STRIDE = 32


def _ceil_to(v: int, m: int) -> int:
    return -(-v // m) * m


@dataclass(frozen=True)
class CanvasGeometry:
    image_h: int
    image_w: int
    scale: float
    resized_h: int  # the image's extent on the canvas
    resized_w: int
    canvas_h: int  # padded to a multiple of 32
    canvas_w: int

    @classmethod
    def for_image(cls, h: int, w: int, longest_side: int | None = None) -> CanvasGeometry:
        """Geometry for an ``h`` x ``w`` image; ``longest_side=None`` keeps the image size."""
        if h <= 0 or w <= 0:
            raise ValueError(f"image size must be positive, got {h}x{w}")
        if longest_side is not None and longest_side <= 0:
            raise ValueError(f"longest_side must be positive, got {longest_side}")
        scale = 1.0 if longest_side is None else longest_side / max(h, w)
        rh = max(1, int(round(h * scale))) if longest_side is not None else h
        rw = max(1, int(round(w * scale))) if longest_side is not None else w
        return cls(h, w, scale, rh, rw, _ceil_to(rh, STRIDE), _ceil_to(rw, STRIDE))

    def image_to_canvas(self, y: float, x: float) -> tuple[int, int]:
        """Map an image pixel (row, column) to the canvas pixel that holds its centre."""
        cy = int(np.floor((y + 0.5) * self.resized_h / self.image_h))
        cx = int(np.floor((x + 0.5) * self.resized_w / self.image_w))
        return min(max(cy, 0), self.resized_h - 1), min(max(cx, 0), self.resized_w - 1)

    def to_dict(self) -> dict:
        return asdict(self)
