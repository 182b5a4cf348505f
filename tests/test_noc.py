"""NoC loop, aggregates and report on small synthetic folders (no model weights needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from model_export.clicks import Click
from model_export.evaluation.noc import (
    FolderResult,
    PIE_UNIT,
    SampleResult,
    aggregate,
    evaluate_folder,
    noc_of_curve,
    run_clicks,
)
from model_export.evaluation.report import Run, format_table, plot_convergence, write_json
from model_export.evaluation.segmenter import InteractiveSegmenter


def _disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def make_dataset(root):
    """Three images, four samples: a disc with a 255 band, a rectangle, two objects of one image."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()

    def save(stem, masks):
        h, w = next(iter(masks.values())).shape
        rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(root / "images" / f"{stem}.png")
        for name, m in masks.items():
            Image.fromarray(m.astype(np.uint8), mode="L").save(root / "masks" / f"{name}.png")

    disc = _disc(48, 64, 24, 30, 14).astype(np.uint8)
    band = _disc(48, 64, 24, 30, 16) & ~_disc(48, 64, 24, 30, 12)
    disc[band] = 255
    save("disc", {"disc": disc})
    rect = np.zeros((40, 56), np.uint8)
    rect[5:30, 8:40] = 1
    save("rect", {"rect": rect})
    a = np.zeros((50, 70), np.uint8)
    a[5:20, 5:30] = 1
    b = np.zeros((50, 70), np.uint8)
    b[25:45, 35:65] = 1
    save("multi", {"multi_0": a, "multi_1": b})
    return root


def _gts(root):
    """image key -> all gt masks of that image (the oracles pick theirs by the first click)."""
    out = {}
    for mp in sorted((root / "masks").glob("*.png")):
        stem = mp.stem.split("_")[0]
        rgb = np.asarray(Image.open(root / "images" / f"{stem}.png").convert("RGB"))
        out.setdefault(rgb.tobytes(), []).append(np.asarray(Image.open(mp)))
    return out


class OracleSegmenter:
    """Returns the ground truth of the object under the first click from click ``reveal_at``
    on (all-false before); ``with_ignore`` also marks the 255 band as foreground."""

    def __init__(self, gts, reveal_at=1, with_ignore=False, name="oracle"):
        self.name = name
        self.gts = gts
        self.reveal_at = reveal_at
        self.with_ignore = with_ignore
        self.set_image_calls = 0

    def set_image(self, rgb):
        self.set_image_calls += 1
        self.candidates = self.gts[rgb.tobytes()]
        self.shape = rgb.shape[:2]
        self.reset()

    def reset(self):
        self.n = 0
        self.target = None

    def add_click(self, x, y, positive):
        self.n += 1
        if self.target is None:
            self.target = next(g for g in self.candidates if g[y, x] == 1)
        if self.n < self.reveal_at:
            return np.zeros(self.shape, bool)
        return (self.target != 0) if self.with_ignore else (self.target == 1)


class EmptySegmenter:
    name = "empty"

    def set_image(self, rgb):
        self.shape = rgb.shape[:2]

    def reset(self):
        pass

    def add_click(self, x, y, positive):
        return np.zeros(self.shape, bool)


@pytest.fixture()
def dataset(tmp_path):
    return make_dataset(tmp_path / "synth")


def test_protocol_is_runtime_checkable(dataset):
    assert isinstance(EmptySegmenter(), InteractiveSegmenter)
    assert isinstance(OracleSegmenter({}), InteractiveSegmenter)


@pytest.mark.parametrize("with_ignore", [False, True])
def test_oracle_gives_noc_1(dataset, with_ignore):
    seg = OracleSegmenter(_gts(dataset), with_ignore=with_ignore)
    res = evaluate_folder(seg, dataset, max_clicks=20)
    m = res.metrics
    assert m.samples == 4
    assert m.noc85 == 1 and m.noc90 == 1
    assert m.reached85 == 1.0 and m.reached90 == 1.0
    for s in res.per_sample:
        assert s.ious == [1.0] * 20
        assert len(s.click_seconds) == 1 and len(s.clicks) == 1  # no error left after click 1
        assert s.clicks[0].positive
    assert m.miou_curve == [1.0] * 20
    assert all(m.miou_at[k] == 1.0 for k in (1, 3, 5, 10, 20))
    # the two masks of multi.png share one set_image; the second has no encoder time
    assert seg.set_image_calls == 3
    names = [s.name for s in res.per_sample]
    assert names == ["disc", "multi_0", "multi_1", "rect"]
    assert res.per_sample[2].encoder_seconds is None
    assert res.per_sample[1].pixels == 50 * 70 and res.per_sample[0].pixels == 48 * 64


def test_empty_segmenter_gives_max_clicks(dataset):
    res = evaluate_folder(EmptySegmenter(), dataset, max_clicks=20)
    m = res.metrics
    assert m.noc85 == 20 and m.noc90 == 20
    assert m.reached85 == 0.0 and m.reached90 == 0.0
    assert m.clicks_made == 4 * 20
    for s in res.per_sample:
        assert s.ious == [0.0] * 20
        assert len(set(s.clicks)) == 20  # clicked pixels are never clicked again
        assert all(c.positive for c in s.clicks)


def test_reveal_after_third_click_gives_noc_3(dataset):
    res = evaluate_folder(OracleSegmenter(_gts(dataset), reveal_at=3), dataset, max_clicks=20)
    assert res.metrics.noc85 == 3 and res.metrics.noc90 == 3
    for s in res.per_sample:
        assert s.ious[:3] == [0.0, 0.0, 1.0] and s.ious[3:] == [1.0] * 17
        assert len(s.click_seconds) == 3


def test_limit_and_max_clicks(dataset):
    res = evaluate_folder(EmptySegmenter(), dataset, max_clicks=4, limit=2)
    assert res.metrics.samples == 2 and res.metrics.max_clicks == 4
    assert all(len(s.ious) == 4 for s in res.per_sample)
    assert res.metrics.miou_at[5] is None and res.metrics.miou_at[3] == 0.0


class ScriptedSegmenter:
    name = "scripted"

    def __init__(self, preds):
        self.preds = preds
        self.received = []

    def set_image(self, rgb):
        pass

    def reset(self):
        self.received = []

    def add_click(self, x, y, positive):
        self.received.append(Click(y=y, x=x, positive=positive))
        return self.preds[len(self.received) - 1]


def test_click_sequence_is_the_hand_computed_deepest_points():
    gt = np.zeros((40, 60), np.uint8)
    gt[10:30, 10:30] = 1
    # after click 1: gt plus a false-positive strip over columns 45..59 (touching the border)
    p1 = gt.astype(bool).copy()
    p1[:, 45:] = True
    # after click 2: gt with a 6x6 hole (rows 12..17, columns 22..27)
    p2 = gt.astype(bool).copy()
    p2[12:18, 22:28] = False
    p3 = gt.astype(bool)
    seg = ScriptedSegmenter([p1, p2, p3])
    ious, seconds, clicks = run_clicks(seg, gt, max_clicks=20)
    # 1. empty prediction: the 20x20 square's deepest pixels are rows/cols 19..20 at distance
    #    10; first in row-major order is (19, 19).
    # 2. FP strip: distance min(r+1, 40-r, c-44, 60-c) (image border is boundary), max 8 at
    #    column 52 for rows 7..32 -> (7, 52), negative.
    # 3. FN hole: min(r-11, 18-r, c-21, 28-c), max 3 at rows 14..15, cols 24..25 -> (14, 24).
    expected = [Click(19, 19, True), Click(7, 52, False), Click(14, 24, True)]
    assert clicks == expected
    assert seg.received == expected
    assert ious[:3] == pytest.approx([400 / 1000, 364 / 400, 1.0])
    assert ious[3:] == [1.0] * 17
    assert len(seconds) == 3
    assert noc_of_curve(ious, 0.85) == 2 and noc_of_curve(ious, 0.90) == 2


def _hand_made():
    return [
        SampleResult("a", [0.5, 0.86, 0.95], [0.1, 0.2, 0.3], [], pixels=1000, encoder_seconds=1.0),
        SampleResult("b", [0.9, 0.9, 0.9], [0.4], [], pixels=2000, encoder_seconds=None),
        SampleResult("c", [0.1, 0.2, 0.3], [0.5, 0.6, 0.7], [], pixels=500, encoder_seconds=3.0),
    ]


def test_aggregates_on_hand_made_set():
    m = aggregate(_hand_made(), max_clicks=3)
    assert m.samples == 3 and m.clicks_made == 7
    assert m.noc85 == pytest.approx((2 + 1 + 3) / 3)
    assert m.noc90 == pytest.approx((3 + 1 + 3) / 3)
    assert m.reached85 == pytest.approx(2 / 3) and m.reached90 == pytest.approx(2 / 3)
    assert m.miou_at[1] == pytest.approx(0.5)
    assert m.miou_at[3] == pytest.approx((0.95 + 0.9 + 0.3) / 3)
    assert m.miou_at[5] is None and m.miou_at[20] is None
    assert m.miou_curve == pytest.approx([0.5, (0.86 + 0.9 + 0.2) / 3, (0.95 + 0.9 + 0.3) / 3])
    # seconds per click over all 7 clicks: 0.1..0.7; p95 interpolates 0.6 -> 0.7 at 0.7
    assert m.spc_p50 == pytest.approx(0.4)
    assert m.spc_p95 == pytest.approx(0.67)
    assert m.encoder_mean == pytest.approx(2.0) and m.encoder_p50 == pytest.approx(2.0)
    per_pixel = [0.1 / 1000, 0.2 / 1000, 0.3 / 1000, 0.4 / 2000, 0.5 / 500, 0.6 / 500, 0.7 / 500]
    assert PIE_UNIT == 1e-7
    assert m.pie == pytest.approx(np.mean(per_pixel) / 1e-7)
    assert m.pie == pytest.approx(6285.714, rel=1e-6)
    d = m.to_dict()
    assert d["miou_at"]["3"] == pytest.approx(0.716667, rel=1e-5) and d["miou_at"]["10"] is None
    assert json.loads(json.dumps(d))["noc85"] == 2.0


def test_report_table_json_and_plot(tmp_path):
    per = _hand_made()
    runs = [
        Run("grabcut", "synth", FolderResult(aggregate(per, 3), per), "/x/synth"),
        Run("sam-decoder", "other", FolderResult(aggregate(per[:1], 3), per[:1]), "/x/other"),
    ]
    table = format_table(runs)
    lines = table.splitlines()
    assert len(lines) == 4
    assert "NoC@85" in lines[0] and "PIE" in lines[0]
    row = lines[2].split()
    assert row[:7] == ["grabcut", "synth", "3", "2.00", "2.33", "66.7", "66.7"]
    assert row[7:12] == ["0.500", "0.717", "-", "-", "-"]
    assert row[12:] == ["400.0", "670.0", "2.000", "6285.71"]
    assert lines[3].split()[:7] == ["sam-decoder", "other", "1", "2.00", "3.00", "100.0", "100.0"]

    out = write_json(runs, tmp_path / "out" / "eval.json", env={"note": "test"})
    data = json.loads(out.read_text())
    assert data["environment"] == {"note": "test"}
    r0 = data["runs"][0]
    assert r0["model"] == "grabcut" and r0["dataset"] == "synth"
    assert r0["metrics"]["noc90"] == pytest.approx(7 / 3)
    assert r0["metrics"]["pie"] == pytest.approx(6285.714, rel=1e-6)
    assert [s["name"] for s in r0["per_sample"]] == ["a", "b", "c"]
    assert r0["per_sample"][0]["noc85"] == 2 and r0["per_sample"][0]["ious"] == [0.5, 0.86, 0.95]
    # the table can be rebuilt from the JSON
    assert format_table(data["runs"]) == table

    png = plot_convergence(data["runs"], tmp_path / "conv.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
