"""The database briefly unreachable: a clear 503 instead of a 500 with a stack trace.

Every request runs in one transaction of its own (webapp/db.py); when the database drops the
connection or refuses new ones, SQLAlchemy raises ``OperationalError`` / ``InterfaceError`` /
``DisconnectionError`` and the transaction is rolled back, so nothing of the request is
stored. This module turns those into

    503  {"error": "the database is not reachable right now; nothing was saved ...", "retry": true}
         Retry-After: 2

under ``/api/`` (a short page elsewhere). The browser's save queue and outbox retry on 503 and
resend the same ``client_id``, which the server stores once (webapp/api.py), so a retry after
the outage never doubles an object. The engine checks pooled connections before use
(``pool_pre_ping``), so the first request after the database is back gets a fresh connection.
"""

from __future__ import annotations

from flask import Flask, g, jsonify, request
from sqlalchemy.exc import DataError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

RETRY_AFTER_S = 2
MESSAGE = "the database is not reachable right now; nothing was saved. Try again in a moment."


def init_app(app: Flask) -> None:
    def unavailable(e: Exception):
        s = g.pop("db_session", None)
        if s is not None:
            try:
                s.close()  # rolls back; the connection is discarded by the pool
            except Exception:  # noqa: BLE001 -- the connection is gone already
                pass
        app.logger.warning("database unavailable during %s %s: %s", request.method, request.path,
                           str(e).splitlines()[0] if str(e) else type(e).__name__)
        headers = {"Retry-After": str(RETRY_AFTER_S)}
        if request.path.startswith("/api/"):
            return jsonify(error=MESSAGE, retry=True), 503, headers
        return f"<!doctype html><title>Try again</title><p>{MESSAGE}</p>", 503, headers

    for exc in (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError):
        app.register_error_handler(exc, unavailable)

    def refused_value(e: DataError):
        """A value the database refuses (out of range, bad encoding): the request's input was
        bad, nothing of it was stored (the transaction is rolled back): 400, not a 500."""
        s = g.pop("db_session", None)
        if s is not None:
            s.close()
        detail = str(getattr(e, "orig", e)).splitlines()[0] if str(getattr(e, "orig", e)) else type(e).__name__
        app.logger.warning("value refused by the database during %s %s: %s", request.method, request.path, detail)
        msg = f"a value was refused by the database ({detail}); nothing was saved"
        if request.path.startswith("/api/"):
            return jsonify(error=msg), 400
        return f"<!doctype html><title>Bad request</title><p>{msg}</p>", 400

    app.register_error_handler(DataError, refused_value)
