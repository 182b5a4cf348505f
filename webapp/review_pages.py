"""The reviewer's page: ``GET /review/<pid>`` (admins and reviewers) shows the submitted images
with each annotator's masks and takes accept / reject with a comment
(templates/review.html, static/js/review.js, driving webapp/crowd.py's review API)."""

from __future__ import annotations

from flask import Blueprint, render_template

from .auth import current_user
from .db import db_session
from .models import Project

bp = Blueprint("review", __name__, url_prefix="/review")


@bp.get("/<int:pid>")
def page(pid: int):
    p = db_session().get(Project, pid)
    if p is None:
        return render_template("admin/not_found.html", what=f"project {pid}", user=current_user()), 404
    return render_template("review.html", project=p, user=current_user())
