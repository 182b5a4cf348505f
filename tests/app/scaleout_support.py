"""Pieces of the scale-out and fault tests: a PostgreSQL database of their own, unique Redis
names, processes of the real commands (``interformer serve`` / ``worker``, ``moto_server``),
an HTTP client that logs in like the browser, and a TCP proxy that can be cut or throttled.

(A module of its own, not conftest: several conftest.py files share that module name.)
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
APP_TESTS = Path(__file__).resolve().parent
BROWSER_TESTS = REPO / "tests" / "browser"
PG_URL = os.environ.get("INTERFORMER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("INTERFORMER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
FAKE_PROVIDER = "fake_model:FakePyramidProvider"
SLOW_PROVIDER = "slow_provider:slow_fake_provider"


def postgres_database(prefix: str = "interformer_test") -> Iterator[str]:
    """A fresh PostgreSQL database for the caller (dropped afterwards); its URL. The storage and
    API tests (conftest.py) and the scale-out tests each get their own."""
    import pytest

    from webapp.db import DatabaseUnreachable, temporary_postgres_database

    with ExitStack() as stack:
        try:
            url = stack.enter_context(temporary_postgres_database(PG_URL, prefix))
        except DatabaseUnreachable as e:
            pytest.fail(f"{e}; the storage and API tests run on SQLite and PostgreSQL. Start PostgreSQL or point "
                        "INTERFORMER_TEST_POSTGRES_URL at one.", pytrace=False)
        yield url


def postgres_database_with_users(prefix: str, users: dict[str, str]) -> Iterator[str]:
    """``postgres_database`` with ``users`` (name -> role) created in it; its URL."""
    for url in postgres_database(prefix):
        make_users(url, users)
        yield url


def redis_or_fail():
    import pytest

    from webapp.jobs_redis import RedisUnavailableError, connect

    try:
        return connect(REDIS_URL)
    except RedisUnavailableError as e:
        pytest.fail(f"{e}; the scale-out tests need Redis (INTERFORMER_TEST_REDIS_URL)", pytrace=False)


def unique(prefix: str) -> str:
    """A name no other test run uses (queues, Socket.IO channels, buckets)."""
    return f"{prefix}-{os.getpid()}-{secrets.token_hex(4)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], object], timeout: float, what: str, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def make_users(database_url: str, names: dict[str, str]) -> None:
    """Accounts name -> role ('admin', 'annotator', 'reviewer'), password '<name>-password'."""
    from app_helpers import FAST_HASH

    from webapp.accounts import create_user
    from webapp.db import Database
    from webapp.models import Role

    db = Database(database_url)
    db.upgrade()
    try:
        with db.session() as s:
            for name, role in names.items():
                create_user(s, name, f"{name}-password", Role(role), FAST_HASH)
    finally:
        db.dispose()


class Proc:
    """A command of ours in a process of its own (its output in a log file, shown on failure)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.args = args
        self.log = log
        full_env = {**os.environ, **env}
        full_env["PYTHONPATH"] = os.pathsep.join([str(BROWSER_TESTS), str(APP_TESTS), str(REPO),
                                                  full_env.get("PYTHONPATH", "")])
        full_env["PYTHONUNBUFFERED"] = "1"
        self._out = open(log, "ab")
        self.popen = subprocess.Popen(args, env=full_env, stdout=self._out, stderr=subprocess.STDOUT, cwd=REPO,
                                      start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)
        self._out.close()


def interformer(*args: str) -> list[str]:
    return [sys.executable, "-m", "model_export.cli", *args]


def start_worker(tmp: Path, env: dict[str, str], provider: str = FAKE_PROVIDER, lease: float = 2.0,
                 name: str = "worker") -> Proc:
    proc = Proc(interformer("worker", "--provider", provider, "--data-dir", str(tmp / "worker-data"),
                            "--lease", str(lease)), env, tmp / f"{name}.log")
    wait_for(lambda: "interformer worker: queue" in proc.output() or not proc.alive(), 60, f"{name} to start")
    assert proc.alive(), proc.output()
    return proc


def start_web(tmp: Path, env: dict[str, str], port: int, name: str = "web", provider: str | None = None,
              data: str | None = None) -> Proc:
    """``interformer serve`` on ``port``, its data in ``tmp/<data or name>-data``."""
    args = ["serve", "--model-dir", str(tmp / "model"), "--data-dir", str(tmp / f"{data or name}-data"),
            "--port", str(port)]
    if provider:
        args += ["--provider", provider]
    proc = Proc(interformer(*args), env, tmp / f"{name}.log")

    def up() -> bool:
        if not proc.alive():
            return True
        try:
            return requests.get(f"http://127.0.0.1:{port}/login", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for(up, 60, f"{name} to answer on port {port}", every=0.1)
    assert proc.alive(), proc.output()
    return proc


def http_login(base: str, username: str) -> requests.Session:
    """A logged-in HTTP session (cookie, and the CSRF header when the server hands one out)."""
    s = requests.Session()
    r = s.post(f"{base}/api/auth/login", json={"username": username, "password": f"{username}-password"}, timeout=10)
    assert r.status_code == 200, r.text
    token = r.json().get("csrf_token")
    if token:
        s.headers["X-CSRF-Token"] = token
    return s


def client_login(client, username: str):
    """The Flask test client logged in (with the CSRF header when the server hands one out)."""
    r = client.post("/api/auth/login", json={"username": username, "password": f"{username}-password"})
    assert r.status_code == 200, r.get_json()
    token = (r.get_json() or {}).get("csrf_token")
    if token:
        client.environ_base["HTTP_X_CSRF_TOKEN"] = token
    return client


@contextmanager
def moto_s3(tmp: Path) -> Iterator[str]:
    """moto's S3 server on a free loopback port; yields its endpoint URL."""
    port = free_port()
    proc = Proc([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], {}, tmp / "moto.log")
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(url, timeout=1).status_code < 500
        except requests.RequestException:
            return not proc.alive()

    try:
        wait_for(up, 30, "moto's S3 server", every=0.1)
        assert proc.alive(), proc.output()
        yield url
    finally:
        proc.kill()


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def make_bucket(endpoint: str, bucket: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)


class TcpProxy:
    """A loopback TCP proxy to ``target``: ``cut()`` drops every connection and refuses new ones
    until ``restore()``; ``rate`` (bytes/s, client to server) throttles uploads; ``sent`` counts
    the bytes forwarded to the server."""

    def __init__(self, target_host: str, target_port: int, rate: float | None = None):
        self.target = (target_host, target_port)
        self.rate = rate
        self.sent = 0
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, server))
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        chunk = 16384 if not (upstream and self.rate) else max(1024, int(self.rate / 20))
        try:
            while True:
                data = src.recv(chunk)
                if not data:
                    break
                dst.sendall(data)
                if upstream:
                    self.sent += len(data)
                    if self.rate:
                        time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
                with self._lock:
                    self._conns.discard(sock)

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            conns = list(self._conns)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self._listener.close()
