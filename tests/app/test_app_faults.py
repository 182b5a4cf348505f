"""Faults, on the real PostgreSQL and Redis: a worker killed in the middle of a job (the image
is computed again, never a truncated pyramid), a blob writer killed in the middle of a write
(local folder and S3), the web server killed and restarted while annotators work (no accepted
mask lost, drafts back), and the database unreachable for a while (503 with a message, retries
work, nothing half-written)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest
import requests
from app_helpers import create_project, image_bytes, upload
from fake_model import FakePyramidProvider
from scaleout_support import (
    REDIS_URL,
    S3_ENV,
    SLOW_PROVIDER,
    TcpProxy,
    client_login,
    free_port,
    http_login,
    make_bucket,
    moto_s3,
    postgres_database_with_users,
    redis_or_fail,
    start_web,
    start_worker,
    unique,
    wait_for,
)
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from model_export.pyramid_format import decode_pyramid
from webapp import close_app, create_app
from webapp.db import Database
from webapp.image_files import decode_rgb
from webapp.models import AnnotationObject, Draft, Image

USERS = {"alice": "admin", "bob": "annotator", "carol": "annotator"}


@pytest.fixture(scope="module")
def pg_url():
    yield from postgres_database_with_users("interformer_scale", USERS)


def rle(h: int, w: int) -> dict:
    return {"size": [h, w], "counts": [h * 3, h * 2, h * (w - 5)]}


def count(url: str, stmt) -> int:
    db = Database(url)
    try:
        with db.session() as s:
            return s.scalar(stmt)
    finally:
        db.dispose()


# -- a worker killed in the middle of a job ---------------------------------------------------


def test_a_worker_killed_mid_job_is_replaced_and_the_pyramid_is_complete(pg_url, tmp_path):
    redis_or_fail()
    names = {"PRECOMPUTE_QUEUE": unique("test-precompute"), "SOCKETIO_CHANNEL": unique("test-socketio")}
    blobs = tmp_path / "blobs"
    env = {"DATABASE_URL": pg_url, "REDIS_URL": REDIS_URL, "BLOB_STORE_URL": str(blobs), **names}
    app = create_app({"TESTING": True, "SECRET_KEY": "k", "DATA_DIR": tmp_path / "web", "DATABASE_URL": pg_url,
                      "PRECOMPUTE_WORKER": "redis", "REDIS_URL": REDIS_URL, "BLOB_STORE_URL": str(blobs), **names})
    mark = tmp_path / "computing"
    procs = []
    try:
        admin = client_login(app.test_client(), "alice")
        p = create_project(admin, name="killed-worker")
        original = image_bytes(64, 40, seed=300)
        iid = upload(admin, p["id"], {"a.png": original}).get_json()["results"][0]["image_id"]
        slow = start_worker(tmp_path, {**env, "SLOW_PROVIDER_DELAY_S": "60", "SLOW_PROVIDER_MARK": str(mark)},
                            provider=SLOW_PROVIDER, lease=2.0, name="slow-worker")
        procs.append(slow)
        wait_for(mark.exists, 30, "the worker to start computing")
        slow.kill(signal.SIGKILL)  # in the middle of the job
        meta = admin.get(f"/api/images/{iid}").get_json()["image"]
        assert meta["feature_status"] == "running"
        resp = admin.get(f"/api/images/{iid}/pyramid")
        assert resp.status_code == 409 and resp.get_json()["feature_status"] == "running"  # nothing half-made served

        procs.append(start_worker(tmp_path, env, lease=2.0, name="new-worker"))

        def status():
            return admin.get(f"/api/images/{iid}").get_json()["image"]["feature_status"]

        wait_for(lambda: status() == "done", 60, "the image to be computed again")
        data = admin.get(f"/api/images/{iid}/pyramid").data
        levels, header = decode_pyramid(data)  # every level decodes: the file is complete
        assert (header["image"]["h"], header["image"]["w"]) == (40, 64)
        assert data == FakePyramidProvider()(decode_rgb(original))
        assert "queued again" in procs[-1].output()  # the lease sweep found the dead worker's image
        assert not list(blobs.rglob("*.tmp"))
    finally:
        for proc in procs:
            proc.kill()
        close_app(app)


# -- a blob writer killed in the middle of a write ----------------------------------------------

WRITER = """
import sys
from webapp.storage_s3 import blob_store_from_url
store = blob_store_from_url(sys.argv[1], sys.argv[2])
data = bytes([7]) * int(sys.argv[3])
print("writing", flush=True)
store.put("pyramids/m/abc.ifpyr", data)
print("written", flush=True)
"""


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_writer_killed_mid_write_leaves_the_old_blob_or_none(kind, tmp_path, monkeypatch):
    """Readers see the previous blob whole, never part of the new one."""
    from webapp.storage_s3 import blob_store_from_url

    for k, v in S3_ENV.items():
        monkeypatch.setenv(k, v)
    with moto_s3(tmp_path) as s3:
        proxy = None
        if kind == "local":
            url, size = str(tmp_path / "blobs"), 256 * 1024**2
            writer_url = url
        else:
            make_bucket(s3, "atomic")
            url, size = f"s3://atomic/p?endpoint_url={s3}", 4 * 1024**2
            host, port = s3.removeprefix("http://").split(":")
            proxy = TcpProxy(host, int(port), rate=512 * 1024)  # 8 s for the upload
            writer_url = f"s3://atomic/p?endpoint_url=http://127.0.0.1:{proxy.port}"
        store = blob_store_from_url(url, tmp_path)
        old = b"old pyramid " * 1000
        store.put("pyramids/m/abc.ifpyr", old)
        writer = subprocess.Popen([sys.executable, "-c", WRITER, writer_url, str(tmp_path), str(size)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert writer.stdout.readline().strip() == "writing"
            if kind == "local":  # kill as soon as the new bytes are being written
                folder = tmp_path / "blobs" / "pyramids" / "m"
                wait_for(lambda: any(f.name.endswith(".tmp") and f.stat().st_size > 0 for f in folder.iterdir()),
                         30, "the temporary file", every=0.001)
            else:
                wait_for(lambda: proxy.sent > 1024 * 1024, 30, "part of the upload")
            writer.send_signal(signal.SIGKILL)
            writer.wait(10)
            got = store.get("pyramids/m/abc.ifpyr")
            assert got == old, f"a reader sees {len(got)} bytes, not the old {len(old)}"
            if kind == "local":  # the rename never happened: the kill came mid-write
                assert any(f.name.endswith(".tmp") for f in (tmp_path / "blobs" / "pyramids" / "m").iterdir())
            else:
                assert proxy.sent < size  # the kill came mid-upload
        finally:
            if writer.poll() is None:
                writer.kill()
            if proxy is not None:
                proxy.close()


# -- the web server restarted while annotators work --------------------------------------------


def test_web_restart_loses_no_accepted_mask_and_restores_drafts(pg_url, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    (tmp_path / "model").mkdir()
    env = {"DATABASE_URL": pg_url, "PRECOMPUTE_WORKER": "thread"}
    web = start_web(tmp_path, env, port, provider="fake_model:FakePyramidProvider")
    procs = [web]
    try:
        admin = http_login(base, "alice")
        pid = admin.post(f"{base}/api/projects", json={"name": "restart", "classes": ["cat"]}).json()["project"]["id"]
        H, W = 30, 40
        files = [("files", (f"{i}.png", image_bytes(W, H, seed=400 + i), "image/png")) for i in range(2)]
        ids = [r["image_id"] for r in admin.post(f"{base}/api/projects/{pid}/images", files=files).json()["results"]]
        n_objects = 12
        acked: dict[str, set[str]] = {"bob": set(), "carol": set()}
        draft_acked: dict[str, int] = {"bob": -1, "carol": -1}
        errors_seen = {"bob": 0, "carol": 0}
        started = threading.Barrier(3)

        def send(session: requests.Session, who: str, method: str, url: str, body: dict) -> requests.Response:
            """Like the browser's outbox: resend until the server answers 2xx."""
            while True:
                try:
                    r = session.request(method, url, json=body, timeout=5)
                    if r.status_code < 300:
                        return r
                    assert r.status_code in (502, 503), r.text
                except requests.RequestException:
                    pass  # refused, reset, or cut mid-answer (ChunkedEncodingError): a network error, resend
                errors_seen[who] += 1
                time.sleep(0.1)

        def annotate(who: str, iid: int) -> None:
            s = http_login(base, who)
            started.wait(30)
            for i in range(n_objects):
                cid = f"{who}-object-{i:04d}"
                body = {"class": "cat", "rle": rle(H, W), "clicks": [{"x": 3, "y": 4, "positive": True, "t": 0}],
                        "time_spent": 1.5, "client_id": cid}
                send(s, who, "POST", f"{base}/api/images/{iid}/objects", body)
                acked[who].add(cid)
                send(s, who, "PUT", f"{base}/api/images/{iid}/draft",
                     {"rev": i, "clicks": [{"x": 5, "y": 6, "positive": True, "t": 0}], "class_id": None})
                draft_acked[who] = i
                time.sleep(0.05)

        threads = [threading.Thread(target=annotate, args=(who, iid)) for who, iid in zip(acked, ids)]
        for t in threads:
            t.start()
        started.wait(30)
        wait_for(lambda: min(len(v) for v in acked.values()) >= 3, 60, "some saves before the crash")
        web.kill(signal.SIGKILL)  # the web server dies while both annotators save
        at_crash = {who: (set(v), draft_acked[who]) for who, v in acked.items()}
        time.sleep(0.5)
        web = start_web(tmp_path, env, port, provider="fake_model:FakePyramidProvider", name="web-restarted", data="web")
        procs.append(web)
        # drafts acknowledged before the crash are there after it (the annotators' sessions still hold)
        for who, iid in zip(acked, ids):
            d = http_login(base, who).get(f"{base}/api/images/{iid}/draft").json()["draft"]
            assert d is not None and d["rev"] >= at_crash[who][1]
        for t in threads:
            t.join(90)
        assert not any(t.is_alive() for t in threads)
        assert sum(errors_seen.values()) > 0, "the crash did not interrupt anyone"
        for who, iid in zip(acked, ids):
            s = http_login(base, who)
            stored = [o["client_id"] for o in s.get(f"{base}/api/images/{iid}/objects").json()["objects"]]
            assert sorted(stored) == sorted(acked[who]) and len(stored) == n_objects  # each once, none lost
            assert at_crash[who][0] <= set(stored)
            assert s.get(f"{base}/api/images/{iid}/draft").json()["draft"]["rev"] == n_objects - 1
    finally:
        for proc in procs:
            proc.kill()


# -- the database unreachable for a while ------------------------------------------------------


def test_database_outage_gives_503_then_retries_work_without_partial_writes(pg_url, tmp_path):
    url = make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    app = create_app({"TESTING": True, "SECRET_KEY": "k", "DATA_DIR": tmp_path / "web", "DATABASE_URL": proxied,
                      "PYRAMID_PROVIDER": None})
    try:
        admin = client_login(app.test_client(), "alice")
        bob = client_login(app.test_client(), "bob")
        p = create_project(admin, name="outage")
        iid = upload(admin, p["id"], {"a.png": image_bytes(40, 30, seed=500)}).get_json()["results"][0]["image_id"]
        body = {"class": "cat", "rle": rle(30, 40), "clicks": [], "time_spent": 1.0, "client_id": "outage-object-1"}
        objects_before = count(pg_url, select(func.count()).select_from(AnnotationObject))
        images_before = count(pg_url, select(func.count()).select_from(Image))

        proxy.cut()
        calls = [bob.post(f"/api/images/{iid}/objects", json=body),
                 bob.put(f"/api/images/{iid}/draft", json={"rev": 1, "clicks": []}),
                 bob.get(f"/api/images/{iid}"),
                 upload(admin, p["id"], {"b.png": image_bytes(40, 30, seed=501)})]
        for r in calls:
            assert r.status_code == 503, (r.status_code, r.get_data(as_text=True)[:300])
            assert r.get_json()["retry"] is True and "database is not reachable" in r.get_json()["error"]
            assert r.headers["Retry-After"] == "2"
        assert "Traceback" not in "".join(r.get_data(as_text=True) for r in calls)
        # nothing half-written while it was away
        assert count(pg_url, select(func.count()).select_from(AnnotationObject)) == objects_before
        assert count(pg_url, select(func.count()).select_from(Image)) == images_before
        assert count(pg_url, select(func.count()).select_from(Draft).where(Draft.image_id == iid)) == 0

        proxy.restore()
        first = bob.post(f"/api/images/{iid}/objects", json=body)  # the client's retry
        assert first.status_code == 201, first.get_json()
        again = bob.post(f"/api/images/{iid}/objects", json=body)  # and a late duplicate of it
        assert again.status_code == 200 and again.get_json()["duplicate"] is True
        assert bob.put(f"/api/images/{iid}/draft", json={"rev": 1, "clicks": []}).status_code == 200
        assert upload(admin, p["id"], {"b.png": image_bytes(40, 30, seed=501)}).status_code == 201
        assert count(pg_url, select(func.count()).select_from(AnnotationObject)
                     .where(AnnotationObject.client_id == "outage-object-1")) == 1
        assert count(pg_url, select(func.count()).select_from(Image)) == images_before + 1
    finally:
        close_app(app)
        proxy.close()
