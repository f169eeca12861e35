"""mocov2: MoCo v2's plain MLP head, Linear -> ReLU -> Linear."""

from __future__ import annotations

import torch.nn as nn

from mcl_ray.models.registry import HEADS


@HEADS.register("mocov2")
def mocov2_head(in_dim: int, hidden_dim: int, out_dim: int) -> tuple[nn.Module, int]:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)), out_dim
