"""The project dashboard's numbers: progress per annotator, seconds and clicks per object (the
number of clicks, NoC, measured on real annotators) with their distributions, and quality.

Sources: ``objects`` keeps per object its clicks (each with its time ``t`` in ms since the
object was started) and ``time_spent``; ``assignments`` the queue's state. The page
(static/js/dashboard.js) reloads this whenever the server announces a change over Socket.IO
(``dashboard_changed`` in the room ``dashboard:<pid>``, webapp/realtime.py).
"""

from __future__ import annotations



import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .models import AnnotationObject, AnnotationStatus, Assignment, Image, Project, User
from .projects import settings_json
from .quality import project_quality


def histogram(values: list[float], bins: list[float]) -> dict:
    """Counts per bin ``[edges[i], edges[i+1])``, the last bin open-ended."""
    counts = [0] * len(bins)
    for v in values:
        i = int(np.searchsorted(bins, v, side="right")) - 1
        counts[max(0, min(i, len(bins) - 1))] += 1
    return {"edges": bins, "counts": counts}


def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "mean": None, "median": None, "p90": None}
    a = np.asarray(values, float)
    return {"n": int(a.size), "mean": float(a.mean()), "median": float(np.median(a)), "p90": float(np.percentile(a, 90))}


def project_dashboard(session: Session, project: Project) -> dict:
    images = dict(session.execute(select(Image.annotation_status, func.count()).where(Image.project_id == project.id)
                                  .group_by(Image.annotation_status)).all())
    gold_images = session.scalar(select(func.count()).where(Image.project_id == project.id, Image.is_gold.is_(True))) or 0
    per: dict[int, dict] = {}

    def row(uid: int, name: str) -> dict:
        if uid not in per:
            per[uid] = {"user_id": uid, "username": name, "active": 0, "submitted": 0, "accepted": 0, "rejected": 0,
                        "objects": 0, "clicks": [], "seconds": []}
        return per[uid]

    for a, name in session.execute(select(Assignment, User.username).join(User, User.id == Assignment.user_id)
                                   .where(Assignment.project_id == project.id)).all():
        row(a.user_id, name)[a.status] += 1
    objs = session.execute(
        select(AnnotationObject.author_id, User.username, AnnotationObject.clicks, AnnotationObject.time_spent)
        .join(Image, Image.id == AnnotationObject.image_id).join(User, User.id == AnnotationObject.author_id)
        .where(Image.project_id == project.id, AnnotationObject.deleted_at.is_(None))).all()
    all_clicks: list[float] = []
    all_seconds: list[float] = []
    for uid, name, clicks, seconds in objs:
        r = row(uid, name)
        r["objects"] += 1
        r["clicks"].append(len(clicks or []))
        r["seconds"].append(float(seconds))
        all_clicks.append(len(clicks or []))
        all_seconds.append(float(seconds))
    quality = {q["user_id"]: q for q in project_quality(session, project)["annotators"]}
    annotators = []
    for uid in sorted(per, key=lambda u: per[u]["username"]):
        r = per[uid]
        q = quality.get(uid, {})
        annotators.append({
            **{k: v for k, v in r.items() if k not in ("clicks", "seconds")},
            "clicks_per_object": _stats(r["clicks"]), "seconds_per_object": _stats(r["seconds"]),
            "gold_iou": q.get("gold_iou"), "agreement": q.get("agreement"),
        })
    total = sum(images.values())
    return {
        "project_id": project.id,
        "settings": settings_json(project),
        "images": {"total": total, "gold": gold_images,
                   **{s.value: images.get(s.value, 0) for s in AnnotationStatus}},
        "annotators": annotators,
        "clicks_per_object": {**_stats(all_clicks), "histogram": histogram(all_clicks, [0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20])},
        "seconds_per_object": {**_stats(all_seconds),
                               "histogram": histogram(all_seconds, [0, 2, 5, 10, 20, 30, 60, 120, 300])},
        "per_user_clicks": {per[u]["username"]: per[u]["clicks"] for u in per},
    }



