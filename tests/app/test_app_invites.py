"""Invitations: many links at once or one link for many people, sign-up by form and JSON,
used-up, revoked and expired links refused. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

from webapp.db import get_db
from webapp.models import Invite, utcnow


def _accept(app, token, name):
    return app.test_client().post(f"/api/invites/{token}/accept", json={"username": name, "password": f"{name}-password"})


def test_invites(app, users, admin_client):
    made = admin_client.post("/api/invites", json={"count": 3}).get_json()["invites"]
    assert len(made) == 3 and len({i["token"] for i in made}) == 3
    assert all(i["role"] == "annotator" and i["max_uses"] == 1 and i["url"].endswith(f"/invite/{i['token']}") for i in made)
    ok = _accept(app, made[0]["token"], "ann1")
    assert ok.status_code == 201 and ok.get_json()["user"]["role"] == "annotator"
    used = _accept(app, made[0]["token"], "ann2")
    assert used.status_code == 410 and "used up" in used.get_json()["error"]
    taken = _accept(app, made[1]["token"], "ann1")
    assert taken.status_code == 400 and "taken" in taken.get_json()["error"]
    assert _accept(app, made[1]["token"], "ann2").status_code == 201  # a failed sign-up did not use the link
    assert _accept(app, "not-a-token", "ann3").status_code == 404

    # one link for many reviewers, signing up at the same moment: never more than max_uses
    multi = admin_client.post("/api/invites", json={"role": "reviewer", "max_uses": 2}).get_json()["invites"][0]
    start = threading.Barrier(3)
    codes = []

    def go(i):
        start.wait(timeout=10)
        codes.append(_accept(app, multi["token"], f"rev{i}").status_code)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(codes) == [201, 201, 410]
    listed = {i["id"]: i for i in admin_client.get("/api/invites").get_json()["invites"]}
    assert listed[multi["id"]]["uses"] == 2

    # revoked and expired links
    assert admin_client.delete(f"/api/invites/{made[2]['id']}").get_json()["invite"]["revoked_at"]
    assert _accept(app, made[2]["token"], "ann4").status_code == 410
    late = admin_client.post("/api/invites", json={"expires_in_hours": 1}).get_json()["invites"][0]
    with get_db(app).session() as s:
        s.get(Invite, late["id"]).expires_at = utcnow() - timedelta(minutes=1)
        s.commit()
    assert "expired" in _accept(app, late["token"], "ann5").get_json()["error"]
    for body, msg in [({"role": "admin"}, '"role"'), ({"count": 0}, '"count"'), ({"max_uses": "many"}, '"max_uses"'),
                      ({"expires_in_hours": -1}, "expires_in_hours"), ([], "expected a JSON body")]:
        resp = admin_client.post("/api/invites", json=body)
        assert resp.status_code == 400 and msg in resp.get_json()["error"], body

    # the sign-up page and form, and the admin's form
    fresh = admin_client.post("/api/invites", json={}).get_json()["invites"][0]
    c = app.test_client()
    assert b"invited as <strong>annotator</strong>" in c.get(f"/invite/{fresh['token']}").data
    short = c.post(f"/invite/{fresh['token']}", data={"username": "formuser", "password": "short"})
    assert short.status_code == 400 and b"at least 8 characters" in short.data
    resp = c.post(f"/invite/{fresh['token']}", data={"username": "formuser", "password": "formuser-password"})
    assert resp.status_code == 302 and resp.location == "/annotate"
    assert c.get("/api/auth/me").get_json()["user"]["username"] == "formuser"
    assert app.test_client().get(f"/invite/{fresh['token']}").status_code == 410
    # an invite for a project lands the new annotator on its annotator page
    pid = admin_client.post("/api/projects", json={"name": "Inv", "classes": ["a"]}).get_json()["project"]["id"]
    proj = admin_client.post("/api/invites", json={"project_id": pid}).get_json()["invites"][0]
    assert proj["project_id"] == pid
    assert admin_client.post("/api/invites", json={"project_id": 999999}).status_code == 404
    resp = app.test_client().post(f"/invite/{proj['token']}", data={"username": "projuser", "password": "projuser-pw"})
    assert resp.status_code == 302 and resp.location == f"/annotate/{pid}"
    page = admin_client.post("/admin/invites", data={"role": "annotator", "count": "4", "max_uses": "1"})
    assert page.status_code == 201 and page.data.count(b"/invite/") >= 4
    assert admin_client.post("/admin/invites", data={"count": "x"}).status_code == 400
