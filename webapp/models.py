"""The stored data, as typed SQLAlchemy 2.0 models.

    User ──< Project (created_by)
    Project ──< LabelClass           (the project's label classes, in order)
    Project ──< Image                (a file in the blob store + its feature-pyramid status)
    Image ──< AnnotationObject       (one accepted object: class, COCO RLE, click log, time, author)

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
    REVIEWER = "reviewer"  # reserved for the review workflow (later issue)
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

    project: Mapped[Project] = relationship(back_populates="images")
    objects: Mapped[list[AnnotationObject]] = relationship(
        back_populates="image", order_by="AnnotationObject.id"
    )

    @property
    def mimetype(self) -> str:
        return {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}[self.format]


class AnnotationObject(Base):
    """One accepted object on an image."""

    __tablename__ = "objects"

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

    image: Mapped[Image] = relationship(back_populates="objects")
    label_class: Mapped[LabelClass] = relationship()
    author: Mapped[User] = relationship(foreign_keys=[author_id])
