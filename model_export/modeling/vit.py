"""MAE ViT backbone of InterFormer (BEiT-style attention), in plain PyTorch.

Mirrors the authors' ``MAEWithSimpleFPN`` (mmseg ``MAE`` + ``FlexSizeMAE*``) so that module
names and the state_dict layout are the official ones (spec 1.1 and 5):

    backbone.cls_token                      (1, 1, C)
    backbone.pos_embed                      (1, 1 + 32*32, C)   absolute, learnable
    backbone.patch_embed.projection         Conv2d(3, C, 16, stride 16)
    backbone.layers.{i}.gamma_1 / gamma_2   layer scale (C)
    backbone.layers.{i}.ln1 / ln2           LayerNorm eps 1e-6
    backbone.layers.{i}.attn.qkv            Linear(C, 3C) with one full 3C bias
    backbone.layers.{i}.attn.proj
    backbone.layers.{i}.attn.relative_position_bias_table   ((2*32-1)^2 + 3, heads)
    backbone.layers.{i}.attn.relative_position_index        (1025, 1025) int64 buffer
    backbone.layers.{i}.ffn.layers.0.0 / ffn.layers.1       Linear(C, 4C) -> GELU -> Linear(4C, C)

Inputs whose token grid is not the 32x32 training window (any canvas other than 512x512) use the
official "flex size" rules, implemented by the two named helpers below:

* ``resample_abs_pos_embed``: the patch part of ``pos_embed`` is resized with
  ``F.interpolate(mode="nearest")`` (legacy floor rule, not "nearest-exact"); the cls entry is kept.
* ``resample_relative_position_index``: the official code expands the relative bias to
  (heads, 1025, 1025), splits off the cls row/column and resizes the patch-to-patch block as a 4-D
  (query grid x key grid) table with nearest interpolation, key dims first, then query dims.
  Nearest interpolation only *selects* entries, so the same result is obtained by selecting rows
  and columns of the (1025, 1025) index with the nearest source token of every new grid cell;
  ``resample_rel_pos_bias`` is the literal 4-D reference and the tests check both agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DropPath",
    "MAEAttention",
    "MAETransformerEncoderLayer",
    "MAEViT",
    "PatchEmbed",
    "beit_relative_position_index",
    "nearest_source_tokens",
    "resample_abs_pos_embed",
    "resample_rel_pos_bias",
    "resample_relative_position_index",
]


# --------------------------------------------------------------------------------------------
# Position-table helpers
# --------------------------------------------------------------------------------------------
def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


def beit_relative_position_index(window: int | Sequence[int]) -> torch.Tensor:
    """The BEiT relative-position index for a ``window`` token grid plus one cls token.

    Returns an int64 tensor (Wh*Ww + 1, Wh*Ww + 1) into a table of (2Wh-1)(2Ww-1) + 3 rows:
    patch->patch pairs index by their (dy, dx) offset; the last three rows are cls->patch,
    patch->cls and cls->cls. Built from torch ops only, so it also works on the meta device.
    """
    wh, ww = _pair(window)
    num_rel = (2 * wh - 1) * (2 * ww - 1) + 3
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij"))
    flat = coords.flatten(1)  # (2, N)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0)  # (N, N, 2): (dy, dx)
    index_pp = (rel[..., 0] + (wh - 1)) * (2 * ww - 1) + (rel[..., 1] + (ww - 1))
    n = wh * ww + 1
    index = torch.zeros((n, n), dtype=torch.int64)
    index[1:, 1:] = index_pp
    index[0, 0:] = num_rel - 3
    index[0:, 0] = num_rel - 2
    index[0, 0] = num_rel - 1
    return index


def nearest_source_tokens(old_hw: Sequence[int], new_hw: Sequence[int]) -> torch.Tensor:
    """Flat index of the ``old_hw`` grid cell that nearest interpolation copies into each ``new_hw`` cell.

    Computed by running ``F.interpolate(mode="nearest")`` itself on a grid of token numbers, so it
    is bit-for-bit the selection the official resize makes. Returns int64 (new_h * new_w,).
    """
    oh, ow = _pair(old_hw)
    nh, nw = _pair(new_hw)
    grid = torch.arange(oh * ow, dtype=torch.float32).view(1, 1, oh, ow)
    src = F.interpolate(grid, size=(nh, nw), mode="nearest")
    return src.view(-1).to(torch.int64)


def resample_abs_pos_embed(
    pos_embed: torch.Tensor,
    new_size: Sequence[int],
    old_size: Sequence[int] | None = None,
    num_prefix_tokens: int = 1,
    interpolation: str = "nearest",
) -> torch.Tensor:
    """Resize the patch part of an absolute position table (1, prefix + oh*ow, C) to ``new_size``.

    The ``num_prefix_tokens`` leading entries (the cls token) are kept as they are.
    ``interpolation``: "nearest" (the official run-time rule, legacy floor rule) or "bicubic" /
    "bilinear" (align_corners=False; mmseg's rule for adapting a pretrained MAE 14x14 table to
    32x32 at load). ``old_size`` defaults to the square grid implied by the table length.
    """
    if pos_embed.dim() != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"pos_embed must have shape (1, tokens, C), got {tuple(pos_embed.shape)}")
    n_grid = pos_embed.shape[1] - num_prefix_tokens
    if old_size is None:
        side = math.isqrt(n_grid)
        if side * side != n_grid:
            raise ValueError(f"pos_embed has {n_grid} patch entries, not a square grid; pass old_size")
        old_size = (side, side)
    oh, ow = _pair(old_size)
    nh, nw = _pair(new_size)
    if oh * ow != n_grid:
        raise ValueError(f"pos_embed has {n_grid} patch entries, which does not match old_size {oh}x{ow}")
    if (oh, ow) == (nh, nw):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    c = grid.shape[-1]
    grid = grid.reshape(1, oh, ow, c).permute(0, 3, 1, 2)
    if interpolation == "nearest":
        grid = F.interpolate(grid, size=(nh, nw), mode="nearest")
    elif interpolation in ("bicubic", "bilinear"):
        grid = F.interpolate(grid, size=(nh, nw), mode=interpolation, align_corners=False)
    else:
        raise ValueError(f"unknown interpolation {interpolation!r}")
    grid = grid.permute(0, 2, 3, 1).reshape(1, nh * nw, c)
    return torch.cat([prefix, grid], dim=1)


def resample_relative_position_index(
    index: torch.Tensor, window: Sequence[int], grid: Sequence[int]
) -> torch.Tensor:
    """Relative-position index (N0+1, N0+1) of the ``window`` grid -> (N+1, N+1) for a ``grid`` input.

    Equivalent to the official FlexSizeMAEAttention resize of the expanded bias (nearest, key
    dims then query dims; cls row/column resized along their patch axis only), because
    nearest interpolation only copies entries: row q / column k of the result is row / column
    ``1 + src[q]`` / ``1 + src[k]`` of the original, ``src = nearest_source_tokens(window, grid)``.
    """
    window, grid = _pair(window), _pair(grid)
    n0 = window[0] * window[1] + 1
    if tuple(index.shape) != (n0, n0):
        raise ValueError(f"index has shape {tuple(index.shape)}, expected ({n0}, {n0}) for window {window}")
    if window == grid:
        return index
    src = nearest_source_tokens(window, grid).to(index.device) + 1
    src = torch.cat([torch.zeros(1, dtype=src.dtype, device=src.device), src])
    return index.index_select(0, src).index_select(1, src)


def resample_rel_pos_bias(
    bias: torch.Tensor, window: Sequence[int], grid: Sequence[int], mode: str = "nearest"
) -> torch.Tensor:
    """Reference implementation: resize an expanded bias (heads, N0+1, N0+1) to (heads, N+1, N+1).

    Literal form of the official ``resize_rel_pos_embed_to_match_input`` (kept for tests and for
    a "bilinear" mode; the model uses ``resample_relative_position_index``).
    """
    wh, ww = _pair(window)
    h, w = _pair(grid)
    nh = bias.shape[0]
    n0 = wh * ww
    if tuple(bias.shape[1:]) != (n0 + 1, n0 + 1):
        raise ValueError(f"bias has shape {tuple(bias.shape)}, expected (heads, {n0 + 1}, {n0 + 1})")

    def resize(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, size=(h, w), mode=mode)

    up, bottom = bias[:, :1], bias[:, 1:]
    up_left, up_right = up[:, :, :1], up[:, :, 1:]
    bottom_left, bottom_right = bottom[:, :, :1], bottom[:, :, 1:]
    up_right = resize(up_right.reshape(nh, 1, wh, ww)).reshape(nh, 1, h * w)
    bottom_left = resize(bottom_left.reshape(nh, 1, wh, ww)).reshape(nh, h * w, 1)
    # (heads, query N0, key Wh, key Ww) -> key dims resized
    br = resize(bottom_right.reshape(nh, n0, wh, ww))  # (heads, N0 queries, h, w keys)
    br = br.reshape(nh, wh, ww, h * w).permute(0, 3, 1, 2)  # (heads, hw keys, Wh, Ww queries)
    br = resize(br)  # (heads, hw keys, h, w queries)
    br = br.reshape(nh, h * w, h * w).transpose(1, 2)  # (heads, queries, keys)
    top = torch.cat([up_left, up_right], dim=2)
    rest = torch.cat([bottom_left, br], dim=2)
    return torch.cat([top, rest], dim=1)


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------
class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval mode)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class PatchEmbed(nn.Module):
    """Non-overlapping 16x16 patches -> tokens (key names ``patch_embed.projection.*``)."""

    def __init__(self, in_channels: int = 3, embed_dim: int = 768, patch_size: int = 16):
        super().__init__()
        self.patch_size = patch_size
        self.projection = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.projection(x)
        hw = (x.shape[2], x.shape[3])
        return x.flatten(2).transpose(1, 2), hw


class MAEAttention(nn.Module):
    """BEiT attention with a full qkv bias and a relative position bias table (flex size)."""

    def __init__(self, embed_dim: int, num_heads: int, window_size: Sequence[int]):
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.window_size = _pair(window_size)
        self.scale = (embed_dim // num_heads) ** -0.5
        wh, ww = self.window_size
        num_rel = (2 * wh - 1) * (2 * ww - 1) + 3
        self.relative_position_bias_table = nn.Parameter(torch.zeros(num_rel, num_heads))
        self.register_buffer("relative_position_index", beit_relative_position_index(self.window_size))
        self.qkv = nn.Linear(embed_dim, embed_dim * 3, bias=True)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.proj_drop = nn.Dropout(0.0)

    def relative_position_bias(self, src_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """(heads, N+1, N+1) bias; ``src_tokens`` (from ``nearest_source_tokens``) for other grids."""
        index = self.relative_position_index
        if src_tokens is not None:
            src = torch.cat([src_tokens.new_zeros(1), src_tokens + 1])
            index = index.index_select(0, src).index_select(1, src)
        n = index.shape[0]
        bias = self.relative_position_bias_table[index.reshape(-1)].reshape(n, n, -1)
        return bias.permute(2, 0, 1).contiguous()

    def forward(self, x: torch.Tensor, src_tokens: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * self.scale
        attn = q @ k.transpose(-2, -1)
        attn = attn + self.relative_position_bias(src_tokens).unsqueeze(0)
        attn = attn.softmax(dim=-1)
        attn = self.attn_drop(attn)
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(x))


class FFN(nn.Module):
    """mmcv FFN layout: ``layers.0.0`` Linear(C, 4C), GELU, ``layers.1`` Linear(4C, C); no identity."""

    def __init__(self, embed_dim: int, hidden_dim: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(embed_dim, hidden_dim), nn.GELU(), nn.Dropout(0.0)),
            nn.Linear(hidden_dim, embed_dim),
            nn.Dropout(0.0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MAETransformerEncoderLayer(nn.Module):
    """x = x + gamma_1 * attn(ln1(x)); x = x + gamma_2 * ffn(ln2(x))."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        window_size: Sequence[int],
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        init_values: float = 1.0,
        ln_eps: float = 1e-6,
    ):
        super().__init__()
        self.gamma_1 = nn.Parameter(init_values * torch.ones(embed_dim))
        self.gamma_2 = nn.Parameter(init_values * torch.ones(embed_dim))
        self.ln1 = nn.LayerNorm(embed_dim, eps=ln_eps)
        self.attn = MAEAttention(embed_dim, num_heads, window_size)
        self.ln2 = nn.LayerNorm(embed_dim, eps=ln_eps)
        self.ffn = FFN(embed_dim, int(mlp_ratio * embed_dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, src_tokens: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.gamma_1 * self.attn(self.ln1(x), src_tokens))
        x = x + self.drop_path(self.gamma_2 * self.ffn(self.ln2(x)))
        return x


class MAEViT(nn.Module):
    """The plain MAE ViT: image (B, 3, H, W) -> last-layer patch tokens as a map (B, C, H/16, W/16).

    No final norm; the cls token is dropped from the output. ``drop_path_rate`` is spread
    linearly over the layers (0 for the first layer).
    """

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
    ):
        super().__init__()
        img_size = _pair(img_size)
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.patch_shape = (img_size[0] // patch_size, img_size[1] // patch_size)
        num_patches = self.patch_shape[0] * self.patch_shape[1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.patch_embed = PatchEmbed(in_channels, embed_dim, patch_size)
        # linspace(0, rate, depth) in plain Python (works on the meta device too)
        dpr = [drop_path_rate * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]
        self.layers = nn.ModuleList(
            MAETransformerEncoderLayer(
                embed_dim, num_heads, self.patch_shape, mlp_ratio, dpr[i], init_values, ln_eps
            )
            for i in range(depth)
        )

    def forward_tokens(self, img: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        if img.dim() != 4:
            raise ValueError(f"image must have shape (B, C, H, W), got {tuple(img.shape)}")
        if img.shape[2] % self.patch_size or img.shape[3] % self.patch_size:
            raise ValueError(
                f"image size {img.shape[2]}x{img.shape[3]} is not a multiple of the patch size {self.patch_size}"
            )
        x, hw = self.patch_embed(img)
        pos_embed = resample_abs_pos_embed(self.pos_embed, hw, self.patch_shape, 1, "nearest")
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + pos_embed
        src = None if hw == self.patch_shape else nearest_source_tokens(self.patch_shape, hw).to(x.device)
        for layer in self.layers:
            x = layer(x, src)
        return x, hw

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x, (h, w) = self.forward_tokens(img)
        out = x[:, 1:]
        return out.reshape(out.shape[0], h, w, -1).permute(0, 3, 1, 2).contiguous()
