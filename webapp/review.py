"""Review: a reviewer accepts or rejects submitted work with a comment.

Rejected work goes back to its annotator (first in their queue, webapp/queue.py) with the
comment; every decision is kept in ``reviews``.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Assignment, AssignmentStatus, Project, Review, ReviewDecision, User, utcnow
from .queue import QueueError, update_image_status

MAX_COMMENT = 5000


def pending(session: Session, project: Project, status: str = AssignmentStatus.SUBMITTED.value) -> list[Assignment]:
    if status not in {s.value for s in AssignmentStatus}:
        raise QueueError(f"unknown status {status!r}", 400)
    return list(session.scalars(select(Assignment).where(Assignment.project_id == project.id,
                                                         Assignment.status == status,
                                                         Assignment.is_gold.is_(False))
                                .order_by(Assignment.submitted_at, Assignment.id)).all())


def decide(session: Session, a: Assignment, reviewer: User, decision: object, comment: object) -> Review:
    if decision not in (ReviewDecision.ACCEPT.value, ReviewDecision.REJECT.value):
        raise QueueError('"decision" is "accept" or "reject"', 400)
    if comment is None:
        comment = ""
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise QueueError(f'"comment" is a text of at most {MAX_COMMENT} characters', 400)
    comment = comment.strip()
    if decision == ReviewDecision.REJECT.value and not comment:
        raise QueueError("a rejection needs a comment that tells the annotator what to fix", 400)
    if a.status != AssignmentStatus.SUBMITTED.value:
        raise QueueError(f"only submitted work can be reviewed (this is {a.status})")
    if a.user_id == reviewer.id:
        raise QueueError("you cannot review your own work", 403)
    now = utcnow()
    review = Review(assignment_id=a.id, reviewer_id=reviewer.id, decision=decision, comment=comment, created_at=now)
    session.add(review)
    a.reviewed_at = now
    a.reviewed_by_id = reviewer.id
    a.review_comment = comment or None
    a.status = AssignmentStatus.ACCEPTED.value if decision == ReviewDecision.ACCEPT.value else AssignmentStatus.REJECTED.value
    session.flush()
    project = session.get(Project, a.project_id)
    update_image_status(session, project, a.image)
    session.commit()
    return review
