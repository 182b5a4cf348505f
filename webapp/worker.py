"""``interformer worker``: a precompute worker that takes jobs from Redis (docs/deploy.md).

    REDIS_URL=redis://redis:6379/0 DATABASE_URL=postgresql://... BLOB_STORE_URL=s3://bucket/blobs \\
        interformer worker --model-dir var/models/default [--queue interformer-precompute] [--burst]

It runs the same ``Precompute.run`` as the web process's thread worker (claim the image,
compute its pyramid with onnxruntime -- the CUDA execution provider when onnxruntime has it --,
store it atomically, mark it done), one image at a time, jobs from the RQ queue
``PRECOMPUTE_QUEUE``. Progress events go to the browsers through the Socket.IO message queue
(``SOCKETIO_MESSAGE_QUEUE``, default ``REDIS_URL``). A worker killed in the middle of an image
is noticed by the lease sweep of any worker (``--lease`` seconds, webapp/jobs_redis.py) and the
image is queued again.

Jobs run in the worker's own process (RQ's ``SimpleWorker``), not in a forked child per job:
the model is loaded once, and a CUDA context does not survive ``fork``. Run one worker per GPU
(or per few CPU cores) and as many as you like; SIGTERM finishes the current image first.

Configuration comes from the environment, as for the web app (webapp/scaleout.py):
``REDIS_URL``, ``DATABASE_URL``, ``BLOB_STORE_URL``, ``PRECOMPUTE_QUEUE``,
``SOCKETIO_MESSAGE_QUEUE``, ``SOCKETIO_CHANNEL``, ``INTERFORMER_MODEL_DIR``, ``INTERFORMER_DATA_DIR``.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def add_worker_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("worker", help="run precompute jobs taken from Redis (scale-out; docs/deploy.md)")
    p.add_argument("--model-dir", default=os.environ.get("INTERFORMER_MODEL_DIR", str(REPO / "var" / "models" / "default")),
                   help="exported model folder (default: %(default)s)")
    p.add_argument("--provider", default=None, metavar="MODULE:FACTORY",
                   help="pyramid provider factory instead of the exported model (webapp/providers.py)")
    p.add_argument("--scheme", default=None, help="pyramid quantization scheme (default: the service's)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads")
    p.add_argument("--data-dir", default=os.environ.get("INTERFORMER_DATA_DIR", str(REPO / "var")),
                   help="for the defaults of DATABASE_URL (SQLite) and BLOB_STORE_URL (DATA_DIR/blobs): %(default)s")
    p.add_argument("--redis-url", default=None, help="default: $REDIS_URL")
    p.add_argument("--queue", default=None, help="RQ queue name (default: $PRECOMPUTE_QUEUE or interformer-precompute)")
    p.add_argument("--lease", type=float, default=float(os.environ.get("PRECOMPUTE_LEASE_S", "60")),
                   help="seconds without a heartbeat after which a running image's worker counts as dead "
                        "(default: %(default)s)")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.set_defaults(func=run_worker)
    return p


def _describe(provider) -> str:
    pipeline = getattr(provider, "pipeline", None)
    eps = getattr(pipeline, "providers", None)
    key = getattr(provider, "cache_key", None) or type(provider).__name__
    return f"{key} on {', '.join(eps)}" if eps else str(key)


def run_worker(args) -> int:
    from .db import Database, database_url
    from .jobs_redis import Leases, RedisJobQueue, bind_worker, connect, redact
    from .precompute import Precompute
    from .providers import load_provider
    from .scaleout import env_defaults, event_sender, make_blob_store
    from .startup import EXIT_BAD_SETUP, start_or_report

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for quiet in ("alembic", "botocore", "rq.worker"):
        logging.getLogger(quiet).setLevel(logging.WARNING)
    cfg = {**env_defaults(), "DATA_DIR": Path(args.data_dir)}
    if args.redis_url:
        cfg["REDIS_URL"] = args.redis_url
    if args.queue:
        cfg["PRECOMPUTE_QUEUE"] = args.queue

    def start():
        redis = connect(cfg["REDIS_URL"] or "")
        store = make_blob_store(cfg)
        provider = load_provider(args.model_dir, args.provider, args.scheme, args.threads)
        db = Database(database_url(cfg))
        db.upgrade()
        return redis, store, provider, db

    started = start_or_report(start)
    if started is None:
        return EXIT_BAD_SETUP
    redis, store, provider, db = started

    from rq import SimpleWorker

    notify = event_sender(cfg["SOCKETIO_MESSAGE_QUEUE"] or cfg["REDIS_URL"], cfg["SOCKETIO_CHANNEL"])
    pre = Precompute(db, store, provider, notify)
    jobs = RedisJobQueue(redis, cfg["PRECOMPUTE_QUEUE"])
    pre.jobs = jobs
    leases = Leases(db, jobs, lease_s=args.lease)
    bind_worker(pre, leases)
    lost = leases.sweep()  # images of workers that died while none was watching
    queued = pre.resume(reset_running=False)
    leases.start()
    print(f"interformer worker: queue {jobs.queue_name} on {redact(cfg['REDIS_URL'])}, model {_describe(provider)}, "
          f"database {db.backend}; {queued} pending image(s) queued, {len(lost)} lost job(s) requeued", flush=True)
    worker = SimpleWorker([jobs.queue], connection=redis)
    try:
        worker.work(burst=args.burst, with_scheduler=False, logging_level="WARNING")
    finally:
        leases.stop()
        db.dispose()
    return 0
