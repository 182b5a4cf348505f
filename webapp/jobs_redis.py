"""Precompute jobs through Redis (RQ), for workers on other machines (``PRECOMPUTE_WORKER=redis``).

Why RQ and not Celery: there is one job type (``image_id`` -> pyramid), the broker is the Redis
we run anyway for Socket.IO, and an RQ worker is one plain process (``interformer worker``)
with no beat scheduler, result backend or broker settings to keep in step. Celery's routing,
chords and rate limits would be unused weight here.

The parts:

* ``RedisJobQueue`` -- the ``JobQueue`` of webapp/precompute.py on an RQ queue: ``enqueue``
  puts ``run_precompute_job(image_id)`` on the queue ``PRECOMPUTE_QUEUE``. A job is only a
  pointer: the worker claims the image in the database (``Precompute.run``, ``pending ->
  running`` in one UPDATE), so a job queued twice runs once.
* ``run_precompute_job`` -- what a worker executes: ``Precompute.run`` of the worker's own
  ``Precompute`` (``bind_worker``), the same code the in-process thread worker runs, inside a
  lease (below).
* ``Leases`` -- how a killed worker's job comes back. While a worker computes an image it
  renews the image's ``feature_updated_at`` every ``lease_s / 3`` seconds (a daemon thread).
  Every worker also sweeps, at start and then every ``lease_s / 3`` seconds: an image still
  ``running`` whose lease is older than ``lease_s`` belonged to a worker that died (SIGKILL,
  machine lost, out of memory): it goes back to ``pending`` and is queued again. After
  ``max_attempts`` such losses the image is marked ``failed`` with the reason, so one image
  that kills workers cannot take them all down in turn. (RQ's own abandoned-job handling
  waits for the job timeout plus two minutes; this is faster and keyed on the database, which
  is the truth of an image's state.)

Pyramids reach the blob store in one atomic write (``BlobStore.put``), and ``done`` is set only
after it, so a worker killed at any point never leaves a truncated pyramid to be served.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from .models import FeatureStatus, Image, utcnow

if TYPE_CHECKING:
    from redis import Redis

    from .db import Database
    from .precompute import Precompute

log = logging.getLogger(__name__)

DEFAULT_QUEUE = "interformer-precompute"
DEFAULT_LEASE_S = 60.0
DEFAULT_MAX_ATTEMPTS = 3
JOB_TIMEOUT_S = 3600  # one image; RQ stops a job that runs longer (the image is marked failed)
JOB_FUNC = "webapp.jobs_redis.run_precompute_job"


class RedisUnavailableError(ValueError):
    """``REDIS_URL`` does not answer (raised at start, with the URL in the message)."""


def connect(url: str) -> Redis:
    """A Redis client for ``url``, checked with a PING (``RedisUnavailableError`` if it fails)."""
    from redis import Redis
    from redis.exceptions import RedisError

    if not url:
        raise RedisUnavailableError("REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0)")
    try:
        client = Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
        client.ping()
    except (RedisError, ValueError, OSError) as e:
        raise RedisUnavailableError(f"Redis at {redact(url)} is not reachable: {e}") from None
    return client


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class RedisJobQueue:
    """``JobQueue`` on an RQ queue; the jobs run in ``interformer worker`` processes."""

    running = True

    def __init__(self, redis: Redis, queue_name: str = DEFAULT_QUEUE, job_timeout: int = JOB_TIMEOUT_S):
        from rq import Queue

        self.redis = redis
        self.queue_name = queue_name
        self.queue = Queue(queue_name, connection=redis)
        self.job_timeout = job_timeout

    def enqueue(self, image_id: int) -> None:
        """Queue one image. If Redis is down the image stays ``pending`` and the error is logged:
        the next ``resume`` (every worker start) queues it again."""
        from redis.exceptions import RedisError

        try:
            self.queue.enqueue(JOB_FUNC, int(image_id), job_timeout=self.job_timeout, result_ttl=600,
                               failure_ttl=7 * 86400, description=f"precompute image {int(image_id)}")
        except RedisError:
            log.exception("could not queue the precompute of image %s (it stays pending)", image_id)

    def start(self) -> None:
        pass

    def stop(self, timeout: float = 5.0) -> None:
        pass

    def pending_jobs(self) -> int:
        """Jobs waiting or running (for tests and the operator)."""
        from rq.registry import StartedJobRegistry

        return self.queue.count + StartedJobRegistry(queue=self.queue).count

    def wait_idle(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.pending_jobs():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


class Leases:
    """The leases of one worker process on the images it computes, and the sweep that re-queues
    the images of dead workers (see the module docstring)."""

    def __init__(self, db: Database, jobs: RedisJobQueue, lease_s: float = DEFAULT_LEASE_S,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS):
        if lease_s <= 0:
            raise ValueError("the lease must be positive")
        self.db = db
        self.jobs = jobs
        self.lease_s = float(lease_s)
        self.max_attempts = int(max_attempts)
        self._held: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _attempts_key(self, image_id: int) -> str:
        return f"interformer:{self.jobs.queue_name}:lost:{image_id}"

    def forget(self, image_id: int) -> None:
        """A job ran to its end: earlier lost workers no longer count against the image."""
        self.jobs.redis.delete(self._attempts_key(image_id))

    @contextmanager
    def hold(self, image_id: int) -> Iterator[None]:
        with self._lock:
            self._held.add(image_id)
        try:
            yield
        finally:
            with self._lock:
                self._held.discard(image_id)

    def renew(self) -> None:
        with self._lock:
            held = sorted(self._held)
        if not held:
            return
        with self.db.session() as s:
            s.execute(update(Image).where(Image.id.in_(held), Image.feature_status == FeatureStatus.RUNNING.value)
                      .values(feature_updated_at=utcnow()))
            s.commit()

    def sweep(self) -> list[int]:
        """Images whose worker died: back to pending and queued (or failed after too many losses)."""
        cutoff = utcnow() - timedelta(seconds=self.lease_s)
        requeued: list[int] = []
        with self.db.session() as s:
            stale = s.scalars(select(Image.id).where(Image.feature_status == FeatureStatus.RUNNING.value,
                                                     Image.feature_updated_at < cutoff)).all()
            for image_id in stale:
                if self.jobs.redis.incr(self._attempts_key(image_id)) > self.max_attempts:
                    values = {"feature_status": FeatureStatus.FAILED.value,
                              "feature_error": f"the worker computing this image stopped {self.max_attempts} "
                                               "times (killed, out of memory or lost); retry it when fixed"}
                else:
                    values = {"feature_status": FeatureStatus.PENDING.value, "feature_error": None}
                # conditional: a worker that renewed its lease meanwhile keeps the image
                taken = s.execute(update(Image).where(Image.id == image_id,
                                                      Image.feature_status == FeatureStatus.RUNNING.value,
                                                      Image.feature_updated_at < cutoff)
                                  .values(feature_updated_at=utcnow(), **values)).rowcount
                s.commit()
                if taken and values["feature_status"] == FeatureStatus.PENDING.value:
                    log.warning("image %s: its worker stopped in the middle of the job; queued again", image_id)
                    requeued.append(image_id)
                elif taken:
                    log.error("image %s: marked failed after %s lost workers", image_id, self.max_attempts)
        for image_id in requeued:
            self.jobs.enqueue(image_id)
        return requeued

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="precompute-leases", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                self.renew()
                self.sweep()
            except Exception:  # the database or Redis briefly away: try again next round
                log.exception("precompute lease upkeep failed")


# -- the worker side -------------------------------------------------------------------------

_bound: tuple[Precompute, Leases] | None = None


def bind_worker(pre: Precompute, leases: Leases) -> None:
    """Make this process a worker: ``run_precompute_job`` uses ``pre`` and ``leases``."""
    global _bound
    _bound = (pre, leases)


def run_precompute_job(image_id: int) -> None:
    """The RQ job: ``Precompute.run(image_id)`` under this worker's lease."""
    if _bound is None:
        raise RuntimeError("this process is not an interformer worker (run `interformer worker`)")
    pre, leases = _bound
    with leases.hold(int(image_id)):
        pre.run(int(image_id))
    leases.forget(int(image_id))
