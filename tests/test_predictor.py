"""The Python predictor: replays the authors' click sequences through the public API, and
refuses bad input clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_export.checkpoint import CheckpointError, load_checkpoint
from model_export.configs import CONFIGS, build_model
from model_export.predictor import (
    InterFormerPredictor,
    PredictorError,
    TinyViTPipeline,
    ViTPipeline,
    build_predictor,
)

torch.set_num_threads(1)


def _npz(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def light(parity_dir):
    net = load_checkpoint(build_model(CONFIGS["small-light"]), parity_dir / "small_light.pth")
    return InterFormerPredictor(net, ViTPipeline(net), name="small-light")


@pytest.fixture(scope="module")
def light_io(parity_dir):
    return _npz(parity_dir / "small_light_io.npz")


def _near_boundary(logits_up: np.ndarray) -> np.ndarray:
    return np.abs(logits_up[0, 1] - logits_up[0, 0]) < 1e-3


@pytest.mark.parametrize("img", ["A", "B"])
def test_predictor_replays_official_click_sequence(light, light_io, img):
    rgb = light_io[f"{img}_image_rgb"]
    h, w = rgb.shape[:2]
    light.set_image(rgb)
    for k, (y, x, positive) in enumerate(light_io[f"{img}_clicks"], start=1):
        mask = light.add_click(int(x), int(y), bool(positive))
        want = light_io[f"{img}_c{k}_pred"].astype(bool)
        ok = ~_near_boundary(light_io[f"{img}_c{k}_logits_up"])
        assert mask.shape == (h, w) and mask.dtype == bool
        assert np.array_equal(mask[ok[:h, :w]], want[:h, :w][ok[:h, :w]])
        # the click map after the update equals the authors' (it is at the padded size)
        m = light.click_map
        assert np.array_equal(m[ok], light_io[f"{img}_c{k}_M_after"][ok])
    assert [(c.y, c.x, c.positive) for c in light.clicks] == [
        (int(y), int(x), bool(p)) for y, x, p in light_io[f"{img}_clicks"]
    ]


def test_zoom_in_predictor_replays_tiny_fixture(parity_dir, light_io):
    net = load_checkpoint(
        build_model(CONFIGS["small-tiny"]), [parity_dir / "small_light.pth", parity_dir / "small_tiny_refine.pth"]
    )
    p = InterFormerPredictor(net, ViTPipeline(net), zoom_in=True, zoom_in_start=2)
    z = _npz(parity_dir / "small_tiny_zoomin_io.npz")
    p.set_image(light_io["B_image_rgb"])
    for k, (y, x, positive) in enumerate(z["B_clicks"], start=1):
        mask = p.add_click(int(x), int(y), bool(positive))
        want = z[f"B_c{k}_pred"].astype(bool)[:300, :450]
        # no stored upsampled logits here: allow a handful of boundary pixels
        assert np.count_nonzero(mask != want) <= 5
        assert np.count_nonzero(p.click_map != z[f"B_c{k}_M_after"]) <= 5


def test_undo_and_reset(light, light_io):
    light.set_image(light_io["A_image_rgb"])
    first = light.add_click(215, 256, True)
    m1 = light.click_map
    second = light.add_click(380, 140, False)
    assert not np.array_equal(first, second)
    back = light.undo()
    assert np.array_equal(back, first) and np.array_equal(light.click_map, m1)
    assert len(light.clicks) == 1
    light.reset()
    assert light.clicks == [] and not light.mask.any()
    with pytest.raises(PredictorError, match="nothing to undo"):
        light.undo()


def test_any_image_size_maps_back(light):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)
    light.set_image(rgb)
    mask = light.add_click(10, 20, True)
    assert mask.shape == (37, 53)
    assert light.click_map.shape == (64, 64)
    assert light.geometry.canvas_h == 64 and light.geometry.canvas_w == 64


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((10, 10), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((10, 10, 4), np.uint8), r"\(H, W, 3\)"),
        ([[1, 2, 3]], "numpy array"),
    ],
)
def test_bad_images_are_refused(light, bad, match):
    with pytest.raises(PredictorError, match=match):
        light.set_image(bad)


def test_click_errors(parity_dir):
    net = load_checkpoint(build_model(CONFIGS["small-light"]), parity_dir / "small_light.pth")
    p = InterFormerPredictor(net, ViTPipeline(net))
    with pytest.raises(PredictorError, match="no image set"):
        p.add_click(1, 1, True)
    p.set_image(np.zeros((20, 30, 3), np.uint8))
    for x, y in [(30, 5), (-1, 5), (5, 20)]:
        with pytest.raises(PredictorError, match="outside the 30x20 image"):
            p.add_click(x, y, True)


def test_checkpoint_that_does_not_fit_the_config(parity_dir):
    with pytest.raises(CheckpointError, match="missing"):
        build_predictor("small-tiny", checkpoint=parity_dir / "small_light.pth")
    with pytest.raises(PredictorError, match="unknown model"):
        build_predictor("no-such-model")
    with pytest.raises(PredictorError, match="needs --checkpoint"):
        build_predictor("small-light")


def test_tinyvit_pipeline_non_square_image():
    net = build_model(CONFIGS["interformer-tinyvit"])
    p = InterFormerPredictor(net, TinyViTPipeline(net, threads=1))
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (300, 450, 3), dtype=np.uint8)
    p.set_image(rgb)
    g = p.geometry
    assert (g.resized_h, g.resized_w, g.canvas_h, g.canvas_w) == (341, 512, 352, 512)
    assert [tuple(f.shape[-2:]) for f in p.features] == [(88, 128), (44, 64), (22, 32), (11, 16)]
    mask = p.add_click(400, 100, True)
    assert mask.shape == (300, 450)
    assert p.click_map.shape == (352, 512)
    # the click landed on the canvas at the scaled position
    cy, cx = g.image_to_canvas(100, 400)
    assert p.click_map[cy, cx] == 4
