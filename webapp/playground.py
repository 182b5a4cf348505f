"""The playground: a public demo of click segmentation with the decoder running in the browser.

Routes (JSON errors are ``{"error": message}``):

``GET /playground``                              the page (templates/playground.html)
``GET /api/playground/samples``                  ``{"samples": [...], "decoder": {"model", "manifest"}}``
``GET /api/playground/samples/<id>/image``       the sample image (PNG/JPEG as stored)
``GET /api/playground/samples/<id>/pyramid``     its feature pyramid file (``application/octet-stream``,
                                                 model_export/pyramid_format.py), computed on first request
``GET /api/playground/decoder.onnx``             the per-click decoder (config ``MODEL_DIR``)
``GET /api/playground/decoder.json``             its manifest (model id/version, canvas rule, I/O names)
``GET /api/playground/decoder.context.onnx``     the split decoder's per-image graph, when exported
``GET /api/playground/decoder.click.onnx``       and its per-click graph
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, current_app, jsonify, render_template, send_file, url_for

from .samples_store import SAMPLE_ID, PyramidCache, Sample, SampleError, load_samples

bp = Blueprint("playground", __name__)
log = logging.getLogger(__name__)

_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
DECODER_FILES = {
    "decoder.onnx": "application/octet-stream",
    "decoder.context.onnx": "application/octet-stream",  # the split decoder (decoder.json "split")
    "decoder.click.onnx": "application/octet-stream",
    "decoder.json": "application/json",
}


def api_error(message: str, status: int):
    return jsonify(error=message), status


def _samples() -> dict[str, Sample]:
    ext = current_app.extensions
    if "playground_samples" not in ext:
        ext["playground_samples"] = load_samples(Path(current_app.config["SAMPLES_DIR"]))
    return ext["playground_samples"]


def _pyramids() -> PyramidCache:
    ext = current_app.extensions
    if "playground_pyramids" not in ext:
        ext["playground_pyramids"] = PyramidCache(
            Path(current_app.config["DATA_DIR"]) / "pyramids", current_app.config.get("PYRAMID_PROVIDER")
        )
    return ext["playground_pyramids"]


def _sample_or_none(sample_id: str) -> Sample | None:
    if not SAMPLE_ID.fullmatch(sample_id):
        return None
    return _samples().get(sample_id)


@bp.get("/playground")
def page():
    return render_template("playground.html")


@bp.get("/api/playground/samples")
def samples():
    out = []
    for s in _samples().values():
        d = s.to_json()
        d["image"] = url_for(".sample_image", sample_id=s.id)
        d["pyramid"] = url_for(".sample_pyramid", sample_id=s.id)
        out.append(d)
    decoder = {
        "model": url_for(".decoder_file", name="decoder.onnx"),
        "manifest": url_for(".decoder_file", name="decoder.json"),
    }
    return jsonify(samples=out, decoder=decoder)


@bp.get("/api/playground/samples/<sample_id>/image")
def sample_image(sample_id: str):
    s = _sample_or_none(sample_id)
    if s is None:
        return api_error(f"unknown sample {sample_id!r}", 404)
    mime = _IMAGE_TYPES.get(s.path.suffix.lower(), "application/octet-stream")
    return send_file(s.path, mimetype=mime, max_age=3600, conditional=True)


@bp.get("/api/playground/samples/<sample_id>/pyramid")
def sample_pyramid(sample_id: str):
    s = _sample_or_none(sample_id)
    if s is None:
        return api_error(f"unknown sample {sample_id!r}", 404)
    try:
        path = _pyramids().get(s)
    except SampleError as e:
        log.error("pyramid of sample %s: %s", sample_id, e)
        return api_error(str(e), e.status)
    except Exception as e:  # the provider failed: say so, do not cache anything
        log.exception("pyramid provider failed on sample %s", sample_id)
        return api_error(f"computing the pyramid failed: {type(e).__name__}: {e}", 500)
    return send_file(path, mimetype="application/octet-stream", max_age=0, conditional=True)


@bp.get(f"/api/playground/<any({', '.join(repr(n) for n in DECODER_FILES)}):name>")
def decoder_file(name: str):
    path = Path(current_app.config["MODEL_DIR"]) / name
    if not path.is_file():
        return api_error(f"no decoder installed: {name} is missing from the model directory", 404)
    # max_age 0 + ETag: a newly exported decoder is picked up on the next page load.
    return send_file(path, mimetype=DECODER_FILES[name], max_age=0, conditional=True)
