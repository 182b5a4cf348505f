"""The web app's HTTP surface (Flask test client): cross-origin isolation headers on every
response, MIME types of the vendored onnxruntime-web, path traversal, JSON errors, the
pyramid cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model_export.geometry import CanvasGeometry
from model_export.pyramid_format import encode_pyramid, read_header, synthetic_pyramid
from webapp import create_app
from webapp.headers import ISOLATION_HEADERS

ORT_FILES = ["ort.wasm.min.mjs", "ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs", "ort.all.min.mjs"]


class CountingProvider:
    """A stand-in pyramid provider: synthetic levels on the image's 512-canvas."""

    cache_key = "synthetic-0"

    def __init__(self):
        self.calls = 0

    def __call__(self, rgb: np.ndarray) -> bytes:
        self.calls += 1
        g = CanvasGeometry.for_image(*rgb.shape[:2], longest_side=512)
        levels = synthetic_pyramid(g.canvas_h, g.canvas_w, seed=self.calls)
        return encode_pyramid(levels, {"model_id": "synthetic", "model_version": "0", "canvas": g}, "int8")


@pytest.fixture
def provider():
    return CountingProvider()


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "decoder.onnx").write_bytes(b"not really onnx")
    (d / "decoder.json").write_text(json.dumps({"model": {"id": "synthetic", "version": "0"}}))
    return d


@pytest.fixture
def client(tmp_path, provider, model_dir):
    app = create_app({"TESTING": True, "DATA_DIR": tmp_path / "data", "MODEL_DIR": model_dir, "PYRAMID_PROVIDER": provider})
    return app.test_client()


def assert_isolated(resp, what):
    for name, value in ISOLATION_HEADERS.items():
        assert resp.headers.get(name) == value, f"{what}: {name} is {resp.headers.get(name)!r}"


ROUTES = [
    "/playground",
    "/api/playground/samples",
    "/api/playground/samples/shapes/image",
    "/api/playground/samples/shapes/pyramid",
    "/api/playground/decoder.onnx",
    "/api/playground/decoder.json",
    "/static/js/playground.js",
    "/static/js/decoder_worker.js",
    "/static/css/playground.css",
    *(f"/vendor/ort/{f}" for f in ORT_FILES),
]


@pytest.mark.parametrize("path", ROUTES)
def test_every_route_is_cross_origin_isolated(client, path):
    resp = client.get(path)
    assert resp.status_code == 200, (path, resp.status_code, resp.data[:200])
    assert_isolated(resp, path)


@pytest.mark.parametrize("path", ["/nope", "/api/nope", "/vendor/ort/nope.wasm", "/static/nope.js", "/"])
def test_errors_and_redirects_are_isolated_too(client, path):
    resp = client.get(path)
    assert resp.status_code in (302, 404)
    assert_isolated(resp, path)


def test_mime_types(client):
    assert client.get("/vendor/ort/ort-wasm-simd-threaded.wasm").mimetype == "application/wasm"
    assert client.get("/vendor/ort/ort.wasm.min.mjs").mimetype == "text/javascript"
    assert client.get("/vendor/ort/ort-wasm-simd-threaded.mjs").mimetype == "text/javascript"
    assert client.get("/static/js/playground.js").mimetype == "text/javascript"
    assert client.get("/playground").mimetype == "text/html"
    assert client.get("/api/playground/samples/shapes/pyramid").mimetype == "application/octet-stream"
    assert client.get("/api/playground/decoder.onnx").mimetype == "application/octet-stream"
    assert client.get("/api/playground/decoder.json").mimetype == "application/json"
    assert client.get("/api/playground/samples/shapes/image").mimetype == "image/png"


def test_no_cdn_in_the_page(client):
    html = client.get("/playground").get_data(as_text=True)
    assert "http://" not in html and "https://" not in html
    worker = client.get("/static/js/decoder_worker.js").get_data(as_text=True)
    assert '"./ort_session.js"' in worker and "cdn" not in worker.lower()
    setup = client.get("/static/js/ort_session.js").get_data(as_text=True)  # loads onnxruntime-web
    assert '"/vendor/ort/"' in setup and "cdn" not in setup.lower() and "http" not in setup


TRAVERSALS = [
    "/vendor/ort/../../package.json",
    "/vendor/ort/..%2f..%2fpackage.json",
    "/vendor/ort/%2e%2e/%2e%2e/package.json",
    "/vendor/ort/%2e%2e%2f%2e%2e%2fpackage.json",
    "/vendor/ort/%252e%252e%252fpackage.json",
    "/vendor/ort/..%5c..%5cpackage.json",
    "/vendor/ort/....//....//package.json",
    "/vendor/ort//etc/passwd",
    "/vendor/ort/%2fetc%2fpasswd",
    "/vendor/ort/../ort/../../../pyproject.toml",
    "/vendor/ort/.",
    "/vendor/ort/ort.wasm.min.mjs%00.wasm",
    "/static/../pyproject.toml",
    "/static/..%2fpyproject.toml",
    "/api/playground/samples/..%2f..%2fsamples.json/image",
    "/api/playground/samples/../image",
    "/api/playground/samples/%2e%2e/pyramid",
    "/api/playground/samples/shapes%2f..%2f..%2f..%2fpyproject.toml/image",
    "/api/playground/..%2fdecoder.onnx",
    "/api/playground/%2e%2e%2fdecoder.json",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_is_404(client, path):
    resp = client.get(path, follow_redirects=True)  # werkzeug answers "//" with a redirect merging slashes
    # a NUL in the path is refused before routing (400, webapp/security.py); the rest are 404
    assert resp.status_code == (400 if "%00" in path else 404), (path, resp.status_code)
    body = resp.get_data(as_text=True)
    assert '"name": "interformer-studio"' not in body and "[project]" not in body and "root:" not in body
    assert_isolated(resp, path)


@pytest.mark.parametrize("kind", ["image", "pyramid"])
def test_unknown_sample_is_404_json(client, kind):
    resp = client.get(f"/api/playground/samples/nope/{kind}")
    assert resp.status_code == 404
    assert resp.is_json and resp.get_json() == {"error": "unknown sample 'nope'"}


def test_samples_listing(client):
    data = client.get("/api/playground/samples").get_json()
    ids = [s["id"] for s in data["samples"]]
    assert len(ids) >= 3 and "shapes" in ids
    for s in data["samples"]:
        assert s["image"] == f"/api/playground/samples/{s['id']}/image"
        assert s["pyramid"] == f"/api/playground/samples/{s['id']}/pyramid"
        assert s["width"] > 0 and s["height"] > 0 and s["license"]
    assert data["decoder"] == {"model": "/api/playground/decoder.onnx", "manifest": "/api/playground/decoder.json"}


def test_pyramid_computed_once_then_cached(client, provider, tmp_path):
    first = client.get("/api/playground/samples/cells/pyramid")
    assert first.status_code == 200 and provider.calls == 1
    header = read_header(first.data)
    assert (header["image"]["h"], header["image"]["w"]) == (200, 300)
    second = client.get("/api/playground/samples/cells/pyramid")
    assert second.data == first.data and provider.calls == 1
    cached = list((tmp_path / "data" / "pyramids" / "synthetic-0").glob("cells-*.ifpyr"))
    assert len(cached) == 1 and cached[0].read_bytes() == first.data


def test_pyramid_without_provider_is_503_json(tmp_path, model_dir):
    c = create_app({"TESTING": True, "DATA_DIR": tmp_path / "d", "MODEL_DIR": model_dir}).test_client()
    resp = c.get("/api/playground/samples/shapes/pyramid")
    assert resp.status_code == 503 and "PYRAMID_PROVIDER" in resp.get_json()["error"]


def test_bad_provider_output_is_500_and_not_cached(tmp_path, model_dir):
    bad = lambda rgb: b"garbage"  # noqa: E731
    c = create_app({"TESTING": True, "DATA_DIR": tmp_path / "d", "MODEL_DIR": model_dir, "PYRAMID_PROVIDER": bad}).test_client()
    resp = c.get("/api/playground/samples/shapes/pyramid")
    assert resp.status_code == 500 and "invalid" in resp.get_json()["error"]
    assert not list((tmp_path / "d").rglob("*.ifpyr"))


def test_missing_decoder_is_404_json(tmp_path):
    c = create_app({"TESTING": True, "DATA_DIR": tmp_path / "d", "MODEL_DIR": tmp_path / "empty"}).test_client()
    for name in ("decoder.onnx", "decoder.json"):
        resp = c.get(f"/api/playground/{name}")
        assert resp.status_code == 404 and "no decoder installed" in resp.get_json()["error"]
