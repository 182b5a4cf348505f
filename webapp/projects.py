"""Projects: creating one with its label classes, and counting its images by annotation status
(the next image to annotate comes from the queue, webapp/queue.py).

Label classes are given as names or ``{"name", "color"}`` (``#rrggbb``; a palette colour when
left out); names are unique in a project (case-insensitively), 1-100 characters, at most 255
classes (the semantic PNG export holds one byte per pixel).
"""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .models import AnnotationStatus, Image, LabelClass, Project, User

MAX_CLASSES = 255
# the crowdsourcing settings of a project: name -> (lowest, highest) allowed value
SETTINGS = {"overlap": (1, 50), "lock_timeout_s": (10, 7 * 24 * 3600), "gold_every": (0, 10_000), "batch_size": (0, 100_000)}
COLOR = re.compile(r"#[0-9a-fA-F]{6}")
PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
           "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000"]


class ProjectError(ValueError):
    """A project cannot be created as asked; the message says why."""


def parse_classes(value: object) -> list[tuple[str, str]]:
    """``[(name, color)]`` from a list of names / {"name", "color"}, or a comma/newline-separated string."""
    if isinstance(value, str):
        value = [v for v in re.split(r"[,\n]", value) if v.strip()]
    if not isinstance(value, list) or not value:
        raise ProjectError("a project needs at least one label class")
    if len(value) > MAX_CLASSES:
        raise ProjectError(f"at most {MAX_CLASSES} label classes")
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        if isinstance(item, dict):
            name, color = item.get("name"), item.get("color") or PALETTE[i % len(PALETTE)]
        else:
            name, color = item, PALETTE[i % len(PALETTE)]
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
            raise ProjectError(f"label class {i + 1}: a name is 1-100 characters")
        name = name.strip()
        if name.lower() in seen:
            raise ProjectError(f"label class {name!r} is listed twice")
        if not isinstance(color, str) or not COLOR.fullmatch(color):
            raise ProjectError(f"label class {name!r}: a colour is #rrggbb")
        seen.add(name.lower())
        out.append((name, color.lower()))
    return out


def create_project(session: Session, name: object, classes: object, model_id: str, creator: User) -> Project:
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
        raise ProjectError("a project name is 1-200 characters")
    name = name.strip()
    parsed = parse_classes(classes)
    if session.scalar(select(Project).where(func.lower(Project.name) == name.lower())) is not None:
        raise ProjectError(f"a project named {name!r} exists already")
    project = Project(name=name, model_id=model_id, created_by_id=creator.id)
    project.label_classes = [LabelClass(name=n, color=c, position=i) for i, (n, c) in enumerate(parsed)]
    session.add(project)
    session.commit()
    return project


def annotation_counts(session: Session, project_id: int) -> dict:
    rows = session.execute(
        select(Image.annotation_status, func.count()).where(Image.project_id == project_id).group_by(Image.annotation_status)
    ).all()
    counts = {s.value: 0 for s in AnnotationStatus}
    counts.update({status: n for status, n in rows})
    return counts


def settings_json(project: Project) -> dict:
    """The project's crowdsourcing settings (``SETTINGS``) as the API and the dashboard show them."""
    return {k: getattr(project, k) for k in SETTINGS}
