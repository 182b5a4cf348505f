"""I-MSA pooled key/value sizes: the official rule (Python round, half to even), by hand and vs the fixture.

Rule: ph = round(h / round(h / min(TH / ratio, h))), TH = 512 / cumulative stride (128, 64, 32, 16).
The fixture jsons record, with forward hooks on the official depth-wise convs, the key/value map
size each pooling branch really used for images A (512x512) and B (320x480 canvas).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model_export.configs import CONFIGS, build_model
from model_export.modeling.imsa import pool_size

TARGETS = [(128, 128), (64, 64), (32, 32), (16, 16)]


@pytest.mark.parametrize(
    "h, w, target, ratio, expected",
    [
        # 512x512 canvas: stage 0 is 128x128, TH = 128
        (128, 128, (128, 128), 12, (11, 11)),  # 128/12 = 10.67; 128/10.67 = 12; 128/12 = 10.67 -> 11
        (128, 128, (128, 128), 16, (8, 8)),
        (128, 128, (128, 128), 20, (6, 6)),  # 6.4 -> 128/6.4 = 20 -> 6.4 -> 6
        (128, 128, (128, 128), 24, (5, 5)),
        (16, 16, (16, 16), 1, (16, 16)),  # ratio 1: no pooling
        (16, 16, (16, 16), 4, (4, 4)),
        # 320x480 canvas, stage 2 (20x30, TH = 32), ratio 4: min(8, 20) = 8; 20 / 8 = 2.5 -> 2
        # (half to even; half-up would give 3 and then 7); 20 / 2 = 10. So 10, not 8.
        # Width: 30 / 8 = 3.75 -> 4; 30 / 4 = 7.5 -> 8 (half to even).
        (20, 30, (32, 32), 4, (10, 8)),
        # 320x480 canvas, stage 3 (10x15, TH = 16), ratio 2: 10 / 8 = 1.25 -> 1 -> 10; 15 / 8 -> 2 -> 7.5 -> 8
        (10, 15, (16, 16), 2, (10, 8)),
        (10, 15, (16, 16), 4, (5, 4)),  # 10/4 = 2.5 -> 2 -> 5; 15/4 = 3.75 -> 4 -> 3.75 -> 4
        # map smaller than the target: min(TH / r, h) = h -> no pooling
        (3, 5, (128, 128), 12, (3, 5)),
    ],
)
def test_pool_size_by_hand(h, w, target, ratio, expected):
    assert pool_size(h, w, target, ratio) == expected


def test_pool_size_half_to_even_is_what_matters():
    # the same numbers with round-half-up would give 7 rows, the naive TH / r would give 8
    def half_up(v: float) -> int:
        return int(v + 0.5)

    h, th, r = 20, 32, 4
    assert half_up(h / half_up(h / min(th / r, h))) == 7
    assert pool_size(h, h, (th, th), r) == (10, 10)


def _fixture_sizes(parity_dir: Path) -> list[tuple[str, str, dict]]:
    out = []
    for js in ("small_light_config.json", "small_tiny_config.json"):
        images = json.loads((parity_dir / js).read_text())["images"]
        for img in ("A", "B"):
            out.append((js, img, images[img]))
    return out


def test_pool_size_function_matches_fixture(parity_dir):
    n = 0
    for js, img, info in _fixture_sizes(parity_dir):
        for name, rec in info["imsa_pooled_kv_sizes"].items():
            if name.endswith("#query"):
                continue
            stage = int(name.split(".")[1])
            qh, qw = info["imsa_pooled_kv_sizes"][name + "#query"]
            for branch in rec:
                got = pool_size(qh, qw, TARGETS[stage], branch["pool_ratio"])
                assert got == tuple(branch["kv_hw"]), (js, img, name, branch)
                n += 1
    assert n == (5 + 13) * 4 * 2  # Light 5 blocks, Tiny 13 blocks; 4 ratios; images A and B


def _record_sizes(model: torch.nn.Module, canvas_hw: tuple[int, int]) -> dict:
    """Run the neck on the meta device (shapes only) and record query and pooled K/V sizes."""
    rec: dict = {}

    def q_hook(name):
        def hook(mod, args):
            rec[name + "#query"] = list(args[0].shape[-2:])

        return hook

    def kv_hook(name, ratio):
        def hook(mod, args):
            rec.setdefault(name, []).append({"pool_ratio": ratio, "kv_hw": list(args[0].shape[-2:])})

        return hook

    handles = []
    for name, mod in model.neck.named_modules():
        if name.endswith(".attn"):
            handles.append(mod.register_forward_pre_hook(q_hook(name)))
            for ratio, dc in zip(mod.pool_ratios, mod.dconvs):
                handles.append(dc.register_forward_pre_hook(kv_hook(name, ratio)))
    h, w = canvas_hw
    with torch.device("meta"):
        feats = [torch.zeros(1, c, h // s, w // s) for c, s in zip((32, 64, 128, 256), (4, 8, 16, 32))]
        model.neck(feats, torch.zeros(1, 1, h, w))
    for hd in handles:
        hd.remove()
    return rec


@pytest.mark.parametrize("config, js", [("small-light", "small_light_config.json"),
                                        ("small-tiny", "small_tiny_config.json")])
def test_neck_forward_uses_fixture_sizes(parity_dir, config, js):
    with torch.device("meta"):
        model = build_model(CONFIGS[config])
    images = json.loads((parity_dir / js).read_text())["images"]
    for img in ("A", "B"):
        info = images[img]
        got = _record_sizes(model, tuple(info["padded_hw"]))
        assert got == info["imsa_pooled_kv_sizes"], img


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("size", [(10, 11), (8, 8), (7, 6), (5, 5), (10, 8), (5, 4), (1, 1), (20, 30)])
def test_sliced_adaptive_pools_equal_pytorch(size):
    """The trace/ONNX-export paths of the adaptive pools give PyTorch's bins."""
    from model_export.modeling.heads import AdaptiveAvgPool2d
    from model_export.modeling.imsa import adaptive_max_pool2d_sliced

    x = torch.randn(1, 3, 20, 30, generator=torch.Generator().manual_seed(0))
    assert torch.equal(adaptive_max_pool2d_sliced(x, size), torch.nn.functional.adaptive_max_pool2d(x, size))
    pool = AdaptiveAvgPool2d(size)
    traced = torch.jit.trace(pool, (x,), check_trace=False)
    torch.testing.assert_close(traced(x), torch.nn.functional.adaptive_avg_pool2d(x, size), rtol=0, atol=1e-6)
