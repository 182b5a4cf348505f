"""The product path end to end with the real model: ``interformer export`` of the default model,
the server's onnxruntime pyramid service (TinyViT encoder + exported pyramid graph, int8 file),
the page's onnxruntime-web decoder (the split one: context graph once per image, click graph per
click) -- compared click by click with the PyTorch model.

The reference is ``InterFormerPredictor`` running the *PyTorch* network on the very pyramid file
the page received (dequantised), so this checks the export, the manifest, the pyramid file
path and the browser's click map and mask logic at once. At the first click (identical inputs)
the page's decoder output must be within 1e-3 of PyTorch's; the browser's click map must equal
Python's except at pixels whose margin, at that click or an earlier one, was within that click's
browser-vs-PyTorch difference of zero (two runtimes round differently, and M carries earlier
predictions); and the masks must agree to IoU >= 0.99 at every click.
"""

from __future__ import annotations

import base64
import urllib.request

import numpy as np
import pytest
import torch

from model_export.checkpoint import load_checkpoint
from model_export.configs import CONFIGS, build_model
from model_export.default_model import DEFAULT_CHECKPOINT, DEFAULT_CONFIG
from model_export.geometry import CanvasGeometry
from model_export.predictor import InterFormerPredictor
from model_export.pyramid_format import decode_pyramid
from test_playground import decode_state, iou, open_playground

# (x, y, positive) on the "shapes" sample (640x480): the red disk, then a negative on the sky,
# a positive on the blue square, a negative on the triangle, one more on the disk's edge.
CLICKS = [(200, 250, True), (300, 60, False), (470, 210, True), (515, 400, False), (140, 250, True)]


@pytest.fixture(scope="module")
def default_net() -> torch.nn.Module:
    """The bundled default model (the committed weights) in PyTorch."""
    assert DEFAULT_CHECKPOINT.is_file(), f"the default model's weights are missing: {DEFAULT_CHECKPOINT}"
    net = build_model(CONFIGS[DEFAULT_CONFIG])
    load_checkpoint(net, DEFAULT_CHECKPOINT)
    return net.eval()


@pytest.fixture(scope="module")
def exported_dir(tmp_path_factory, default_net):
    from model_export.export.cli import export_model

    out = tmp_path_factory.mktemp("default-export")
    export_model(model="default", out=out, variants=["fp32"], quantized_inputs=False, verify=False,
                 log=lambda *a: None)
    return out


@pytest.fixture(scope="module")
def real_server(exported_dir, tmp_path_factory):
    from live_server import serve
    from webapp.serve import build_app

    app = build_app(exported_dir, tmp_path_factory.mktemp("real-data"), threads=2)
    app.config["TESTING"] = True
    with serve(app) as url:
        yield url


def test_browser_decoder_matches_pytorch(page, real_server, default_net):
    status = open_playground(page, real_server, "?sample=shapes")
    assert status == {"ok": True, "error": None}, (status, page.console_log)
    info = page.evaluate("window.__playground.info()")
    assert info["manifest"]["id"] == DEFAULT_CONFIG
    assert info["decoder"]["numThreads"] > 1, info
    # the split decoder: context once per image (F1, keys / values), the click graph per click
    assert info["decoder"]["split"] is True, info

    with urllib.request.urlopen(f"{real_server}/api/playground/samples/shapes/pyramid") as r:
        levels, header = decode_pyramid(r.read())
    assert header["model"] == info["manifest"]
    ref = InterFormerPredictor(default_net, pipeline=None)
    ref.set_pyramid([torch.from_numpy(lv)[None] for lv in levels], CanvasGeometry(**header["canvas"]))

    for i, (x, y, pos) in enumerate(CLICKS):
        step = f"click {i + 1} ({x}, {y}, {'+' if pos else '-'})"
        page.evaluate("([x, y, p]) => window.__playground.click(x, y, p)", [x, y, pos])
        ref_mask = ref.add_click(x, y, pos)
        m, mask = decode_state(page.evaluate("window.__playground.state()"))
        ref_m = ref.click_map
        # The page's decoder output against PyTorch's. At the first click both get identical
        # inputs, so the difference is kernel rounding (wasm vs native; the derived F1 adds a
        # ConvTranspose): <= 1e-3. From then on each side's click map carries its own earlier
        # predictions, which may differ at pixels whose margin was within rounding of 0, so
        # the outputs may drift by more; the masks must still agree (IoU >= 0.99 below).
        st = page.evaluate("window.__playground.state()")
        js_margin = np.frombuffer(base64.b64decode(st["margin"]["base64"]), np.float32).reshape(
            st["margin"]["height"], st["margin"]["width"])
        py_margin = ref._history[-1].logits
        err = float(np.abs(js_margin - py_margin).max())
        if i == 0:
            assert err <= 1e-3, f"{step}: max |browser - PyTorch| margin {err:.2e} on identical inputs"
        # A pixel of M may differ only where the margin, at this click or an earlier one, was
        # within that click's browser-vs-PyTorch difference of 0 (never elsewhere).
        tol = max(err, 1e-3)
        near = (np.abs(ref._upsample(py_margin, *ref_m.shape)) <= tol) | (near if i else False)
        bad = np.argwhere((m != ref_m) & ~near)
        assert not len(bad), f"{step}: click map differs at {len(bad)} pixels away from the boundary: {bad[:5]}"
        score = iou(mask, ref_mask)
        assert score >= 0.99, f"{step}: mask IoU {score:.4f} against PyTorch"
        # a positive click's own pixel is foreground, a negative one's background (click disks are
        # definite labels, and the model is trained to follow them)
        assert bool(mask[y, x]) == pos, f"{step}: the clicked pixel is not labelled as clicked"


def test_decoder_start_fallback_and_fixed_canvas_sessions(page, real_server):
    """loadDecoder's recovery and the worker's per-canvas sessions, in the page, on the real
    decoder: a worker that does not start in time (here: a 1 ms limit) is replaced by a
    single-threaded one that says so; `prepare` builds a fixed-shape session once per canvas
    size (a second call finds it) and a pyramid of that size then decodes with it; a pyramid of
    a size never prepared is answered by the dynamic session until its fixed one is ready."""
    status = open_playground(page, real_server, "?sample=shapes")
    assert status == {"ok": True, "error": None}, (status, page.console_log)
    got = page.evaluate("""async () => {
        const { loadDecoder } = await import("/static/js/decoder.js");
        const { normalizeManifest } = await import("/static/js/manifest.js");
        const listing = await (await fetch("/api/playground/samples")).json();
        const manifest = normalizeManifest(await (await fetch(listing.decoder.manifest)).json());
        const d = await loadDecoder(listing.decoder.model, manifest, { numThreads: 2, startTimeoutMs: 1, preferWebGPU: false });
        const first = await d.prepare(384, 512);
        const again = await d.prepare(384, 512);
        const levels = manifest.features.map((f) => ({ name: f.name, stride: f.stride,
            shape: [f.channels, 384 / f.stride, 512 / f.stride], data: new Float32Array(f.channels * (384 / f.stride) * (512 / f.stride)) }));
        const set = await d.setPyramid(levels);
        const cm = { height: 384, width: 512, data: new Uint8Array(384 * 512).fill(2) };
        const r = await d.predict(cm);
        // a canvas size never prepared: the dynamic session answers at once, the fixed one takes over
        const lv2 = manifest.features.map((f) => ({ name: f.name, stride: f.stride,
            shape: [f.channels, 320 / f.stride, 448 / f.stride], data: new Float32Array(f.channels * (320 / f.stride) * (448 / f.stride)) }));
        const set2 = await d.setPyramid(lv2);
        const cm2 = { height: 320, width: 448, data: new Uint8Array(320 * 448).fill(2) };
        await d.prepare(320, 448);  // resolves when that session is built
        let r2 = await d.predict(cm2);
        for (let i = 0; i < 20 && !r2.fixed; i++) r2 = await d.predict(cm2);  // it switches after a warm-up run
        d.terminate();
        return { info: d.info, dims: manifest.dimParams.length, first, again, set, out: [r.h4, r.w4, r.margin.length],
                 fixedRun: r.fixed, set2, fixedLater: r2.fixed, out2: [r2.h4, r2.w4] };
    }""")
    assert got["info"]["numThreads"] == 1 and "one thread" in got["info"]["fallback"], got["info"]
    assert got["info"]["fixedShapes"] is True and got["dims"] >= 8
    assert got["first"]["fixed"] and got["again"]["fixed"] and got["set"]["fixed"], got
    assert got["again"]["sessionMs"] < got["first"]["sessionMs"], got  # found, not built again
    assert got["out"] == [96, 128, 96 * 128] and got["fixedRun"]
    assert got["set2"]["fixed"] is False and got["fixedLater"] is True and got["out2"] == [80, 112], got
