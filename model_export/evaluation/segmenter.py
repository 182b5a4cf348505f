"""The interface every interactively evaluated segmenter implements.

The NoC loop (``noc.py``) only talks to this protocol, so the InterFormer predictor and the
baselines (``baselines.py``) are measured by exactly the same code.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class InteractiveSegmenter(Protocol):
    """Set an image once, then click: each click returns the full current mask.

    ``set_image`` receives an RGB uint8 image (H, W, 3) and runs the image encoder once
    (it also forgets earlier clicks). ``add_click`` takes pixel coordinates of that image
    (column ``x``, row ``y``) and whether the click is positive (foreground), and returns
    the prediction after all clicks so far as a bool mask (H, W) at image resolution.
    ``reset`` forgets the clicks and keeps the image (and its encoding).
    """

    name: str

    def set_image(self, rgb: np.ndarray) -> None: ...

    def add_click(self, x: int, y: int, positive: bool) -> np.ndarray: ...

    def reset(self) -> None: ...
