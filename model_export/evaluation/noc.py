"""The NoC (number of clicks) loop and its aggregates (spec section 4).

For every sample (one object mask of a folder read by ``data.list_samples``) the segmenter
gets the image once (``set_image``, timed as encoder time; consecutive masks of the same
image reuse it through ``reset``), then up to ``max_clicks`` simulated clicks. The first
click is placed from an empty prediction, every later one from the current prediction,
both by ``clicks.next_click`` (deepest point of the larger error, exact L2, image border as
boundary, already clicked pixels excluded). After each click the foreground IoU against the
mask (255 ignored, ``clicks.iou``) and the wall time of that ``add_click`` call are stored.
When ``next_click`` finds no error left the remaining clicks repeat the last IoU.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..clicks import Click, iou, next_click
from ..data import Sample, list_samples, load_mask, load_rgb
from .segmenter import InteractiveSegmenter

DEFAULT_MAX_CLICKS = 20
IOU_THRESHOLDS = (0.85, 0.90)
MIOU_CLICKS = (1, 3, 5, 10, 20)
PIE_UNIT = 1e-7  # PIE is reported in 1e-7 seconds per click per pixel, as in the paper


class SampleError(RuntimeError):
    """Evaluating one sample failed; ``sample`` names it, ``__cause__`` is the original error."""

    def __init__(self, sample: Sample, error: BaseException):
        super().__init__(f"sample {sample.name} ({sample.image_path.name}): {type(error).__name__}: {error}")
        self.sample = sample


@dataclass
class SampleResult:
    """One sample's run: ``ious[i]`` is the IoU after click i+1 (always ``max_clicks`` long,
    filled with the last value after an early stop); ``click_seconds`` holds one entry per
    click actually made; ``encoder_seconds`` is None when the image was reused."""

    name: str
    ious: list[float]
    click_seconds: list[float]
    clicks: list[Click]
    pixels: int
    height: int = 0
    width: int = 0
    encoder_seconds: float | None = None
    image: str = ""
    mask: str = ""

    def noc(self, threshold: float) -> int:
        return noc_of_curve(self.ious, threshold)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["clicks"] = [{"x": c.x, "y": c.y, "positive": c.positive} for c in self.clicks]
        for t in IOU_THRESHOLDS:
            d[f"noc{round(t * 100)}"] = self.noc(t)
        return d


def noc_of_curve(ious: Sequence[float], threshold: float) -> int:
    """First click number (1-based) with IoU >= threshold; ``len(ious)`` if never reached."""
    for i, v in enumerate(ious):
        if v >= threshold:
            return i + 1
    return len(ious)


def run_clicks(
    segmenter: InteractiveSegmenter, gt: np.ndarray, max_clicks: int = DEFAULT_MAX_CLICKS
) -> tuple[list[float], list[float], list[Click]]:
    """Simulate clicks on the segmenter's current image (already set and reset).

    Returns (IoU after each of the ``max_clicks`` clicks, seconds of each ``add_click``
    call, the clicks made).
    """
    if max_clicks < 1:
        raise ValueError("max_clicks must be >= 1")
    pred = np.zeros(gt.shape, dtype=bool)
    clicked: list[Click] = []
    ious: list[float] = []
    seconds: list[float] = []
    while len(ious) < max_clicks:
        click = next_click(pred, gt, clicked)
        if click is None:
            last = ious[-1] if ious else iou(pred, gt)
            ious.extend([last] * (max_clicks - len(ious)))
            break
        clicked.append(click)
        t0 = time.perf_counter()
        out = segmenter.add_click(click.x, click.y, click.positive)
        seconds.append(time.perf_counter() - t0)
        pred = np.asarray(out, dtype=bool)
        if pred.shape != gt.shape:
            raise ValueError(
                f"segmenter {getattr(segmenter, 'name', segmenter)!r} returned a mask of shape "
                f"{pred.shape} for an image of shape {gt.shape}"
            )
        ious.append(iou(pred, gt))
    return ious, seconds, clicked


def evaluate_samples(
    segmenter: InteractiveSegmenter,
    samples: Iterable[Sample],
    max_clicks: int = DEFAULT_MAX_CLICKS,
    on_sample: Callable[[SampleResult], None] | None = None,
) -> list[SampleResult]:
    """Run the NoC loop on every sample; ``on_sample`` is called after each (progress).

    Consecutive samples of the same image (``<stem>_<k>.png`` masks) share one
    ``set_image``; a failure is raised as ``SampleError`` naming the sample.
    """
    results: list[SampleResult] = []
    current: tuple[Path, tuple[int, int]] | None = None
    for s in samples:
        try:
            gt = load_mask(s.mask_path)
            enc_s = None
            if current is None or s.image_path != current[0]:
                current = None
                rgb = load_rgb(s.image_path)
                t0 = time.perf_counter()
                segmenter.set_image(rgb)
                enc_s = time.perf_counter() - t0
                current = (s.image_path, rgb.shape[:2])
            if gt.shape != current[1]:
                ih, iw = current[1]
                raise ValueError(f"mask is {gt.shape[1]}x{gt.shape[0]} but the image is {iw}x{ih}")
            segmenter.reset()
            ious, seconds, clicks = run_clicks(segmenter, gt, max_clicks)
        except Exception as e:
            raise SampleError(s, e) from e
        r = SampleResult(
            name=s.name,
            ious=ious,
            click_seconds=seconds,
            clicks=clicks,
            pixels=int(gt.size),
            height=int(gt.shape[0]),
            width=int(gt.shape[1]),
            encoder_seconds=enc_s,
            image=str(s.image_path),
            mask=str(s.mask_path),
        )
        results.append(r)
        if on_sample is not None:
            on_sample(r)
    return results


def select_samples(folder: str | Path, limit: int | None = None) -> list[Sample]:
    """The folder's samples (sorted by mask name), the first ``limit`` of them if given."""
    samples = list_samples(folder)
    return samples[:limit] if limit is not None else samples


@dataclass
class NocMetrics:
    """Aggregates over the samples of one model x dataset run.

    Times are in seconds; ``pie`` is in units of ``PIE_UNIT`` (1e-7 s per click per pixel);
    ``miou_at`` maps a click number to the mean IoU after it (None beyond ``max_clicks``);
    ``miou_curve[i]`` is the mean IoU after click i+1.
    """

    samples: int
    max_clicks: int
    noc85: float
    noc90: float
    reached85: float
    reached90: float
    miou_at: dict[int, float | None]
    spc_p50: float | None
    spc_p95: float | None
    encoder_mean: float | None
    encoder_p50: float | None
    pie: float | None
    clicks_made: int
    miou_curve: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["miou_at"] = {str(k): v for k, v in self.miou_at.items()}
        d["pie_unit"] = PIE_UNIT
        return d


def aggregate(results: Sequence[SampleResult], max_clicks: int | None = None) -> NocMetrics:
    """NoC@85/90 (mean first click reaching the IoU, ``max_clicks`` if never), fraction
    reaching it, mean IoU after clicks 1/3/5/10/20, decoder seconds per click p50/p95 over
    all clicks, encoder seconds per encoded image (mean, p50), and PIE = mean over all
    clicks of seconds / image pixels, in 1e-7 units."""
    if not results:
        raise ValueError("no samples to aggregate")
    if max_clicks is None:
        max_clicks = len(results[0].ious)
    curves = np.array([r.ious for r in results], dtype=np.float64)
    if curves.shape[1] != max_clicks:
        raise ValueError(f"IoU curves have {curves.shape[1]} clicks, expected {max_clicks}")
    nocs = {t: np.array([noc_of_curve(c, t) for c in curves]) for t in IOU_THRESHOLDS}
    reached = {t: float(np.mean([np.any(c >= t) for c in curves])) for t in IOU_THRESHOLDS}
    curve = curves.mean(axis=0)
    spc = np.array([s for r in results for s in r.click_seconds], dtype=np.float64)
    per_pixel = np.array([s / r.pixels for r in results for s in r.click_seconds], dtype=np.float64)
    enc = np.array([r.encoder_seconds for r in results if r.encoder_seconds is not None], dtype=np.float64)
    return NocMetrics(
        samples=len(results),
        max_clicks=max_clicks,
        noc85=float(nocs[0.85].mean()),
        noc90=float(nocs[0.90].mean()),
        reached85=reached[0.85],
        reached90=reached[0.90],
        miou_at={k: (float(curve[k - 1]) if k <= max_clicks else None) for k in MIOU_CLICKS},
        spc_p50=float(np.percentile(spc, 50)) if spc.size else None,
        spc_p95=float(np.percentile(spc, 95)) if spc.size else None,
        encoder_mean=float(enc.mean()) if enc.size else None,
        encoder_p50=float(np.percentile(enc, 50)) if enc.size else None,
        pie=float(per_pixel.mean() / PIE_UNIT) if per_pixel.size else None,
        clicks_made=int(spc.size),
        miou_curve=[float(v) for v in curve],
    )


@dataclass
class FolderResult:
    """A model's NoC run on one folder: aggregates plus every sample's record."""

    metrics: NocMetrics
    per_sample: list[SampleResult]


def evaluate_folder(
    segmenter: InteractiveSegmenter,
    folder: str | Path,
    max_clicks: int = DEFAULT_MAX_CLICKS,
    limit: int | None = None,
    on_sample: Callable[[SampleResult], None] | None = None,
) -> FolderResult:
    """The NoC loop over a folder of ``images/`` + ``masks/`` (first ``limit`` samples)."""
    samples = select_samples(folder, limit)
    if not samples:
        raise ValueError(f"{folder} holds no samples (no masks in masks/)")
    per_sample = evaluate_samples(segmenter, samples, max_clicks, on_sample)
    return FolderResult(aggregate(per_sample, max_clicks), per_sample)
