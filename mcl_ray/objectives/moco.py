"""MoCo v2 with MCL's group mask on the key queue.

Negatives come from a queue of keys produced by a slowly moving (EMA) copy of the encoder. Each queued key
keeps the group label of its sample, so under MCL an anchor only contrasts with queued keys of its own
group; slots not yet written carry group -1 and are never negatives.

Per-group queues (MCL stages): MCL's batches come one group at a time, so a single shared queue of Q keys
holds only the last Q / B batches' groups, and the mask removes all of them for an anchor of any other group
(simulated with the official sampler and Q = 4096: 17% of anchors in a 10-group stage, 79% in a 100-group
one, had no valid negative at all). With
`per_group_queue` the queue is split evenly among the stage's groups, each group a ring of Q // G slots that
only its own keys overwrite, so once a group has been seen its anchors always have up to Q // G same-group
negatives. Stage 1 (one group) is plain MoCo either way; so is a stage whose rings would hold fewer than
MIN_RING keys (a warning says so).

Choice: the loss is symmetric by default (q1 against k2 and q2 against k1, averaged, as in MoCo v3 /
solo-learn's MoCo v2+); `symmetric=False` is MoCo v2 as published (q1 against k2 only): one query and one
key forward per step instead of two each, so a step costs about half as much, and the symmetric form's
extra key forwards put a floor of about 4/3 on its cost relative to SimCLR (which runs no key encoder). The
asymmetric form exposes no projections (view 2 never passes through the query encoder), so DimCL cannot be
mixed into it (a config error). One key per image goes into the queue (view 2's), so a queue of Q keys
covers Q images rather than Q / 2. No shuffle-BN (as in solo-learn).
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mcl_ray.errors import ConfigError, DataError
from mcl_ray.objectives.base import ContrastiveMethod, Logits, check_groups, check_temperature
from mcl_ray.objectives.distributed import gather_no_grad, gather_sizes, is_distributed

log = logging.getLogger("mcl_ray")
MIN_RING = 8  # fewer keys per group than this: a shared queue serves the stage better


def moco_infonce_loss(
    q: Tensor,
    k: Tensor,
    queue: Tensor,
    temperature: float,
    groups: Tensor | None = None,
    queue_groups: Tensor | None = None,
) -> Tensor:
    """The loss of `moco_logits` (see there)."""
    return moco_logits(q, k, queue, temperature, groups, queue_groups).loss()


def moco_logits(
    q: Tensor,
    k: Tensor,
    queue: Tensor,
    temperature: float,
    groups: Tensor | None = None,
    queue_groups: Tensor | None = None,
    scale: float = 1.0,
) -> Logits:
    """Mean InfoNCE (times `scale`) of queries q [B, D] with positives k [B, D] (both L2-normalised here, k detached) and
    negatives queue [Q, D] (already normalised): logits [q.k, q.queue^T] / T with the positive at index 0.

    queue_groups [Q]: label of each queued key, -1 for unfilled slots (always masked). With `groups` [B],
    queued keys of another group are masked too. An anchor with no valid negatives has loss 0.
    """
    if q.ndim != 2 or q.shape != k.shape:
        raise DataError(f"q, k: expected two [B, D] tensors of equal shape, got {tuple(q.shape)} and {tuple(k.shape)}")
    if queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise DataError(f"queue: expected shape (Q, {q.shape[1]}), got {tuple(queue.shape)}")
    check_temperature(temperature)
    check_groups(groups, q.shape[0])
    check_groups(queue_groups, queue.shape[0], "queue_groups")
    if groups is not None and queue_groups is None:
        raise DataError("queue_groups: required when groups is given (the group of every queued key)")
    dtype = torch.promote_types(q.dtype, torch.float32)
    q = F.normalize(q.to(dtype), dim=1)
    k = F.normalize(k.detach().to(dtype), dim=1)
    positives = (q * k).sum(dim=1, keepdim=True) / temperature
    negatives = q @ queue.detach().to(dtype).T / temperature
    if queue_groups is not None:
        valid = (queue_groups >= 0)[None, :]
        if groups is not None:
            valid = valid & (groups[:, None] == queue_groups[None, :])
        negatives = negatives.masked_fill(~valid, float("-inf"))
    logits = torch.cat([positives, negatives], dim=1)
    reduce = (lambda losses: losses.mean()) if scale == 1.0 else (lambda losses: losses.mean() * scale)
    return Logits(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device), temperature, reduce)


class MoCo(ContrastiveMethod):
    """MoCo v2: query encoder trained by SGD, key encoder an EMA of it, negatives from a key queue.

    The momentum encoder has requires_grad False, so DDP (wrapping this module) and optimizers ignore it;
    the queue, its group labels and the write pointer are buffers, so they move with .to() and checkpoint
    with state_dict(). `proj_dim` (key size) defaults to `encoder.proj_dim`.
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        temperature: float,
        gather: bool = False,
        momentum: float = 0.99,
        queue_size: int = 4096,
        proj_dim: int | None = None,
        per_group_queue: bool = True,
        symmetric: bool = True,
    ) -> None:
        super().__init__(encoder, temperature=temperature, gather=gather)
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"objective.momentum: must be in [0, 1), got {momentum}")
        if queue_size < 1:
            raise ConfigError(f"objective.queue_size: must be >= 1, got {queue_size}")
        dim = proj_dim if proj_dim is not None else getattr(encoder, "proj_dim", None)
        if not isinstance(dim, int) or dim < 1:
            raise ConfigError(
                f"objective.proj_dim: needed to size the MoCo queue; the encoder has no integer `proj_dim` "
                f"attribute (got {dim!r}), pass proj_dim"
            )
        self.momentum = float(momentum)
        self.queue_size = int(queue_size)
        self.per_group_queue = bool(per_group_queue)
        self.symmetric = bool(symmetric)
        self.momentum_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.register_buffer("queue", torch.zeros(queue_size, dim))
        self.register_buffer("queue_groups", torch.full((queue_size,), -1, dtype=torch.int64))
        # One ring per group: segment g is slots [g * S, (g + 1) * S) with its own write pointer; the stage's
        # sorted group ids map a key's group to its segment. One segment (stage 1, or per_group_queue off) is
        # the ordinary shared queue.
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.int64))
        self.register_buffer("segment_ids", torch.zeros(0, dtype=torch.int64))

    def set_stage_groups(self, group_ids) -> None:
        """Size the per-group rings for this stage's groups (sorted unique ids; None: stage 1, one ring)."""
        if not self.per_group_queue or group_ids is None or len(group_ids) <= 1:
            return
        ids = torch.as_tensor(group_ids, dtype=torch.int64).unique()
        if self.queue_size // len(ids) < MIN_RING:
            log.warning("MoCo: %d groups leave rings of %d keys in a queue of %d, fewer than %d; this stage uses one "
                        "shared queue (raise objective.queue_size for per-group rings)",
                        len(ids), self.queue_size // len(ids), self.queue_size, MIN_RING)
            return
        device = self.queue.device
        self.segment_ids = ids.to(device)
        self.queue_ptr = torch.zeros(len(ids), dtype=torch.int64, device=device)
        self.queue_groups.fill_(-1)

    @property
    def segment_size(self) -> int:
        return self.queue_size // max(len(self.segment_ids), 1)

    def forward(self, view1: Tensor, view2: Tensor, groups: Tensor | None = None) -> dict[str, Tensor]:
        check_groups(groups, view1.shape[0])
        if groups is not None and bool((groups < 0).any()):
            raise DataError("groups: labels must be >= 0 (-1 marks unfilled queue slots)")
        _, q1 = self.encoder(view1)
        q2 = self.encoder(view2)[1] if self.symmetric else None
        with torch.no_grad():
            k1 = self.momentum_encoder(view1)[1] if self.symmetric else None
            _, k2 = self.momentum_encoder(view2)
        # Clones: the enqueue below writes the buffers in place, but backward still needs this step's queue.
        queue, queue_groups = self.queue.clone(), self.queue_groups.clone()
        sizes, scale = None, 1.0
        if self.gather and is_distributed():  # DDP averages the workers: weight each by its share of the batch
            sizes = gather_sizes(view1.shape[0], view1.device)
            scale = view1.shape[0] * len(sizes) / sum(sizes)
        logits = (moco_logits(q1, k2, queue, self.temperature, groups, queue_groups, scale),)
        if self.symmetric:
            logits += (moco_logits(q2, k1, queue, self.temperature, groups, queue_groups, scale),)
        loss = sum(part.loss() for part in logits) / len(logits)
        if self.training:
            keys = F.normalize(k2.float(), dim=1)
            if groups is None:
                key_groups = torch.zeros(keys.shape[0], dtype=torch.int64, device=keys.device)
            else:
                key_groups = groups.to(torch.int64)
            if sizes is not None:
                keys, key_groups = gather_no_grad(keys, sizes), gather_no_grad(key_groups, sizes)
            self.enqueue(keys, key_groups)
        out = {"loss": loss, "logits": logits}
        if self.symmetric:
            out["projections"] = (q1, q2)
        return out

    @torch.no_grad()
    def enqueue(self, keys: Tensor, key_groups: Tensor) -> None:
        """Write keys [N, D] (normalised) and their groups [N] into their group's ring at its pointer, in
        batch order, wrapping around; when a group brings more keys than its ring holds, its last ones are kept.
        Without per-group rings this is the ordinary shared queue."""
        key_groups = key_groups.to(device=self.queue.device, dtype=torch.int64)
        keys = keys.to(device=self.queue.device, dtype=self.queue.dtype)
        size = self.segment_size
        if len(self.segment_ids) == 0:
            segment = torch.zeros_like(key_groups)
        else:
            segment = torch.searchsorted(self.segment_ids, key_groups).clamp_max(len(self.segment_ids) - 1)
            unknown = self.segment_ids[segment] != key_groups
            if bool(unknown.any()):
                raise DataError(f"groups: key of group {int(key_groups[unknown][0])}, not one of this stage's groups")
        # position of each key among its group's keys in this batch (stable), and how many its group brought
        order = torch.sort(segment, stable=True).indices
        counts = torch.bincount(segment, minlength=len(self.queue_ptr))
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.empty_like(segment)
        rank[order] = torch.arange(len(segment), device=segment.device) - starts[segment[order]]
        skipped = (counts - size).clamp_min(0)  # overwritten within this batch anyway: keep the last `size`
        keep = rank >= skipped[segment]
        offset = rank - skipped[segment]
        slots = segment * size + (self.queue_ptr[segment] + offset) % size
        self.queue.index_copy_(0, slots[keep], keys[keep])
        self.queue_groups.index_copy_(0, slots[keep], key_groups[keep])
        self.queue_ptr.copy_((self.queue_ptr + counts.clamp_max(size)) % size)

    @torch.no_grad()
    def after_step(self) -> None:
        """EMA: momentum_param <- m * momentum_param + (1 - m) * param (buffers such as BN running stats
        are kept by the momentum encoder's own forward passes)."""
        targets = list(self.momentum_encoder.parameters())
        torch._foreach_lerp_(targets, [p.detach() for p in self.encoder.parameters()], 1.0 - self.momentum)  # one call

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, momentum={self.momentum}, queue_size={self.queue_size}, "
                f"per_group_queue={self.per_group_queue}, symmetric={self.symmetric}")
