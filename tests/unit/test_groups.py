"""MCL group ids: the intersection of every stage's clustering (not only the latest one)."""

from __future__ import annotations

import numpy as np
import pytest

from mcl_ray.errors import ConfigError, DataError
from mcl_ray.mcl.groups import combine_all, combine_labels, compact


def tuple_groups(stage_labels: list[np.ndarray]) -> np.ndarray:
    """Reference: one group per distinct tuple of per-stage cluster ids."""
    return np.unique(np.stack(stage_labels, axis=1), axis=0, return_inverse=True)[1].reshape(-1)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True iff a and b put exactly the same samples together (ids may differ)."""
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def official_buggy_combine(stage_labels: list[np.ndarray], k: int) -> np.ndarray:
    """The official cluster.py loop: it loads the CURRENT stage's labels on every pass."""
    current = len(stage_labels) - 1
    cls = np.zeros(len(stage_labels[0]), dtype=np.int64)
    for _ in range(current + 1):
        cls = cls * k + stage_labels[current]
    return cls


def random_stages(n: int, k: int, stages: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, k, n) for _ in range(stages)]


def test_compact_reindexes_in_sorted_order() -> None:
    out = compact(np.array([10, 3, 10, 7, 3]))
    np.testing.assert_array_equal(out, [2, 0, 2, 1, 0])
    assert out.dtype == np.int64


def test_combine_labels_is_mixed_radix_then_compact() -> None:
    previous = np.array([0, 0, 1, 1, 2])
    current = np.array([1, 0, 1, 1, 0])
    # raw ids previous*3+current = [1, 0, 4, 4, 6] -> compact [1, 0, 2, 2, 3]
    np.testing.assert_array_equal(combine_labels(previous, current, 3), [1, 0, 2, 2, 3])
    np.testing.assert_array_equal(combine_labels(None, np.array([4, 2, 4]), 5), [1, 0, 1])


def test_group_ids_follow_lexicographic_order_of_stage_tuples() -> None:
    stages = random_stages(300, 4, 3, seed=0)
    groups = combine_all(stages, 4)
    np.testing.assert_array_equal(groups, tuple_groups(stages))  # np.unique(axis=0) sorts tuples too


def test_many_stages_never_overflow() -> None:
    stages = random_stages(2000, 100, 12, seed=1)  # raw 100**12 ids would need 80 bits
    groups = combine_all(stages, 100)
    assert groups.dtype == np.int64
    assert groups.min() == 0 and groups.max() == len(np.unique(groups)) - 1 < 2000
    assert same_partition(groups, tuple_groups(stages))


def test_samples_share_a_group_iff_they_share_a_cluster_in_every_stage() -> None:
    stages = random_stages(400, 3, 4, seed=2)
    groups = combine_all(stages, [3, 3, 3, 3])
    same_group = groups[:, None] == groups[None, :]
    same_everywhere = np.logical_and.reduce([s[:, None] == s[None, :] for s in stages])
    np.testing.assert_array_equal(same_group, same_everywhere)
    assert same_group.sum() > 400  # non-trivial: some groups hold several samples


def test_every_stage_changes_the_grouping() -> None:
    stages = random_stages(500, 3, 4, seed=3)
    ks = [3, 4, 3, 3]
    stages[1] = np.random.default_rng(4).integers(0, 4, 500)
    base = combine_all(stages, ks)
    for j in range(len(stages)):
        # two samples that share a group, then move one of them to another cluster in stage j only
        a, b = np.flatnonzero(base == np.bincount(base).argmax())[:2]
        perturbed = [s.copy() for s in stages]
        perturbed[j][b] = (perturbed[j][b] + 1) % ks[j]
        after = combine_all(perturbed, ks)
        assert after[a] != after[b], f"stage {j}'s labels were ignored"
        assert not same_partition(base, after)
        assert same_partition(after, tuple_groups(perturbed))


def test_the_every_stage_check_catches_the_official_bug() -> None:
    stages = random_stages(500, 3, 3, seed=5)
    buggy = official_buggy_combine(stages, 3)
    assert same_partition(buggy, stages[-1])  # only the latest stage survives
    assert not same_partition(buggy, tuple_groups(stages))
    assert same_partition(combine_all(stages, 3), tuple_groups(stages))


def test_combine_all_with_one_stage_is_that_clustering() -> None:
    labels = np.array([2, 0, 2, 1])
    np.testing.assert_array_equal(combine_all([labels], [3]), [2, 0, 2, 1])


def test_length_mismatch_names_the_stage() -> None:
    with pytest.raises(DataError, match=r"stage 2 has 4 labels but the earlier stages have 5"):
        combine_all([np.zeros(5, int), np.zeros(5, int), np.zeros(4, int)], 2)


def test_labels_out_of_range_name_the_stage_and_k() -> None:
    with pytest.raises(DataError, match=r"stage 1 labels must lie in \[0, 3\)"):
        combine_all([np.array([0, 1]), np.array([0, 3])], 3)
    with pytest.raises(DataError, match=r"stage 0 labels must lie in \[0, 2\)"):
        combine_all([np.array([-1, 1])], 2)


def test_bad_stage_lists_are_rejected() -> None:
    with pytest.raises(ConfigError, match="ks has 1 entries but there are 2 stages"):
        combine_all([np.zeros(3, int), np.zeros(3, int)], [2])
    with pytest.raises(DataError, match="at least one stage"):
        combine_all([], [])
    with pytest.raises(DataError, match="integers"):
        combine_labels(None, np.array([0.0, 1.0]), 2)
