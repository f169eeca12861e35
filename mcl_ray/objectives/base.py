"""The contract between a contrastive method and the trainer.

A method owns the encoder, builds its own inputs from a batch (`prepare`: two augmented views by default;
several views or an image and its caption for other methods) and computes its loss in forward(), so the
trainer can wrap it in DistributedDataParallel and stay ignorant of the objective. forward() returns named
outputs: 'loss' and what regularisers may use ('projections', one [B, D] tensor per view; 'logits', the
`Logits` of each loss term it averages), plus any detached scalar terms of its loss (reported as loss/<name>).
Anything that must happen after the optimizer step (a momentum-encoder update) goes in after_step(); per-epoch
state computed from the whole training set (SPCL's prototypes) in begin_epoch().
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
from torch import Tensor

from mcl_ray.errors import ConfigError, DataError


class ContrastiveMethod(nn.Module):
    """Base class; subclasses implement forward() and are declared in `objectives/methods/<name>.py`.

    `encoder(x)` must return `(h, z)`: backbone features [B, F] and projector output [B, D].
    """

    def __init__(self, encoder: nn.Module, *, temperature: float, gather: bool = False) -> None:
        super().__init__()
        if not temperature > 0:
            raise ConfigError(f"objective.temperature: must be > 0, got {temperature}")
        self.encoder = encoder
        self.temperature = float(temperature)
        self.gather = bool(gather)

    needs_captions = False  # image-text methods: the trainer passes each image's tokenised caption to prepare()
    needs_indices = False  # True: the trainer passes forward() the batch's dataset indices as `indices=` [B] (SPCL)
    needs_epoch_features = False  # True: the trainer calls begin_epoch() at the start of every epoch (SPCL)

    def prepare(self, batch: Tensor, augment: Callable[[Tensor], Tensor], texts: Tensor | None = None) -> tuple[Tensor, ...]:
        """This method's inputs from a batch of images (and their caption tokens, for image-text methods): two
        independently augmented views by default."""
        return augment(batch), augment(batch)

    def forward(self, *inputs: Tensor, groups: Tensor | None = None) -> dict[str, Tensor]:
        """{'loss': scalar, ...} for the prepared inputs; `groups` [B] restricts negatives (MCL). Other scalar
        (0-dim) outputs are the loss's terms, reported per epoch as loss/<name>; methods with `needs_indices` also
        take `indices=`."""
        raise NotImplementedError

    def set_stage_groups(self, group_ids) -> None:
        """Called once before training with the stage's sorted group ids (None in stage 1); a method that keeps
        state per group (MoCo's per-group queues) sizes it here. No-op by default."""

    def after_step(self) -> None:
        """Called after optimizer.step(); no-op unless the method keeps a momentum encoder."""

    def begin_epoch(self, epoch: int, embed_train: Callable[[], object], *, seed: int = 0) -> list[nn.Parameter] | None:
        """Called by the trainer at the start of every epoch on every rank, only for methods that set
        `needs_epoch_features`. `embed_train()` returns the training set's un-augmented backbone features [N, F]
        (call it on one rank and broadcast what it yields: it embeds the whole set); `seed` is the stage's seed.
        Returns parameters the method re-initialised in place, whose optimizer state the trainer then drops.
        No-op by default."""
        return None

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather={self.gather}"


@dataclass
class Logits:
    """One contrastive loss's logits, for logits-level regularisers (IFM): `logits` [A, N] already divided by the
    temperature, excluded entries -inf; anchor a's positive at column `positive[a]`; `reduce` turns per-anchor
    losses [A] into the method's scalar exactly as its own loss does (mean, or the gathered-batch scaling)."""

    logits: Tensor
    positive: Tensor
    temperature: float
    reduce: Callable[[Tensor], Tensor]

    def loss(self) -> Tensor:
        rows = torch.arange(self.logits.shape[0], device=self.logits.device)
        return self.reduce(torch.logsumexp(self.logits, dim=1) - self.logits[rows, self.positive])


def check_groups(groups: Tensor | None, rows: int, argument: str = "groups") -> None:
    """Group labels must be one integer per sample; a silent broadcast would mask the wrong pairs."""
    if groups is None:
        return
    if groups.ndim != 1 or groups.shape[0] != rows:
        raise DataError(f"{argument}: expected shape ({rows},), got {tuple(groups.shape)}")
    if groups.is_floating_point() or groups.is_complex() or groups.dtype == torch.bool:
        raise DataError(f"{argument}: expected an integer tensor, got {groups.dtype}")


def check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ConfigError(f"temperature: must be > 0, got {temperature}")
