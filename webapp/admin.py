"""The admins' pages (every route: admin only; anonymous -> the login page, annotators -> 403).

``GET  /admin``                     projects, with progress, and the form to create one
``POST /admin/projects``            create a project (name, label classes) -> its page
``GET  /admin/projects/<pid>``      the project page: upload (files or zips; per-file results),
                                    live precompute progress (Socket.IO), per-image failures with
                                    a retry button, export links (static/js/admin_project.js)
``GET  /admin/projects/<pid>/dashboard``  the project dashboard (admins and reviewers): progress
                                    per annotator, seconds and clicks per object with their
                                    distributions, gold IoU and agreement, live over Socket.IO
``GET  /admin/users``               accounts, invitations, and the forms to add them
``POST /admin/users``               add an account (username, password, role)
``POST /admin/invites``             make invitation links (role, how many, uses each, hours valid)

The pages are thin: the project page drives the JSON API (webapp/api.py).
"""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from sqlalchemy import select

from .accounts import AccountError, create_user
from .auth import admin_required, current_user, login_required
from .db import db_session
from .invites import InviteError, create_invites
from .models import Invite, Project, Role, User
from .precompute import provider_model_id
from .projects import ProjectError, annotation_counts, create_project

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _project_rows():
    s = db_session()
    pre = current_app.extensions["precompute"]
    rows = []
    for p in s.scalars(select(Project).order_by(Project.id)).all():
        rows.append({"project": p, "progress": pre.progress(s, p.id), "annotation": annotation_counts(s, p.id)})
    return rows


@bp.get("")
@admin_required
def projects():
    return render_template("admin/projects.html", rows=_project_rows(), error=None, form={}, user=current_user())


@bp.post("/projects")
@admin_required
def create_project_form():
    form = {"name": request.form.get("name", ""), "classes": request.form.get("classes", "")}
    try:
        p = create_project(db_session(), form["name"], form["classes"],
                           provider_model_id(current_app.config.get("PYRAMID_PROVIDER")), current_user())
    except ProjectError as e:
        return render_template("admin/projects.html", rows=_project_rows(), error=str(e), form=form,
                               user=current_user()), 400
    return redirect(url_for("admin.project_page", pid=p.id))


@bp.get("/projects/<int:pid>")
@admin_required
def project_page(pid: int):
    p = db_session().get(Project, pid)
    if p is None:
        return render_template("admin/not_found.html", what=f"project {pid}", user=current_user()), 404
    worker_running = bool(getattr(current_app.extensions["precompute"].jobs, "running", False))
    return render_template("admin/project.html", project=p, user=current_user(), worker_running=worker_running)


@bp.get("/projects/<int:pid>/dashboard")
@login_required
def dashboard_page(pid: int):
    p = db_session().get(Project, pid)
    if p is None:
        return render_template("admin/not_found.html", what=f"project {pid}", user=current_user()), 404
    return render_template("admin/dashboard.html", project=p, user=current_user())


ROLES = [Role.ADMIN.value, Role.REVIEWER.value, Role.ANNOTATOR.value]


def _users_page(error: str | None = None, invite_error: str | None = None, made: list | None = None, status: int = 200):
    s = db_session()
    rows = s.scalars(select(User).order_by(User.id)).all()
    invites = s.scalars(select(Invite).order_by(Invite.id.desc()).limit(200)).all()
    return render_template("admin/users.html", users=rows, roles=ROLES, error=error, invite_error=invite_error,
                           invites=invites, made=made or [], user=current_user()), status


@bp.get("/users")
@admin_required
def users():
    return _users_page()


@bp.post("/users")
@admin_required
def create_user_form():
    role = request.form.get("role", Role.ANNOTATOR.value)
    try:
        if role not in ROLES:
            raise AccountError(f"unknown role {role!r}")
        create_user(db_session(), request.form.get("username", ""), request.form.get("password", ""), role,
                    current_app.config["PASSWORD_HASH_METHOD"])
    except AccountError as e:
        return _users_page(error=str(e), status=400)
    return redirect(url_for("admin.users"))


@bp.post("/invites")
@admin_required
def create_invites_form():
    def num(key: str, default: int | None):
        v = request.form.get(key, "").strip()
        if not v:
            return default
        try:
            return int(v)
        except ValueError:
            return v  # create_invites says what is wrong

    data = {"role": request.form.get("role", Role.ANNOTATOR.value), "count": num("count", 1),
            "max_uses": num("max_uses", 1), "expires_in_hours": num("expires_in_hours", None)}
    try:
        made = create_invites(db_session(), current_user(), data)
    except InviteError as e:
        return _users_page(invite_error=str(e), status=400)
    return _users_page(made=made, status=201)
