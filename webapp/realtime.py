"""Live updates over Socket.IO (Flask-SocketIO, threading mode, same origin only).

A logged-in browser connects (the session cookie authenticates it; anonymous connections are
refused) and joins a project's room:

    client -> server  "join_project"   {"project_id": 3}   ack: {"ok": true, "progress": {...}}
                                                             or {"ok": false, "error": "..."}
    client -> server  "leave_project"  {"project_id": 3}

and then receives, for that project (webapp/precompute.py sends them):

    "image_status"      {"project_id", "image_id", "status": pending|running|done|failed, "error"}
    "project_progress"  {"project_id", "total", "pending", "running", "done", "failed"}

``SOCKETIO_MESSAGE_QUEUE`` (app config, e.g. ``redis://127.0.0.1:6379/0``) lets several web
processes and outside workers send to the same clients.
"""

from __future__ import annotations

from flask import Flask
from flask_socketio import SocketIO, join_room, leave_room

from .auth import current_user
from .db import get_db
from .models import Project


def room(project_id: int) -> str:
    return f"project:{project_id}"


def init_app(app: Flask) -> SocketIO:
    socketio = SocketIO(
        app,
        async_mode="threading",
        message_queue=app.config.get("SOCKETIO_MESSAGE_QUEUE"),
        logger=False,
        engineio_logger=False,
    )

    @socketio.on("connect")
    def on_connect(auth=None):
        if current_user() is None:
            raise ConnectionRefusedError("authentication required: log in first")

    def _project_id(data) -> int | None:
        pid = data.get("project_id") if isinstance(data, dict) else None
        return pid if isinstance(pid, int) and not isinstance(pid, bool) else None

    @socketio.on("join_project")
    def on_join(data):
        if current_user() is None:
            return {"ok": False, "error": "authentication required"}
        pid = _project_id(data)
        if pid is None:
            return {"ok": False, "error": 'expected {"project_id": <int>}'}
        with get_db(app).session() as s:
            if s.get(Project, pid) is None:
                return {"ok": False, "error": f"no project {pid}"}
            progress = app.extensions["precompute"].progress(s, pid)
        join_room(room(pid))
        return {"ok": True, "progress": progress}

    @socketio.on("leave_project")
    def on_leave(data):
        pid = _project_id(data)
        if pid is not None:
            leave_room(room(pid))
        return {"ok": True}

    return socketio


def notifier(app: Flask):
    """``notify(event, payload, project_id)`` for the precompute: emit to the project's room."""

    def notify(event: str, payload: dict, project_id: int) -> None:
        app.extensions["socketio"].emit(event, payload, to=room(project_id))

    return notify
