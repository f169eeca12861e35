"""none: no head; the loss sees the backbone features (output_dim = feature_dim)."""

from __future__ import annotations

import torch.nn as nn

from mcl_ray.models.registry import HEADS


@HEADS.register("none")
def no_head(in_dim: int, hidden_dim: int, out_dim: int) -> tuple[nn.Module, int]:
    return nn.Identity(), in_dim
