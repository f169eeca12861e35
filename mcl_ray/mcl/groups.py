"""MCL groups: the intersection of every earlier stage's clustering.

Two samples share a group iff they fell in the same cluster at EVERY stage so far. Ids are built
mixed-radix (`previous * k + current`, as in the official code) and then re-indexed to 0..G-1 after each
stage, so they never overflow int64 (raw K^s would: K=100, s=10) and group order is the lexicographic
order of the per-stage cluster tuples. The official `cluster.py` loads the current stage's labels on every
pass of its loop, so only the latest clustering is used; here every stage is folded in (tests prove it).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mcl_ray.errors import ConfigError, DataError

_INT64_MAX = np.iinfo(np.int64).max


def compact(labels: np.ndarray) -> np.ndarray:
    """Re-index group ids to 0..G-1 (sorted order of the original ids), int64."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(f"labels must be 1-D, got shape {tuple(labels.shape)}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"labels must be integers, got dtype {labels.dtype}")
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64, copy=False)


def combine_labels(
    previous: np.ndarray | None, current: np.ndarray, k: int, *, stage: int | None = None
) -> np.ndarray:
    """Group ids after adding one stage: compact(previous * k + current), or compact(current) at stage 0.

    previous: group ids so far (non-negative integers, e.g. the output of an earlier call) or None.
    current: this stage's cluster labels in [0, k). stage: only used to name the stage in error messages.
    """
    where = f"stage {stage}" if stage is not None else "current stage"
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"clusters: k for {where} must be a positive integer, got {k!r}")
    current = _check_labels(current, f"{where} labels")
    if current.size and (current.min() < 0 or current.max() >= k):
        raise DataError(
            f"{where} labels must lie in [0, {k}), got range [{current.min()}, {current.max()}]"
        )
    if previous is None:
        return compact(current)
    previous = _check_labels(previous, f"group ids before {where}")
    if len(previous) != len(current):
        raise DataError(
            f"{where} has {len(current)} labels but the earlier stages have {len(previous)}; "
            "every stage must label the same samples in the same order"
        )
    if previous.size:
        if previous.min() < 0:
            raise DataError(f"group ids before {where} must be non-negative, got {previous.min()}")
        if int(previous.max()) > (_INT64_MAX - (k - 1)) // k:
            raise DataError(
                f"group ids before {where} are too large to combine (max {previous.max()}); compact them"
            )
    return compact(previous * np.int64(k) + current)


def combine_all(stage_labels: Sequence[np.ndarray], ks: Sequence[int] | int) -> np.ndarray:
    """Fold every stage's labels (stage 0 first) into group ids 0..G-1; ks: one K per stage, or one int."""
    if len(stage_labels) == 0:
        raise DataError("stage_labels is empty: need the labels of at least one stage")
    if isinstance(ks, (int, np.integer)):
        ks = [int(ks)] * len(stage_labels)
    if len(ks) != len(stage_labels):
        raise ConfigError(f"ks has {len(ks)} entries but there are {len(stage_labels)} stages")
    groups: np.ndarray | None = None
    for stage, (labels, k) in enumerate(zip(stage_labels, ks)):
        groups = combine_labels(groups, labels, k, stage=stage)
    assert groups is not None
    return groups


def _check_labels(labels: np.ndarray, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(f"{name} must be 1-D, got shape {tuple(labels.shape)}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{name} must be integers, got dtype {labels.dtype}")
    return labels.astype(np.int64, copy=False)


def pair_views(view_labels: Sequence[np.ndarray], k: int) -> np.ndarray:
    """One label per sample from several clusterings of it with K clusters each (image and text): mixed radix,
    label = l_0 * K + l_1 (+ ...), so two samples share it iff they share every view's cluster."""
    out = np.zeros(len(view_labels[0]), np.int64)
    for labels in view_labels:
        labels = _check_labels(labels, "view labels")
        if len(labels) != len(out):
            raise DataError(f"views label different numbers of samples: {len(labels)} and {len(out)}")
        out = out * k + labels
    return out
