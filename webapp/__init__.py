"""InterFormer Studio web app: the Flask application factory.

    from webapp import create_app
    app = create_app({"MODEL_DIR": "var/models/default", "PYRAMID_PROVIDER": provider})

Blueprints by audience:

* ``playground`` (``webapp/playground.py``): the public demo page ``/playground`` and its
  JSON/binary API under ``/api/playground/`` (sample images, their feature pyramids, the
  decoder ONNX file and its manifest).
* ``auth`` (``webapp/auth.py``): ``/login``, ``/logout`` and ``/api/auth/...``.
* ``admin`` (``webapp/admin.py``): the admins' pages under ``/admin`` (projects, uploads,
  live precompute progress, export).
* ``annotate`` (``webapp/annotate.py``): the annotators' pages under ``/annotate`` (the
  projects, and the annotation page grown from the playground).
* ``api`` (``webapp/api.py``): the JSON API of projects, images and objects under ``/api/``
  (admin pages and the annotator).
* ``crowd`` (``webapp/crowd.py``): the crowdsourcing API (queue with locks, drafts, review,
  quality, dashboard, invites, completion codes); ``invites`` (``webapp/invites.py``): the
  public sign-up pages of invitation links; ``review`` pages (``webapp/review_pages.py``).
* ``vendor`` (``webapp/vendor.py``): third-party browser code served from our own origin
  (onnxruntime-web under ``/vendor/ort/``, socket.io-client under ``/vendor/socket.io/``; no CDN).

Beside them: the database (``webapp/db.py``, migrated to head at start), the blob store
(``webapp/storage.py``), the precompute with its in-process worker (``webapp/precompute.py``)
and Socket.IO (``webapp/realtime.py``; run the app with ``socketio.run`` --
``app.extensions["socketio"]`` -- as ``interformer serve`` does).

Every route and Socket.IO event is checked against one role table (``webapp/permissions.py``).

Every response is cross-origin isolated (``webapp/headers.py``) so that the browser grants
``SharedArrayBuffer`` and onnxruntime-web can run its WebAssembly with threads.

Configuration keys (defaults in ``_defaults``; a ``config`` dict overrides them, and the
environment variables ``INTERFORMER_DATA_DIR`` / ``INTERFORMER_MODEL_DIR`` / ``DATABASE_URL`` /
``INTERFORMER_SECRET_KEY`` override the defaults of ``DATA_DIR`` / ``MODEL_DIR`` /
``DATABASE_URL`` / ``SECRET_KEY``):

``DATA_DIR``
    Where the app writes: the SQLite database (``interformer.sqlite3``), the blob store
    (``blobs/``: image files and their pyramids), the playground's pyramid cache
    (``pyramids/<cache key>/``) and the session secret (``secret_key``). Default ``var/`` of
    the repository.
``DATABASE_URL``
    SQLAlchemy URL; ``postgresql://...`` selects PostgreSQL (psycopg 3). Default: SQLite in
    ``DATA_DIR``.
``MODEL_DIR``
    Folder holding ``decoder.onnx`` and ``decoder.json`` (the per-click decoder and its
    manifest). Default ``DATA_DIR/models/default``.
``SAMPLES_DIR``
    The playground's sample images and their ``samples.json``. Default ``webapp/samples``.
``PYRAMID_PROVIDER``
    ``callable(rgb: np.ndarray (H, W, 3) uint8) -> bytes``: computes an image's feature
    pyramid file (``model_export.pyramid_format``). An optional ``cache_key`` attribute (e.g.
    ``"interformer-tinyvit-1"``) names the model, so that pyramids of different models never
    mix. ``None``: no precompute runs (new images stay pending) and the playground's pyramid
    route answers 503 unless a cached file exists.
``PRECOMPUTE_WORKER``
    ``"thread"`` (default): the precompute runs in a thread of this process; ``"redis"``: jobs
    go to Redis and ``interformer worker`` processes run them; ``"none"``: jobs are only
    recorded. With ``REDIS_URL`` / ``PRECOMPUTE_QUEUE`` / ``BLOB_STORE_URL`` /
    ``SOCKETIO_CHANNEL``: webapp/scaleout.py and docs/deploy.md (all read from the environment).
``BLOB_STORE``
    A ``webapp.storage.BlobStore``; default from ``BLOB_STORE_URL`` (a folder or
    ``s3://bucket/prefix``), else ``LocalBlobStore(DATA_DIR / "blobs")``.
``MAX_IMAGE_BYTES`` / ``MAX_IMAGE_PIXELS`` / ``MAX_ZIP_MEMBERS`` / ``MAX_ZIP_TOTAL_BYTES`` / ``MAX_ZIP_RATIO``
    Upload limits (webapp/uploads.py); ``MAX_CONTENT_LENGTH`` bounds one request.
``SESSION_COOKIE_SECURE`` / ``CSRF_ENABLED`` / ``MAX_JSON_BYTES`` / ``LOGIN_MAX_FAILURES_PER_USER`` / ``LOGIN_MAX_FAILURES_PER_IP`` / ``LOGIN_WINDOW_S`` / ``RATE_LIMIT_PREFIX`` / ``PROXY_FIX``
    Security (webapp/security.py, docs/security.md): Secure cookies (default: environment
    ``INTERFORMER_HTTPS=1``), CSRF tokens, JSON body limit, login rate limit (in Redis when
    ``REDIS_URL`` is set), proxy headers.
``PASSWORD_HASH_METHOD``
    werkzeug.security hash method for new passwords (default ``scrypt``).
``SOCKETIO_MESSAGE_QUEUE``
    e.g. ``redis://127.0.0.1:6379/0`` for several processes; default none.
``ORT_DIST`` / ``SOCKETIO_CLIENT_DIST``
    onnxruntime-web's and socket.io-client's ``dist/`` folders (under ``node_modules``).
"""

from __future__ import annotations

import mimetypes
import os
import secrets
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
    from . import scaleout

    data_dir = Path(os.environ.get("INTERFORMER_DATA_DIR", str(REPO / "var")))
    return {
        "DATA_DIR": data_dir,
        "MODEL_DIR": Path(os.environ["INTERFORMER_MODEL_DIR"]) if os.environ.get("INTERFORMER_MODEL_DIR") else None,
        "SAMPLES_DIR": PACKAGE / "samples",
        "PYRAMID_PROVIDER": None,
        "ORT_DIST": REPO / "node_modules" / "onnxruntime-web" / "dist",
        "SOCKETIO_CLIENT_DIST": REPO / "node_modules" / "socket.io-client" / "dist",
        "JSON_SORT_KEYS": False,
        "DATABASE_URL": os.environ.get("DATABASE_URL") or None,
        "SECRET_KEY": os.environ.get("INTERFORMER_SECRET_KEY") or None,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SECURE": os.environ.get("INTERFORMER_HTTPS", "").lower() in ("1", "true", "yes"),
        "PASSWORD_HASH_METHOD": "scrypt",
        "BLOB_STORE": None,
        "MAX_CONTENT_LENGTH": 4 * 1024**3,
        "MAX_IMAGE_BYTES": 64 * 1024**2,
        "MAX_IMAGE_PIXELS": 50_000_000,
        "MAX_ZIP_MEMBERS": 10_000,
        "MAX_ZIP_TOTAL_BYTES": 8 * 1024**3,
        "MAX_ZIP_RATIO": 100.0,
        **scaleout.env_defaults(),  # PRECOMPUTE_WORKER, REDIS_URL, BLOB_STORE_URL, SOCKETIO_MESSAGE_QUEUE, ...
    }


def _secret_key(data_dir: Path) -> str:
    """The session-signing key kept in ``DATA_DIR/secret_key`` (made on first start, mode 0600)."""
    path = data_dir / "secret_key"
    if not path.is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".secret_key.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # atomic; a concurrent first start keeps the key that won
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


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
    for key in ("DATA_DIR", "SAMPLES_DIR", "ORT_DIST", "SOCKETIO_CLIENT_DIST"):
        app.config[key] = Path(app.config[key])
    if app.config.get("MODEL_DIR") is None:
        app.config["MODEL_DIR"] = app.config["DATA_DIR"] / "models" / "default"
    app.config["MODEL_DIR"] = Path(app.config["MODEL_DIR"])
    provider = app.config.get("PYRAMID_PROVIDER")
    if provider is not None and not callable(provider):
        raise ValueError("PYRAMID_PROVIDER must be a callable rgb -> pyramid file bytes, or None")

    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(app.config["DATA_DIR"])

    from . import admin, annotate, api, auth, crowd, db, headers, invites, permissions, playground, realtime, review_pages, security, vendor
    from . import db_errors, scaleout
    from .precompute import Precompute

    headers.init_app(app)
    permissions.init_app(app)
    security.init_app(app)  # CSRF, login rate limit, JSON size (webapp/security.py): after the role check
    database = db.init_app(app)
    db_errors.init_app(app)  # database unreachable -> 503 with a message (webapp/db_errors.py)
    store = scaleout.make_blob_store(app.config)
    app.extensions["blob_store"] = store
    realtime.init_app(app)
    pre = Precompute(database, store, provider, realtime.notifier(app))
    pre.jobs = scaleout.make_job_queue(app.config, pre)
    app.extensions["precompute"] = pre
    scaleout.start_jobs(pre)  # the thread worker, or Redis: pick up unfinished work

    app.register_blueprint(playground.bp)
    app.register_blueprint(vendor.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(annotate.bp)
    app.register_blueprint(crowd.bp)
    app.register_blueprint(invites.bp)
    app.register_blueprint(review_pages.bp)

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

    @app.errorhandler(413)
    def too_large(e):
        if request.path.startswith("/api/"):
            limit = request.max_content_length  # this request's limit (JSON bodies: MAX_JSON_BYTES)
            hint = "" if request.is_json else "; upload fewer files at once"
            return jsonify(error=f"the request is too large (limit {limit} bytes){hint}"), 413
        return e

    @app.get("/")
    def index():
        user = auth.current_user()
        if user is None:
            return redirect(url_for("auth.login"))
        return redirect(auth.home_url(user))

    return app


def close_app(app: Flask) -> None:
    """Stop the app's worker thread and close its database connections (tests, shutdown)."""
    pre = app.extensions.get("precompute")
    if pre is not None:
        pre.jobs.stop()
    database = app.extensions.get("db")
    if database is not None:
        database.dispose()
