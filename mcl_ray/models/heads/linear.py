"""linear: one linear projection."""

from __future__ import annotations

import torch.nn as nn

from mcl_ray.models.registry import HEADS


@HEADS.register("linear")
def linear_head(in_dim: int, hidden_dim: int, out_dim: int) -> tuple[nn.Module, int]:
    return nn.Linear(in_dim, out_dim), out_dim
