"""Route x role: every route of the app (walked from its url_map, so a new route without a
row here fails) is called as anonymous, annotator, reviewer and admin, and each answer is
checked against this file's table; the Socket.IO events likewise. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from app_helpers import ADMIN, ANNOTATOR, REVIEWER, create_project, image_bytes, login, upload, wait_idle
from flask import Flask

from webapp.db import get_db
from webapp.models import Assignment
from webapp.permissions import ROUTES

P, AN, RV, AD = "public", "annotator", "reviewer", "admin"
ALL = {AN, RV, AD}
STAFF = {RV, AD}
WORKERS = {AN, AD}

# endpoint -> (method, path template, roles allowed or P). Logout routes come last.
TABLE: dict[str, tuple[str, str, set[str] | str]] = {
    "static": ("GET", "/static/js/rle.js", P),
    "index": ("GET", "/", P),
    "playground.page": ("GET", "/playground", P),
    "playground.samples": ("GET", "/api/playground/samples", P),
    "playground.sample_image": ("GET", "/api/playground/samples/nope/image", P),
    "playground.sample_pyramid": ("GET", "/api/playground/samples/nope/pyramid", P),
    "playground.decoder_file": ("GET", "/api/playground/decoder.json", P),
    "vendor.ort_file": ("GET", "/vendor/ort/nope.js", P),
    "vendor.socketio_file": ("GET", "/vendor/socket.io/nope.js", P),
    "auth.login": ("GET", "/login", P),
    "auth.login_post": ("POST", "/login", P),
    "auth.api_login": ("POST", "/api/auth/login", P),
    "auth.me": ("GET", "/api/auth/me", ALL),
    "invites.page": ("GET", "/invite/{token}", P),
    "invites.accept_form": ("POST", "/invite/{token}", P),
    "invites.api_accept": ("POST", "/api/invites/{token}/accept", P),
    "crowd.check_code": ("GET", "/api/completion-codes/NOPE", P),
    "admin.projects": ("GET", "/admin", {AD}),
    "admin.create_project_form": ("POST", "/admin/projects", {AD}),
    "admin.project_page": ("GET", "/admin/projects/{pid}", {AD}),
    "admin.users": ("GET", "/admin/users", {AD}),
    "admin.create_user_form": ("POST", "/admin/users", {AD}),
    "admin.create_invites_form": ("POST", "/admin/invites", {AD}),
    "admin.dashboard_page": ("GET", "/admin/projects/{pid}/dashboard", STAFF),
    "annotate.projects": ("GET", "/annotate", ALL),
    "annotate.page": ("GET", "/annotate/{pid}", WORKERS),
    "review.page": ("GET", "/review/{pid}", STAFF),
    "api.projects": ("GET", "/api/projects", ALL),
    "api.create": ("POST", "/api/projects", {AD}),
    "api.project": ("GET", "/api/projects/{pid}", ALL),
    "api.project_images": ("GET", "/api/projects/{pid}/images", ALL),
    "api.upload": ("POST", "/api/projects/{pid}/images", {AD}),
    "api.progress": ("GET", "/api/projects/{pid}/progress", ALL),
    "api.retry_failed": ("POST", "/api/projects/{pid}/retry-failed", {AD}),
    "api.project_next": ("GET", "/api/projects/{pid}/next", ALL),
    "api.export_coco": ("GET", "/api/projects/{pid}/export/coco.json", {AD}),
    "api.export_masks": ("GET", "/api/projects/{pid}/export/masks.zip", {AD}),
    "api.image": ("GET", "/api/images/{iid}", ALL),
    "api.image_file": ("GET", "/api/images/{iid}/file", ALL),
    "api.image_pyramid": ("GET", "/api/images/{iid}/pyramid", ALL),
    "api.retry_image": ("POST", "/api/images/{iid}/retry", {AD}),
    "api.image_objects": ("GET", "/api/images/{iid}/objects", ALL),
    "api.save_object": ("POST", "/api/images/{iid}/objects", WORKERS),
    "api.submit_image": ("POST", "/api/images/{iid2}/submit", WORKERS),
    "api.get_object": ("GET", "/api/objects/{oid}", ALL),
    "crowd.settings": ("PATCH", "/api/projects/{pid}/settings", {AD}),
    "crowd.set_gold": ("POST", "/api/images/{iid}/gold", {AD}),
    "crowd.queue_next": ("POST", "/api/projects/{pid}/queue/next", WORKERS),
    "crowd.claim": ("POST", "/api/images/{iid}/claim", WORKERS),
    "crowd.heartbeat": ("POST", "/api/assignments/{aid}/heartbeat", WORKERS),
    "crowd.my_assignments": ("GET", "/api/projects/{pid}/assignments/mine", WORKERS),
    "crowd.get_draft": ("GET", "/api/images/{iid}/draft", WORKERS),
    "crowd.put_draft": ("PUT", "/api/images/{iid}/draft", WORKERS),
    "crowd.review_list": ("GET", "/api/projects/{pid}/review", STAFF),
    "crowd.review_decide": ("POST", "/api/assignments/{aid}/review", STAFF),
    "crowd.assignment_objects": ("GET", "/api/assignments/{aid}/objects", STAFF),
    "crowd.consensus": ("GET", "/api/images/{iid}/consensus", STAFF),
    "crowd.quality": ("GET", "/api/projects/{pid}/quality", STAFF),
    "crowd.dashboard": ("GET", "/api/projects/{pid}/dashboard", STAFF),
    "crowd.my_codes": ("GET", "/api/projects/{pid}/completion-codes", WORKERS),
    "crowd.list_invites": ("GET", "/api/invites", {AD}),
    "crowd.create_invites": ("POST", "/api/invites", {AD}),
    "crowd.revoke_invite": ("DELETE", "/api/invites/{invite_id}", {AD}),
    "crowd.release": ("POST", "/api/assignments/{aid}/release", WORKERS),
    "api.update_object": ("PATCH", "/api/objects/{oid}", WORKERS),
    "api.delete_object": ("DELETE", "/api/objects/{oid}", WORKERS),
    "auth.logout": ("POST", "/logout", P),
    "auth.api_logout": ("POST", "/api/auth/logout", P),
}

EVENT_TABLE = {"join_project": ALL, "leave_project": ALL, "join_dashboard": STAFF, "leave_dashboard": STAFF}


def test_every_route_has_a_row_here_and_a_rule(app):
    endpoints = {r.endpoint for r in app.url_map.iter_rules()}
    assert endpoints - set(TABLE) == set(), "routes without a row in this test's table"
    assert set(TABLE) - endpoints == set(), "rows for routes that do not exist"
    assert set(ROUTES) == endpoints, "webapp/permissions.py ROUTES must name exactly the app's endpoints"


def test_a_route_without_a_rule_is_refused(make_app, users):
    app: Flask = make_app()

    @app.get("/api/unlisted")
    def unlisted():  # pragma: no cover - never reached
        return {"ok": True}

    resp = login(app.test_client(), *ADMIN).get("/api/unlisted")
    assert resp.status_code == 403 and "no permission rule" in resp.get_json()["error"]


@pytest.fixture
def world(app, users, admin_client):
    p = create_project(admin_client)
    ids = [r["image_id"] for r in upload(admin_client, p["id"], {"a.png": image_bytes(40, 30, seed=1),
                                                                 "b.png": image_bytes(40, 30, seed=2)})
           .get_json()["results"]]
    wait_idle(app)
    bob = login(app.test_client(), *ANNOTATOR)
    mask = [30 * 10, 30 * 5, 30 * 25]
    resp = bob.post(f"/api/images/{ids[0]}/objects",
                    json={"class": "cat", "rle": {"size": [30, 40], "counts": mask}, "clicks": [], "time_spent": 1})
    assert resp.status_code == 201, resp.get_json()
    with get_db(app).session() as s:
        aid = s.query(Assignment).one().id
    inv = admin_client.post("/api/invites", json={"count": 1, "max_uses": 5}).get_json()["invites"][0]
    return {"pid": p["id"], "iid": ids[0], "iid2": ids[1], "oid": resp.get_json()["object"]["id"], "aid": aid,
            "invite_id": inv["id"], "token": inv["token"]}


def _denied(resp, api: bool, anonymous: bool) -> bool:
    """Whether the permission layer refused the request (not the view's own 4xx)."""
    if anonymous:
        if api:
            return resp.status_code == 401 and "log in first" in (resp.get_json() or {}).get("error", "")
        return resp.status_code == 302 and resp.location.startswith("/login?next=")
    if api:
        return resp.status_code == 403 and (resp.get_json() or {}).get("error", "").startswith("this needs")
    return resp.status_code == 403


@pytest.mark.parametrize("role", ["anonymous", AN, RV, AD])
def test_route_by_role_table(app, world, role):
    creds = {AN: ANNOTATOR, RV: REVIEWER, AD: ADMIN}
    client = app.test_client()
    if role != "anonymous":
        login(client, *creds[role])
    wrong = []
    for endpoint, (method, tmpl, allowed) in TABLE.items():
        path = tmpl.format(**world)
        resp = client.open(path, method=method, json={} if method in ("POST", "PUT", "PATCH", "DELETE") else None)
        should_pass = allowed == P or role in allowed
        denied = _denied(resp, path.startswith("/api/"), role == "anonymous")
        if should_pass == denied or resp.status_code >= 500:
            wrong.append((endpoint, method, path, resp.status_code, resp.get_data(as_text=True)[:120]))
        if role != "anonymous" and endpoint.endswith("logout"):
            login(client, *creds[role])
    assert not wrong


def test_socket_events_by_role(app, world):
    socketio = app.extensions["socketio"]
    anon = socketio.test_client(app, flask_test_client=app.test_client())
    assert not anon.is_connected()
    for role, creds in ((AN, ANNOTATOR), (RV, REVIEWER), (AD, ADMIN)):
        sc = socketio.test_client(app, flask_test_client=login(app.test_client(), *creds))
        assert sc.is_connected(), role
        for event, allowed in EVENT_TABLE.items():
            ack = sc.emit(event, {"project_id": world["pid"]}, callback=True)
            assert ack["ok"] is (role in allowed), (role, event, ack)
            if role not in allowed:
                assert f"may not use {event}" in ack["error"]
        sc.disconnect()
