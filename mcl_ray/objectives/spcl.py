"""SPCL: siamese prototypical contrastive learning (Mo et al., BMVC 2021; arXiv 2208.08819).

Contrastive learning pushes apart semantically similar images (false negatives). SPCL adds, every epoch,
prototypes: the training set's backbone features are PCA-whitened, L2-normalised and clustered by k-means
(`prototype_labels`, the project's faiss k-means); the loss is

    w_c * NT-Xent(two views of each image)                         instance term, MCL's group mask, gathered
  + w_m * BCE(metric(|h_a - h_b|), same image or same prototype)    siamese metric term on backbone features
  + w_k * CE(classifier(h), prototype id)                           prototype classification, head re-initialised
                                                                    every epoch (the ids change meaning)

Metric pairs are built within the (global, with `gather`) batch, three per anchor view-1 feature h1[a], each
against view-2 features: its own image (label 1); the next sample after it in batch order (cyclically) with
the same prototype (label 1); and the next one with a different prototype (label 0). Partners are restricted to
the anchor's MCL group, as negatives are in the NT-Xent term; an anchor without such a partner skips that pair.
This is O(B * F) instead of the O(B^2 * F) of all pairs, balanced between labels, and deterministic, so the
distributed loss equals one process's on the whole batch.

Prototypes are computed once per epoch for all workers: rank 0 embeds the training set and clusters it, and
broadcasts the ids (`begin_epoch`). They are not part of state_dict(): a resumed run recomputes them at the next
epoch start, from the same weights and seed, so it gets the same ones.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mcl_ray.errors import ConfigError, DataError, TrainingError
from mcl_ray.objectives.base import ContrastiveMethod, check_groups
from mcl_ray.objectives.distributed import (
    _collective_device,
    gather_no_grad,
    gather_sizes,
    gather_with_grad,
    is_distributed,
)
from mcl_ray.objectives.simclr import nt_xent_logits

__all__ = ["SPCL", "pca_whiten", "prototype_labels", "siamese_metric_loss", "prototype_loss"]

EIGENVALUE_FLOOR = 1e-10  # components with variance below this fraction of the largest are dropped, not whitened


# ------------------------------------------------------------------------------------------ prototypes (numpy)


def pca_whiten(features: np.ndarray, dim: int) -> np.ndarray:
    """[N, d] float32: `features` [N, F] centred, projected on their top principal components and scaled to unit
    variance per component. d = min(dim, F, N - 1), less when components carry (numerically) no variance;
    computed in float64 (covariance eigendecomposition). d can be 0 when every row is identical."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"features: expected a non-empty [N, F] array, got shape {tuple(x.shape)}")
    if not np.isfinite(x).all():
        raise DataError("features: contain NaN or inf values (the encoder diverged?)")
    n, f = x.shape
    x = x - x.mean(axis=0, keepdims=True)
    values, vectors = np.linalg.eigh(x.T @ x / max(n - 1, 1))  # ascending
    order = np.argsort(values)[::-1][: max(min(dim, f, n - 1), 0)]
    top = values[order]
    order = order[top > EIGENVALUE_FLOOR * max(float(values.max()), np.finfo(np.float64).tiny)]
    return np.ascontiguousarray((x @ vectors[:, order]) / np.sqrt(values[order]), dtype=np.float32)


def prototype_labels(features: np.ndarray, k: int, pca_dim: int = 256, iterations: int = 20, seed: int = 0) -> np.ndarray:
    """Prototype id (int64, in 0..min(k, N)-1) of each of the N rows of `features` [N, F]: PCA-whitening to
    `pca_dim`, L2 normalisation and the project's faiss k-means (`mcl.clustering.kmeans`, k-means++ seeding)
    with min(k, N) clusters and `iterations` Lloyd iterations. Deterministic for a seed."""
    from mcl_ray.mcl.clustering import kmeans

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ConfigError(f"prototypes: must be an integer >= 2, got {k!r}")
    x = pca_whiten(features, pca_dim)
    n = x.shape[0]
    if n < 2 or x.shape[1] == 0:  # one row, or no variance at all: a single prototype
        return np.zeros(n, dtype=np.int64)
    return kmeans(x, min(int(k), n), seed=int(seed), niter=int(iterations), normalize=True).labels.astype(np.int64)


# ------------------------------------------------------------------------------------------------ loss terms


def _reduce(losses: Tensor, total: int | Tensor | None) -> Tensor:
    """Mean of `losses`, or with `total` (the global count, gathered batches) sum * world size / total, so the
    workers' values averaged (what DDP does to gradients) are the global mean."""
    if total is None:
        return losses.mean()
    return losses.sum() * (dist.get_world_size() / total)


def siamese_metric_loss(
    h1: Tensor,
    h2: Tensor,
    labels: Tensor,
    metric: Callable[[Tensor], Tensor],
    groups: Tensor | None = None,
    gather: bool = False,
    sizes: list[int] | None = None,
) -> Tensor:
    """SPCL's siamese metric term: mean binary cross-entropy of `metric(|h1[a] - h2[b]|)` ([P, F] -> [P] or [P, 1]
    logits) over the pairs described in the module docstring (own image -> 1, next same-prototype sample -> 1,
    next different-prototype sample -> 0; partners from the anchor's group only).

    h1, h2: [B, F] backbone features of two views; labels: [B] prototype ids. With `gather` on several workers
    the partners come from the global batch (h2 gathered with gradients) and the result is scaled like
    nt_xent_logits, so DDP's average equals one process's loss and gradient on the whole batch. `sizes`: every
    rank's batch size (gather_sizes), to skip that collective."""
    if h1.ndim != 2 or h1.shape != h2.shape:
        raise DataError(f"h1, h2: expected two [B, F] tensors of equal shape, got {tuple(h1.shape)} and {tuple(h2.shape)}")
    check_groups(labels, h1.shape[0], "labels")
    check_groups(groups, h1.shape[0])
    batch, device = h1.shape[0], h1.device
    h2_all, labels_all, groups_all, offset, distributed = h2, labels, groups, 0, gather and is_distributed()
    if distributed:
        sizes = gather_sizes(batch, device) if sizes is None else sizes
        offset = sum(sizes[: dist.get_rank()])
        h2_all = gather_with_grad(h2, sizes)
        labels_all = gather_no_grad(labels, sizes)
        groups_all = None if groups is None else gather_no_grad(groups, sizes)
    n = h2_all.shape[0]
    rows = torch.arange(batch, device=device)
    # steps forward (cyclically, in batch order) from each anchor to each sample; 0 = the anchor itself
    steps = (torch.arange(n, device=device)[None, :] - (offset + rows)[:, None]) % n
    same = labels[:, None] == labels_all[None, :]
    allowed = steps > 0
    if groups is not None:
        allowed &= groups[:, None] == groups_all[None, :]
    never = torch.full_like(steps, n)
    pos_steps, pos = torch.where(same & allowed, steps, never).min(dim=1)
    neg_steps, neg = torch.where(~same & allowed, steps, never).min(dim=1)
    has_pos, has_neg = pos_steps < n, neg_steps < n

    anchors = torch.cat([rows, rows[has_pos], rows[has_neg]])
    partners = torch.cat([h2, h2_all[pos[has_pos]], h2_all[neg[has_neg]]])
    logits = metric((h1[anchors] - partners).abs()).reshape(-1)
    dtype = torch.promote_types(logits.dtype, torch.float32)  # at least float32 under mixed precision
    targets = torch.cat([torch.ones(batch + int(has_pos.sum()), device=device, dtype=dtype),
                         torch.zeros(int(has_neg.sum()), device=device, dtype=dtype)])
    losses = F.binary_cross_entropy_with_logits(logits.to(dtype), targets, reduction="none")
    total = None
    if distributed:
        total = torch.tensor([losses.shape[0]], dtype=torch.int64, device=_collective_device())
        dist.all_reduce(total)
        total = int(total.item())
    return _reduce(losses, total)


def prototype_loss(logits: Tensor, labels: Tensor, gather: bool = False, sizes: list[int] | None = None) -> Tensor:
    """Cross-entropy of `logits` [M, K] to prototype ids `labels` [M]: their mean, or with `gather` on several
    workers scaled so that DDP's average is the global batch's mean (also for unequal local batches); `sizes`:
    every rank's row count M, to skip that collective."""
    if logits.ndim != 2:
        raise DataError(f"logits: expected [M, K], got shape {tuple(logits.shape)}")
    check_groups(labels, logits.shape[0], "labels")
    losses = F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), labels, reduction="none")
    total = None
    if gather and is_distributed():
        total = sum(gather_sizes(logits.shape[0], logits.device) if sizes is None else sizes)
    return _reduce(losses, total)


# ------------------------------------------------------------------------------------------------ the method


class SPCL(ContrastiveMethod):
    """SPCL around `encoder` (`encoder(x)` -> (h [B, F], z [B, D]); `encoder.feature_dim` = F)."""

    needs_indices = True  # forward(..., indices=) gets the batch's dataset indices: they pick the prototype ids
    needs_epoch_features = True  # begin_epoch(epoch, embed_train) clusters the training set every epoch

    def __init__(
        self,
        encoder: nn.Module,
        *,
        temperature: float,
        gather: bool = False,
        prototypes: int = 512,
        pca_dim: int = 256,
        kmeans_iterations: int = 20,
        instance_weight: float = 1.0,
        metric_weight: float = 1.0,
        prototype_weight: float = 1.0,
    ) -> None:
        super().__init__(encoder, temperature=temperature, gather=gather)
        feature_dim = getattr(encoder, "feature_dim", None)
        if not isinstance(feature_dim, int) or feature_dim < 1:
            raise ConfigError("spcl: the encoder must expose feature_dim (the backbone feature dimension)")
        for name, value in (("prototypes", prototypes), ("pca_dim", pca_dim), ("kmeans_iterations", kmeans_iterations)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (2 if name == "prototypes" else 1):
                raise ConfigError(f"objective.{name}: must be an integer >= {2 if name == 'prototypes' else 1}, got {value!r}")
        weights = (("instance_weight", instance_weight), ("metric_weight", metric_weight),
                   ("prototype_weight", prototype_weight))
        for name, value in weights:
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"objective.{name}: must be a finite number >= 0, got {value!r}")
        if not sum(v for _, v in weights) > 0:
            raise ConfigError("objective: instance_weight, metric_weight and prototype_weight are all 0")
        self.prototypes, self.pca_dim, self.kmeans_iterations = prototypes, pca_dim, kmeans_iterations
        self.instance_weight, self.metric_weight, self.prototype_weight = map(float, (w for _, w in weights))
        self.metric = nn.Linear(feature_dim, 1)
        self.classifier = nn.Linear(feature_dim, prototypes)  # rows >= the epoch's cluster count stay unused
        # per-epoch state, deliberately not in state_dict() (recomputed by begin_epoch, also after a resume)
        self.prototype_ids: Tensor | None = None  # [N] int64, the prototype of every training sample
        self.active_prototypes = 0  # min(prototypes, N): the classifier's live outputs this epoch

    @torch.no_grad()
    def begin_epoch(self, epoch: int, embed_train: Callable[[], object], *, seed: int = 0) -> list[nn.Parameter]:
        """Cluster the training set's backbone features into prototypes, once for all workers (rank 0 computes,
        then broadcasts), and re-initialise the classifier identically on every rank. Returns the re-initialised
        parameters, whose optimizer state the trainer drops."""
        kmeans_seed = (int(seed) * 1009 + int(epoch)) % (2**31 - 1)
        distributed = is_distributed()
        if not distributed or dist.get_rank() == 0:
            features = embed_train()
            features = features.detach().float().cpu().numpy() if isinstance(features, Tensor) else np.asarray(features)
            labels = torch.from_numpy(prototype_labels(features, self.prototypes, self.pca_dim,
                                                       self.kmeans_iterations, kmeans_seed))
            header = torch.tensor([labels.shape[0], min(self.prototypes, max(labels.shape[0], 1))], dtype=torch.int64)
        if distributed:
            device = _collective_device()
            header = header.to(device) if dist.get_rank() == 0 else torch.zeros(2, dtype=torch.int64, device=device)
            dist.broadcast(header, src=0)
            labels = labels.to(device) if dist.get_rank() == 0 else torch.empty(int(header[0]), dtype=torch.int64, device=device)
            dist.broadcast(labels, src=0)
        weight = self.classifier.weight
        self.prototype_ids = labels.to(weight.device)
        self.active_prototypes = int(header[1])
        # nn.Linear's default init from a generator seeded by (seed, epoch): identical on every rank (DDP only
        # synchronised the parameters once) and the global RNG, which drives augmentation, is left alone
        generator = torch.Generator().manual_seed(kmeans_seed)
        bound = 1.0 / math.sqrt(weight.shape[1])
        for param in (self.classifier.weight, self.classifier.bias):
            param.copy_(torch.empty(param.shape, dtype=param.dtype).uniform_(-bound, bound, generator=generator))
        return [self.classifier.weight, self.classifier.bias]

    def forward(self, view1: Tensor, view2: Tensor, groups: Tensor | None = None,
                indices: Tensor | None = None) -> dict[str, Tensor]:
        if indices is None:
            raise DataError("spcl: forward() needs indices= (the batch's dataset indices) to look up prototypes")
        if self.prototype_ids is None:
            raise TrainingError("spcl: no prototypes yet; call begin_epoch() at the start of every epoch")
        check_groups(indices, view1.shape[0], "indices")
        labels = self.prototype_ids[indices.to(self.prototype_ids.device)].to(view1.device)
        h1, z1 = self.encoder(view1)
        h2, z2 = self.encoder(view2)
        instance = nt_xent_logits(z1, z2, self.temperature, groups, gather=self.gather)
        instance_loss = instance.loss()
        sizes = gather_sizes(h1.shape[0], h1.device) if self.gather and is_distributed() else None  # one exchange
        metric_loss = siamese_metric_loss(h1, h2, labels, self.metric, groups, gather=self.gather, sizes=sizes)
        class_logits = self.classifier(torch.cat([h1, h2]))[:, : self.active_prototypes]
        proto_loss = prototype_loss(class_logits, torch.cat([labels, labels]), gather=self.gather,
                                    sizes=None if sizes is None else [2 * n for n in sizes])
        loss = (self.instance_weight * instance_loss + self.metric_weight * metric_loss
                + self.prototype_weight * proto_loss)
        return {"loss": loss, "projections": (z1, z2), "logits": (instance,), "instance": instance_loss.detach(),
                "metric": metric_loss.detach(), "prototype": proto_loss.detach()}

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, prototypes={self.prototypes}, pca_dim={self.pca_dim}, "
                f"kmeans_iterations={self.kmeans_iterations}, weights=(instance {self.instance_weight}, "
                f"metric {self.metric_weight}, prototype {self.prototype_weight})")

