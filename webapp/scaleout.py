"""Where the app's parts run: one process (the default) or several machines (docs/deploy.md).

The app factory asks this module for its blob store, its precompute job queue and its
Socket.IO message queue, from these config keys (each also read from the environment
variable of the same name):

``PRECOMPUTE_WORKER``
    ``thread`` (default): the precompute runs in a thread of the web process; ``redis``: jobs
    go to Redis (RQ queue ``PRECOMPUTE_QUEUE``) and ``interformer worker`` processes run them;
    ``none``: jobs are only recorded.
``REDIS_URL``
    e.g. ``redis://127.0.0.1:6379/0``; needed by ``PRECOMPUTE_WORKER=redis``, checked at start.
``PRECOMPUTE_QUEUE``
    the RQ queue's name (default ``interformer-precompute``); web processes and workers must agree.
``SOCKETIO_MESSAGE_QUEUE``
    the Socket.IO message queue shared by web processes and workers; default ``REDIS_URL`` when
    ``PRECOMPUTE_WORKER=redis`` (workers send progress through it), else none.
``SOCKETIO_CHANNEL``
    the channel on that queue (default ``flask-socketio``), to run several apps on one Redis.
``BLOB_STORE_URL``
    a folder or ``s3://bucket/prefix?endpoint_url=...`` (webapp/storage_s3.py); default
    ``DATA_DIR/blobs``.

The single-process default is the same code path: ``Precompute.run`` is what the thread and the
Redis worker call, ``BlobStore`` is what both stores implement, and events go through
Flask-SocketIO either way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .jobs_redis import DEFAULT_QUEUE
from .precompute import JobQueue, Notify, NullJobQueue, Precompute, ThreadJobQueue
from .storage import BlobStore

WORKERS = ("thread", "redis", "none")
DEFAULT_CHANNEL = "flask-socketio"


def env_defaults() -> dict[str, Any]:
    """The scale-out config keys' defaults, from the environment."""
    return {
        "PRECOMPUTE_WORKER": os.environ.get("PRECOMPUTE_WORKER") or "thread",
        "PRECOMPUTE_QUEUE": os.environ.get("PRECOMPUTE_QUEUE") or DEFAULT_QUEUE,
        "REDIS_URL": os.environ.get("REDIS_URL") or None,
        "BLOB_STORE_URL": os.environ.get("BLOB_STORE_URL") or None,
        "SOCKETIO_MESSAGE_QUEUE": os.environ.get("SOCKETIO_MESSAGE_QUEUE") or None,
        "SOCKETIO_CHANNEL": os.environ.get("SOCKETIO_CHANNEL") or DEFAULT_CHANNEL,
    }


def worker_mode(config: Mapping[str, Any]) -> str:
    mode = str(config.get("PRECOMPUTE_WORKER") or "thread")
    if mode not in WORKERS:
        raise ValueError(f"PRECOMPUTE_WORKER is one of {', '.join(WORKERS)}, not {mode!r}")
    return mode


def message_queue_url(config: Mapping[str, Any]) -> str | None:
    """The Socket.IO message queue of this deployment (checked when it is Redis)."""
    url = config.get("SOCKETIO_MESSAGE_QUEUE")
    if not url and worker_mode(config) == "redis":
        url = config.get("REDIS_URL")
    if url and str(url).startswith(("redis://", "rediss://")):
        from .jobs_redis import connect

        connect(str(url)).close()
    return str(url) if url else None


def make_blob_store(config: Mapping[str, Any]) -> BlobStore:
    if config.get("BLOB_STORE") is not None:
        return config["BLOB_STORE"]
    from .storage_s3 import blob_store_from_url

    return blob_store_from_url(config.get("BLOB_STORE_URL"), config["DATA_DIR"])


def make_job_queue(config: Mapping[str, Any], pre: Precompute) -> JobQueue:
    mode = worker_mode(config)
    if mode == "redis":
        from .jobs_redis import RedisJobQueue, connect

        return RedisJobQueue(connect(str(config.get("REDIS_URL") or "")), str(config["PRECOMPUTE_QUEUE"]))
    if mode == "thread" and pre.provider is not None:
        return ThreadJobQueue(pre.run)
    return NullJobQueue()


def start_jobs(pre: Precompute) -> None:
    """At app start: the thread worker starts and takes this process's unfinished work back;
    with Redis, pending images are queued (running ones belong to workers: their leases tell)."""
    if isinstance(pre.jobs, ThreadJobQueue):
        pre.jobs.start()
        pre.resume()
    elif type(pre.jobs).__name__ == "RedisJobQueue":
        pre.resume(reset_running=False)


def event_sender(message_queue: str, channel: str = DEFAULT_CHANNEL) -> Notify:
    """``notify(event, payload, project_id)`` for a process without the web app (a worker): the
    events go through the message queue to whichever web process holds the project's room."""
    from flask_socketio import SocketIO

    from .realtime import room

    sender = SocketIO(message_queue=message_queue, channel=channel)

    def notify(event: str, payload: dict, project_id: int) -> None:
        sender.emit(event, payload, to=room(project_id))

    return notify
