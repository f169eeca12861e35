"""Optimizer and per-step warm-up + cosine schedule, both from timm."""

from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler

from mcl_ray.train.spec import TrainSpec


def build_optimizer(model: torch.nn.Module, train: TrainSpec) -> torch.optim.Optimizer:
    """Any timm optimizer; biases and norm weights get no weight decay (timm's filter_bias_and_bn)."""
    # timm skips parameters with requires_grad=False (e.g. MoCo's momentum encoder).
    return create_optimizer_v2(model, opt=train.optimizer, lr=train.lr, weight_decay=train.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, train: TrainSpec, steps_per_epoch: int) -> CosineLRScheduler:
    """Stepped per update (`step_update(global_step)`) so short runs still get a smooth warm-up."""
    total = max(train.epochs * steps_per_epoch, 1)
    warmup = min(int(train.warmup_epochs * steps_per_epoch), total - 1)
    return CosineLRScheduler(
        optimizer,
        t_initial=total,
        lr_min=train.lr * 1e-3,
        warmup_t=warmup,
        warmup_lr_init=train.lr * 1e-3,
        warmup_prefix=False,
        t_in_epochs=False,
    )
