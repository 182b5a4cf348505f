"""Training building blocks: loss, schedule, parameter groups, click simulation, data sources."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from model_export import clicks as cm
from model_export.training.clicksim import sample_num_extra_clicks, simulate_clicks
from model_export.training.losses import normalized_focal_loss
from model_export.training.optim import param_groups, poly_lr
from model_export.training.samples import coco_objects, folder_objects, mask_on_canvas, split_holdout


def test_nfl_perfect_prediction_is_near_zero_and_wrong_is_large():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 2:6, 2:6] = 1
    good = torch.zeros(1, 2, 8, 8)
    good[:, 1] = torch.where(target[0] == 1, 20.0, -20.0)
    bad = -good
    assert normalized_focal_loss(good, target) < 1e-6
    assert normalized_focal_loss(bad, target) > 5.0


def test_nfl_hand_computed_uniform_case():
    # p = sigmoid(0) = 0.5 everywhere: pt = 0.5, beta = 0.25 normalised to 1, alpha 0.5 for both
    # classes, so every valid pixel contributes -0.5 * log(0.5) and the mean is 0.5 * ln 2.
    target = torch.tensor([[[0, 1], [1, 255]]])
    logits = torch.zeros(1, 2, 2, 2)
    assert normalized_focal_loss(logits, target).item() == pytest.approx(0.5 * math.log(2), rel=1e-5)


def test_nfl_ignores_255_pixels():
    target = torch.full((1, 4, 4), 255, dtype=torch.long)
    target[0, 0, 0] = 1
    logits = torch.zeros(1, 2, 4, 4)
    logits[0, 1, 1:, :] = -50.0  # wildly wrong, but only where ignored
    logits[0, 1, 0, 0] = 50.0
    assert normalized_focal_loss(logits, target) < 1e-6


def test_poly_schedule_with_warmup():
    assert poly_lr(0, 100, 1e-4, warmup=10) == pytest.approx(1e-6)
    assert poly_lr(10, 100, 1e-4, warmup=10) == pytest.approx(1e-4 * 0.9)
    assert poly_lr(100, 100, 1e-4, warmup=10) == 0.0
    assert poly_lr(5, 100, 1e-4, warmup=10) == pytest.approx(1e-6 + (1e-4 * 0.95 - 1e-6) / 2)


def test_param_groups_no_decay_for_biases_and_1d_and_layer_decay():
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = torch.nn.Module()
            self.backbone.pos_embed = torch.nn.Parameter(torch.zeros(1, 4, 2))
            self.backbone.layers = torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)])
            self.head = torch.nn.Linear(2, 2)

    m = Tiny()
    groups = param_groups(m, lr=1.0, weight_decay=0.05, layer_decay=0.5, num_layers=2)
    look = {id(p): g for g in groups for p in g["params"]}
    assert look[id(m.backbone.pos_embed)]["lr"] == pytest.approx(0.5**3)  # embeddings: d^(L+1)
    assert look[id(m.backbone.pos_embed)]["weight_decay"] == 0.0
    assert look[id(m.backbone.layers[0].weight)]["lr"] == pytest.approx(0.5**2)  # block 0: d^(L-0)
    assert look[id(m.backbone.layers[1].weight)]["lr"] == pytest.approx(0.5**1)
    assert look[id(m.head.weight)]["lr"] == pytest.approx(1.0)
    assert look[id(m.head.weight)]["weight_decay"] == 0.05
    assert look[id(m.head.bias)]["weight_decay"] == 0.0


def test_extra_click_count_distribution_follows_0_6_power():
    n = sample_num_extra_clicks(np.random.default_rng(0), 200_000)
    assert n.min() >= 0 and n.max() <= 20
    p0 = (1 - 0.6) / (1 - 0.6**21)
    assert np.mean(n == 0) == pytest.approx(p0, abs=0.01)
    assert np.mean(n == 1) == pytest.approx(p0 * 0.6, abs=0.01)


def test_click_simulation_first_click_deepest_then_follows_errors():
    gt = np.zeros((2, 40, 40), dtype=np.uint8)
    gt[:, 10:30, 10:30] = 1
    calls = []

    def decode_margin(idx, maps):
        calls.append(list(idx))
        return -torch.ones(len(idx), 10, 10)  # predicts background everywhere

    maps = simulate_clicks(decode_margin, gt, np.random.default_rng(0), n_extra=np.array([0, 2]))
    # sample 0: only the first click, at the deepest GT point (centre of the square)
    assert maps[0][19, 19] == cm.DEFINITE_FG and maps[0][20, 20] == cm.DEFINITE_FG
    assert np.count_nonzero(maps[0] == cm.DEFINITE_FG) == 81
    assert calls == [[1], [1]]
    # sample 1: two more rounds; all-bg predictions turn unknown into possible-bg, extra clicks are positive
    assert np.count_nonzero(maps[1] == cm.DEFINITE_FG) > 81
    assert np.count_nonzero(maps[1] == cm.POSSIBLE_BG) > 0
    assert np.count_nonzero(maps[1] == cm.DEFINITE_BG) == 0


def _write_folder(root, name="set"):
    d = root / name
    (d / "images").mkdir(parents=True)
    (d / "masks").mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(d / "images" / "a.jpg")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(d / "images" / "b.png")
    m = np.zeros((20, 30), np.uint8)
    m[5:10, 5:10] = 1
    Image.fromarray(m).save(d / "masks" / "a.png")
    Image.fromarray(m).save(d / "masks" / "b_0.png")
    Image.fromarray(m * 0 + 1).save(d / "masks" / "b_1.png")
    return d


def test_folder_and_coco_sources(tmp_path):
    d = _write_folder(tmp_path)
    objs = folder_objects(d)
    assert [o.mask_path.name for o in objs] == ["a.png", "b_0.png", "b_1.png"]
    assert objs[1].image_path.name == "b.png"
    ann = {"images": [{"id": 1, "file_name": "a.jpg", "height": 20, "width": 30}],
           "annotations": [
               {"id": 7, "image_id": 1, "iscrowd": 0, "area": 2000, "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]},
               {"id": 8, "image_id": 1, "iscrowd": 1, "area": 2000, "segmentation": [[0, 0, 5, 0, 5, 5]]},
               {"id": 9, "image_id": 1, "iscrowd": 0, "area": 10, "segmentation": [[0, 0, 5, 0, 5, 5]]}]}
    (d / "instances.json").write_text(json.dumps(ann))
    cobjs = coco_objects(d / "instances.json", d / "images", "set")
    assert len(cobjs) == 1  # crowd and small skipped
    mask = cobjs[0].load_mask()
    assert mask.shape == (20, 30) and mask[5, 5] == 1 and mask[15, 15] == 0


def test_mask_on_canvas_pads_with_ignore_and_holdout_split_is_by_image(tmp_path):
    m = np.ones((100, 200), np.uint8)
    c = mask_on_canvas(m)
    assert c.shape == (512, 512)
    assert (c[:256, :512] == 1).all() and (c[256:] == 255).all()
    objs = folder_objects(_write_folder(tmp_path)) * 50
    train, held = split_holdout(objs, fraction=0.5)
    assert {o.image_path for o in train}.isdisjoint({o.image_path for o in held})


def test_random_crop_window_is_aligned_and_holds_the_object():
    import random

    from model_export.training.samples import random_crop_window

    gt = np.full((512, 512), 255, np.uint8)
    gt[:400, :512] = 0
    gt[300:340, 450:470] = 1
    rng = random.Random(0)
    for _ in range(100):
        y, x = random_crop_window(gt, 320, rng)
        assert y % 32 == 0 and x % 32 == 0
        assert 0 <= y <= 192 and 0 <= x <= 192
        assert (gt[y : y + 320, x : x + 320] == 1).any()
