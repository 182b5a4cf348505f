"""Scale-out on the real PostgreSQL and Redis (docs/deploy.md): ``interformer worker`` processes
take the precompute jobs from Redis and store valid pyramids; two ``interformer serve``
processes share live events through the Socket.IO message queue, with the blobs in an S3
store (moto's server); the blob store chosen by URL."""

from __future__ import annotations

import io
import threading

import pytest
import socketio
from app_helpers import create_project, image_bytes, upload
from fake_model import FakePyramidProvider
from scaleout_support import (
    REDIS_URL,
    S3_ENV,
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

from model_export.pyramid_format import decode_pyramid
from webapp import close_app, create_app
from webapp.image_files import decode_rgb
from webapp.storage import LocalBlobStore
from webapp.storage_s3 import BlobStoreConfigError, S3BlobStore, blob_store_from_url

USERS = {"alice": "admin", "bob": "annotator"}


@pytest.fixture(scope="module")
def pg_url():
    yield from postgres_database_with_users("interformer_scale", USERS)


@pytest.fixture
def redis_names():
    """A queue and a Socket.IO channel of this test only."""
    redis_or_fail()
    return {"PRECOMPUTE_QUEUE": unique("test-precompute"), "SOCKETIO_CHANNEL": unique("test-socketio")}


def check_pyramid(data: bytes, original: bytes) -> None:
    """A complete pyramid for this image: it decodes, has the image's size, and is the bytes the
    provider gives for it."""
    levels, header = decode_pyramid(data)
    h, w = decode_rgb(original).shape[:2]
    assert (header["image"]["h"], header["image"]["w"]) == (h, w)
    assert len(levels) == 4 and all(lv.ndim == 3 for lv in levels)
    assert data == FakePyramidProvider()(decode_rgb(original))


def test_workers_take_jobs_from_redis_and_store_valid_pyramids(pg_url, redis_names, tmp_path):
    blobs = tmp_path / "blobs"
    env = {"DATABASE_URL": pg_url, "REDIS_URL": REDIS_URL, "BLOB_STORE_URL": f"file://{blobs}", **redis_names}
    app = create_app({"TESTING": True, "SECRET_KEY": "k", "DATA_DIR": tmp_path / "web", "DATABASE_URL": pg_url,
                      "PRECOMPUTE_WORKER": "redis", "REDIS_URL": REDIS_URL, "BLOB_STORE_URL": str(blobs),
                      **redis_names})
    workers = []
    try:
        assert type(app.extensions["precompute"].jobs).__name__ == "RedisJobQueue"
        admin = client_login(app.test_client(), "alice")
        p = create_project(admin, name="redis-workers")
        files = {f"{i}.png": image_bytes(40 + 8 * i, 30 + 4 * i, seed=100 + i) for i in range(4)}
        ids = [r["image_id"] for r in upload(admin, p["id"], files).get_json()["results"]]
        # nothing computes them in the web process: they wait in Redis
        assert app.extensions["precompute"].jobs.queue.count == len(ids)
        assert {admin.get(f"/api/images/{i}").get_json()["image"]["feature_status"] for i in ids} == {"pending"}

        workers = [start_worker(tmp_path, env, name=f"worker{k}") for k in range(2)]

        def statuses():
            return [admin.get(f"/api/images/{i}").get_json()["image"]["feature_status"] for i in ids]

        wait_for(lambda: set(statuses()) == {"done"}, 60, "the workers to compute every image")
        for iid, original in zip(ids, files.values()):
            resp = admin.get(f"/api/images/{iid}/pyramid")
            assert resp.status_code == 200
            check_pyramid(resp.data, original)
        assert app.extensions["precompute"].jobs.wait_idle(10)
        assert not list(blobs.rglob("*.tmp")), "a temporary file was left in the store"
        # both workers were up and each reported its start
        assert all(w.alive() and "database postgresql" in w.output() for w in workers)
    finally:
        for w in workers:
            w.kill()
        close_app(app)


def test_two_web_processes_share_live_events_through_redis(pg_url, redis_names, tmp_path):
    bucket = unique("blobs").lower()
    with moto_s3(tmp_path) as s3:
        make_bucket(s3, bucket)
        env = {"DATABASE_URL": pg_url, "REDIS_URL": REDIS_URL, "PRECOMPUTE_WORKER": "redis",
               "BLOB_STORE_URL": f"s3://{bucket}/studio?endpoint_url={s3}", "INTERFORMER_SECRET_KEY": "shared-secret",
               **S3_ENV, **redis_names}
        (tmp_path / "model").mkdir()
        ports = [free_port(), free_port()]
        procs = []
        clients: list[socketio.Client] = []
        try:
            procs += [start_web(tmp_path, env, port, name=f"web{k}") for k, port in enumerate(ports)]
            procs.append(start_worker(tmp_path, env))
            bases = [f"http://127.0.0.1:{port}" for port in ports]
            admin = http_login(bases[0], "alice")
            pid = admin.post(f"{bases[0]}/api/projects", json={"name": "two-webs", "classes": ["cat"]}).json()["project"]["id"]

            events: list[list[tuple[str, dict]]] = [[], []]
            lock = threading.Lock()
            for k, base in enumerate(bases):
                sess = http_login(base, "alice")
                c = socketio.Client(reconnection=False)
                for name in ("image_status", "project_progress", "dashboard_changed"):
                    c.on(name, (lambda n, k: lambda data: (lock.acquire(), events[k].append((n, data)), lock.release()))(name, k))
                cookie = "; ".join(f"{ck.name}={ck.value}" for ck in sess.cookies)
                c.connect(base, headers={"Cookie": cookie}, transports=["websocket"], wait_timeout=10)
                assert c.call("join_project", {"project_id": pid}, timeout=10)["ok"]
                assert c.call("join_dashboard", {"project_id": pid}, timeout=10)["ok"]
                clients.append(c)

            files = {f"{i}.png": image_bytes(48, 36, seed=200 + i) for i in range(2)}
            resp = admin.post(f"{bases[0]}/api/projects/{pid}/images",
                              files=[("files", (n, io.BytesIO(b), "image/png")) for n, b in files.items()])
            assert resp.status_code == 201, resp.text
            ids = [r["image_id"] for r in resp.json()["results"]]

            def done_everywhere():
                with lock:
                    return all({(e["image_id"], e["status"]) for n, e in evs if n == "image_status"}
                               >= {(i, s) for i in ids for s in ("running", "done")} for evs in events)

            wait_for(done_everywhere, 60, "both web processes to deliver the worker's events")
            for evs in events:
                progress = [e for n, e in evs if n == "project_progress"]
                assert progress[-1] == {"project_id": pid, "total": 2, "pending": 0, "running": 0, "done": 2, "failed": 0}
            # an event sent by web process 0 (an object saved there) reaches the client of process 1
            bob = http_login(bases[0], "bob")
            rle = {"size": [36, 48], "counts": [36 * 10, 36 * 5, 36 * 33]}
            saved = bob.post(f"{bases[0]}/api/images/{ids[0]}/objects",
                             json={"class": "cat", "rle": rle, "clicks": [], "time_spent": 1.0, "client_id": "obj-two-webs-1"})
            assert saved.status_code == 201, saved.text
            wait_for(lambda: all(("dashboard_changed", {"project_id": pid}) in evs for evs in events), 20,
                     "the dashboard event on both processes")
            # the pyramid, stored in S3 by the worker, served by the other web process
            for iid, original in zip(ids, files.values()):
                r = admin.get(f"{bases[1]}/api/images/{iid}/pyramid")
                assert r.status_code == 200
                check_pyramid(r.content, original)
        finally:
            for c in clients:
                c.disconnect()
            for p in procs:
                p.kill()


def test_blob_store_by_url(tmp_path, monkeypatch):
    for k, v in S3_ENV.items():
        monkeypatch.setenv(k, v)
    assert isinstance(blob_store_from_url(None, tmp_path), LocalBlobStore)
    local = blob_store_from_url(f"file://{tmp_path / 'b'}", tmp_path)
    local.put("a/b.bin", b"x")
    assert (tmp_path / "b" / "a" / "b.bin").read_bytes() == b"x"
    for bad, msg in [("ftp://x/y", "use s3://"), ("s3:///prefix", "names no bucket"),
                     ("s3://b/p?colour=red", "unknown options")]:
        with pytest.raises(BlobStoreConfigError, match=msg):
            blob_store_from_url(bad, tmp_path)
    with moto_s3(tmp_path) as s3:
        with pytest.raises(BlobStoreConfigError, match="not usable"):
            blob_store_from_url(f"s3://missing-bucket?endpoint_url={s3}", tmp_path)
        make_bucket(s3, "studio")
        store = blob_store_from_url(f"s3://studio/some/prefix?endpoint_url={s3}&region=us-east-1", tmp_path)
        assert isinstance(store, S3BlobStore)
        assert not store.exists("images/1/a.png")
        with pytest.raises(KeyError):
            store.get("images/1/a.png")
        store.put("images/1/a.png", b"png bytes")
        assert store.exists("images/1/a.png") and store.get("images/1/a.png") == b"png bytes"
        names = [o["Key"] for o in store.client.list_objects_v2(Bucket="studio")["Contents"]]
        assert names == ["some/prefix/images/1/a.png"]
        assert store.local_path("images/1/a.png") is None
        with pytest.raises(ValueError):
            store.put("../escape", b"x")
        store.delete("images/1/a.png")
        store.delete("images/1/a.png")  # absent: no error
        assert not store.exists("images/1/a.png")


def test_bad_scale_out_config_is_a_clear_error_at_start(tmp_path):
    with pytest.raises(ValueError, match="Redis at redis://127.0.0.1:1/0 is not reachable"):
        create_app({"DATA_DIR": tmp_path, "SECRET_KEY": "k", "PRECOMPUTE_WORKER": "redis",
                    "REDIS_URL": "redis://127.0.0.1:1/0"})
    with pytest.raises(ValueError, match="PRECOMPUTE_WORKER is one of thread, redis, none, not 'celery'"):
        create_app({"DATA_DIR": tmp_path, "SECRET_KEY": "k", "PRECOMPUTE_WORKER": "celery"})
    with pytest.raises(ValueError, match="REDIS_URL is not set"):
        create_app({"DATA_DIR": tmp_path, "SECRET_KEY": "k", "PRECOMPUTE_WORKER": "redis", "REDIS_URL": None})

