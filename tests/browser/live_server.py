"""Serve a WSGI app on 127.0.0.1 (a free port) in a daemon thread, and the chromium we drive:
shared by the browser tests, bench/browser_latency.py and docs/make_screenshot.py."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

CHROMIUM = os.environ.get("INTERFORMER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def serve(app) -> Iterator[str]:
    """Serve a WSGI app on 127.0.0.1, a free port, in a daemon thread; yields the base URL."""
    import logging

    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


def csrf_headers(api, base_url: str = "") -> dict[str, str]:
    """``{"X-CSRF-Token": ...}`` of the logged-in session of a Playwright request context
    (``page.request`` or ``playwright.request.new_context()``): state-changing API calls need it,
    as the pages' JavaScript sends it (webapp/security.py)."""
    resp = api.get(f"{base_url}/api/auth/me")
    assert resp.ok, resp.text()
    return {"X-CSRF-Token": resp.json()["csrf_token"]}


def log_in(page, url: str, user: str, password: str, next_path: str = "") -> None:
    """Log in through the login form (as a person would) and wait for the page it leads to."""
    page.goto(url + "/login" + (f"?next={next_path}" if next_path else ""))
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def log_out(page) -> None:
    page.click("text=Log out")
    page.wait_for_url("**/login")


FAST_HASH = "scrypt:1024:8:1"  # cheap password hashing for test users


def serve_with_users(make_server, data_dir, model_dir) -> str:
    """A live app (the browser tests' ``make_server`` fixture) on ``data_dir`` with the users
    admin / admin-password and ann / ann-password (annotator); its URL."""
    from webapp.accounts import create_user
    from webapp.db import Database, database_url
    from webapp.models import Role

    url = make_server(DATA_DIR=data_dir, MODEL_DIR=model_dir, PASSWORD_HASH_METHOD=FAST_HASH)
    db = Database(database_url({"DATA_DIR": data_dir}))
    with db.session() as s:
        create_user(s, "admin", "admin-password", Role.ADMIN, FAST_HASH)
        create_user(s, "ann", "ann-password", Role.ANNOTATOR, FAST_HASH)
    db.dispose()
    return url
