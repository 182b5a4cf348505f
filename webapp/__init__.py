"""InterFormer Studio web app: the Flask application factory.

    from webapp import create_app
    app = create_app({"MODEL_DIR": "var/models/default", "PYRAMID_PROVIDER": provider})

Blueprints by audience:

* ``playground`` (``webapp/playground.py``): the public demo page ``/playground`` and its
  JSON/binary API under ``/api/playground/`` (sample images, their feature pyramids, the
  decoder ONNX file and its manifest).
* ``vendor`` (``webapp/vendor.py``): third-party browser code served from our own origin
  (onnxruntime-web under ``/vendor/ort/``; no CDN).

Every response is cross-origin isolated (``webapp/headers.py``) so that the browser grants
``SharedArrayBuffer`` and onnxruntime-web can run its WebAssembly with threads.

Configuration keys (defaults in ``DEFAULTS``; a ``config`` dict overrides them, and the
environment variables ``INTERFORMER_DATA_DIR`` / ``INTERFORMER_MODEL_DIR`` override the
defaults of ``DATA_DIR`` / ``MODEL_DIR``):

``DATA_DIR``
    Where the app writes (the pyramid cache: ``DATA_DIR/pyramids/<cache key>/``). Default ``var/``
    of the repository.
``MODEL_DIR``
    Folder holding ``decoder.onnx`` and ``decoder.json`` (the per-click decoder and its
    manifest). Default ``DATA_DIR/models/default``.
``SAMPLES_DIR``
    The playground's sample images and their ``samples.json``. Default ``webapp/samples``.
``PYRAMID_PROVIDER``
    ``callable(rgb: np.ndarray (H, W, 3) uint8) -> bytes``: computes an image's feature
    pyramid file (``model_export.pyramid_format``). Called once per sample image, on the first
    request of its pyramid; the result is cached on disk. An optional ``cache_key`` attribute
    (e.g. ``"interformer-tinyvit-1"``) names the cache folder, so that pyramids of different
    models never mix. ``None``: the pyramid route answers 503 unless a cached file exists.
``ORT_DIST``
    onnxruntime-web's ``dist/`` folder. Default ``node_modules/onnxruntime-web/dist``.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, redirect, request, url_for

REPO = Path(__file__).resolve().parents[1]
PACKAGE = Path(__file__).resolve().parent

# Module scripts and WebAssembly need exact MIME types (browsers refuse others); some
# platforms' mime tables lack them.
for _ext, _type in ((".js", "text/javascript"), (".mjs", "text/javascript"), (".wasm", "application/wasm")):
    mimetypes.add_type(_type, _ext)


def _defaults() -> dict[str, Any]:
    data_dir = Path(os.environ.get("INTERFORMER_DATA_DIR", str(REPO / "var")))
    return {
        "DATA_DIR": data_dir,
        "MODEL_DIR": Path(os.environ["INTERFORMER_MODEL_DIR"]) if os.environ.get("INTERFORMER_MODEL_DIR") else None,
        "SAMPLES_DIR": PACKAGE / "samples",
        "PYRAMID_PROVIDER": None,
        "ORT_DIST": REPO / "node_modules" / "onnxruntime-web" / "dist",
        "JSON_SORT_KEYS": False,
    }


def create_app(config: dict | None = None) -> Flask:
    """Build the app; ``config`` overrides the defaults (see the module docstring)."""
    app = Flask(
        __name__,
        static_folder=str(REPO / "static"),
        static_url_path="/static",
        template_folder=str(REPO / "templates"),
    )
    app.config.from_mapping(_defaults())
    if config:
        app.config.update(config)
    for key in ("DATA_DIR", "SAMPLES_DIR", "ORT_DIST"):
        app.config[key] = Path(app.config[key])
    if app.config.get("MODEL_DIR") is None:
        app.config["MODEL_DIR"] = app.config["DATA_DIR"] / "models" / "default"
    app.config["MODEL_DIR"] = Path(app.config["MODEL_DIR"])
    provider = app.config.get("PYRAMID_PROVIDER")
    if provider is not None and not callable(provider):
        raise ValueError("PYRAMID_PROVIDER must be a callable rgb -> pyramid file bytes, or None")

    from . import headers, playground, vendor

    headers.init_app(app)
    app.register_blueprint(playground.bp)
    app.register_blueprint(vendor.bp)

    @app.errorhandler(404)
    def not_found(e):
        if request.path.startswith("/api/"):
            return jsonify(error="not found"), 404
        return e

    @app.errorhandler(405)
    def not_allowed(e):
        if request.path.startswith("/api/"):
            return jsonify(error=f"method {request.method} not allowed"), 405
        return e

    @app.get("/")
    def index():
        return redirect(url_for("playground.page"))

    return app
