"""Autosave on the server: drafts (newest rev wins, checked, cleared by submit, renew the
lock) and objects saved once however often they are sent (client_id), also when two copies
race. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from app_helpers import ANNOTATOR, ANNOTATOR2, create_project, image_bytes, login, upload, wait_idle

from webapp.db import get_db
from webapp.models import AnnotationObject, Assignment

H, W = 30, 40
RLE = {"size": [H, W], "counts": [H * 10, H * 5, H * 25]}
CLICKS = [{"x": 12, "y": 10, "positive": True, "t": 0}, {"x": 30, "y": 20, "positive": False, "t": 900}]


def _image(app, admin_client) -> tuple[int, int]:
    p = create_project(admin_client)
    resp = upload(admin_client, p["id"], {"a.png": image_bytes(W, H, seed=7)})
    wait_idle(app)
    return p["id"], resp.get_json()["results"][0]["image_id"]


def test_drafts_keep_the_newest_and_are_cleared_by_submit(app, users, admin_client):
    pid, iid = _image(app, admin_client)
    bob = login(app.test_client(), *ANNOTATOR)
    assert bob.get(f"/api/images/{iid}/draft").get_json() == {"draft": None}
    cls = admin_client.get(f"/api/projects/{pid}").get_json()["project"]["classes"][1]["id"]
    r = bob.put(f"/api/images/{iid}/draft", json={"rev": 10, "clicks": CLICKS, "class_id": cls, "elapsed_ms": 1500})
    assert r.status_code == 200 and r.get_json()["stored"] is True
    old = bob.put(f"/api/images/{iid}/draft", json={"rev": 9, "clicks": CLICKS[:1], "class_id": None})
    assert old.get_json()["stored"] is False and old.get_json()["draft"]["rev"] == 10  # a late retry changes nothing
    d = bob.get(f"/api/images/{iid}/draft").get_json()["draft"]
    assert d["rev"] == 10 and d["class_id"] == cls and d["elapsed_ms"] == 1500
    assert d["clicks"] == [{"x": 12.0, "y": 10.0, "positive": True, "t": 0.0}, {"x": 30.0, "y": 20.0, "positive": False, "t": 900.0}]
    # the draft took the image's lock for bob; carol cannot autosave on it
    assert login(app.test_client(), *ANNOTATOR2).put(f"/api/images/{iid}/draft", json={"rev": 1}).status_code == 409
    for body, msg in [({"clicks": []}, '"rev"'), ({"rev": -1}, '"rev"'), ({"rev": 11, "clicks": [{"x": 99, "y": 1, "positive": True, "t": 0}]}, "click 0"),
                      ({"rev": 11, "class_id": "cat"}, "class_id"), ({"rev": 11, "class_id": 99999}, "unknown label class"),
                      ({"rev": 11, "elapsed_ms": -5}, "elapsed_ms"), ({"rev": 11, "class_id": _other_class(admin_client)}, "unknown label class")]:
        resp = bob.put(f"/api/images/{iid}/draft", json=body)
        assert resp.status_code == 400 and msg in resp.get_json()["error"], (body, resp.get_json())
    assert bob.put(f"/api/images/{iid}/draft", data="x", content_type="text/plain").status_code == 400
    bob.put(f"/api/images/{iid}/draft", json={"rev": 12, "clicks": []})
    assert bob.post(f"/api/images/{iid}/submit").status_code == 200
    assert bob.get(f"/api/images/{iid}/draft").get_json() == {"draft": None}


def _other_class(admin_client) -> int:
    """A label class id of another project (not valid on this image)."""
    return create_project(admin_client, name="Other")["classes"][0]["id"]


def test_of_two_racing_draft_saves_the_newer_stays(app, users, admin_client, monkeypatch):
    """Both saves read the stored draft (rev 1) before either writes; the newer (rev 3) commits
    first, the older (rev 2) after it: the conditional update leaves rev 3."""
    from webapp import drafts

    _pid, iid = _image(app, admin_client)
    bob = login(app.test_client(), *ANNOTATOR)
    assert bob.put(f"/api/images/{iid}/draft", json={"rev": 1, "clicks": []}).get_json()["stored"] is True
    read_both = threading.Barrier(2)
    newer_done = threading.Event()
    orig = drafts.get_draft

    def racing(session, user_id, image_id):
        d = orig(session, user_id, image_id)
        try:
            read_both.wait(timeout=3)
        except threading.BrokenBarrierError:
            pass
        return d

    monkeypatch.setattr(drafts, "get_draft", racing)
    results: dict = {}

    def put(rev):
        if rev == 2:
            newer_done.wait(timeout=5)
        c = login(app.test_client(), *ANNOTATOR)
        results[rev] = c.put(f"/api/images/{iid}/draft", json={"rev": rev, "clicks": CLICKS[:rev - 1]}).get_json()
        if rev == 3:
            newer_done.set()

    threads = [threading.Thread(target=put, args=(r,)) for r in (2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    monkeypatch.setattr(drafts, "get_draft", orig)
    assert results[3]["stored"] is True and results[2]["stored"] is False
    d = bob.get(f"/api/images/{iid}/draft").get_json()["draft"]
    assert d["rev"] == 3 and len(d["clicks"]) == 2


def test_objects_are_saved_once_per_client_id(app, users, admin_client):
    _pid, iid = _image(app, admin_client)
    bob = login(app.test_client(), *ANNOTATOR)
    body = {"class": "cat", "rle": RLE, "clicks": CLICKS, "time_spent": 2.5, "client_id": "obj-0001-abcdef"}
    first = bob.post(f"/api/images/{iid}/objects", json=body)
    assert first.status_code == 201
    replay = bob.post(f"/api/images/{iid}/objects", json=body)
    assert replay.status_code == 200 and replay.get_json()["duplicate"] is True
    assert replay.get_json()["object"]["id"] == first.get_json()["object"]["id"]
    assert bob.post(f"/api/images/{iid}/objects", json={**body, "client_id": "x"}).status_code == 400
    # two copies of the same save racing (a retry sent while the first is still in flight)
    body2 = {**body, "client_id": "obj-0002-abcdef"}
    clients = [login(app.test_client(), *ANNOTATOR) for _ in range(2)]
    start = threading.Barrier(2)
    codes = []

    def send(c):
        start.wait(timeout=10)
        codes.append(c.post(f"/api/images/{iid}/objects", json=body2).status_code)

    threads = [threading.Thread(target=send, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(codes) == [200, 201]
    with get_db(app).session() as s:
        rows = s.query(AnnotationObject).filter_by(image_id=iid).all()
        assert sorted(r.client_id for r in rows) == ["obj-0001-abcdef", "obj-0002-abcdef"]
        a = s.query(Assignment).one()
        assert {r.assignment_id for r in rows} == {a.id} and a.user_id == users["bob"]
    assert len(bob.get(f"/api/images/{iid}/objects").get_json()["objects"]) == 2
