"""The pyramid quality / size study's machinery (``model_export.benchmarks.pyramid_quality``).

A randomly initialised ``interformer-tinyvit`` is exported (decoder + fp16 / int8 weight
variants + int8-input decoder + pyramid graph) and the study runs on two tiny synthetic images:
the masks mean nothing, but the protocol must hold exactly (the f32 scheme replays the fp32 run
bit for bit, the int8-input decoder equals the fp32 decoder on the dequantized int8 pyramid),
the sizes must follow the schemes, and the JSON must have its structure. The recommendation
rule is unit-tested on a crafted table.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model_export.benchmarks import pyramid_quality as pq
from model_export.configs import CONFIGS, build_model
from model_export.export.cli import export_model

SCHEMES = ["f32", "int8", "int8+delta", "int4+bias", "int4+bias/int8/int8/int8"]


@pytest.fixture(scope="session")
def random_export(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pq-export")
    torch.manual_seed(0)
    net = build_model(CONFIGS["interformer-tinyvit"])
    ckpt = root / "random-interformer-tinyvit.pt"
    torch.save(net.state_dict(), ckpt)
    out = root / "export"
    export_model(model="interformer-tinyvit", checkpoint=ckpt, out=out, pyramid=True,
                 variants=["fp32", "fp16", "int8"], threads=1, verify=False, log=lambda *a: None)
    return out


def _make_data(folder: Path) -> Path:
    """Two tiny images (a non-square and a square one) with one object each."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in (("a", (60, 90)), ("b", (64, 64))):
        yy, xx = np.mgrid[:h, :w]
        obj = (yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (min(h, w) / 4) ** 2
        img = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 90)], -1).astype(np.int16)
        img[obj] = (230, 30, 30)
        img = np.clip(img + rng.integers(-12, 12, img.shape), 0, 255).astype(np.uint8)
        mask = obj.astype(np.uint8)
        mask[0, :3] = 255  # an ignore label
        Image.fromarray(img).save(folder / "images" / f"{name}.png")
        Image.fromarray(mask).save(folder / "masks" / f"{name}.png")
    return folder


@pytest.fixture(scope="session")
def study(random_export, tmp_path_factory) -> dict:
    data = _make_data(tmp_path_factory.mktemp("pq-data") / "tiny")
    out = tmp_path_factory.mktemp("pq-out") / "study.json"
    # the same folder twice: two data sets ("tiny", "tiny-2"), the second with 1 sample
    rc = pq.main(["--export", str(random_export), "--data", str(data), str(data), "--json", str(out),
                  "--max-samples", "all", "1", "--schemes", *SCHEMES, "--clicks", "3", "--brotli", "off"])
    assert rc == 0
    return json.loads(out.read_text("utf-8"))


def test_json_structure(study):
    assert set(study["datasets"]) == {"tiny", "tiny-2"}
    assert study["datasets"]["tiny"]["samples"] == 2 and study["datasets"]["tiny-2"]["samples"] == 1
    assert study["datasets"]["tiny"]["images"] == 2
    # longest side 512: 60x90 -> 352x512 (rounded up to 32), 64x64 -> 512x512
    assert study["datasets"]["tiny"]["canvas_sizes"] == {"352x512": 1, "512x512": 1}
    assert study["num_clicks"] == 3 and study["threads"] == 1
    assert [r["scheme"] for r in study["schemes"]] == SCHEMES
    assert study["compression"]["brotli"] is None and "brotli" in study["compression"]["note"]
    for r in study["schemes"]:
        assert r["brotli_512"] is None and r["wire_bytes_512"] == min(r["bytes_512"], r["gzip_512"])
        assert len(r["levels"]) == 4 and len(r["rel_rmse_per_level"]) == 4
        for d in ("tiny", "tiny-2"):
            pd = r["per_dataset"][d]
            assert pd["clicks"] == study["datasets"][d]["clicks"] > 0
            assert 0.0 <= pd["min_iou_vs_fp32"] <= pd["mean_iou_vs_fp32"] <= 1.0
        assert r["passes"] == (r["passes_size"] and r["passes_iou"])
    assert study["recommended"] is None or study["recommended"] in SCHEMES
    assert study["thresholds"]["max_wire_bytes_512"] == 500_000
    mix = next(r for r in study["schemes"] if r["scheme"] == "int4+bias/int8/int8/int8")
    assert mix["levels"] == ["int4+bias", "int8", "int8", "int8"]


def test_f32_scheme_replays_fp32_exactly(study):
    f32 = study["schemes"][0]
    assert f32["scheme"] == "f32"
    for d, pd in f32["per_dataset"].items():
        assert pd["mean_iou_vs_fp32"] == 1.0 and pd["min_iou_vs_fp32"] == 1.0
        assert pd["identical_masks"] == pd["clicks"]
        assert pd["max_abs_margin_diff"] == 0.0  # bit-identical decoder outputs, not just masks
        assert pd["mean_iou_vs_gt_last_click"] == pytest.approx(study["datasets"][d]["fp32_mean_iou_vs_gt_last_click"])
    assert f32["rel_rmse_per_level"] == [0.0] * 4


def test_sizes_follow_the_schemes(study):
    rows = {r["scheme"]: r for r in study["schemes"]}
    # f32: 4 bytes per value, 983,040 values on a 512x512 canvas, + a header under 4 kB
    values_512 = sum(c * (512 // s) ** 2 for c, s in zip((32, 64, 128, 256), (4, 8, 16, 32)))
    assert 4 * values_512 < rows["f32"]["bytes_512"] < 4 * values_512 + 4096
    assert rows["f32"]["bytes_mean"] < rows["f32"]["bytes_512"]  # one canvas is smaller than 512x512
    assert rows["f32"]["bytes_512"] > rows["int8"]["bytes_512"] > rows["int4+bias/int8/int8/int8"]["bytes_512"]
    assert rows["int4+bias/int8/int8/int8"]["bytes_512"] > rows["int4+bias"]["bytes_512"]
    assert rows["int4+bias"]["bytes_512"] < values_512 / 2 + 8192
    # the delta filter changes the bytes on the wire (same raw size but for the header), never the values
    assert abs(rows["int8+delta"]["bytes_512"] - rows["int8"]["bytes_512"]) <= 64
    assert rows["int8+delta"]["gzip_512"] != rows["int8"]["gzip_512"]
    assert rows["int8+delta"]["per_dataset"] != {} and all(
        rows["int8+delta"]["per_dataset"][d]["mean_iou_vs_fp32"] == rows["int8"]["per_dataset"][d]["mean_iou_vs_fp32"]
        for d in study["datasets"])
    assert rows["int8"]["rel_rmse_per_level"][0] < rows["int4+bias"]["rel_rmse_per_level"][0]
    for d in study["datasets"]:  # quantization moves the decoder's margins, int4 more than int8
        m8, m4 = (rows[k]["per_dataset"][d]["mean_abs_margin_diff"] for k in ("int8", "int4+bias"))
        assert 0.0 < m8 < m4


def test_int8_input_decoder_and_weight_variants(study):
    q = study["quantized_inputs"]
    assert {f"f{i}_{k}" for i in range(1, 5) for k in ("q", "scale", "zero_point")} | {"click_map"} == set(q["inputs"])
    for v in q["per_dataset"].values():
        assert v["clicks"] > 0 and v["same_masks"] and v["identical_masks"] == v["clicks"]
        assert v["max_abs_margin_diff"] <= 1e-4
    cv = study["decoder_variants"]
    assert set(cv["variants"]) == {"fp32", "fp16", "int8"} and cv["threshold"] == 0.995
    assert cv["samples"] == 2 and cv["clicks"] > 0
    assert cv["variants"]["fp32"]["mean_iou_vs_reference"] == 1.0 and cv["variants"]["fp32"]["keep"]
    sizes = {k: v["bytes"] for k, v in cv["variants"].items()}
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"]
    for v in cv["variants"].values():
        assert v["keep"] == (v["mean_iou_vs_reference"] >= 0.995)


def test_markdown_report_marks_the_recommendation(study):
    text = pq.markdown_report(study)
    assert "| `f32` |" in text and "mean IoU tiny-2" in text and "int8_inputs" in text
    crafted = dict(study, recommended="int8")
    assert "| **int8** ★ |" in pq.markdown_report(crafted)


# ----- pure functions ------------------------------------------------------------------------
def _row(name: str, wire: float, ious: dict) -> dict:
    return {"scheme": name, "wire_bytes_512": wire,
            "per_dataset": {d: {"mean_iou_vs_fp32": v} for d, v in ious.items()}}


def test_recommend_picks_the_smallest_passing_scheme():
    ds = ["grabcut", "berkeley"]
    rows = [
        _row("f32", 3_900_000, {"grabcut": 1.0, "berkeley": 1.0}),  # too big
        _row("int8", 800_000, {"grabcut": 0.999, "berkeley": 0.998}),  # too big
        _row("int4", 300_000, {"grabcut": 0.97, "berkeley": 0.995}),  # smallest, fails grabcut IoU
        _row("int4+bias", 320_000, {"grabcut": 0.995, "berkeley": 0.989}),  # fails berkeley IoU
        _row("int4+bias+clip=99.9", 330_000, {"grabcut": 0.992, "berkeley": 0.991}),  # passes
        _row("mix", 450_000, {"grabcut": 0.999, "berkeley": 0.999}),  # passes, larger
        _row("exact", 500_000, {"grabcut": 0.99, "berkeley": 0.99}),  # passes at both limits
    ]
    assert pq.recommend(rows, ds) == "int4+bias+clip=99.9"
    assert pq.recommend(rows, ds, min_iou=0.995) == "mix"
    assert pq.recommend(rows, ds, max_bytes=320_000) is None
    assert pq.recommend(rows[-1:], ds) == "exact"  # thresholds are inclusive
    assert pq.recommend(rows, ["grabcut"]) == "int4+bias"  # only grabcut's IoU counts
    assert pq.recommend([], ds) is None
    # ties on size: the higher worst-data-set IoU wins
    tie = [_row("a", 400_000, {"grabcut": 0.991, "berkeley": 0.999}),
           _row("b", 400_000, {"grabcut": 0.995, "berkeley": 0.995})]
    assert pq.recommend(tie, ds) == "b"
    # a missing data set or a missing size never passes
    assert pq.recommend([_row("c", 100_000, {"grabcut": 1.0})], ds) is None
    assert pq.recommend([_row("d", None, {"grabcut": 1.0, "berkeley": 1.0})], ds) is None
    assert pq.check_passes(rows[2], ds) == (True, False)
    assert pq.check_passes(rows[1], ds) == (False, True)


def test_mask_iou():
    a = np.zeros((4, 4), bool)
    assert pq._mask_iou(a, a) == 1.0  # both empty
    b = a.copy()
    b[0, :2] = True
    assert pq._mask_iou(a, b) == 0.0
    c = b.copy()
    c[1, :2] = True
    assert pq._mask_iou(b, c) == 0.5


def test_parse_scheme_and_labels():
    assert pq.parse_scheme("int8") == ["int8"] * 4
    assert pq.parse_scheme("int4+delta+bias/int8/int8/f16") == ["int4+bias+delta", "int8", "int8", "f16"]
    assert pq.scheme_label(pq.parse_scheme("int4+clip=99.90")) == "int4+clip=99.9"
    assert pq.scheme_label(["int4", "int8", "int8", "int8"]) == "int4/int8/int8/int8"
    assert pq._values_key(pq.parse_scheme("int4+bias+delta/int8+delta/int8/int8")) == "int4+bias/int8/int8/int8"
    with pytest.raises(ValueError):
        pq.parse_scheme("int8/int4")
    with pytest.raises(ValueError):
        pq.parse_scheme("int3")
