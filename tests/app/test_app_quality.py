"""Quality and the dashboard: agreement between overlapping annotators, the consensus mask
(majority vote), and the dashboard's numbers (seconds and clicks per object, their
histograms, progress per annotator) announced live over Socket.IO. On SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest
from app_helpers import ANNOTATOR, FAST_HASH, REVIEWER, create_project, image_bytes, login, upload, wait_idle

from webapp.accounts import create_user
from webapp.dashboard import histogram
from webapp.db import get_db
from webapp.masks import decode
from webapp.models import Role

H, W = 30, 40


def cols(first: int, n: int) -> dict:
    return {"size": [H, W], "counts": [H * first, H * n, H * (W - first - n)]}


def clicks(n: int) -> list[dict]:
    return [{"x": 5 + i, "y": 5, "positive": True, "t": 400 * i} for i in range(n)]


@pytest.fixture
def three(app, users):
    with get_db(app).session() as s:
        for name in ("w1", "w2", "w3"):
            create_user(s, name, f"{name}-password", Role.ANNOTATOR, FAST_HASH)
    return [login(app.test_client(), n, f"{n}-password") for n in ("w1", "w2", "w3")]


def test_agreement_and_consensus(app, admin_client, three):
    p = create_project(admin_client)
    iid = upload(admin_client, p["id"], {"a.png": image_bytes(W, H, seed=9)}).get_json()["results"][0]["image_id"]
    wait_idle(app)
    admin_client.patch(f"/api/projects/{p['id']}/settings", json={"overlap": 3})
    # w1: columns 10-19, w2: 14-23, w3: 10-19 and a dog at 30-31
    work = [[("cat", cols(10, 10))], [("cat", cols(14, 10))], [("cat", cols(10, 10)), ("dog", cols(30, 2))]]
    for client, objs in zip(three, work):
        assert client.post(f"/api/projects/{p['id']}/queue/next").get_json()["image"]["id"] == iid
        for cls, rle in objs:
            assert client.post(f"/api/images/{iid}/objects", json={"class": cls, "rle": rle, "clicks": clicks(2),
                                                                   "time_spent": 4}).status_code == 201
        client.post(f"/api/images/{iid}/submit")
    q = admin_client.get(f"/api/projects/{p['id']}/quality").get_json()
    iou12 = 6 / 14  # columns 14-19 shared, 10-23 in all
    pairs = {("w1", "w2"): iou12, ("w1", "w3"): (1 + 0) / 2, ("w2", "w3"): (iou12 + 0) / 2}
    expect = {u: np.mean([v for k, v in pairs.items() if u in k]) for u in ("w1", "w2", "w3")}
    got = {a["username"]: a for a in q["annotators"]}
    for u in expect:
        assert got[u]["agreement"] == pytest.approx(expect[u]) and got[u]["agreement_pairs"] == 2
    assert q["images"][0]["agreement"] == pytest.approx(np.mean(list(pairs.values())))

    cons = admin_client.get(f"/api/images/{iid}/consensus").get_json()
    assert cons["annotators"] == 3 and sorted(cons["usernames"]) == ["w1", "w2", "w3"]
    by_class = {c["class_id"]: c for c in cons["classes"]}
    classes = {c["name"]: c["id"] for c in admin_client.get(f"/api/projects/{p['id']}").get_json()["project"]["classes"]}
    cat = decode(by_class[classes["cat"]]["rle"]["counts"], H, W)
    expected = np.zeros((H, W), bool)
    expected[:, 10:20] = True  # 2 of 3 voted 10-19; 20-23 only w2
    assert (cat == expected).all()
    assert by_class[classes["dog"]]["area"] == 0  # one vote of three


def test_dashboard_numbers_and_live_updates(app, admin_client, users):
    p = create_project(admin_client)
    ids = [r["image_id"] for r in upload(admin_client, p["id"], {f"{i}.png": image_bytes(W, H, seed=20 + i)
                                                                 for i in range(2)}).get_json()["results"]]
    wait_idle(app)
    rita = login(app.test_client(), *REVIEWER)
    socketio = app.extensions["socketio"]
    sc = socketio.test_client(app, flask_test_client=rita)
    assert sc.emit("join_dashboard", {"project_id": p["id"]}, callback=True) == {"ok": True}
    sc.get_received()
    bob = login(app.test_client(), *ANNOTATOR)
    iid = bob.post(f"/api/projects/{p['id']}/queue/next").get_json()["image"]["id"]
    for n, secs in ((1, 2.0), (3, 6.0), (5, 12.5)):
        bob.post(f"/api/images/{iid}/objects", json={"class": "cat", "rle": cols(1 + n, 2), "clicks": clicks(n),
                                                     "time_spent": secs})
    bob.post(f"/api/images/{iid}/submit")
    events = [e for e in sc.get_received() if e["name"] == "dashboard_changed"]
    assert len(events) >= 4 and all(e["args"][0] == {"project_id": p["id"]} for e in events)
    sc.disconnect()

    d = rita.get(f"/api/projects/{p['id']}/dashboard").get_json()
    assert d["images"] == {"total": 2, "gold": 0, "open": 1, "submitted": 1}
    bob_row = next(a for a in d["annotators"] if a["username"] == "bob")
    assert (bob_row["submitted"], bob_row["objects"], bob_row["active"]) == (1, 3, 0)
    assert bob_row["clicks_per_object"]["mean"] == pytest.approx(3.0)
    assert bob_row["seconds_per_object"]["median"] == pytest.approx(6.0)
    assert d["clicks_per_object"]["histogram"]["counts"][1] == 1  # one object with 1 click
    assert sum(d["seconds_per_object"]["histogram"]["counts"]) == 3
    assert d["per_user_clicks"] == {"bob": [1, 3, 5]}
    assert rita.get(f"/admin/projects/{p['id']}/dashboard").status_code == 200
    assert ids


def test_histogram_bins():
    h = histogram([0, 0.5, 1, 2.5, 100], [0, 1, 2, 10])
    assert h == {"edges": [0, 1, 2, 10], "counts": [2, 1, 1, 1]}
