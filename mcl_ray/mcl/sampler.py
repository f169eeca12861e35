"""Feature-aware negative sampling for MCL as a distributed batch sampler.

In MCL stage s+1 an anchor's negatives may come only from its own *group* (the intersection of all earlier
stages' clusters). The official MCL code gets this purely by batch construction: every global batch (the
union of all ranks' local batches) is drawn from one group. It silently drops groups smaller than a global
batch and trims every group to a multiple of it. mcl-ray drops nothing; the rest of the exactness comes from
the mask-driven loss, which receives each sample's group id and removes cross-group pairs from the negatives.

Batch plan of one epoch (user-facing policy; a numpy Generator seeded with ``(seed, epoch)`` draws it):

1. ``groups=None`` means stage 1: one group holding all ``num_samples`` items, i.e. ordinary shuffled batches.
2. Each group's indices are shuffled and cut into full global batches. These *pure* batches hold one group,
   exactly as in the official code.
3. The remainders (each smaller than one global batch) are not dropped. They are concatenated group by group
   (groups in a random order, each remainder kept contiguous) and cut into global batches too. These *mixed*
   batches hold several small groups; the mask-driven loss keeps every anchor's negatives inside its own
   group, so such an anchor simply sees fewer negatives.
4. A final short batch smaller than ``2 * world_size`` samples is merged into an earlier batch, so every rank
   gets at least 2 samples (BatchNorm needs 2). If that tail comes from a single group that owns a pure batch,
   it joins that group's last pure batch, which stays pure; otherwise it joins the batch built just before it.
   Global batches therefore hold between ``2 * world_size`` and ``global_batch_size + 2 * world_size - 1``
   samples (fewer than ``global_batch_size`` only when the whole data set is smaller than one batch, or for
   the one last mixed batch).
5. The order of all global batches is shuffled. Every sample is visited exactly once per epoch.

Rank r takes the strided slice ``batch[r::world_size]`` of each global batch: local sizes differ by at most
1, every rank has the same number of steps, and at step t all ranks work on the same global batch. Strided,
not contiguous: a mixed batch holds its groups one after another, so contiguous slices would hand each rank
fewer groups the more ranks there are, and each rank's BatchNorm statistics (hence the trained model) would
depend on the number of workers. The plan depends only on ``(seed, epoch)`` and the group ids, so all ranks
compute it identically without communication. With ``shuffle=False`` nothing is randomised: groups in
ascending id order, remainders in ascending id order, batches in construction order.

Use it as ``DataLoader(dataset, batch_sampler=sampler)`` and call ``sampler.set_epoch(epoch)`` before each
epoch. It already shards the data across ranks: do not add a ``DistributedSampler`` on top.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch.utils.data

from mcl_ray.errors import ConfigError

_MIN_PER_RANK = 2  # BatchNorm in train mode needs at least 2 samples per rank.


def _require_int(name: str, value: Any) -> int:
    """Accept Python/numpy integers only (not bools, not floats) so typos surface early."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    return int(value)


def _as_group_codes(groups: np.ndarray | Sequence[int]) -> np.ndarray:
    """Validate group ids and map them to dense codes 0..G-1 (ids are sparse mixed-radix numbers)."""
    try:
        array = np.asarray(groups)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"groups must be a 1-D array of non-negative integers: {exc}") from exc
    if array.ndim != 1:
        raise ConfigError(f"groups must be 1-D (one group id per sample), got shape {array.shape}")
    if array.size == 0:
        raise ConfigError("groups is empty: the data set has no samples")
    if array.dtype.kind not in "iu":
        raise ConfigError(f"groups must hold integer group ids, got dtype {array.dtype}")
    negative = np.flatnonzero(array < 0)
    if negative.size:
        first = int(negative[0])
        raise ConfigError(
            f"groups must be non-negative, got groups[{first}] = {int(array[first])} "
            f"({negative.size} negative ids)"
        )
    _, codes = np.unique(array, return_inverse=True)
    return codes.astype(np.int64, copy=False)


class GroupBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yield this rank's slice of global batches that keep MCL groups together without dropping data.

    See the module docstring for the exact batching policy.
    """

    def __init__(
        self,
        groups: np.ndarray | Sequence[int] | None,
        *,
        num_samples: int | None = None,
        global_batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        super().__init__()
        world_size = _require_int("world_size", world_size)
        rank = _require_int("rank", rank)
        global_batch_size = _require_int("global_batch_size", global_batch_size)
        seed = _require_int("seed", seed)
        if world_size < 1:
            raise ConfigError(f"world_size must be >= 1, got {world_size}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank must satisfy 0 <= rank < world_size={world_size}, got rank={rank}")
        min_batch = _MIN_PER_RANK * world_size
        if global_batch_size < min_batch:
            raise ConfigError(
                f"global_batch_size={global_batch_size} is too small for {world_size} workers: every worker "
                f"needs >= {_MIN_PER_RANK} samples per step (BatchNorm), so use global_batch_size >= {min_batch}"
            )
        if seed < 0:
            raise ConfigError(f"seed must be >= 0, got {seed}")

        if groups is None:
            if num_samples is None:
                raise ConfigError("num_samples is required when groups is None (stage 1: one group)")
            num_samples = _require_int("num_samples", num_samples)
            if num_samples <= 0:
                raise ConfigError(f"num_samples must be > 0, got {num_samples}")
            codes = np.zeros(num_samples, dtype=np.int64)
        else:
            codes = _as_group_codes(groups)
            if num_samples is not None and _require_int("num_samples", num_samples) != codes.size:
                raise ConfigError(
                    f"num_samples={num_samples} does not match len(groups)={codes.size}; pass one or make them agree"
                )
        if codes.size < min_batch:
            raise ConfigError(
                f"the data set has {codes.size} samples, too few for {world_size} workers: "
                f"need at least {min_batch} (>= {_MIN_PER_RANK} per worker)"
            )

        self.global_batch_size = global_batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = bool(shuffle)
        self.epoch = 0
        self.group_codes = codes  # dense group code per sample, 0..num_groups-1
        self.group_sizes = np.bincount(codes)
        self._num_batches = self._count_batches()

    @property
    def num_samples(self) -> int:
        return int(self.group_codes.size)

    @property
    def num_groups(self) -> int:
        return int(self.group_sizes.size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose plan ``__iter__`` yields (each epoch gets a different shuffle)."""
        self.epoch = self._check_epoch(epoch)

    def __len__(self) -> int:
        return self._num_batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches(self.epoch):
            yield batch[self.rank :: self.world_size].tolist()

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        """The whole epoch's plan: every global batch (all ranks together), in step order."""
        rng = np.random.default_rng([self.seed, self._check_epoch(epoch)])
        codes, sizes, batch = self.group_codes, self.group_sizes, self.global_batch_size

        # All samples sorted by group; within a group in random order (or index order without shuffle).
        if self.shuffle:
            order = np.lexsort((rng.permutation(codes.size), codes))
        else:
            order = np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        group_starts = np.cumsum(sizes) - sizes
        position_in_group = np.arange(codes.size) - group_starts[sorted_codes]
        full_batches_per_group = sizes // batch
        in_pure = position_in_group < (full_batches_per_group * batch)[sorted_codes]

        # Each group's pure part is a multiple of `batch` long, so a plain reshape gives single-group rows.
        pure = list(order[in_pure].reshape(-1, batch))

        remainder = order[~in_pure]
        if self.shuffle:
            group_rank = rng.permutation(self.num_groups)
            remainder = remainder[np.argsort(group_rank[codes[remainder]], kind="stable")]
        mixed = [remainder[start : start + batch] for start in range(0, remainder.size, batch)]

        batches = pure + mixed
        if len(batches) > 1 and batches[-1].size < _MIN_PER_RANK * self.world_size:
            tail = batches.pop()
            tail_groups = np.unique(codes[tail])
            target = len(batches) - 1
            if tail_groups.size == 1 and full_batches_per_group[tail_groups[0]] > 0:
                target = int(np.cumsum(full_batches_per_group)[tail_groups[0]]) - 1  # its last pure batch
            batches[target] = np.concatenate([batches[target], tail])

        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _count_batches(self) -> int:
        """Number of global batches, which depends only on the group sizes (not on the epoch)."""
        batch = self.global_batch_size
        pure = int((self.group_sizes // batch).sum())
        leftover = int((self.group_sizes % batch).sum())
        mixed = -(-leftover // batch)
        short_tail = leftover % batch
        if pure + mixed > 1 and 0 < short_tail < _MIN_PER_RANK * self.world_size:
            mixed -= 1
        return pure + mixed

    @staticmethod
    def _check_epoch(epoch: int) -> int:
        epoch = _require_int("epoch", epoch)
        if epoch < 0:
            raise ConfigError(f"epoch must be >= 0, got {epoch}")
        return epoch


FEW_NEGATIVES = 10


def plan_summary(sampler: GroupBatchSampler, epoch: int, loss_groups: np.ndarray | None = None) -> dict[str, int | float]:
    """Counts describing one epoch's plan, for logging how much of it mixed several groups.

    A batch is *mixed* when it holds more than one group: its anchors still only see own-group negatives
    (the loss masks the others out) but fewer of them than in a pure batch. `few_negatives_fraction` is the
    fraction of anchors with fewer than 10 in-batch negatives (two views of every same-group sample in the
    global batch, minus the anchor and its positive). loss_groups: the groups the loss masks with, when the
    sampler batches without them (random batches + group mask); default: the sampler's own groups.
    """
    batches = sampler.global_batches(epoch)
    mask_groups = sampler.group_codes if loss_groups is None else np.asarray(loss_groups)
    few = 0
    for batch in batches:
        _, inverse, counts = np.unique(mask_groups[batch], return_inverse=True, return_counts=True)
        few += int((2 * counts[inverse] - 2 < FEW_NEGATIVES).sum())
    groups_per_batch = [np.unique(mask_groups[batch]).size for batch in batches]
    sizes = [batch.size for batch in batches]
    mixed_sizes = [size for size, n_groups in zip(sizes, groups_per_batch) if n_groups > 1]
    samples_in_mixed = int(sum(mixed_sizes))
    return {
        "num_samples": sampler.num_samples,
        "num_groups": int(np.unique(mask_groups).size),  # the loss's groups (random batches: not the sampler's 1)
        "num_batches": len(batches),
        "pure_batches": len(batches) - len(mixed_sizes),
        "mixed_batches": len(mixed_sizes),
        "samples_in_mixed_batches": samples_in_mixed,
        "mixed_sample_fraction": samples_in_mixed / sampler.num_samples,
        "min_global_batch_size": int(min(sizes)),
        "max_global_batch_size": int(max(sizes)),
        "few_negatives_fraction": few / sampler.num_samples,
    }
