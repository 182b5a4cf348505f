"""Iterative click simulation for training (spec section 3).

M starts all unknown; the first click goes to the deepest ground-truth point; then n extra
clicks with P(n) proportional to 0.6^n (n = 0..20): predict (no gradients, eval mode), update M
from the prediction, add a click drawn among the pixels deeper than max / 1.7 of the larger
error region. Training then runs on the final M with gradients.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import clicks as cm

MAX_EXTRA_CLICKS = 20
GAMMA = 0.6
CANDIDATE_K = 1.7


def sample_num_extra_clicks(rng: np.random.Generator, size: int, gamma: float = GAMMA,
                            max_n: int = MAX_EXTRA_CLICKS) -> np.ndarray:
    probs = gamma ** np.arange(max_n + 1)
    return rng.choice(max_n + 1, size=size, p=probs / probs.sum())


def first_clicks(gts: np.ndarray) -> tuple[np.ndarray, list[list[cm.Click]]]:
    """Click maps (B,H,W) with the first click of each sample drawn at its deepest GT point."""
    b, h, w = gts.shape
    maps = np.stack([cm.new_click_map(h, w) for _ in range(b)])
    history: list[list[cm.Click]] = []
    empty = np.zeros((h, w), dtype=bool)
    for i in range(b):
        c = cm.next_click(empty, gts[i])
        history.append([])
        if c is not None:
            cm.add_click(maps[i], c)
            history[i].append(c)
    return maps, history


@torch.no_grad()
def simulate_clicks(
    decode_margin,  # callable(idx: list[int], maps: np.ndarray (k,H,W)) -> margin tensor (k,h,w)
    gts: np.ndarray,
    rng: np.random.Generator,
    n_extra: np.ndarray | None = None,
) -> np.ndarray:
    """Return the final click maps (B,H,W) after the simulated interaction."""
    maps, history = first_clicks(gts)
    b, h, w = gts.shape
    if n_extra is None:
        n_extra = sample_num_extra_clicks(rng, b)
    for r in range(int(n_extra.max(initial=0))):
        idx = [i for i in range(b) if n_extra[i] > r]
        margin = decode_margin(idx, maps[idx])
        up = F.interpolate(margin[:, None].float(), size=(h, w), mode="bilinear", align_corners=False)
        preds = (up[:, 0] > 0).cpu().numpy()
        for j, i in enumerate(idx):
            maps[i] = cm.update_from_prediction(maps[i], preds[j])
            c = cm.next_click(preds[j], gts[i], history[i], candidate_k=CANDIDATE_K, rng=rng)
            if c is not None:
                cm.add_click(maps[i], c)
                history[i].append(c)
    return maps
