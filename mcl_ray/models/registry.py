"""Backbone providers and projection heads by name (one file each under `backbones/` and `heads/`).

A backbone is named `[provider:]name`; the provider defaults to timm (`resnet18`, `timm:vit_small_patch16_224`),
so other model zoos (open_clip towers, ...) plug in as one provider file.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

from mcl_ray.registry import Registry

DEFAULT_PROVIDER = "timm"


class BackboneProvider:
    """Checks names (cheaply, before any work) and builds a trunk without classifier: (module, feature_dim)."""

    field: ClassVar[str] = "model.backbone"

    def check(self, name: str) -> None:
        raise NotImplementedError

    def build(self, name: str, *, image_size: int, pretrained: bool, cifar_stem: Any, patch_size: int | None):
        raise NotImplementedError


BACKBONES: Registry[type[BackboneProvider]] = Registry("backbone provider", "model.backbone", "mcl_ray.models.backbones")
HEADS: Registry[Callable[..., Any]] = Registry("projection head", "model.head", "mcl_ray.models.heads")


def split_backbone(name: str) -> tuple[BackboneProvider, str]:
    provider, _, arch = name.rpartition(":") if ":" in name and not name.startswith("hf-hub:") else ("", "", name)
    return BACKBONES.get(provider or DEFAULT_PROVIDER)(), arch


def check_backbone_name(name: str) -> None:
    """Fail early (before any data or training) on a name the provider does not know."""
    provider, arch = split_backbone(name)
    provider.check(arch)


def build_backbone(name: str, *, image_size: int, pretrained: bool = False, cifar_stem: Any = "auto",
                   patch_size: int | None = None):
    """Create the trunk `name` without classifier; return (module, feature_dim)."""
    provider, arch = split_backbone(name)
    provider.check(arch)
    return provider.build(arch, image_size=image_size, pretrained=pretrained, cifar_stem=cifar_stem, patch_size=patch_size)


def build_projector(kind: str, in_dim: int, hidden_dim: int, out_dim: int):
    """Return (head, output_dim). 'none' keeps the backbone features (output_dim = in_dim)."""
    return HEADS.get(kind)(in_dim, hidden_dim, out_dim)
