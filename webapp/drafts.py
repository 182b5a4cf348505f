"""Autosave on the server: a user's work in progress on an image (the current object's
clicks with their times, its class and the time spent on it), kept per (user, image).

The browser keeps the same draft in IndexedDB (static/js/autosave.js) and sends it here when it
can. ``rev`` is the client's counter (milliseconds, only growing): a save whose ``rev`` is not
newer than the stored one changes nothing, so retries and replays after going offline can
arrive in any order and the newest draft stays.
"""

from __future__ import annotations

import json
import math

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .annotations import PayloadError, _clicks, label_class_of
from .models import Draft, Image, iso, utcnow

MAX_DRAFT_BYTES = 256 * 1024


def parse_draft(data: object, image: Image) -> tuple[int, dict]:
    if not isinstance(data, dict):
        raise PayloadError('expected a JSON body {"rev": <int>, "clicks": [...], "class_id", "elapsed_ms"}')
    rev = data.get("rev")
    if isinstance(rev, bool) or not isinstance(rev, int) or not 0 <= rev < 2**62:
        raise PayloadError('"rev" must be a non-negative integer (grows with every save)')
    clicks = _clicks(data.get("clicks", []), image)
    class_id = data.get("class_id")
    if class_id is not None and (isinstance(class_id, bool) or not isinstance(class_id, int)):
        raise PayloadError('"class_id" must be a label class id or null')
    elapsed = data.get("elapsed_ms", 0)
    if isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)) or not math.isfinite(elapsed) or elapsed < 0:
        raise PayloadError('"elapsed_ms" must be a number of milliseconds >= 0')
    body = {"clicks": clicks, "class_id": class_id, "elapsed_ms": float(elapsed)}
    if len(json.dumps(body)) > MAX_DRAFT_BYTES:
        raise PayloadError(f"a draft is at most {MAX_DRAFT_BYTES} bytes")
    return rev, body


def get_draft(session: Session, user_id: int, image_id: int) -> Draft | None:
    return session.scalar(select(Draft).where(Draft.user_id == user_id, Draft.image_id == image_id))


def save_draft(session: Session, user_id: int, image: Image, rev: int, body: dict) -> tuple[Draft, bool]:
    """Store the draft unless a newer one is there; (the stored draft, whether it changed).

    The update is conditional in the database (``rev < new rev``), so of two saves racing each
    other the newer one wins whichever commits last."""
    if body["class_id"] is not None:
        label_class_of({"class_id": body["class_id"]}, image.project)  # one of the image's project's classes
    for _ in range(3):
        d = get_draft(session, user_id, image.id)
        if d is not None:
            if rev <= d.rev:
                return d, False
            done = session.execute(
                update(Draft).where(Draft.id == d.id, Draft.rev < rev)
                .values(rev=rev, data=body, updated_at=utcnow()).execution_options(synchronize_session=False)
            ).rowcount
            session.commit()
            session.refresh(d)
            return d, bool(done)
        d = Draft(user_id=user_id, image_id=image.id, rev=rev, data=body, updated_at=utcnow())
        session.add(d)
        try:
            session.commit()
            return d, True
        except IntegrityError:  # a concurrent first save: look again
            session.rollback()
    raise PayloadError("the draft could not be saved; try again")


def draft_json(d: Draft | None) -> dict | None:
    if d is None:
        return None
    return {"rev": d.rev, **d.data, "updated_at": iso(d.updated_at)}
