"""Merging ``interformer eval --json`` files (a new model + its peers from an earlier run)."""

from __future__ import annotations

import json
import subprocess
import sys

from shared_data import REPO


def _run(model: str, dataset: str, noc90: float) -> dict:
    curve = [0.5 + 0.02 * i for i in range(20)]
    return {"model": model, "dataset": dataset, "dataset_path": f"x/{dataset}", "per_sample": [],
            "metrics": {"samples": 2, "max_clicks": 20, "noc85": noc90 - 1, "noc90": noc90, "reached85": 1.0,
                        "reached90": 1.0, "miou_at": {"1": 0.5, "5": 0.58}, "spc_p50": 0.1, "spc_p95": 0.2,
                        "encoder_mean": 1.0, "encoder_p50": 1.0, "clicks_made": 40, "miou_curve": curve,
                        "pie": 1.0, "pie_unit": 1e-07}}


def test_merge_renames_keeps_and_refuses_duplicates(tmp_path):
    new = tmp_path / "new.json"
    old = tmp_path / "old.json"
    new.write_text(json.dumps({"runs": [_run("default", "grabcut", 3.0)], "environment": {"id": "new"}}))
    old.write_text(json.dumps({"runs": [_run("default", "grabcut", 9.0), _run("sam-decoder", "grabcut", 2.4),
                                        _run("grabcut", "grabcut", 5.7)], "environment": {"id": "old"}}))
    out = tmp_path / "merged.json"
    exe = [sys.executable, "-m", "model_export.evaluation.merge"]
    r = subprocess.run([*exe, str(new), f"{old}:default=v1", "--keep-models", "v1,sam-decoder",
                        "--out", str(out), "--plot", str(tmp_path / "c.png")], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    merged = json.loads(out.read_text())
    assert [(x["model"], x["metrics"]["noc90"]) for x in merged["runs"]] == [
        ("default", 3.0), ("v1", 9.0), ("sam-decoder", 2.4)]
    assert [s["environment"]["id"] for s in merged["sources"]] == ["new", "old"]
    assert (tmp_path / "c.png").stat().st_size > 1000 and "sam-decoder" in r.stdout
    # without the rename, "default" on grabcut would appear twice: refused with exit code 2
    r = subprocess.run([*exe, str(new), str(old), "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "more than one source" in r.stderr
    r = subprocess.run([*exe, str(tmp_path / "none.json"), "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "does not exist" in r.stderr
