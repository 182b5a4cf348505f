"""ONNX export of InterFormer Studio's models (in the spirit of segment-anything's ``utils/onnx.py``).

* ``onnx_decoder``: ``DecoderOnnxModel``, the per-click part (click embedding + I-MSA neck +
  head) with dynamic canvas height and width, and its export / weight variants / comparison.
* ``onnx_encoder``: the per-image part (``PyramidAdapterOnnx`` for the TinyViT model, the ViT +
  SimpleFPN for the faithful models) and ``OnnxPyramidPipeline``, the server's numpy /
  onnxruntime-only replacement for ``predictor.ImagePipeline``.
* ``manifest``: the ``decoder.json`` written next to ``decoder.onnx`` and ``validate_manifest``.
* ``cli``: ``add_export_parser(subparsers)`` for ``interformer export``.

This package imports nothing heavy at import time: ``OnnxPyramidPipeline`` and the manifest
helpers work without torch.
"""

from __future__ import annotations

__all__ = ["onnx_decoder", "onnx_encoder", "manifest", "cli"]
