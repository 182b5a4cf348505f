"""Shared pieces of the app tests: the test accounts, logging in, waiting for the worker, and
small builders (image files, zips, projects, uploads). (A module of its own, not conftest:
several conftest.py files share that module name.)"""

from __future__ import annotations

import io
import secrets
import zipfile

import numpy as np
from flask.testing import FlaskClient
from PIL import Image
from werkzeug.datastructures import Headers

FAST_HASH = "scrypt:1024:8:1"  # tests only: the default scrypt costs ~0.15 s per hash
ADMIN = ("alice", "alice-password")
ANNOTATOR = ("bob", "bob-password")
ANNOTATOR2 = ("carol", "carol-password")
REVIEWER = ("rita", "rita-password")


CSRF_HEADER = "X-CSRF-Token"
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


class CsrfClient(FlaskClient):
    """The apps' test client (conftest sets it as ``app.test_client_class``): like the pages'
    JavaScript (static/js/http.js), it sends the session's CSRF token as ``X-CSRF-Token`` on every
    state-changing request. ``client.csrf = False`` sends none (tests of the refusal); a header
    given by the caller is kept."""

    csrf = True

    def csrf_token(self) -> str:
        """The token in this client's session (put there first, as a page's first render does)."""
        with self.session_transaction() as sess:
            tok = sess.get("_csrf")
            if not tok:
                tok = sess["_csrf"] = secrets.token_urlsafe(32)
        return tok

    def open(self, *args, **kwargs):
        method = str(kwargs.get("method") or "GET").upper()
        if self.csrf and method in UNSAFE and not args[1:]:
            headers = Headers(kwargs.pop("headers", None) or {})
            if CSRF_HEADER not in headers:
                headers[CSRF_HEADER] = self.csrf_token()
            kwargs["headers"] = headers
        return super().open(*args, **kwargs)


def login(client, username: str, password: str):
    resp = client.post("/api/auth/login", json={"username": username, "password": password})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["csrf_token"], "the login answer carries the session's CSRF token"
    return client


def wait_idle(app, timeout: float = 30.0) -> None:
    assert app.extensions["precompute"].jobs.wait_idle(timeout), "the precompute did not finish in time"


def image_bytes(w: int = 64, h: int = 48, fmt: str = "PNG", seed: int = 0, **save) -> bytes:
    """A small image with distinct content per seed (so checksums differ)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **save)
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buf.getvalue()


def create_project(client, name: str = "P", classes=("cat", "dog")) -> dict:
    resp = client.post("/api/projects", json={"name": name, "classes": list(classes)})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["project"]


def upload(client, project_id: int, files: dict[str, bytes]):
    data = {"files": [(io.BytesIO(b), name) for name, b in files.items()]}
    return client.post(f"/api/projects/{project_id}/images", data=data, content_type="multipart/form-data")


def results_by_file(resp) -> dict[str, dict]:
    return {r["file"]: r for r in resp.get_json()["results"]}
