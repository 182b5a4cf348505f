"""The per-image precompute: each new image's quantized feature pyramid, computed in the
background and stored beside the image.

Three small parts:

* ``JobQueue`` -- how a job reaches a worker: ``enqueue(image_id)``. ``ThreadJobQueue`` (the
  default) runs the jobs one at a time in a daemon thread of the web process;
  ``NullJobQueue`` runs nothing (images stay ``pending``; used when no pyramid provider is
  configured); ``RedisJobQueue`` (webapp/jobs_redis.py, ``PRECOMPUTE_WORKER=redis``) hands the
  jobs to ``interformer worker`` processes on other machines, which call the same ``run``.
* ``Precompute.run(image_id)`` -- one job: claim the image (``pending -> running`` in one
  UPDATE, so two workers never run the same image), decode it (EXIF orientation applied), call
  the app's ``PYRAMID_PROVIDER``, check the file (``read_header``, image size), store it under
  ``pyramids/<provider cache key>/<sha256 of the image>.ifpyr`` and mark the image ``done``;
  any error marks it ``failed`` with the message. A pyramid already stored for the same bytes
  and model is reused without computing.
* progress events, through ``notify(event, payload, project_id)`` (Socket.IO in the app,
  webapp/realtime.py): ``image_status`` after every change of an image's state and
  ``project_progress`` with the project's counts.

At start (``resume``) images left ``running`` by a stopped process go back to ``pending`` (only
in the single-process setup: with Redis workers, a ``running`` image belongs to a worker, and
a dead worker's images are found by their lapsed lease, webapp/jobs_redis.py),
``done`` images whose pyramid came from another model are recomputed, and every pending image
is queued.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import func, select, update

from .db import Database
from .image_files import decode_rgb
from .models import FeatureStatus, Image, utcnow
from .storage import BlobStore

log = logging.getLogger(__name__)

PyramidProvider = Callable[..., bytes]
Notify = Callable[[str, dict, int], None]
CACHE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
IMAGE_STATUS = "image_status"
PROJECT_PROGRESS = "project_progress"


class JobQueue(Protocol):
    def enqueue(self, image_id: int) -> None: ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...


class NullJobQueue:
    """Runs nothing: queued images stay pending (no provider here, or workers elsewhere)."""

    running = False

    def enqueue(self, image_id: int) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self, timeout: float = 5.0) -> None:
        pass

    def wait_idle(self, timeout: float = 10.0) -> bool:
        return True


class ThreadJobQueue:
    """Jobs run one at a time, in order, in a daemon thread of this process."""

    running = True

    def __init__(self, run_job: Callable[[int], None], name: str = "precompute"):
        self._run_job = run_job
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def enqueue(self, image_id: int) -> None:
        self._queue.put(int(image_id))

    def _loop(self) -> None:
        while True:
            image_id = self._queue.get()
            try:
                if image_id is None:
                    return
                self._run_job(image_id)
            except Exception:  # run_job records failures itself; this is a bug guard
                log.exception("precompute job for image %s crashed", image_id)
            finally:
                self._queue.task_done()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every queued job has finished; False on timeout."""
        cond = self._queue.all_tasks_done
        with cond:
            return cond.wait_for(lambda: self._queue.unfinished_tasks == 0, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)


def provider_cache_key(provider: PyramidProvider | None) -> str:
    key = str(getattr(provider, "cache_key", None) or "default")
    if not CACHE_KEY.fullmatch(key):
        raise ValueError(f"bad pyramid cache key {key!r} (letters, digits, '._-')")
    return key


def provider_model_id(provider: PyramidProvider | None) -> str:
    return str(getattr(provider, "model_id", None) or getattr(provider, "cache_key", None) or "none")


def image_status_payload(image: Image) -> dict:
    return {
        "project_id": image.project_id,
        "image_id": image.id,
        "status": image.feature_status,
        "error": image.feature_error,
    }


class Precompute:
    """The precompute of one app: its database, blob store, provider and event sink."""

    def __init__(self, db: Database, store: BlobStore, provider: PyramidProvider | None, notify: Notify):
        self.db = db
        self.store = store
        self.provider = provider
        self.cache_key = provider_cache_key(provider)
        self.notify = notify
        self.jobs: JobQueue = NullJobQueue()

    # -- progress -------------------------------------------------------------------------
    def progress(self, session, project_id: int) -> dict:
        rows = session.execute(
            select(Image.feature_status, func.count()).where(Image.project_id == project_id).group_by(Image.feature_status)
        ).all()
        counts = {s.value: 0 for s in FeatureStatus}
        counts.update({status: n for status, n in rows})
        return {"project_id": project_id, "total": sum(counts.values()), **counts}

    def announce(self, session, image: Image) -> None:
        try:
            self.notify(IMAGE_STATUS, image_status_payload(image), image.project_id)
            self.notify(PROJECT_PROGRESS, self.progress(session, image.project_id), image.project_id)
        except Exception:  # events are best effort; the database is the truth
            log.exception("sending precompute events failed")

    # -- jobs -----------------------------------------------------------------------------
    def pyramid_key(self, image: Image) -> str:
        return f"pyramids/{self.cache_key}/{image.checksum}.ifpyr"

    def _compute(self, image: Image) -> str:
        from model_export.pyramid_format import PyramidFormatError, read_header

        key = self.pyramid_key(image)
        if self.store.exists(key):
            return key
        if self.provider is None:
            raise RuntimeError("no pyramid provider is configured on this server (interformer serve --model-dir)")
        rgb = decode_rgb(self.store.get(image.storage_key))
        data = self.provider(rgb)
        try:
            header = read_header(data)
        except PyramidFormatError as e:
            raise RuntimeError(f"the pyramid provider produced an invalid file: {e}") from None
        got = (header["image"]["h"], header["image"]["w"])
        if got != (image.height, image.width):
            raise RuntimeError(f"the pyramid provider produced a pyramid for a {got[0]}x{got[1]} image, "
                               f"the image is {image.height}x{image.width}")
        self.store.put(key, data)
        return key

    def run(self, image_id: int) -> None:
        """One job (see the module docstring). Never raises for a failing image."""
        with self.db.session() as s:
            claimed = s.execute(
                update(Image)
                .where(Image.id == image_id, Image.feature_status == FeatureStatus.PENDING.value)
                .values(feature_status=FeatureStatus.RUNNING.value, feature_error=None, feature_updated_at=utcnow())
            ).rowcount
            s.commit()
            if not claimed:
                return  # gone, or already claimed / finished
            image = s.get(Image, image_id)
            if image is None:
                return
            self.announce(s, image)
            s.commit()  # no transaction stays open while the provider computes
            try:
                key = self._compute(image)
            except Exception as e:  # noqa: BLE001 -- any failure is the image's status
                log.warning("precompute of image %s failed: %s: %s", image_id, type(e).__name__, e)
                image.feature_status = FeatureStatus.FAILED.value
                image.feature_error = f"{type(e).__name__}: {e}"[:2000]
            else:
                image.feature_status = FeatureStatus.DONE.value
                image.feature_error = None
                image.pyramid_key = key
                image.pyramid_model = self.cache_key
            image.feature_updated_at = utcnow()
            s.commit()
            self.announce(s, image)

    def enqueue(self, image: Image) -> None:
        self.jobs.enqueue(image.id)

    def retry(self, session, image: Image) -> bool:
        """A failed image back to pending and queued; False if it is not failed."""
        if image.feature_status != FeatureStatus.FAILED.value:
            return False
        image.feature_status = FeatureStatus.PENDING.value
        image.feature_error = None
        image.feature_updated_at = utcnow()
        session.commit()
        self.announce(session, image)
        self.jobs.enqueue(image.id)
        return True

    def resume(self, reset_running: bool = True) -> int:
        """At start: re-queue unfinished work and pyramids of another model; returns the count queued.
        ``reset_running``: images left ``running`` are this process's own (single process)."""
        with self.db.session() as s:
            if reset_running:
                s.execute(update(Image).where(Image.feature_status == FeatureStatus.RUNNING.value)
                          .values(feature_status=FeatureStatus.PENDING.value))
            if self.provider is not None:
                s.execute(update(Image)
                          .where(Image.feature_status == FeatureStatus.DONE.value,
                                 Image.pyramid_model != self.cache_key)
                          .values(feature_status=FeatureStatus.PENDING.value))
            s.commit()
            pending = s.scalars(select(Image.id).where(Image.feature_status == FeatureStatus.PENDING.value)
                                .order_by(Image.id)).all()
        for image_id in pending:
            self.jobs.enqueue(image_id)
        return len(pending)
