"""The InterFormer segmentor: backbone (once per image) + I-MSA neck + UPerHead (per click).

The backbone is any module that returns four maps [F1, F2, F3, F4] with 32/64/128/256
channels (by default; whatever the neck is built for) at strides 4/8/16/32 of the canvas: the
faithful ``MAEWithSimpleFPN`` (input: the normalised padded image) or e.g. a TinyViT adapter
(input: a precomputed embedding plus the image). ``extract_features`` forwards all its
arguments to the backbone.

The click map M ("ref_label", values 0..4) always lives on the canvas, i.e. at 4x F1's size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .imsa import IMSA

__all__ = ["InterFormer"]

Roi = tuple[int, int, int, int]


class InterFormer(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        neck: IMSA,
        decode_head: nn.Module,
        auxiliary_head: nn.Module | None = None,
        align_corners: bool = False,
    ):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.decode_head = decode_head
        self.auxiliary_head = auxiliary_head
        self.align_corners = align_corners

    # ----- per image -----
    def extract_features(self, x: torch.Tensor, *extra: torch.Tensor) -> list[torch.Tensor]:
        """[F1, F2, F3, F4] = backbone(x, *extra); for the MAE backbone x is the normalised, padded
        image (B, 3, H, W) with H, W multiples of 32."""
        feats = self.backbone(x, *extra)
        feats = list(feats)
        if len(feats) != self.neck.num_stages:
            raise ValueError(f"backbone returned {len(feats)} maps, the neck needs {self.neck.num_stages}")
        return feats

    def complete_pyramid(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """[F1..F4] from the levels a pyramid file ships: all four, or F2..F4 when the backbone
        derives F1 from F2 (``derives_f1``; the browser decoder does the same in its graph)."""
        feats = list(feats)
        if len(feats) == self.neck.num_stages - 1 and self.backbone.derives_f1:
            return [self.backbone.derive_f1(feats[0]), *feats]
        return feats

    # ----- per click -----
    def decode(
        self,
        feats: Sequence[torch.Tensor],
        ref_label: torch.Tensor,
        roi: Roi | None = None,
        return_aux: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """Decode-head logits (B, 2, H/4, W/4) for click map ``ref_label`` ((B,1,H,W) or (B,H,W), any dtype).

        ``roi`` = (left, up, right, bottom) in canvas pixels (right/bottom exclusive) restricts the
        neck's refine blocks to that window (zoom-in; no effect on models without refine blocks).
        With ``return_aux`` returns (logits, aux_logits); aux_logits is None without an auxiliary head.
        """
        feats = self.complete_pyramid(feats)
        if len(feats) != self.neck.num_stages:
            raise ValueError(f"expected {self.neck.num_stages} feature maps, got {len(feats)}")
        if ref_label.dim() == 3:
            ref_label = ref_label[:, None]
        if ref_label.dim() != 4 or ref_label.shape[1] != 1:
            raise ValueError(f"ref_label must be (B, 1, H, W) or (B, H, W), got {tuple(ref_label.shape)}")
        f1 = feats[0]
        if ref_label.shape[0] != f1.shape[0]:
            raise ValueError(f"ref_label batch {ref_label.shape[0]} != feature batch {f1.shape[0]}")
        stride = self.neck.cum_strides[0]
        if tuple(ref_label.shape[-2:]) != (stride * f1.shape[-2], stride * f1.shape[-1]):
            raise ValueError(
                f"ref_label is {tuple(ref_label.shape[-2:])} but the canvas of these features is "
                f"{(stride * f1.shape[-2], stride * f1.shape[-1])} ({stride}x F1)"
            )
        outs = self.neck(feats, ref_label, roi)
        logits = self.decode_head(outs)
        if not return_aux:
            return logits
        aux = self.auxiliary_head(outs) if self.auxiliary_head is not None else None
        return logits, aux

    def upsample_logits(self, logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """The official final resize: bilinear, align_corners False."""
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=self.align_corners)

    def forward(
        self,
        x: torch.Tensor | Sequence[torch.Tensor],
        ref_label: torch.Tensor,
        roi: Roi | None = None,
    ) -> torch.Tensor:
        """Backbone + decode + bilinear upsampling to the canvas size (ref_label's H, W): (B, 2, H, W).

        ``x`` is the backbone input, or a tuple of backbone inputs for backbones that take several.
        """
        inputs = tuple(x) if isinstance(x, (tuple, list)) else (x,)
        feats = self.extract_features(*inputs)
        logits = self.decode(feats, ref_label, roi)
        return self.upsample_logits(logits, ref_label.shape[-2:])
