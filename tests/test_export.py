"""``interformer export``: the ONNX decoder and per-image graph against PyTorch, the manifest and
its checks, the weight variants, the server's pyramid service and the CLI's errors.

The default model is checked on real images (GrabCut, used here only as test input, never for
training) over 5-click sequences: max |ONNX - PyTorch| of the logit margin <= 1e-3 and
identical masks. The faithful architecture is checked with the authors' small parity weights on
a non-square canvas (dynamic height and width).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from shared_data import REPO, shared_root
from model_export import clicks as cm
from model_export.checkpoint import load_checkpoint
from model_export.configs import CONFIGS, build_model
from model_export.data import list_samples, load_mask, load_rgb
from model_export.default_model import DEFAULT_CHECKPOINT, DEFAULT_CONFIG
from model_export.export import manifest as mf
from model_export.export.cli import export_model
from model_export.export.onnx_decoder import OnnxClickSession, shipped_levels
from model_export.export.onnx_encoder import OnnxPyramidPipeline
from model_export.predictor import InterFormerPredictor
from model_export.pyramid_format import decode_pyramid, read_header


@pytest.fixture(scope="module")
def default_export(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export-default")
    export_model(model="default", out=out, variants=["fp32", "fp16", "int8"], threads=2, log=lambda *a: None)
    return out


@pytest.fixture(scope="module")
def default_net() -> torch.nn.Module:
    net = build_model(CONFIGS[DEFAULT_CONFIG])
    load_checkpoint(net, DEFAULT_CHECKPOINT)
    return net.eval()


def grabcut_samples(n: int):
    d = shared_root() / "data" / "eval" / "grabcut"
    if not (d / "images").is_dir():
        pytest.fail(f"GrabCut eval set not found at {d} (set INTERFORMER_SHARED)")
    return list_samples(d)[:n]


def test_export_writes_files_and_manifest(default_export, default_net):
    m = mf.load_manifest(default_export)
    mf.verify_files(m, default_export)  # every file's sha256 matches
    assert m["model"]["id"] == DEFAULT_CONFIG and m["model"]["version"].startswith("w")
    levels = shipped_levels(default_net)
    assert [f["channels"] for f in m["inputs"]["features"]] == [(32, 64, 128, 256)[i] for i in levels]
    assert [f["stride"] for f in m["inputs"]["features"]] == [(4, 8, 16, 32)[i] for i in levels]
    assert m["canvas"]["longest_side"] == 512 and m["output"]["stride"] == 4
    assert m["pyramid_model"]["kind"] == "tinyvit-adapter"
    assert max(m["verification"]["decoder_max_abs_margin_error"].values()) <= 1e-3
    sizes = {k: v["bytes"] for k, v in m["variants"].items()}
    assert sizes["fp16"] < m["decoder"]["bytes"] and sizes["int8"] < sizes["fp16"]
    # the version is the weights' hash: exporting the same weights again gives the same version
    assert m["checkpoint"]["sha256"] == mf.sha256_file(DEFAULT_CHECKPOINT)


@pytest.mark.parametrize("graphs", ["decoder.onnx", "split"])
def test_onnx_decoder_matches_pytorch_on_click_sequences(default_export, default_net, graphs):
    """Real images, 5 clicks each placed by the NoC rule: margins within 1e-3, masks identical;
    for decoder.onnx and for the split decoder (context once per image, click graph per click)."""
    pipe = OnnxPyramidPipeline.from_manifest(default_export, threads=2)
    if graphs == "split":
        sess = OnnxClickSession(default_export / "decoder.click.onnx", threads=2,
                                context=default_export / "decoder.context.onnx")
    else:
        sess = OnnxClickSession(default_export / "decoder.onnx", threads=2)
    worst = 0.0
    flips = pixels = 0
    for s in grabcut_samples(3):
        rgb, gt = load_rgb(s.image_path), load_mask(s.mask_path)
        feats, geom = pipe.pyramid_and_geometry(rgb)
        ref = InterFormerPredictor(default_net, pipeline=None)
        ref.set_pyramid([torch.from_numpy(f) for f in feats], geom)
        sess.set_pyramid(feats, geom)
        pred = np.zeros(gt.shape, bool)
        near = np.zeros((geom.canvas_h, geom.canvas_w), bool)  # pixels ever within float noise of 0
        for k in range(5):
            c = cm.next_click(pred, gt, ref.clicks)
            if c is None:
                break
            pred = ref.add_click(c.x, c.y, c.positive)
            got = sess.add_click(c.x, c.y, c.positive)
            worst = max(worst, float(np.abs(sess.margin - ref._history[-1].logits).max()))
            # masks: identical except where the image-resolution margin is within float noise of 0
            flipped = got != pred
            assert not (flipped & (np.abs(image_margin(ref)) >= 1e-3)).any(), f"{s.image_path.name} click {k + 1}"
            flips += int(flipped.sum())
            pixels += flipped.size
            # canvas click maps: equal except where a margin so far was within float noise of 0
            # (the two runtimes may round such a pixel either way, and M remembers it)
            near |= np.abs(ref._upsample(ref._history[-1].logits, *ref.click_map.shape)) < 1e-3
            differ = sess.m != ref.click_map
            assert not (differ & ~near).any(), f"{s.image_path.name} click {k + 1}: click maps differ"
            assert differ.sum() <= 10
    assert worst <= 1e-3, worst
    assert flips <= 1e-5 * pixels, (flips, pixels)


def image_margin(pred: InterFormerPredictor) -> np.ndarray:
    """The predictor's last margin at image resolution (the quantity its mask thresholds)."""
    import cv2

    g = pred.geometry
    up = pred._upsample(pred._history[-1].logits, g.canvas_h, g.canvas_w)[: g.resized_h, : g.resized_w]
    return cv2.resize(up, (g.image_w, g.image_h), interpolation=cv2.INTER_LINEAR)


def test_fixed_canvas_sessions_equal_the_dynamic_one(default_export):
    """The manifest names every symbolic dimension of decoder.onnx with its canvas axis and
    divisor; fixing them for a canvas (what the browser's per-canvas sessions do) folds the shape
    arithmetic away and gives the same margins as the dynamic session, square or not."""
    import onnx

    from model_export.export.onnx_decoder import DecoderOnnxModel, _session

    m = mf.load_manifest(default_export)
    dims = m["dynamic_axes"]["onnx_dim_params"]
    graph = onnx.load(str(default_export / "decoder.onnx")).graph
    used = {d.dim_param for v in (*graph.input, *graph.output) for d in v.type.tensor_type.shape.dim if d.dim_param}
    assert used == set(dims), (used, set(dims))
    assert dims["H"] == {"axis": "height", "divisor": 1} and dims["W_8"] == {"axis": "width", "divisor": 8}
    names = [f["name"] for f in m["inputs"]["features"]]
    dynamic = _session(default_export / "decoder.onnx", 2)
    for h, w in ((512, 512), (352, 512), (512, 224)):
        g = torch.Generator().manual_seed(h + w)
        feeds = {f["name"]: torch.randn(1, f["channels"], h // f["stride"], w // f["stride"], generator=g).numpy()
                 for f in m["inputs"]["features"]}
        click_map = np.full((1, 1, h, w), 2, np.float32)
        click_map[..., h // 3: h // 3 + 9, w // 2: w // 2 + 9] = 4
        click_map[..., h // 5: h // 5 + 9, w // 5: w // 5 + 9] = 0
        feeds["click_map"] = click_map
        fixed = _session(default_export / "decoder.onnx", 2, canvas=(h, w), dims=dims)
        a, b = dynamic.run(None, feeds)[0], fixed.run(None, feeds)[0]
        assert a.shape == b.shape == (1, 1, h // 4, w // 4) and len(names) == len(feeds) - 1
        assert float(np.abs(a - b).max()) <= 1e-4
    # a fixed session refuses another canvas: never a silent wrong size
    with pytest.raises(Exception, match="(?i)dim|shape"):
        fixed.run(None, {k: v for k, v in _feeds_for(m, 512, 512).items()})


def test_split_decoder_graphs_match_the_manifest(default_export):
    """The manifest's split entry names the two graphs' real inputs and outputs; the click graph
    reads F3 and F4 only through their keys and values; a fixed session takes every symbolic
    dimension (the key/value lengths too) from its feeds, as the browser worker does."""
    from model_export.export.onnx_decoder import _session, overrides_from_feeds

    m = mf.load_manifest(default_export)
    split = m["split"]
    ctx, click = _session(default_export / split["context"]["file"]), _session(default_export / split["click"]["file"])
    assert [i.name for i in ctx.get_inputs()] == split["context"]["inputs"] == ["f2", "f3", "f4"]
    assert [o.name for o in ctx.get_outputs()] == split["context"]["outputs"] == ["f1", "k2", "v2", "k3", "v3", "k4", "v4"]
    assert [i.name for i in click.get_inputs()] == split["click"]["inputs"]
    assert not {"f3", "f4"} & set(split["click"]["inputs"])
    assert max(m["verification"]["split_max_abs_margin_error"].values()) <= 1e-3
    feeds = _feeds_for(m, 352, 512)
    out = dict(zip(split["context"]["outputs"], ctx.run(None, {k: feeds[k] for k in ("f2", "f3", "f4")})))
    click_feeds = {n: out.get(n, feeds.get(n)) for n in split["click"]["inputs"]}
    dims = overrides_from_feeds(click, click_feeds)
    assert dims["H"] == 352 and dims["W_4"] == 128 and dims["kv4_len"] == out["k4"].shape[2]
    fixed = _session(default_export / split["click"]["file"], overrides=dims)
    assert float(np.abs(fixed.run(None, click_feeds)[0] - click.run(None, click_feeds)[0]).max()) <= 1e-4
    click_feeds["v2"] = click_feeds["v2"][:, :, :-1]  # keys and values of different lengths
    with pytest.raises(ValueError, match="kv2_len"):
        overrides_from_feeds(click, click_feeds)


def _feeds_for(m: dict, h: int, w: int) -> dict:
    feeds = {f["name"]: np.zeros((1, f["channels"], h // f["stride"], w // f["stride"]), np.float32)
             for f in m["inputs"]["features"]}
    feeds["click_map"] = np.full((1, 1, h, w), 2, np.float32)
    return feeds


def test_onnx_pyramid_graph_matches_pytorch(default_export, default_net):
    from model_export.predictor import TinyViTPipeline

    rgb = load_rgb(grabcut_samples(1)[0].image_path)
    pipe = OnnxPyramidPipeline.from_manifest(default_export, threads=2)
    ours = pipe.pyramid(rgb)  # the shipped levels (F1..F4, or F2..F4 when the decoder derives F1)
    ref = TinyViTPipeline(default_net, threads=2).pyramid(rgb)
    ref = [ref[i] for i in shipped_levels(default_net)]
    assert [o.shape for o in ours] == [tuple(r.shape) for r in ref]
    assert max(float(np.abs(o - r.numpy()).max()) for o, r in zip(ours, ref)) <= 1e-3


def test_weight_variants_run_and_agree(default_export):
    m = mf.load_manifest(default_export)
    for name in ("fp16", "int8"):
        d = m["variants"][name]["vs_fp32_random_inputs"]
        assert d["sign_agreement"] > 0.95, (name, d)
        assert (default_export / m["variants"][name]["file"]).stat().st_size == m["variants"][name]["bytes"]


def test_int8_input_decoder_equals_dequantised_pyramid(default_export):
    """decoder.int8_inputs.onnx (DequantizeLinear in the graph) == fp32 decoder on the
    dequantised int8 pyramid file."""
    import onnxruntime as ort

    from model_export.pyramid_format import decode_pyramid_quantized
    from webapp.pyramid_service import PyramidService

    rgb = load_rgb(grabcut_samples(1)[0].image_path)
    data = PyramidService(default_export, scheme="int8", threads=2)(rgb)
    qlevels, header = decode_pyramid_quantized(data)
    levels, _ = decode_pyramid(data)
    g = header["canvas"]
    m = cm.new_click_map(g["canvas_h"], g["canvas_w"])
    m = cm.add_click(m, cm.Click(g["canvas_h"] // 2, g["canvas_w"] // 2, True)).astype(np.float32)[None, None]
    fp32 = ort.InferenceSession(str(default_export / "decoder.onnx"), providers=["CPUExecutionProvider"])
    q = ort.InferenceSession(str(default_export / "decoder.int8_inputs.onnx"), providers=["CPUExecutionProvider"])
    names = [lv["name"].lower() for lv in header["levels"]]  # f1..f4, or f2..f4 (F1 derived in the graph)
    feeds = {n: lv[None] for n, lv in zip(names, levels)} | {"click_map": m}
    qfeeds = {"click_map": m}
    for n, ql in zip(names, qlevels):
        qfeeds[f"{n}_q"] = ql.data.reshape(ql.shape)[None].astype(np.int8)
        qfeeds[f"{n}_scale"] = ql.scale.astype(np.float32)
        qfeeds[f"{n}_zero_point"] = ql.zero_point.astype(np.int8)
    a = fp32.run(None, feeds)[0]
    b = q.run(None, qfeeds)[0]
    assert np.abs(a - b).max() <= 1e-4


def test_faithful_small_config_exports_with_dynamic_canvas(parity_dir, tmp_path):
    """The authors' architecture (small parity weights): decoder and ViT+SimpleFPN graph on
    two canvas sizes, one not square."""
    manifest = export_model(model="small-light", checkpoint=parity_dir / "small_light.pth", out=tmp_path, variants=["fp32"],
                            quantized_inputs=False, threads=2, log=lambda *a: None)
    assert manifest["canvas"]["longest_side"] is None
    assert manifest["pyramid_model"]["kind"] == "vit-simplefpn"
    ver = manifest["verification"]
    assert set(ver["decoder_max_abs_margin_error"]) >= {"512x512", "320x480"}
    assert max(ver["decoder_max_abs_margin_error"].values()) <= 1e-3
    assert max(ver["pyramid_max_abs_error"].values()) <= 1e-3
    # split: every stage attends (from F1), F1 is shipped, stage 2 has a second block over x
    assert manifest["split"]["context"]["outputs"] == ["k1", "v1", "k2", "v2", "k3", "v3", "k4", "v4"]
    assert manifest["split"]["click"]["inputs"][0] == "f1" and "f2" not in manifest["split"]["click"]["inputs"]
    assert set(ver["split_max_abs_margin_error"]) >= {"512x512", "320x480", "640x480 fixed canvas"}
    assert max(ver["split_max_abs_margin_error"].values()) <= 1e-3


def test_validate_manifest_names_every_mismatch(default_export):
    from webapp.pyramid_service import PyramidService

    m = mf.load_manifest(default_export)
    svc = PyramidService(default_export, scheme="int8", threads=2)
    rgb = np.zeros((200, 300, 3), np.uint8)
    header = read_header(svc(rgb))
    geom = mf.validate_manifest(m, header)
    assert (geom.canvas_h, geom.canvas_w) == (352, 512)
    bad = json.loads(json.dumps(header))
    bad["model"]["version"] = "other"
    channels = bad["levels"][1]["shape"][0]
    bad["levels"][1]["shape"][0] = channels + 1
    with pytest.raises(mf.ManifestError) as e:
        mf.validate_manifest(m, bad)
    assert "version other" in str(e.value) and f"{channels} channels" in str(e.value)


def test_pyramid_service_errors(tmp_path, default_export):
    from webapp.pyramid_service import ModelNotExportedError, PyramidService

    with pytest.raises(ModelNotExportedError, match="interformer export"):
        PyramidService(tmp_path)
    with pytest.raises(ValueError):
        PyramidService(default_export, scheme="int3")
    svc = PyramidService(default_export, scheme="int8", threads=1)
    assert svc.cache_key.startswith(f"{DEFAULT_CONFIG}-w") and svc.cache_key.endswith("int8")
    with pytest.raises(ValueError, match="uint8 RGB"):
        svc(np.zeros((10, 10), np.uint8))
    # a copied folder whose decoder.onnx was altered is refused on its sha256
    broken = tmp_path / "broken"
    shutil.copytree(default_export, broken)
    with open(broken / "pyramid.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(mf.ManifestError, match="sha256"):
        PyramidService(broken)


def test_cli_errors_exit_2(tmp_path):
    exe = [sys.executable, "-m", "model_export.cli"]
    r = subprocess.run([*exe, "export", "--model", "no-such-model", "--out", str(tmp_path)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "unknown model" in r.stderr
    r = subprocess.run([*exe, "export", "--variants", "fp8", "--out", str(tmp_path)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "fp8" in r.stderr
    r = subprocess.run([*exe, "serve", "--model-dir", str(tmp_path / "none")], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "interformer export" in r.stderr
