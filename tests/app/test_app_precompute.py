"""The precompute: the in-process worker computes each new image's pyramid with the app's
provider, stores it, and reports every step over Socket.IO; failures show per image and can
be retried; a restart picks up unfinished work. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from app_helpers import ADMIN, ANNOTATOR, create_project, image_bytes, login, upload, wait_idle

from model_export.pyramid_format import read_header
from webapp.db import get_db
from webapp.image_files import decode_rgb
from webapp.models import FeatureStatus
from webapp.models import Image as ImageRow


def received(sc) -> list[tuple[str, dict]]:
    return [(e["name"], e["args"][0]) for e in sc.get_received()]


def test_new_images_get_pyramids_with_live_progress(app, admin_client, pyramid_provider):
    p = create_project(admin_client)
    sc = app.extensions["socketio"].test_client(app, flask_test_client=admin_client)
    ack = sc.emit("join_project", {"project_id": p["id"]}, callback=True)
    assert ack == {"ok": True, "progress": {"project_id": p["id"], "total": 0, "pending": 0, "running": 0,
                                            "done": 0, "failed": 0}}
    files = {"a.png": image_bytes(64, 48, seed=1), "b.jpg": image_bytes(30, 90, seed=2, fmt="JPEG")}
    resp = upload(admin_client, p["id"], files)
    ids = [r["image_id"] for r in resp.get_json()["results"]]
    wait_idle(app)

    got = received(sc)
    statuses = {iid: [e["status"] for name, e in got if name == "image_status" and e["image_id"] == iid] for iid in ids}
    assert statuses == {iid: ["running", "done"] for iid in ids}
    assert all(e["project_id"] == p["id"] and e["error"] is None for name, e in got if name == "image_status")
    progress = [e for name, e in got if name == "project_progress"]
    assert progress[-1] == {"project_id": p["id"], "total": 2, "pending": 0, "running": 0, "done": 2, "failed": 0}
    assert len(progress) >= 4

    for iid, data in zip(ids, files.values()):
        resp = admin_client.get(f"/api/images/{iid}/pyramid")
        assert resp.status_code == 200 and resp.mimetype == "application/octet-stream"
        assert resp.data == pyramid_provider(decode_rgb(data))
        header = read_header(resp.data)
        meta = admin_client.get(f"/api/images/{iid}").get_json()["image"]
        assert (header["image"]["h"], header["image"]["w"]) == (meta["height"], meta["width"])
        assert meta["feature_status"] == "done"
    assert admin_client.get(f"/api/projects/{p['id']}/progress").get_json()["done"] == 2
    # Annotators read pyramids too, and join the project's room.
    bob = login(app.test_client(), *ANNOTATOR)
    assert bob.get(f"/api/images/{ids[0]}/pyramid").status_code == 200
    sc.disconnect()


class FlakyProvider:
    """Fails while ``fail`` is set, then computes like the fake provider."""

    def __init__(self, inner):
        self.inner = inner
        self.cache_key = "flaky-1"
        self.fail = True
        self.calls = 0

    def __call__(self, rgb):
        self.calls += 1
        if self.fail:
            raise RuntimeError("GPU on fire")
        return self.inner(rgb)


def test_a_failure_shows_per_image_and_retry_works(make_app, users, pyramid_provider):
    provider = FlakyProvider(pyramid_provider)
    app = make_app(PYRAMID_PROVIDER=provider)
    admin = login(app.test_client(), *ADMIN)
    p = create_project(admin)
    sc = app.extensions["socketio"].test_client(app, flask_test_client=admin)
    assert sc.emit("join_project", {"project_id": p["id"]}, callback=True)["ok"]
    iid = upload(admin, p["id"], {"a.png": image_bytes(seed=3)}).get_json()["results"][0]["image_id"]
    wait_idle(app)

    failed = [e for name, e in received(sc) if name == "image_status" and e["status"] == "failed"]
    assert failed == [{"project_id": p["id"], "image_id": iid, "status": "failed", "error": "RuntimeError: GPU on fire"}]
    meta = admin.get(f"/api/images/{iid}").get_json()["image"]
    assert meta["feature_status"] == "failed" and meta["feature_error"] == "RuntimeError: GPU on fire"
    resp = admin.get(f"/api/images/{iid}/pyramid")
    assert resp.status_code == 409 and resp.get_json()["feature_status"] == "failed"
    assert admin.get(f"/api/projects/{p['id']}/progress").get_json()["failed"] == 1
    page = admin.get(f"/admin/projects/{p['id']}").get_data(as_text=True)
    assert "admin_project.js" in page and 'id="progress-bar"' in page

    bob = login(app.test_client(), *ANNOTATOR)
    assert bob.post(f"/api/images/{iid}/retry").status_code == 403
    provider.fail = False
    resp = admin.post(f"/api/images/{iid}/retry")
    assert resp.status_code == 200 and resp.get_json()["image"]["feature_status"] == "pending"
    wait_idle(app)
    assert admin.get(f"/api/images/{iid}").get_json()["image"]["feature_status"] == "done"
    assert [e["status"] for name, e in received(sc) if name == "image_status"] == ["pending", "running", "done"]
    assert admin.get(f"/api/images/{iid}/pyramid").status_code == 200
    again = admin.post(f"/api/images/{iid}/retry")
    assert again.status_code == 409 and "only a failed image" in again.get_json()["error"]

    # retry-failed re-queues every failed image of the project
    provider.fail = True
    ids = [r["image_id"] for r in upload(admin, p["id"], {f"{i}.png": image_bytes(seed=10 + i) for i in range(2)})
           .get_json()["results"]]
    wait_idle(app)
    provider.fail = False
    assert admin.post(f"/api/projects/{p['id']}/retry-failed").get_json() == {"retried": 2}
    wait_idle(app)
    assert {admin.get(f"/api/images/{i}").get_json()["image"]["feature_status"] for i in ids} == {"done"}
    sc.disconnect()


def test_restart_resumes_unfinished_work_and_recomputes_for_a_new_model(make_app, users, pyramid_provider):
    gate = threading.Event()

    class Blocked:
        cache_key = "model-a"

        def __call__(self, rgb):
            gate.wait(10)
            raise RuntimeError("stopped")

    app = make_app(PYRAMID_PROVIDER=None)  # no worker: uploads stay pending
    admin = login(app.test_client(), *ADMIN)
    p = create_project(admin)
    ids = [r["image_id"] for r in upload(admin, p["id"], {f"{i}.png": image_bytes(seed=20 + i) for i in range(3)})
           .get_json()["results"]]
    assert admin.get(f"/api/projects/{p['id']}/progress").get_json()["pending"] == 3
    assert admin.get(f"/api/images/{ids[0]}/pyramid").status_code == 409
    assert "new images stay pending" in admin.get(f"/admin/projects/{p['id']}").get_data(as_text=True)
    with get_db(app).session() as s:  # as if a process died while computing this one
        s.get(ImageRow, ids[0]).feature_status = FeatureStatus.RUNNING.value
        s.commit()

    app2 = make_app(PYRAMID_PROVIDER=pyramid_provider)
    wait_idle(app2)
    c2 = login(app2.test_client(), *ADMIN)
    metas = [c2.get(f"/api/images/{i}").get_json()["image"] for i in ids]
    assert [m["feature_status"] for m in metas] == ["done"] * 3

    # A server on another model recomputes (its provider is called: here it fails, visibly).
    gate.set()
    app3 = make_app(PYRAMID_PROVIDER=Blocked())
    wait_idle(app3)
    c3 = login(app3.test_client(), *ADMIN)
    assert {c3.get(f"/api/images/{i}").get_json()["image"]["feature_status"] for i in ids} == {"failed"}


@pytest.mark.parametrize("bad", ["garbage", "wrong-size"])
def test_invalid_provider_output_fails_the_image(make_app, users, pyramid_provider, bad):
    def provider(rgb):
        if bad == "garbage":
            return b"not a pyramid"
        return pyramid_provider(rgb[: rgb.shape[0] // 2])

    provider.cache_key = f"bad-{bad}"
    app = make_app(PYRAMID_PROVIDER=provider)
    admin = login(app.test_client(), *ADMIN)
    p = create_project(admin)
    iid = upload(admin, p["id"], {"a.png": image_bytes(seed=30)}).get_json()["results"][0]["image_id"]
    wait_idle(app)
    meta = admin.get(f"/api/images/{iid}").get_json()["image"]
    assert meta["feature_status"] == "failed"
    assert ("invalid file" if bad == "garbage" else "for a 24x64 image, the image is 48x64") in meta["feature_error"]
