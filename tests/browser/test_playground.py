"""The playground in a real browser (Debian chromium via Playwright) against the Python predictor.

The page decodes every click with onnxruntime-web (WebAssembly, threads) in a worker; the
test replays the same clicks through ``model_export.predictor.InterFormerPredictor`` with the
same decoder ONNX on onnxruntime (Python) and the same pyramid file, and compares, click by
click, the page's click map (exactly) and its image mask (IoU >= 0.99).
"""

from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

import fake_model
from model_export import clicks as cm
from model_export.geometry import CanvasGeometry
from model_export.predictor import InterFormerPredictor
from model_export.pyramid_format import decode_pyramid

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "var" / "screenshots" / "playground.png"

# (x, y, positive) in image pixels of the "shapes" sample (640x480): inside the red disk,
# the blue square, the triangle, then two negatives (sky; the disk's highlight, overlapping
# the first click's area).
CLICKS = [(200, 250, True), (470, 210, True), (515, 400, True), (300, 60, False), (180, 222, False)]


def open_playground(page, base_url: str, query: str = "") -> dict:
    page.goto(f"{base_url}/playground{query}")
    page.wait_for_function("window.__playground !== undefined")
    return page.evaluate("window.__playground.ready")


def decode_state(st: dict) -> tuple[np.ndarray, np.ndarray]:
    """The hook's state -> (click map (canvas_h, canvas_w) uint8, mask (image_h, image_w) bool)."""
    c = st["clickMap"]
    m = np.frombuffer(base64.b64decode(c["base64"]), np.uint8).reshape(c["height"], c["width"])
    k = st["mask"]
    bits = np.unpackbits(np.frombuffer(base64.b64decode(k["base64"]), np.uint8))[: k["height"] * k["width"]]
    return m, bits.reshape(k["height"], k["width"]).astype(bool)


def reference_predictor(base_url: str, sample: str, onnx_path: Path) -> InterFormerPredictor:
    """The Python predictor on the same pyramid file the page got."""
    with urllib.request.urlopen(f"{base_url}/api/playground/samples/{sample}/pyramid") as r:
        levels, header = decode_pyramid(r.read())
    pred = InterFormerPredictor(fake_model.OnnxDecodeModel(onnx_path), pipeline=None)
    pred.set_pyramid([torch.from_numpy(lv)[None] for lv in levels], CanvasGeometry(**header["canvas"]))
    return pred


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def check_click(page, ref: InterFormerPredictor, x: int, y: int, positive: bool, step: str) -> dict:
    r = page.evaluate("([x, y, p]) => window.__playground.click(x, y, p)", [x, y, positive])
    ref_mask = ref.add_click(x, y, positive)
    st = page.evaluate("window.__playground.state()")
    m, mask = decode_state(st)
    ref_m = ref.click_map
    assert m.shape == ref_m.shape, step
    diff = np.argwhere(m != ref_m)
    if len(diff):
        up = ref._upsample(ref._history[-1].logits, *ref_m.shape)
        worst = [(int(a), int(b), int(m[a, b]), int(ref_m[a, b]), float(up[a, b])) for a, b in diff[:10]]
        pytest.fail(f"{step}: click map differs from Python at {len(diff)} pixels (y, x, page, python, margin): {worst}")
    assert mask.shape == ref_mask.shape, step
    score = iou(mask, ref_mask)
    assert score >= 0.99, f"{step}: mask IoU {score:.4f} against the Python predictor"
    assert st["clicks"] == [{"x": c.x, "y": c.y, "positive": c.positive} for c in ref.clicks], step
    return {"iou": score, "decoderMs": r["decoderMs"], "totalMs": r["totalMs"], "fg": int(mask.sum())}


def test_playground_matches_python_predictor(page, live_server, fake_decoder_onnx, capsys):
    status = open_playground(page, live_server, "?sample=shapes")
    assert status == {"ok": True, "error": None}, (status, page.console_log)
    info = page.evaluate("window.__playground.info()")
    assert info["crossOriginIsolated"] is True
    assert info["decoder"]["backend"] == "wasm", info
    assert info["decoder"]["numThreads"] > 1, info
    assert info["manifest"] == {"id": fake_model.MODEL_ID, "version": fake_model.MODEL_VERSION}
    assert page.locator("#coi-warning").is_hidden()
    assert page.locator("#error").is_hidden()
    for want in ("/vendor/ort/ort.wasm.min.mjs", "/vendor/ort/ort-wasm-simd-threaded.wasm", "/api/playground/decoder.onnx"):
        assert any(u.endswith(want) for u in page.requested), (want, page.requested)
    foreign = [u for u in page.requested if not u.startswith(live_server + "/")]
    assert not foreign, f"requests outside our origin (no CDN allowed): {foreign}"

    ref = reference_predictor(live_server, "shapes", fake_decoder_onnx)
    results = []
    for i, (x, y, pos) in enumerate(CLICKS):
        results.append(check_click(page, ref, x, y, pos, f"click {i + 1} ({x}, {y}, {'+' if pos else '-'})"))
    assert all(r["fg"] > 0 for r in results)
    assert "ms decoder" in page.locator("#status").inner_text()

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # Undo restores the previous click map and mask exactly; reset clears everything.
    before = page.evaluate("window.__playground.state()")
    assert page.evaluate("window.__playground.undo()") == len(CLICKS) - 1
    ref.undo()
    m, mask = decode_state(page.evaluate("window.__playground.state()"))
    assert np.array_equal(m, ref.click_map)
    assert iou(mask, ref.mask) >= 0.99
    page.keyboard.press("Control+z")
    page.wait_for_function(f"window.__playground.state().clicks.length === {len(CLICKS) - 2}")
    assert page.evaluate("window.__playground.reset()") == 0
    m, mask = decode_state(page.evaluate("window.__playground.state()"))
    assert (m == cm.UNKNOWN).all() and not mask.any()
    assert before["clicks"][-1] == {"x": 180, "y": 222, "positive": False}

    with capsys.disabled():
        ms = ", ".join(f"{r['decoderMs']:.1f}/{r['totalMs']:.1f}" for r in results)
        print(
            f"\n[playground] wasm, {info['decoder']['numThreads']} threads; per-click ms (decoder/total): {ms}; "
            f"IoU min {min(r['iou'] for r in results):.4f}"
        )


def test_playground_upscaled_sample_and_mouse(page, live_server, fake_decoder_onnx):
    """A small image (300x200 -> canvas 512x352): real mouse clicks, left and right."""
    assert open_playground(page, live_server, "?sample=cells")["ok"], page.console_log
    ref = reference_predictor(live_server, "cells", fake_decoder_onnx)
    box = page.locator("#overlay-canvas").bounding_box()
    st = page.evaluate("window.__playground.state()")
    w, h = st["geometry"]["imageW"], st["geometry"]["imageH"]
    for n, (fx, fy, button) in enumerate([(0.53, 0.55, "left"), (0.80, 0.30, "right")], start=1):
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"], button=button)
        page.wait_for_function(f"window.__playground.state().clicks.length === {n}")
        click = page.evaluate("window.__playground.state()")["clicks"][-1]
        assert click["positive"] == (button == "left")
        assert abs(click["x"] - fx * w) <= 1 and abs(click["y"] - fy * h) <= 1
        ref.add_click(click["x"], click["y"], click["positive"])
        m, mask = decode_state(page.evaluate("window.__playground.state()"))
        assert np.array_equal(m, ref.click_map)
        assert iou(mask, ref.mask) >= 0.99


def test_mismatched_decoder_is_refused_visibly(page, make_server, tmp_path, fake_decoder_onnx):
    """A decoder whose manifest names another model version than the pyramid: visible error."""
    other = fake_model.write_model_dir(tmp_path / "other", onnx_source=fake_decoder_onnx, model_version="other-2")
    url = make_server(MODEL_DIR=other)
    status = open_playground(page, url)
    assert status["ok"] is False
    err = page.locator("#error")
    assert err.is_visible()
    text = err.inner_text()
    assert "does not match" in text and "other-2" in text and fake_model.MODEL_VERSION in text, text
    assert page.evaluate("window.__playground.state()") is None
    assert page.locator("#undo").is_disabled()


def test_decoder_with_other_feature_shapes_is_refused(page, live_server):
    """Same model id/version but the manifest expects other channels: visible error too."""
    def patched(route):
        resp = route.fetch()
        m = json.loads(resp.text())
        m["inputs"]["features"][3]["channels"] = 512
        route.fulfill(response=resp, body=json.dumps(m))

    page.route("**/api/playground/decoder.json", patched)
    status = open_playground(page, live_server)
    assert status["ok"] is False
    text = page.locator("#error").inner_text()
    assert page.locator("#error").is_visible()
    assert "512 channels" in text and "256" in text, text


def test_not_isolated_page_warns_and_runs_single_threaded(page, live_server):
    """Served without COOP/COEP (e.g. behind a proxy that drops them): visible warning, 1 thread."""

    def strip_isolation(route):
        resp = route.fetch()
        headers = {k: v for k, v in resp.headers.items() if not k.lower().startswith("cross-origin-")}
        route.fulfill(response=resp, headers=headers)

    page.route("**/playground*", strip_isolation)
    assert open_playground(page, live_server, "?sample=tower")["ok"], page.console_log
    info = page.evaluate("window.__playground.info()")
    assert info["crossOriginIsolated"] is False
    assert info["decoder"]["numThreads"] == 1
    banner = page.locator("#coi-warning")
    assert banner.is_visible() and "crossOriginIsolated" in banner.inner_text()
    r = page.evaluate("window.__playground.click(128, 200, true)")
    assert r["clicks"] == 1


def test_webgpu_backend(webgpu_page, live_server, fake_decoder_onnx):
    """The worker's WebGPU branch (ort.all.min.mjs, WebGPU execution provider), on Chromium's
    software WebGPU: the same masks as the Python predictor. GPU arithmetic differs from the
    CPU's in the last bits, so a few click-map pixels on the mask's edge may differ."""
    page = webgpu_page
    page.goto(f"{live_server}/playground?sample=shapes")
    if not page.evaluate("navigator.gpu ? navigator.gpu.requestAdapter().then((a) => a !== null) : false"):
        pytest.skip("this chromium offers no WebGPU adapter, not even SwiftShader's")
    page.wait_for_function("window.__playground !== undefined")
    assert page.evaluate("window.__playground.ready")["ok"], page.console_log
    info = page.evaluate("window.__playground.info()")
    assert info["decoder"]["backend"] == "webgpu", info
    ref = reference_predictor(live_server, "shapes", fake_decoder_onnx)
    for x, y, pos in CLICKS[:2]:
        page.evaluate("([x, y, p]) => window.__playground.click(x, y, p)", [x, y, pos])
        ref_mask = ref.add_click(x, y, pos)
        m, mask = decode_state(page.evaluate("window.__playground.state()"))
        assert np.mean(m != ref.click_map) < 1e-3
        assert iou(mask, ref_mask) >= 0.99
