"""Plain-PyTorch InterFormer network (official module/key layout) and related modules."""

from .heads import ConvModule, FCNHead, UPerHead
from .imsa import IMSA, PatchMerging, PoolingAttention, PoolingBlock, pool_size
from .interformer import InterFormer
from .simple_fpn import MAEWithSimpleFPN, SimpleFPN
from .vit import (
    MAEViT,
    beit_relative_position_index,
    resample_abs_pos_embed,
    resample_rel_pos_bias,
    resample_relative_position_index,
)

__all__ = [
    "IMSA",
    "ConvModule",
    "FCNHead",
    "InterFormer",
    "MAEViT",
    "MAEWithSimpleFPN",
    "PatchMerging",
    "PoolingAttention",
    "PoolingBlock",
    "SimpleFPN",
    "UPerHead",
    "beit_relative_position_index",
    "pool_size",
    "resample_abs_pos_embed",
    "resample_rel_pos_bias",
    "resample_relative_position_index",
]
