"""What a built stage and a finished clustering leave in the store, written the same way by both executors.

stages/<key>/: encoder.pt, history.json, {probe,test}_{backbone,projector}.npy, then the commit marker.
clusters/<key>/: cluster_labels.npy, centroids.npy, groups.npy (intersection with the earlier stages'
groups), stats.json, then the commit marker.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mcl_ray.mcl.cluster_stats import cluster_stats
from mcl_ray.mcl.small_groups import merge_small_groups
from mcl_ray.store.artifacts import ArtifactStore, Entry
from mcl_ray.train.embed import embed_images


def publish_stage(entry: Entry, encoder, history, probe_images, test_images, spec, device, meta: dict[str, Any],
                  known: dict[str, dict[str, np.ndarray]] | None = None) -> None:
    """Weights, history and probe/test embeddings, then the commit marker (last).

    known: embeddings already computed for a split ({"probe": {...}}), e.g. when the probe set is the
    training set the stage just embedded for clustering."""
    entry.put_state("encoder.pt", {k: v.detach().cpu() for k, v in encoder.state_dict().items()})
    entry.put_json("history.json", history)
    for split, images in (("probe", probe_images), ("test", test_images)):
        emb = (known or {}).get(split) or embed_images(encoder, images, spec, device=device)
        for kind, array in emb.items():
            if kind in ("backbone", "projector"):  # image representations (a clustering may also have text ones)
                entry.put_array(f"{split}_{kind}.npy", array)
    entry.commit(meta)


def kmeans_sample(embeddings: np.ndarray, total: int, max_points: int | None, seed: int, rank: int) -> np.ndarray:
    """This shard's share of the k-means training sample: at most max_points rows over all shards, seeded."""
    budget = max_points or total
    take = min(len(embeddings), math.ceil(budget * len(embeddings) / total))
    if take >= len(embeddings):
        return embeddings
    rng = np.random.default_rng(seed * 1000 + rank)
    return embeddings[np.sort(rng.choice(len(embeddings), size=take, replace=False))]


def publish_clusters(store: ArtifactStore, cluster_key: str, *, labels: np.ndarray, centroids: np.ndarray, k: int,
                     previous_clusters: str | None, attributes: dict[str, np.ndarray] | None,
                     info: dict[str, Any], meta: dict[str, Any], min_group_size: int = 0) -> dict[str, Any]:
    """Combine with the earlier stages' groups (folding groups below min_group_size into a sibling), persist
    labels/centroids/groups/stats and commit the entry."""
    previous = store.clusters(previous_clusters).get_array("groups.npy") if previous_clusters else None
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"cluster labels must lie in [0, {k}), got [{labels.min()}, {labels.max()}]")
    groups = merge_small_groups(previous, labels, centroids, min_group_size)
    stats = {
        "clusters": cluster_stats(labels, k=k, attributes=attributes),
        "groups": cluster_stats(groups, attributes=attributes),
        **info,
    }
    entry = store.clusters(cluster_key)
    entry.put_array("cluster_labels.npy", labels)
    entry.put_array("centroids.npy", centroids)
    entry.put_array("groups.npy", groups)
    entry.put_json("stats.json", stats)
    entry.commit(meta)
    return stats
