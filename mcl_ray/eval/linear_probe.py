"""Linear probe: multinomial logistic regression on frozen features, fitted with full-batch L-BFGS.

Why these choices:
- Standardise with the train mean/std rather than L2-normalise: contrastive backbones (and MCL's
  concatenation of stages) give dimensions of very different scales, and unit-variance inputs make the
  problem well conditioned, so L-BFGS converges in tens of iterations. Near-constant dims keep std 1.
- Full-batch L-BFGS (strong-Wolfe line search) on a convex loss: no learning-rate schedule to tune, and for
  5k-50k rows x 512-2048 dims the whole batch fits in memory, so it is both fast and robust.
- Weights start at zero, so the fit is deterministic for given inputs (no randomness at all); `seed` is
  accepted so callers can pass their experiment seed uniformly, but it cannot change the result.
- L2 penalty 0.5 * weight_decay * ||W||^2 on the weights (not the bias) keeps separable data from driving
  the weights to infinity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mcl_ray.errors import ConfigError, DataError, TrainingError
from mcl_ray.eval.knn import as_features, count_classes, as_labels, check_same_dims


@dataclass
class LinearProbe:
    """A fitted probe: standardisation (mean, std [D]) followed by logits = x @ weight.T + bias."""

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def logits(self, feats: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = as_features(feats, "feats").to(self.weight.device, torch.float32)
        if x.shape[1] != self.weight.shape[1]:
            raise DataError(f"feats has {x.shape[1]} dims but the probe was fitted on {self.weight.shape[1]}")
        return ((x - self.mean) / self.std) @ self.weight.T + self.bias

    def predict(self, feats: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Predicted class ids, int64 [N], on the probe's device."""
        return self.logits(feats).argmax(dim=1)


def train_linear_probe(
    train_feats: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    *,
    num_classes: int | None = None,
    epochs: int = 100,
    lr: float = 1.0,
    weight_decay: float = 1e-4,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> LinearProbe:
    """Fit a probe on `device` (default: train_feats' device). `epochs` = L-BFGS iterations (full batch)."""
    del seed  # deterministic without it: see the module docstring
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ConfigError(f"linear probe epochs must be a positive integer, got {epochs!r}")
    if not lr > 0:
        raise ConfigError(f"linear probe lr must be > 0, got {lr!r}")
    if not weight_decay >= 0:
        raise ConfigError(f"linear probe weight_decay must be >= 0, got {weight_decay!r}")
    feats = as_features(train_feats, "train_feats")
    labels = as_labels(train_labels, "train_labels", feats.shape[0], "train_feats")
    classes = count_classes(labels, num_classes)

    target = torch.device(device) if device is not None else feats.device
    x = feats.to(target, torch.float32)
    y = labels.to(target)
    mean = x.mean(dim=0)
    std = x.std(dim=0, unbiased=False)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    x = (x - mean) / std

    weight = torch.zeros(classes, x.shape[1], device=target, requires_grad=True)
    bias = torch.zeros(classes, device=target, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=lr, max_iter=int(epochs), history_size=10, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
        raise TrainingError("linear probe: L-BFGS produced non-finite weights (try a larger weight_decay)")
    return LinearProbe(mean=mean, std=std, weight=weight.detach(), bias=bias.detach())


def linear_probe_accuracy(
    train_feats: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    test_feats: np.ndarray | torch.Tensor,
    test_labels: np.ndarray | torch.Tensor,
    *,
    epochs: int = 100,
    lr: float = 1.0,
    weight_decay: float = 1e-4,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> float:
    """Test accuracy in [0, 1] of a probe fitted on the train split (see `train_linear_probe`)."""
    train = as_features(train_feats, "train_feats")
    test = as_features(test_feats, "test_feats")
    check_same_dims(train, test)
    truth = as_labels(test_labels, "test_labels", test.shape[0], "test_feats")
    probe = train_linear_probe(
        train, train_labels, epochs=epochs, lr=lr, weight_decay=weight_decay, seed=seed, device=device
    )
    predicted = probe.predict(test).cpu()
    return float((predicted == truth.cpu()).double().mean())
