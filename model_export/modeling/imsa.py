"""The I-MSA neck of InterFormer (spec 1.3, 1.4 and 2), official module/key layout.

    neck.patch_embed                         (5, 32) click-label embedding
    neck.stages.{i}.blocks.{j}               PoolingBlock (coarse blocks, always on the full maps)
    neck.stages.{i}.downsample               PatchMerging (stages 0..2)
    neck.refine_stages.{i}.blocks.{j}        PoolingBlock (refine blocks, zoom-in capable), or an
                                             Identity without parameters when a stage has none
    neck.norm{i}                             GroupNorm(1, C_i) on each output

Forward (strides 4, 2, 2, 2)::

    x = F1 + E(M)                         E: one_hot(M, 5) @ patch_embed at canvas size, bilinear to F1
    for i in 0..3:
        x = stage_i.blocks[0](x, kv=F_i); x = stage_i.blocks[j](x, kv=x) for j > 0
        out = x
        x = downsample_i(out)             (i < 3; the next stage starts from the un-refined map)
        out = refine_i(out, roi / s_i)    (s_i = 4, 8, 16, 32; side branch for the decoder only)
        outputs[i] = norm_i(out)

Zoom-in: with a ROI (left, up, right, bottom) in canvas pixels (right/bottom exclusive), the refine
blocks of stage i run on ``out[..., up/s:bottom/s, left/s:right/s]`` only (their pooling sizes
recomputed for the crop, K/V from the crop itself) and the result is pasted back; outside the ROI
the un-refined map is kept. As in the official code the ROI must fall on the stride grid of every
stage with refine blocks (multiples of 32 for Tiny); otherwise a ValueError is raised. The same
ROI is applied to every sample of a batch (the official batch>1 path with one shared ROI reduces
to this crop).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .vit import DropPath

__all__ = [
    "IMSA",
    "InvertedBottleneck",
    "PatchMerging",
    "PoolingAttention",
    "PoolingBlock",
    "PoolingBlockSequence",
    "RefineBlockSequence",
    "adaptive_max_pool2d_sliced",
    "pool_size",
]

DEFAULT_POOL_RATIOS = ((12, 16, 20, 24), (6, 8, 10, 12), (3, 4, 5, 6), (1, 2, 3, 4))


def pool_size(h: int, w: int, target_hw: Sequence[int], ratio: int) -> tuple[int, int]:
    """Key/value map size of one pooling branch for an (h, w) map (official rule).

    ``target_hw`` is the stage's share of the 512x512 training size (128, 64, 32, 16 for stages
    0..3). With Python's ``round`` (half to even)::

        ph = round(h / round(h / min(TH / ratio, h)))      (same for w)

    Ratio 1 means no pooling: (h, w). Example: stage 2 (TH = 32), ratio 4, h = 20 (a 320 px
    canvas): min(8, 20) = 8, 20 / 8 = 2.5 -> 2, 20 / 2 = 10 -> ph = 10, not 8.
    """
    if ratio == 1:
        return (int(h), int(w))
    th, tw = target_hw
    ph = round(h / round(h / min(th / ratio, h)))
    pw = round(w / round(w / min(tw / ratio, w)))
    return (int(ph), int(pw))


def adaptive_max_pool2d_sliced(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``F.adaptive_max_pool2d(x, size)`` written with static slices and max (bit-identical).

    Bin i of an n-bin axis of length L covers [floor(i * L / n), ceil((i + 1) * L / n)). Used while
    tracing / exporting to ONNX, where the legacy exporter rejects adaptive pooling with output
    sizes that do not divide the input size.
    """
    oh, ow = int(size[0]), int(size[1])
    h, w = int(x.shape[-2]), int(x.shape[-1])
    rows = [
        x[..., (i * h) // oh: -((-(i + 1) * h) // oh), :].amax(dim=-2, keepdim=True) for i in range(oh)
    ]
    x = torch.cat(rows, dim=-2)
    cols = [
        x[..., (j * w) // ow: -((-(j + 1) * w) // ow)].amax(dim=-1, keepdim=True) for j in range(ow)
    ]
    return torch.cat(cols, dim=-1)


class PoolingAttention(nn.Module):
    """Queries from ``x`` at full resolution; keys/values from multi-ratio max-pooled ``kv_in``."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        pool_ratios: Sequence[int],
        target_size: Sequence[int],
    ):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.pool_ratios = tuple(int(r) for r in pool_ratios)
        self.target_size = (int(target_size[0]), int(target_size[1]))
        self.scale = (embed_dim // num_heads) ** -0.5
        self.query_proj = nn.Linear(embed_dim, embed_dim)
        self.key_value_proj = nn.Linear(embed_dim, 2 * embed_dim)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.proj_drop = nn.Dropout(0.0)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-5)
        self.dconvs = nn.ModuleList(
            nn.Conv2d(embed_dim, embed_dim, 3, padding=1, groups=embed_dim) for _ in self.pool_ratios
        )

    def kv_sizes(self, h: int, w: int) -> list[tuple[int, int]]:
        """The pooled key/value map size of every branch for an (h, w) ``kv_in``."""
        return [pool_size(h, w, self.target_size, r) for r in self.pool_ratios]

    def key_value(self, kv_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, heads, M, C / heads) of the pooled tokens of ``kv_in`` (B, C, h, w).

        They depend on ``kv_in`` only: for the first block of a stage, whose ``kv_in`` is a
        pyramid level, they are the same for every click (``IMSA.context``)."""
        if kv_in.dim() != 4 or kv_in.shape[1] != self.embed_dim:
            raise ValueError(f"kv_in must be a (B, {self.embed_dim}, H, W) map, got {tuple(kv_in.shape)}")
        b, c = kv_in.shape[:2]
        # plain ints (also under tracing, where pool sizes become export-time constants)
        h, w = int(kv_in.shape[-2]), int(kv_in.shape[-1])
        tokens = []
        for (ph, pw), dconv in zip(self.kv_sizes(h, w), self.dconvs):
            if (ph, pw) == (h, w):
                p = kv_in
            elif torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
                p = adaptive_max_pool2d_sliced(kv_in, (ph, pw))
            else:
                p = F.adaptive_max_pool2d(kv_in, (ph, pw))
            p = p + dconv(p)
            tokens.append(p.flatten(2).transpose(1, 2))
        kv = self.norm(torch.cat(tokens, dim=1))
        k, v = torch.chunk(self.key_value_proj(kv), 2, dim=-1)
        nh = self.num_heads
        k = k.reshape(b, -1, nh, c // nh).transpose(1, 2)
        v = v.reshape(b, -1, nh, c // nh).transpose(1, 2)
        return k, v

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention of the queries of ``x`` (B, C, H, W) over keys / values from ``key_value``."""
        if x.dim() != 4 or k.dim() != 4 or x.shape[0] != k.shape[0] or x.shape[1] != self.embed_dim:
            raise ValueError(
                f"x must be (B, {self.embed_dim}, H, W) and k (B, heads, M, C / heads) with the same B, got "
                f"{tuple(x.shape)} and {tuple(k.shape)}"
            )
        b, c, hq, wq = x.shape
        nh = self.num_heads
        q = self.query_proj(x.flatten(2).transpose(1, 2))  # (B, Nq, C)
        q = q.reshape(b, -1, nh, c // nh).transpose(1, 2)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = self.attn_drop(attn.softmax(dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(b, hq * wq, c)
        out = self.proj_drop(self.proj(out))
        return out.transpose(1, 2).reshape(b, c, hq, wq)

    def forward(
        self,
        x: torch.Tensor,
        kv_in: torch.Tensor | None = None,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Attention of ``x`` over ``kv_in``, or over precomputed ``kv = key_value(kv_in)``
        (``key_value`` and ``attend`` check the shapes)."""
        if kv is None:
            if kv_in is None:
                raise ValueError("PoolingAttention needs kv_in or its precomputed kv")
            kv = self.key_value(kv_in)
        return self.attend(x, *kv)


class InvertedBottleneck(nn.Sequential):
    """1x1 (C->rC) -> Hardswish -> depthwise 3x3 (rC) -> Hardswish -> 1x1 (rC->C); keys mlp.0/2/4."""

    def __init__(self, embed_dim: int, hidden_dim: int, kernel_size: int = 3):
        super().__init__(
            nn.Conv2d(embed_dim, hidden_dim, 1),
            nn.Hardswish(),
            nn.Conv2d(hidden_dim, hidden_dim, kernel_size, padding=(kernel_size - 1) // 2, groups=hidden_dim),
            nn.Hardswish(),
            nn.Conv2d(hidden_dim, embed_dim, 1),
        )


class PoolingBlock(nn.Module):
    """x = x + attn(norm1(x), norm_kv(kv)); x = x + mlp(norm2(x)); all norms GroupNorm(1, C)."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        mlp_ratio: float,
        pool_ratios: Sequence[int],
        target_size: Sequence[int],
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.norm1 = nn.GroupNorm(1, embed_dim)
        self.norm_kv = nn.GroupNorm(1, embed_dim)
        self.attn = PoolingAttention(embed_dim, num_heads, pool_ratios, target_size)
        self.norm2 = nn.GroupNorm(1, embed_dim)
        self.mlp = InvertedBottleneck(embed_dim, int(mlp_ratio * embed_dim))
        self.drop_path = DropPath(drop_path)

    def key_value(self, kv_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The attention's keys and values for ``kv_in`` (see ``PoolingAttention.key_value``)."""
        return self.attn.key_value(self.norm_kv(kv_in))

    def forward(
        self,
        x: torch.Tensor,
        kv_in: torch.Tensor | None = None,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``kv``: precomputed ``key_value(kv_in)`` (then ``kv_in`` is not used)."""
        if kv is None:
            kv = self.key_value(x if kv_in is None else kv_in)
        x = x + self.drop_path(self.attn(self.norm1(x), kv=kv))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class PatchMerging(nn.Module):
    """Unfold(k3, s2, p1) with channel-major features (c, ky, kx) -> LayerNorm(9C) -> Linear(9C, C', no bias).

    ``kernel_size=2`` (the browser-lean default model since v3): Unfold(k2, s2, p0), i.e. the 2x2
    cells of the map, LayerNorm(4C) -> Linear(4C, C'). It sees the same pixels as taps (1..2, 1..2)
    of the 3x3 window (``checkpoint.shrink_patch_merging`` copies those weights) at 4/9 of the cost.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = (kernel_size - 1) // 2
        self.sampler = nn.Unfold(kernel_size=kernel_size, dilation=1, padding=self.padding, stride=stride)
        feat = in_channels * kernel_size * kernel_size
        self.norm = nn.LayerNorm(feat, eps=1e-5)
        self.reduction = nn.Linear(feat, out_channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        ho = (h + 2 * self.padding - (self.kernel_size - 1) - 1) // self.stride + 1
        wo = (w + 2 * self.padding - (self.kernel_size - 1) - 1) // self.stride + 1
        t = self.sampler(x).transpose(1, 2)  # (B, L, 9C)
        t = self.reduction(self.norm(t))  # (B, L, C')
        return t.transpose(1, 2).reshape(b, -1, ho, wo)


class PoolingBlockSequence(nn.Module):
    """Coarse blocks of one stage (+ the PatchMerging to the next stage). Returns (x_next, out)."""

    def __init__(self, blocks: Sequence[PoolingBlock], downsample: PatchMerging | None = None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(
        self,
        x: torch.Tensor,
        kv_in: torch.Tensor | None,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The first block attends over ``kv_in`` (or its precomputed ``kv``), the others over x."""
        for j, blk in enumerate(self.blocks):
            x = blk(x, kv_in=kv_in, kv=kv) if j == 0 else blk(x)
        if self.downsample is None:
            return x, x
        return self.downsample(x), x


class RefineBlockSequence(nn.Module):
    """Refine blocks of one stage: self-attention blocks, optionally only inside a ROI crop."""

    def __init__(self, blocks: Sequence[PoolingBlock]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, roi: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """``roi`` = (left, up, right, bottom) in this stage's map cells, right/bottom exclusive."""
        if roi is None:
            for blk in self.blocks:
                x = blk(x, kv_in=x)
            return x
        left, up, right, bottom = roi
        crop = x[..., up:bottom, left:right]
        for blk in self.blocks:
            crop = blk(crop, kv_in=crop)
        x = x.clone()
        x[..., up:bottom, left:right] = crop
        return x


def _eager_values(t: torch.Tensor) -> bool:
    """True when ``t`` has real values we may inspect (not meta, not traced / exported / compiled)."""
    if t.device.type == "meta" or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return False
    return not torch.compiler.is_compiling()


def _check_roi(roi: Sequence[int], h: int, w: int) -> tuple[int, int, int, int]:
    if len(roi) != 4:
        raise ValueError(f"roi must be (left, up, right, bottom), got {roi!r}")
    vals = []
    for v in roi:
        if isinstance(v, torch.Tensor):
            v = v.item()
        if isinstance(v, bool) or float(v) != int(v):
            raise ValueError(f"roi coordinates must be integers, got {tuple(roi)!r}")
        vals.append(int(v))
    left, up, right, bottom = vals
    if not (0 <= left < right <= w and 0 <= up < bottom <= h):
        raise ValueError(
            f"roi (left={left}, up={up}, right={right}, bottom={bottom}) is empty or outside the {h}x{w} canvas"
        )
    return left, up, right, bottom


class IMSA(nn.Module):
    """Interactive multi-head self-attention neck: ([F1..F4], M, roi) -> 4 normalised maps."""

    def __init__(
        self,
        in_channels: Sequence[int] = (32, 64, 128, 256),
        num_heads: Sequence[int] = (1, 2, 4, 8),
        depths: Sequence[int] = (1, 1, 2, 1),
        refine_start: Sequence[int] = (1, 1, 2, 1),
        mlp_ratios: Sequence[float] = (8, 8, 4, 4),
        target_size: Sequence[int] = (512, 512),
        strides: Sequence[int] = (4, 2, 2, 2),
        pool_ratios: Sequence[Sequence[int]] = DEFAULT_POOL_RATIOS,
        drop_path_rate: float = 0.1,
        num_ref_modes: int = 5,
        attend_from: int = 0,
        merge_kernel: int = 3,
    ):
        super().__init__()
        n = len(depths)
        if merge_kernel not in (2, 3):
            raise ValueError(f"merge_kernel must be 3 (official: 3x3, padding 1) or 2 (2x2, no padding), got {merge_kernel}")
        if attend_from not in (0, 1):
            raise ValueError(f"attend_from must be 0 or 1, got {attend_from}")
        for name, seq in (
            ("in_channels", in_channels),
            ("num_heads", num_heads),
            ("refine_start", refine_start),
            ("mlp_ratios", mlp_ratios),
            ("strides", strides),
            ("pool_ratios", pool_ratios),
        ):
            if len(seq) != n:
                raise ValueError(f"{name} has {len(seq)} entries, depths has {n}")
        for i, (r, d) in enumerate(zip(refine_start, depths)):
            if i < attend_from and (r, d) != (0, 0):
                raise ValueError(f"stage {i} is a pass-through level (attend_from={attend_from}): depth 0, refine_start 0")
            if i >= attend_from and not (1 <= r <= d):
                raise ValueError(f"refine_start {tuple(refine_start)} must lie in 1..depths {tuple(depths)}")
        self.attend_from = attend_from
        self.in_channels = tuple(in_channels)
        self.depths = tuple(depths)
        self.refine_start = tuple(refine_start)
        self.strides = tuple(strides)
        self.num_stages = n
        self.num_ref_modes = num_ref_modes
        total = sum(depths)
        dpr = [drop_path_rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
        # cumulative stride of each stage relative to the canvas (4, 8, 16, 32)
        self.cum_strides = tuple(math.prod(self.strides[: i + 1]) for i in range(n))

        self.patch_embed = nn.Parameter(nn.init.xavier_normal_(torch.empty(num_ref_modes, in_channels[0])))
        if attend_from:
            # the first attended stage starts from its own level + its own click embedding
            self.attend_embed = nn.Parameter(
                nn.init.xavier_normal_(torch.empty(num_ref_modes, in_channels[attend_from]))
            )
        self.stages = nn.ModuleList()
        self.refine_stages = nn.ModuleList()
        th, tw = target_size[0] // strides[0], target_size[1] // strides[0]
        for i in range(n):
            dp = dpr[sum(depths[:i]): sum(depths[: i + 1])]

            def block(k: int, i: int = i, dp: list[float] = dp, th: int = th, tw: int = tw) -> PoolingBlock:
                return PoolingBlock(in_channels[i], num_heads[i], mlp_ratios[i], pool_ratios[i], (th, tw), dp[k])

            has_down = attend_from <= i < n - 1
            down = PatchMerging(in_channels[i], in_channels[i + 1], merge_kernel, strides[i + 1]) if has_down else None
            self.stages.append(PoolingBlockSequence([block(k) for k in range(refine_start[i])], down))
            if depths[i] > refine_start[i]:
                self.refine_stages.append(RefineBlockSequence([block(k) for k in range(refine_start[i], depths[i])]))
            else:
                self.refine_stages.append(nn.Identity())
            if i < n - 1:
                th, tw = th // strides[i + 1], tw // strides[i + 1]
        for i in range(n):
            self.add_module(f"norm{i}", nn.GroupNorm(1, in_channels[i]))

    @property
    def has_refine(self) -> bool:
        return any(not isinstance(r, nn.Identity) for r in self.refine_stages)

    def ref_embed(
        self,
        ref_label: torch.Tensor,
        size: Sequence[int],
        table: torch.Tensor | None = None,
        stride: int | None = None,
    ) -> torch.Tensor:
        """E = one_hot(M, 5) @ table at M's resolution, bilinear (align_corners False) to ``size``.

        ``table`` defaults to ``patch_embed``; ``stride`` (canvas / ``size``) is only used by the
        export copy, which computes the same values at ``size`` directly."""
        table = self.patch_embed if table is None else table
        idx = ref_label.long()
        if idx.dim() == 4:
            if idx.shape[1] != 1:
                raise ValueError(f"ref_label must be (B, 1, H, W) or (B, H, W), got {tuple(ref_label.shape)}")
            idx = idx[:, 0]
        if idx.dim() != 3:
            raise ValueError(f"ref_label must be (B, 1, H, W) or (B, H, W), got {tuple(ref_label.shape)}")
        if _eager_values(idx) and idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.num_ref_modes):
            raise ValueError(f"ref_label values must lie in 0..{self.num_ref_modes - 1}")
        e = F.embedding(idx, table)  # == one_hot(idx) @ table, exactly
        e = e.permute(0, 3, 1, 2)
        if tuple(e.shape[-2:]) != tuple(size):
            e = F.interpolate(e, size=tuple(size), mode="bilinear", align_corners=False)
        return e

    def context(self, feats: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        """The click-independent part of the neck: per stage, the keys and values of its first
        block, which attends over the pyramid level itself (``None`` for pass-through levels).

        ``forward(feats, M, context=self.context(feats))`` equals ``forward(feats, M)``; a
        runtime computes the context once per image and only the rest per click. Then the
        levels after ``attend_from`` are not needed by ``forward`` (pass ``None`` for them)."""
        if len(feats) != self.num_stages:
            raise ValueError(f"expected {self.num_stages} feature maps, got {len(feats)}")
        return [
            None if i < self.attend_from else self.stages[i].blocks[0].key_value(feats[i])
            for i in range(self.num_stages)
        ]

    def forward(
        self,
        feats: Sequence[torch.Tensor | None],
        ref_label: torch.Tensor,
        roi: Sequence[int] | None = None,
        context: Sequence[tuple[torch.Tensor, torch.Tensor] | None] | None = None,
    ) -> list[torch.Tensor]:
        if len(feats) != self.num_stages:
            raise ValueError(f"expected {self.num_stages} feature maps, got {len(feats)}")
        if context is not None and len(context) != self.num_stages:
            raise ValueError(f"expected a context entry per stage ({self.num_stages}), got {len(context)}")
        canvas_h, canvas_w = ref_label.shape[-2:]
        if roi is not None:
            roi = _check_roi(roi, canvas_h, canvas_w)
            for i, refine in enumerate(self.refine_stages):  # fail before any work is done
                if not isinstance(refine, nn.Identity):
                    self._stage_roi(roi, i)
        outs = []
        if self.attend_from:
            # pass-through level 0: no attention, only the click embedding (cheap at stride 4)
            outs.append(self.norm0(feats[0] + self.ref_embed(ref_label, feats[0].shape[-2:], stride=self.cum_strides[0])))
            k = self.attend_from
            x = feats[k] + self.ref_embed(ref_label, feats[k].shape[-2:], self.attend_embed, self.cum_strides[k])
        else:
            x = feats[0] + self.ref_embed(ref_label, feats[0].shape[-2:], stride=self.cum_strides[0])
        for i in range(self.attend_from, self.num_stages):
            kv = None if context is None else context[i]
            if kv is None and feats[i] is None:
                raise ValueError(f"stage {i} needs its pyramid level or its context (keys and values)")
            x, out = self.stages[i](x, feats[i], kv)
            refine = self.refine_stages[i]
            if not isinstance(refine, nn.Identity):
                out = refine(out, None if roi is None else self._stage_roi(roi, i))
            outs.append(getattr(self, f"norm{i}")(out))
        return outs

    def _stage_roi(self, roi: tuple[int, int, int, int], i: int) -> tuple[int, int, int, int]:
        s = self.cum_strides[i]
        if any(v % s for v in roi):
            raise ValueError(
                f"roi {roi} does not fall on the stride-{s} grid of neck stage {i} "
                f"(zoom-in ROIs are snapped to multiples of {self.cum_strides[-1]})"
            )
        return tuple(v // s for v in roi)  # type: ignore[return-value]
