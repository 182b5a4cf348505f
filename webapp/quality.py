"""Quality: IoU against gold images, agreement between overlapping annotators, consensus masks.

* Gold: an image marked ``is_gold`` whose reference is the objects saved on it outside the
  queue (``assignment_id`` NULL, made by an admin). An annotator's score on it is the mean,
  over the reference objects, of the best IoU with one of their objects of the same class
  (0 when they drew none).
* Agreement: on an image two or more annotators submitted, the IoU of each pair's masks per
  class (the union of a person's objects of that class), averaged over the classes either
  drew, then over the pairs.
* Consensus: per class, the pixels that more than half of the image's submitted annotators
  covered (majority vote); returned as COCO RLE.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import masks
from .models import AnnotationObject, Assignment, Image, Project
from .queue import DONE_STATUSES as DONE


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def objects_of(session: Session, image: Image, assignment: Assignment | None) -> list[AnnotationObject]:
    """The live objects of one assignment (made by its annotator), or with ``assignment`` None
    the objects made outside the queue (an admin's; on a gold image, the reference)."""
    q = select(AnnotationObject).where(AnnotationObject.image_id == image.id, AnnotationObject.deleted_at.is_(None))
    if assignment is None:
        q = q.where(AnnotationObject.assignment_id.is_(None))
    else:
        q = q.where(AnnotationObject.assignment_id == assignment.id, AnnotationObject.author_id == assignment.user_id)
    return list(session.scalars(q.order_by(AnnotationObject.id)).all())


def _decoded(o: AnnotationObject, image: Image) -> np.ndarray:
    return masks.decode(o.rle_counts, image.height, image.width)


def class_masks(session: Session, image: Image, assignment: Assignment | None) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    for o in objects_of(session, image, assignment):
        m = _decoded(o, image)
        out[o.label_class_id] = out[o.label_class_id] | m if o.label_class_id in out else m
    return out


def gold_score(session: Session, image: Image, assignment: Assignment) -> float | None:
    ref = objects_of(session, image, None)
    if not ref:
        return None
    mine = [(o.label_class_id, _decoded(o, image)) for o in objects_of(session, image, assignment)]
    scores = []
    for r in ref:
        rm = _decoded(r, image)
        scores.append(max((iou(rm, m) for c, m in mine if c == r.label_class_id), default=0.0))
    return float(np.mean(scores))


def pair_agreement(a: dict[int, np.ndarray], b: dict[int, np.ndarray], shape: tuple[int, int]) -> float:
    classes = set(a) | set(b)
    if not classes:
        return 1.0
    empty = np.zeros(shape, bool)
    return float(np.mean([iou(a.get(c, empty), b.get(c, empty)) for c in classes]))


def done_assignments(session: Session, image_id: int) -> list[Assignment]:
    return list(session.scalars(select(Assignment).where(Assignment.image_id == image_id,
                                                         Assignment.status.in_(DONE))
                                .order_by(Assignment.id)).all())


def consensus(session: Session, image: Image) -> dict:
    done = done_assignments(session, image.id)
    per = [class_masks(session, image, a) for a in done]
    classes = sorted({c for m in per for c in m})
    out = []
    for c in classes:
        votes = np.zeros((image.height, image.width), np.int32)
        for m in per:
            if c in m:
                votes += m[c]
        maj = votes * 2 > len(per)
        out.append({"class_id": c, "area": int(maj.sum()),
                    "rle": masks.rle_json(masks.encode(maj), image.height, image.width), "votes": len(per)})
    return {"image_id": image.id, "annotators": len(per), "usernames": [a.user.username for a in done], "classes": out}


def project_quality(session: Session, project: Project) -> dict:
    """Per annotator: mean gold IoU (and how many gold images), mean agreement with the others
    on shared images (and how many pairs); per image: its agreement."""
    rows = session.scalars(select(Assignment).where(Assignment.project_id == project.id,
                                                    Assignment.status.in_(DONE)).order_by(Assignment.id)).all()
    gold: dict[int, list[float]] = defaultdict(list)
    agree: dict[int, list[float]] = defaultdict(list)
    names: dict[int, str] = {}
    by_image: dict[int, list[Assignment]] = defaultdict(list)
    for a in rows:
        names[a.user_id] = a.user.username
        if a.is_gold:
            s = gold_score(session, a.image, a)
            if s is not None:
                gold[a.user_id].append(s)
        else:
            by_image[a.image_id].append(a)
    images = []
    for iid, group in by_image.items():
        if len(group) < 2:
            continue
        im = group[0].image
        cm = {a.id: class_masks(session, im, a) for a in group}
        pair_scores = []
        for a, b in combinations(group, 2):
            s = pair_agreement(cm[a.id], cm[b.id], (im.height, im.width))
            pair_scores.append(s)
            agree[a.user_id].append(s)
            agree[b.user_id].append(s)
        images.append({"image_id": iid, "annotators": len(group), "agreement": float(np.mean(pair_scores))})
    annotators = []
    for uid in sorted(names):
        annotators.append({
            "user_id": uid, "username": names[uid],
            "gold_iou": float(np.mean(gold[uid])) if gold[uid] else None, "gold_images": len(gold[uid]),
            "agreement": float(np.mean(agree[uid])) if agree[uid] else None, "agreement_pairs": len(agree[uid]),
        })
    return {"annotators": annotators, "images": images}
