"""CLIP's symmetric image-text InfoNCE with a learnable logit scale, and MCL's group mask in both directions.

In an MCL stage an image's negatives are only the captions of same-group samples, and a caption's negatives
only the images of same-group samples (the official MCL code gets this by drawing every global batch from one
group; the mask makes it exact when a batch mixes groups). The logit scale is open_clip's: a parameter holding
log(1 / temperature), clamped to at most ln(100) after every optimizer step.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mcl_ray.errors import ConfigError, DataError
from mcl_ray.objectives.base import ContrastiveMethod, Logits, check_groups
from mcl_ray.objectives.distributed import gather_no_grad, gather_sizes, gather_with_grad, is_distributed

MAX_LOGIT_SCALE = math.log(100.0)  # open_clip clamps exp(logit_scale) to 100


def clip_logits(image: Tensor, text: Tensor, logit_scale: Tensor, groups: Tensor | None = None,
                gather: bool = False) -> tuple[Logits, Logits]:
    """(image->text, text->image) logits of this worker's B pairs against every caption / image of the (global)
    batch. Row i's positive is pair i's other modality; candidates of another group are excluded (-inf). The
    reduction is the mean over this worker's anchors, or with `gather` on several workers their sum scaled by
    world size / global pair count, so DDP's average of the workers' losses is exactly the global mean."""
    if image.ndim != 2 or image.shape != text.shape:
        raise DataError(f"image, text: expected two [B, D] tensors of equal shape, got {tuple(image.shape)} "
                        f"and {tuple(text.shape)}")
    check_groups(groups, image.shape[0])
    batch = image.shape[0]
    dtype = torch.promote_types(image.dtype, torch.float32)
    img, txt = F.normalize(image.to(dtype), dim=1), F.normalize(text.to(dtype), dim=1)
    all_img, all_txt, all_groups, offset, scale = img, txt, groups, 0, None
    if gather and is_distributed():
        sizes = gather_sizes(batch, img.device)
        scale = torch.distributed.get_world_size() / sum(sizes)
        offset = sum(sizes[: torch.distributed.get_rank()])
        all_img, all_txt = gather_with_grad(img, sizes), gather_with_grad(txt, sizes)
        if groups is not None:
            all_groups = gather_no_grad(groups, sizes)
    factor = logit_scale.to(dtype).exp()
    rows = torch.arange(batch, device=img.device)
    positive = offset + rows
    reduce = (lambda losses: losses.mean()) if scale is None else (lambda losses: losses.sum() * scale)
    temperature = float(1.0 / factor.detach())
    out = []
    for anchors, candidates in ((img, all_txt), (txt, all_img)):
        logits = factor * anchors @ candidates.T
        if groups is not None:
            excluded = groups[:, None] != all_groups[None, :]
            excluded[rows, positive] = False
            logits = logits.masked_fill(excluded, float("-inf"))
        out.append(Logits(logits, positive, temperature, reduce))
    return out[0], out[1]


def clip_loss(image: Tensor, text: Tensor, logit_scale: Tensor, groups: Tensor | None = None,
              gather: bool = False) -> Tensor:
    """(image->text CE + text->image CE) / 2, as open_clip's ClipLoss, restricted to same-group candidates."""
    i2t, t2i = clip_logits(image, text, logit_scale, groups, gather)
    return (i2t.loss() + t2i.loss()) / 2


class CLIP(ContrastiveMethod):
    """Image-text contrastive training of an open_clip model (`model.backbone: open_clip:<name>`).

    The encoder's backbone holds both towers; `prepare` pairs each image (augmented once) with its tokenised
    caption. Stage embeddings, clustering and integration use the image tower, as the official MCL code does.
    """

    needs_captions = True

    def __init__(self, encoder: nn.Module, *, temperature: float, gather: bool = False,
                 learn_temperature: bool = True) -> None:
        super().__init__(encoder, temperature=temperature, gather=gather)
        towers = encoder.backbone
        if not hasattr(towers, "encode_text"):
            raise ConfigError("objective.name: clip trains an image-text model; set model.backbone to an open_clip "
                              "model (open_clip:mcl-tiny, open_clip:ViT-B-32, ...) and model.head: none")
        if not towers.pretrained:  # a pretrained model keeps its own learnt scale
            with torch.no_grad():
                towers.logit_scale.fill_(math.log(1.0 / temperature))
        towers.logit_scale.requires_grad_(learn_temperature)

    def prepare(self, batch: Tensor, augment, texts: Tensor | None = None) -> tuple[Tensor, ...]:
        if texts is None:
            raise DataError("objective clip needs a caption for every training image; this data set has none "
                            "(use a captioned source: trifeature, imagetext)")
        return augment(batch), texts

    def forward(self, images: Tensor, texts: Tensor, groups: Tensor | None = None) -> dict[str, Tensor]:
        towers = self.encoder.backbone
        image = self.encoder(images)[1]
        text = towers.encode_text(texts)
        i2t, t2i = clip_logits(image, text, towers.logit_scale, groups, gather=self.gather)
        return {"loss": (i2t.loss() + t2i.loss()) / 2, "projections": (image, text), "logits": (i2t, t2i)}

    def after_step(self) -> None:
        with torch.no_grad():
            self.encoder.backbone.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
