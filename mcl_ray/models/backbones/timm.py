"""timm: the default backbone provider (`model.backbone: resnet18` or `timm:resnet18`), adapted to small images.

A stock ResNet downsamples 32-px images to 1x1 before its last stage; the CIFAR stem (3x3 stride-1 first conv,
no max-pool) is what makes SimCLR work on CIFAR-sized inputs. ViTs get the requested image and patch size so
small images still produce a useful token grid.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from mcl_ray.errors import ConfigError
from mcl_ray.models.registry import BACKBONES, BackboneProvider
from mcl_ray.models.timm_names import is_timm_model, timm_names

if TYPE_CHECKING:  # torch loads only when a backbone is built, not when a name is checked
    import torch.nn as nn

VIT_PREFIXES = ("vit_", "deit", "test_vit")


def check_backbone_name(name: str, field: str = "model.backbone") -> None:
    """Fail early (before any data or training) on a name timm does not know."""
    if is_timm_model(name):
        return
    close = difflib.get_close_matches(name, sorted(timm_names()["models"]), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"{field}: timm has no model named {name!r}.{hint}")


def is_resnet(model: nn.Module) -> bool:
    return hasattr(model, "conv1") and hasattr(model, "maxpool") and hasattr(model, "layer1")


def is_vit(name: str) -> bool:
    return name.startswith(VIT_PREFIXES)


def apply_cifar_stem(model: nn.Module) -> None:
    """Replace the ResNet stem by a 3x3 stride-1 conv and drop the max-pool (in place)."""
    import torch.nn as nn

    stem = model.conv1
    if isinstance(stem, nn.Conv2d):
        model.conv1 = nn.Conv2d(stem.in_channels, stem.out_channels, 3, stride=1, padding=1, bias=False)
    else:  # deep stems (resnet*d, resnet10t): make the first conv stride 1
        first = next(m for m in stem.modules() if isinstance(m, nn.Conv2d))
        first.stride = (1, 1)
    model.maxpool = nn.Identity()


def resolve_cifar_stem(setting: bool | str, image_size: int) -> bool:
    """'auto' turns the CIFAR stem on for images of at most 48 px."""
    if setting == "auto":
        return image_size <= 48
    return bool(setting)


def default_patch_size(image_size: int) -> int:
    """Patch 4 below 64 px (an 8x8 grid at 32 px), 8 below 128 px, else timm's 16."""
    if image_size < 64:
        return 4
    if image_size < 128:
        return 8
    return 16


def build_backbone(
    name: str,
    *,
    image_size: int,
    pretrained: bool = False,
    cifar_stem: bool | str = "auto",
    patch_size: int | None = None,
) -> tuple[nn.Module, int]:
    """Create a timm trunk without classifier; return (module, feature_dim)."""
    import timm

    check_backbone_name(name)
    kwargs: dict = {"num_classes": 0, "pretrained": pretrained}
    if is_vit(name):
        kwargs["img_size"] = image_size
        kwargs["patch_size"] = patch_size or default_patch_size(image_size)
        if image_size % kwargs["patch_size"]:
            raise ConfigError(
                f"model.patch_size: {kwargs['patch_size']} does not divide data.image_size {image_size}"
            )
    model = timm.create_model(name, **kwargs)
    if is_resnet(model):
        if resolve_cifar_stem(cifar_stem, image_size):
            apply_cifar_stem(model)
    elif cifar_stem is True:
        raise ConfigError(f"model.cifar_stem: only ResNet backbones have a CIFAR stem, not {name!r}")
    return model, int(model.num_features)


@BACKBONES.register("timm")
class TimmProvider(BackboneProvider):
    def check(self, name: str) -> None:
        check_backbone_name(name)

    def build(self, name, *, image_size, pretrained, cifar_stem, patch_size):
        return build_backbone(name, image_size=image_size, pretrained=pretrained, cifar_stem=cifar_stem,
                              patch_size=patch_size)
