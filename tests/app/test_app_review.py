"""A whole review cycle (submit, reject with a comment, the annotator sees it and reworks,
accept), and completion codes per finished batch checked as a crowd platform would. On SQLite
and PostgreSQL."""

from __future__ import annotations

from app_helpers import ANNOTATOR, REVIEWER, create_project, image_bytes, login, upload, wait_idle

from webapp.db import get_db
from webapp.models import Review

H, W = 30, 40


def rle(first_col: int, ncols: int) -> dict:
    return {"size": [H, W], "counts": [H * first_col, H * ncols, H * (W - first_col - ncols)]}


def _setup(app, admin_client, n=2, **settings):
    p = create_project(admin_client)
    files = {f"{i}.png": image_bytes(W, H, seed=300 + i) for i in range(n)}
    ids = [r["image_id"] for r in upload(admin_client, p["id"], files).get_json()["results"]]
    wait_idle(app)
    if settings:
        assert admin_client.patch(f"/api/projects/{p['id']}/settings", json=settings).status_code == 200
    return p["id"], ids


def test_review_cycle(app, users, admin_client):
    pid, ids = _setup(app, admin_client)
    bob = login(app.test_client(), *ANNOTATOR)
    rita = login(app.test_client(), *REVIEWER)
    work = bob.post(f"/api/projects/{pid}/queue/next").get_json()
    iid, aid = work["image"]["id"], work["assignment"]["id"]
    assert bob.post(f"/api/images/{iid}/objects", json={"class": "cat", "rle": rle(5, 5), "clicks": [
        {"x": 7, "y": 10, "positive": True, "t": 0}], "time_spent": 3}).status_code == 201
    assert bob.post(f"/api/images/{iid}/submit").status_code == 200

    items = rita.get(f"/api/projects/{pid}/review").get_json()["items"]
    assert [(i["assignment"]["id"], i["assignment"]["username"], len(i["objects"])) for i in items] == [(aid, "bob", 1)]
    assert items[0]["objects"][0]["rle"]["counts"] and items[0]["image"]["id"] == iid
    assert rita.get(f"/review/{pid}").status_code == 200

    # submitted work is frozen for its annotator until a reviewer sends it back
    first_obj = bob.get(f"/api/images/{iid}/objects").get_json()["objects"][0]["id"]
    frozen = bob.delete(f"/api/objects/{first_obj}")
    assert frozen.status_code == 409 and "sends it back" in frozen.get_json()["error"]
    # a rejection needs a comment; bad decisions are 400; the annotator cannot review
    bad = rita.post(f"/api/assignments/{aid}/review", json={"decision": "reject", "comment": "  "})
    assert bad.status_code == 400 and "needs a comment" in bad.get_json()["error"]
    assert rita.post(f"/api/assignments/{aid}/review", json={"decision": "maybe"}).status_code == 400
    assert bob.post(f"/api/assignments/{aid}/review", json={"decision": "accept"}).status_code == 403
    rej = rita.post(f"/api/assignments/{aid}/review", json={"decision": "reject", "comment": "The cat's tail is missing"})
    assert rej.status_code == 200 and rej.get_json()["assignment"]["status"] == "rejected"
    assert rita.post(f"/api/assignments/{aid}/review", json={"decision": "accept"}).status_code == 409  # not submitted
    assert rita.post(f"/api/assignments/{aid}/review", json={"decision": "accept"}).get_json()["error"].startswith(
        "only submitted work")
    assert rita.get(f"/api/projects/{pid}/review").get_json()["items"] == []
    assert admin_client.get(f"/api/images/{iid}").get_json()["image"]["annotation_status"] == "open"

    # back to bob, first in his queue, with the comment; his objects are still there
    back = bob.post(f"/api/projects/{pid}/queue/next").get_json()
    assert back["image"]["id"] == iid and back["assignment"]["status"] == "active"
    assert back["assignment"]["review_comment"] == "The cat's tail is missing"
    assert len(bob.get(f"/api/images/{iid}/objects").get_json()["objects"]) == 1
    assert bob.post(f"/api/images/{iid}/objects", json={"class": "dog", "rle": rle(20, 3), "clicks": [],
                                                        "time_spent": 1}).status_code == 201
    assert bob.post(f"/api/images/{iid}/submit").get_json()["assignment"]["status"] == "submitted"
    items = rita.get(f"/api/projects/{pid}/review").get_json()["items"]
    assert len(items) == 1 and len(items[0]["objects"]) == 2
    acc = rita.post(f"/api/assignments/{aid}/review", json={"decision": "accept", "comment": "good"})
    assert acc.get_json()["assignment"]["status"] == "accepted"
    assert admin_client.get(f"/api/images/{iid}").get_json()["image"]["annotation_status"] == "submitted"
    accepted = rita.get(f"/api/projects/{pid}/review?status=accepted").get_json()["items"]
    assert [i["assignment"]["id"] for i in accepted] == [aid]
    assert rita.get(f"/api/projects/{pid}/review?status=nope").status_code == 400
    # bob's next image is a new one; the decisions are all kept
    assert bob.post(f"/api/projects/{pid}/queue/next").get_json()["image"]["id"] == ids[1]
    with get_db(app).session() as s:
        assert [(r.decision, r.comment) for r in s.query(Review).order_by(Review.id)] == [
            ("reject", "The cat's tail is missing"), ("accept", "good")]


def test_completion_codes_per_batch(app, users, admin_client):
    pid, ids = _setup(app, admin_client, n=5, batch_size=2)
    bob = login(app.test_client(), *ANNOTATOR)
    got = []
    for _ in range(5):
        iid = bob.post(f"/api/projects/{pid}/queue/next").get_json()["image"]["id"]
        got.append(bob.post(f"/api/images/{iid}/submit").get_json()["completion_codes"])
    assert [len(c) for c in got] == [0, 1, 1, 2, 2]
    codes = [c["code"] for c in got[-1]]
    assert len(set(codes)) == 2 and [c["batch"] for c in got[-1]] == [1, 2]
    again = bob.post(f"/api/images/{ids[0]}/submit").get_json()["completion_codes"]  # a retried submit
    assert [c["code"] for c in again] == codes
    assert [c["code"] for c in bob.get(f"/api/projects/{pid}/completion-codes").get_json()["codes"]] == codes
    platform = app.test_client()  # not logged in
    ok = platform.get(f"/api/completion-codes/{codes[0].lower()}")
    assert ok.status_code == 200 and ok.get_json()["valid"] is True and ok.get_json()["batch"] == 1
    assert ok.get_json()["project_id"] == pid
    bad = platform.get("/api/completion-codes/NOTACODE1234")
    assert bad.status_code == 404 and bad.get_json()["valid"] is False
