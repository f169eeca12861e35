"""Projection heads: SimCLR's MLP with batch norm and MoCo v2's plain MLP."""

from __future__ import annotations

import torch.nn as nn

from mcl_ray.errors import ConfigError

HEADS = ("simclr", "mocov2", "linear", "none")


def build_projector(kind: str, in_dim: int, hidden_dim: int, out_dim: int) -> tuple[nn.Module, int]:
    """Return (head, output_dim). 'none' keeps the backbone features (output_dim = in_dim)."""
    if kind == "simclr":
        head = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )
        return head, out_dim
    if kind == "mocov2":
        return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)), out_dim
    if kind == "linear":
        return nn.Linear(in_dim, out_dim), out_dim
    if kind == "none":
        return nn.Identity(), in_dim
    raise ConfigError(f"model.head: unknown projection head {kind!r}; choose one of {', '.join(HEADS)}")
