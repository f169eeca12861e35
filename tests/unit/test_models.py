"""Backbones by timm name, the CIFAR stem, ViT patching, projection heads."""

from __future__ import annotations

import pytest
import torch

from mcl_ray.errors import ConfigError
from mcl_ray.models.registry import build_backbone
from mcl_ray.models.encoder import build_encoder
from mcl_ray.models.spec import ModelSpec
from mcl_ray.models.registry import build_projector


def test_cifar_stem_keeps_resolution():
    stock, _ = build_backbone("resnet18", image_size=32, cifar_stem=False)
    cifar, dim = build_backbone("resnet18", image_size=32, cifar_stem=True)
    assert dim == 512
    assert cifar.conv1.stride == (1, 1) and cifar.conv1.kernel_size == (3, 3)
    assert isinstance(cifar.maxpool, torch.nn.Identity)
    x = torch.randn(2, 3, 32, 32)
    # the stock stem reduces 32 px to 1x1 before pooling; the CIFAR stem keeps 4x4
    assert stock.forward_features(x).shape[-1] == 1
    assert cifar.forward_features(x).shape[-1] == 4


def test_cifar_stem_auto_and_deep_stem():
    auto_small, _ = build_backbone("resnet18", image_size=32)
    auto_large, _ = build_backbone("resnet18", image_size=96)
    assert auto_small.conv1.stride == (1, 1) and auto_large.conv1.stride == (2, 2)
    deep, _ = build_backbone("resnet10t", image_size=32, cifar_stem=True)
    assert deep.forward_features(torch.randn(1, 3, 32, 32)).shape[-1] == 4


def test_vit_small_images():
    vit, dim = build_backbone("test_vit", image_size=32)
    assert vit(torch.randn(2, 3, 32, 32)).shape == (2, dim)
    with pytest.raises(ConfigError, match="patch_size"):
        build_backbone("test_vit", image_size=30, patch_size=4)


def test_unknown_backbone_and_stem_misuse():
    with pytest.raises(ConfigError, match="resnet18"):
        build_backbone("resnet-18", image_size=32)
    with pytest.raises(ConfigError, match="cifar_stem"):
        build_backbone("test_vit", image_size=32, cifar_stem=True)


def test_backbone_names_take_an_optional_provider():
    plain, dim = build_backbone("test_resnet", image_size=32)
    prefixed, prefixed_dim = build_backbone("timm:test_resnet", image_size=32)
    assert type(plain) is type(prefixed) and dim == prefixed_dim
    with pytest.raises(ConfigError, match=r"model.backbone: unknown backbone provider 'tim' \(did you mean 'timm'\?\)"):
        build_backbone("tim:resnet18", image_size=32)


@pytest.mark.parametrize("kind, out", [("simclr", 16), ("mocov2", 16), ("linear", 16), ("none", 8)])
def test_heads(kind, out):
    head, dim = build_projector(kind, 8, 32, 16)
    assert dim == out and head(torch.randn(4, 8)).shape == (4, out)


def test_encoder_returns_features_and_projection():
    enc = build_encoder(ModelSpec(backbone="test_resnet", image_size=32, proj_hidden_dim=32, proj_dim=16))
    h, z = enc(torch.randn(3, 3, 32, 32))
    assert h.shape == (3, enc.feature_dim) and z.shape == (3, 16)


@pytest.mark.parametrize("name, dim", [("vit_tiny_patch16_224", 192), ("vit_small_patch16_224", 384), ("vit_base_patch16_224", 768)])
def test_vit_family_on_small_images(name, dim):
    vit, features = build_backbone(name, image_size=32)
    assert features == dim
    assert vit.patch_embed.grid_size == (8, 8)  # patch 4 at 32 px
    assert vit(torch.randn(1, 3, 32, 32)).shape == (1, dim)


def test_resnet50_cifar_stem():
    net, dim = build_backbone("resnet50", image_size=32, cifar_stem=True)
    assert dim == 2048 and net.forward_features(torch.randn(1, 3, 32, 32)).shape[-1] == 4
