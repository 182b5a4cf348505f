"""Completion codes for crowd platforms: with ``Project.batch_size`` = n, an annotator gets a
code each time their count of submitted images in the project reaches a multiple of n. The
platform checks a code at ``GET /api/completion-codes/<code>`` (public; the code is the secret).
Codes are unique per (project, annotator, batch), so a submit retried never makes two."""

from __future__ import annotations

import secrets

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import Assignment, CompletionCode, Project, iso

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(12))


def issue(session: Session, project: Project, user_id: int) -> list[CompletionCode]:
    """The codes this user has earned in the project (making the missing ones), oldest first."""
    if project.batch_size <= 0:
        return codes_of(session, project.id, user_id)
    done = session.scalar(select(func.count()).where(Assignment.project_id == project.id,
                                                      Assignment.user_id == user_id,
                                                      Assignment.is_gold.is_(False),
                                                      Assignment.submitted_at.is_not(None))) or 0
    have = {c.batch for c in codes_of(session, project.id, user_id)}
    for batch in range(1, done // project.batch_size + 1):
        if batch in have:
            continue
        session.add(CompletionCode(project_id=project.id, user_id=user_id, batch=batch, code=new_code()))
        try:
            session.commit()
        except IntegrityError:  # made by a concurrent submit
            session.rollback()
    return codes_of(session, project.id, user_id)


def codes_of(session: Session, project_id: int, user_id: int) -> list[CompletionCode]:
    return list(session.scalars(select(CompletionCode).where(CompletionCode.project_id == project_id,
                                                             CompletionCode.user_id == user_id)
                                .order_by(CompletionCode.batch)).all())


def code_json(c: CompletionCode) -> dict:
    return {"code": c.code, "project_id": c.project_id, "batch": c.batch, "created_at": iso(c.created_at)}
