"""The ``eval`` subcommand: ``add_eval_parser`` + ``run_eval`` on a tiny synthetic folder."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from model_export.evaluation.cli import add_eval_parser, parse_models, run_eval


def _parser():
    ap = argparse.ArgumentParser(prog="interformer")
    sub = ap.add_subparsers(dest="command", required=True)
    add_eval_parser(sub)
    return ap


def _run(argv):
    args = _parser().parse_args(["eval", *argv])
    assert args.func is run_eval
    return run_eval(args)


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "mini"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i, (y0, x0) in enumerate([(8, 10), (15, 20), (5, 30)]):
        img = np.empty((48, 64, 3), np.float64)
        img[:] = (30, 90, 190)
        m = np.zeros((48, 64), np.uint8)
        m[y0 : y0 + 20, x0 : x0 + 22] = 1
        img[m == 1] = (200, 70, 30)
        img += rng.normal(0, 8, img.shape)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / "images" / f"im{i}.jpg", quality=95)
        Image.fromarray(m, mode="L").save(root / "masks" / f"im{i}.png")
    return root


def test_grabcut_run_writes_json(folder, tmp_path, capsys):
    out = tmp_path / "res" / "eval.json"
    plot = tmp_path / "res" / "conv.png"
    rc = _run([str(folder), "--model", "grabcut", "--max-clicks", "3", "--json", str(out), "--plot", str(plot)])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "NoC@90" in stdout and "grabcut" in stdout and "mini" in stdout
    data = json.loads(out.read_text())
    assert set(data) == {"runs", "environment"}
    assert data["environment"]["settings"]["max_clicks"] == 3
    (run,) = data["runs"]
    assert run["model"] == "grabcut" and run["dataset"] == "mini"
    m = run["metrics"]
    assert m["samples"] == 3 and m["max_clicks"] == 3
    assert 1 <= m["noc90"] <= 3 and len(m["miou_curve"]) == 3
    assert [s["name"] for s in run["per_sample"]] == ["im0", "im1", "im2"]
    assert all(len(s["ious"]) == 3 for s in run["per_sample"])
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_limit(folder, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert _run([str(folder), "--model", "grabcut", "--max-clicks", "1", "--limit", "2", "--json", str(out)]) == 0
    assert len(json.loads(out.read_text())["runs"][0]["per_sample"]) == 2


def test_missing_folder_exit_2(tmp_path, capsys):
    rc = _run([str(tmp_path / "nope"), "--model", "grabcut"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "dataset folder not found" in err and "nope" in err and "Traceback" not in err


def test_folder_without_images_and_masks_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _run([str(tmp_path / "empty"), "--model", "grabcut"]) == 2
    assert "images/ and masks/" in capsys.readouterr().err


def test_unknown_model_exit_2(folder, capsys):
    assert _run([str(folder), "--model", "grabcut,no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "Traceback" not in err


def test_bad_numbers_are_argparse_errors(folder, capsys):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(["eval", str(folder), "--max-clicks", "0"])
    assert e.value.code == 2


def test_parse_models():
    assert parse_models(None) == ["default"]
    assert parse_models(["sam-decoder,grabcut", "default", "grabcut"]) == ["sam-decoder", "grabcut", "default"]
