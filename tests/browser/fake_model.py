"""A tiny stand-in for the real model, with the real decoder contract, for the browser tests.

* ``FakeDecoder``: a small fixed-weight torch net taking ``f1..f4`` (1, C, H/s, W/s) and
  ``click_map`` (1, 1, H, W; labels 0..4) and returning ``logits`` (1, 1, H/4, W/4): a
  foreground-minus-background margin. The click map dominates (a blurred, odd power of
  ``M - 2``, so definite clicks outweigh the "possible" labels left by earlier predictions)
  and the features nudge the boundaries. Exported with ``torch.onnx.export`` (dynamic H, W).
* ``FakePyramidProvider``: rgb -> pyramid file bytes (``model_export.pyramid_format``, int8)
  with features computed from pooled colours on the canvas (longest side 512, like the
  default model), so that the same image always gives the same file.
* ``write_model_dir``: ``decoder.onnx`` + ``decoder.json`` (the manifest the page checks).

Nothing here is meant to segment well; it only has to be deterministic, cheap and sensitive
to every input, so that the browser can be compared with the Python predictor.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from model_export.geometry import CanvasGeometry
from model_export.pyramid_format import encode_pyramid

MODEL_ID = "fake-interformer"
MODEL_VERSION = "test-1"
LONGEST_SIDE = 512
CHANNELS = (32, 64, 128, 256)
STRIDES = (4, 8, 16, 32)
FEATURE_NAMES = ("f1", "f2", "f3", "f4")


def manifest(model_id: str = MODEL_ID, model_version: str = MODEL_VERSION, longest_side: int | None = LONGEST_SIDE) -> dict:
    return {
        "format": "interformer-decoder",
        "model": {"id": model_id, "version": model_version},
        "canvas": {"longest_side": longest_side, "multiple": 32},
        "inputs": {
            "features": [
                {"name": n, "level": f"F{i + 1}", "channels": c, "stride": s}
                for i, (n, c, s) in enumerate(zip(FEATURE_NAMES, CHANNELS, STRIDES))
            ],
            "click_map": {"name": "click_map", "labels": 5},
        },
        "output": {"name": "logits", "stride": 4, "meaning": "foreground minus background margin"},
    }


def _build_decoder():
    import torch
    import torch.nn.functional as F

    class FakeDecoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            for i, c in enumerate(CHANNELS):
                self.register_buffer(f"w{i + 1}", torch.randn(1, c, 1, 1, generator=g) / c**0.5)
            r = torch.arange(-8, 9, dtype=torch.float32)
            k = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 3.5**2))
            self.register_buffer("blur", (k / k.sum())[None, None])

        def forward(self, f1, f2, f3, f4, click_map):
            d = click_map - 2.0
            c = d * d * d * d * d  # labels 0..4 -> -32, -1, 0, 1, 32
            prior = F.conv2d(F.avg_pool2d(c, 4), self.blur, padding=8)
            size = f1.shape[-2:]
            feat = F.conv2d(f1, self.w1)
            for f, w in ((f2, self.w2), (f3, self.w3), (f4, self.w4)):
                feat = feat + F.interpolate(F.conv2d(f, w), size=size, mode="bilinear", align_corners=False)
            return 6.0 * prior + 0.25 * feat - 0.8

    return FakeDecoder().eval()


def export_decoder(path: Path) -> Path:
    """Write the fake decoder as ONNX to ``path``."""
    import warnings

    import torch

    h, w = 128, 96
    args = tuple(torch.zeros(1, c, h // s, w // s) for c, s in zip(CHANNELS, STRIDES)) + (
        torch.full((1, 1, h, w), 2.0),
    )
    dyn = {n: {2: f"h{s}", 3: f"w{s}"} for n, s in zip(FEATURE_NAMES, STRIDES)}
    dyn["click_map"] = {2: "H", 3: "W"}
    dyn["logits"] = {2: "h4", 3: "w4"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _build_decoder(),
            args,
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=[*FEATURE_NAMES, "click_map"],
            output_names=["logits"],
            dynamic_axes=dyn,
        )
    return path


def write_model_dir(folder: Path, onnx_source: Path | None = None, **manifest_kw) -> Path:
    """A model directory: decoder.onnx (exported, or copied from ``onnx_source``) + decoder.json."""
    folder.mkdir(parents=True, exist_ok=True)
    if onnx_source is None:
        export_decoder(folder / "decoder.onnx")
    else:
        (folder / "decoder.onnx").write_bytes(Path(onnx_source).read_bytes())
    (folder / "decoder.json").write_text(json.dumps(manifest(**manifest_kw), indent=2), "utf-8")
    return folder


class FakePyramidProvider:
    """rgb (H, W, 3) uint8 -> pyramid file bytes; deterministic."""

    def __init__(self, model_id: str = MODEL_ID, model_version: str = MODEL_VERSION, scheme: str = "int8"):
        self.model_id = model_id
        self.model_version = model_version
        self.scheme = scheme
        self.cache_key = f"{model_id}-{model_version}"
        rng = np.random.default_rng(1234)
        self.proj = [rng.standard_normal((c, 7)).astype(np.float32) * 1.5 for c in CHANNELS]
        self.calls = 0

    def geometry(self, h: int, w: int) -> CanvasGeometry:
        return CanvasGeometry.for_image(h, w, longest_side=LONGEST_SIDE)

    def levels(self, rgb: np.ndarray) -> tuple[list[np.ndarray], CanvasGeometry]:
        g = self.geometry(*rgb.shape[:2])
        interp = cv2.INTER_AREA if g.scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(rgb, (g.resized_w, g.resized_h), interpolation=interp).astype(np.float32) / 255.0
        canvas = np.zeros((g.canvas_h, g.canvas_w, 3), np.float32)
        canvas[: g.resized_h, : g.resized_w] = resized
        out = []
        for proj, s in zip(self.proj, STRIDES):
            h, w = g.canvas_h // s, g.canvas_w // s
            p = canvas.reshape(h, s, w, s, 3).mean(axis=(1, 3))
            r, gg, b = p[..., 0], p[..., 1], p[..., 2]
            basis = np.stack([r, gg, b, r * gg, gg * b, r * b, np.ones_like(r)], 0) - 0.4  # (7, h, w)
            out.append(np.tanh(np.tensordot(proj, basis, axes=1)).astype(np.float32))
        return out, g

    def __call__(self, rgb: np.ndarray) -> bytes:
        self.calls += 1
        levels, g = self.levels(rgb)
        meta = {"model_id": self.model_id, "model_version": self.model_version, "canvas": g}
        return encode_pyramid(levels, meta, self.scheme)


class OnnxDecodeModel:
    """The ONNX decoder behind ``InterFormerPredictor``'s model interface (``decode``), so that
    the Python reference is the predictor itself: ``decode`` returns 2-class logits whose
    difference is the ONNX margin."""

    def __init__(self, onnx_path: Path):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])

    def eval(self):
        return self

    def complete_pyramid(self, feats):
        return list(feats)  # the ONNX graph takes the shipped levels as they are

    def decode(self, feats, ref, roi=None):
        import torch

        assert roi is None, "the fake decoder has no zoom-in"
        feeds = {n: f.numpy() for n, f in zip(FEATURE_NAMES, feats)}
        feeds["click_map"] = ref.numpy()
        margin = torch.from_numpy(self.sess.run(["logits"], feeds)[0])
        return torch.cat([torch.zeros_like(margin), margin], dim=1)
