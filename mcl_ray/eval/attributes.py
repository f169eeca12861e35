"""Per-attribute evaluation: how well one set of frozen features predicts each known attribute.

MCL's claim is that later stages pick up features the first stage ignored (e.g. Trifeature's texture and
colour once shape is learned), so every attribute is probed separately with the same features: a kNN vote
and, optionally, a linear probe. Only attributes labelled on both splits are scored; unlabelled data gives {}.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from mcl_ray.eval.knn import as_features, as_labels, check_same_dims, knn_accuracy
from mcl_ray.eval.linear_probe import linear_probe_accuracy


def evaluate_features(
    train_feats: np.ndarray | torch.Tensor,
    train_attrs: Mapping[str, np.ndarray | torch.Tensor],
    test_feats: np.ndarray | torch.Tensor,
    test_attrs: Mapping[str, np.ndarray | torch.Tensor],
    *,
    knn_k: int = 20,
    knn_temperature: float = 0.1,
    linear: bool = True,
    linear_kwargs: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
) -> dict[str, dict[str, float]]:
    """{attribute: {"knn": acc, "linear": acc}} for every attribute in both train_attrs and test_attrs.

    "linear" is left out when linear=False. linear_kwargs go to `linear_probe_accuracy` (epochs, lr,
    weight_decay, seed). device: where both probes run; None picks CUDA when present, else the CPU.
    Raises DataError when a label array's length does not match its features' rows (naming the attribute).
    """
    shared = [name for name in train_attrs if name in test_attrs]
    if not shared:
        return {}
    target = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    train = as_features(train_feats, "train_feats").to(target, torch.float32)
    test = as_features(test_feats, "test_feats").to(target, torch.float32)
    check_same_dims(train, test)
    labels = {
        name: (
            as_labels(train_attrs[name], f"train_attrs['{name}']", train.shape[0], "train_feats"),
            as_labels(test_attrs[name], f"test_attrs['{name}']", test.shape[0], "test_feats"),
        )
        for name in shared
    }

    results: dict[str, dict[str, float]] = {}
    for name, (train_labels, test_labels) in labels.items():
        scores = {"knn": knn_accuracy(train, train_labels, test, test_labels, k=knn_k, temperature=knn_temperature)}
        if linear:
            scores["linear"] = linear_probe_accuracy(
                train, train_labels, test, test_labels, **dict(linear_kwargs or {})
            )
        results[name] = scores
    return results
