"""The browser-lean architecture (``interformer-tinyvit-v3``) and how it starts from v2's weights.

v3 differs from v2 only where the browser profile said the time goes: two key/value pooling
branches instead of four at strides 8 and 16, MLP ratio 2, 2x2 patch merging. ``warm_start``
copies what fits and slices the rest (``checkpoint.shrink_transfers``); these tests check that
each slice is the principled one and that the model exports exactly.
"""

from __future__ import annotations

import torch

from model_export.checkpoint import read_state_dict, warm_start
from model_export.configs import CONFIGS, build_model
from model_export.default_model import WEIGHTS_DIR
from model_export.export.cli import export_model
from model_export.modeling.imsa import PatchMerging

V2 = WEIGHTS_DIR / "interformer-tinyvit-v2.pt"


def test_v3_starts_from_v2_with_every_tensor_copied_or_sliced():
    net = build_model(CONFIGS["interformer-tinyvit-v3"])
    copied, sliced, fresh = warm_start(net, V2)
    assert fresh == [] and len(copied) > 150 and len(sliced) > 10
    old, new = read_state_dict(V2), net.state_dict()
    # pooling branches go by ratio: stage 1 keeps ratios (8, 12) of v2's (6, 8, 10, 12)
    p = "neck.stages.1.blocks.0.attn.dconvs"
    assert torch.equal(new[f"{p}.0.weight"], old[f"{p}.1.weight"].float())
    assert torch.equal(new[f"{p}.1.weight"], old[f"{p}.3.weight"].float())
    # 2x2 merging keeps the 3x3 window's taps (ky, kx) in {1, 2}, channel-major like Unfold
    r = "neck.stages.1.downsample.reduction.weight"
    c = new[r].shape[1] // 4
    assert new[r].shape[1] == 4 * c and old[r].shape[1] == 9 * c
    assert torch.equal(new[r][:, 4 * 3 + 2 * 1 + 0], old[r][:, 9 * 3 + 3 * 2 + 1].float())  # channel 3, tap (2, 1)
    # the narrower MLP keeps whole hidden units (rows of mlp.0 with their mlp.4 columns)
    m = "neck.stages.2.blocks.0.mlp"
    rows = [next(i for i in range(old[f"{m}.0.weight"].shape[0]) if torch.equal(old[f"{m}.0.weight"][i].float(), row))
            for row in new[f"{m}.0.weight"]]
    assert rows == sorted(rows) and len(set(rows)) == len(rows) == new[f"{m}.0.weight"].shape[0]
    assert torch.equal(new[f"{m}.4.weight"], old[f"{m}.4.weight"][:, rows].float())


def test_two_by_two_merging_sees_the_same_pixels_as_the_central_taps():
    """Unfold(k2, s2) of a map == the taps (1..2, 1..2) of Unfold(k3, s2, p1): what the slice assumes."""
    x = torch.randn(1, 3, 8, 10)
    two = torch.nn.functional.unfold(x, 2, stride=2).reshape(1, 3, 2, 2, -1)
    three = torch.nn.functional.unfold(x, 3, padding=1, stride=2).reshape(1, 3, 3, 3, -1)
    assert torch.equal(two, three[:, :, 1:, 1:])
    pm = PatchMerging(3, 5, kernel_size=2).eval()
    assert pm(x).shape == (1, 5, 4, 5)


def test_v3_exports_with_fixed_and_dynamic_canvas(tmp_path):
    net = build_model(CONFIGS["interformer-tinyvit-v3"])
    warm_start(net, V2)
    ckpt = tmp_path / "v3.pt"
    torch.save({"state_dict": net.state_dict(), "meta": {"config": "interformer-tinyvit-v3"}}, ckpt)
    manifest = export_model(model="interformer-tinyvit-v3", checkpoint=ckpt, out=tmp_path / "out", variants=["fp32"],
                            quantized_inputs=False, pyramid=False, threads=2, log=lambda *a: None)
    errs = manifest["verification"]["decoder_max_abs_margin_error"]
    assert {"512x512", "320x480", "320x480 fixed canvas"} <= set(errs)
    assert max(errs.values()) <= 1e-3
    assert manifest["model"]["id"] == "interformer-tinyvit-v3"
