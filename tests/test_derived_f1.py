"""Models whose F1 is derived from F2 (``interformer-tinyvit-v2``): the I-MSA neck starts at
stride 8 (``attend_from=1``), the server ships F2..F4 only and the decoder graph computes F1.

Checked with randomly initialised weights (the shapes and the data flow are what matter here;
the committed default model is checked on real images in test_export.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_export import clicks as cm
from model_export.configs import CONFIGS, build_model
from model_export.export import manifest as mf
from model_export.export.onnx_decoder import DecoderOnnxModel, OnnxClickSession, export_decoder, shipped_levels
from model_export.export.onnx_encoder import OnnxPyramidPipeline, export_pyramid, pyramid_io_spec
from model_export.geometry import CanvasGeometry
from model_export.modeling.imsa import IMSA
from model_export.pyramid_format import decode_pyramid, encode_pyramid, read_header

V2 = "interformer-tinyvit-v2"


@pytest.fixture(scope="module")
def v2_net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model(CONFIGS[V2]).eval()
    for m in net.modules():  # non-trivial norm statistics, so that errors would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net


def test_pass_through_stage_has_no_attention_and_ships_three_levels(v2_net):
    neck = v2_net.neck
    assert neck.attend_from == 1 and neck.cum_strides == (4, 8, 16, 32)
    assert sum(p.numel() for p in neck.stages[0].parameters()) == 0  # no blocks, no downsample
    assert neck.stages[1].blocks and neck.attend_embed.shape == (5, 64)
    assert shipped_levels(v2_net) == (1, 2, 3)
    assert shipped_levels(build_model(CONFIGS["interformer-tinyvit"])) == (0, 1, 2, 3)


def test_bad_pass_through_configs_are_refused():
    with pytest.raises(ValueError, match="attend_from"):
        IMSA(attend_from=2)
    with pytest.raises(ValueError, match="pass-through"):
        IMSA(depths=(1, 1, 1, 1), refine_start=(1, 1, 1, 1), attend_from=1)


def test_decode_takes_shipped_or_full_pyramid(v2_net):
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(1, 256, 40, 40, generator=g)
    with torch.no_grad():
        full = v2_net.extract_features(emb)
        assert [tuple(f.shape[1:]) for f in full] == [(32, 80, 80), (64, 40, 40), (128, 20, 20), (256, 10, 10)]
        assert torch.equal(full[0], v2_net.backbone.derive_f1(full[1]))
        m = torch.full((1, 1, 320, 320), 2.0)
        m[..., 100:110, 150:160] = 4
        a = v2_net.decode(full, m)
        b = v2_net.decode(full[1:], m)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="feature maps"):
        v2_net.decode(full[2:], m)


def test_export_computes_f1_in_the_graph(v2_net, tmp_path):
    wrapper = DecoderOnnxModel(v2_net)
    assert wrapper.feature_names == ("f2", "f3", "f4") and wrapper.strides == (8, 16, 32)
    path = export_decoder(v2_net, tmp_path / "decoder.onnx")
    sess = OnnxClickSession(path, threads=1)
    assert sess.feature_names == ["f2", "f3", "f4"]
    for h, w in ((512, 512), (320, 480)):
        args = wrapper.example_inputs(h, w, seed=h + w)
        with torch.no_grad():
            lg = v2_net.decode(list(args[:-1]), args[-1])
            eager = wrapper(*args)
        ref = (lg[:, 1:2] - lg[:, 0:1]).numpy()
        assert float(np.abs(eager.numpy() - ref).max()) <= 1e-5
        feeds = dict(zip(["f2", "f3", "f4", "click_map"], (a.numpy() for a in args)))
        got = sess.session.run(None, feeds)[0]
        assert got.shape == (1, 1, h // 4, w // 4)
        assert float(np.abs(got - ref).max()) <= 1e-3


def test_pyramid_graph_file_and_manifest_carry_three_levels(v2_net, tmp_path):
    pp, kind = export_pyramid(v2_net, tmp_path / "pyramid.onnx")
    spec = pyramid_io_spec(kind, tuple(v2_net.neck.in_channels), shipped_levels(v2_net))
    assert [i["name"] for i in spec["inputs"]] == ["embedding"]
    assert [o["name"] for o in spec["outputs"]] == ["f2", "f3", "f4"]
    pipe = OnnxPyramidPipeline(pp, kind, threads=1, model_id=V2, model_version="wtest")
    assert pipe.level_names == ["F2", "F3", "F4"] and pipe.level_strides == [8, 16, 32]
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((256, 64, 64)).astype(np.float32)
    rgb = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    feats = pipe.pyramid(rgb, embedding=emb)
    geom = pipe.geometry(300, 400)
    assert (geom.canvas_h, geom.canvas_w) == (384, 512)
    assert [f.shape for f in feats] == [(1, 64, 48, 64), (1, 128, 24, 32), (1, 256, 12, 16)]
    with torch.no_grad():
        ref = v2_net.extract_features(torch.from_numpy(emb)[None])
    assert float(np.abs(feats[0] - ref[1][:, :, :48, :64].numpy()).max()) <= 1e-4

    data = encode_pyramid([f[0] for f in feats], {"model_id": V2, "model_version": "wtest", "canvas": geom},
                          "int8", names=pipe.level_names, strides=pipe.level_strides)
    header = read_header(data)
    assert [(lv["name"], lv["stride"]) for lv in header["levels"]] == [("F2", 8), ("F3", 16), ("F4", 32)]
    dec_path = export_decoder(v2_net, tmp_path / "decoder.onnx")
    manifest = mf.build_manifest(
        model_id=V2, model_version="wtest", config=V2, decoder=mf.file_entry(dec_path), opset=17,
        in_channels=tuple(v2_net.neck.in_channels), levels=shipped_levels(v2_net),
    )
    assert [f["name"] for f in manifest["inputs"]["features"]] == ["f2", "f3", "f4"]
    assert manifest["inputs"]["derived"] == [{"level": "F1", "from": "F2", "where": "inside decoder.onnx"}]
    assert mf.validate_manifest(manifest, header) == geom
    # a four-level (F1..F4) pyramid is refused by this decoder, with the reason
    four = encode_pyramid([np.zeros((32, 96, 128), np.float32)] + [f[0] for f in feats],
                          {"model_id": V2, "model_version": "wtest", "canvas": geom}, "int8")
    with pytest.raises(mf.ManifestError, match="3 feature levels, the pyramid has 4"):
        mf.validate_manifest(manifest, read_header(four))

    # clicks on the decoded int8 pyramid: the decoder's own F1 from the dequantized F2
    levels, _ = decode_pyramid(data)
    sess = OnnxClickSession(dec_path, threads=1)
    sess.set_pyramid(levels, geom)
    mask = sess.add_click(200, 150, True)
    assert mask.shape == (300, 400) and sess.m[150 * 384 // 300, 200 * 512 // 400] == cm.DEFINITE_FG
