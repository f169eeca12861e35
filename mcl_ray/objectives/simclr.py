"""SimCLR's NT-Xent loss with MCL's group mask.

MCL's feature-aware negative sampling says an anchor's negatives come only from its own group (the
intersection of earlier stages' clusters). The batch sampler already draws batches from few groups; the mask
here makes the rule exact when a batch mixes groups: cross-group pairs are dropped from the denominator.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mcl_ray.errors import ConfigError, DataError
from mcl_ray.objectives.base import ContrastiveMethod, Logits, check_groups, check_temperature
from mcl_ray.objectives.distributed import gather_no_grad, gather_sizes, gather_with_grad, is_distributed


ANCHORS = ("all", "with_negatives")


def nt_xent_loss(
    z1: Tensor, z2: Tensor, temperature: float, groups: Tensor | None = None, gather: bool = False,
    anchors: str = "all",
) -> Tensor:
    """The NT-Xent loss of `nt_xent_logits` (see there)."""
    return nt_xent_logits(z1, z2, temperature, groups, gather, anchors).loss()


def nt_xent_logits(
    z1: Tensor, z2: Tensor, temperature: float, groups: Tensor | None = None, gather: bool = False,
    anchors: str = "all",
) -> Logits:
    """NT-Xent over this worker's 2B anchors (both views of each sample): their mean, or with `gather` on
    several workers their sum scaled by world size / global anchor count, so that the workers' losses and
    gradients averaged (what DDP does) are exactly the global batch's mean, also when local batch sizes differ.

    z1, z2: [B, D] projections of two views (L2-normalised here). Anchor i's positive is its other view; its
    negatives are every other embedding (of the global batch when `gather`) with the same group label.
    An anchor left with no negatives contributes log(e^s / e^s) = 0; `anchors="with_negatives"` leaves such
    anchors out of the mean (the count of anchors that have negatives, over all workers when gathered) instead
    of letting their zeros dilute it. Computed in at least float32 so mixed-precision callers stay stable at small
    temperatures.
    """
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise DataError(
            f"z1, z2: expected two [B, D] tensors of equal shape, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    check_temperature(temperature)
    check_groups(groups, z1.shape[0])
    if anchors not in ANCHORS:
        raise ConfigError(f"objective.anchors: must be one of {', '.join(ANCHORS)}, got {anchors!r}")
    batch = z1.shape[0]
    dtype = torch.promote_types(z1.dtype, torch.float32)
    local = F.normalize(torch.cat([z1, z2]).to(dtype), dim=1)  # rows [view1 of 0..B-1, view2 of 0..B-1]
    local_groups = None if groups is None else torch.cat([groups, groups])

    everything, everything_groups, offset, scale = local, local_groups, 0, None
    if gather and is_distributed():
        sizes = gather_sizes(2 * batch, local.device)
        scale = torch.distributed.get_world_size() / sum(sizes)
        offset = sum(sizes[: torch.distributed.get_rank()])
        everything = gather_with_grad(local, sizes)
        if local_groups is not None:
            everything_groups = gather_no_grad(local_groups, sizes)

    logits = local @ everything.T / temperature  # [2B, N_global]
    rows = torch.arange(2 * batch, device=local.device)
    self_cols = offset + rows
    positive_cols = offset + (rows + batch) % (2 * batch)
    excluded = torch.zeros_like(logits, dtype=torch.bool)
    excluded[rows, self_cols] = True
    if local_groups is not None:
        excluded |= local_groups[:, None] != everything_groups[None, :]
    excluded[rows, positive_cols] = False  # the positive always stays, so logsumexp is finite
    if anchors == "with_negatives" and local_groups is not None:
        counted = ((~excluded).sum(1) > 1).to(dtype)  # the positive plus at least one negative
        total = counted.sum()
        if scale is not None:
            total = total.detach().clone()
            torch.distributed.all_reduce(total)
            total = total / torch.distributed.get_world_size()  # per-worker share, as `scale` uses
        reduce = lambda losses: (losses * counted).sum() / total.clamp(min=1.0)  # noqa: E731
    elif scale is None:
        reduce = lambda losses: losses.mean()  # noqa: E731
    else:
        reduce = lambda losses: losses.sum() * scale  # noqa: E731
    return Logits(logits.masked_fill(excluded, float("-inf")), positive_cols, temperature, reduce)


class SimCLR(ContrastiveMethod):
    """SimCLR: one encoder, NT-Xent between the projections of two views."""

    def __init__(self, encoder: nn.Module, *, temperature: float, gather: bool = False, anchors: str = "all") -> None:
        super().__init__(encoder, temperature=temperature, gather=gather)
        self.anchors = anchors

    def forward(self, view1: Tensor, view2: Tensor, groups: Tensor | None = None) -> dict[str, Tensor]:
        _, z1 = self.encoder(view1)
        _, z2 = self.encoder(view2)
        logits = nt_xent_logits(z1, z2, self.temperature, groups, gather=self.gather, anchors=self.anchors)
        return {"loss": logits.loss(), "projections": (z1, z2), "logits": (logits,)}
