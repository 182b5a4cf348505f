"""Load test: N simulated annotators against a running app (loopback), then a check that every
save the server acknowledged is in the database.

    python bench/load.py                                  # starts the app itself (SQLite), 200 annotators, 60 s
    DATABASE_URL=postgresql://... python bench/load.py    # the app it starts uses PostgreSQL
    python bench/load.py --url http://127.0.0.1:5000 --invite TOKEN --database-url ...   # a running app
    python bench/load.py --users 20 --duration 10 --json out.json

Each annotator (its own cookie jar, async HTTP with aiohttp) logs in, then until the time is up:
takes the next image from the queue (``POST /api/projects/<pid>/queue/next``), fetches its file
and its feature pyramid, and per object autosaves a draft after each of a few clicks (``PUT
.../draft``) and saves the object (``POST .../objects`` with a client id), then submits the
image. ``--think-ms`` is the pause before each click (a person clicks about once a second; the
default is shorter to load the server).

Started by the script (no ``--url``), ``--topology`` (bench/load_topology.py):

* ``single`` (default): ``interformer serve`` in one child process (Flask-SocketIO's threaded
  server, the in-process precompute worker) on ``--database-url``/``DATABASE_URL``, else SQLite
  in a temporary data directory;
* ``scaled``: ``--web`` (2) ``interformer serve`` processes and ``--workers`` (1)
  ``interformer worker`` processes with the Redis of ``--redis`` (RQ queue and Socket.IO
  channel named for the run) and one shared blob folder; the annotators are dealt round-robin
  over the web processes;
* ``both``: ``single`` then ``scaled`` (``--order``), back to back, with the same annotators, duration and
  project shape, each on a fresh PostgreSQL database made on ``--postgres`` (and dropped).
  ``scaled`` alone also gets a fresh database unless ``--database-url`` names one.

The processes use the tests' fake pyramid provider (``tests/browser/fake_model.py``: the real
pyramid file format and level shapes for 512-pixel canvases, computed in milliseconds;
``--provider`` names another ``module:factory``). The script makes a demo-like project (three
classes, ``--images`` generated images, overlap ``--overlap``) and its accounts
(``load-<run>-<i>``, cheap password hashes so that 200 logins do not measure scrypt) through
the database and the API, waits for the precompute, then loads. Against a running app
(``--url``, several for several web processes: round-robin) the annotators sign up with an
invitation link (``--invite``, enough uses) or log in as ``--user-format``/``--password-format``
accounts, and ``--project`` names the project.

Output: per request kind the count, errors, throughput and p50/p99 latency; the saves
acknowledged (200/201) and how many of them the database holds (by object id, with the same
client id, author, class and area, not deleted; checked after the started processes have
stopped) — ``lost`` must be 0 — and the CPU seconds each started process and the script used
during the load, and the machine's busy fraction; as a table, as a markdown table and as JSON
(``--json``; with ``both``: ``{"topologies": {"single": ..., "scaled": ...}}``). Exit status 1
when an acknowledged save is missing.

    python bench/load.py --topology both --json docs/results/load.json   # the README's numbers
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import load_topology  # noqa: E402

FAST_HASH = "scrypt:1024:8:1"
CLASSES = [{"name": "object", "color": "#e6194b"}, {"name": "cell", "color": "#3cb44b"},
           {"name": "building", "color": "#4363d8"}]


# -- measurements ------------------------------------------------------------------------------


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    acked: list[dict] = field(default_factory=list)
    pyramid_bytes: list[int] = field(default_factory=list)
    by_url: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    empty_queue: int = 0
    submitted: int = 0
    logged_in: int = 0

    def record(self, kind: str, seconds: float, status: int | str, ok: bool) -> None:
        self.latencies[kind].append(seconds)
        if not ok:
            self.errors[kind][str(status)] += 1


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


class Client:
    """One annotator's HTTP session (cookies, CSRF token) that times every request."""

    def __init__(self, base: str, stats: Stats, timeout_s: float):
        import aiohttp

        self.base = base
        self.stats = stats
        self.token = ""
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies for 127.0.0.1
                                          timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def call(self, kind: str, method: str, path: str, ok=(200, 201), body: str = "json", **kw):
        headers = kw.pop("headers", {})
        if method != "GET" and self.token:
            headers["X-CSRF-Token"] = self.token
        self.stats.by_url[self.base] += 1
        t0 = time.perf_counter()
        try:
            async with self.http.request(method, self.base + path, headers=headers, **kw) as resp:
                data = await (resp.json(content_type=None) if body == "json" else resp.read())
                status = resp.status
        except Exception as e:  # network errors and timeouts: counted, never an acknowledged save
            self.stats.record(kind, time.perf_counter() - t0, type(e).__name__, False)
            return None, None
        self.stats.record(kind, time.perf_counter() - t0, status, status in ok)
        return status, data

    async def close(self):
        await self.http.close()


# -- one annotator -----------------------------------------------------------------------------


def rect_rle(h: int, w: int, rng: random.Random) -> tuple[dict, int]:
    """A random rectangle as COCO uncompressed RLE (column-major, background first) and its area."""
    x0, y0 = rng.randrange(0, w - 4), rng.randrange(0, h - 4)
    x1, y1 = rng.randrange(x0 + 2, min(w, x0 + w // 2) + 1), rng.randrange(y0 + 2, min(h, y0 + h // 2) + 1)
    counts: list[int] = []
    bg = 0  # background run carried over from the previous columns
    for x in range(w):
        if x0 <= x < x1:
            counts += [bg + y0, y1 - y0]
            bg = h - y1
        else:
            bg += h
    counts.append(bg)
    return {"size": [h, w], "counts": counts}, (x1 - x0) * (y1 - y0)


async def annotator(i: int, args, cfg: dict, stats: Stats, end: float) -> None:
    rng = random.Random(args.seed * 100_003 + i)
    c = Client(cfg["urls"][i % len(cfg["urls"])], stats, args.timeout)  # round-robin over the web processes
    try:
        if cfg.get("invite"):
            name = f"load-{cfg['run']}-{i}"
            st, data = await c.call("signup", "POST", f"/api/invites/{cfg['invite']}/accept",
                                    json={"username": name, "password": f"{name}-password"})
        else:
            name = cfg["user_format"].format(run=cfg["run"], i=i)
            st, data = await c.call("login", "POST", "/api/auth/login",
                                    json={"username": name, "password": cfg["password_format"].format(run=cfg["run"], i=i)})
        if st not in (200, 201):
            return
        c.token = data["csrf_token"]
        stats.logged_in += 1
        pid = cfg["project_id"]
        while time.monotonic() < end:
            st, work = await c.call("queue_next", "POST", f"/api/projects/{pid}/queue/next")
            if st != 200:
                await asyncio.sleep(0.5)
                continue
            im = work.get("image")
            if im is None:
                stats.empty_queue += 1
                await asyncio.sleep(1.0)
                continue
            await c.call("image_file", "GET", im["urls"]["file"], body="bytes")
            st, pyr = await c.call("pyramid", "GET", im["urls"]["pyramid"], ok=(200,), body="bytes")
            if st == 200:
                stats.pyramid_bytes.append(len(pyr))
            h, w = im["height"], im["width"]
            rev = 0
            for _ in range(rng.randint(1, args.objects)):
                clicks = []
                class_id = rng.choice(cfg["class_ids"])
                for k in range(rng.randint(1, args.clicks)):
                    await asyncio.sleep(rng.uniform(0, 2 * args.think_ms) / 1000)
                    if time.monotonic() >= end:
                        break
                    clicks.append({"x": rng.uniform(0, w - 1), "y": rng.uniform(0, h - 1), "positive": k == 0 or rng.random() < 0.7,
                                   "t": 1000 * k})
                    rev += 1
                    await c.call("draft", "PUT", im["urls"]["draft"],
                                 json={"rev": rev, "clicks": clicks, "class_id": class_id, "elapsed_ms": 1000.0 * k})
                if time.monotonic() >= end:
                    break
                rle, area = rect_rle(h, w, rng)
                client_id = uuid.uuid4().hex
                st, data = await c.call("save_object", "POST", im["urls"]["objects"],
                                        json={"class_id": class_id, "rle": rle, "clicks": clicks or [
                                            {"x": 1, "y": 1, "positive": True, "t": 0}],
                                              "time_spent": 1.5, "client_id": client_id})
                if st in (200, 201):
                    o = data["object"]
                    stats.acked.append({"id": o["id"], "client_id": client_id, "user": name, "image_id": im["id"],
                                        "class_id": class_id, "area": area})
            if time.monotonic() >= end:
                break
            st, _ = await c.call("submit", "POST", im["urls"]["submit"])
            if st == 200:
                stats.submitted += 1
    finally:
        await c.close()


async def run_load(args, cfg: dict) -> tuple[Stats, float]:
    stats = Stats()
    start = time.monotonic()
    end = start + args.duration
    # log in gradually over the first seconds (a crowd does not arrive in one millisecond)
    tasks = []
    for i in range(args.users):
        tasks.append(asyncio.create_task(annotator(i, args, cfg, stats, end)))
        if args.ramp_s > 0:
            await asyncio.sleep(args.ramp_s / args.users)
    await asyncio.gather(*tasks)
    return stats, time.monotonic() - start


# -- the app: started here, or given -----------------------------------------------------------


def test_image(seed: int, w: int = 512, h: int = 384) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[:] = rng.integers(40, 200, 3)
    for _ in range(4):
        cx, cy, r = rng.integers(40, w - 40), rng.integers(40, h - 40), rng.integers(15, 60)
        rgb[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = rng.integers(0, 256, 3)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def seed_started_app(args, url: str, database_url: str, run: str) -> dict:
    """Accounts through the database (cheap hashes), the project and images through the API."""
    import requests
    from sqlalchemy import select

    from webapp.accounts import create_user
    from webapp.db import Database
    from webapp.models import Role, User

    db = Database(database_url)
    admin = f"load-{run}-admin"
    with db.session() as s:
        create_user(s, admin, f"{admin}-password", Role.ADMIN, FAST_HASH)
        for i in range(args.users):
            name = f"load-{run}-{i}"
            create_user(s, name, f"{name}-password", Role.ANNOTATOR, FAST_HASH)
        assert s.scalar(select(User.id).where(User.username == admin))
    db.dispose()
    http = requests.Session()
    r = http.post(url + "/api/auth/login", json={"username": admin, "password": f"{admin}-password"})
    r.raise_for_status()
    h = {"X-CSRF-Token": r.json()["csrf_token"]}
    p = http.post(url + "/api/projects", json={"name": f"Load {run}", "classes": CLASSES}, headers=h).json()["project"]
    r = http.patch(url + f"/api/projects/{p['id']}/settings", json={"overlap": args.overlap}, headers=h)
    r.raise_for_status()
    for k in range(0, args.images, 8):
        files = [("files", (f"load-{j}.png", test_image(j), "image/png")) for j in range(k, min(args.images, k + 8))]
        r = http.post(url + f"/api/projects/{p['id']}/images", files=files, headers=h)
        assert r.status_code == 201, r.text
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        prog = http.get(url + f"/api/projects/{p['id']}/progress").json()
        if prog["done"] + prog["failed"] >= args.images:
            break
        time.sleep(0.3)
    else:
        raise SystemExit(f"the precompute did not finish: {prog}")
    return {"project_id": p["id"], "class_ids": [c["id"] for c in p["classes"]],
            "user_format": "load-{run}-{i}", "password_format": "load-{run}-{i}-password"}


def given_app(args, run: str) -> dict:
    import requests

    cfg = {"user_format": args.user_format, "password_format": args.password_format, "invite": args.invite}
    if not args.project:
        raise SystemExit("--url needs --project (the project id)")
    http = requests.Session()
    url = args.url[0].rstrip("/")
    name = args.user_format.format(run=run, i=0) if not args.invite else None
    if name:
        r = http.post(url + "/api/auth/login",
                      json={"username": name, "password": args.password_format.format(run=run, i=0)})
        r.raise_for_status()
        p = http.get(url + f"/api/projects/{args.project}").json()["project"]
        cfg["class_ids"] = [c["id"] for c in p["classes"]]
    else:
        cfg["class_ids"] = args.class_ids or []
        if not cfg["class_ids"]:
            raise SystemExit("with --invite give --class-ids (the project's label class ids)")
    cfg["project_id"] = args.project
    return cfg


# -- the check: every acknowledged save is in the database -------------------------------------


def verify(acked: list[dict], database_url: str) -> dict:
    from sqlalchemy import select

    from webapp.db import Database
    from webapp.models import AnnotationObject, User

    db = Database(database_url)
    missing, wrong = [], []
    try:
        with db.session() as s:
            by_id = {}
            ids = [a["id"] for a in acked]
            for k in range(0, len(ids), 1000):
                rows = s.execute(select(AnnotationObject, User.username).join(User, User.id == AnnotationObject.author_id)
                                 .where(AnnotationObject.id.in_(ids[k:k + 1000]))).all()
                by_id.update({o.id: (o, name) for o, name in rows})
            for a in acked:
                row = by_id.get(a["id"])
                if row is None:
                    missing.append(a)
                    continue
                o, name = row
                if (o.client_id != a["client_id"] or name != a["user"] or o.image_id != a["image_id"]
                        or o.label_class_id != a["class_id"] or o.area != a["area"] or o.deleted_at is not None):
                    wrong.append({**a, "stored": {"client_id": o.client_id, "user": name, "area": o.area,
                                                  "deleted": o.deleted_at is not None}})
    finally:
        db.dispose()
    return {"acknowledged": len(acked), "found_intact": len(acked) - len(missing) - len(wrong),
            "missing": len(missing), "changed": len(wrong), "lost": len(missing) + len(wrong),
            "examples": (missing + wrong)[:5]}


def report(args, stats: Stats, elapsed: float, check: dict, meta: dict) -> dict:
    kinds = {}
    total = 0
    for kind, lat in sorted(stats.latencies.items()):
        n = len(lat)
        total += n
        errs = dict(stats.errors.get(kind, {}))
        kinds[kind] = {"count": n, "errors": sum(errs.values()), "errors_by_status": errs, "per_s": n / elapsed,
                       "p50_ms": 1000 * pct(lat, 0.5), "p99_ms": 1000 * pct(lat, 0.99),
                       "mean_ms": 1000 * statistics.fmean(lat) if lat else float("nan")}
    return {
        "meta": meta,
        "config": {k: getattr(args, k) for k in ("users", "duration", "think_ms", "objects", "clicks", "images", "overlap",
                                                 "ramp_s")},
        "elapsed_s": elapsed,
        "annotators_logged_in": stats.logged_in,
        "requests": total,
        "requests_per_s": total / elapsed,
        "errors": sum(k["errors"] for k in kinds.values()),
        "by_kind": kinds,
        "requests_by_web_process": dict(stats.by_url),
        "images_submitted": stats.submitted,
        "empty_queue_answers": stats.empty_queue,
        "pyramid_bytes_mean": statistics.fmean(stats.pyramid_bytes) if stats.pyramid_bytes else None,
        "saves": check,
    }


def print_report(r: dict) -> None:
    print(f"\n[{r.get('topology', 'given app')}] {r['annotators_logged_in']} annotators, {r['elapsed_s']:.1f} s, "
          f"{r['requests']} requests ({r['requests_per_s']:.1f}/s), {r['errors']} errors, "
          f"{r['images_submitted']} images submitted")
    print(f"{'kind':<13}{'count':>8}{'per s':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}  by status")
    for kind, k in r["by_kind"].items():
        print(f"{kind:<13}{k['count']:>8}{k['per_s']:>8.1f}{k['p50_ms']:>9.1f}{k['p99_ms']:>9.1f}{k['errors']:>8}  "
              f"{k['errors_by_status'] or ''}")
    s = r["saves"]
    print(f"saves acknowledged {s['acknowledged']}, in the database intact {s['found_intact']}, lost {s['lost']}")
    cpu = r.get("cpu")
    if cpu:
        print(f"CPU s during the load: app {cpu['app_cpu_s']} {cpu['app_processes_cpu_s']}, load script "
              f"{cpu['load_script_cpu_s']}; machine busy {cpu['machine_busy_fraction']} of {cpu['cores']} cores")


KIND_ORDER = ["login", "signup", "queue_next", "image_file", "pyramid", "draft", "save_object", "submit"]
TITLES = {"single": "single process", "scaled": "scaled out", "given": "the app at --url"}


def markdown(reports: dict[str, dict]) -> str:
    """The reports side by side: a summary table and p50/p99 per request kind."""
    names = sorted(reports, key=lambda n: list(TITLES).index(n) if n in TITLES else len(TITLES))
    rs = [reports[n] for n in names]

    def title(n: str, r: dict) -> str:
        st = r.get("meta", {}).get("settings", {})
        if n == "scaled":
            return f"scaled out ({st.get('web_processes')} web + {st.get('workers')} worker)"
        return TITLES.get(n, n)

    def pct_busy(r: dict) -> str:
        b = (r.get("cpu") or {}).get("machine_busy_fraction")
        return "—" if b is None else f"{100 * b:.0f} %"

    def cpu_split(r: dict) -> str:
        cpu = r.get("cpu") or {}
        return f"{cpu.get('app_cpu_s', '—')} / {cpu.get('load_script_cpu_s', '—')}"

    rows = [
        ("annotators logged in", lambda r: f"{r['annotators_logged_in']}"),
        ("requests", lambda r: f"{r['requests']}"),
        ("throughput (requests/s)", lambda r: f"{r['requests_per_s']:.1f}"),
        ("masks saved per s", lambda r: f"{r['saves']['acknowledged'] / r['elapsed_s']:.1f}"),
        ("images submitted", lambda r: f"{r['images_submitted']}"),
        ("errors", lambda r: f"{r['errors']}"),
        ("saves acknowledged", lambda r: f"{r['saves']['acknowledged']}"),
        ("acknowledged saves lost", lambda r: f"{r['saves']['lost']}"),
        ("CPU s: app processes / load script", cpu_split),
        ("machine busy (all cores)", pct_busy),
    ]
    out = ["| | " + " | ".join(title(n, r) for n, r in zip(names, rs)) + " |",
           "| --- |" + " ---: |" * len(rs)]
    out += [f"| {label} | " + " | ".join(f(r) for r in rs) + " |" for label, f in rows]
    kinds = [k for k in KIND_ORDER if any(k in r["by_kind"] for r in rs)]
    kinds += sorted({k for r in rs for k in r["by_kind"]} - set(kinds))
    heads = " | ".join(f"{title(n, r)}: count | p50 ms | p99 ms" for n, r in zip(names, rs))
    out += ["", f"| request kind | {heads} |",
            "| --- |" + " ---: | ---: | ---: |" * len(rs)]
    for kind in kinds:
        cells = []
        for r in rs:
            k = r["by_kind"].get(kind)
            cells += ["—"] * 3 if k is None else [f"{k['count']}" + (f" ({k['errors']} err)" if k["errors"] else ""),
                                                 f"{k['p50_ms']:.0f}", f"{k['p99_ms']:.0f}"]
        out.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def run_started(args, topology: str, database_url: str, folder: Path, run: str) -> dict:
    """Start ``topology`` on ``database_url``, make the project, load it, stop it, check the saves."""
    with load_topology.deployment(topology, folder, database_url, args) as dep:
        cfg = {"urls": dep.urls, "run": run, **seed_started_app(args, dep.urls[0], database_url, run)}
        print(f"[{topology}] {args.users} annotators for {args.duration:.0f} s over {len(dep.urls)} web process(es) "
              f"(project {cfg['project_id']}, {dep.description}) ...", flush=True)
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        cpu = load_topology.CpuWindow(dep.children)
        cpu.start()
        stats, elapsed = asyncio.run(run_load(args, cfg))
        cpu_used = cpu.stop()
        meta = {"app": f"started by bench/load.py: {dep.description}", "settings": dep.settings,
                "database": database_url.split(":", 1)[0], "provider": args.provider, "load_started": started,
                "processes_alive_after_load": {c.name: c.popen.poll() is None for c in dep.children}}
    check = verify(stats.acked, database_url)  # after the processes stopped: what they acknowledged is durable
    r = report(args, stats, elapsed, check, meta)
    r["topology"] = topology
    r["cpu"] = cpu_used
    return r


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0], "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "platform": sys.platform}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=200, help="simulated annotators (default %(default)s)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load per topology (default %(default)s)")
    ap.add_argument("--think-ms", type=float, default=150.0, help="mean pause before each click (default %(default)s)")
    ap.add_argument("--objects", type=int, default=3, help="at most this many objects per image (default %(default)s)")
    ap.add_argument("--clicks", type=int, default=3, help="at most this many clicks per object (default %(default)s)")
    ap.add_argument("--ramp-s", type=float, default=5.0, help="annotators arrive over this many seconds")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-request timeout in seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write the report here")
    # the app started here
    ap.add_argument("--topology", choices=("single", "scaled", "both"), default="single",
                    help="what the script starts (default %(default)s; bench/load_topology.py)")
    ap.add_argument("--order", type=lambda v: v.split(","), default=["single", "scaled"],
                    help="both: which runs first (default single,scaled)")
    ap.add_argument("--images", type=int, default=100, help="images of the project it makes (default %(default)s)")
    ap.add_argument("--overlap", type=int, default=10, help="annotators per image (default %(default)s)")
    ap.add_argument("--provider", default="fake_model:FakePyramidProvider", help="pyramid provider module:factory")
    ap.add_argument("--web", type=int, default=2, help="scaled: web processes (default %(default)s)")
    ap.add_argument("--workers", type=int, default=1, help="scaled: precompute workers (default %(default)s)")
    ap.add_argument("--postgres", default=load_topology.DEFAULT_POSTGRES,
                    help="PostgreSQL server for fresh databases (scaled, both) (default %(default)s)")
    ap.add_argument("--redis", default=load_topology.DEFAULT_REDIS, help="scaled: Redis (default %(default)s)")
    ap.add_argument("--keep", action="store_true", help="keep the data directory (logs) and the databases")
    # a running app
    ap.add_argument("--url", action="append", default=None,
                    help="a running app's web process (repeat for several: annotators round-robin); else started here")
    ap.add_argument("--project", type=int, default=None)
    ap.add_argument("--invite", default=None, help="invitation token: annotators sign up with it")
    ap.add_argument("--class-ids", type=lambda s: [int(x) for x in s.split(",")], default=None)
    ap.add_argument("--user-format", default="annotator{i}", help="pre-made accounts, e.g. 'ann{i}'")
    ap.add_argument("--password-format", default="annotator{i}-password")
    ap.add_argument("--database-url", default=None, help="the app's database (default DATABASE_URL; not with both)")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(REPO))
    run = secrets.token_hex(3)
    if args.url is not None:
        database_url = args.database_url or os.environ.get("DATABASE_URL")
        if not database_url:
            raise SystemExit("--url needs --database-url (or DATABASE_URL) for the check of the saves")
        cfg = {"urls": [u.rstrip("/") for u in args.url], "run": run, **given_app(args, run)}
        print(f"{args.users} annotators for {args.duration:.0f} s against {', '.join(cfg['urls'])} "
              f"(project {cfg['project_id']}) ...", flush=True)
        cpu = load_topology.CpuWindow([])  # this machine's busy fraction and the script's own CPU
        cpu.start()
        stats, elapsed = asyncio.run(run_load(args, cfg))
        cpu_used = cpu.stop()
        check = verify(stats.acked, database_url)
        r = report(args, stats, elapsed, check, {"app": cfg["urls"], "database": database_url.split(":", 1)[0],
                                                 **machine()})
        r["cpu"] = cpu_used
        print_report(r)
        reports = {"given": r}
        out = r
    else:
        if sorted(args.order) != ["scaled", "single"]:
            raise SystemExit("--order is single,scaled or scaled,single")
        if args.topology == "both" and args.database_url:
            raise SystemExit("--topology both makes a fresh database per topology on --postgres; no --database-url")
        topologies = args.order if args.topology == "both" else [args.topology]
        tmp = Path(tempfile.mkdtemp(prefix="interformer-load-"))
        reports = {}
        try:
            for topology in topologies:
                given = None if args.topology == "both" else (args.database_url or os.environ.get("DATABASE_URL"))
                with ExitStack() as stack:
                    if given:
                        database_url = given
                    elif topology == "single" and args.topology == "single":
                        database_url = f"sqlite:///{tmp / 'interformer.sqlite3'}"
                    else:
                        database_url = stack.enter_context(load_topology.postgres_database(args.postgres, args.keep))
                    r = run_started(args, topology, database_url, tmp / topology, f"{run}{topology[:2]}")
                    r["meta"].update(machine())
                    reports[topology] = r
                    print_report(r)
        finally:
            if args.keep:
                print(f"kept: {tmp}")
            else:
                load_topology.remove(tmp)
        if len(reports) == 1:
            out = next(iter(reports.values()))
        else:
            out = {"meta": {**machine(), "order": topologies,
                            "note": "both topologies ran back to back in one run, on the same machine, each on a fresh "
                                    "PostgreSQL database; the load script, the app processes, PostgreSQL and Redis all "
                                    "share the machine's cores"},
                   "config": reports[topologies[0]]["config"], "topologies": reports}
    table = markdown(reports)
    print("\n" + table)
    if args.json:
        if len(reports) > 1:
            out["table_markdown"] = table
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    return 1 if any(r["saves"]["lost"] for r in reports.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
