"""Normalized Focal Loss (as in RITM / InterFormer), on 2-class logits, ignoring label 255."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = 255


def normalized_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.5, gamma: float = 2.0, eps: float = 1e-12
) -> torch.Tensor:
    """NFL of 2-class ``logits`` (B,2,H,W) against ``target`` (B,H,W) in {0,1,255}.

    p = sigmoid(l1 - l0); the focal weights (1 - p_t)^gamma are rescaled per image so they sum
    to the number of valid pixels, with the rescaling factor treated as a constant (no gradient).
    """
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    p = torch.sigmoid(logits[:, 1] - logits[:, 0])
    valid = (target != IGNORE).float()
    fg = (target == 1).float()
    pt = torch.where(valid > 0, 1.0 - (fg - p).abs(), torch.ones_like(p))
    alpha_w = torch.where(fg > 0, alpha * valid, (1 - alpha) * valid)
    beta = (1.0 - pt) ** gamma
    n_valid = valid.sum(dim=(-1, -2))
    mult = (n_valid / (beta.sum(dim=(-1, -2)) + eps)).detach()
    beta = beta * mult[:, None, None]
    loss = -alpha_w * beta * torch.log(torch.clamp(pt + eps, max=1.0))
    per_image = loss.sum(dim=(-1, -2)) / (n_valid + eps)
    return per_image.mean()
