"""A stage's objective: the method's loss mixed with its regularisers, the one module the trainer runs.

total = (1 - sum of weights) * method loss + sum of weight_i * term_i, so a regulariser composes with any
method that exposes what it reads (most read 'projections'). Without regularisers the method's loss is
returned untouched.
"""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from mcl_ray.objectives.declarations import METHODS, ObjectiveSpec


class Objective(nn.Module):
    def __init__(self, method: nn.Module, spec: ObjectiveSpec) -> None:
        super().__init__()
        self.method = method
        self.spec = spec

    @property
    def encoder(self) -> nn.Module:
        return self.method.encoder

    @property
    def needs_captions(self) -> bool:
        return self.method.needs_captions

    @property
    def needs_indices(self) -> bool:
        """The method wants forward(..., indices=): the batch's dataset indices (SPCL's prototype ids)."""
        return self.method.needs_indices

    @property
    def needs_epoch_features(self) -> bool:
        """The method wants begin_epoch() with the training set's features at every epoch start (SPCL)."""
        return self.method.needs_epoch_features

    def begin_epoch(self, epoch: int, embed_train, *, seed: int = 0):
        return self.method.begin_epoch(epoch, embed_train, seed=seed)

    def prepare(self, batch: Tensor, augment, texts: Tensor | None = None) -> tuple[Tensor, ...]:
        return self.method.prepare(batch, augment, texts) if texts is not None else self.method.prepare(batch, augment)

    def forward(self, *inputs: Tensor, groups: Tensor | None = None, indices: Tensor | None = None) -> dict[str, Tensor]:
        """{'loss': total, 'method': method loss, 'reg/<name>': each term} (only 'loss' without regularisers), plus
        the method's own scalar terms under their names (SPCL: 'instance', 'metric', 'prototype').
        `indices` (the batch's dataset indices) is passed on only when given (methods with needs_indices)."""
        out = self.method(*inputs, groups=groups) if indices is None else self.method(*inputs, groups=groups, indices=indices)
        terms = {k: v for k, v in out.items() if k != "loss" and isinstance(v, Tensor) and v.ndim == 0}
        if not self.spec.regularizers:
            return {"loss": out["loss"], **terms}
        losses = {"method": out["loss"], **terms}
        total = (1.0 - sum(r.weight for r in self.spec.regularizers)) * out["loss"]
        for reg in self.spec.regularizers:
            term = reg.loss(out, groups)
            losses[f"reg/{reg.name}"] = term
            total = total + reg.weight * term
        losses["loss"] = total
        return losses

    def set_stage_groups(self, group_ids) -> None:
        self.method.set_stage_groups(group_ids)

    def after_step(self) -> None:
        self.method.after_step()


def build_objective(spec: ObjectiveSpec, encoder: nn.Module, *, gather: bool | None = None) -> Objective:
    """The objective of `spec` around `encoder`; `gather` overrides spec.gather (off on one worker)."""
    METHODS.get(spec.name)  # imports the declaration file, so an unknown name fails with suggestions
    method = spec.options.build(encoder, temperature=spec.temperature, gather=spec.gather if gather is None else gather)
    return Objective(method, spec)
