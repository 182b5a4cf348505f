"""Request security: CSRF tokens, login rate limiting, request-size limits, proxy headers.

**CSRF.** Every session carries a random token (``session["_csrf"]``, 32 bytes, made on first
use and again at each login). Every page puts it in ``<meta name="csrf-token">`` and every
form in a hidden ``csrf_token`` field (the Jinja global ``csrf_token()``); the browser code
sends it as the ``X-CSRF-Token`` header on every state-changing fetch (``static/js/http.js``).
A POST, PUT, PATCH or DELETE to any route without the session's token is refused before the
view runs: 403 ``{"error": ...}`` under ``/api/``, else a 400 page that says to reload. The
check runs after the role check of webapp/permissions.py (so anonymous calls still get 401).

Exempt (``CSRF_EXEMPT``, each with its reason): the two JSON entry points that *start* a
session, ``POST /api/auth/login`` and ``POST /api/invites/<token>/accept``. They accept only
``Content-Type: application/json`` — which a page of another site can send only with a CORS
preflight, and this app answers none — and refuse a cross-site ``Origin`` header; so no other
site can make a browser log in with the attacker's account (login CSRF). Their form
counterparts (``POST /login``, ``POST /invite/<token>``) check the token of their page like
every other form. Socket.IO (``/socket.io/``) is not a Flask route and is not checked: it
changes nothing, and the server accepts its connections only from its own origin
(webapp/realtime.py) with the session cookie.

**Login rate limit.** Failed logins are counted per username and per client IP in a fixed
window (``LOGIN_WINDOW_S``, 300 s): after ``LOGIN_MAX_FAILURES_PER_USER`` (10) failures for a
name or ``LOGIN_MAX_FAILURES_PER_IP`` (30; several people may share one address) from an
address, further attempts answer 429 with ``Retry-After`` until the window ends, without
checking the password. A successful login clears its username's count. The counters live in
this process, or in Redis when ``REDIS_URL`` is set (shared by every web process; keys under
``RATE_LIMIT_PREFIX``); if Redis is unreachable the process falls back to its own counters and
logs it.

**Sizes.** ``MAX_CONTENT_LENGTH`` bounds every request (uploads); ``MAX_JSON_BYTES`` (32 MiB)
bounds JSON bodies, which are parsed in memory (413).

**Cookies.** The session cookie is HttpOnly and ``SameSite=Lax`` always, and ``Secure`` with
``SESSION_COOKIE_SECURE`` (default: the environment variable ``INTERFORMER_HTTPS=1``). Behind
a reverse proxy set ``PROXY_FIX`` (or ``INTERFORMER_PROXY_FIX``) to the number of proxies, so
that the client address (rate limits) and scheme come from ``X-Forwarded-*``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import threading
import time
from urllib.parse import urlsplit

from flask import Flask, current_app, jsonify, render_template, request, session

log = logging.getLogger(__name__)

CSRF_SESSION_KEY = "_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

CSRF_EXEMPT: dict[str, str] = {
    "auth.api_login": "starts a session; JSON only (a cross-site page cannot send it without a CORS "
                      "preflight) and a cross-site Origin is refused",
    "invites.api_accept": "starts a session; JSON only and a cross-site Origin is refused, like auth.api_login",
}


# -- CSRF -------------------------------------------------------------------------------------


def csrf_token() -> str:
    """This session's token (made on first use)."""
    tok = session.get(CSRF_SESSION_KEY)
    if not isinstance(tok, str) or len(tok) < 32:
        tok = secrets.token_urlsafe(32)
        session[CSRF_SESSION_KEY] = tok
    return tok


def new_csrf_token() -> str:
    """A fresh token for a new session (called at login, after the session was cleared)."""
    session.pop(CSRF_SESSION_KEY, None)
    return csrf_token()


def _sent_token() -> str | None:
    tok = request.headers.get(CSRF_HEADER)
    if tok:
        return tok
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return request.form.get(CSRF_FIELD)
    return None


def csrf_ok() -> bool:
    expected = session.get(CSRF_SESSION_KEY)
    sent = _sent_token()
    if not isinstance(expected, str) or not expected or not sent:
        return False
    return hmac.compare_digest(expected.encode(), sent.encode("utf-8", "replace"))


def _cross_origin() -> bool:
    """The request names an Origin other than this host (a page of another site sent it)."""
    origin = request.headers.get("Origin")
    if not origin:
        return False
    if origin == "null":
        return True
    return urlsplit(origin).netloc.lower() != request.host.lower()


def _refuse(message: str, api_status: int = 403, page_status: int = 400):
    if request.path.startswith("/api/"):
        return jsonify(error=message), api_status
    return render_template("csrf_error.html", message=message, user=None), page_status


def _check_csrf():
    if request.method not in UNSAFE_METHODS or request.endpoint is None:
        return None
    if not current_app.config.get("CSRF_ENABLED", True):
        return None
    if request.endpoint in CSRF_EXEMPT:
        if _cross_origin():
            return _refuse("cross-site request refused (Origin is another site)")
        if not request.is_json:
            return _refuse("expected a JSON body (Content-Type: application/json)", 400, 400)
        return None
    if not csrf_ok():
        return _refuse(
            "CSRF token missing or invalid: reload the page and try again (API clients: send the "
            f"session's token, from /api/auth/me or the login answer, as the {CSRF_HEADER} header)"
        )
    return None


def _check_json_size():
    limit = current_app.config.get("MAX_JSON_BYTES")
    if not limit or not request.is_json:
        return None
    if (request.content_length or 0) > int(limit):
        return _refuse(f"the JSON body is too large (limit {int(limit)} bytes)", 413, 413)
    if request.content_length is None:
        # A body without Content-Length (chunked): read at most one byte past the limit (werkzeug
        # stops there), refuse it if it is longer; a body within the limit stays cached for get_json.
        request.max_content_length = int(limit) + 1
        if len(request.get_data(cache=True)) > int(limit):
            return _refuse(f"the JSON body is too large (limit {int(limit)} bytes)", 413, 413)
    return None


# -- login rate limit -------------------------------------------------------------------------


class MemoryCounters:
    """Fixed-window failure counters in this process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._data: dict[str, tuple[int, float]] = {}  # key -> (count, window end, monotonic)

    def _live(self, key: str, now: float) -> tuple[int, float] | None:
        v = self._data.get(key)
        if v is not None and v[1] <= now:
            del self._data[key]
            return None
        return v

    def hit(self, key: str, window_s: int) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._data) > 100_000:  # bound the memory: drop ended windows
                for k in [k for k, (_, end) in self._data.items() if end <= now]:
                    del self._data[k]
            v = self._live(key, now)
            self._data[key] = (v[0] + 1, v[1]) if v else (1, now + window_s)

    def get(self, key: str) -> tuple[int, float]:
        """(failures in the current window, seconds until it ends)."""
        now = time.monotonic()
        with self._lock:
            v = self._live(key, now)
        return (v[0], v[1] - now) if v else (0, 0.0)

    def reset(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)


class RedisCounters:
    """The same counters in Redis (``SET NX EX`` starts the window, ``INCR`` keeps its TTL)."""

    def __init__(self, url: str):
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def hit(self, key: str, window_s: int) -> None:
        pipe = self.client.pipeline()
        pipe.set(key, 0, ex=window_s, nx=True)
        pipe.incr(key)
        pipe.execute()

    def get(self, key: str) -> tuple[int, float]:
        pipe = self.client.pipeline()
        pipe.get(key)
        pipe.pttl(key)
        count, pttl = pipe.execute()
        if count is None or pttl is None or pttl < 0:
            return 0, 0.0
        return int(count), pttl / 1000.0

    def reset(self, key: str) -> None:
        self.client.delete(key)


class LoginLimiter:
    """Failed-login counters per username and per client address (see the module docstring)."""

    def __init__(self, prefix: str, per_user: int, per_ip: int, window_s: int, redis_url: str | None = None):
        self.prefix = prefix
        self.per_user = per_user
        self.per_ip = per_ip
        self.window_s = window_s
        self.memory = MemoryCounters()
        self.backend: MemoryCounters | RedisCounters = RedisCounters(redis_url) if redis_url else self.memory

    def _call(self, op: str, *args):
        try:
            return getattr(self.backend, op)(*args)
        except Exception as e:  # Redis down: keep limiting, in this process
            log.error("rate-limit store failed (%s: %s); using this process's counters", type(e).__name__, e)
            return getattr(self.memory, op)(*args)

    def _keys(self, username: str, ip: str) -> list[tuple[str, int]]:
        name = hashlib.sha256(username.strip().lower().encode("utf-8", "replace")).hexdigest()[:32]
        return [(f"{self.prefix}user:{name}", self.per_user), (f"{self.prefix}ip:{ip}", self.per_ip)]

    def retry_after(self, username: str, ip: str) -> int | None:
        """Seconds to wait when this name or address is blocked, else None."""
        wait = 0.0
        for key, limit in self._keys(username, ip):
            count, left = self._call("get", key)
            if count >= limit:
                wait = max(wait, left)
        return max(1, math.ceil(wait)) if wait > 0 else None

    def failed(self, username: str, ip: str) -> None:
        for key, _ in self._keys(username, ip):
            self._call("hit", key, self.window_s)

    def succeeded(self, username: str, ip: str) -> None:
        self._call("reset", self._keys(username, ip)[0][0])


def limiter() -> LoginLimiter:
    return current_app.extensions["login_limiter"]


def client_ip() -> str:
    return request.remote_addr or "unknown"


def too_many_logins(retry_after: int, api: bool):
    """The 429 answer of a blocked login."""
    msg = f"too many failed logins: try again in {retry_after} s"
    if api:
        resp = jsonify(error=msg, retry_after=retry_after)
    else:
        from .auth import _safe_next

        resp = current_app.make_response(
            render_template("login.html", next=_safe_next(request.form.get("next")), error=msg))
    resp.status_code = 429
    resp.headers["Retry-After"] = str(retry_after)
    return resp


# -- set-up -----------------------------------------------------------------------------------


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _check_nul_bytes():
    """Text with NUL characters is refused up front (400): PostgreSQL cannot store it, and no
    field of ours needs it. Covers the path, the query, form fields and JSON bodies."""
    bad = "\x00" in request.path or any(_has_nul(v) for v in request.args.values())
    if not bad and request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        bad = any(_has_nul(v) for v in request.form.values())
    if not bad and request.is_json:
        bad = _has_nul(request.get_json(silent=True))
    if bad:
        msg = "text must not contain NUL (\\0) characters"
        if request.path.startswith("/api/"):
            return jsonify(error=msg), 400
        return msg, 400
    return None


def init_app(app: Flask) -> None:
    """Install the CSRF and size checks (after the role check) and the login limiter."""
    import os

    cfg = app.config
    cfg.setdefault("CSRF_ENABLED", True)
    cfg.setdefault("MAX_JSON_BYTES", 32 * 1024**2)
    cfg.setdefault("LOGIN_MAX_FAILURES_PER_USER", 10)
    cfg.setdefault("LOGIN_MAX_FAILURES_PER_IP", 30)
    cfg.setdefault("LOGIN_WINDOW_S", 300)
    cfg.setdefault("RATE_LIMIT_PREFIX", "interformer:ratelimit:")
    redis_url = cfg.get("RATE_LIMIT_REDIS_URL", cfg.get("REDIS_URL", os.environ.get("REDIS_URL")))
    app.extensions["login_limiter"] = LoginLimiter(
        cfg["RATE_LIMIT_PREFIX"], int(cfg["LOGIN_MAX_FAILURES_PER_USER"]), int(cfg["LOGIN_MAX_FAILURES_PER_IP"]),
        int(cfg["LOGIN_WINDOW_S"]), redis_url or None)

    hops = int(cfg.get("PROXY_FIX") or os.environ.get("INTERFORMER_PROXY_FIX") or 0)
    if hops > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    app.jinja_env.globals["csrf_token"] = csrf_token
    app.before_request(_check_json_size)
    app.before_request(_check_nul_bytes)
    app.before_request(_check_csrf)
