"""Tiny-group policy: small intersections fold into the nearest large sibling, never across earlier groups."""

from __future__ import annotations

import numpy as np
import pytest

from mcl_ray.errors import ConfigError
from mcl_ray.mcl.groups import combine_labels
from mcl_ray.mcl.small_groups import merge_small_groups
from mcl_ray.mcl.spec import ClusteringSpec


def test_off_equals_the_plain_intersection() -> None:
    rng = np.random.default_rng(0)
    parents = rng.integers(0, 7, 500)
    clusters = rng.integers(0, 5, 500)
    centroids = rng.normal(size=(5, 3))
    for min_size in (0, 1):
        np.testing.assert_array_equal(merge_small_groups(parents, clusters, centroids, min_size),
                                      combine_labels(parents, clusters, 5))
    np.testing.assert_array_equal(merge_small_groups(None, clusters, centroids, 0), combine_labels(None, clusters, 5))


def test_small_group_joins_the_sibling_with_the_nearest_centroid() -> None:
    # one parent; clusters 0 and 1 are large, cluster 2 (2 samples) has its centroid next to cluster 1's
    centroids = np.array([[0.0, 0.0], [10.0, 0.0], [9.0, 0.0]])
    clusters = np.array([0] * 5 + [1] * 5 + [2] * 2)
    groups = merge_small_groups(None, clusters, centroids, min_size=3)
    assert len(np.unique(groups)) == 2
    assert (groups[10:] == groups[5]).all() and groups[0] != groups[5]


def test_merges_stay_inside_the_earlier_groups() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    parents = rng.integers(0, 10, n)
    clusters = np.where(rng.random(n) < 0.95, rng.integers(0, 3, n), rng.integers(3, 10, n))  # 3 big, 7 tiny
    centroids = rng.normal(size=(10, 4))
    groups = merge_small_groups(parents, clusters, centroids, min_size=8)
    for g in np.unique(groups):
        assert len(np.unique(parents[groups == g])) == 1  # never mixes two earlier groups
    sizes = np.bincount(groups)
    assert sizes.min() >= 8
    before = combine_labels(parents, clusters, 10)
    assert len(sizes) < len(np.unique(before))
    # each tiny piece went to the large sibling with the nearest centroid
    d = ((centroids[:, None] - centroids[None]) ** 2).sum(-1)
    for i in np.flatnonzero(clusters >= 3)[:50]:
        siblings = [c for c in range(3) if ((parents == parents[i]) & (clusters == c)).sum() >= 8]
        expected = min(siblings, key=lambda c: d[clusters[i], c])
        partner = np.flatnonzero((parents == parents[i]) & (clusters == expected))[0]
        assert groups[i] == groups[partner]


def test_small_siblings_without_a_large_one_stay_together() -> None:
    parents = np.array([0] * 10 + [1, 1, 1])
    clusters = np.array([0] * 10 + [0, 1, 2])
    groups = merge_small_groups(parents, clusters, np.eye(3), min_size=5)
    assert len(np.unique(groups[10:])) == 1 and groups[10] != groups[0]


def test_paired_views_use_the_sum_of_both_views_distances() -> None:
    # joint clustering: labels are image * K + text with K = 2; label 3 = (1, 1) is tiny
    image = np.array([[0.0], [1.0]])
    text = np.array([[0.0], [5.0]])
    centroids = np.stack([image, text])  # [views, K, d]
    clusters = np.array([0] * 6 + [1] * 6 + [2] * 6 + [3])
    groups = merge_small_groups(None, clusters, centroids, min_size=2)
    # distances from (1,1): to (0,1) = 1, to (1,0) = 25, to (0,0) = 26 -> joins label 1 = (0, 1)
    assert groups[-1] == groups[6]


def test_bad_min_size_names_the_field() -> None:
    with pytest.raises(ConfigError, match="mcl.min_group_size"):
        merge_small_groups(None, np.zeros(3, int), np.zeros((1, 2)), -1)


def test_key_leaves_the_option_out_when_off() -> None:
    assert "min_group_size" not in ClusteringSpec(k=10).key_fields()
    assert ClusteringSpec(k=10, min_group_size=8).key_fields()["min_group_size"] == 8
