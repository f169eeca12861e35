"""Batch-free normalisation: every BatchNorm of a built encoder becomes a GroupNorm.

BatchNorm normalises each sample with statistics of the other samples in its batch. In an MCL stage whose
batches come from one group (`mcl.sampling: group_batches`, the official sampler) those statistics describe
the group, a batch-level shortcut the contrastive loss can exploit; SimCLR and MoCo fight the same shortcut
with shuffled or synchronised BN. GroupNorm computes its statistics within each sample, so no sample's
features depend on which others share its batch (or its worker). `model.norm: group` is that control.
"""

from __future__ import annotations

import torch.nn as nn

NORMS = ("batch", "group")
MAX_GROUPS = 32  # GroupNorm's usual group count (Wu & He, 2018)


def groups_for(channels: int) -> int:
    """The largest group count up to 32 that divides `channels` (1 is LayerNorm over the channels)."""
    return next(g for g in range(min(MAX_GROUPS, channels), 0, -1) if channels % g == 0)


def batch_free(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm1d/2d/3d in `module` (in place) by a GroupNorm over the same channels, carrying
    over the affine weights; returns `module` (a bare BatchNorm is returned converted)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return _group_norm(module)
    for name, child in module.named_children():
        setattr(module, name, batch_free(child))
    return module


def _group_norm(bn: nn.modules.batchnorm._BatchNorm) -> nn.GroupNorm:
    norm = nn.GroupNorm(groups_for(bn.num_features), bn.num_features, eps=bn.eps, affine=bn.affine)
    if bn.affine:
        norm.weight.data.copy_(bn.weight.data)
        norm.bias.data.copy_(bn.bias.data)
    return norm.to(bn.weight.device if bn.affine else None)
