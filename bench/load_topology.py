"""The deployments bench/load.py starts and loads (``--topology single|scaled|both``).

``single``
    one ``interformer serve`` process (Flask-SocketIO's threaded server) with the in-process
    precompute thread, blobs in its data folder, Socket.IO in memory: the default install.
``scaled``
    ``--web`` (default 2) ``interformer serve`` processes and ``--workers`` (default 1)
    ``interformer worker`` processes, as in docs/deploy.md: ``PRECOMPUTE_WORKER=redis``, jobs on
    an RQ queue and live events on a Socket.IO channel of the Redis at ``--redis`` (names unique
    to the run), one shared blob folder (``BLOB_STORE_URL``), one shared session key. The web
    processes have no pyramid model; the workers compute the pyramids. The annotators are dealt
    round-robin over the web processes (annotator i talks to web process i mod W).

Both run on PostgreSQL: a fresh database created on the server ``--postgres`` (default
``postgresql://postgres@127.0.0.1:5432/test``) for each topology and dropped afterwards, so the
two start from the same empty state. Everything listens on 127.0.0.1 only. The processes'
logs are in the run's temporary folder (kept with ``--keep``).

``cpu_window`` measures where the CPU went during the load: the seconds of CPU each started
process used (``/proc/<pid>/stat``), the load script's own, and the machine's busy fraction
(``/proc/stat``: everything on the machine, other work and PostgreSQL and Redis included).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_POSTGRES = os.environ.get("INTERFORMER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DEFAULT_REDIS = os.environ.get("INTERFORMER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# the scale-out settings (webapp/scaleout.py): a single process must not inherit them
SCALEOUT_ENV = ("PRECOMPUTE_WORKER", "PRECOMPUTE_QUEUE", "REDIS_URL", "BLOB_STORE_URL", "SOCKETIO_MESSAGE_QUEUE",
                "SOCKETIO_CHANNEL", "RATE_LIMIT_REDIS_URL")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCALEOUT_ENV}
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests" / "browser"), str(REPO), os.environ.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Child:
    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()  # SIGTERM: a worker finishes its image first
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


def spawn(name: str, args: list[str], env: dict[str, str], folder: Path) -> Child:
    log = folder / f"{name}.log"
    out = open(log, "ab")  # noqa: SIM115 (the child holds it)
    try:
        popen = subprocess.Popen([sys.executable, "-m", "model_export.cli", *args], cwd=REPO, env=env, stdout=out,
                                 stderr=subprocess.STDOUT)
    finally:
        out.close()
    return Child(name, popen, log)


def wait_until(child: Child, ready, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.popen.poll() is not None:
            raise SystemExit(f"{child.name} exited ({child.popen.returncode}) before {what}; "
                             f"{child.log}:\n{child.tail()}")
        if ready():
            return
        time.sleep(0.2)
    child.stop()
    raise SystemExit(f"{child.name}: no {what} within {timeout:.0f} s; {child.log}:\n{child.tail()}")


def start_serve(name: str, folder: Path, env: dict[str, str], provider: str | None) -> tuple[Child, str]:
    """``interformer serve`` on a free loopback port, its data in ``folder/<name>-data``; (child, url)."""
    port = free_port()
    data = folder / f"{name}-data"
    (folder / "no-model").mkdir(exist_ok=True)
    args = ["serve", "--data-dir", str(data), "--port", str(port), "--model-dir", str(folder / "no-model")]
    if provider:
        args += ["--provider", provider]
    child = spawn(name, args, {**env, "INTERFORMER_DATA_DIR": str(data)}, folder)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(url + "/login", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    wait_until(child, up, f"an answer on {url}")
    return child, url


def start_worker(name: str, folder: Path, env: dict[str, str], provider: str) -> Child:
    data = folder / f"{name}-data"
    child = spawn(name, ["worker", "--provider", provider, "--data-dir", str(data)],
                  {**env, "INTERFORMER_DATA_DIR": str(data)}, folder)
    wait_until(child, lambda: "interformer worker: queue" in child.tail(100_000), "start message")
    return child


@dataclass
class Deployment:
    """What a topology started: the web processes' URLs (annotators round-robin over them)."""

    topology: str
    urls: list[str]
    database_url: str
    children: list[Child] = field(default_factory=list)
    description: str = ""
    settings: dict = field(default_factory=dict)


@contextmanager
def postgres_database(server_url: str, keep: bool = False) -> Iterator[str]:
    """A fresh database on the PostgreSQL server of ``server_url`` (dropped afterwards); its URL."""
    sys.path.insert(0, str(REPO))
    from webapp.db import DatabaseUnreachable, temporary_postgres_database

    with ExitStack() as stack:
        try:
            url = stack.enter_context(temporary_postgres_database(server_url, "interformer_load", keep=keep))
        except DatabaseUnreachable as e:
            raise SystemExit(f"{e}; give another with --postgres") from None
        yield url


@contextmanager
def single(folder: Path, database_url: str, provider: str) -> Iterator[Deployment]:
    env = child_env({"DATABASE_URL": database_url})
    web, url = start_serve("web", folder, env, provider)
    try:
        yield Deployment("single", [url], database_url, [web],
                         "1 interformer serve process (threaded server, precompute thread in it)",
                         {"web_processes": 1, "workers": "in-process thread", "blob_store": "the process's data folder",
                          "socketio": "in memory"})
    finally:
        web.stop()


@contextmanager
def scaled(folder: Path, database_url: str, provider: str, redis_url: str, webs: int = 2, workers: int = 1,
           run: str = "") -> Iterator[Deployment]:
    sys.path.insert(0, str(REPO))
    from webapp.jobs_redis import RedisUnavailableError, connect

    try:
        redis = connect(redis_url)
    except RedisUnavailableError as e:
        raise SystemExit(f"{e}; give another with --redis")
    run = run or secrets.token_hex(4)
    queue, channel = f"interformer-load-{run}", f"interformer-load-{run}"
    blobs = folder / "blobs"
    blobs.mkdir(exist_ok=True)
    env = child_env({"DATABASE_URL": database_url, "REDIS_URL": redis_url, "PRECOMPUTE_WORKER": "redis",
                     "PRECOMPUTE_QUEUE": queue, "SOCKETIO_CHANNEL": channel, "BLOB_STORE_URL": f"file://{blobs}",
                     "INTERFORMER_SECRET_KEY": secrets.token_hex(32)})
    children: list[Child] = []
    try:
        urls = []
        for k in range(webs):  # one after the other: the first migrates the fresh database
            child, url = start_serve(f"web{k}", folder, env, None)
            children.append(child)
            urls.append(url)
        for k in range(workers):
            children.append(start_worker(f"worker{k}", folder, env, provider))
        yield Deployment("scaled", urls, database_url, children,
                         f"{webs} interformer serve processes (threaded server, no model) + {workers} interformer "
                         "worker process(es), Redis queue and Socket.IO channel, shared blob folder",
                         {"web_processes": webs, "workers": workers, "redis": redis_url.split("@")[-1],
                          "precompute_queue": queue, "socketio_channel": channel, "blob_store": "shared local folder"})
    finally:
        for child in reversed(children):
            child.stop()
        try:
            keys = list(redis.scan_iter(match=f"*{queue}*", count=1000))
            if keys:
                redis.delete(*keys)
        finally:
            redis.close()


@contextmanager
def deployment(topology: str, folder: Path, database_url: str, args) -> Iterator[Deployment]:
    folder.mkdir(parents=True, exist_ok=True)
    if topology == "single":
        with single(folder, database_url, args.provider) as d:
            yield d
    elif topology == "scaled":
        with scaled(folder, database_url, args.provider, args.redis, args.web, args.workers) as d:
            yield d
    else:
        raise ValueError(topology)


# -- where the CPU went ------------------------------------------------------------------------


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_times() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine so far, all cores."""
    try:
        vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    total = sum(vals[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


class CpuWindow:
    """CPU used by the deployment's processes, by this script and by the machine between
    ``start()`` and ``stop()``."""

    def __init__(self, children: list[Child]):
        self.children = children

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.own0 = time.process_time()
        self.proc0 = {c.name: proc_cpu_s(c.popen.pid) for c in self.children}
        self.machine0 = machine_times()
        self.load0 = os.getloadavg()

    def stop(self) -> dict:
        wall = time.monotonic() - self.t0
        procs = {}
        for c in self.children:
            now = proc_cpu_s(c.popen.pid)
            before = self.proc0.get(c.name)
            procs[c.name] = None if now is None or before is None else round(now - before, 2)
        m1 = machine_times()
        machine = None
        if m1 and self.machine0:
            busy, total = m1[0] - self.machine0[0], m1[1] - self.machine0[1]
            machine = round(busy / total, 3) if total > 0 else None
        return {"window_s": round(wall, 2), "cores": os.cpu_count(), "app_processes_cpu_s": procs,
                "app_cpu_s": round(sum(v for v in procs.values() if v), 2),
                "load_script_cpu_s": round(time.process_time() - self.own0, 2),
                "machine_busy_fraction": machine,
                "loadavg_1m_before_after": [round(self.load0[0], 2), round(os.getloadavg()[0], 2)]}


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
