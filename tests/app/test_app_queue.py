"""The work queue: annotators asking at the same moment get different images (threads
released together by a barrier, with a forced race on the same free slot), locks expire and
the image goes back to the queue, k annotators per image, gold images mixed in. On SQLite and
PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from app_helpers import ANNOTATOR, ANNOTATOR2, FAST_HASH, create_project, image_bytes, login, upload, wait_idle
from sqlalchemy.exc import IntegrityError

from webapp import queue
from webapp.accounts import create_user
from webapp.db import get_db
from webapp.models import Assignment, Role, utcnow

H, W = 30, 40
RLE = {"size": [H, W], "counts": [H * 10, H * 5, H * 25]}  # columns 10..14


def _project(app, admin_client, n: int, **settings) -> tuple[int, list[int]]:
    p = create_project(admin_client)
    files = {f"{i:02d}.png": image_bytes(W, H, seed=100 + i) for i in range(n)}
    ids = [r["image_id"] for r in upload(admin_client, p["id"], files).get_json()["results"]]
    wait_idle(app)
    if settings:
        resp = admin_client.patch(f"/api/projects/{p['id']}/settings", json=settings)
        assert resp.status_code == 200, resp.get_json()
    return p["id"], ids


def _annotators(app, n: int) -> list:
    clients = []
    with get_db(app).session() as s:
        for i in range(n):
            create_user(s, f"worker{i}", f"worker{i}-password", Role.ANNOTATOR, FAST_HASH)
    for i in range(n):
        clients.append(login(app.test_client(), f"worker{i}", f"worker{i}-password"))
    return clients


@pytest.fixture
def forced_race(monkeypatch):
    """Make every taker read the slots, then wait for the others before taking one."""
    state = {"barrier": None, "lost": 0}
    orig = queue._try_take

    def hook():
        b = state["barrier"]
        if b is not None:
            try:
                b.wait(timeout=2)
            except threading.BrokenBarrierError:
                pass

    def counting(*args, **kwargs):
        got = orig(*args, **kwargs)
        if got is False:
            state["lost"] += 1
        return got

    monkeypatch.setattr(queue, "RACE_HOOK", hook)
    monkeypatch.setattr(queue, "_try_take", counting)
    return state


def _together(clients, fn):
    """Run fn(client) in one thread per client, all released at the same moment."""
    start = threading.Barrier(len(clients))
    results: list = [None] * len(clients)
    errors: list = []

    def run(i, c):
        try:
            start.wait(timeout=10)
            results[i] = fn(c)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return results


def _next(pid):
    def call(client):
        resp = client.post(f"/api/projects/{pid}/queue/next")
        assert resp.status_code == 200, resp.get_json()
        return resp.get_json()

    return call


def test_annotators_asking_at_the_same_moment_get_different_images(app, users, admin_client, forced_race):
    pid, ids = _project(app, admin_client, 9)
    clients = _annotators(app, 3)
    seen: list[int] = []
    for _round in range(3):
        forced_race["barrier"] = threading.Barrier(3)
        got = _together(clients, _next(pid))
        images = [g["image"]["id"] for g in got]
        assert len(set(images)) == 3, images  # never the same image twice at once
        seen += images
        for c, g in zip(clients, got):
            assert c.post(g["image"]["urls"]["submit"]).status_code == 200
    assert sorted(seen) == sorted(ids)  # every image handed out exactly once (overlap 1)
    assert forced_race["lost"] >= 1  # the race really happened: a unique constraint refused a taker
    with get_db(app).session() as s:
        rows = s.query(Assignment).all()
        assert len(rows) == 9 and {r.slot for r in rows} == {0}


def test_overlap_two_gives_each_image_to_two_different_annotators(app, users, admin_client, forced_race):
    pid, ids = _project(app, admin_client, 2, overlap=2)
    clients = _annotators(app, 5)
    forced_race["barrier"] = threading.Barrier(5)
    got = _together(clients, _next(pid))
    images = [g["image"]["id"] if g["image"] else None for g in got]
    assert sorted(images, key=str) == sorted([ids[0], ids[0], ids[1], ids[1], None], key=str)
    with get_db(app).session() as s:
        for iid in ids:
            rows = s.query(Assignment).filter_by(image_id=iid).all()
            assert sorted(r.slot for r in rows) == [0, 1] and len({r.user_id for r in rows}) == 2


def test_the_unique_slot_refuses_a_second_taker(app, users, admin_client):
    pid, ids = _project(app, admin_client, 1)
    db = get_db(app)
    deadline = utcnow() + timedelta(minutes=5)
    with db.session() as a, db.session() as b:
        a.add(Assignment(project_id=pid, image_id=ids[0], slot=0, user_id=users["bob"], status="active",
                         locked_until=deadline))
        b.add(Assignment(project_id=pid, image_id=ids[0], slot=0, user_id=users["carol"], status="active",
                         locked_until=deadline))
        a.commit()
        with pytest.raises(IntegrityError):
            b.commit()


def _expire(app, assignment_id: int) -> None:
    with get_db(app).session() as s:
        a = s.get(Assignment, assignment_id)
        a.locked_until = utcnow() - timedelta(seconds=1)
        s.commit()


def test_locks_time_out_and_the_image_returns_to_the_queue(app, users, admin_client):
    pid, ids = _project(app, admin_client, 2, lock_timeout_s=600)
    bob = login(app.test_client(), *ANNOTATOR)
    carol = login(app.test_client(), *ANNOTATOR2)
    first = bob.post(f"/api/projects/{pid}/queue/next").get_json()
    a = first["assignment"]
    assert first["image"]["id"] == ids[0] and a["status"] == "active"
    with get_db(app).session() as s:
        row = s.get(Assignment, a["id"])
        left = (queue.aware(row.locked_until) - utcnow()).total_seconds()
        assert 590 < left <= 600
    # bob asks again (a reload): the same image, lock renewed; carol gets the other one
    assert bob.post(f"/api/projects/{pid}/queue/next").get_json()["image"]["id"] == ids[0]
    assert carol.post(f"/api/projects/{pid}/queue/next").get_json()["image"]["id"] == ids[1]
    # while bob's lock holds, nobody else can work on his image
    dave = _annotators(app, 1)[0]
    assert dave.post(f"/api/projects/{pid}/queue/next").get_json()["image"] is None
    resp = dave.post(f"/api/images/{ids[0]}/objects", json={"class": "cat", "rle": RLE, "clicks": [], "time_spent": 1})
    assert resp.status_code == 409 and "being annotated by others" in resp.get_json()["error"]
    assert dave.put(f"/api/images/{ids[0]}/draft", json={"rev": 1, "clicks": []}).status_code == 409
    # bob saves an object, then abandons the image: the lock runs out
    saved = bob.post(f"/api/images/{ids[0]}/objects", json={"class": "cat", "rle": RLE, "clicks": [], "time_spent": 1})
    assert saved.status_code == 201
    _expire(app, a["id"])
    assert dave.get(f"/api/projects/{pid}/next").get_json()["image"]["id"] == ids[0]  # back in the queue
    took = dave.post(f"/api/projects/{pid}/queue/next").get_json()
    assert took["image"]["id"] == ids[0] and took["assignment"]["id"] == a["id"]
    assert took["assignment"]["username"] == "worker0"
    # dave starts clean (bob's object stays in the database, with its author)
    assert dave.get(f"/api/images/{ids[0]}/objects").get_json()["objects"] == []
    assert len(admin_client.get(f"/api/images/{ids[0]}/objects").get_json()["objects"]) == 1
    # bob comes back: his lock is gone
    hb = bob.post(f"/api/assignments/{a['id']}/heartbeat")
    assert hb.status_code == 409 and "another annotator" in hb.get_json()["error"]
    assert bob.post(f"/api/projects/{pid}/queue/next").get_json()["image"] is None
    # an expired lock of one's own is simply renewed
    mine = carol.post(f"/api/projects/{pid}/queue/next").get_json()["assignment"]
    _expire(app, mine["id"])
    again = carol.post(f"/api/projects/{pid}/queue/next").get_json()
    assert again["assignment"]["id"] == mine["id"] and again["assignment"]["locked_until"] > mine["locked_until"]
    # release gives it back at once
    assert carol.post(f"/api/assignments/{mine['id']}/release").status_code == 200
    assert bob.post(f"/api/projects/{pid}/queue/next").get_json()["image"]["id"] == ids[1]


def test_overlap_submit_and_independent_work(app, users, admin_client):
    pid, ids = _project(app, admin_client, 1, overlap=2)
    bob = login(app.test_client(), *ANNOTATOR)
    carol = login(app.test_client(), *ANNOTATOR2)
    for c in (bob, carol):
        assert c.post(f"/api/projects/{pid}/queue/next").get_json()["image"]["id"] == ids[0]
        assert c.post(f"/api/images/{ids[0]}/objects",
                      json={"class": "cat", "rle": RLE, "clicks": [], "time_spent": 1}).status_code == 201
    assert len(bob.get(f"/api/images/{ids[0]}/objects").get_json()["objects"]) == 1  # his own only
    # ... also one by one: another annotator's object is "not found", not shown
    carols = carol.get(f"/api/images/{ids[0]}/objects").get_json()["objects"]
    assert bob.get(f"/api/objects/{carols[0]['id']}").status_code == 404
    assert carol.get(f"/api/objects/{carols[0]['id']}").status_code == 200
    assert admin_client.get(f"/api/objects/{carols[0]['id']}").status_code == 200
    r = bob.post(f"/api/images/{ids[0]}/submit").get_json()
    assert r["image"]["annotation_status"] == "open" and r["assignment"]["status"] == "submitted"
    again = bob.post(f"/api/images/{ids[0]}/objects", json={"class": "cat", "rle": RLE, "clicks": [], "time_spent": 1})
    assert again.status_code == 409 and "submitted image" in again.get_json()["error"]
    assert carol.post(f"/api/images/{ids[0]}/submit").get_json()["image"]["annotation_status"] == "submitted"
    assert admin_client.get(f"/api/projects/{pid}").get_json()["project"]["annotation"] == {"open": 0, "submitted": 1}


def test_the_last_two_slots_submitted_at_once_close_the_image(app, users, admin_client, monkeypatch):
    """Both submits flush their slot, then meet at a barrier before counting the done slots:
    each count must see the other's (the image row is locked first), so the image is submitted."""
    pid, ids = _project(app, admin_client, 1, overlap=2)
    clients = _annotators(app, 2)
    for c in clients:
        assert c.post(f"/api/projects/{pid}/queue/next").get_json()["image"]["id"] == ids[0]
    barrier = threading.Barrier(2)
    orig = queue.update_image_status

    def racing(*args, **kwargs):
        try:
            barrier.wait(timeout=3)  # SQLite: the second writer waits for the first's commit instead
        except threading.BrokenBarrierError:
            pass
        return orig(*args, **kwargs)

    monkeypatch.setattr(queue, "update_image_status", racing)
    results: list = [None, None]

    def submit(i):
        results[i] = clients[i].post(f"/api/images/{ids[0]}/submit").status_code

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == [200, 200]
    image = admin_client.get(f"/api/images/{ids[0]}").get_json()["image"]
    assert image["annotation_status"] == "submitted"


def test_settings_are_checked(app, users, admin_client):
    pid, _ = _project(app, admin_client, 1)
    for body, msg in [({"overlap": 0}, "from 1 to 50"), ({"lock_timeout_s": "x"}, "integer"),
                      ({"colour": 1}, "unknown setting"), ([], "expected a JSON body")]:
        resp = admin_client.patch(f"/api/projects/{pid}/settings", json=body)
        assert resp.status_code == 400 and msg in resp.get_json()["error"], (body, resp.get_json())
    ok = admin_client.patch(f"/api/projects/{pid}/settings", json={"overlap": 3, "gold_every": 4})
    assert ok.get_json()["settings"] == {"overlap": 3, "lock_timeout_s": 1800, "gold_every": 4, "batch_size": 0}


def test_gold_images_are_mixed_in_and_scored(app, users, admin_client):
    pid, ids = _project(app, admin_client, 3, gold_every=1)
    gold = ids[2]
    # the admin's own objects on the gold image are its reference
    ref = admin_client.post(f"/api/images/{gold}/objects", json={"class": "cat", "rle": RLE, "clicks": [], "time_spent": 1})
    assert ref.status_code == 201
    assert admin_client.post(f"/api/images/{gold}/gold", json={"gold": True}).get_json()["image"]["is_gold"] is True
    assert admin_client.post(f"/api/images/{gold}/gold", json={"gold": "yes"}).status_code == 400
    bob = login(app.test_client(), *ANNOTATOR)
    first = bob.post(f"/api/projects/{pid}/queue/next").get_json()
    assert first["image"]["id"] == ids[0] and "is_gold" not in first["image"]  # annotators are not told
    bob.post(f"/api/images/{ids[0]}/submit")
    second = bob.post(f"/api/projects/{pid}/queue/next").get_json()
    assert second["image"]["id"] == gold  # one gold image after every regular one
    assert bob.get(f"/api/images/{gold}/objects").get_json()["objects"] == []  # the reference stays hidden
    assert bob.get(f"/api/objects/{ref.get_json()['object']['id']}").status_code == 404  # by id too
    half = [H * 10, H * 2, H * 28]  # columns 10..11: 2 of the reference's 5 columns
    bob.post(f"/api/images/{gold}/objects", json={"class": "cat", "rle": {"size": [H, W], "counts": half},
                                                  "clicks": [], "time_spent": 1})
    assert bob.post(f"/api/images/{gold}/submit").get_json()["image"]["annotation_status"] == "open"
    assert bob.post(f"/api/projects/{pid}/queue/next").get_json()["image"]["id"] == ids[1]
    q = admin_client.get(f"/api/projects/{pid}/quality").get_json()
    row = next(a for a in q["annotators"] if a["username"] == "bob")
    assert row["gold_images"] == 1 and row["gold_iou"] == pytest.approx(2 / 5)
    assert bob.post(f"/api/images/{ids[1]}/submit").status_code == 200
    assert bob.post(f"/api/projects/{pid}/queue/next").get_json()["image"] is None  # each gold image once
    # a second annotator gets the same gold image too (gold is not limited by the overlap)
    admin_client.patch(f"/api/projects/{pid}/settings", json={"overlap": 2})
    carol = login(app.test_client(), *ANNOTATOR2)
    assert carol.post(f"/api/projects/{pid}/queue/next").get_json()["image"]["id"] == ids[0]
    carol.post(f"/api/images/{ids[0]}/submit")
    assert carol.post(f"/api/projects/{pid}/queue/next").get_json()["image"]["id"] == gold
    # an image already handed out cannot become gold, and a gold image worked on stays gold
    assert admin_client.post(f"/api/images/{ids[0]}/gold", json={"gold": True}).status_code == 409
    unmark = admin_client.post(f"/api/images/{gold}/gold", json={"gold": False})
    assert unmark.status_code == 409 and "stays a gold image" in unmark.get_json()["error"]
