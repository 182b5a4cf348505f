"""The annotator's pages (login required; admins and annotators).

``GET /annotate``                        the projects to work on, with their progress
``GET /annotate/<pid>``                  the annotation page at the project's next open image
``GET /annotate/<pid>/<iid>``            the annotation page at that image

The page (templates/annotate.html, static/js/annotate.js) drives the JSON API
(webapp/api.py) and runs the per-click decoder in the browser, like /playground.
"""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, url_for
from sqlalchemy import select

from .auth import current_user, login_required
from .db import db_session
from .models import Image, Project
from .projects import annotation_counts

bp = Blueprint("annotate", __name__, url_prefix="/annotate")


@bp.get("")
@login_required
def projects():
    s = db_session()
    pre = current_app.extensions["precompute"]
    rows = [{"project": p, "progress": pre.progress(s, p.id), "annotation": annotation_counts(s, p.id)}
            for p in s.scalars(select(Project).order_by(Project.id)).all()]
    return render_template("annotate_projects.html", rows=rows, user=current_user())


@bp.get("/<int:pid>")
@bp.get("/<int:pid>/<int:iid>")
@login_required
def page(pid: int, iid: int | None = None):
    s = db_session()
    p = s.get(Project, pid)
    if p is None:
        return render_template("admin/not_found.html", what=f"project {pid}", user=current_user()), 404
    if iid is not None:
        im = s.get(Image, iid)
        if im is None or im.project_id != pid:
            return render_template("admin/not_found.html", what=f"image {iid} in project {pid}",
                                   user=current_user()), 404
    return render_template("annotate.html", project=p, image_id=iid, user=current_user(),
                           project_url=url_for("api.project", pid=pid))
