"""Regularisers mixed into any method's loss: DimCL against a NumPy reference, the convex mix, the config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from mcl_ray.errors import ConfigError
from mcl_ray.objectives import build_objective
from mcl_ray.objectives.regularizers.dimcl import dimcl_loss
from mcl_ray.plan.from_config import build_config, objective_spec


class TinyEncoder(nn.Module):
    def __init__(self, proj_dim: int = 4) -> None:
        super().__init__()
        self.backbone, self.projector, self.proj_dim = nn.Linear(6, 5), nn.Linear(5, proj_dim), proj_dim

    def forward(self, x):
        h = self.backbone(x)
        return h, self.projector(h)


def reference_dimcl(z1: np.ndarray, z2: np.ndarray, temperature: float) -> float:
    """Explicit loops: every column of z1 and z2 (centred, unit length) is an anchor; its positive is the same
    column of the other view, its negatives every other column of both views."""
    cols = []
    for z in (z1, z2):
        c = (z - z.mean(axis=0)).T
        cols.extend(c / np.linalg.norm(c, axis=1, keepdims=True))
    cols = np.array(cols, dtype=np.float64)
    d = z1.shape[1]
    total = 0.0
    for i in range(2 * d):
        pos = (i + d) % (2 * d)
        sims = np.array([cols[i] @ cols[j] / temperature for j in range(2 * d)])
        others = [j for j in range(2 * d) if j != i]
        total += np.log(np.exp(sims[others]).sum()) - sims[pos]
    return total / (2 * d)


@pytest.mark.parametrize("batch, dim, temperature", [(8, 3, 0.1), (5, 16, 0.5)])
def test_dimcl_matches_the_reference(batch, dim, temperature):
    rng = np.random.default_rng(batch + dim)
    z1, z2 = rng.normal(size=(batch, dim)).astype(np.float32), rng.normal(size=(batch, dim)).astype(np.float32)
    got = dimcl_loss(torch.from_numpy(z1), torch.from_numpy(z2), temperature).item()
    assert got == pytest.approx(reference_dimcl(z1, z2, temperature), rel=1e-4)


def objective(**fields):
    return objective_spec(build_config({"objective": fields}), 0)


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_a_regularizer_mixes_convexly_into_any_method(method):
    spec = objective(name=method, temperature=0.2, regularizers=[{"name": "dimcl", "weight": 0.25}])
    torch.manual_seed(0)
    encoder = TinyEncoder()
    mixed = build_objective(spec, encoder)
    v1, v2 = torch.randn(8, 6), torch.randn(8, 6)
    out = mixed(v1, v2, groups=None)
    assert set(out) == {"loss", "method", "reg/dimcl"}
    term = dimcl_loss(encoder(v1)[1], encoder(v2)[1], 0.1)
    assert out["reg/dimcl"].item() == pytest.approx(term.item(), rel=1e-6)
    assert out["loss"].item() == pytest.approx(0.75 * out["method"].item() + 0.25 * term.item(), rel=1e-6)
    out["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


def test_regularizer_config_errors_name_the_entry():
    assert objective(regularizers=[{"name": "DimCL"}]).regularizers[0].weight == 0.1  # the paper's default
    with pytest.raises(ConfigError, match=r"objective.regularizers.0.name: unknown regularizer 'dimc' \(did you mean 'dimcl'\?\)"):
        objective(regularizers=[{"name": "dimc"}])
    with pytest.raises(ConfigError, match=r"objective.regularizers.0.temprature: Extra inputs are not permitted"):
        objective(regularizers=[{"name": "dimcl", "temprature": 0.1}])
    with pytest.raises(ConfigError, match=r"objective.regularizers.0.weight: Input should be less than 1"):
        objective(regularizers=[{"name": "dimcl", "weight": 1.0}])
    with pytest.raises(ConfigError, match=r"weights sum to 1.2"):
        objective(regularizers=[{"name": "dimcl", "weight": 0.6}, {"name": "dimcl", "weight": 0.6}])
