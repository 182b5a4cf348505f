"""AdamW with InterFormer's parameter groups and the poly schedule with linear warm-up."""

from __future__ import annotations

import re

import torch
from torch import nn


def layer_id(name: str, num_layers: int) -> int:
    """Layer index for layer-wise lr decay: embeddings 0, ViT block i -> i + 1, the rest L + 1."""
    if name.startswith("backbone.") and any(k in name for k in ("cls_token", "pos_embed", "patch_embed")):
        return 0
    m = re.match(r"backbone\.layers\.(\d+)\.", name)
    if m:
        return int(m.group(1)) + 1
    return num_layers + 1


def param_groups(model: nn.Module, lr: float, weight_decay: float, layer_decay: float | None = None,
                 num_layers: int = 0) -> list[dict]:
    """No weight decay on 1-D tensors and biases; optional ViT layer-wise lr decay.

    With decay rate d and L layers, embeddings get lr * d^(L+1), block i lr * d^(L-i), the rest lr.
    """
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or name.endswith(".bias") or name.endswith("pos_embed") or name.endswith("cls_token")
        lid = layer_id(name, num_layers) if layer_decay else 0
        scale = layer_decay ** (num_layers + 1 - lid) if layer_decay else 1.0
        key = (lid, no_decay)
        g = groups.setdefault(key, {"params": [], "weight_decay": 0.0 if no_decay else weight_decay,
                                    "lr_scale": scale, "lr": lr * scale})
        g["params"].append(p)
    return list(groups.values())


def build_optimizer(model: nn.Module, lr: float = 1e-4, weight_decay: float = 0.05,
                    layer_decay: float | None = None, num_layers: int = 0) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, lr, weight_decay, layer_decay, num_layers),
                             lr=lr, betas=(0.9, 0.999))


def poly_lr(it: int, total: int, base_lr: float, warmup: int = 1500, warmup_start: float = 1e-6,
            power: float = 1.0, min_lr: float = 0.0) -> float:
    """Linear warm-up from ``warmup_start`` to the poly curve, then poly decay to ``min_lr``."""
    poly = (base_lr - min_lr) * (1 - min(it, total) / total) ** power + min_lr
    if it < warmup:
        return warmup_start + (poly - warmup_start) * it / warmup
    return poly


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
