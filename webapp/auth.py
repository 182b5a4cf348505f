"""Logging in and out, and the access rules of every other route.

Routes:

``GET  /login``            the login page (``?next=/path`` to return to)
``POST /login``            form login (username, password) -> redirect to ``next`` or the home page
``POST /logout``           form logout -> the login page
``POST /api/auth/login``   JSON ``{"username", "password"}`` -> ``{"user": {...}, "csrf_token"}`` (401 on bad credentials)
``POST /api/auth/logout``  -> ``{"ok": true}``
``GET  /api/auth/me``      -> ``{"user": {...}, "csrf_token"}`` or 401

Failed logins are rate-limited per username and per client address (429 with Retry-After), and
every state-changing request but the JSON login needs the session's CSRF token
(webapp/security.py, docs/security.md).

The session (Flask's signed cookie, ``SameSite=Lax``, HttpOnly) holds the user id. Decorators:
``login_required`` (anonymous: 401 JSON under ``/api/``, else a redirect to the login page) and
``admin_required`` (also 403 for a logged-in non-admin). The role of every route is also
checked centrally, before the view runs, from the table in webapp/permissions.py.
"""

from __future__ import annotations

from functools import wraps

from flask import Blueprint, abort, g, jsonify, redirect, render_template, request, session, url_for

from . import security
from .accounts import authenticate
from .db import db_session
from .models import User

bp = Blueprint("auth", __name__)


def current_user() -> User | None:
    """The logged-in, active user of this request, or None."""
    if "current_user" not in g:
        user = None
        uid = session.get("user_id")
        if isinstance(uid, int):
            user = db_session().get(User, uid)
            if user is not None and not user.active:
                user = None
        g.current_user = user
    return g.current_user


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def _unauthenticated():
    if _wants_json():
        return jsonify(error="authentication required: log in first"), 401
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def login_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        if current_user() is None:
            return _unauthenticated()
        return view(*args, **kwargs)

    return wrapper


def admin_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        user = current_user()
        if user is None:
            return _unauthenticated()
        if not user.is_admin:
            if _wants_json():
                return jsonify(error="this needs an admin account"), 403
            abort(403)
        return view(*args, **kwargs)

    return wrapper


def _safe_next(target: str | None) -> str | None:
    """Only local paths (no scheme, no host, no backslash tricks) are followed after login."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


def home_url(user: User | None) -> str:
    if user is not None and user.is_admin:
        return url_for("admin.projects")
    return url_for("annotate.projects")


def _log_in(user: User) -> None:
    session.clear()
    session["user_id"] = user.id
    security.new_csrf_token()  # a new session, a new token
    g.current_user = user


def _attempt(username: str, password: str, api: bool):
    """Check a login against the rate limit: (user or None, a 429 response or None)."""
    lim = security.limiter()
    ip = security.client_ip()
    wait = lim.retry_after(username, ip)
    if wait is not None:
        return None, security.too_many_logins(wait, api)
    user = authenticate(db_session(), username, password)
    if user is None:
        lim.failed(username, ip)
    else:
        lim.succeeded(username, ip)
    return user, None


@bp.get("/login")
def login():
    return render_template("login.html", next=_safe_next(request.args.get("next")), error=None)


@bp.post("/login")
def login_post():
    user, blocked = _attempt(request.form.get("username", ""), request.form.get("password", ""), api=False)
    if blocked is not None:
        return blocked
    nxt = _safe_next(request.form.get("next"))
    if user is None:
        return render_template("login.html", next=nxt, error="wrong username or password"), 401
    _log_in(user)
    return redirect(nxt or home_url(user))


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("auth.login"))


@bp.post("/api/auth/login")
def api_login():
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("username"), str) or not isinstance(data.get("password"), str):
        return jsonify(error='expected a JSON body {"username": ..., "password": ...}'), 400
    user, blocked = _attempt(data["username"], data["password"], api=True)
    if blocked is not None:
        return blocked
    if user is None:
        return jsonify(error="wrong username or password"), 401
    _log_in(user)
    return jsonify(user=user.to_json(), csrf_token=security.csrf_token())


@bp.post("/api/auth/logout")
def api_logout():
    session.clear()
    return jsonify(ok=True)


@bp.get("/api/auth/me")
@login_required
def me():
    return jsonify(user=current_user().to_json(), csrf_token=security.csrf_token())
