"""Decode heads of InterFormer in mmseg 0.26's layout (spec 1.5): UPerHead and the auxiliary FCNHead.

ConvModule = Conv2d (no bias) -> BatchNorm2d (eps 1e-5; SyncBN in the official config, the same
in eval) -> ReLU, with keys ``{name}.conv.weight`` and ``{name}.bn.*``. All resizes are
bilinear with align_corners=False. Dropout2d(0.1) before the classifier (inactive in eval).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AdaptiveAvgPool2d", "ConvModule", "FCNHead", "UPerHead"]


class ConvModule(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.activate = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """nn.AdaptiveAvgPool2d that, while tracing / exporting to ONNX, averages static slices instead
    (bins [floor(i * L / n), ceil((i + 1) * L / n)) as in PyTorch), because the legacy ONNX exporter
    rejects adaptive pooling whose output size does not divide the input size. Same values up to
    float summation order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            return super().forward(x)
        size = self.output_size if isinstance(self.output_size, (tuple, list)) else (self.output_size,) * 2
        h, w = int(x.shape[-2]), int(x.shape[-1])
        oh = h if size[0] is None else int(size[0])
        ow = w if size[1] is None else int(size[1])
        rows = [x[..., (i * h) // oh: -((-(i + 1) * h) // oh), :].mean(dim=-2, keepdim=True) for i in range(oh)]
        x = torch.cat(rows, dim=-2)
        cols = [x[..., (j * w) // ow: -((-(j + 1) * w) // ow)].mean(dim=-1, keepdim=True) for j in range(ow)]
        return torch.cat(cols, dim=-1)


def _resize(x: torch.Tensor, size: Sequence[int], align_corners: bool) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


class UPerHead(nn.Module):
    """UPerNet head: PPM on the coarsest level + FPN top-down fusion -> logits at the finest level."""

    def __init__(
        self,
        in_channels: Sequence[int] = (32, 64, 128, 256),
        channels: int = 64,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        num_classes: int = 2,
        dropout_ratio: float = 0.1,
        align_corners: bool = False,
    ):
        super().__init__()
        self.in_channels = tuple(in_channels)
        self.channels = channels
        self.pool_scales = tuple(pool_scales)
        self.align_corners = align_corners
        # registration order follows mmseg (conv_seg first) so state_dict order matches too
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        c_top = self.in_channels[-1]
        self.psp_modules = nn.ModuleList(
            nn.Sequential(AdaptiveAvgPool2d(s), ConvModule(c_top, channels, 1)) for s in self.pool_scales
        )
        self.bottleneck = ConvModule(c_top + len(self.pool_scales) * channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList(ConvModule(c, channels, 1) for c in self.in_channels[:-1])
        self.fpn_convs = nn.ModuleList(
            ConvModule(channels, channels, 3, padding=1) for _ in self.in_channels[:-1]
        )
        self.fpn_bottleneck = ConvModule(len(self.in_channels) * channels, channels, 3, padding=1)

    def psp_forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        for ppm in self.psp_modules:
            outs.append(_resize(ppm(x), x.shape[2:], self.align_corners))
        return self.bottleneck(torch.cat(outs, dim=1))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"UPerHead expects {len(self.in_channels)} maps, got {len(inputs)}")
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self.psp_forward(inputs[-1]))
        n = len(laterals)
        for i in range(n - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1].shape[2:], self.align_corners)
        fpn_outs = [self.fpn_convs[i](laterals[i]) for i in range(n - 1)]
        fpn_outs.append(laterals[-1])
        for i in range(n - 1, 0, -1):
            fpn_outs[i] = _resize(fpn_outs[i], fpn_outs[0].shape[2:], self.align_corners)
        feats = self.fpn_bottleneck(torch.cat(fpn_outs, dim=1))
        return self.conv_seg(self.dropout(feats))


class FCNHead(nn.Module):
    """Auxiliary head (training only): inputs[in_index] -> 3x3 ConvModule -> classifier."""

    def __init__(
        self,
        in_channels: int = 128,
        channels: int = 64,
        num_convs: int = 1,
        kernel_size: int = 3,
        num_classes: int = 2,
        dropout_ratio: float = 0.1,
        in_index: int = 2,
    ):
        super().__init__()
        self.in_index = in_index
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        pad = kernel_size // 2
        self.convs = nn.Sequential(
            *[ConvModule(in_channels if i == 0 else channels, channels, kernel_size, pad) for i in range(num_convs)]
        )

    def forward(self, inputs: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        x = inputs if isinstance(inputs, torch.Tensor) else inputs[self.in_index]
        return self.conv_seg(self.dropout(self.convs(x)))
