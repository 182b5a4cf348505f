"""The work queue: images handed out to annotators with a lock, a timeout and an overlap.

Each image has ``Project.overlap`` slots (gold images: one per annotator). Taking a slot is an
INSERT into ``assignments``, whose unique constraints ``(image_id, slot)`` and
``(image_id, user_id)`` make a race safe on SQLite and PostgreSQL alike: of two annotators
asking at the same moment, one INSERT wins and the other fails, rolls back and tries the next
slot or image. A slot's lock lasts ``Project.lock_timeout_s`` from the last sign of life
(claim, heartbeat, autosave, saved object); an active slot whose lock ran out and that was
never submitted goes back to the queue: the next annotator takes it over with a conditional
UPDATE (``WHERE locked_until < now``), which again only one can win. Rejected work stays
with its annotator and comes first in their queue.

Admins work outside the queue (no assignment): what they save has no assignment (on a gold
image, that is the reference).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import case, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import (
    AnnotationStatus,
    Assignment,
    AssignmentStatus,
    Draft,
    FeatureStatus,
    Image,
    Project,
    User,
    utcnow,
)

# Tests only: called between reading an image's slots and taking one, so that a test can make
# two annotators read the same free slot before either takes it (a real race, every time).
RACE_HOOK = None
GOLD_CAPACITY = 1_000_000  # gold images: every annotator once
MAX_RACE_RETRIES = 8
ACTIVE = AssignmentStatus.ACTIVE.value
DONE_STATUSES = (AssignmentStatus.SUBMITTED.value, AssignmentStatus.ACCEPTED.value)


class QueueError(Exception):
    """The queue cannot do what was asked; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


def aware(dt: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they are UTC."""
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt


def lock_deadline(project: Project, now: datetime | None = None) -> datetime:
    return (now or utcnow()) + timedelta(seconds=project.lock_timeout_s)


def is_expired(a: Assignment, now: datetime | None = None) -> bool:
    return a.status == ACTIVE and aware(a.locked_until) < (now or utcnow())


def capacity(project: Project, image: Image) -> int:
    return GOLD_CAPACITY if image.is_gold else max(1, project.overlap)


def user_assignment(session: Session, user_id: int, image_id: int) -> Assignment | None:
    return session.scalar(select(Assignment).where(Assignment.image_id == image_id, Assignment.user_id == user_id))


def _renew(session: Session, project: Project, a: Assignment) -> Assignment:
    if a.status == AssignmentStatus.REJECTED.value:
        a.status = ACTIVE  # back to work, the comment stays on the assignment
        a.started_at = utcnow()
    a.locked_until = lock_deadline(project)
    session.commit()
    return a


def _try_take(session: Session, project: Project, image: Image, user: User) -> Assignment | None | bool:
    """Take a free or expired slot of ``image``: the assignment, None if there is none, or
    False if a concurrent claim won the race (look again)."""
    now = utcnow()
    rows = session.scalars(select(Assignment).where(Assignment.image_id == image.id)).all()
    used = {r.slot for r in rows}
    cap = capacity(project, image)
    free = next((i for i in range(min(cap, len(rows) + 1)) if i not in used), None)
    if RACE_HOOK is not None:
        RACE_HOOK()
    if free is not None:
        a = Assignment(project_id=project.id, image_id=image.id, slot=free, user_id=user.id, status=ACTIVE,
                       is_gold=image.is_gold, locked_until=lock_deadline(project, now), started_at=now)
        session.add(a)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            return False
        return a
    for r in rows:
        if r.user_id == user.id or r.submitted_at is not None or not is_expired(r, now):
            continue
        try:
            res = session.execute(
                update(Assignment)
                .where(Assignment.id == r.id, Assignment.user_id == r.user_id, Assignment.status == ACTIVE,
                       Assignment.submitted_at.is_(None), Assignment.locked_until < now)
                .values(user_id=user.id, locked_until=lock_deadline(project, now), started_at=now,
                        review_comment=None)
                .execution_options(synchronize_session=False)
            )
            won = res.rowcount == 1
            session.commit()
        except IntegrityError:
            session.rollback()
            return False
        if won:
            session.expire_all()
            return session.get(Assignment, r.id)
        return False
    return None


def claim_image(session: Session, project: Project, image: Image, user: User) -> Assignment:
    """The user's assignment on ``image``, its lock renewed: the one they hold, else a free
    slot or an expired one taken over. ``QueueError`` when the image is someone else's work
    or the user already submitted it."""
    if image.project_id != project.id:
        raise QueueError(f"image {image.id} is not in project {project.id}", 404)
    for _ in range(MAX_RACE_RETRIES):
        own = user_assignment(session, user.id, image.id)
        if own is not None:
            if own.status in DONE_STATUSES:
                raise QueueError(f"you submitted image {image.id} already (status {own.status})")
            return _renew(session, project, own)
        if image.feature_status == FeatureStatus.FAILED.value:
            raise QueueError(f"image {image.id} cannot be annotated: its features failed")
        got = _try_take(session, project, image, user)
        if got is None:
            cap = capacity(project, image)
            raise QueueError(f"image {image.id} is being annotated by others ({cap} of {cap} annotators); "
                             "take the next image from the queue")
        if got is not False:
            return got
    raise QueueError("the queue is busy; try again", 503)


def _candidates(project: Project, user: User, now: datetime, gold: bool):
    taken = select(func.count()).where(Assignment.image_id == Image.id).scalar_subquery()
    expired = exists().where(Assignment.image_id == Image.id, Assignment.status == ACTIVE,
                             Assignment.submitted_at.is_(None), Assignment.locked_until < now)
    mine = exists().where(Assignment.image_id == Image.id, Assignment.user_id == user.id)
    q = select(Image).where(Image.project_id == project.id, Image.is_gold.is_(gold),
                            Image.feature_status != FeatureStatus.FAILED.value, ~mine)
    if not gold:
        q = q.where(Image.annotation_status == AnnotationStatus.OPEN.value,
                    or_(taken < max(1, project.overlap), expired))
    return q


def _order(q, after: int | None = None):
    not_ready = case((Image.feature_status == FeatureStatus.DONE.value, 0), else_=1)
    keys = [not_ready]
    if after is not None:
        keys.append(case((Image.id > after, 0), else_=1))
    return q.order_by(*keys, Image.id)


def _own_open(session: Session, project: Project, user: User, exclude: int | None = None) -> Assignment | None:
    """The user's unfinished work in the project: an active slot (resumed), else rejected work."""
    q = select(Assignment).where(Assignment.project_id == project.id, Assignment.user_id == user.id,
                                 Assignment.status.in_([ACTIVE, AssignmentStatus.REJECTED.value]))
    if exclude is not None:
        q = q.where(Assignment.image_id != exclude)
    order = case((Assignment.status == ACTIVE, 0), else_=1)
    return session.scalar(q.order_by(order, Assignment.id).limit(1))


def gold_due(session: Session, project: Project, user: User) -> bool:
    if project.gold_every <= 0:
        return False
    counts = dict(session.execute(
        select(Assignment.is_gold, func.count()).where(Assignment.project_id == project.id,
                                                       Assignment.user_id == user.id)
        .group_by(Assignment.is_gold)).all())
    regular, gold = counts.get(False, 0), counts.get(True, 0)
    return regular >= (gold + 1) * project.gold_every


def next_assignment(session: Session, project: Project, user: User) -> Assignment | None:
    """Hand out work: the user's own unfinished slot, else a gold image when one is due, else
    the first image (features ready first, then by id) with a free or expired slot. None when
    there is nothing left for this user."""
    own = _own_open(session, project, user)
    if own is not None:
        return _renew(session, project, own)
    pools = [True, False] if gold_due(session, project, user) else [False]
    for gold in pools:
        for _ in range(MAX_RACE_RETRIES):
            now = utcnow()
            batch = session.scalars(_order(_candidates(project, user, now, gold)).limit(20)).all()
            if not batch:
                break
            lost_race = False
            for image in batch:
                got = _try_take(session, project, image, user)
                if got is False:
                    got = _try_take(session, project, image, user)  # another slot may be free
                if got is False:
                    lost_race = True
                    continue
                if got is not None:
                    return got
            if not lost_race:
                break
    return None


def peek_next(session: Session, project: Project, user: User, after: int | None = None) -> Image | None:
    """The image the queue would give this user next, without taking it (read only): their
    own unfinished image, else the first free one after ``after`` (wrapping; never ``after``)."""
    own = _own_open(session, project, user, exclude=after)
    if own is not None:
        return own.image
    q = _candidates(project, user, utcnow(), gold=False)
    if after is not None:
        q = q.where(Image.id != after)
    return session.scalar(_order(q, after).limit(1))


def heartbeat(session: Session, project: Project, a: Assignment, user: User) -> Assignment:
    if a.user_id != user.id:
        raise QueueError("this image was handed to another annotator after your lock ran out", 409)
    if a.status != ACTIVE:
        raise QueueError(f"the assignment is {a.status}, not active")
    return _renew(session, project, a)


def release(session: Session, a: Assignment, user: User) -> Assignment:
    """Give an active slot back to the queue now (what was saved stays, with its author)."""
    if a.user_id != user.id or a.status != ACTIVE:
        raise QueueError("only your own active assignment can be released")
    a.locked_until = utcnow() - timedelta(seconds=1)
    session.commit()
    return a


def submit(session: Session, project: Project, image: Image, user: User) -> Assignment:
    """The user's slot on ``image`` is done (idempotent); the image is submitted when all its
    slots are. The user's draft of the image is cleared."""
    own = user_assignment(session, user.id, image.id)
    if own is not None and own.status in DONE_STATUSES:
        return own
    a = claim_image(session, project, image, user)
    a.status = AssignmentStatus.SUBMITTED.value
    a.submitted_at = utcnow()
    draft = session.scalar(select(Draft).where(Draft.user_id == user.id, Draft.image_id == image.id))
    if draft is not None:
        session.delete(draft)
    session.flush()
    update_image_status(session, project, image, user)
    session.commit()
    return a


def update_image_status(session: Session, project: Project, image: Image, user: User | None = None) -> None:
    """Submitted when every slot is submitted or accepted (gold images stay open)."""
    if image.is_gold:
        return
    # Lock the image row before counting: when the last two slots are submitted at the same
    # moment, the second count then sees the first (PostgreSQL, READ COMMITTED); else both
    # would count only their own and the finished image would stay open. (SQLite serialises
    # writing transactions anyway and ignores FOR UPDATE.)
    session.execute(select(Image.id).where(Image.id == image.id).with_for_update())
    done = session.scalar(select(func.count()).where(Assignment.image_id == image.id,
                                                      Assignment.status.in_(DONE_STATUSES))) or 0
    if done >= max(1, project.overlap):
        if image.annotation_status != AnnotationStatus.SUBMITTED.value:
            image.annotation_status = AnnotationStatus.SUBMITTED.value
            image.submitted_by_id = user.id if user is not None else image.submitted_by_id
            image.submitted_at = utcnow()
    else:
        image.annotation_status = AnnotationStatus.OPEN.value


def recompute_statuses(session: Session, project: Project) -> None:
    """After the overlap changed: every image's status from its slots (raising the overlap
    reopens submitted images for more annotators; lowering it closes images with enough)."""
    for image in session.scalars(select(Image).where(Image.project_id == project.id, Image.is_gold.is_(False))).all():
        done = session.scalar(select(func.count()).where(Assignment.image_id == image.id,
                                                          Assignment.status.in_(DONE_STATUSES))) or 0
        if done == 0:
            continue  # never done in the queue (e.g. submitted by an admin): left as it is
        update_image_status(session, project, image)


def assignment_json(a: Assignment) -> dict:
    from .models import iso

    return {
        "id": a.id,
        "project_id": a.project_id,
        "image_id": a.image_id,
        "slot": a.slot,
        "user_id": a.user_id,
        "username": a.user.username if a.user is not None else None,
        "status": a.status,
        "locked_until": iso(a.locked_until),
        "started_at": iso(a.started_at),
        "submitted_at": iso(a.submitted_at),
        "reviewed_at": iso(a.reviewed_at),
        "review_comment": a.review_comment,
    }


__all__ = ["QueueError", "claim_image", "next_assignment", "peek_next", "submit", "heartbeat", "release",
           "assignment_json", "user_assignment", "update_image_status"]
