"""What a clustering (or an MCL grouping) looks like: group sizes and agreement with known attributes.

Logged after every stage: the sizes show whether the cluster-aware sampler has usable groups (singletons
and empty clusters give an anchor no negatives), and NMI/ARI against known attributes (e.g. Trifeature's
shape/texture/colour) show which feature a stage has learned, which is MCL's whole point. Every value is
a plain int/float/list so the dict can go straight into JSON or TensorBoard.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mcl_ray.errors import ConfigError, DataError


def cluster_stats(
    labels: np.ndarray, *, k: int | None = None, attributes: dict[str, np.ndarray] | None = None
) -> dict[str, Any]:
    """Summary of `labels` [N] (non-negative ints).

    Returns num_samples, num_groups (non-empty), sizes {min, median, mean, max, histogram}, where
    histogram[i] is the size of label i (length k when k is given, else max label + 1), singletons,
    imbalance_factor (k-means' N_groups * sum(size^2) / N^2: 1 when balanced), empty_clusters (only when k
    is given), and attributes {name: {nmi, ari}} for each attribute given.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise DataError(f"labels must be a non-empty 1-D array, got shape {tuple(labels.shape)}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.min() < 0:
        raise DataError(f"labels must be non-negative, got minimum {labels.min()}")
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"clusters: k must be a positive integer, got {k!r}")
        if labels.max() >= k:
            raise DataError(f"labels must lie in [0, {k}) for clusters k={k}, got maximum {labels.max()}")

    histogram = np.bincount(labels, minlength=k or 0)
    sizes = histogram[histogram > 0]
    n = int(labels.size)
    stats: dict[str, Any] = {
        "num_samples": n,
        "num_groups": int(sizes.size),
        "sizes": {
            "min": int(sizes.min()),
            "median": float(np.median(sizes)),
            "mean": float(sizes.mean()),
            "max": int(sizes.max()),
            "histogram": [int(v) for v in histogram],
        },
        "singletons": int((sizes == 1).sum()),
        "imbalance_factor": float(sizes.size * np.square(sizes, dtype=np.float64).sum() / n**2),
    }
    if k is not None:
        stats["empty_clusters"] = int((histogram == 0).sum())
    if attributes:
        # imported here: scikit-learn costs ~1 s at import, paid by every Ray worker and Tune trial process
        from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

        stats["attributes"] = {}
        for name, values in attributes.items():
            values = np.asarray(values)
            if values.shape != labels.shape:
                raise DataError(
                    f"attribute '{name}' has shape {tuple(values.shape)} "
                    f"but labels have {tuple(labels.shape)}"
                )
            stats["attributes"][name] = {
                "nmi": float(normalized_mutual_info_score(values, labels)),
                "ari": float(adjusted_rand_score(values, labels)),
            }
    return stats
