"""The training pipeline end to end on the shared tiny set: cache embeddings, train a few
iterations, resume, release the weights, and evaluate the released model with `interformer eval`."""

from __future__ import annotations

import json

import numpy as np
import torch

from model_export.cli import main

torch.set_num_threads(1)


def test_cache_train_resume_release_eval(tmp_path, tiny_data_dir):
    cache, run = tmp_path / "cache", tmp_path / "run"
    assert main(["cache-features", str(tiny_data_dir), "--cache", str(cache), "--threads", "1"]) == 0
    n_images = len(list((tiny_data_dir / "images").iterdir()))
    assert len(list((cache / "tiny").glob("*.npy"))) == n_images
    # a second run finds everything cached
    assert main(["cache-features", str(tiny_data_dir), "--cache", str(cache)]) == 0

    common = ["train", str(tiny_data_dir), "--cache", str(cache), "--out", str(run), "--batch", "2",
              "--workers", "0", "--warmup", "1", "--ckpt-every", "1", "--val-every", "0", "--threads", "1",
              "--crop", "256"]
    assert main(common + ["--iters", "2"]) == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in log)
    first = torch.load(run / "last.pt", weights_only=False)
    assert first["iteration"] == 2
    # resume continues from iteration 2 and changes the weights
    assert main(common + ["--iters", "3"]) == 0
    second = torch.load(run / "last.pt", weights_only=False)
    assert second["iteration"] == 3
    key = "decode_head.conv_seg.weight"
    assert not torch.equal(first["model"][key], second["model"][key])

    weights = tmp_path / "w.pt"
    assert main(["release-weights", str(run), "--out", str(weights)]) == 0
    released = torch.load(weights, weights_only=True)
    assert released["model"][key].dtype == torch.float16
    assert json.loads(released["meta"])["iteration"] == 3

    # a new run can start from the released weights and continues their iteration count
    run2 = tmp_path / "run2"
    common2 = [a if a != str(run) else str(run2) for a in common]
    assert main(common2 + ["--iters", "4", "--init", str(weights)]) == 0
    assert torch.load(run2 / "last.pt", weights_only=False)["iteration"] == 4
    # its release carries the lineage: what it continued from, and that run's log first
    w2 = tmp_path / "w2.pt"
    assert main(["release-weights", str(run2), "--out", str(w2)]) == 0
    meta2 = json.loads(torch.load(w2, weights_only=True)["meta"])
    assert meta2["init"] == {"file": "w.pt", "iteration": 3}
    assert [json.loads(ln)["iter"] for ln in (tmp_path / "w2.log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]

    out = tmp_path / "eval.json"
    code = main(["eval", str(tiny_data_dir), "--model", "default", "--checkpoint", str(weights),
                 "--max-clicks", "2", "--limit", "2", "--threads", "1", "--json", str(out)])
    assert code == 0
    metrics = json.loads(out.read_text())["runs"][0]["metrics"]
    assert metrics["samples"] == 2 and metrics["max_clicks"] == 2
    assert 1 <= metrics["noc90"] <= 2 and 0.0 <= metrics["miou_at"]["1"] <= 1.0


def test_train_refuses_missing_folder(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
