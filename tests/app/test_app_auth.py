"""Logging in and the access rule of every route: anonymous -> 401 (API) or the login page
(pages), annotators -> 403 on admin routes, admins pass. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from app_helpers import ADMIN, ANNOTATOR, create_project, image_bytes, login, upload, wait_idle

from model_export.cli import main as cli_main
from webapp.db import get_db
from webapp.models import User

# (method, path template, admin only)
API_ROUTES = [
    ("GET", "/api/auth/me", False),
    ("GET", "/api/projects", False),
    ("POST", "/api/projects", True),
    ("GET", "/api/projects/{pid}", False),
    ("GET", "/api/projects/{pid}/images", False),
    ("POST", "/api/projects/{pid}/images", True),
    ("GET", "/api/projects/{pid}/progress", False),
    ("POST", "/api/projects/{pid}/retry-failed", True),
    ("GET", "/api/projects/{pid}/next", False),
    ("GET", "/api/projects/{pid}/export/coco.json", True),
    ("GET", "/api/projects/{pid}/export/masks.zip", True),
    ("GET", "/api/images/{iid}", False),
    ("GET", "/api/images/{iid}/file", False),
    ("GET", "/api/images/{iid}/pyramid", False),
    ("POST", "/api/images/{iid}/retry", True),
    ("GET", "/api/images/{iid}/objects", False),
    ("POST", "/api/images/{iid}/objects", False),
    ("POST", "/api/images/{iid}/submit", False),
    ("GET", "/api/objects/{oid}", False),
    ("DELETE", "/api/objects/{oid}", False),
]
PAGE_ROUTES = [
    ("GET", "/admin", True),
    ("POST", "/admin/projects", True),
    ("GET", "/admin/projects/{pid}", True),
    ("GET", "/admin/users", True),
    ("POST", "/admin/users", True),
]


@pytest.fixture
def world(app, admin_client):
    """A project with one precomputed image and one object (by bob)."""
    p = create_project(admin_client)
    resp = upload(admin_client, p["id"], {"a.png": image_bytes(40, 30)})
    iid = resp.get_json()["results"][0]["image_id"]
    wait_idle(app)
    bob = login(app.test_client(), *ANNOTATOR)
    mask = [0] * 0 + [30 * 10, 30 * 5, 30 * 25]  # columns 10..14 are foreground
    resp = bob.post(f"/api/images/{iid}/objects",
                    json={"class": "cat", "rle": {"size": [30, 40], "counts": mask}, "clicks": [], "time_spent": 1})
    assert resp.status_code == 201, resp.get_json()
    return {"pid": p["id"], "iid": iid, "oid": resp.get_json()["object"]["id"]}


def _call(client, method: str, path: str):
    return client.open(path, method=method, json={} if method in ("POST", "DELETE") else None)


def test_anonymous_is_refused_everywhere(app, world):
    client = app.test_client()
    wrong = []
    for method, tmpl, _ in API_ROUTES:
        path = tmpl.format(**world)
        resp = _call(client, method, path)
        if resp.status_code != 401 or "log in" not in resp.get_json()["error"]:
            wrong.append((method, path, resp.status_code))
    for method, tmpl, _ in PAGE_ROUTES:
        path = tmpl.format(**world)
        resp = _call(client, method, path)
        if resp.status_code != 302 or not resp.location.startswith("/login?next="):
            wrong.append((method, path, resp.status_code, resp.location))
    assert not wrong


def test_annotators_are_refused_admin_routes(app, world):
    client = login(app.test_client(), *ANNOTATOR)
    wrong = []
    for method, tmpl, admin_only in API_ROUTES + PAGE_ROUTES:
        path = tmpl.format(**world)
        resp = _call(client, method, path)
        if admin_only and resp.status_code != 403:
            wrong.append((method, path, resp.status_code))
        if not admin_only and resp.status_code in (401, 403):
            wrong.append((method, path, resp.status_code, resp.get_json()))
        if admin_only and path.startswith("/api/") and resp.get_json() != {"error": "this needs an admin account"}:
            wrong.append((method, path, resp.get_json()))
    assert not wrong


def test_admins_pass_every_route(app, world):
    client = login(app.test_client(), *ADMIN)
    wrong = []
    for method, tmpl, _ in API_ROUTES + PAGE_ROUTES:
        path = tmpl.format(**world)
        resp = _call(client, method, path)
        if resp.status_code in (401, 403) or resp.status_code >= 500:
            wrong.append((method, path, resp.status_code))
    assert not wrong


def test_login_logout_and_sessions(app, users):
    c = app.test_client()
    assert c.post("/api/auth/login", json={"username": "alice", "password": "wrong-password"}).status_code == 401
    assert c.post("/api/auth/login", json={"username": "nobody", "password": "whatever-pw"}).status_code == 401
    assert c.post("/api/auth/login", data="not json").status_code == 400
    assert c.get("/api/auth/me").status_code == 401
    me = login(c, *ANNOTATOR).get("/api/auth/me").get_json()["user"]
    assert me == {"id": users["bob"], "username": "bob", "role": "annotator"}
    assert c.post("/api/auth/logout").get_json() == {"ok": True}
    assert c.get("/api/auth/me").status_code == 401

    # Form login: redirects to `next` when it is a local path, never off-site.
    page = c.get("/login?next=/admin")
    assert page.status_code == 200 and b'name="next" value="/admin"' in page.data
    bad = c.post("/login", data={"username": "alice", "password": "nope", "next": "/admin"})
    assert bad.status_code == 401 and b"wrong username or password" in bad.data
    ok = c.post("/login", data={"username": "alice", "password": ADMIN[1], "next": "/admin/users"})
    assert ok.status_code == 302 and ok.location == "/admin/users"
    assert c.get("/").location == "/admin"
    c.post("/logout")
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        resp = c.post("/login", data={"username": "alice", "password": ADMIN[1], "next": evil})
        assert resp.status_code == 302 and resp.location == "/admin", evil
        c.post("/logout")
    assert c.get("/").location == "/login"


def test_passwords_are_hashed_and_inactive_users_cannot_log_in(app, users):
    with get_db(app).session() as s:
        alice = s.get(User, users["alice"])
        assert ADMIN[1] not in alice.password_hash and alice.password_hash.startswith("scrypt:")
        bob = s.get(User, users["bob"])
        bob.active = False
        s.commit()
    resp = app.test_client().post("/api/auth/login", json={"username": "bob", "password": ANNOTATOR[1]})
    assert resp.status_code == 401


def test_admin_creates_users_from_the_users_page(app, admin_client):
    resp = admin_client.post("/admin/users", data={"username": "dave", "password": "dave-password", "role": "annotator"})
    assert resp.status_code == 302
    login(app.test_client(), "dave", "dave-password")
    short = admin_client.post("/admin/users", data={"username": "erin", "password": "short", "role": "annotator"})
    assert short.status_code == 400 and b"at least 8 characters" in short.data
    taken = admin_client.post("/admin/users", data={"username": "dave", "password": "another-pass", "role": "admin"})
    assert taken.status_code == 400 and b"taken" in taken.data


def test_create_admin_command(app, database_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", database_url)
    rc = cli_main(["create-admin", "--username", "root", "--password", "root-password", "--data-dir", str(tmp_path)])
    assert rc == 0 and "admin 'root' created" in capsys.readouterr().out
    me = login(app.test_client(), "root", "root-password").get("/api/auth/me").get_json()["user"]
    assert me["role"] == "admin"
    assert cli_main(["create-admin", "--username", "root", "--password", "root-password"]) == 2
    assert "taken" in capsys.readouterr().err
    monkeypatch.delenv("INTERFORMER_ADMIN_PASSWORD", raising=False)
    assert cli_main(["create-admin", "--username", "x", "--password", "short"]) == 2


def test_socket_needs_a_login(app, users):
    socketio = app.extensions["socketio"]
    anon = socketio.test_client(app, flask_test_client=app.test_client())
    assert not anon.is_connected()
    client = login(app.test_client(), *ANNOTATOR)
    sc = socketio.test_client(app, flask_test_client=client)
    assert sc.is_connected()
    assert sc.emit("join_project", {"project_id": 12345}, callback=True) == {"ok": False, "error": "no project 12345"}
    assert sc.emit("join_project", {"project_id": "x"}, callback=True)["ok"] is False
    sc.disconnect()


def test_a_username_taken_at_the_same_moment_is_a_clear_error(app, users, monkeypatch):
    """Two sign-ups with one name: both pass the name check, the second commit hits the unique
    index, which is an AccountError ("taken"; a 400 with a message), not a 500."""
    from app_helpers import FAST_HASH

    from webapp import accounts

    monkeypatch.setattr(accounts, "find_user", lambda session, name: None)  # the other request's check passed too
    with get_db(app).session() as s:
        with pytest.raises(accounts.AccountError, match="taken"):
            accounts.create_user(s, ANNOTATOR[0], "long-enough-password", "annotator", FAST_HASH)
        assert s.query(User).filter_by(username=ANNOTATOR[0]).count() == 1  # the session is usable again
