"""Response headers every route gets: cross-origin isolation.

onnxruntime-web runs its WebAssembly with threads only where ``SharedArrayBuffer`` exists,
which browsers grant only to *cross-origin isolated* pages (``self.crossOriginIsolated``):

* ``Cross-Origin-Opener-Policy: same-origin`` and ``Cross-Origin-Embedder-Policy:
  require-corp`` on the documents and workers (we send them on every response: the page,
  the decoder worker and onnxruntime's own pthread workers all come from here);
* every subresource must then be same-origin or opt in with ``Cross-Origin-Resource-Policy``;
  all of ours say ``same-origin`` (nothing here is meant to be embedded by other sites).

``X-Content-Type-Options: nosniff`` makes the browser trust our exact MIME types (module
scripts and ``application/wasm`` need them anyway).
"""

from __future__ import annotations

from flask import Flask, Response

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


def add_isolation_headers(response: Response) -> Response:
    for name, value in ISOLATION_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def init_app(app: Flask) -> None:
    """Add the headers to every response of ``app`` (error pages and static files included)."""
    app.after_request(add_isolation_headers)
