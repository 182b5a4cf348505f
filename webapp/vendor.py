"""Third-party browser code, served from our own origin (no CDN: cross-origin isolation and
offline use both want it here).

``GET /vendor/ort/<file>``: a file of onnxruntime-web's ``dist/`` folder (config ``ORT_DIST``,
the npm package pinned in package.json), e.g. ``ort.wasm.min.mjs``,
``ort-wasm-simd-threaded.wasm``.
``GET /vendor/socket.io/<file>``: a file of socket.io-client's ``dist/`` folder (config
``SOCKETIO_CLIENT_DIST``), e.g. ``socket.io.esm.min.js``.

The folders are flat, so a file name is one path component of safe characters; anything else
(``..``, slashes, encoded variants) is a 404.
"""

from __future__ import annotations

import re
from pathlib import Path

from flask import Blueprint, abort, current_app, send_file

bp = Blueprint("vendor", __name__, url_prefix="/vendor")

MIME_TYPES = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".map": "application/json",
}
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def resolve_in(folder: Path, name: str, suffixes: dict | tuple | None = None) -> Path | None:
    """``folder / name`` if ``name`` is one safe path component naming a regular file inside
    ``folder`` (symlinks resolved and re-checked), else None."""
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        return None
    if suffixes is not None and Path(name).suffix not in suffixes:
        return None
    root = folder.resolve()
    path = (root / name).resolve()
    if path.parent != root or not path.is_file():
        return None
    return path


@bp.get("/ort/<path:filename>")
def ort_file(filename: str):
    path = resolve_in(Path(current_app.config["ORT_DIST"]), filename, MIME_TYPES)
    if path is None:
        abort(404)
    # The package version is pinned, so the files change only with an upgrade: revalidate
    # with the ETag after an hour.
    return send_file(path, mimetype=MIME_TYPES[path.suffix], max_age=3600, conditional=True)


@bp.get("/socket.io/<path:filename>")
def socketio_file(filename: str):
    path = resolve_in(Path(current_app.config["SOCKETIO_CLIENT_DIST"]), filename, MIME_TYPES)
    if path is None:
        abort(404)
    return send_file(path, mimetype=MIME_TYPES[path.suffix], max_age=3600, conditional=True)
