"""The product path end to end with the real model: ``interformer export`` of the default model,
the server's onnxruntime pyramid service (TinyViT encoder + exported pyramid graph, int8 file),
the page's onnxruntime-web decoder -- compared click by click with the PyTorch model.

The reference is ``InterFormerPredictor`` running the *PyTorch* network on the very pyramid file
the page received (dequantised), so this checks the export, the manifest, the pyramid file
path and the browser's click map and mask logic at once. The browser's click map must equal
Python's except at pixels whose upsampled margin is within 1e-3 of zero (float rounding of
two different runtimes), and the masks must agree to IoU >= 0.99.
"""

from __future__ import annotations

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
        diff = m != ref_m
        if diff.any():
            # pixels whose label differs must be ones the two runtimes may round either way
            margin = ref._upsample(ref._history[-1].logits, *ref_m.shape)
            near = np.abs(margin) < 1e-3
            bad = np.argwhere(diff & ~near)
            assert not len(bad), f"{step}: click map differs at {len(bad)} pixels away from the boundary: {bad[:5]}"
        score = iou(mask, ref_mask)
        assert score >= 0.99, f"{step}: mask IoU {score:.4f} against PyTorch"
        # a positive click's own pixel is foreground, a negative one's background (click disks are
        # definite labels, and the model is trained to follow them)
        assert bool(mask[y, x]) == pos, f"{step}: the clicked pixel is not labelled as clicked"
