"""Backbone + projection head; forward returns both so losses and embeddings share one pass."""

from __future__ import annotations

import torch
import torch.nn as nn

from mcl_ray.models.backbones import build_backbone
from mcl_ray.models.heads import build_projector


class Encoder(nn.Module):
    """forward(x) -> (h, z): backbone features h [B, F] and projector output z [B, D]."""

    def __init__(self, backbone: nn.Module, projector: nn.Module, feature_dim: int, proj_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = projector
        self.feature_dim = feature_dim
        self.proj_dim = proj_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.backbone(x)
        return h, self.projector(h)


def build_encoder(model_cfg, image_size: int) -> Encoder:
    """Build from a ModelConfig (see mcl_ray.config.schema)."""
    backbone, feature_dim = build_backbone(
        model_cfg.backbone,
        image_size=image_size,
        pretrained=model_cfg.pretrained,
        cifar_stem=model_cfg.cifar_stem,
        patch_size=model_cfg.patch_size,
    )
    projector, proj_dim = build_projector(model_cfg.head, feature_dim, model_cfg.proj_hidden_dim, model_cfg.proj_dim)
    return Encoder(backbone, projector, feature_dim, proj_dim)
