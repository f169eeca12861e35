"""Tiny-group policy: fold MCL groups too small to supply negatives into a neighbouring group.

Intersecting every stage's clusters splits the data ever finer (K=10 over 3 stages gives up to 100 groups), and
some intersections hold a handful of samples. Their anchors then have almost no negatives (none at all for a
singleton), learn nothing, and still count in the batch mean. With `mcl.min_group_size` a group (p, c) (parent
group p from the earlier stages, cluster c of this stage) smaller than the minimum joins the sibling (p, c')
whose cluster centroid is nearest to c's among the siblings that are large enough, so the merge stays inside
the earlier stages' group (MCL's intersection rule is kept) and follows this stage's geometry. When no sibling
is large enough, all the small siblings of p become one group together.
"""

from __future__ import annotations

import numpy as np

from mcl_ray.errors import ConfigError, DataError
from mcl_ray.mcl.groups import compact


def merge_small_groups(
    parents: np.ndarray | None, clusters: np.ndarray, centroids: np.ndarray, min_size: int
) -> np.ndarray:
    """Group ids 0..G-1 of the intersection (parents x clusters) after folding groups below `min_size`.

    parents: group ids from the earlier stages [N] (None: one parent, the first clustering).
    clusters: this stage's labels [N] in [0, K) (for several paired views, the mixed-radix paired label).
    centroids: [K, d] for one view, or [V, K, d] for V paired views (distance = the sum over views).
    min_size <= 1 changes nothing beyond the plain intersection.
    """
    clusters = np.asarray(clusters, dtype=np.int64)
    parents = np.zeros_like(clusters) if parents is None else np.asarray(parents, dtype=np.int64)
    if clusters.ndim != 1 or parents.shape != clusters.shape:
        raise DataError(f"parents and clusters must be 1-D of equal length, got {parents.shape} and {clusters.shape}")
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 0:
        raise ConfigError(f"mcl.min_group_size: must be a non-negative integer, got {min_size!r}")
    cluster_dist = _centroid_distances(np.asarray(centroids, dtype=np.float64))
    if clusters.size and clusters.max() >= len(cluster_dist):
        raise DataError(f"cluster label {clusters.max()} has no centroid (there are {len(cluster_dist)})")
    pairs, inverse, sizes = np.unique(np.stack([parents, clusters], axis=1), axis=0,
                                      return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    target = np.arange(len(pairs))  # where each (parent, cluster) group goes
    if min_size > 1:
        for parent in np.unique(pairs[:, 0]):
            members = np.flatnonzero(pairs[:, 0] == parent)
            small = members[sizes[members] < min_size]
            large = members[sizes[members] >= min_size]
            if not len(small):
                continue
            if not len(large):
                target[small] = small[0]  # the parent's small pieces stay together as one group
                continue
            nearest = np.argmin(cluster_dist[np.ix_(pairs[small, 1], pairs[large, 1])], axis=1)
            target[small] = large[nearest]
    return compact(target[inverse])


def _centroid_distances(centroids: np.ndarray) -> np.ndarray:
    """Squared distances between every pair of (paired) cluster labels: [L, L]."""
    if centroids.ndim == 2:
        sq = (centroids**2).sum(1)
        return sq[:, None] + sq[None, :] - 2 * centroids @ centroids.T
    if centroids.ndim != 3:
        raise DataError(f"centroids must be [K, d] or [views, K, d], got shape {centroids.shape}")
    views, k = centroids.shape[:2]
    labels = np.arange(k**views)
    total = np.zeros((len(labels), len(labels)))
    for view in range(views):  # mixed radix, first view most significant (as pair_views builds it)
        digit = (labels // k ** (views - 1 - view)) % k
        d = _centroid_distances(centroids[view])
        total += d[np.ix_(digit, digit)]
    return total
