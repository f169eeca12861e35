"""Backbone + projection head; forward returns both so losses and embeddings share one pass."""

from __future__ import annotations

import torch
import torch.nn as nn

from mcl_ray.models.norm import batch_free
from mcl_ray.models.registry import build_backbone, build_projector
from mcl_ray.models.spec import ModelSpec


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


def build_encoder(spec: ModelSpec) -> Encoder:
    backbone, feature_dim = build_backbone(
        spec.backbone,
        image_size=spec.image_size,
        pretrained=spec.pretrained,
        cifar_stem=spec.cifar_stem,
        patch_size=spec.patch_size,
    )
    if spec.lock_text or spec.lock_image is not None:
        backbone.lock(text=spec.lock_text, image_unlocked_groups=spec.lock_image)
    projector, proj_dim = build_projector(spec.head, feature_dim, spec.proj_hidden_dim, spec.proj_dim)
    encoder = Encoder(backbone, projector, feature_dim, proj_dim)
    return batch_free(encoder) if spec.norm == "group" else encoder
