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


def test_a_regularizer_the_method_cannot_feed_is_a_config_error_naming_the_entry():
    """Checked when the config is resolved (mcl-ray validate), not when a stage first runs the loss."""
    with pytest.raises(ConfigError, match=r"objective.regularizers.0: dimcl reads the method's projections, which "
                                          r"objective 'moco' with these options does not expose"):
        objective(name="moco", symmetric=False, regularizers=[{"name": "dimcl"}])
    with pytest.raises(ConfigError, match=r"objective.regularizers.1: ifm reads the method's logits.*'metaug'"):
        objective(name="metaug", regularizers=[{"name": "dimcl"}, {"name": "ifm"}])
    assert objective(name="moco", symmetric=False, regularizers=[{"name": "ifm"}]).regularizers[0].name == "ifm"


# ----------------------------------------------------------------------------------------------- IFM


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_nt_xent_ifm(z1, z2, temperature, epsilon, groups=None):
    """(clean, adversarial) NT-Xent, one anchor at a time: the positive's cosine lowered by epsilon, every
    same-group negative's raised by epsilon, in float64."""
    z = _unit(np.concatenate([z1, z2]).astype(np.float64))
    b = len(z1)
    g = None if groups is None else np.concatenate([groups, groups])
    clean = adv = 0.0
    for i in range(2 * b):
        pos = (i + b) % (2 * b)
        negs = [j for j in range(2 * b) if j not in (i, pos) and (g is None or g[j] == g[i])]
        for eps, acc in ((0.0, "clean"), (epsilon, "adv")):
            p = (z[i] @ z[pos] - eps) / temperature
            terms = [p] + [(z[i] @ z[j] + eps) / temperature for j in negs]
            value = np.log(np.exp(terms).sum()) - p
            if acc == "clean":
                clean += value
            else:
                adv += value
    return clean / (2 * b), adv / (2 * b)


@pytest.mark.parametrize("batch, dim, temperature, epsilon, grouped", [
    (6, 4, 0.2, 0.1, False), (8, 3, 0.5, 0.05, True), (5, 8, 0.1, 0.2, True)])
def test_ifm_on_nt_xent_matches_the_papers_formula(batch, dim, temperature, epsilon, grouped):
    rng = np.random.default_rng(batch * 10 + dim)
    encoder = TinyEncoder(proj_dim=dim).double()
    v1, v2 = torch.from_numpy(rng.normal(size=(batch, 6))), torch.from_numpy(rng.normal(size=(batch, 6)))
    groups = np.array([0, 1] * batch)[:batch] if grouped else None
    spec = objective(name="simclr", temperature=temperature,
                     regularizers=[{"name": "ifm", "weight": 0.5, "epsilon": epsilon}])
    out = build_objective(spec, encoder)(v1, v2, groups=None if groups is None else torch.from_numpy(groups))
    z1, z2 = (encoder(v)[1].detach().numpy() for v in (v1, v2))
    clean, adv = reference_nt_xent_ifm(z1, z2, temperature, epsilon, groups)
    assert out["method"].item() == pytest.approx(clean, rel=1e-9)
    assert out["reg/ifm"].item() == pytest.approx(adv, rel=1e-9)
    assert out["loss"].item() == pytest.approx((clean + 1.0 * adv) / (1 + 1.0), rel=1e-9)  # alpha = 1
    assert adv > clean  # the perturbation makes the task harder


def test_ifm_on_moco_perturbs_both_symmetric_terms_and_keeps_the_queue_mask():
    from mcl_ray.objectives.moco import MoCo
    from mcl_ray.objectives.regularizers.ifm import IFM

    torch.manual_seed(2)
    method = MoCo(TinyEncoder().double(), temperature=0.2, queue_size=6).double()
    method.enqueue(torch.nn.functional.normalize(torch.randn(4, 4, dtype=torch.float64), dim=1), torch.tensor([0, 1, 0, 1]))
    v1, v2, groups = torch.randn(3, 6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64), torch.tensor([0, 0, 1])
    queue, queue_groups = method.queue.clone().numpy(), method.queue_groups.clone().numpy()
    out = method(v1, v2, groups)
    q = [method.encoder(v)[1].detach().numpy() for v in (v1, v2)]
    k = [method.momentum_encoder(v)[1].detach().numpy() for v in (v1, v2)]

    def reference(qs, ks, eps):
        qs, ks = _unit(qs), _unit(ks)
        total = 0.0
        for i in range(len(qs)):
            p = (qs[i] @ ks[i] - eps) / 0.2
            negs = [(qs[i] @ queue[j] + eps) / 0.2 for j in range(len(queue))
                    if queue_groups[j] >= 0 and queue_groups[j] == groups[i].item()]
            total += np.log(np.exp([p, *negs]).sum()) - p
        return total / len(qs)

    expected = 0.5 * (reference(q[0], k[1], 0.1) + reference(q[1], k[0], 0.1))
    got = IFM(epsilon=0.1).loss(out, groups).item()
    assert got == pytest.approx(expected, rel=1e-9)
    assert out["loss"].item() == pytest.approx(0.5 * (reference(q[0], k[1], 0.0) + reference(q[1], k[0], 0.0)), rel=1e-9)


def test_ifm_options_are_validated():
    assert objective(regularizers=[{"name": "ifm"}]).regularizers[0].model_dump() == {"name": "ifm", "weight": 0.5, "epsilon": 0.1}
    with pytest.raises(ConfigError, match=r"objective.regularizers.0.epsilon: Input should be greater than 0"):
        objective(regularizers=[{"name": "ifm", "epsilon": 0}])
