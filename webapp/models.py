"""The stored data, as typed SQLAlchemy 2.0 models.

    User ──< Project (created_by)
    Project ──< LabelClass           (the project's label classes, in order)
    Project ──< Image                (a file in the blob store + its feature-pyramid status)
    Image ──< AnnotationObject       (one accepted object: class, COCO RLE, click log, time, author)
    Image ──< Assignment             (one annotator's slot on an image: lock, submit, review)
    Assignment ──< AnnotationObject  (the objects made in that slot)
    Assignment ──< Review            (every accept/reject decision, with its comment)
    User, Image ── Draft             (the autosaved work in progress of one user on one image)
    Invite                           (a sign-up link for annotators or reviewers)
    CompletionCode                   (one per finished batch of an annotator, for crowd platforms)

Enumerations are stored as short strings with CHECK constraints (portable between SQLite and
PostgreSQL, and easy to extend in a migration). The schema is created by the Alembic
migrations (webapp/migrations); a test checks that they match these models.

Deleting an object is a soft delete (``deleted_at``): nothing an annotator saved is lost.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import Base


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 in UTC (SQLite hands back naive datetimes; they are UTC)."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class Role(str, enum.Enum):
    ADMIN = "admin"
    REVIEWER = "reviewer"
    ANNOTATOR = "annotator"


class FeatureStatus(str, enum.Enum):
    """State of an image's feature pyramid (the server's precompute)."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class AnnotationStatus(str, enum.Enum):
    OPEN = "open"
    SUBMITTED = "submitted"


class AssignmentStatus(str, enum.Enum):
    """An annotator's slot on an image (webapp/queue.py, webapp/review.py).

    active -> submitted -> accepted | rejected; rejected -> active (the annotator reworks it).
    An active slot whose lock ran out (``locked_until`` past) and was never submitted can be
    taken over by another annotator."""

    ACTIVE = "active"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class ReviewDecision(str, enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"


def _check_in(column: str, values: type[enum.Enum], name: str) -> CheckConstraint:
    allowed = ", ".join(f"'{v.value}'" for v in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=name)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (_check_in("role", Role, "ck_users_role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.ANNOTATOR.value)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN.value

    def to_json(self) -> dict:
        return {"id": self.id, "username": self.username, "role": self.role}


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # The model whose pyramids and decoder this project uses (the provider's model id).
    model_id: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # Crowdsourcing settings (webapp/queue.py): annotators per image, lock timeout, one gold
    # image after every ``gold_every`` images (0: none), a completion code per ``batch_size``
    # submitted images (0: none).
    overlap: Mapped[int] = mapped_column(Integer, default=1)
    lock_timeout_s: Mapped[int] = mapped_column(Integer, default=1800)
    gold_every: Mapped[int] = mapped_column(Integer, default=0)
    batch_size: Mapped[int] = mapped_column(Integer, default=0)

    label_classes: Mapped[list[LabelClass]] = relationship(
        back_populates="project", order_by="LabelClass.position", cascade="all, delete-orphan"
    )
    images: Mapped[list[Image]] = relationship(back_populates="project", order_by="Image.id")


class LabelClass(Base):
    __tablename__ = "label_classes"
    __table_args__ = (
        UniqueConstraint("project_id", "name", name="uq_label_classes_project_name"),
        UniqueConstraint("project_id", "position", name="uq_label_classes_project_position"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    color: Mapped[str] = mapped_column(String(7))  # "#rrggbb"
    position: Mapped[int] = mapped_column(Integer)  # 0-based order; COCO category id is position + 1

    project: Mapped[Project] = relationship(back_populates="label_classes")

    @property
    def category_id(self) -> int:
        return self.position + 1

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "color": self.color, "category_id": self.category_id}


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("project_id", "checksum", name="uq_images_project_checksum"),
        _check_in("feature_status", FeatureStatus, "ck_images_feature_status"),
        _check_in("annotation_status", AnnotationStatus, "ck_images_annotation_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))  # as uploaded (zip members: their path)
    storage_key: Mapped[str] = mapped_column(String(512))  # in the blob store (webapp/storage.py)
    format: Mapped[str] = mapped_column(String(8))  # png | jpeg | webp (decoded, not the extension)
    width: Mapped[int] = mapped_column(Integer)  # after EXIF orientation, as browsers show it
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    checksum: Mapped[str] = mapped_column(String(64))  # sha256 of the file, hex
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    feature_status: Mapped[str] = mapped_column(String(16), default=FeatureStatus.PENDING.value, index=True)
    feature_error: Mapped[str | None] = mapped_column(Text)
    pyramid_key: Mapped[str | None] = mapped_column(String(512))
    pyramid_model: Mapped[str | None] = mapped_column(String(200))  # the provider's cache key
    feature_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    annotation_status: Mapped[str] = mapped_column(String(16), default=AnnotationStatus.OPEN.value)
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A gold image: its reference masks are the objects saved on it outside the queue (by an
    # admin, no assignment); it is mixed into every annotator's queue once (webapp/quality.py).
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)

    project: Mapped[Project] = relationship(back_populates="images")
    objects: Mapped[list[AnnotationObject]] = relationship(
        back_populates="image", order_by="AnnotationObject.id"
    )

    @property
    def mimetype(self) -> str:
        return {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}[self.format]


class AnnotationObject(Base):
    """One accepted object on an image.

    ``client_id`` is the id the browser gave the object when it was accepted: a save sent
    twice (a retry, an offline replay) finds the first and never makes a second object."""

    __tablename__ = "objects"
    __table_args__ = (UniqueConstraint("author_id", "client_id", name="uq_objects_author_client"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    label_class_id: Mapped[int] = mapped_column(ForeignKey("label_classes.id"))
    # The mask as COCO RLE: compressed counts string (pycocotools), size = the image's (h, w).
    rle_counts: Mapped[str] = mapped_column(Text)
    area: Mapped[int] = mapped_column(Integer)
    bbox: Mapped[list[float]] = mapped_column(JSON)  # COCO [x, y, w, h]
    # The click sequence: [{"x", "y" (image pixels), "positive" (bool), "t" (ms since start)}].
    clicks: Mapped[list[dict]] = mapped_column(JSON)
    time_spent: Mapped[float] = mapped_column(Float)  # seconds
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    assignment_id: Mapped[int | None] = mapped_column(ForeignKey("assignments.id", name="fk_objects_assignment_id"), index=True)
    client_id: Mapped[str | None] = mapped_column(String(64))

    image: Mapped[Image] = relationship(back_populates="objects")
    label_class: Mapped[LabelClass] = relationship()
    author: Mapped[User] = relationship(foreign_keys=[author_id])


class Assignment(Base):
    """One annotator's slot on an image. ``(image_id, slot)`` is unique, so two annotators
    racing for the same slot cannot both win (the loser's INSERT fails and it tries again);
    ``(image_id, user_id)`` is unique, so an annotator holds at most one slot of an image."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("image_id", "slot", name="uq_assignments_image_slot"),
        UniqueConstraint("image_id", "user_id", name="uq_assignments_image_user"),
        _check_in("status", AssignmentStatus, "ck_assignments_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    slot: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=AssignmentStatus.ACTIVE.value)
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    locked_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)  # by this holder
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    review_comment: Mapped[str | None] = mapped_column(Text)

    image: Mapped[Image] = relationship()
    user: Mapped[User] = relationship(foreign_keys=[user_id])


class Review(Base):
    """A reviewer's decision on a submitted assignment (all kept, newest last)."""

    __tablename__ = "reviews"
    __table_args__ = (_check_in("decision", ReviewDecision, "ck_reviews_decision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    decision: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Draft(Base):
    """The autosaved work in progress of a user on an image (the current object's clicks,
    class and time; webapp/drafts.py). ``rev`` only grows: an older save never overwrites a
    newer one."""

    __tablename__ = "drafts"
    __table_args__ = (UniqueConstraint("user_id", "image_id", name="uq_drafts_user_image"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    rev: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Invite(Base):
    """A sign-up link: ``/invite/<token>`` creates an account with ``role`` (webapp/invites.py)."""

    __tablename__ = "invites"
    __table_args__ = (_check_in("role", Role, "ck_invites_role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), default=Role.ANNOTATOR.value)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    max_uses: Mapped[int] = mapped_column(Integer, default=1)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CompletionCode(Base):
    """The code an annotator gets for each finished batch (``Project.batch_size`` submitted
    images), which a crowd platform checks at ``/api/completion-codes/<code>``."""

    __tablename__ = "completion_codes"
    __table_args__ = (UniqueConstraint("project_id", "user_id", "batch", name="uq_completion_codes_batch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    batch: Mapped[int] = mapped_column(Integer)  # 1, 2, ...
    code: Mapped[str] = mapped_column(String(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
