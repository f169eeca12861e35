"""Weighted kNN on frozen features: the cheap, training-free probe of what an embedding has learned.

Cosine similarity with temperature-weighted voting, as in InstDisc (Wu et al. 2018), lightly's `knn_predict`
and DINO's `knn_classifier`: each of the k most similar train features votes for its label with weight
exp(sim / t); the class with the largest summed vote wins. Test rows are processed in batches so memory stays
at batch_size x N_train similarities, and everything runs on the tensors' device (GPU when they live there).

The input checks here (`as_features`, `as_labels`) are shared by the linear probe and the attribute evaluator.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mcl_ray.errors import ConfigError, DataError

def as_features(feats: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    """A finite float [N, D] tensor (numpy converted without a copy where possible); DataError names `name`."""
    tensor = torch.as_tensor(feats)
    if tensor.ndim != 2 or tensor.shape[0] == 0 or tensor.shape[1] == 0:
        raise DataError(f"{name} must be a non-empty 2-D array (rows x dims), got shape {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        tensor = tensor.float()
    if not bool(torch.isfinite(tensor).all()):
        raise DataError(f"{name} contains NaN or infinite values")
    return tensor


def as_labels(labels: np.ndarray | torch.Tensor, name: str, rows: int, feats_name: str) -> torch.Tensor:
    """A non-negative int64 [rows] tensor; DataError names `name` (and `feats_name` on a row mismatch)."""
    tensor = torch.as_tensor(labels)
    if tensor.ndim != 1:
        raise DataError(f"{name} must be a 1-D array of class ids, got shape {tuple(tensor.shape)}")
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise DataError(f"{name} must hold integer class ids, got dtype {tensor.dtype}")
    if tensor.shape[0] != rows:
        raise DataError(f"{name} has {tensor.shape[0]} labels but {feats_name} has {rows} rows")
    if rows and int(tensor.min()) < 0:
        raise DataError(f"{name} must be non-negative class ids, got minimum {int(tensor.min())}")
    return tensor.long()


def count_classes(labels: torch.Tensor, num_classes: int | None) -> int:
    """Classes implied by the labels, or `num_classes` when given (it must cover every label)."""
    classes = int(labels.max()) + 1
    if num_classes is not None:
        if num_classes < classes:
            raise DataError(f"train_labels reach class {classes - 1} but num_classes is {num_classes}")
        classes = int(num_classes)
    return classes


def check_same_dims(train: torch.Tensor, test: torch.Tensor) -> None:
    if train.shape[1] != test.shape[1]:
        raise DataError(
            f"test_feats has {test.shape[1]} dims but train_feats has {train.shape[1]}; they must come from the "
            "same embedding"
        )


def knn_predict(
    train_feats: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    test_feats: np.ndarray | torch.Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Predicted class (int64 [N_test]) of every test row, on `device` (default: train_feats' device).

    Features are L2-normalised here, so raw embeddings can be passed. k is clipped to the train size.
    num_classes defaults to max(train_labels) + 1. Votes are computed as exp((sim - max_sim) / t), which is
    exp(sim / t) scaled by a per-row constant: the argmax is unchanged but small temperatures cannot overflow
    float32 (lightly's plain exp(sim / t) overflows below t ~ 0.011).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"knn k must be a positive integer, got {k!r}")
    if not temperature > 0:
        raise ConfigError(f"knn temperature must be > 0, got {temperature!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"knn batch_size must be a positive integer, got {batch_size!r}")

    train = as_features(train_feats, "train_feats")
    test = as_features(test_feats, "test_feats")
    check_same_dims(train, test)
    labels = as_labels(train_labels, "train_labels", train.shape[0], "train_feats")
    classes = count_classes(labels, num_classes)

    target = torch.device(device) if device is not None else train.device
    train = F.normalize(train.to(target, torch.float32), dim=1)
    labels = labels.to(target)
    k = min(int(k), train.shape[0])
    predictions = []
    for start in range(0, test.shape[0], batch_size):
        batch = F.normalize(test[start : start + batch_size].to(target, torch.float32), dim=1)
        sims, idx = (batch @ train.T).topk(k, dim=1)  # sorted: column 0 holds each row's best similarity
        weights = ((sims - sims[:, :1]) / temperature).exp()
        votes = torch.zeros(batch.shape[0], classes, device=target, dtype=torch.float32)
        votes.scatter_add_(1, labels[idx], weights)
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def knn_accuracy(
    train_feats: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    test_feats: np.ndarray | torch.Tensor,
    test_labels: np.ndarray | torch.Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
) -> float:
    """Fraction of test rows whose kNN prediction equals test_labels, in [0, 1]."""
    test = as_features(test_feats, "test_feats")
    truth = as_labels(test_labels, "test_labels", test.shape[0], "test_feats")
    predicted = knn_predict(
        train_feats, train_labels, test, k=k, temperature=temperature, num_classes=num_classes,
        batch_size=batch_size, device=device,
    )
    return float((predicted.cpu() == truth.cpu()).double().mean())
