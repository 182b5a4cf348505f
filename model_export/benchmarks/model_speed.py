"""Encoder seconds per image and decoder seconds per click on this CPU (PyTorch path).

    python -m model_export.benchmarks.model_speed [--size 512] [--clicks 20] [--json out.json]

Measures the faithful InterFormer-Light (ViT-B) and the default TinyViT pipeline
(onnxruntime encoder + adapter; decoder in PyTorch) on the same synthetic image, in one run,
with randomly initialised weights (speed does not depend on the values). Prints a table,
writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch


def _percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def _image(size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    img = np.stack([(xx * 255 // size), (yy * 255 // size), np.full_like(xx, 128)], -1).astype(np.uint8)
    disc = (yy - size // 2) ** 2 + (xx - size // 2) ** 2 < (size // 5) ** 2
    img[disc] = (220, 40, 40)
    return np.clip(img + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)


def bench(predictor, rgb: np.ndarray, clicks: int, repeats_encoder: int = 3) -> dict:
    enc = []
    for _ in range(repeats_encoder):
        t = time.perf_counter()
        predictor.set_image(rgb)
        enc.append(time.perf_counter() - t)
    h, w = rgb.shape[:2]
    rng = np.random.default_rng(1)
    dec = []
    predictor.add_click(w // 2, h // 2, True)  # warm-up
    for i in range(clicks):
        x, y = int(rng.integers(w)), int(rng.integers(h))
        t = time.perf_counter()
        predictor.add_click(x, y, bool(i % 2))
        dec.append(time.perf_counter() - t)
    return {
        "encoder_s_per_image_median": statistics.median(enc),
        "decoder_s_per_click_p50": _percentile(dec, 50),
        "decoder_s_per_click_p95": _percentile(dec, 95),
        "clicks": clicks,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--clicks", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="interformer-light,default")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from ..configs import CONFIGS, build_model, is_tinyvit_config
    from ..default_model import DEFAULT_CONFIG
    from ..predictor import InterFormerPredictor, TinyViTPipeline, ViTPipeline

    rgb = _image(a.size)
    rows = {}
    for name in a.models.split(","):
        cfg = CONFIGS[DEFAULT_CONFIG if name == "default" else name]
        net = build_model(cfg).eval()
        pipe = TinyViTPipeline(net, a.threads) if is_tinyvit_config(cfg) else ViTPipeline(net)
        p = InterFormerPredictor(net, pipe, name=name)
        rows[name] = bench(p, rgb, a.clicks)
    print(f"{'model':24s} {'encoder s/img':>14s} {'decoder p50 ms':>15s} {'decoder p95 ms':>15s}")
    for k, r in rows.items():
        print(f"{k:24s} {r['encoder_s_per_image_median']:14.3f} {1e3 * r['decoder_s_per_click_p50']:15.1f} "
              f"{1e3 * r['decoder_s_per_click_p95']:15.1f}")
    out = {"size": a.size, "threads": a.threads, "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
           "results": rows}
    if a.json:
        from pathlib import Path

        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
