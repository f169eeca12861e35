"""SPCL: each loss term against a plain-loop float64 reference, the prototype helper, options and the trainer hook."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from mcl_ray.errors import ConfigError, DataError, TrainingError
from mcl_ray.objectives import build_objective
from mcl_ray.objectives.methods.spcl import SPCLOptions
from mcl_ray.objectives.spcl import SPCL, pca_whiten, prototype_labels
from mcl_ray.plan.from_config import load_config, objective_spec


class TinyEncoder(nn.Module):
    """x [B, 6] -> (h [B, 5], z [B, 4]), float64 for the reference comparisons."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.backbone, self.projector = nn.Linear(6, 5), nn.Linear(5, 4)
        self.feature_dim, self.proj_dim = 5, 4

    def forward(self, x):
        h = torch.relu(self.backbone(x))
        return h, self.projector(h)


# ----------------------------------------------------------------------------------------------- references


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_nt_xent(z1, z2, temperature, groups) -> float:
    """NT-Xent over the 2B anchors, one at a time; negatives = other embeddings of the anchor's group."""
    b = len(z1)
    z = _unit(np.concatenate([z1, z2]))
    g = np.concatenate([groups, groups])
    total = 0.0
    for i in range(2 * b):
        p = (i + b) % (2 * b)
        positive = math.exp(z[i] @ z[p] / temperature)
        denominator = positive + sum(math.exp(z[i] @ z[j] / temperature)
                                     for j in range(2 * b) if j not in (i, p) and g[j] == g[i])
        total -= math.log(positive / denominator)
    return total / (2 * b)


def reference_metric(h1, h2, labels, groups, w, bias) -> float:
    """For each anchor a: (h1[a], h2[a]) -> 1; the first later sample (cyclically) of a's group with a's prototype
    -> 1; the first later sample of a's group with another prototype -> 0. Mean BCE of w . |h1[a] - h2[j]| + bias."""
    b = len(h1)
    pairs = []
    for a in range(b):
        pairs.append((a, a, 1.0))
        for target in (1.0, 0.0):
            for step in range(1, b):
                j = (a + step) % b
                if groups[j] == groups[a] and (labels[j] == labels[a]) == (target == 1.0):
                    pairs.append((a, j, target))
                    break
    total = 0.0
    for a, j, y in pairs:
        s = float(w @ np.abs(h1[a] - h2[j]) + bias)
        total += math.log1p(math.exp(-s)) if y == 1.0 else math.log1p(math.exp(s))
    return total / len(pairs)


def reference_prototype(h1, h2, labels, weight, bias, k) -> float:
    """Mean cross-entropy of the classifier's first k outputs to the prototype id, over both views."""
    h = np.concatenate([h1, h2])
    y = np.concatenate([labels, labels])
    total = 0.0
    for i in range(len(h)):
        logits = [float(weight[c] @ h[i] + bias[c]) for c in range(k)]
        top = max(logits)
        total += top + math.log(sum(math.exp(l - top) for l in logits)) - logits[y[i]]
    return total / len(h)


def _method(prototypes=4, active=None, n=40, seed=0, **kw) -> SPCL:
    method = SPCL(TinyEncoder(seed), temperature=kw.pop("temperature", 0.5), prototypes=prototypes, **kw).double()
    gen = torch.Generator().manual_seed(seed + 1)
    method.active_prototypes = active or prototypes
    method.prototype_ids = torch.randint(0, method.active_prototypes, (n,), generator=gen)
    return method


@pytest.mark.parametrize("batch", [2, 5, 12])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
@pytest.mark.parametrize("prototypes,active", [(2, 2), (6, 3), (8, 8)])
@pytest.mark.parametrize("grouped", [False, True])
def test_each_term_and_the_total_match_the_plain_loop_reference(batch, temperature, prototypes, active, grouped):
    weights = dict(instance_weight=0.7, metric_weight=1.3, prototype_weight=0.4)
    method = _method(prototypes, active, temperature=temperature, seed=batch + prototypes, **weights)
    gen = torch.Generator().manual_seed(batch * 7 + int(grouped))
    v1 = torch.randn(batch, 6, generator=gen, dtype=torch.float64)
    v2 = torch.randn(batch, 6, generator=gen, dtype=torch.float64)
    indices = torch.randperm(40, generator=gen)[:batch]
    groups = torch.randint(0, 2, (batch,), generator=gen) if grouped else torch.zeros(batch, dtype=torch.long)
    out = method(v1, v2, groups=groups if grouped else None, indices=indices)

    with torch.no_grad():
        h1, z1 = (t.numpy() for t in method.encoder(v1))
        h2, z2 = (t.numpy() for t in method.encoder(v2))
    labels, g = method.prototype_ids[indices].numpy(), groups.numpy()
    instance = reference_nt_xent(z1, z2, temperature, g)
    metric = reference_metric(h1, h2, labels, g, method.metric.weight.detach().numpy()[0],
                              float(method.metric.bias.detach()))
    proto = reference_prototype(h1, h2, labels, method.classifier.weight.detach().numpy(),
                                method.classifier.bias.detach().numpy(), active)
    assert out["instance"].item() == pytest.approx(instance, rel=1e-9)
    assert out["metric"].item() == pytest.approx(metric, rel=1e-9)
    assert out["prototype"].item() == pytest.approx(proto, rel=1e-9)
    assert out["loss"].item() == pytest.approx(0.7 * instance + 1.3 * metric + 0.4 * proto, rel=1e-9)
    assert len(out["projections"]) == 2 and len(out["logits"]) == 1


def test_metric_pairs_respect_groups_and_skip_anchors_without_partners():
    """All samples share one prototype: no negative pairs; singleton groups: no same-prototype partners."""
    method = _method(2, n=6)
    method.prototype_ids = torch.zeros(6, dtype=torch.long)
    v = torch.randn(6, 6, dtype=torch.float64)
    out = method(v, v, groups=torch.arange(6), indices=torch.arange(6))  # identical views: |h1 - h2| = 0
    s = float(method.metric.bias.detach())
    assert out["metric"].item() == pytest.approx(math.log1p(math.exp(-s)), rel=1e-9)  # only own-image pairs


def test_gradients_reach_the_encoder_and_both_heads():
    method = _method(4)
    v1, v2 = torch.randn(8, 6, dtype=torch.float64), torch.randn(8, 6, dtype=torch.float64)
    method(v1, v2, indices=torch.arange(8))["loss"].backward()
    for name in ("encoder.backbone.weight", "encoder.projector.weight", "metric.weight", "classifier.weight"):
        assert method.get_parameter(name).grad.abs().sum() > 0, name


# ---------------------------------------------------------------------------------------------- prototypes


def _blobs(n_per: int = 30, k: int = 6, dim: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 10
    truth = np.repeat(np.arange(k), n_per)
    return (centres[truth] + rng.normal(size=(len(truth), dim))).astype(np.float32), truth


def test_pca_whitening_gives_unit_covariance_and_caps_the_dimension():
    x, _ = _blobs()
    w = pca_whiten(x, 8)
    assert w.shape == (180, 8) and w.dtype == np.float32
    np.testing.assert_allclose(np.cov(w.astype(np.float64), rowvar=False), np.eye(8), atol=1e-4)
    assert pca_whiten(x, 256).shape == (180, 12)  # capped by the feature dimension
    assert pca_whiten(x[:5], 256).shape == (5, 4)  # and by N - 1
    assert pca_whiten(np.ones((10, 3)), 2).shape == (10, 0)  # no variance at all
    with pytest.raises(DataError, match="NaN"):
        pca_whiten(np.full((4, 3), np.nan), 2)


def test_prototype_labels_cover_the_set_and_are_deterministic():
    x, truth = _blobs()
    labels = prototype_labels(x, 6, pca_dim=8, iterations=20, seed=3)
    assert labels.shape == (180,) and labels.dtype == np.int64
    assert set(labels.tolist()) == set(range(6))  # K labels, all used on well-separated blobs
    # the clusters are the blobs (up to renaming)
    assert all(len(set(labels[truth == t])) == 1 for t in range(6))
    np.testing.assert_array_equal(labels, prototype_labels(x, 6, pca_dim=8, iterations=20, seed=3))
    capped = prototype_labels(x[:5], 512, pca_dim=8, iterations=5, seed=0)  # K capped by N
    assert capped.shape == (5,) and capped.max() < 5
    np.testing.assert_array_equal(prototype_labels(np.ones((7, 3)), 4), np.zeros(7))
    with pytest.raises(ConfigError, match="prototypes"):
        prototype_labels(x, 1)


def test_begin_epoch_clusters_reinitialises_the_classifier_and_keeps_no_state():
    method = SPCL(TinyEncoder(), temperature=0.5, prototypes=4, pca_dim=3, kmeans_iterations=5)
    x = torch.randn(30, 6)
    with pytest.raises(TrainingError, match="begin_epoch"):
        method(x[:4], x[:4], indices=torch.arange(4))
    calls = []

    def embed():
        calls.append(1)
        return method.encoder(x)[0]

    params = method.begin_epoch(2, embed, seed=1)
    assert calls == [1] and method.prototype_ids.shape == (30,) and method.active_prototypes == 4
    assert {id(p) for p in params} == {id(method.classifier.weight), id(method.classifier.bias)}
    first = method.classifier.weight.detach().clone()
    rng_state = torch.get_rng_state()
    method.begin_epoch(2, embed, seed=1)
    assert torch.equal(method.classifier.weight, first)  # deterministic per (seed, epoch): identical on all ranks
    assert torch.equal(torch.get_rng_state(), rng_state)  # the global RNG (augmentation) is untouched
    method.begin_epoch(3, embed, seed=1)
    assert not torch.equal(method.classifier.weight, first)
    with pytest.raises(DataError, match="indices"):
        method(x[:4], x[:4])
    # per-epoch state is not part of the checkpoint: a fresh method loads it and recomputes prototypes later
    state = method.state_dict()
    assert not any("prototype_ids" in k for k in state)
    fresh = SPCL(TinyEncoder(5), temperature=0.5, prototypes=4)
    fresh.load_state_dict(state)
    assert fresh.prototype_ids is None
    small = SPCL(TinyEncoder(), temperature=0.5, prototypes=50)
    small.begin_epoch(0, lambda: np.random.default_rng(0).normal(size=(9, 5)))  # numpy features, K capped
    assert small.active_prototypes == 9 and small.prototype_ids.max() < 9


# ---------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize("field,value", [
    ("prototypes", 1), ("pca_dim", 0), ("kmeans_iterations", 0), ("instance_weight", -1.0),
    ("metric_weight", 101.0), ("prototype_weight", -0.5), ("prototypes", "many"),
])
def test_options_validation_names_the_field(field, value):
    with pytest.raises(Exception, match=field):
        SPCLOptions(**{field: value})
    with pytest.raises(ConfigError, match=f"objective.{field}"):
        load_config(overrides=["objective.name=spcl", f"objective.{field}={value}", "mcl.stages=1"])


def test_all_zero_weights_and_unknown_options_are_rejected():
    with pytest.raises(ConfigError, match="all 0"):
        load_config(overrides=["objective.name=spcl", "objective.instance_weight=0", "objective.metric_weight=0",
                               "objective.prototype_weight=0"])
    with pytest.raises(ConfigError, match="protoypes"):
        load_config(overrides=["objective.name=spcl", "objective.protoypes=16"])
    with pytest.raises(ConfigError, match="instance_weight"):
        SPCL(TinyEncoder(), temperature=0.5, instance_weight=float("nan"))
    with pytest.raises(ConfigError, match="feature_dim"):
        SPCL(nn.Linear(3, 3), temperature=0.5)


def test_config_validates_and_builds_with_defaults_and_as_mcl_base():
    cfg = load_config(overrides=["objective.name=spcl", "objective.prototypes=64", "objective.metric_weight=0.5"])
    spec = objective_spec(cfg, 0)
    assert isinstance(spec.options, SPCLOptions) and cfg.mcl.stages > 1  # a base of MCL's stages
    assert spec.options.prototypes == 64 and spec.options.pca_dim == 256 and spec.options.kmeans_iterations == 20
    assert spec.identity()["options"]["metric_weight"] == 0.5  # the options are part of the stage key
    objective = build_objective(spec, TinyEncoder().float(), gather=False)
    assert objective.needs_indices and objective.needs_epoch_features and isinstance(objective.method, SPCL)
    objective.begin_epoch(0, lambda: torch.randn(100, 5))
    out = objective(torch.randn(8, 6), torch.randn(8, 6), groups=torch.zeros(8, dtype=torch.long),
                    indices=torch.arange(8))
    assert {"loss", "instance", "metric", "prototype"} == set(out)
    simclr = build_objective(objective_spec(load_config(), 0), TinyEncoder().float(), gather=False)
    assert not simclr.needs_indices and not simclr.needs_epoch_features and simclr.begin_epoch(0, None) is None


# ---------------------------------------------------------------------------------------------- training


@pytest.mark.slow
def test_one_stage_local_run_reports_each_term_and_resumes(tmp_path, data_root, monkeypatch):
    """objective.name=spcl through the local executor: per-epoch curves carry loss/instance, loss/metric and
    loss/prototype. Resuming from the epoch-1 checkpoint recomputes the same prototypes and the same
    re-initialised classifier at epoch 2 as the uninterrupted run (the trainer does not checkpoint its RNG, so
    the augmentations, and hence the weights after it, may differ)."""
    from mcl_ray.data.experiment_data import load_experiment_data
    from mcl_ray.plan.from_config import data_spec, stage_specs
    from mcl_ray.plan.local import run_local
    from mcl_ray.train.stage import StageContext, train_stage
    from tiny import tiny_config

    spcl = ["objective.name=spcl", "objective.prototypes=16", "objective.pca_dim=16", "mcl.stages=1"]
    cfg = tiny_config(tmp_path, data_root, *spcl)
    result = run_local(cfg, progress=False)
    history = json.loads((tmp_path / cfg.name / "stage_1" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    for h in history:
        assert all(math.isfinite(h[f"loss/{k}"]) for k in ("instance", "metric", "prototype")), h
        assert h["loss"] == pytest.approx(h["loss/instance"] + h["loss/metric"] + h["loss/prototype"], rel=1e-4)
    assert result.stages[0].integrated_eval["color"]["knn"] > 0.2

    seen = []
    original = SPCL.begin_epoch

    def spy(self, epoch, embed_train, *, seed=0):
        params = original(self, epoch, embed_train, seed=seed)
        seen.append((epoch, self.prototype_ids.clone(), self.classifier.weight.detach().clone()))
        return params

    monkeypatch.setattr(SPCL, "begin_epoch", spy)
    cfg = tiny_config(tmp_path / "resume", data_root, *spcl, "eval.online_knn_every=0")
    data = load_experiment_data(data_spec(cfg))
    spec = stage_specs(cfg)[0]
    checkpoints = []
    full = train_stage(spec, data.pretrain, None, ctx=StageContext(
        progress=False, on_epoch_end=lambda metrics, state: checkpoints.append(copy.deepcopy(state()))))
    resumed = train_stage(spec, data.pretrain, None, ctx=StageContext(progress=False), resume_state=checkpoints[0])
    assert [epoch for epoch, _, _ in seen] == [0, 1, 1]  # once per epoch; the resumed run starts at epoch 2
    assert torch.equal(seen[1][1], seen[2][1]) and torch.equal(seen[1][2], seen[2][2])
    assert not torch.equal(seen[0][1], seen[1][1])  # the prototypes follow the training
    assert [h["epoch"] for h in resumed.history] == [1, 2] and math.isfinite(resumed.history[-1]["loss/metric"])
    assert full.history[0] == resumed.history[0]
