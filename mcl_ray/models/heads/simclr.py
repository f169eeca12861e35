"""simclr: SimCLR's MLP head, Linear -> BatchNorm -> ReLU -> Linear."""

from __future__ import annotations

import torch.nn as nn

from mcl_ray.models.registry import HEADS


@HEADS.register("simclr")
def simclr_head(in_dim: int, hidden_dim: int, out_dim: int) -> tuple[nn.Module, int]:
    head = nn.Sequential(
        nn.Linear(in_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )
    return head, out_dim
