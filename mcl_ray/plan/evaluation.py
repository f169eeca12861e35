"""Evaluation of a representation (kNN and linear probes per attribute) and the run's starting weights."""

from __future__ import annotations

from pathlib import Path

import torch

from mcl_ray.data.experiment_data import ExperimentData
from mcl_ray.errors import ConfigError
from mcl_ray.eval.attributes import evaluate_features
from mcl_ray.eval.spec import EvalSpec


def evaluate(spec: EvalSpec, probe_feats, test_feats, data: ExperimentData) -> dict[str, dict[str, float]]:
    """{attribute: {'knn': acc, 'linear': acc}}: probes fit on the probe set, scored on the test set."""
    return evaluate_features(
        probe_feats,
        data.probe.attributes,
        test_feats,
        data.test.attributes,
        knn_k=spec.knn_k,
        knn_temperature=spec.knn_temperature,
        linear=spec.linear,
        linear_kwargs={"epochs": spec.linear_epochs, "seed": spec.seed},
    )


def load_init_checkpoint(path: str | None) -> dict[str, torch.Tensor] | None:
    """The encoder state every stage starts from (mcl.init: pretrained with mcl.init_checkpoint)."""
    if not path:
        return None
    path = Path(path).expanduser()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or not a state dict
        raise ConfigError(f"mcl.init_checkpoint: cannot load {path}: {exc}") from None
