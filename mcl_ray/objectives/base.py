"""The contract between a contrastive method and the trainer.

A method owns the encoder, builds its own inputs from a batch (`prepare`: two augmented views by default;
several views or an image and its caption for other methods) and computes its loss in forward(), so the
trainer can wrap it in DistributedDataParallel and stay ignorant of the objective. forward() returns named
outputs: 'loss' and what regularisers may use ('projections', one [B, D] tensor per view). Anything that must
happen after the optimizer step (a momentum-encoder update) goes in after_step().
"""

from __future__ import annotations

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

    def prepare(self, batch: Tensor, augment: Callable[[Tensor], Tensor]) -> tuple[Tensor, ...]:
        """This method's inputs from a batch of images: two independently augmented views."""
        return augment(batch), augment(batch)

    def forward(self, *inputs: Tensor, groups: Tensor | None = None) -> dict[str, Tensor]:
        """{'loss': scalar, ...} for the prepared inputs; `groups` [B] restricts negatives (MCL)."""
        raise NotImplementedError

    def after_step(self) -> None:
        """Called after optimizer.step(); no-op unless the method keeps a momentum encoder."""

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather={self.gather}"


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
