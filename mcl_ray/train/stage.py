"""Train one MCL stage: contrastive training where each batch's negatives stay inside the anchor's group.

This function knows nothing about Ray. The Ray engine calls it inside every Train worker and passes its rank,
world size, a model wrapper (DDP) and a report hook through `StageContext`; run locally it uses the defaults.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from mcl_ray.data.augment import BatchAugment
from mcl_ray.data.base import ImageSet
from mcl_ray.data.batch_reader import read_batches
from mcl_ray.errors import ConfigError, DataError, TrainingError
from mcl_ray.eval.knn import knn_accuracy
from mcl_ray.mcl.sampler import GroupBatchSampler, plan_summary
from mcl_ray.models.encoder import Encoder, build_encoder
from mcl_ray.objectives.objective import build_objective
from mcl_ray.train.device import resolve_device
from mcl_ray.train.embed import embed_images, embed_texts
from mcl_ray.train.optim import build_optimizer, build_scheduler

log = logging.getLogger("mcl_ray")


@dataclass
class StageContext:
    """How the stage runs: locally (defaults) or as one worker of a distributed job."""

    rank: int = 0
    world_size: int = 1
    device: torch.device | None = None
    wrap_model: Callable[[nn.Module], nn.Module] = lambda m: m
    on_epoch_end: Callable[[dict[str, Any], Callable[[], dict[str, Any]]], None] | None = None
    on_step: Callable[[int, int, torch.Tensor], None] | None = None  # (epoch, step, batch group ids)
    progress: bool = True

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class StageResult:
    """The trained encoder, per-epoch metrics, and (when asked for) the training set's un-augmented embeddings."""

    encoder: Encoder
    history: list[dict[str, Any]] = field(default_factory=list)
    embeddings: dict[str, np.ndarray] | None = None  # {"backbone": [N, F], "projector": [N, D]}


@dataclass
class OnlineProbe:
    """A small labelled subsample for the per-epoch kNN check, one accuracy per known attribute."""

    train_images: np.ndarray
    train_labels: dict[str, np.ndarray]
    test_images: np.ndarray
    test_labels: dict[str, np.ndarray]

    @classmethod
    def from_sets(cls, probe: ImageSet, test: ImageSet, samples: int, seed: int) -> "OnlineProbe | None":
        names = [a for a in probe.attributes if a in test.attributes]
        if not names:
            return None
        rng = np.random.default_rng(seed)
        tr = np.sort(rng.permutation(len(probe))[:samples])
        te = np.sort(rng.permutation(len(test))[:samples])
        return cls(
            probe.images[tr], {a: probe.attributes[a][tr] for a in names},
            test.images[te], {a: test.attributes[a][te] for a in names},
        )


def global_mean(loss: torch.Tensor, world_size: int) -> float:
    """The loss averaged over ranks, so every rank sees the same value and stops together on NaN."""
    if world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        loss = loss.clone()
        torch.distributed.all_reduce(loss)
        loss /= world_size
    return float(loss)


def check_finite(loss: float, stage: int, epoch: int, step: int) -> None:
    if not math.isfinite(loss):
        raise TrainingError(
            f"stage {stage}, epoch {epoch}, step {step}: loss is {loss} (non-finite). "
            "Lower train.lr, raise objective.temperature or enable train.grad_clip."
        )


def train_stage(
    spec,
    train_set: ImageSet,
    groups: np.ndarray | None = None,
    *,
    ctx: StageContext | None = None,
    init_state: dict[str, torch.Tensor] | None = None,
    resume_state: dict[str, Any] | None = None,
    online_probe: OnlineProbe | None = None,
    embed: bool = False,
) -> StageResult:
    """Train the stage `spec` (a plan.spec.StageSpec) on `train_set`, negatives restricted to `groups`
    (None = stage 1). embed=True also embeds the whole training set without augmentation (what the next
    clustering needs)."""
    ctx = ctx or StageContext()
    train = spec.train
    stage = spec.index
    device = ctx.device or resolve_device(train.device)
    torch.manual_seed(spec.seed * 100 + ctx.rank)

    encoder = build_encoder(spec.model)
    if init_state is not None:
        try:
            encoder.load_state_dict(init_state)
        except RuntimeError as exc:
            raise ConfigError(f"stage {stage + 1}: the initial weights do not fit model.backbone {spec.model.backbone!r}: {exc}") from None
    objective = build_objective(spec.objective, encoder, gather=spec.objective.gather and ctx.world_size > 1)
    objective.set_stage_groups(None if groups is None else np.unique(groups))  # before DDP records the buffers
    objective = objective.to(device)
    model = ctx.wrap_model(objective)

    sampler = GroupBatchSampler(
        groups if spec.sampling == "group_batches" else None,  # random_batches: the loss alone applies the groups
        num_samples=len(train_set),
        global_batch_size=train.batch_size,
        rank=ctx.rank,
        world_size=ctx.world_size,
        seed=spec.seed,
    )
    steps_per_epoch = len(sampler)
    optimizer = build_optimizer(objective, train)
    scheduler = build_scheduler(optimizer, train, steps_per_epoch)
    augment = BatchAugment(spec.augment, fixed_rows=train_set.fixed_rows).to(device)

    start_epoch, history = 0, []
    if resume_state is not None:
        objective.load_state_dict(resume_state["method"])
        optimizer.load_state_dict(resume_state["optimizer"])
        start_epoch = int(resume_state["epoch"]) + 1
        history = list(resume_state.get("history", []))

    images = train_set.images  # in memory or memory-mapped: each step reads only its batch's rows
    texts = caption_tokens(objective, encoder, train_set)
    group_ids = torch.from_numpy(np.zeros(len(train_set), np.int64) if groups is None else np.asarray(groups, np.int64))
    use_amp = train.amp and device.type == "cuda"
    if ctx.is_main and groups is not None:
        log.info("stage %d sampling plan (%s): %s", stage + 1, spec.sampling, plan_summary(sampler, 0, loss_groups=groups))

    # Methods with per-epoch state from the whole training set (SPCL's prototypes). `getattr`: test wrappers of
    # the objective need not forward these flags. begin_epoch runs on every rank; the method calls the embedding
    # on rank 0 only and broadcasts its result, so it is computed once per epoch for all workers.
    epoch_features = getattr(objective, "needs_epoch_features", False)
    pass_indices = getattr(objective, "needs_indices", False)

    for epoch in range(start_epoch, train.epochs):
        sampler.set_epoch(epoch)
        if epoch_features:
            reinitialised = objective.begin_epoch(
                epoch, lambda: embed_images(encoder, train_set.images, spec.augment, device=device)["backbone"],
                seed=spec.seed,
            )
            for param in reinitialised or ():  # a head re-initialised in place starts without stale momentum
                optimizer.state.pop(param, None)
        objective.train()
        t0, seen, sums = time.perf_counter(), 0, {}
        reader = read_batches(images, sampler, workers=spec.data.decode_workers, pin_memory=device.type == "cuda")
        for step, (index, batch) in enumerate(reader):
            global_step = epoch * steps_per_epoch + step
            scheduler.step_update(global_step)
            batch = batch.to(device, non_blocking=True)
            inputs = objective.prepare(batch, augment, None if texts is None else texts[index].to(device, non_blocking=True))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                extra = {"indices": index.to(device)} if pass_indices else {}  # SPCL: the samples' prototype ids
                losses = model(*inputs, groups=group_ids[index].to(device), **extra)
            loss = losses["loss"]
            loss_value = global_mean(loss.detach(), ctx.world_size)  # one host sync: NaN check and running mean
            check_finite(loss_value, stage + 1, epoch + 1, step + 1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if train.grad_clip:
                torch.nn.utils.clip_grad_norm_(objective.parameters(), train.grad_clip)
            optimizer.step()
            objective.after_step()
            if ctx.on_step is not None:
                ctx.on_step(epoch, step, group_ids[index])
            sums["loss"] = sums.get("loss", 0.0) + loss_value
            for name, part in losses.items():  # the method's loss and each regulariser's term, when mixed
                if name != "loss":
                    sums[name] = sums.get(name, 0.0) + float(part.detach())
            seen += len(index)
            if ctx.is_main and ctx.progress and (step + 1) % train.log_every == 0:
                log.info(
                    "stage %d epoch %d/%d step %d/%d loss %.4f",
                    stage + 1, epoch + 1, train.epochs, step + 1, steps_per_epoch, sums["loss"] / (step + 1),
                )
        elapsed = time.perf_counter() - t0
        metrics: dict[str, Any] = {
            "stage": stage + 1,
            "epoch": epoch + 1,
            "loss": sums.get("loss", 0.0) / max(steps_per_epoch, 1),
            **{f"loss/{k}": v / max(steps_per_epoch, 1) for k, v in sums.items() if k != "loss"},
            "lr": optimizer.param_groups[0]["lr"],
            "images_per_s": seen * ctx.world_size / max(elapsed, 1e-9),
            "epoch_time_s": elapsed,
        }
        if groups is not None:  # how starved the group mask left the anchors this epoch
            metrics["few_negatives_fraction"] = plan_summary(sampler, epoch, loss_groups=groups)["few_negatives_fraction"]
        every = train.online_knn_every
        if online_probe is not None and every and ((epoch + 1) % every == 0 or epoch + 1 == train.epochs):
            metrics.update(online_knn(encoder, online_probe, spec, device))
        history.append(metrics)
        if ctx.is_main and ctx.progress:
            extra = "".join(f" {k} {v:.3f}" for k, v in metrics.items() if k.startswith("online_knn"))
            log.info(
                "stage %d epoch %d/%d loss %.4f %.0f img/s%s",
                stage + 1, epoch + 1, train.epochs, metrics["loss"], metrics["images_per_s"], extra,
            )
        if ctx.on_epoch_end is not None:
            ctx.on_epoch_end(metrics, lambda e=epoch: {
                "method": objective.state_dict(), "optimizer": optimizer.state_dict(), "epoch": e, "history": history,
            })
    embeddings = None
    if embed:
        embeddings = embed_images(encoder, train_set.images, spec.augment, device=device)
        if spec.clustering is not None and "text" in spec.clustering.views:
            embeddings["text"] = embed_texts(encoder.backbone, list(train_set.captions), device=device)
    return StageResult(encoder=encoder, history=history, embeddings=embeddings)


def caption_tokens(objective, encoder: Encoder, train_set: ImageSet) -> torch.Tensor | None:
    """Every training caption tokenised once ([N, context] token ids) for image-text methods; None otherwise."""
    if not objective.needs_captions:
        return None
    if train_set.captions is None:
        raise DataError(f"{train_set.name}: objective {objective.spec.name!r} needs a caption per image and this data "
                        "set has none")
    return encoder.backbone.tokenize(train_set.captions)


def online_knn(encoder: Encoder, probe: OnlineProbe, spec, device: torch.device) -> dict[str, float]:
    """kNN accuracy of the backbone features on the probe subsample, per attribute."""
    train = torch.from_numpy(embed_images(encoder, probe.train_images, spec.augment, device=device)["backbone"])
    test = torch.from_numpy(embed_images(encoder, probe.test_images, spec.augment, device=device)["backbone"])
    return {
        f"online_knn_{name}": knn_accuracy(
            train, torch.from_numpy(probe.train_labels[name]), test, torch.from_numpy(probe.test_labels[name]),
            k=spec.train.knn_k, temperature=spec.train.knn_temperature,
        )
        for name in probe.train_labels
    }
