"""Security (webapp/security.py): CSRF tokens on forms and state-changing API calls, session
cookie flags, the login rate limit (in this process and shared through Redis), upload names and
request-size limits; Socket.IO is not affected by CSRF. On SQLite and PostgreSQL."""

from __future__ import annotations

import io
import re
import secrets
import time

import pytest
from app_helpers import ADMIN, ANNOTATOR, create_project, image_bytes, login, upload, wait_idle
from live_server import serve
from sqlalchemy import func, select

from webapp.db import get_db
from webapp.models import AnnotationObject, Image, Project
from webapp.security import CSRF_EXEMPT

REDIS_URL = "redis://127.0.0.1:6379/0"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
MASK = {"size": [30, 40], "counts": [30 * 10, 30 * 5, 30 * 25]}


def page_token(client, path: str) -> str:
    """The token a page carries: its meta tag, and each form's hidden field (the same)."""
    html = client.get(path).get_data(as_text=True)
    meta = re.search(r'<meta name="csrf-token" content="([^"]+)">', html).group(1)
    fields = re.findall(r'name="csrf_token" value="([^"]+)"', html)
    assert fields and set(fields) == {meta}
    return meta


def raw(client):
    client.csrf = False  # send no token, like a page of another site
    return client


@pytest.fixture
def world(app, users, admin_client):
    p = create_project(admin_client)
    iid = upload(admin_client, p["id"], {"a.png": image_bytes(40, 30, seed=1)}).get_json()["results"][0]["image_id"]
    wait_idle(app)
    bob = login(app.test_client(), *ANNOTATOR)
    resp = bob.post(f"/api/images/{iid}/objects", json={"class": "cat", "rle": MASK, "clicks": [], "time_spent": 1})
    assert resp.status_code == 201
    return {"pid": p["id"], "iid": iid, "oid": resp.get_json()["object"]["id"]}


# -- CSRF: forms ---------------------------------------------------------------------------------


def test_login_form_needs_the_token_of_its_page(app, users):
    c = raw(app.test_client())
    creds = {"username": ADMIN[0], "password": ADMIN[1]}
    resp = c.post("/login", data=creds)
    assert resp.status_code == 400 and "CSRF token missing or invalid" in resp.get_data(as_text=True)
    tok = page_token(c, "/login")
    resp = c.post("/login", data={**creds, "csrf_token": "x" + tok[1:]})
    assert resp.status_code == 400
    assert c.get("/api/auth/me").status_code == 401  # not logged in by the refused forms
    resp = c.post("/login", data={**creds, "csrf_token": tok})
    assert resp.status_code == 302 and resp.location == "/admin"
    # a new session, a new token: the login page's token no longer works
    after = page_token(c, "/admin")
    assert after != tok and c.get("/api/auth/me").get_json()["csrf_token"] == after
    assert c.post("/admin/projects", data={"name": "X", "classes": "a", "csrf_token": tok}).status_code == 400


def test_admin_forms_refuse_without_token_and_change_nothing(app, users):
    c = raw(login(app.test_client(), *ADMIN))
    for path, form in (("/admin/projects", {"name": "Forged", "classes": "a, b"}),
                       ("/admin/users", {"username": "mallory", "password": "mallory-pw", "role": "admin"}),
                       ("/admin/invites", {"role": "annotator", "count": "5"})):
        resp = c.post(path, data=form)
        assert resp.status_code == 400, path
        assert "CSRF token missing or invalid" in resp.get_data(as_text=True)
    with get_db(app).session() as s:
        assert s.scalar(select(func.count()).select_from(Project)) == 0
    assert "mallory" not in c.get("/admin/users").get_data(as_text=True)
    tok = page_token(c, "/admin")
    resp = c.post("/admin/projects", data={"name": "Real", "classes": "a, b", "csrf_token": tok})
    assert resp.status_code == 302
    # logging out is a form too: refused without the token, so a forged one keeps you logged in
    assert c.post("/logout").status_code == 400 and c.get("/api/auth/me").status_code == 200
    assert c.post("/logout", data={"csrf_token": tok}).status_code == 302
    assert c.get("/api/auth/me").status_code == 401


def test_invite_form_needs_the_token_of_its_page(app, users, admin_client):
    token = admin_client.post("/api/invites", json={"count": 1}).get_json()["invites"][0]["token"]
    c = raw(app.test_client())
    form = {"username": "newbie", "password": "newbie-password"}
    assert c.post(f"/invite/{token}", data=form).status_code == 400
    tok = page_token(c, f"/invite/{token}")
    resp = c.post(f"/invite/{token}", data={**form, "csrf_token": tok})
    assert resp.status_code == 302
    assert c.get("/api/auth/me").get_json()["user"]["username"] == "newbie"


# -- CSRF: API -----------------------------------------------------------------------------------


def _paths(app, world) -> list[tuple[str, str, str]]:
    """(endpoint, method, path) of every state-changing route, with real ids."""
    out = []
    values = {"pid": world["pid"], "iid": world["iid"], "oid": world["oid"], "aid": 1, "invite_id": 1, "token": "t"}
    adapter = app.url_map.bind("localhost")
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) & UNSAFE):
            args = {k: values[k] for k in rule.arguments}
            out.append((rule.endpoint, method, adapter.build(rule.endpoint, args)))
    return out


def test_every_state_changing_route_refuses_a_missing_or_wrong_token(app, world):
    c = raw(login(app.test_client(), *ADMIN))
    good = c.get("/api/auth/me").get_json()["csrf_token"]
    checked, wrong = 0, []
    for endpoint, method, path in _paths(app, world):
        if endpoint in CSRF_EXEMPT:
            continue
        for headers in ({}, {"X-CSRF-Token": "not-the-token"}, {"X-CSRF-Token": good[:-1]}):
            resp = c.open(path, method=method, json={}, headers=headers)
            body = resp.get_data(as_text=True)
            if resp.status_code not in (400, 403) or "CSRF token missing or invalid" not in body:
                wrong.append((endpoint, method, headers, resp.status_code, body[:100]))
            if path.startswith("/api/") and resp.status_code == 403:
                assert "X-CSRF-Token" in resp.get_json()["error"]
        checked += 1
    assert checked >= 25 and not wrong
    # nothing happened: bob's object is still there, no project was made
    with get_db(app).session() as s:
        assert s.get(AnnotationObject, world["oid"]).deleted_at is None
        assert s.scalar(select(func.count()).select_from(Project)) == 1


def test_api_calls_with_the_sessions_token_pass(app, world):
    bob = raw(login(app.test_client(), ANNOTATOR[0], ANNOTATOR[1]))
    body = {"class": "dog", "rle": MASK, "clicks": [], "time_spent": 2}
    url = f"/api/images/{world['iid']}/objects"
    resp = bob.post(url, json=body)
    assert resp.status_code == 403 and "CSRF" in resp.get_json()["error"]
    tok = bob.get("/api/auth/me").get_json()["csrf_token"]
    assert bob.post(url, json=body, headers={"X-CSRF-Token": tok}).status_code == 201
    assert bob.put(f"/api/images/{world['iid']}/draft", json={"rev": 1, "clicks": []},
                   headers={"X-CSRF-Token": tok}).status_code == 200
    assert bob.delete(f"/api/objects/{world['oid']}").status_code == 403
    assert bob.delete(f"/api/objects/{world['oid']}", headers={"X-CSRF-Token": tok}).status_code == 200
    # another session's token is not this session's
    other = login(app.test_client(), *ANNOTATOR).get("/api/auth/me").get_json()["csrf_token"]
    assert other != tok
    assert bob.post(url, json=body, headers={"X-CSRF-Token": other}).status_code == 403
    # the upload form of the admin page (multipart) takes the header too
    admin = raw(login(app.test_client(), *ADMIN))
    files = {"files": [(io.BytesIO(image_bytes(seed=9)), "n.png")]}
    assert admin.post(f"/api/projects/{world['pid']}/images", data=files).status_code == 403
    files = {"files": [(io.BytesIO(image_bytes(seed=9)), "n.png")]}
    tok = admin.get("/api/auth/me").get_json()["csrf_token"]
    assert admin.post(f"/api/projects/{world['pid']}/images", data=files,
                      headers={"X-CSRF-Token": tok}).status_code == 201


def test_json_entry_points_are_exempt_but_json_only_and_same_origin(app, users, admin_client):
    c = raw(app.test_client())
    creds = {"username": ANNOTATOR[0], "password": ANNOTATOR[1]}
    resp = c.post("/api/auth/login", data=creds)  # a cross-site form can only send this
    assert resp.status_code == 400 and c.get("/api/auth/me").status_code == 401
    resp = c.post("/api/auth/login", json=creds, headers={"Origin": "https://evil.example"})
    assert resp.status_code == 403 and "cross-site" in resp.get_json()["error"]
    resp = c.post("/api/auth/login", json=creds, headers={"Origin": "http://localhost"})
    assert resp.status_code == 200 and resp.get_json()["csrf_token"]
    token = admin_client.post("/api/invites", json={"count": 1, "max_uses": 3}).get_json()["invites"][0]["token"]
    d = raw(app.test_client())
    assert d.post(f"/api/invites/{token}/accept", data={"username": "u1", "password": "u1-password"}).status_code == 400
    assert d.post(f"/api/invites/{token}/accept", json={"username": "u1", "password": "u1-password"},
                  headers={"Origin": "null"}).status_code == 403
    resp = d.post(f"/api/invites/{token}/accept", json={"username": "u1", "password": "u1-password"})
    assert resp.status_code == 201 and resp.get_json()["csrf_token"]


def test_every_template_carries_the_token(app, world):
    admin = login(app.test_client(), *ADMIN)
    for path in ("/admin", f"/admin/projects/{world['pid']}", "/admin/users",
                 f"/admin/projects/{world['pid']}/dashboard", f"/review/{world['pid']}", "/annotate",
                 f"/annotate/{world['pid']}", "/playground"):
        html = admin.get(path).get_data(as_text=True)
        assert '<meta name="csrf-token" content="' in html, path
        for form in re.findall(r'<form method="post".*?</form>', html, re.S):
            assert 'name="csrf_token"' in form, (path, form[:80])


def test_socketio_is_not_affected(app, world):
    """Socket.IO over long-polling (POSTs to /socket.io/) with the session cookie and no CSRF
    token connects, joins its room and receives events, on a real server."""
    import requests
    import socketio

    with serve(app) as url:
        http = requests.Session()
        assert http.post(f"{url}/api/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]}).ok
        cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.items())
        got = []
        sio = socketio.Client(reconnection=False)
        sio.on("project_progress", lambda data: got.append(data))
        sio.connect(url, headers={"Cookie": cookie}, transports=["polling"], wait_timeout=10)
        try:
            ack = sio.call("join_project", {"project_id": world["pid"]}, timeout=10)
            assert ack["ok"] is True, ack
            tok = http.get(f"{url}/api/auth/me").json()["csrf_token"]
            files = {"files": ("s.png", image_bytes(seed=21), "image/png")}
            resp = http.post(f"{url}/api/projects/{world['pid']}/images", files=files, headers={"X-CSRF-Token": tok})
            assert resp.status_code == 201
            deadline = time.monotonic() + 15
            while not any(d.get("total") == 2 for d in got) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert any(d.get("total") == 2 for d in got), got
        finally:
            sio.disconnect()


# -- cookies -------------------------------------------------------------------------------------


def _session_cookie(resp) -> str:
    cookies = [v for k, v in resp.headers.items() if k.lower() == "set-cookie" and v.startswith("session=")]
    assert len(cookies) == 1
    return cookies[0]


def test_session_cookie_is_httponly_and_samesite_lax(app, users):
    resp = app.test_client().post("/api/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]})
    cookie = _session_cookie(resp)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_session_cookie_secure_when_configured(make_app, users, monkeypatch):
    monkeypatch.setenv("INTERFORMER_HTTPS", "1")
    app = make_app()
    assert app.config["SESSION_COOKIE_SECURE"] is True
    resp = app.test_client().post("/api/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]},
                                  base_url="https://localhost")
    cookie = _session_cookie(resp)
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


# -- login rate limit ----------------------------------------------------------------------------


def _login(client, user, password, ip="10.0.0.1"):
    return client.post("/api/auth/login", json={"username": user, "password": password},
                       environ_base={"REMOTE_ADDR": ip})


def test_failed_logins_per_username_are_limited(make_app, users):
    app = make_app(LOGIN_MAX_FAILURES_PER_USER=3, LOGIN_MAX_FAILURES_PER_IP=100, LOGIN_WINDOW_S=60)
    c = app.test_client()
    for i in range(3):
        assert _login(c, "bob", "wrong", ip=f"10.0.0.{i}").status_code == 401
    resp = _login(c, "bob", ANNOTATOR[1], ip="10.0.0.9")  # right password, other address: still blocked
    assert resp.status_code == 429 and 1 <= int(resp.headers["Retry-After"]) <= 60
    assert "too many failed logins" in resp.get_json()["error"]
    assert _login(c, "BOB ", "wrong").status_code == 429  # the same name, however written
    assert _login(c, ADMIN[0], ADMIN[1]).status_code == 200  # other users are not affected
    # the form says so too
    c2 = app.test_client()
    resp = c2.post("/login", data={"username": "bob", "password": ANNOTATOR[1]})
    assert resp.status_code == 429 and resp.headers["Retry-After"]
    assert "too many failed logins" in resp.get_data(as_text=True)


def test_failed_logins_per_address_are_limited_and_windows_end(make_app, users):
    app = make_app(LOGIN_MAX_FAILURES_PER_USER=100, LOGIN_MAX_FAILURES_PER_IP=4, LOGIN_WINDOW_S=2)
    c = app.test_client()
    for i in range(4):
        assert _login(c, f"guess{i}", "wrong", ip="10.1.1.1").status_code == 401
    assert _login(c, *ADMIN, ip="10.1.1.1").status_code == 429
    assert _login(c, *ADMIN, ip="10.1.1.2").status_code == 200  # another address is fine
    time.sleep(2.1)
    assert _login(c, *ADMIN, ip="10.1.1.1").status_code == 200  # the window ended


def test_success_clears_the_username_count(make_app, users):
    app = make_app(LOGIN_MAX_FAILURES_PER_USER=3, LOGIN_MAX_FAILURES_PER_IP=100, LOGIN_WINDOW_S=60)
    c = app.test_client()
    for _ in range(2):
        assert _login(c, "bob", "wrong").status_code == 401
    assert _login(c, *ANNOTATOR).status_code == 200
    for _ in range(2):
        assert _login(c, "bob", "wrong").status_code == 401
    assert _login(c, *ANNOTATOR).status_code == 200


def test_rate_limit_is_shared_through_redis(make_app, users):
    import redis

    prefix = f"interformer-test:{secrets.token_hex(6)}:"
    cfg = {"REDIS_URL": REDIS_URL, "RATE_LIMIT_PREFIX": prefix, "LOGIN_MAX_FAILURES_PER_USER": 3,
           "LOGIN_MAX_FAILURES_PER_IP": 100, "LOGIN_WINDOW_S": 30}
    one, two = make_app(**cfg), make_app(**cfg)  # two web processes' apps
    r = redis.Redis.from_url(REDIS_URL)
    try:
        for _ in range(3):
            assert _login(one.test_client(), "bob", "wrong").status_code == 401
        resp = _login(two.test_client(), *ANNOTATOR)
        assert resp.status_code == 429 and 1 <= int(resp.headers["Retry-After"]) <= 30
        keys = r.keys(prefix + "*")
        assert len(keys) == 2 and all(0 < r.ttl(k) <= 30 for k in keys)
    finally:
        for k in r.keys(prefix + "*"):
            r.delete(k)


def test_rate_limit_falls_back_to_the_process_when_redis_is_down(make_app, users):
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0", LOGIN_MAX_FAILURES_PER_USER=2, LOGIN_MAX_FAILURES_PER_IP=100)
    c = app.test_client()
    for _ in range(2):
        assert _login(c, "bob", "wrong").status_code == 401
    assert _login(c, *ANNOTATOR).status_code == 429
    assert _login(c, *ADMIN).status_code == 200


# -- paths and sizes -----------------------------------------------------------------------------


def test_upload_names_cannot_carry_paths(app, users, admin_client):
    p = create_project(admin_client)
    resp = upload(admin_client, p["id"], {"../../outside.png": image_bytes(seed=31),
                                          "/abs/dir/win.png": image_bytes(seed=32), "..": image_bytes(seed=33)})
    assert resp.status_code == 201
    with get_db(app).session() as s:
        names = set(s.scalars(select(Image.filename)).all())
    assert names == {"outside.png", "win.png", "(unnamed file)"}
    coco = admin_client.get(f"/api/projects/{p['id']}/export/coco.json").get_json()
    assert {im["file_name"] for im in coco["images"]} == names
    # the blobs are named by content, inside the store
    blobs = app.config["DATA_DIR"] / "blobs"
    assert all(f.resolve().is_relative_to(blobs.resolve()) for f in blobs.rglob("*") if f.is_file())


def test_limits_exist_and_large_bodies_are_refused(make_app, users):
    app = make_app(MAX_JSON_BYTES=2000, MAX_CONTENT_LENGTH=50_000)
    for key in ("MAX_CONTENT_LENGTH", "MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS", "MAX_ZIP_MEMBERS",
                "MAX_ZIP_TOTAL_BYTES", "MAX_ZIP_RATIO", "MAX_JSON_BYTES"):
        assert app.config[key] > 0, key
    admin = login(app.test_client(), *ADMIN)
    resp = admin.post("/api/projects", json={"name": "x" * 3000, "classes": ["a"]})
    assert resp.status_code == 413 and "too large" in resp.get_json()["error"]
    p = create_project(admin)
    resp = upload(admin, p["id"], {"big.png": b"\0" * 60_000})
    assert resp.status_code == 413 and "too large" in resp.get_json()["error"]
    # a JSON body sent without Content-Length (chunked) is bounded while it is read, also on
    # a public route (nothing parsed in memory beyond the limit)
    body = b'{"username": "' + b"x" * 5000 + b'", "password": "y"}'
    for client, url in ((app.test_client(), "/api/auth/login"), (admin, "/api/projects")):
        resp = client.post(url, input_stream=io.BytesIO(body), content_type="application/json",
                           headers={"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})  # as a WSGI server passes a chunked body
        assert resp.status_code == 413 and "limit 2000 bytes" in resp.get_json()["error"], (url, resp.get_json())
    # ... and one within the limit is read and used as usual
    small = io.BytesIO(b'{"name": "chunked", "classes": ["a"]}')
    resp = admin.post("/api/projects", input_stream=small, content_type="application/json",
                      headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})
    assert resp.status_code == 201, resp.get_json()


def test_nul_characters_are_refused_with_400_not_stored(app, users, admin_client):
    """Found by the fuzz pass on PostgreSQL (text cannot hold NUL; it raised a 500): NUL in a
    JSON body, a form field, the query or the path is a 400 with a message, on both databases."""
    anon = app.test_client()
    resp = anon.post("/api/auth/login", json={"username": "bo\x00b", "password": "x"})
    assert resp.status_code == 400 and "NUL" in resp.get_json()["error"]
    resp = anon.get("/api/completion-codes/AB%00CD")
    assert resp.status_code == 400 and "NUL" in resp.get_json()["error"]
    resp = admin_client.post("/api/projects", json={"name": "P\x00", "classes": ["cat"]})
    assert resp.status_code == 400 and "NUL" in resp.get_json()["error"]
    resp = admin_client.get("/api/projects?x=%00")
    assert resp.status_code == 400
    page = anon.get("/login")
    token = page.get_data(as_text=True).split('name="csrf_token" value="')[1].split('"')[0]
    resp = anon.post("/login", data={"username": "a\x00", "password": "b", "csrf_token": token})
    assert resp.status_code == 400 and "NUL" in resp.get_data(as_text=True)
    assert admin_client.get("/api/projects").status_code == 200  # the session is fine afterwards
