"""bench/load.py in small: it starts the app (one process) on the test database (SQLite and
PostgreSQL), runs a few annotators for a few seconds, and every save the server acknowledged
is in the database; its check does notice a missing save. The scaled-out topology too (two
``interformer serve`` processes and one ``interformer worker``, a fresh PostgreSQL database,
Redis with names of its own: bench/load_topology.py), with its markdown table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import load  # noqa: E402


def test_load_script_smoke(database_url, tmp_path):
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "load.py"), "--users", "6", "--duration", "4", "--images", "6",
         "--overlap", "3", "--ramp-s", "0.5", "--think-ms", "50", "--database-url", database_url, "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["annotators_logged_in"] == 6
    saves = r["saves"]
    assert saves["acknowledged"] > 0 and saves["lost"] == 0 and saves["found_intact"] == saves["acknowledged"]
    for kind in ("login", "queue_next", "pyramid", "draft", "save_object"):
        k = r["by_kind"][kind]
        assert k["count"] > 0 and k["errors"] == 0 and k["p50_ms"] <= k["p99_ms"], (kind, k)
    assert r["pyramid_bytes_mean"] > 0
    # the check is real: an acknowledged save that is not in the database, or differs, is lost
    first = {"id": 10**9, "client_id": "x" * 32, "user": "nobody", "image_id": 1, "class_id": 1, "area": 1}
    assert load.verify([first], database_url)["missing"] == 1


def test_load_script_scaled_out_smoke(tmp_path):
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "load.py"), "--topology", "scaled", "--users", "6", "--duration", "4",
         "--images", "6", "--overlap", "3", "--ramp-s", "0.5", "--think-ms", "50", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["topology"] == "scaled" and r["meta"]["database"].startswith("postgresql")
    assert r["meta"]["settings"]["web_processes"] == 2 and r["meta"]["settings"]["workers"] == 1
    assert r["annotators_logged_in"] == 6 and r["errors"] == 0
    saves = r["saves"]
    assert saves["acknowledged"] > 0 and saves["lost"] == 0 and saves["found_intact"] == saves["acknowledged"]
    for kind in ("login", "queue_next", "pyramid", "draft", "save_object"):
        k = r["by_kind"][kind]
        assert k["count"] > 0 and k["errors"] == 0, (kind, k)
    # the pyramids the worker made were served, and the annotators were dealt over both web processes
    assert r["pyramid_bytes_mean"] > 0
    assert len(r["requests_by_web_process"]) == 2 and min(r["requests_by_web_process"].values()) > 0
    assert set(r["cpu"]["app_processes_cpu_s"]) == {"web0", "web1", "worker0"}
    assert "| acknowledged saves lost | 0 |" in proc.stdout and "scaled out (2 web + 1 worker)" in proc.stdout


def test_markdown_table_puts_topologies_side_by_side():
    def rep(n, p50):
        return {"annotators_logged_in": n, "requests": 10, "requests_per_s": 2.0, "elapsed_s": 5.0, "errors": 0,
                "images_submitted": 1, "saves": {"acknowledged": 5, "lost": 0},
                "cpu": {"app_cpu_s": 1.0, "load_script_cpu_s": 0.5, "machine_busy_fraction": 0.5},
                "by_kind": {"draft": {"count": 10, "errors": 0, "p50_ms": p50, "p99_ms": 2 * p50}},
                "meta": {"settings": {"web_processes": 2, "workers": 1}}}

    table = load.markdown({"single": rep(3, 10.0), "scaled": rep(3, 20.0)})
    lines = table.splitlines()
    assert lines[0] == "| | single process | scaled out (2 web + 1 worker) |"
    assert "| masks saved per s | 1.0 | 1.0 |" in lines
    assert "| draft | 10 | 10 | 20 | 10 | 20 | 40 |" in lines
