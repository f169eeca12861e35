"""open_clip: image-text models (`model.backbone: open_clip:ViT-B-32` with `model.pretrained: openai`).

The "backbone" is both towers (`ClipTowers`): called on images it returns the image embedding, so clustering,
integration and the probes see the image tower as with any backbone, and image-text methods (clip) reach the
text tower through `encode_text`. `open_clip:mcl-tiny` is a small random-init CLIP (2-layer ViT and text
transformer, width 64) for CPU runs and tests: open_clip's wheel ships its tokenizer vocabulary, so it works
offline. `open_clip:timm/<timm name>` pairs a timm image tower (timm's ImageNet weights with model.pretrained:
true) with open_clip's standard text transformer (512 wide, 12 layers, random init). Named models and pretrained
tags are open_clip's own (downloaded on first use, on the user's machine).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

from mcl_ray.errors import ConfigError
from mcl_ray.models.registry import BACKBONES, BackboneProvider

TINY = "mcl-tiny"
TINY_CONTEXT = 32  # tokens per caption of the tiny model (short generated captions)


def open_clip_names() -> list[str]:
    """open_clip's built-in model names, read from its packaged configs without importing it (or torch)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("model.backbone: open_clip models need the open_clip package: pip install open_clip_torch")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model_configs"
    return sorted(p.stem for p in folder.glob("*.json"))


TIMM_PREFIX = "timm/"


def check_name(name: str) -> None:
    if name.startswith(TIMM_PREFIX):
        from mcl_ray.models.backbones.timm import check_backbone_name

        open_clip_names()
        check_backbone_name(name[len(TIMM_PREFIX):])
        return
    if name == TINY or name.startswith(("hf-hub:", "local-dir:")):
        if name == TINY:
            open_clip_names()  # the package must be installed
        return
    names = open_clip_names()
    if name not in names:
        import difflib

        close = difflib.get_close_matches(name, names + [TINY], n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"model.backbone: open_clip has no model named {name!r}.{hint} "
                          f"(open_clip:{TINY} is the small random-init model for CPU runs)")


def _torch_module():
    import torch.nn as nn

    class ClipTowers(nn.Module):
        """Both towers of an open_clip model; forward(images) is the image embedding (not normalised)."""

        def __init__(self, model: nn.Module, tokenizer: Any, pretrained: bool) -> None:
            super().__init__()
            self.model = model
            self.tokenizer = tokenizer
            self.pretrained = pretrained

        def forward(self, images):
            return self.model.encode_image(images)

        def encode_text(self, tokens):
            return self.model.encode_text(tokens)

        def tokenize(self, texts: list[str]):
            return self.tokenizer(list(texts))

        @property
        def logit_scale(self):
            return self.model.logit_scale

        def lock(self, text: bool, image_unlocked_groups: int | None) -> None:
            """open_clip's locking: a frozen text tower; a frozen image tower but for its last N groups."""
            if text:
                self.model.lock_text_tower(unlocked_layers=0, freeze_layer_norm=True)
            if image_unlocked_groups is not None:
                self.model.lock_image_tower(unlocked_groups=image_unlocked_groups, freeze_bn_stats=False)

    return ClipTowers


def build_tiny(image_size: int, patch_size: int | None):
    import open_clip

    from mcl_ray.models.backbones.timm import default_patch_size

    patch = patch_size or default_patch_size(image_size)
    if image_size % patch:
        raise ConfigError(f"model.patch_size: {patch} does not divide data.image_size {image_size}")
    vision = open_clip.CLIPVisionCfg(layers=2, width=64, head_width=32, patch_size=patch, image_size=image_size)
    text = open_clip.CLIPTextCfg(context_length=TINY_CONTEXT, width=64, heads=2, layers=2)
    model = open_clip.CLIP(embed_dim=64, vision_cfg=vision, text_cfg=text, init_logit_scale=math.log(1 / 0.07))
    return model, open_clip.SimpleTokenizer(context_length=TINY_CONTEXT)


def build_timm_towers(timm_name: str, image_size: int, pretrained: bool):
    """A timm image tower (avg-pooled, linear projection) with open_clip's standard text tower."""
    import open_clip

    vision = open_clip.CLIPVisionCfg(timm_model_name=timm_name, timm_model_pretrained=pretrained, timm_pool="avg",
                                     timm_proj="linear", image_size=image_size)
    model = open_clip.CLIP(embed_dim=512, vision_cfg=vision, text_cfg=open_clip.CLIPTextCfg())
    return model, open_clip.get_tokenizer("ViT-B-32")


@BACKBONES.register("open_clip")
class OpenClipProvider(BackboneProvider):
    def check(self, name: str) -> None:
        check_name(name)

    def build(self, name, *, image_size, pretrained, cifar_stem, patch_size):
        import open_clip

        if cifar_stem is True:
            raise ConfigError("model.cifar_stem: open_clip models have no CIFAR stem")
        tag = pretrained if isinstance(pretrained, str) else None
        if name.startswith(TIMM_PREFIX):
            if tag:
                raise ConfigError("model.pretrained: a timm image tower takes true (timm's weights) or false, not a tag")
            model, tokenizer = build_timm_towers(name[len(TIMM_PREFIX):], image_size, bool(pretrained))
            return _torch_module()(model, tokenizer, pretrained=False), embedding_dim(model)
        if pretrained is True:
            raise ConfigError("model.pretrained: open_clip models take a pretrained tag (openai, laion2b_s34b_b79k, "
                              "...), see open_clip.list_pretrained()")
        if name == TINY:
            if tag:
                raise ConfigError(f"model.pretrained: open_clip:{TINY} has no pretrained weights")
            model, tokenizer = build_tiny(image_size, patch_size)
        else:
            try:
                model = open_clip.create_model(name, pretrained=tag, force_image_size=image_size)
            except RuntimeError as exc:  # an unknown tag, a failed download
                raise ConfigError(f"model.pretrained: open_clip could not create {name!r} with {tag!r}: {exc}") from None
            tokenizer = open_clip.get_tokenizer(name)
        return _torch_module()(model, tokenizer, pretrained=bool(tag)), embedding_dim(model)


def embedding_dim(model) -> int:
    """The shared image-text embedding width (every open_clip image tower ends in it)."""
    dim = getattr(model.visual, "output_dim", None)
    if dim is None:  # timm image towers: the width of their projection
        dim = model.visual.head.proj.out_features
    return int(dim)
