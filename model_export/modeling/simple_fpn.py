"""SimpleFPN and the full per-image backbone ``MAEWithSimpleFPN`` (spec 1.1).

SimpleFPN turns the single stride-16 ViT map into a 4-level pyramid (strides 4, 8, 16, 32 of the
canvas; 32/64/128/256 channels). All convolutions have a bias, all norms are GroupNorm(1, c).
Hidden widths follow the official formulas (``in_dim`` = ViT width C):

    x4   (level 0)  d = max(C // 2, 2 * out): ConvT2x2(C->d) GN GELU ConvT2x2(d->d/2) GN Conv1x1(d/2->out) GN GELU
    x2   (level 1)  d = max(C // 2, out):     ConvT2x2(C->d) GN Conv1x1(d->out) GN GELU
    x1   (level 2)                            Conv1x1(C->out) GN GELU
    x0.5 (level 3)  d = max(2 * C, out):      Conv2x2 s2(C->d) GN Conv1x1(d->out) GN GELU

Key names: ``backbone.fpn.rescale_ops.{level}.{layer index}.*`` (Sequential indices as above).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .vit import MAEViT

__all__ = ["MAEWithSimpleFPN", "SimpleFPN"]


def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(1, c)


def _rescale_op(k: float, in_dim: int, out_dim: int) -> nn.Sequential:
    if k == 4:
        d = max(in_dim // 2, 2 * out_dim)
        return nn.Sequential(
            nn.ConvTranspose2d(in_dim, d, 2, stride=2), _gn(d), nn.GELU(),
            nn.ConvTranspose2d(d, d // 2, 2, stride=2), _gn(d // 2),
            nn.Conv2d(d // 2, out_dim, 1), _gn(out_dim), nn.GELU(),
        )
    if k == 2:
        d = max(in_dim // 2, out_dim)
        return nn.Sequential(
            nn.ConvTranspose2d(in_dim, d, 2, stride=2), _gn(d),
            nn.Conv2d(d, out_dim, 1), _gn(out_dim), nn.GELU(),
        )
    if k == 1:
        return nn.Sequential(nn.Conv2d(in_dim, out_dim, 1), _gn(out_dim), nn.GELU())
    if k == 0.5:
        d = max(2 * in_dim, out_dim)
        return nn.Sequential(
            nn.Conv2d(in_dim, d, 2, stride=2), _gn(d),
            nn.Conv2d(d, out_dim, 1), _gn(out_dim), nn.GELU(),
        )
    raise ValueError(f"unsupported SimpleFPN rescale {k!r} (supported: 4, 2, 1, 0.5)")


class SimpleFPN(nn.Module):
    """One stride-16 map (B, C, h, w) -> [F1, F2, F3, F4] with the configured rescales."""

    def __init__(
        self,
        in_dim: int,
        rescales: Sequence[float] = (4, 2, 1, 0.5),
        out_dims: Sequence[int] = (32, 64, 128, 256),
    ):
        super().__init__()
        if len(rescales) != len(out_dims):
            raise ValueError(f"rescales {tuple(rescales)} and out_dims {tuple(out_dims)} differ in length")
        self.in_dim = in_dim
        self.rescales = tuple(rescales)
        self.out_dims = tuple(out_dims)
        self.rescale_ops = nn.ModuleList(_rescale_op(k, in_dim, o) for k, o in zip(self.rescales, self.out_dims))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [op(x) for op in self.rescale_ops]


class MAEWithSimpleFPN(MAEViT):
    """The per-image part of InterFormer: normalised padded image (B, 3, H, W) -> [F1, F2, F3, F4].

    H and W must be multiples of 32 (the canvas rule). Official module/key layout:
    ``backbone.{cls_token, pos_embed, patch_embed, layers, fpn}``.
    """

    derives_f1 = False  # every level comes from the image (TinyViTAdapter may derive F1 from F2)

    def __init__(
        self,
        img_size: int | Sequence[int] = 512,
        patch_size: int = 16,
        in_channels: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.1,
        init_values: float = 1.0,
        ln_eps: float = 1e-6,
        fpn_rescales: Sequence[float] = (4, 2, 1, 0.5),
        fpn_out_dims: Sequence[int] = (32, 64, 128, 256),
    ):
        super().__init__(
            img_size=img_size,
            patch_size=patch_size,
            in_channels=in_channels,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            drop_path_rate=drop_path_rate,
            init_values=init_values,
            ln_eps=ln_eps,
        )
        self.fpn = SimpleFPN(embed_dim, fpn_rescales, fpn_out_dims)
        self.out_channels = tuple(fpn_out_dims)

    def forward(self, img: torch.Tensor) -> list[torch.Tensor]:
        if img.dim() == 4 and (img.shape[2] % 32 or img.shape[3] % 32):
            raise ValueError(f"canvas size {img.shape[2]}x{img.shape[3]} must be a multiple of 32")
        return self.fpn(super().forward(img))
