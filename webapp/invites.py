"""Invitations: an admin makes sign-up links (one link for many people, or many single-use
links at once); whoever opens one picks a username and password and gets the invite's role.

``GET  /invite/<token>``                 the sign-up page (public)
``POST /invite/<token>``                 form sign-up -> logged in, to the annotate page
``POST /api/invites/<token>/accept``     JSON ``{"username", "password"}`` -> 201 ``{"user", "csrf_token"}``

An invite counts its uses with a conditional UPDATE (``uses < max_uses``), so a link for 50
people makes at most 50 accounts even when they sign up at the same moment. The admin's
routes (create, list, revoke) are in webapp/crowd.py.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .accounts import AccountError, create_user
from .db import db_session
from .models import Invite, Project, Role, User, iso, utcnow
from .queue import aware

bp = Blueprint("invites", __name__)

MAX_BATCH = 1000
MAX_USES = 100_000


class InviteError(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _int(data: dict, key: str, default: int, lo: int, hi: int) -> int:
    v = data.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise InviteError(f'"{key}" must be an integer from {lo} to {hi}')
    return v


def create_invites(session: Session, admin: User, data: object) -> list[Invite]:
    """``{"role": "annotator"|"reviewer", "count": 1, "max_uses": 1, "expires_in_hours": null,
    "project_id": null}`` (with a project, the new account lands on that project's annotator)."""
    if not isinstance(data, dict):
        raise InviteError('expected a JSON body {"role", "count", "max_uses", "expires_in_hours"}')
    role = data.get("role", Role.ANNOTATOR.value)
    if role not in (Role.ANNOTATOR.value, Role.REVIEWER.value):
        raise InviteError('"role" is "annotator" or "reviewer" (admins are made by an admin)')
    count = _int(data, "count", 1, 1, MAX_BATCH)
    max_uses = _int(data, "max_uses", 1, 1, MAX_USES)
    hours = data.get("expires_in_hours")
    expires: datetime | None = None
    if hours is not None:
        if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not 0 < hours <= 24 * 365:
            raise InviteError('"expires_in_hours" must be a number of hours (at most a year) or null')
        expires = utcnow() + timedelta(hours=hours)
    project_id = data.get("project_id")
    if project_id is not None:
        if isinstance(project_id, bool) or not isinstance(project_id, int) or session.get(Project, project_id) is None:
            raise InviteError(f"no project {project_id!r}", 404)
    invites = [Invite(token=secrets.token_urlsafe(24), role=role, max_uses=max_uses, uses=0, expires_at=expires,
                      project_id=project_id, created_by_id=admin.id) for _ in range(count)]
    session.add_all(invites)
    session.commit()
    return invites


def find_usable(session: Session, token: str) -> Invite:
    inv = session.scalar(select(Invite).where(Invite.token == token)) if token else None
    if inv is None:
        raise InviteError("this invitation link is not valid", 404)
    if inv.revoked_at is not None:
        raise InviteError("this invitation was revoked", 410)
    if inv.expires_at is not None and aware(inv.expires_at) < utcnow():
        raise InviteError("this invitation has expired", 410)
    if inv.uses >= inv.max_uses:
        raise InviteError("this invitation has been used up", 410)
    return inv


def accept(session: Session, token: str, username: str, password: str, hash_method: str) -> User:
    inv = find_usable(session, token)
    res = session.execute(update(Invite).where(Invite.id == inv.id, Invite.uses < Invite.max_uses,
                                               Invite.revoked_at.is_(None))
                          .values(uses=Invite.uses + 1).execution_options(synchronize_session=False))
    if res.rowcount != 1:
        session.rollback()
        raise InviteError("this invitation has been used up", 410)
    try:
        return create_user(session, username, password, inv.role, hash_method)  # commits both
    except AccountError:
        session.rollback()  # the use is given back
        raise


def invite_json(inv: Invite) -> dict:
    return {
        "id": inv.id,
        "token": inv.token,
        "url": url_for("invites.page", token=inv.token, _external=True),
        "role": inv.role,
        "project_id": inv.project_id,
        "max_uses": inv.max_uses,
        "uses": inv.uses,
        "expires_at": iso(inv.expires_at),
        "revoked_at": iso(inv.revoked_at),
        "created_at": iso(inv.created_at),
    }


@bp.get("/invite/<token>")
def page(token: str):
    try:
        inv = find_usable(db_session(), token)
    except InviteError as e:
        return render_template("invite.html", invite=None, error=str(e), token=token, user=None), e.status
    return render_template("invite.html", invite=inv, error=None, token=token, user=None)


@bp.post("/invite/<token>")
def accept_form(token: str):
    from .auth import _log_in, home_url

    s = db_session()
    try:
        user = accept(s, token, request.form.get("username", ""), request.form.get("password", ""),
                      current_app.config["PASSWORD_HASH_METHOD"])
    except (InviteError, AccountError) as e:
        status = e.status if isinstance(e, InviteError) else 400
        inv = s.scalar(select(Invite).where(Invite.token == token))
        return render_template("invite.html", invite=inv, error=str(e), token=token, user=None), status
    _log_in(user)
    inv = s.scalar(select(Invite).where(Invite.token == token))
    if inv is not None and inv.project_id is not None and user.role == Role.ANNOTATOR.value:
        return redirect(url_for("annotate.page", pid=inv.project_id))
    return redirect(home_url(user))


@bp.post("/api/invites/<token>/accept")
def api_accept(token: str):
    from .auth import _log_in

    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("username"), str) or not isinstance(data.get("password"), str):
        return jsonify(error='expected a JSON body {"username": ..., "password": ...}'), 400
    try:
        user = accept(db_session(), token, data["username"], data["password"], current_app.config["PASSWORD_HASH_METHOD"])
    except InviteError as e:
        return jsonify(error=str(e)), e.status
    except AccountError as e:
        return jsonify(error=str(e)), 400
    _log_in(user)
    from .security import csrf_token

    return jsonify(user=user.to_json(), csrf_token=csrf_token()), 201


