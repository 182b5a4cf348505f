"""The architecture ablation summary (model_export/benchmarks/architecture_ablation.py)."""

from __future__ import annotations

import json

import pytest

from model_export.benchmarks import architecture_ablation as ab


def _run(tmp_path, name: str, config: str, lr: float, secs: list[float], init: str | None = None):
    run = tmp_path / name
    run.mkdir()
    recipe = {"config": config, "data": ["a", "b"], "iters": len(secs), "batch": 8, "crop": 320, "lr": lr,
              "weight_decay": 0.05, "warmup": 1, "seed": 0, "init": init, "warm_start": None, "threads": 1}
    (run / "config.json").write_text(json.dumps(recipe))
    (run / "log.jsonl").write_text("\n".join(
        json.dumps({"iter": i + 1, "loss": 1.0 / (i + 1), "lr": lr, "sec": s, "objects": 12}) for i, s in enumerate(secs)))
    ev = tmp_path / f"{name}.json"
    metrics = {"samples": 3, "noc85": 4.0, "noc90": 5.5, "miou_at": {"1": 0.7, "5": 0.85}, "spc_p50": 0.05}
    ev.write_text(json.dumps({"runs": [{"model": config, "dataset": "grabcut", "metrics": metrics},
                                       {"model": "grabcut", "dataset": "grabcut", "metrics": metrics}]}))
    return run, ev


def test_per_click_cost_counts_the_decoder_graph():
    faithful = ab.per_click_cost("interformer-tinyvit-faithful")
    lean = ab.per_click_cost("interformer-tinyvit-v3")
    # the faithful UPerHead at stride 4 dominates: on the order of 10 GFLOP per click (issue 3)
    assert 8 < faithful["gflop_per_click"] < 14
    assert lean["gflop_per_click"] < faithful["gflop_per_click"] / 4
    # the split decoder leaves the per-image context out of every click: less, never more
    for cost in (faithful, lean):
        assert 0.5 * cost["gflop_per_click"] < cost["gflop_per_click_split"] < cost["gflop_per_click"]
    assert lean["params_per_click_part"] < faithful["params_per_click_part"]
    # the FLOPs grow with the canvas (attention and convolutions over more pixels)
    assert ab.per_click_cost("interformer-tinyvit-v3", canvas=256)["gflop_per_click"] < lean["gflop_per_click"] / 3


def test_summary_table_and_recipe_check(tmp_path, capsys):
    run_a, ev_a = _run(tmp_path, "a", "interformer-tinyvit-faithful", 5e-4, [8.0, 9.0, 10.0])
    run_b, ev_b = _run(tmp_path, "b", "interformer-tinyvit-v3", 5e-4, [3.0, 3.5, 4.0])
    out = tmp_path / "out.json"
    md = tmp_path / "out.md"
    assert ab.main(["--entry", f"interformer-tinyvit-faithful={run_a}:{ev_a}",
                    "--entry", f"interformer-tinyvit-v3={run_b}:{ev_b}", "--json", str(out), "--md", str(md)]) == 0
    data = json.loads(out.read_text())
    assert [r["config"] for r in data["rows"]] == ["interformer-tinyvit-faithful", "interformer-tinyvit-v3"]
    assert data["rows"][0]["training"]["sec_per_iter_median"] == 9.0
    assert data["rows"][1]["eval"]["grabcut"]["noc90"] == 5.5
    assert set(data["rows"][1]["eval"]) == {"grabcut"}  # the grabcut baseline's run is not ours
    assert data["recipe_differences"] == []
    table = md.read_text()
    assert "| interformer-tinyvit-v3 |" in table and "grabcut NoC90" in table and "differ" not in table

    run_c, ev_c = _run(tmp_path, "c", "interformer-tinyvit-v3", 1e-4, [3.0, 3.0, 3.0])
    assert ab.main(["--entry", f"interformer-tinyvit-faithful={run_a}:{ev_a}",
                    "--entry", f"interformer-tinyvit-v3={run_c}:{ev_c}", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["recipe_differences"] == [
        "lr: interformer-tinyvit-faithful=0.0005, interformer-tinyvit-v3=0.0001"]
    assert "**The recipes differ:** lr" in capsys.readouterr().out


def test_bad_entries_are_refused(tmp_path, capsys):
    run_a, ev_a = _run(tmp_path, "a", "interformer-tinyvit-v3", 5e-4, [1.0])
    assert ab.main(["--entry", f"no-such-config={run_a}:{ev_a}"]) == 2
    assert "unknown config" in capsys.readouterr().err
    assert ab.main(["--entry", f"interformer-tinyvit-v3={run_a}:{tmp_path / 'missing.json'}"]) == 2
    assert "missing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ab.main(["--entry", "interformer-tinyvit-v3"])
    # an eval of another model is not silently used
    with pytest.raises(SystemExit, match="no run of model"):
        ab.eval_summary(ev_a, "interformer-tinyvit-faithful")


def test_continued_runs_are_compared_within_their_stage(tmp_path):
    a1, ea1 = _run(tmp_path, "a1", "interformer-tinyvit-faithful", 5e-4, [8.0] * 3)
    b1, eb1 = _run(tmp_path, "b1", "interformer-tinyvit-v3", 5e-4, [3.0] * 3)
    # continued from each config's own weights (different paths): the same recipe
    a2, ea2 = _run(tmp_path, "a2", "interformer-tinyvit-faithful", 2e-4, [8.0] * 5, init="w/faithful.pt")
    b2, eb2 = _run(tmp_path, "b2", "interformer-tinyvit-v3", 2e-4, [3.0] * 5, init="w/v3.pt")
    out = tmp_path / "out.json"
    args = [f"interformer-tinyvit-faithful={a1}:{ea1}", f"interformer-tinyvit-v3={b1}:{eb1}",
            f"interformer-tinyvit-faithful={a2}:{ea2}", f"interformer-tinyvit-v3={b2}:{eb2}"]
    assert ab.main([x for e in args for x in ("--entry", e)] + ["--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [r["training"]["last_iter"] for r in data["rows"]] == [3, 3, 5, 5]
    assert data["recipe_differences"] == []
    # one of the continued runs started from scratch: flagged
    c2, ec2 = _run(tmp_path, "c2", "interformer-tinyvit-v3", 2e-4, [3.0] * 5)
    args[3] = f"interformer-tinyvit-v3={c2}:{ec2}"
    assert ab.main([x for e in args for x in ("--entry", e)] + ["--json", str(out)]) == 0
    assert json.loads(out.read_text())["recipe_differences"] == [
        "init: interformer-tinyvit-faithful=w/faithful.pt, interformer-tinyvit-v3=None"]
