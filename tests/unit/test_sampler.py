"""GroupBatchSampler: no sample dropped, pure batches stay single-group, ranks stay in step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mcl_ray.errors import ConfigError
from mcl_ray.mcl.sampler import GroupBatchSampler, plan_summary


def _random_groups(rng: np.random.Generator, batch: int) -> np.ndarray:
    """One group-id array from a family of size distributions, with sparse (mixed-radix-like) ids."""
    kind = rng.integers(6)
    if kind == 0:  # all singletons
        sizes = np.ones(rng.integers(4, 40), dtype=int)
    elif kind == 1:  # one huge group plus a few small ones
        sizes = np.concatenate([[rng.integers(3 * batch, 8 * batch)], rng.integers(1, batch, rng.integers(0, 5))])
    elif kind == 2:  # every group smaller than one batch
        sizes = rng.integers(1, batch, rng.integers(1, 12))
    elif kind == 3:  # heavy-tailed sizes
        sizes = rng.geometric(1 / (2 * batch), rng.integers(1, 10))
    elif kind == 4:  # single group, N not divisible by the batch
        sizes = np.array([rng.integers(1, 6 * batch)])
    else:  # anything between 1 and 3 batches
        sizes = rng.integers(1, 3 * batch, rng.integers(1, 10))
    ids = rng.choice(10_000, size=sizes.size, replace=False) * 7 + 3
    groups = np.repeat(ids, sizes)
    return groups[rng.permutation(groups.size)]  # group members are not contiguous in the data set


def _random_cases(count: int, seed: int = 1234):
    """(groups, global_batch_size, world_size) triples that pass validation."""
    rng = np.random.default_rng(seed)
    produced = 0
    while produced < count:
        world_size = int(rng.integers(1, 5))
        batch = int(rng.integers(2 * world_size, 3 * world_size + 20))
        groups = _random_groups(rng, batch)
        if groups.size < 2 * world_size:
            continue
        produced += 1
        yield groups, batch, world_size


def _reference_unshuffled_plan(groups: np.ndarray, batch: int, world_size: int) -> list[list[int]]:
    """The documented policy written as plain loops (no shuffling: ascending ids, index order)."""
    pure: list[list[int]] = []
    pure_owner: list[int] = []
    remainder: list[int] = []
    for group in sorted(set(groups.tolist())):
        members = [i for i, g in enumerate(groups.tolist()) if g == group]
        n_full = len(members) // batch * batch
        for start in range(0, n_full, batch):
            pure.append(members[start : start + batch])
            pure_owner.append(group)
        remainder.extend(members[n_full:])
    batches = pure + [remainder[start : start + batch] for start in range(0, len(remainder), batch)]
    if len(batches) > 1 and len(batches[-1]) < 2 * world_size:
        tail = batches.pop()
        tail_groups = {int(groups[i]) for i in tail}
        target = len(batches) - 1
        if len(tail_groups) == 1 and tail_groups & set(pure_owner):
            target = max(k for k, owner in enumerate(pure_owner) if owner in tail_groups)
        batches[target] = batches[target] + tail
    return batches


def _rank_steps(groups, batch: int, world_size: int, epoch: int, seed: int = 0) -> list[list[list[int]]]:
    """What each rank's sampler yields in one epoch."""
    steps = []
    for rank in range(world_size):
        sampler = GroupBatchSampler(groups, global_batch_size=batch, rank=rank, world_size=world_size, seed=seed)
        sampler.set_epoch(epoch)
        steps.append(list(sampler))
    return steps


def test_every_sample_visited_exactly_once_per_epoch():
    for groups, batch, world_size in _random_cases(150):
        for rank_steps in [_rank_steps(groups, batch, world_size, epoch=e) for e in (0, 3)]:
            seen = np.concatenate([np.asarray(step, dtype=int) for steps in rank_steps for step in steps])
            np.testing.assert_array_equal(np.sort(seen), np.arange(groups.size))


def test_unshuffled_plan_matches_reference_policy():
    for groups, batch, world_size in _random_cases(150, seed=99):
        sampler = GroupBatchSampler(groups, global_batch_size=batch, world_size=world_size, shuffle=False)
        plan = [b.tolist() for b in sampler.global_batches(0)]
        assert plan == _reference_unshuffled_plan(groups, batch, world_size)
        assert len(sampler) == len(plan)


def test_pure_batches_single_group_and_mixed_batches_hold_only_remainders():
    for groups, batch, world_size in _random_cases(150, seed=7):
        sampler = GroupBatchSampler(groups, global_batch_size=batch, world_size=world_size, seed=5)
        plan = sampler.global_batches(2)
        ids, sizes = np.unique(groups, return_counts=True)
        # A group's samples outside its own full single-group batches are its remainder (< one batch).
        # The one exception: a short multi-group tail merged into another group's pure batch turns that batch
        # mixed, so exactly one full batch of that group moves to the "outside" count.
        pure_count = {g: 0 for g in ids.tolist()}
        for b in plan:
            members = np.unique(groups[b])
            if members.size == 1 and b.size >= batch:
                pure_count[int(members[0])] += b.size
        outside = {g: int(n) - pure_count[g] for g, n in zip(ids.tolist(), sizes)}
        excess = [g for g, n in outside.items() if n >= batch]
        assert len(excess) <= 1
        for g in excess:
            assert outside[g] < 2 * batch
        expected_pure = int((sizes // batch).sum())
        n_pure = sum(1 for b in plan if np.unique(groups[b]).size == 1 and b.size >= batch)
        assert expected_pure - len(excess) <= n_pure <= expected_pure
        # Each remainder is kept contiguous, so it spreads over at most two batches that are not its own pure ones.
        for g in ids.tolist():
            holders = [b for b in plan if np.any(groups[b] == g) and not np.all(groups[b] == g)]
            assert len(holders) <= (3 if g in excess else 2)


def test_ranks_share_steps_and_get_near_equal_slices():
    for groups, batch, world_size in _random_cases(120, seed=3):
        epoch = 4
        rank_steps = _rank_steps(groups, batch, world_size, epoch=epoch, seed=11)
        plan = GroupBatchSampler(groups, global_batch_size=batch, world_size=world_size, seed=11).global_batches(epoch)
        assert {len(steps) for steps in rank_steps} == {len(plan)}
        for t, global_batch in enumerate(plan):
            local = [steps[t] for steps in rank_steps]
            assert [local[r] for r in range(world_size)] == [global_batch[r::world_size].tolist() for r in range(world_size)]
            lengths = [len(x) for x in local]
            assert max(lengths) - min(lengths) <= 1
            assert min(lengths) >= 2


def test_global_batch_sizes_stay_within_documented_bounds():
    for groups, batch, world_size in _random_cases(150, seed=21):
        sampler = GroupBatchSampler(groups, global_batch_size=batch, world_size=world_size)
        sizes = [b.size for b in sampler.global_batches(1)]
        assert min(sizes) >= 2 * world_size
        assert max(sizes) <= batch + 2 * world_size - 1
        assert sum(size < batch for size in sizes) <= 1


def test_len_is_the_same_for_every_epoch_and_rank():
    for groups, batch, world_size in _random_cases(60, seed=8):
        samplers = [
            GroupBatchSampler(groups, global_batch_size=batch, rank=r, world_size=world_size) for r in range(world_size)
        ]
        assert {len(s) for s in samplers} == {len(samplers[0].global_batches(e)) for e in range(3)}


def test_order_depends_on_seed_and_epoch_only():
    groups = np.random.default_rng(0).integers(0, 6, 200)
    def plan(seed: int, epoch: int) -> list[list[int]]:
        return [b.tolist() for b in GroupBatchSampler(groups, global_batch_size=16, seed=seed).global_batches(epoch)]
    assert plan(0, 0) == plan(0, 0)
    assert plan(0, 0) != plan(0, 1)
    assert plan(0, 0) != plan(1, 0)
    assert plan(0, 5) == plan(0, 5)


def test_set_epoch_selects_the_epoch_plan():
    groups = np.random.default_rng(1).integers(0, 4, 100)
    sampler = GroupBatchSampler(groups, global_batch_size=10, rank=1, world_size=2, seed=3)
    first = list(sampler)
    assert first == [b[1::2].tolist() for b in sampler.global_batches(0)]
    sampler.set_epoch(3)
    third = list(sampler)
    assert third == [b[1::2].tolist() for b in sampler.global_batches(3)]
    assert third != first
    assert list(sampler) == third  # iterating again repeats the epoch until set_epoch is called


def test_unshuffled_sampler_is_fixed_across_epochs():
    groups = [2, 0, 2, 0, 1, 1, 2, 0]
    sampler = GroupBatchSampler(groups, global_batch_size=2, shuffle=False)
    assert [b.tolist() for b in sampler.global_batches(0)] == [[1, 3], [4, 5], [0, 2], [7, 6]]
    assert [b.tolist() for b in sampler.global_batches(7)] == [b.tolist() for b in sampler.global_batches(0)]


def test_stage_one_without_groups_gives_ordinary_shuffled_batches():
    sampler = GroupBatchSampler(None, num_samples=9, global_batch_size=4, seed=2)
    plan = sampler.global_batches(0)
    assert sorted(b.size for b in plan) == [4, 5]  # the 1-sample tail joins a batch (BatchNorm needs 2)
    np.testing.assert_array_equal(np.sort(np.concatenate(plan)), np.arange(9))
    assert np.concatenate(plan).tolist() != list(range(9))
    as_one_group = GroupBatchSampler(np.full(9, 4), global_batch_size=4, seed=2).global_batches(0)
    assert [b.tolist() for b in plan] == [b.tolist() for b in as_one_group]
    assert plan_summary(sampler, 0)["mixed_batches"] == 0


def test_divisible_groups_give_only_pure_batches():
    batch = 8
    groups = np.repeat([10, 31, 52, 73], [batch, 3 * batch, 2 * batch, batch])
    groups = groups[np.random.default_rng(0).permutation(groups.size)]
    sampler = GroupBatchSampler(groups, global_batch_size=batch, world_size=2, seed=4)
    for epoch in range(3):
        plan = sampler.global_batches(epoch)
        assert len(plan) == 7
        assert all(b.size == batch and np.unique(groups[b]).size == 1 for b in plan)
        summary = plan_summary(sampler, epoch)
        assert summary["pure_batches"] == 7 and summary["mixed_batches"] == 0
        assert summary["mixed_sample_fraction"] == 0.0


def test_small_groups_are_kept_not_dropped():
    # The official sampler would drop groups 1 and 2 (each smaller than one global batch) entirely.
    groups = np.repeat([0, 1, 2], [8, 3, 2])
    sampler = GroupBatchSampler(groups, global_batch_size=4)
    for epoch in range(5):
        summary = plan_summary(sampler, epoch)
        assert summary == {
            "num_samples": 13, "num_groups": 3, "num_batches": 3, "pure_batches": 2, "mixed_batches": 1,
            "samples_in_mixed_batches": 5, "mixed_sample_fraction": 5 / 13,
            "min_global_batch_size": 4, "max_global_batch_size": 5,
            "few_negatives_fraction": 1.0,  # batches of 4-5: at most 8 in-batch negatives per anchor
        }


def test_short_tail_joins_own_pure_batch_when_possible_else_previous_batch():
    # Tail from one group that owns a pure batch: that batch absorbs it and stays pure.
    own = np.repeat([0, 1], [9, 4])  # B=4, ws=1: remainders are group 0's single sample
    plans = [GroupBatchSampler(own, global_batch_size=4, seed=s).global_batches(0) for s in range(5)]
    for plan in plans:
        assert sorted(b.size for b in plan) == [4, 4, 5]
        assert all(np.unique(own[b]).size == 1 for b in plan)
    # Tail of two groups (3 < 2 * world_size samples) with no full mixed batch: it joins a pure batch, now mixed.
    foreign = np.repeat([0, 1, 2], [8, 1, 2])
    sampler = GroupBatchSampler(foreign, global_batch_size=4, world_size=2, seed=0)
    plan = sampler.global_batches(0)
    assert sorted(b.size for b in plan) == [4, 7]
    merged = next(b for b in plan if b.size == 7)
    assert sorted(foreign[merged].tolist()) == [0, 0, 0, 0, 1, 2, 2]
    assert plan_summary(sampler, 0)["mixed_batches"] == 1


def test_plan_summary_matches_plan():
    for groups, batch, world_size in _random_cases(40, seed=17):
        sampler = GroupBatchSampler(groups, global_batch_size=batch, world_size=world_size)
        plan = sampler.global_batches(1)
        mixed = [b for b in plan if len(set(groups[b].tolist())) > 1]
        summary = plan_summary(sampler, 1)
        assert summary["num_batches"] == len(plan) == summary["pure_batches"] + summary["mixed_batches"]
        assert summary["mixed_batches"] == len(mixed)
        assert summary["samples_in_mixed_batches"] == sum(b.size for b in mixed)
        assert summary["mixed_sample_fraction"] == pytest.approx(sum(b.size for b in mixed) / groups.size)
        assert summary["min_global_batch_size"] == min(b.size for b in plan)
        assert summary["max_global_batch_size"] == max(b.size for b in plan)
        assert summary["num_groups"] == len(set(groups.tolist()))


def test_works_as_dataloader_batch_sampler():
    data = torch.arange(30)
    groups = np.repeat([0, 1, 2], [14, 9, 7])
    sampler = GroupBatchSampler(groups, global_batch_size=8, rank=0, world_size=2, seed=1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_sampler=sampler)
    sampler.set_epoch(2)
    got = [batch[0].tolist() for batch in loader]
    assert got == list(sampler) and len(got) == len(sampler)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(groups=None, num_samples=100, global_batch_size=7, world_size=4), "too small for 4 workers"),
        (dict(groups=None, num_samples=100, global_batch_size=1), "global_batch_size=1 is too small for 1 workers"),
        (dict(groups=None, num_samples=100, global_batch_size=8, rank=2, world_size=2), "rank"),
        (dict(groups=None, num_samples=100, global_batch_size=8, rank=-1, world_size=2), "rank"),
        (dict(groups=None, num_samples=100, global_batch_size=8, world_size=0), "world_size"),
        (dict(groups=None, global_batch_size=8), "num_samples is required"),
        (dict(groups=None, num_samples=0, global_batch_size=8), "num_samples"),
        (dict(groups=None, num_samples=3, global_batch_size=8, world_size=2), "3 samples"),
        (dict(groups=[0, 1, 1], global_batch_size=4, world_size=2), "3 samples"),
        (dict(groups=[], global_batch_size=4), "groups is empty"),
        (dict(groups=[[0, 1], [1, 0]], global_batch_size=2), "groups must be 1-D"),
        (dict(groups=[0, 1, -2, 1], global_batch_size=2), "groups[2] = -2"),
        (dict(groups=[0.0, 1.5, 1.0], global_batch_size=2), "integer group ids"),
        (dict(groups=["a", "b"], global_batch_size=2), "integer group ids"),
        (dict(groups=[0, 1, 1, 0], num_samples=5, global_batch_size=2), "num_samples=5 does not match len(groups)=4"),
        (dict(groups=None, num_samples=10, global_batch_size=4.0), "global_batch_size must be an integer"),
        (dict(groups=None, num_samples=10, global_batch_size=4, seed=-1), "seed"),
    ],
)
def test_validation_errors_name_the_field(kwargs, field):
    groups = kwargs.pop("groups")
    with pytest.raises(ConfigError) as info:
        GroupBatchSampler(groups, **kwargs)
    assert field in str(info.value)


def test_epoch_must_be_non_negative_integer():
    sampler = GroupBatchSampler(None, num_samples=10, global_batch_size=4)
    with pytest.raises(ConfigError, match="epoch"):
        sampler.set_epoch(-1)
    with pytest.raises(ConfigError, match="epoch"):
        sampler.global_batches(1.5)  # type: ignore[arg-type]


def test_each_rank_sees_every_group_of_a_mixed_batch_whatever_the_worker_count():
    """Strided slices: with contiguous ones a rank of 4 would see about a quarter of a mixed batch's groups."""
    groups = np.repeat(np.arange(8), 8)  # 8 groups of 8, global batch 64: one mixed batch holding all 8
    for world in (1, 2, 4):
        seen = [{int(groups[i]) for i in steps[0]} for steps in _rank_steps(groups, 64, world, epoch=0)]
        assert all(s == set(range(8)) for s in seen), (world, seen)


def test_plan_summary_counts_anchors_with_few_negatives():
    groups = np.array([0] * 30 + [1] * 3 + [2] * 3)  # in one batch of 36: 30 anchors with 58 negatives, 6 with 4
    sampler = GroupBatchSampler(groups, global_batch_size=36, shuffle=False)
    assert plan_summary(sampler, 0)["few_negatives_fraction"] == 6 / 36
    random_batches = GroupBatchSampler(None, num_samples=36, global_batch_size=36, shuffle=False)
    assert plan_summary(random_batches, 0)["few_negatives_fraction"] == 0.0  # no groups: 70 negatives each
    assert plan_summary(random_batches, 0, loss_groups=groups)["few_negatives_fraction"] == 6 / 36


def test_plan_summary_of_random_batches_counts_the_loss_groups():
    """Random batches + group mask: the summary describes the loss's groups (the sampler itself has one)."""
    groups = np.repeat([0, 1, 2], [40, 30, 30])
    sampler = GroupBatchSampler(None, num_samples=groups.size, global_batch_size=20, seed=0)
    summary = plan_summary(sampler, 0, loss_groups=groups)
    plan = sampler.global_batches(0)
    assert summary["num_groups"] == 3
    assert summary["mixed_batches"] == sum(len(set(groups[b].tolist())) > 1 for b in plan) > 0
    assert plan_summary(sampler, 0)["num_groups"] == 1  # without the loss's groups: one group, nothing mixed
