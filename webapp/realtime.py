"""Live updates over Socket.IO (Flask-SocketIO, threading mode, same origin only).

A logged-in browser connects (the session cookie authenticates it; anonymous connections are
refused) and joins a project's room:

    client -> server  "join_project"   {"project_id": 3}   ack: {"ok": true, "progress": {...}}
                                                             or {"ok": false, "error": "..."}
    client -> server  "leave_project"  {"project_id": 3}

and then receives, for that project (webapp/precompute.py sends them):

    "image_status"      {"project_id", "image_id", "status": pending|running|done|failed, "error"}
    "project_progress"  {"project_id", "total", "pending", "running", "done", "failed"}

Admins and reviewers can also join a project's dashboard room (the dashboard page does):

    client -> server  "join_dashboard"  {"project_id": 3}   ack: {"ok": true}
    client -> server  "leave_dashboard" {"project_id": 3}

and receive ``"dashboard_changed" {"project_id"}`` whenever the numbers move (an object saved
or deleted, an image taken or submitted, a review, a settings change); the page reloads
them from ``/api/projects/<pid>/dashboard``. Every event is checked against the role table of
webapp/permissions.py (``EVENTS``).

``SOCKETIO_MESSAGE_QUEUE`` (app config, e.g. ``redis://127.0.0.1:6379/0``; by default
``REDIS_URL`` when the precompute runs in Redis workers, webapp/scaleout.py) lets several web
processes and outside workers send to the same clients.
"""

from __future__ import annotations

from flask import Flask, current_app, has_app_context
from flask_socketio import SocketIO, join_room, leave_room

from .auth import current_user
from .db import get_db
from .models import Project
from .permissions import event_allowed
from .scaleout import DEFAULT_CHANNEL, message_queue_url


def room(project_id: int) -> str:
    return f"project:{project_id}"


def dashboard_room(project_id: int) -> str:
    return f"dashboard:{project_id}"


def dashboard_changed(project_id: int) -> None:
    """Tell the project's dashboards to reload (best effort; the page coalesces bursts)."""
    if not has_app_context():
        return
    try:
        current_app.extensions["socketio"].emit("dashboard_changed", {"project_id": project_id},
                                                to=dashboard_room(project_id))
    except Exception:  # events are best effort
        current_app.logger.exception("dashboard event failed")


def init_app(app: Flask) -> SocketIO:
    socketio = SocketIO(
        app,
        async_mode="threading",
        message_queue=message_queue_url(app.config),
        channel=app.config.get("SOCKETIO_CHANNEL") or DEFAULT_CHANNEL,
        logger=False,
        engineio_logger=False,
    )

    @socketio.on("connect")
    def on_connect(auth=None):
        if current_user() is None:
            raise ConnectionRefusedError("authentication required: log in first")
        if not event_allowed("connect", current_user()):
            raise ConnectionRefusedError("this account may not connect")

    def _refused(event: str) -> dict | None:
        user = current_user()
        if user is None:
            return {"ok": False, "error": "authentication required"}
        if not event_allowed(event, user):
            return {"ok": False, "error": f"your role ({user.role}) may not use {event}"}
        return None

    def _project_id(data) -> int | None:
        pid = data.get("project_id") if isinstance(data, dict) else None
        return pid if isinstance(pid, int) and not isinstance(pid, bool) else None

    def _join_target(event: str, data) -> tuple[int | None, dict | None]:
        """The existing project a join event names, or the answer refusing the event."""
        refused = _refused(event)
        if refused:
            return None, refused
        pid = _project_id(data)
        if pid is None:
            return None, {"ok": False, "error": 'expected {"project_id": <int>}'}
        with get_db(app).session() as s:
            if s.get(Project, pid) is None:
                return None, {"ok": False, "error": f"no project {pid}"}
        return pid, None

    def _leave(event: str, data, room_of) -> dict:
        refused = _refused(event)
        if refused:
            return refused
        pid = _project_id(data)
        if pid is not None:
            leave_room(room_of(pid))
        return {"ok": True}

    @socketio.on("join_project")
    def on_join(data):
        pid, answer = _join_target("join_project", data)
        if answer is not None:
            return answer
        with get_db(app).session() as s:
            progress = app.extensions["precompute"].progress(s, pid)
        join_room(room(pid))
        return {"ok": True, "progress": progress}

    @socketio.on("leave_project")
    def on_leave(data):
        return _leave("leave_project", data, room)

    @socketio.on("join_dashboard")
    def on_join_dashboard(data):
        pid, answer = _join_target("join_dashboard", data)
        if answer is not None:
            return answer
        join_room(dashboard_room(pid))
        return {"ok": True}

    @socketio.on("leave_dashboard")
    def on_leave_dashboard(data):
        return _leave("leave_dashboard", data, dashboard_room)

    return socketio


def notifier(app: Flask):
    """``notify(event, payload, project_id)`` for the precompute: emit to the project's room."""

    def notify(event: str, payload: dict, project_id: int) -> None:
        app.extensions["socketio"].emit(event, payload, to=room(project_id))

    return notify
