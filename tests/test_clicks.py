"""Hand-computed cases of the click rules in model_export/clicks.py (spec 1.2 and 3).

Every expected value here was worked out on paper from the spec, not taken from the code.
The shared vectors (tests/vectors/clickmap.json) pin the same rules for the JS twin.
"""

from __future__ import annotations

import numpy as np
import pytest

from model_export import clicks as cm
from model_export.clicks import Click

# Rows dy = -5..5 of the radius-5 disk have half-widths floor(sqrt(25 - dy^2)):
# dy=0: 5; |dy|=1: sqrt(24)=4.9 -> 4; 2: sqrt(21)=4.6 -> 4; 3: sqrt(16) = 4; 4: sqrt(9) = 3; 5: 0.
HALF_WIDTHS = [0, 3, 4, 4, 4, 5, 4, 4, 4, 3, 0]
DISK_11x11 = [
    ".....#.....",
    "..#######..",
    ".#########.",
    ".#########.",
    ".#########.",
    "###########",
    ".#########.",
    ".#########.",
    ".#########.",
    "..#######..",
    ".....#.....",
]


def picture(rows: list[str], on: int, off: int = cm.UNKNOWN) -> np.ndarray:
    """'#' -> on, '.' -> off."""
    return np.array([[on if c == "#" else off for c in r] for r in rows], dtype=np.uint8)


def grid(rows: list[str]) -> np.ndarray:
    """Digit rows -> uint8 array."""
    return np.array([[int(c) for c in r] for r in rows], dtype=np.uint8)


# --------------------------------------------------------------------------------------
# The disk
# --------------------------------------------------------------------------------------
def test_disk_has_81_pixels_with_the_hand_drawn_shape():
    assert sum(2 * h + 1 for h in HALF_WIDTHS) == 1 + 7 + 9 + 9 + 9 + 11 + 9 + 9 + 9 + 7 + 1 == 81
    assert len(cm.disk_offsets(5)) == 81
    m = cm.add_click(cm.new_click_map(11, 11), Click(5, 5, True))
    np.testing.assert_array_equal(m, picture(DISK_11x11, cm.DEFINITE_FG))


def test_negative_click_draws_the_same_disk_with_zeros():
    m = cm.add_click(cm.new_click_map(11, 11), Click(5, 5, False))
    np.testing.assert_array_equal(m, picture(DISK_11x11, cm.DEFINITE_BG))


def test_disk_offsets_are_exactly_the_distance_rule():
    got = {(int(dy), int(dx)) for dy, dx in cm.disk_offsets(5)}
    want = {(dy, dx) for dy in range(-5, 6) for dx in range(-HALF_WIDTHS[dy + 5], HALF_WIDTHS[dy + 5] + 1)}
    assert got == want
    # (3, 4) is at distance exactly 5: inside; (4, 4) at 5.66 and (1, 5) at 5.10: outside.
    assert (3, 4) in got and (4, 3) in got and (-5, 0) in got
    assert (4, 4) not in got and (1, 5) not in got and (5, 1) not in got


def test_fresh_map_is_unknown_and_add_click_works_in_place():
    m = cm.new_click_map(4, 6)
    assert m.shape == (4, 6) and m.dtype == np.uint8 and (m == cm.UNKNOWN).all()
    assert cm.add_click(m, Click(0, 0, True)) is m


# --------------------------------------------------------------------------------------
# Clipping at the edges
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "y, x, count",
    [
        # Corner: a quarter disk including both half-axes: rows dy=0..5 keep dx=0..hw,
        # i.e. 6 + 5 + 5 + 5 + 4 + 1 = 26.
        (0, 0, 26),
        (0, 19, 26),
        (19, 0, 26),
        (19, 19, 26),
        # Edge, away from the corners: half disk incl. the middle row: 11+9+9+9+7+1 = 46.
        (0, 10, 46),
        (19, 10, 46),
        (10, 0, 46),
        (10, 19, 46),
        # One pixel in from the corner (1, 1): rows dy=-1..5 survive, each keeping
        # dx = max(-1, -hw)..hw, i.e. hw + 1 + min(hw, 1) pixels:
        # dy=-1: 6; dy=0: 7; dy=1, 2, 3: 6 each; dy=4: 5; dy=5: 1. Total 37.
        (1, 1, 37),
        # Far enough from every edge: the whole disk.
        (5, 5, 81),
        (10, 10, 81),
    ],
)
def test_clipped_disk_sizes(y, x, count):
    m = cm.add_click(cm.new_click_map(20, 20), Click(y, x, True))
    assert np.count_nonzero(m == cm.DEFINITE_FG) == count
    assert np.count_nonzero(m == cm.UNKNOWN) == 400 - count


def test_top_left_corner_quarter_disk_shape():
    m = cm.add_click(cm.new_click_map(7, 7), Click(0, 0, False))
    want = [
        "######.",  # dy=0: dx 0..5
        "#####..",  # dy=1: dx 0..4
        "#####..",
        "#####..",
        "####...",  # dy=4: dx 0..3
        "#......",  # dy=5: dx 0
        ".......",
    ]
    np.testing.assert_array_equal(m, picture(want, cm.DEFINITE_BG))


def test_one_pixel_wide_and_high_maps():
    col = cm.add_click(cm.new_click_map(15, 1), Click(7, 0, True))
    assert "".join(str(v) for v in col[:, 0]) == "2" * 2 + "4" * 11 + "2" * 2  # rows 2..12
    row = cm.add_click(cm.new_click_map(1, 15), Click(0, 1, False))
    assert "".join(str(v) for v in row[0]) == "0" * 7 + "2" * 8  # columns 0..6
    one = cm.add_click(cm.new_click_map(1, 1), Click(0, 0, True))
    assert one.tolist() == [[4]]


def test_3x3_map_is_covered_entirely_from_any_pixel():
    for y in range(3):
        for x in range(3):
            m = cm.add_click(cm.new_click_map(3, 3), Click(y, x, True))
            assert (m == cm.DEFINITE_FG).all()  # farthest pixel is at sqrt(8) < 5


# --------------------------------------------------------------------------------------
# Overlapping clicks: the newest wins
# --------------------------------------------------------------------------------------
def test_overlapping_disks_newest_wins_on_a_row():
    # One row: a click at x covers columns x-5..x+5.
    m = cm.new_click_map(1, 20)
    cm.add_click(m, Click(0, 5, True))  # columns 0..10
    cm.add_click(m, Click(0, 12, False))  # columns 7..17
    assert "".join(map(str, m[0])) == "4444444" + "0" * 11 + "22"
    m = cm.new_click_map(1, 20)
    cm.add_click(m, Click(0, 12, False))
    cm.add_click(m, Click(0, 5, True))
    assert "".join(map(str, m[0])) == "4" * 11 + "0" * 7 + "22"


def test_overlapping_disks_newest_wins_in_2d():
    # Disks at (5, 5) and (5, 9): pixel (5, 7) is in both, (5, 1) only in the first,
    # (5, 13) only in the second, (1, 7) in both (distance sqrt(4+16) = 4.47).
    m = cm.new_click_map(11, 15)
    cm.add_click(m, Click(5, 5, True))
    cm.add_click(m, Click(5, 9, False))
    assert m[5, 7] == 0 and m[1, 7] == 0 and m[5, 1] == 4 and m[5, 13] == 0 and m[0, 1] == 2
    # The second disk is whole; the first keeps 81 minus the overlap. Row dy of the overlap
    # is [4 - hw, hw]: dy=0: [-1, 5] = 7; |dy|=1..3: [0, 4] = 5 each (30); |dy|=4: [1, 3] = 3
    # each (6); |dy|=5: empty. Overlap 43, so 81 - 43 = 38 pixels stay positive.
    assert np.count_nonzero(m == 0) == 81
    assert np.count_nonzero(m == 4) == 38
    assert np.count_nonzero(m == 2) == 11 * 15 - 81 - 38


def test_same_pixel_clicked_again_flips_the_whole_disk():
    m = cm.new_click_map(11, 11)
    cm.add_click(m, Click(5, 5, True))
    cm.add_click(m, Click(5, 5, False))
    np.testing.assert_array_equal(m, picture(DISK_11x11, cm.DEFINITE_BG))


# --------------------------------------------------------------------------------------
# Updating from a prediction
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "old, pred_fg, new",
    [
        (0, True, 0),
        (0, False, 0),
        (1, True, 2),
        (1, False, 1),
        (2, True, 3),
        (2, False, 1),
        (3, True, 3),
        (3, False, 2),
        (4, True, 4),
        (4, False, 4),
    ],
)
def test_every_transition(old, pred_fg, new):
    m = np.full((2, 3), old, dtype=np.uint8)
    pred = np.full((2, 3), 1 if pred_fg else 0, dtype=np.uint8)
    assert (cm.update_from_prediction(m, pred) == new).all()


def test_update_of_a_mixed_map():
    m = grid(["01234", "01234"])
    pred = grid(["11111", "00000"])
    np.testing.assert_array_equal(cm.update_from_prediction(m, pred), grid(["02334", "01124"]))


def test_update_never_touches_definite_labels():
    rng = np.random.default_rng(0)
    m = rng.choice(np.array([0, 4], np.uint8), size=(9, 13))
    for _ in range(5):
        pred = rng.integers(0, 2, size=(9, 13), dtype=np.uint8)
        np.testing.assert_array_equal(cm.update_from_prediction(m, pred), m)


def test_update_returns_a_new_map_and_leaves_the_input_alone():
    m = cm.new_click_map(2, 2)
    new = cm.update_from_prediction(m, np.ones((2, 2), np.uint8))
    assert (new == 3).all() and (m == 2).all() and new is not m


def test_update_accepts_boolean_and_nonbinary_predictions_as_pred_gt_0():
    m = cm.new_click_map(1, 3)
    np.testing.assert_array_equal(cm.update_from_prediction(m, np.array([[True, False, True]])), [[3, 1, 3]])
    np.testing.assert_array_equal(cm.update_from_prediction(m, np.array([[0.3, 0.0, 255.0]])), [[3, 1, 3]])


def test_repeated_predictions_walk_towards_the_possible_labels():
    m = cm.new_click_map(1, 1)
    for pred, want in [(1, 3), (1, 3), (0, 2), (0, 1), (0, 1), (1, 2), (1, 3)]:
        m = cm.update_from_prediction(m, np.array([[pred]], np.uint8))
        assert m[0, 0] == want


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("y, x", [(-1, 0), (0, -1), (5, 0), (0, 7), (5, 7), (-1, -1), (100, 3)])
def test_click_outside_the_map_is_refused(y, x):
    m = cm.new_click_map(5, 7)
    with pytest.raises(ValueError, match="outside"):
        cm.add_click(m, Click(y, x, True))
    assert (m == cm.UNKNOWN).all()


@pytest.mark.parametrize("shape", [(7, 5), (5, 8), (4, 7), (1, 7), (5, 1), (35,)])
def test_update_with_mismatched_shapes_is_refused(shape):
    with pytest.raises(ValueError, match="does not match"):
        cm.update_from_prediction(cm.new_click_map(5, 7), np.zeros(shape, np.uint8))


@pytest.mark.parametrize("h, w", [(0, 5), (5, 0), (-1, 3)])
def test_empty_map_is_refused(h, w):
    with pytest.raises(ValueError):
        cm.new_click_map(h, w)


# --------------------------------------------------------------------------------------
# next_click: the deepest point of the larger error region
# --------------------------------------------------------------------------------------
def test_no_error_gives_no_click():
    gt = np.zeros((5, 7), np.uint8)
    gt[1:4, 1:4] = 1
    assert cm.next_click(gt.copy(), gt) is None
    assert cm.next_click(np.zeros((5, 7), np.uint8), np.zeros((5, 7), np.uint8)) is None


def test_single_missed_pixel_is_clicked():
    gt = np.zeros((5, 7), np.uint8)
    gt[2, 3] = 1
    assert cm.next_click(np.zeros_like(gt), gt) == Click(2, 3, True)


def test_deepest_point_first_in_row_major_order():
    # FN region rows 1..3, cols 1..5. Distance to the nearest non-FN pixel: row 2 has
    # distance 2 (to rows 0 and 4) at cols 2..4 (cols 1 and 5 are at distance 1):
    # ties at (2, 2), (2, 3), (2, 4); the first in row-major order wins.
    gt = np.zeros((5, 7), np.uint8)
    gt[1:4, 1:6] = 1
    assert cm.next_click(np.zeros_like(gt), gt) == Click(2, 2, True)


def test_image_border_counts_as_boundary():
    # Whole 5x7 image missed: distance of (y, x) = min(y+1, x+1, 5-y, 7-x). Max 3 at
    # row 2, cols 2..4; first is (2, 2). Without the border it would be undefined.
    gt = np.ones((5, 7), np.uint8)
    assert cm.next_click(np.zeros_like(gt), gt) == Click(2, 2, True)
    # A 1-row missed strip along the top edge: every pixel is at distance 1 (the border
    # above, row 1 below); the first is (0, 0).
    gt = np.zeros((5, 7), np.uint8)
    gt[0, :] = 1
    assert cm.next_click(np.zeros_like(gt), gt) == Click(0, 0, True)


def test_larger_false_positive_region_gives_a_negative_click():
    # FN: gt block rows 1..3 x cols 1..3, depth 2 at (2, 2).
    # FP: pred rows 5..9 x all cols of a 10x10 image (not in gt). Depth of (y, x):
    # min(y-4, 10-y, x+1, 10-x): 3 at row 7, cols 2..7; first (7, 2). 3 > 2: negative.
    gt = np.zeros((10, 10), np.uint8)
    gt[1:4, 1:4] = 1
    pred = np.zeros((10, 10), np.uint8)
    pred[5:, :] = 1
    assert cm.next_click(pred, gt) == Click(7, 2, False)


def test_larger_false_negative_region_gives_a_positive_click():
    # FN: gt rows 0..4 x cols 0..9 not predicted: depth min(y+1, 5-y, x+1, 10-x) -> 3 at
    # row 2, cols 2..7; FP: a 3x3 block of pred at rows 6..8, cols 6..8, depth 2.
    gt = np.zeros((10, 10), np.uint8)
    gt[:5, :] = 1
    pred = np.zeros((10, 10), np.uint8)
    pred[6:9, 6:9] = 1
    assert cm.next_click(pred, gt) == Click(2, 2, True)


def test_equal_depths_give_a_negative_click():
    # FN and FP both 3x3 blocks (depth 2 at their centres): FN max is not > FP max.
    gt = np.zeros((9, 9), np.uint8)
    gt[1:4, 1:4] = 1
    pred = np.zeros((9, 9), np.uint8)
    pred[5:8, 5:8] = 1
    assert cm.next_click(pred, gt) == Click(6, 6, False)


def test_clicked_pixels_are_excluded():
    gt = np.zeros((5, 7), np.uint8)
    gt[1:4, 1:6] = 1
    pred = np.zeros_like(gt)
    # Depth-2 pixels are (2, 2), (2, 3), (2, 4). Once (2, 2) is clicked it is never chosen
    # again; the next click is another depth-2 pixel (which one: see the next test).
    c = cm.next_click(pred, gt, clicked=[Click(2, 2, True)])
    assert c.positive and (c.y, c.x) in {(2, 3), (2, 4)}
    # All three depth-2 pixels clicked: depth-1 pixels remain; the first is (1, 1).
    done = [Click(2, x, True) for x in (2, 3, 4)]
    assert cm.next_click(pred, gt, clicked=done) == Click(1, 1, True)
    # A single-pixel error that was clicked already: nothing left.
    gt1 = np.zeros((5, 7), np.uint8)
    gt1[2, 3] = 1
    assert cm.next_click(np.zeros_like(gt1), gt1, clicked=[Click(2, 3, True)]) is None


def test_clicked_pixels_bound_the_distance_transform_as_in_spec_3():
    # Spec 3: "FN and FP masks excluding clicked pixels; exact L2 distance transform".
    # With (2, 2) removed from the FN mask rows 1..3 x cols 1..5, (2, 3) is at distance 1
    # from it, while (2, 4) keeps depth 2 (rows 0 and 4, and (2, 2), are all 2 away).
    gt = np.zeros((5, 7), np.uint8)
    gt[1:4, 1:6] = 1
    assert cm.next_click(np.zeros_like(gt), gt, clicked=[Click(2, 2, True)]) == Click(2, 4, True)


def test_ignore_pixels_are_neither_error_nor_depth():
    # All-foreground 5x7 gt with column 3 ignored: the FN region splits into two 5x3
    # halves whose depth is at most 2 (the ignore column bounds them like a border):
    # left half max 2 at (1..3, 1); the first is (1, 1). Without the ignore column the
    # click would be (2, 2) at depth 3.
    gt = np.ones((5, 7), np.uint8)
    gt[:, 3] = cm.IGNORE_LABEL
    assert cm.next_click(np.zeros_like(gt), gt) == Click(1, 1, True)
    # Prediction errors inside an ignore region do not count at all.
    ign = np.full((4, 4), cm.IGNORE_LABEL, np.uint8)
    assert cm.next_click(np.ones((4, 4), np.uint8), ign) is None
    assert cm.next_click(np.zeros((4, 4), np.uint8), ign) is None


def test_candidate_k_draws_among_the_deep_pixels():
    # Whole 5x7 image missed: max depth 3; with k = 1.7 candidates have depth > 3/1.7 = 1.76,
    # i.e. depth >= 2: rows 1..3, cols 1..5 (15 pixels).
    gt = np.ones((5, 7), np.uint8)
    allowed = {(y, x) for y in range(1, 4) for x in range(1, 6)}
    rng = np.random.default_rng(123)
    seen = set()
    for _ in range(200):
        c = cm.next_click(np.zeros_like(gt), gt, candidate_k=1.7, rng=rng)
        assert c.positive and (c.y, c.x) in allowed
        seen.add((c.y, c.x))
    assert len(seen) > 10  # really drawn at random, not always the argmax


# --------------------------------------------------------------------------------------
# IoU
# --------------------------------------------------------------------------------------
def test_iou_hand_computed():
    gt = np.array([[1, 1, 0, 0], [1, 1, 0, 0]], np.uint8)
    pred = np.array([[1, 0, 0, 1], [1, 0, 0, 0]], np.uint8)
    # intersection {(0,0), (1,0)} = 2, union {(0,0),(0,1),(1,0),(1,1),(0,3)} = 5
    assert cm.iou(pred, gt) == pytest.approx(2 / 5)


def test_iou_ignores_255_pixels():
    gt = np.array([[1, 1, 255], [0, 0, 255]], np.uint8)
    pred = np.array([[1, 0, 1], [1, 0, 1]], np.uint8)
    # column 2 ignored; pred fg {(0,0), (1,0)}, gt fg {(0,0), (0,1)}: 1 / 3
    assert cm.iou(pred, gt) == pytest.approx(1 / 3)


def test_iou_of_empty_prediction_and_target_is_one():
    z = np.zeros((3, 3), np.uint8)
    assert cm.iou(z, z) == 1.0
    # Everything ignored: nothing to get wrong.
    assert cm.iou(np.ones((3, 3), np.uint8), np.full((3, 3), cm.IGNORE_LABEL, np.uint8)) == 1.0
    # Empty prediction of a non-empty target: 0.
    g = z.copy()
    g[1, 1] = 1
    assert cm.iou(z, g) == 0.0


# --------------------------------------------------------------------------------------
# Shape checks
# --------------------------------------------------------------------------------------
def test_iou_with_mismatched_shapes_is_refused():
    with pytest.raises(ValueError):
        cm.iou(np.ones((1, 5), np.uint8), np.zeros((4, 5), np.uint8))


def test_next_click_with_mismatched_shapes_is_refused():
    gt = np.zeros((4, 5), np.uint8)
    gt[1:3, 1:3] = 1
    with pytest.raises(ValueError):
        cm.next_click(np.zeros((1, 5), np.uint8), gt)
