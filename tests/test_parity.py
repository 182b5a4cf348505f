"""Numerical parity with the authors' own code (fixtures/official_parity, see its README).

Light-small (small_light.pth, small_light_io.npz), images A (512x512) and B (300x450 -> 320x480,
exercising the resized position tables): preprocessing, F1..F4, per-click logits / upsampled
logits / predictions given the stored F and M_before, the M update rules, the neck outputs.
Tiny-small (small_light.pth + small_tiny_refine.pth, small_tiny_zoomin_io.npz): zoom-in ROIs,
ROI and no-ROI logits, predictions, M updates. Tolerances from the README: 1e-4 on features and
logits; predictions compared outside pixels with |logit1 - logit0| < 1e-3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model_export.checkpoint import load_checkpoint
from model_export.clicks import Click, add_click, new_click_map, update_from_prediction
from model_export.configs import CONFIGS, build_model
from model_export.modeling.vit import (
    nearest_source_tokens,
    resample_abs_pos_embed,
    resample_rel_pos_bias,
    resample_relative_position_index,
    beit_relative_position_index,
)
from model_export.zoom_in import get_roi

ATOL = 1e-4
MARGIN = 1e-3
MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)

# One thread: on a shared 2-core machine a 2-thread pool stalls at every parallel region (the
# README: results move by < 1e-5 with the thread count, well inside the tolerances).
torch.set_num_threads(1)


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def io(parity_dir) -> dict[str, np.ndarray]:
    return _npz(parity_dir / "small_light_io.npz")


@pytest.fixture(scope="module")
def zio(parity_dir) -> dict[str, np.ndarray]:
    return _npz(parity_dir / "small_tiny_zoomin_io.npz")


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _ref(m: np.ndarray) -> torch.Tensor:
    """M as the demo holds it: float32 (1, 1, H, W)."""
    return _t(m.astype(np.float32))[None, None]


def official_preprocess(rgb: np.ndarray) -> np.ndarray:
    """mmcv.imnormalize + Pad(size_divisor=32, pad_val=0) + CHW, (1, 3, H, W) float32.

    mmcv's cv2.subtract / cv2.multiply with float64 mean / (1/std) on a float32 image equals
    (rgb - mean) / std computed in float32, bit for bit (multiplying by a float32 1/std would be
    1 ulp off in places).
    """
    h, w = rgb.shape[:2]
    hp, wp = -(-h // 32) * 32, -(-w // 32) * 32
    x = np.zeros((1, 3, hp, wp), dtype=np.float32)
    x[0, :, :h, :w] = ((rgb.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)
    return x


# ----- models and their outputs (computed once per module) -----
@pytest.fixture(scope="module")
def light(parity_dir) -> torch.nn.Module:
    model = build_model(CONFIGS["small-light"])
    load_checkpoint(model, parity_dir / "small_light.pth")
    return model.eval()


@pytest.fixture(scope="module")
def tiny(parity_dir) -> torch.nn.Module:
    model = build_model(CONFIGS["small-tiny"])
    load_checkpoint(model, [parity_dir / "small_light.pth", parity_dir / "small_tiny_refine.pth"])
    return model.eval()


def _feats(io: dict, img: str) -> list[torch.Tensor]:
    return [_t(io[f"{img}_F{i}"]) for i in range(1, 5)]


@pytest.fixture(scope="module")
def light_out(light, io) -> dict:
    out: dict = {}
    with torch.inference_mode():
        for img in "AB":
            out[f"{img}_F"] = light.extract_features(_t(io[f"{img}_input"]))
            feats = _feats(io, img)
            for k in (1, 2, 3):
                m = _ref(io[f"{img}_c{k}_M_before"])
                neck_outs = []
                hook = light.neck.register_forward_hook(lambda mod, args, res: neck_outs.append(res))
                try:
                    logits = light.decode(feats, m)
                finally:
                    hook.remove()
                out[f"{img}_c{k}_logits"] = logits
                out[f"{img}_c{k}_logits_up"] = light.upsample_logits(logits, m.shape[-2:])
                out[f"{img}_c{k}_neck"] = neck_outs[0]
    return out


@pytest.fixture(scope="module")
def tiny_out(tiny, io, zio) -> dict:
    out: dict = {}
    feats = _feats(io, "B")
    h, w = zio["B_c1_M_before"].shape
    prev = np.zeros((h, w), dtype=np.uint8)
    with torch.inference_mode():
        for k in (1, 2, 3):
            m_np = zio[f"B_c{k}_M_before"]
            roi = None if k == 1 else get_roi(prev, m_np, expand_ratio=1.4, min_size=32, stride=32)
            m = _ref(m_np)
            logits = tiny.decode(feats, m, roi=roi)
            out[f"c{k}_roi"] = roi
            out[f"c{k}_logits"] = logits
            out[f"c{k}_noroi_logits"] = logits if roi is None else tiny.decode(feats, m)
            out[f"c{k}_logits_up"] = tiny.upsample_logits(logits, (h, w))
            prev = zio[f"B_c{k}_pred"]
    return out


def _maxerr(a: torch.Tensor, b: np.ndarray) -> float:
    assert tuple(a.shape) == b.shape
    return float((a.float() - _t(b)).abs().max())


def _pred(logits_up: torch.Tensor) -> np.ndarray:
    return logits_up.argmax(dim=1)[0].numpy().astype(np.uint8)


def _assert_pred(ours: np.ndarray, ref: np.ndarray, ref_logits_up: np.ndarray) -> None:
    margin = np.abs(ref_logits_up[0, 1] - ref_logits_up[0, 0])
    sure = margin >= MARGIN
    bad = (ours != ref) & sure
    assert not bad.any(), f"{int(bad.sum())} confident pixels differ"
    assert int((ours != ref).sum()) <= int((~sure).sum())


# ----- Light-small -----
@pytest.mark.parametrize("img", ["A", "B"])
def test_preprocessing_gives_official_input(io, img):
    x = official_preprocess(io[f"{img}_image_rgb"])
    assert x.shape == io[f"{img}_input"].shape
    assert np.array_equal(x, io[f"{img}_input"])


@pytest.mark.parametrize("img", ["A", "B"])
def test_backbone_features(light_out, io, img):
    for i, f in enumerate(light_out[f"{img}_F"], start=1):
        err = _maxerr(f, io[f"{img}_F{i}"])
        assert err <= ATOL, f"{img} F{i}: max abs err {err:.2e}"


@pytest.mark.parametrize("img", ["A", "B"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_light_logits_and_pred(light_out, io, img, k):
    key = f"{img}_c{k}"
    assert _maxerr(light_out[f"{key}_logits"], io[f"{key}_logits"]) <= ATOL
    assert _maxerr(light_out[f"{key}_logits_up"], io[f"{key}_logits_up"]) <= ATOL
    _assert_pred(_pred(light_out[f"{key}_logits_up"]), io[f"{key}_pred"], io[f"{key}_logits_up"])


def test_light_upsampling_of_stored_logits_is_official(light, io):
    for img in "AB":
        up = light.upsample_logits(_t(io[f"{img}_c1_logits"]), io[f"{img}_c1_M_before"].shape)
        assert torch.equal(up, _t(io[f"{img}_c1_logits_up"]))


def test_light_neck_outputs(light_out, io):
    outs = light_out["B_c1_neck"]
    assert _maxerr(outs[2], io["B_c1_neck_out3"]) <= ATOL
    assert _maxerr(outs[3], io["B_c1_neck_out4"]) <= ATOL


@pytest.mark.parametrize("img", ["A", "B"])
def test_light_click_map_protocol(io, img):
    clicks = [Click(int(y), int(x), bool(p)) for y, x, p in io[f"{img}_clicks"]]
    h, w = io[f"{img}_c1_M_before"].shape
    assert np.array_equal(add_click(new_click_map(h, w), clicks[0]), io[f"{img}_c1_M_before"])
    for k in (1, 2, 3):
        m_after = update_from_prediction(io[f"{img}_c{k}_M_before"], io[f"{img}_c{k}_pred"])
        assert np.array_equal(m_after, io[f"{img}_c{k}_M_after"]), k
        if k < 3:
            nxt = add_click(io[f"{img}_c{k}_M_after"].copy(), clicks[k])
            assert np.array_equal(nxt, io[f"{img}_c{k + 1}_M_before"]), k


def test_light_roi_has_no_effect(light, light_out, io):
    with torch.inference_mode():
        logits = light.decode(_feats(io, "B"), _ref(io["B_c2_M_before"]), roi=(96, 64, 384, 224))
    assert torch.equal(logits, light_out["B_c2_logits"])


# ----- Tiny-small, zoom-in -----
@pytest.mark.parametrize("k", [1, 2, 3])
def test_tiny_roi(tiny_out, zio, k):
    ref = tuple(int(v) for v in zio[f"B_c{k}_roi"])
    ours = tiny_out[f"c{k}_roi"]
    assert (ours if ours is not None else (-1, -1, -1, -1)) == ref


@pytest.mark.parametrize("k", [1, 2, 3])
def test_tiny_logits_pred_and_click_map(tiny_out, zio, k):
    assert _maxerr(tiny_out[f"c{k}_logits"], zio[f"B_c{k}_logits"]) <= ATOL
    assert _maxerr(tiny_out[f"c{k}_noroi_logits"], zio[f"B_c{k}_noroi_logits"]) <= ATOL
    h, w = zio[f"B_c{k}_pred"].shape
    ref_up = F.interpolate(_t(zio[f"B_c{k}_logits"]), size=(h, w), mode="bilinear", align_corners=False)
    _assert_pred(_pred(tiny_out[f"c{k}_logits_up"]), zio[f"B_c{k}_pred"], ref_up.numpy())
    m_after = update_from_prediction(zio[f"B_c{k}_M_before"], zio[f"B_c{k}_pred"])
    assert np.array_equal(m_after, zio[f"B_c{k}_M_after"])
    if k < 3:
        y, x, p = (int(v) for v in zio["B_clicks"][k])
        nxt = add_click(zio[f"B_c{k}_M_after"].copy(), Click(y, x, bool(p)))
        assert np.array_equal(nxt, zio[f"B_c{k + 1}_M_before"])


def test_tiny_roi_changes_only_refined_maps(tiny_out):
    # with a strict sub-window the refine blocks see a crop, so the logits must differ from no-ROI
    assert not torch.equal(tiny_out["c2_logits"], tiny_out["c2_noroi_logits"])


def test_tiny_rejects_roi_off_the_stride_grid(tiny, io, zio):
    with pytest.raises(ValueError, match="stride"):
        tiny.decode(_feats(io, "B"), _ref(zio["B_c2_M_before"]), roi=(100, 64, 384, 224))


# ----- position-table helpers -----
def test_relative_index_resampling_equals_official_4d_resize():
    torch.manual_seed(0)
    window, grid, heads = (32, 32), (20, 30), 2
    table = torch.randn((2 * 32 - 1) ** 2 + 3, heads)
    index = beit_relative_position_index(window)
    full = table[index.view(-1)].view(1025, 1025, heads).permute(2, 0, 1)
    ref = resample_rel_pos_bias(full, window, grid)  # literal official procedure
    new_index = resample_relative_position_index(index, window, grid)
    ours = table[new_index.view(-1)].view(601, 601, heads).permute(2, 0, 1)
    assert new_index.shape == (601, 601)
    assert torch.equal(ours, ref)
    # upsampling too (a canvas larger than 512)
    ref_up = resample_rel_pos_bias(full, window, (36, 40))
    idx_up = resample_relative_position_index(index, window, (36, 40))
    assert torch.equal(table[idx_up.view(-1)].view(1441, 1441, heads).permute(2, 0, 1), ref_up)


def test_abs_pos_embed_nearest_resampling():
    pe = torch.arange(1 + 32 * 32, dtype=torch.float32).view(1, -1, 1).repeat(1, 1, 3)
    out = resample_abs_pos_embed(pe, (20, 30), (32, 32), interpolation="nearest")
    assert out.shape == (1, 601, 3)
    assert torch.equal(out[0, 0], pe[0, 0])  # cls kept
    # legacy nearest: source row floor(i * 32 / 20), column floor(j * 32 / 30)
    rows = [int(np.floor(i * 32 / 20)) for i in range(20)]
    cols = [int(np.floor(j * 32 / 30)) for j in range(30)]
    want = torch.tensor([1 + r * 32 + c for r in rows for c in cols], dtype=torch.float32)
    assert torch.equal(out[0, 1:, 0], want)
    assert torch.equal(nearest_source_tokens((32, 32), (20, 30)) + 1, want.long())
    assert resample_abs_pos_embed(pe, (32, 32)) is pe


# ----- zoom-in ROI rule vs a literal transcription of the official torch code -----
def _official_roi(pre: np.ndarray, ref: np.ndarray, ratio=1.4, stride=32, min_size=32) -> tuple:
    pre_t, ref_t = torch.from_numpy(pre)[None, None], torch.from_numpy(ref)[None, None]
    mask = (pre_t == 1) | (ref_t == 4) | (ref_t == 0)
    rows, cols = mask.any(-1).numpy().reshape(-1, mask.shape[-2]), mask.any(-2).numpy().reshape(-1, mask.shape[-1])
    row, col = rows[0], cols[0]
    if not row.any() or not col.any():
        box = (0, 0, mask.shape[-1], mask.shape[-2])
    else:
        r, c = np.where(row)[0], np.where(col)[0]
        box = (c[0], r[0], c[-1] + 1, r[-1] + 1)
    bbox = torch.from_numpy(np.array([box]).reshape(1, 1, 4))
    height, width = pre_t.shape[-2:]
    left, up, right, bottom = torch.chunk(bbox, 4, dim=-1)
    xc, yc = (left + right) / 2.0, (up + bottom) / 2.0
    left = torch.round(xc - ratio * (xc - left)).clip(0, None)
    right = torch.round(xc - ratio * (xc - right)).clip(None, width)
    up = torch.round(yc - ratio * (yc - up)).clip(0, None)
    bottom = torch.round(yc - ratio * (yc - bottom)).clip(None, height)
    _left = torch.round(xc - min_size / 2.0).clip(0, None)
    left = torch.where(left < _left, left, _left)
    _right = torch.round(xc + min_size / 2.0).clip(None, width)
    right = torch.where(right > _right, right, _right)
    _up = torch.round(yc - min_size / 2.0).clip(0, None)
    up = torch.where(up < _up, up, _up)
    _bottom = torch.round(yc + min_size / 2.0).clip(None, height)
    bottom = torch.where(bottom > _bottom, bottom, _bottom)
    roi = torch.cat([left, up, right, bottom], dim=-1).to(bbox)
    left, up, right, bottom = torch.chunk(roi, 4, dim=-1)
    left = torch.floor(left / stride) * stride
    right = torch.ceil(right / stride) * stride
    up = torch.floor(up / stride) * stride
    bottom = torch.ceil(bottom / stride) * stride
    return tuple(int(v) for v in torch.cat([left, up, right, bottom], dim=-1).view(4))


def test_get_roi_matches_official_rule_on_random_masks():
    rng = np.random.default_rng(0)
    for trial in range(300):
        h, w = 32 * int(rng.integers(1, 12)), 32 * int(rng.integers(1, 12))
        pre = np.zeros((h, w), np.uint8)
        m = np.full((h, w), 2, np.uint8)
        for _ in range(int(rng.integers(0, 3))):
            y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
            pre[y0: y0 + int(rng.integers(1, 60)), x0: x0 + int(rng.integers(1, 60))] = 1
        for _ in range(int(rng.integers(0, 3))):
            m[int(rng.integers(0, h)), int(rng.integers(0, w))] = int(rng.choice([0, 4, 1, 3]))
        ratio = float(rng.choice([1.0, 1.4, 1.5, 2.0]))
        assert get_roi(pre, m, ratio, 32, 32) == _official_roi(pre, m, ratio, 32, 32), trial


def test_get_roi_empty_mask_is_whole_canvas():
    pre = np.zeros((320, 480), bool)
    m = new_click_map(320, 480)
    assert get_roi(pre, m) == (0, 0, 480, 320)
