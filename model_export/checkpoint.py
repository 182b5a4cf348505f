"""Loading InterFormer weights: the authors' mmcv checkpoints, bare state dicts, split files.

``checkpoint_filter_fn(checkpoint, model)`` (in the spirit of timm's filter functions) turns
whatever was loaded into a state dict that fits ``model`` exactly, or raises ``CheckpointError``
listing what does not fit:

1. takes the weights from an mmcv runner dict (``state_dict``), a training snapshot
   (``model``) or a bare state dict;
2. strips ``module.`` prefixes (DataParallel / DistributedDataParallel);
3. ``*.relative_position_index`` buffers are deterministic (BEiT index of the 32x32 window): when
   absent (as in the parity fixture) the model's own are used; when present they must equal them;
4. a ``pos_embed`` from another token grid (e.g. the MAE 14x14 pre-training table) is resized to
   the model's grid with ``resample_abs_pos_embed`` (bicubic, align_corners False, cls kept), as
   mmseg does at load;
5. ``*.num_batches_tracked`` BatchNorm counters, if absent, are taken from the model (unused at
   inference);
6. ``auxiliary_head.*`` is dropped when the model has no auxiliary head (``drop_aux_head``);
7. validation: missing keys, unexpected keys and shape mismatches -> ``CheckpointError``.

``load_checkpoint(model, path_or_paths)`` loads one or several files (their union, e.g. the
Tiny-small fixture = small_light.pth + small_tiny_refine.pth), filters, and loads strictly.
"""

from __future__ import annotations

import math
import os
import pickle
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from .modeling.vit import resample_abs_pos_embed

__all__ = ["CheckpointError", "checkpoint_filter_fn", "load_checkpoint", "read_state_dict"]

_SHOW = 5  # keys listed per category in error messages


class CheckpointError(ValueError):
    """A checkpoint does not fit the model (message lists missing / unexpected / mis-shaped keys)."""


def _extract_state_dict(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"checkpoint must be a dict, got {type(checkpoint).__name__}")
    sd = checkpoint
    for key in ("state_dict", "model"):
        inner = checkpoint.get(key) if isinstance(checkpoint, Mapping) else None
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            sd = inner
            break
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(
                f"checkpoint entry {k!r} is a {type(v).__name__}, not a tensor; expected a state dict "
                f"(or an mmcv checkpoint with the weights under 'state_dict')"
            )
        out[k[len("module."):] if k.startswith("module.") else k] = v
    return out


def _fmt(keys: Sequence[str], what: str) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:_SHOW]) + (", ..." if len(keys) > _SHOW else "")
    return f"{len(keys)} {what}: {shown}"


def checkpoint_filter_fn(checkpoint: Mapping, model: nn.Module, drop_aux_head: bool = True) -> dict[str, torch.Tensor]:
    """Adapt a loaded checkpoint to ``model`` and validate it; returns a state dict for strict loading."""
    sd = _extract_state_dict(checkpoint)
    own = model.state_dict()

    # relative position index buffers: deterministic, keep the model's own
    for k, v in own.items():
        if not k.endswith("relative_position_index"):
            continue
        if k not in sd:
            sd[k] = v
        elif tuple(sd[k].shape) == tuple(v.shape) and not torch.equal(sd[k].to(v.dtype).cpu(), v.cpu()):
            raise CheckpointError(f"{k} in the checkpoint differs from the BEiT index this model builds")
        elif tuple(sd[k].shape) == tuple(v.shape):
            sd[k] = v

    # BatchNorm counters
    for k, v in own.items():
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = v

    # absolute position table from another grid
    for k, v in own.items():
        if not k.endswith("pos_embed") or k not in sd or v.dim() != 3:
            continue
        ck = sd[k]
        if ck.dim() == 3 and tuple(ck.shape) != tuple(v.shape) and ck.shape[-1] == v.shape[-1]:
            n_old, n_new = ck.shape[1] - 1, v.shape[1] - 1
            s_old, s_new = math.isqrt(n_old), math.isqrt(n_new)
            if s_old * s_old == n_old and s_new * s_new == n_new:
                sd[k] = resample_abs_pos_embed(
                    ck.float(), (s_new, s_new), (s_old, s_old), num_prefix_tokens=1, interpolation="bicubic"
                ).to(ck.dtype)

    # training-only auxiliary head
    if drop_aux_head and getattr(model, "auxiliary_head", "absent") is None:
        sd = {k: v for k, v in sd.items() if not k.startswith("auxiliary_head.")}

    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    misshaped = [
        f"{k} (checkpoint {tuple(sd[k].shape)}, model {tuple(own[k].shape)})"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(_fmt(missing, "missing keys"))
        if unexpected:
            parts.append(_fmt(unexpected, "unexpected keys"))
        if misshaped:
            parts.append(_fmt(misshaped, "keys with mismatched shapes"))
        raise CheckpointError("checkpoint does not fit the model: " + "; ".join(parts))
    # model order, for readability of anything that iterates it
    return {k: sd[k] for k in own}


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """torch.load a checkpoint file on CPU and return its raw weights dict (not yet filtered).

    Tries ``weights_only=True`` first. mmcv runner checkpoints may carry metadata that the safe
    unpickler refuses; then the file is loaded with ``weights_only=False`` (full pickle: only for
    files from a trusted source, e.g. the authors' release) and a warning is issued.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        warnings.warn(
            f"{path.name}: not loadable with weights_only=True ({str(e).splitlines()[0]}); "
            "loading it as a full pickle (trusted files only)",
            stacklevel=2,
        )
        ck = torch.load(path, map_location="cpu", weights_only=False)
    return _extract_state_dict(ck)


def load_checkpoint(
    model: nn.Module,
    path_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
    drop_aux_head: bool = True,
) -> nn.Module:
    """Load one file, or the union of several (keys must not conflict), into ``model`` (strict).

    Raises ``CheckpointError`` when the weights do not fit. Returns ``model``.
    """
    paths = [path_or_paths] if isinstance(path_or_paths, (str, os.PathLike)) else list(path_or_paths)
    if not paths:
        raise CheckpointError("no checkpoint file given")
    merged: dict[str, torch.Tensor] = {}
    for p in paths:
        for k, v in read_state_dict(p).items():
            if k in merged and not (merged[k].shape == v.shape and torch.equal(merged[k], v)):
                raise CheckpointError(f"{k} appears in several checkpoint files with different values")
            merged[k] = v
    try:
        sd = checkpoint_filter_fn(merged, model, drop_aux_head=drop_aux_head)
    except CheckpointError as e:
        names = ", ".join(str(Path(p).name) for p in paths)
        raise CheckpointError(f"{names}: {e}") from None
    model.load_state_dict(sd, strict=True)
    return model


def warm_start(model: nn.Module, path: str | os.PathLike) -> tuple[list[str], list[str], list[str]]:
    """Start ``model`` from another architecture's weights: returns (copied, sliced, fresh) keys.

    Every tensor of ``path`` whose name and shape exist in ``model`` is copied. Then, where the
    new architecture is a slimmer version of the old one, the old weights are sliced rather
    than dropped (``shrink_transfers``): a narrower MLP keeps its strongest hidden units, a 2x2
    patch merging keeps the 3x3 window's taps that cover the same pixels, an attention with
    fewer pooling branches keeps the branches of the same ratios. The rest stays as built.
    """
    sd = read_state_dict(path)
    own = model.state_dict()
    sliced = shrink_transfers(model, sd, _source_config(path))
    sliced = {k: v for k, v in sliced.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    # (a pooling branch's weights go by ratio, not by index: the slice wins over a same-name copy)
    take = {k: v for k, v in sd.items() if k in own and k not in sliced and tuple(v.shape) == tuple(own[k].shape)}
    if not take and not sliced:
        raise CheckpointError(f"{path}: no tensor fits this model (names and shapes differ)")
    new = {**take, **sliced}
    model.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in new.items()}}, strict=True)
    return sorted(take), sorted(sliced), sorted(k for k in own if k not in new)


def _source_config(path: str | os.PathLike):
    """The model config a released weights file was trained with (its meta), or None."""
    from .configs import CONFIGS

    try:
        meta = torch.load(path, map_location="cpu", weights_only=True).get("meta")
    except Exception:
        return None
    if isinstance(meta, str):
        import json

        meta = json.loads(meta)
    name = meta.get("config") if isinstance(meta, dict) else None
    return CONFIGS.get(name)


def shrink_transfers(model: nn.Module, sd: Mapping[str, torch.Tensor], source_cfg=None) -> dict[str, torch.Tensor]:
    """Slices of the old weights ``sd`` for the modules of ``model`` that are slimmer versions of
    the old ones (see ``warm_start``); ``source_cfg``: the old model's config (pooling ratios)."""
    import re

    from .modeling.imsa import InvertedBottleneck, PatchMerging, PoolingAttention

    out: dict[str, torch.Tensor] = {}
    for name, mod in model.named_modules():
        p = f"{name}." if name else ""
        if isinstance(mod, InvertedBottleneck) and f"{p}0.weight" in sd:
            w_in, w_out = sd[f"{p}0.weight"], sd[f"{p}4.weight"]
            hidden = mod[0].out_channels
            if w_in.shape[0] <= hidden or w_in.shape[1:] != mod[0].weight.shape[1:]:
                continue
            # the hidden units that matter most: |input weights| x |output weights|
            score = w_in.flatten(1).norm(dim=1) * w_out.flatten(2).norm(dim=(0, 2))
            keep = score.topk(hidden).indices.sort().values
            out[f"{p}0.weight"], out[f"{p}0.bias"] = w_in[keep], sd[f"{p}0.bias"][keep]
            out[f"{p}2.weight"], out[f"{p}2.bias"] = sd[f"{p}2.weight"][keep], sd[f"{p}2.bias"][keep]
            out[f"{p}4.weight"] = w_out[:, keep]
        elif isinstance(mod, PatchMerging) and mod.kernel_size == 2 and f"{p}reduction.weight" in sd:
            c = mod.norm.normalized_shape[0] // 4
            if sd[f"{p}norm.weight"].shape[0] != 9 * c:
                continue
            # Unfold(k3, p1, s2) window of output (i, j): rows 2i-1..2i+1; Unfold(k2, s2): rows 2i..2i+1
            idx = torch.tensor([ch * 9 + ky * 3 + kx for ch in range(c) for ky in (1, 2) for kx in (1, 2)])
            out[f"{p}norm.weight"], out[f"{p}norm.bias"] = sd[f"{p}norm.weight"][idx], sd[f"{p}norm.bias"][idx]
            out[f"{p}reduction.weight"] = sd[f"{p}reduction.weight"][:, idx]
        elif isinstance(mod, PoolingAttention) and source_cfg is not None:
            m = re.search(r"(?:^|\.)(?:refine_)?stages\.(\d+)\.", name)
            if m is None:
                continue
            old = tuple(source_cfg.neck.pool_ratios[int(m.group(1))])
            for k, r in enumerate(mod.pool_ratios):
                j = old.index(r) if r in old else None
                if j is not None and f"{p}dconvs.{j}.weight" in sd:
                    out[f"{p}dconvs.{k}.weight"], out[f"{p}dconvs.{k}.bias"] = sd[f"{p}dconvs.{j}.weight"], sd[f"{p}dconvs.{j}.bias"]
    return out
