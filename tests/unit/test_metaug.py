"""MetAug: the unified loss and the margin term against plain-loop float64 references, the bi-level generator
update against a literal second-order reference, options and config validation, state_dict round trips."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from pydantic import ValidationError

from mcl_ray.errors import ConfigError, DataError
from mcl_ray.objectives import build_objective
from mcl_ray.objectives.metaug import MetAug, margin_loss, metaug_terms, unified_loss
from mcl_ray.objectives.methods.metaug import MetAugOptions
from mcl_ray.plan.from_config import build_config, load_config, objective_spec

# ----------------------------------------------------------------------------------------------- references


def _mapped(s: float) -> float:
    return (s + 1.0) / 2.0


def reference_unified(s_pos, s_neg, gamma, pos_mask=None, neg_mask=None) -> list[float]:
    """log(1 + sum_p sum_n exp(gamma (s'_n - s'_p))) per anchor, one pair at a time."""
    out = []
    for a in range(len(s_pos)):
        total = 0.0
        for p in range(len(s_pos[a])):
            if pos_mask is not None and not pos_mask[a][p]:
                continue
            for n in range(len(s_neg[a])):
                if neg_mask is not None and not neg_mask[a][n]:
                    continue
                total += math.exp(gamma * (_mapped(s_neg[a][n]) - _mapped(s_pos[a][p])))
        out.append(math.log(1.0 + total))
    return out


def reference_margin(s_pos, s_neg, gen_pos, gen_neg, pos_mask=None, neg_mask=None) -> list[float]:
    """Per anchor: gamma+ = min(hardest positive, hardest negative), gamma- = max(...), from the original
    similarities mapped to [0, 1]; mean hinge of generated positives above gamma+ plus mean hinge of generated
    negatives below gamma-; 0 without a positive or a negative."""
    out = []
    for a in range(len(s_pos)):
        ps = [p for p in range(len(s_pos[a])) if pos_mask is None or pos_mask[a][p]]
        ns = [n for n in range(len(s_neg[a])) if neg_mask is None or neg_mask[a][n]]
        if not ps or not ns:
            out.append(0.0)
            continue
        hardest_pos = min(_mapped(s_pos[a][p]) for p in ps)
        hardest_neg = max(_mapped(s_neg[a][n]) for n in ns)
        upper, lower = min(hardest_pos, hardest_neg), max(hardest_pos, hardest_neg)
        pos_term = sum(max(_mapped(gen_pos[a][p]) - upper, 0.0) for p in ps) / len(ps)
        neg_term = sum(max(lower - _mapped(gen_neg[a][n]), 0.0) for n in ns) / len(ns)
        out.append(pos_term + neg_term)
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_terms(z1, z2, g1, g2, gamma, groups=None) -> dict[str, float]:
    """The three MetAug terms by explicit loops: anchor i (both views of each sample) has its other view as
    positive and every other sample's embeddings of its group as negatives; a generated anchor g_v(i) is
    compared with the same original candidates."""
    b = len(z1)
    z = _unit(np.concatenate([z1, z2]).astype(np.float64))
    gen = _unit(np.concatenate([g1, g2]).astype(np.float64))
    grp = np.zeros(2 * b, dtype=np.int64) if groups is None else np.concatenate([groups, groups])
    sums = {"unified": 0.0, "augmented": 0.0, "margin": 0.0}
    for i in range(2 * b):
        p = (i + b) % (2 * b)
        negs = [j for j in range(2 * b) if j not in (i, p) and grp[j] == grp[i]]
        s_pos, s_neg = [[z[i] @ z[p]]], [[z[i] @ z[j] for j in negs]]
        g_pos, g_neg = [[gen[i] @ z[p]]], [[gen[i] @ z[j] for j in negs]]
        sums["unified"] += reference_unified(s_pos, s_neg, gamma)[0]
        sums["augmented"] += reference_unified(g_pos, g_neg, gamma)[0]
        sums["margin"] += reference_margin(s_pos, s_neg, g_pos, g_neg)[0]
    return {k: v / (2 * b) for k, v in sums.items()}


# ----------------------------------------------------------------------------------------------- the losses


@pytest.mark.parametrize("anchors, positives, negatives", [(1, 1, 1), (3, 1, 5), (4, 3, 6), (2, 4, 2)])
@pytest.mark.parametrize("gamma", [1.0, 16.0, 64.0])
@pytest.mark.parametrize("masked", [False, True])
def test_unified_and_margin_match_loops(anchors, positives, negatives, gamma, masked):
    gen = torch.Generator().manual_seed(anchors * 100 + positives * 10 + negatives)
    sims = [torch.rand(anchors, k, generator=gen, dtype=torch.float64) * 2 - 1 for k in (positives, negatives)] * 2
    s_pos, s_neg, gen_pos, gen_neg = sims[0], sims[1], torch.rand_like(sims[0]) * 2 - 1, torch.rand_like(sims[1]) * 2 - 1
    pos_mask = neg_mask = None
    if masked:
        pos_mask = torch.rand(anchors, positives, generator=gen) > 0.3
        neg_mask = torch.rand(anchors, negatives, generator=gen) > 0.4
        pos_mask[0] = True
        neg_mask[-1] = False  # an anchor without negatives: loss 0
    lists = [t.tolist() for t in (s_pos, s_neg, gen_pos, gen_neg)]
    masks = [None if m is None else m.tolist() for m in (pos_mask, neg_mask)]
    got = unified_loss(s_pos, s_neg, gamma, pos_mask, neg_mask)
    torch.testing.assert_close(got, torch.tensor(reference_unified(lists[0], lists[1], gamma, *masks),
                                                 dtype=torch.float64), rtol=1e-12, atol=1e-12)
    got = margin_loss(s_pos, s_neg, gen_pos, gen_neg, pos_mask, neg_mask)
    torch.testing.assert_close(got, torch.tensor(reference_margin(*lists, *masks), dtype=torch.float64),
                               rtol=1e-12, atol=1e-12)
    if masked:
        assert got[-1] == 0


def test_fully_masked_anchors_give_zero_loss_and_finite_gradients():
    s_pos = torch.rand(3, 2, dtype=torch.float64, requires_grad=True)
    s_neg = torch.rand(3, 4, dtype=torch.float64, requires_grad=True)
    neg_mask = torch.tensor([[True] * 4, [False] * 4, [True, False, False, True]])
    pos_mask = torch.tensor([[True, True], [True, False], [False, False]])
    loss = unified_loss(s_pos, s_neg, 16.0, pos_mask, neg_mask)
    assert loss[1] == 0 and loss[2] == 0 and loss[0] > 0
    loss.sum().backward()
    assert torch.isfinite(s_pos.grad).all() and torch.isfinite(s_neg.grad).all()
    assert s_pos.grad[1:].abs().sum() == 0 and s_neg.grad[1:].abs().sum() == 0


def test_margin_thresholds_are_not_trained():
    s_pos = torch.tensor([[0.5]], dtype=torch.float64, requires_grad=True)
    s_neg = torch.tensor([[0.2, -0.3]], dtype=torch.float64, requires_grad=True)
    gen_pos = torch.tensor([[0.9]], dtype=torch.float64, requires_grad=True)  # easier than gamma+: penalised
    gen_neg = torch.tensor([[-0.9, 0.8]], dtype=torch.float64, requires_grad=True)  # -0.9 too easy: penalised
    margin_loss(s_pos, s_neg, gen_pos, gen_neg).sum().backward()
    assert s_pos.grad is None and s_neg.grad is None
    assert gen_pos.grad.item() > 0 and gen_neg.grad[0, 0] < 0 and gen_neg.grad[0, 1] == 0


@pytest.mark.parametrize("batch", [2, 5])
@pytest.mark.parametrize("dim", [3, 8])
@pytest.mark.parametrize("gamma", [4.0, 16.0])
@pytest.mark.parametrize("grouped", [False, True])
def test_metaug_terms_match_loops(batch, dim, gamma, grouped):
    rng = np.random.default_rng(batch * 10 + dim)
    z1, z2, g1, g2 = (rng.normal(size=(batch, dim)) for _ in range(4))
    groups = rng.integers(0, 2, size=batch) if grouped else None
    got = metaug_terms(*(torch.from_numpy(a) for a in (z1, z2, g1, g2)), gamma,
                       None if groups is None else torch.from_numpy(groups))
    expected = reference_terms(z1, z2, g1, g2, gamma, groups)
    for name, value in expected.items():
        assert got[name].dtype == torch.float64
        assert got[name].item() == pytest.approx(value, rel=1e-10, abs=1e-12), name


def test_generated_negatives_stay_in_the_anchors_group():
    """Moving a generated feature of another group changes no term; moving one of the same group does."""
    torch.manual_seed(0)
    z1, z2, g1, g2 = (torch.randn(4, 5, dtype=torch.float64) for _ in range(4))
    groups = torch.tensor([0, 0, 1, 1])
    base = metaug_terms(z1, z2, g1, g2, 16.0, groups)
    z1_other = z1.clone()
    z1_other[2] = torch.randn(5, dtype=torch.float64)  # sample 2 (group 1): only group 1's anchors see it
    moved = metaug_terms(z1_other, z2, g1, g2, 16.0, groups)
    # anchors of group 0 (rows 0, 1, 4, 5) never see sample 2; recompute with group 0 alone to compare
    keep = torch.tensor([0, 1])
    alone = metaug_terms(z1[keep], z2[keep], g1[keep], g2[keep], 16.0)
    alone_moved = metaug_terms(z1_other[keep], z2[keep], g1[keep], g2[keep], 16.0)
    for name in base:
        assert alone[name] == alone_moved[name]
        assert base[name] != moved[name]


def test_shape_errors():
    with pytest.raises(DataError, match="s_pos, s_neg"):
        unified_loss(torch.zeros(3, 1), torch.zeros(2, 4), 16.0)
    with pytest.raises(DataError, match="neg_mask"):
        unified_loss(torch.zeros(3, 1), torch.zeros(3, 4), 16.0, neg_mask=torch.ones(3, 4))
    with pytest.raises(DataError, match="g1, g2"):
        metaug_terms(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, 5), torch.zeros(3, 5), 16.0)
    with pytest.raises(DataError, match="groups"):
        metaug_terms(*(torch.randn(3, 4) for _ in range(4)), 16.0, torch.tensor([0, 1]))


# ----------------------------------------------------------------------------------------------- options


def _spec(**objective):
    return objective_spec(build_config({"objective": {"name": "metaug", **objective}}), 0)


def test_options_defaults_and_config_loader():
    assert MetAugOptions().model_dump() == {
        "gamma": 16.0, "generator_hidden": 2048, "augmented_weight": 0.1, "margin_weight": 0.1,
        "generator_lr": 0.03, "generator_momentum": 0.9, "generator_weight_decay": 1e-4, "virtual_lr": 0.03,
    }
    cfg = load_config(overrides=["objective.name=metaug", "objective.gamma=8", "objective.generator_hidden=16",
                                 "objective.margin_weight=0"])
    spec = objective_spec(cfg, 0)
    assert spec.name == "metaug" and spec.options.gamma == 8 and spec.options.generator_hidden == 16
    assert spec.identity()["options"]["margin_weight"] == 0  # part of the stage key
    assert _spec(momentum=0.5).options == MetAugOptions()  # other methods' options are ignored


@pytest.mark.parametrize("field, value", [
    ("gamma", 0), ("gamma", -1), ("generator_hidden", 0), ("augmented_weight", -0.1), ("augmented_weight", 1.5),
    ("margin_weight", -1), ("generator_lr", 0), ("generator_momentum", 1.0), ("generator_weight_decay", -1e-4),
    ("virtual_lr", 0),
])
def test_out_of_range_options_name_the_field(field, value):
    with pytest.raises(ValidationError, match=field):
        MetAugOptions(**{field: value})
    with pytest.raises(ConfigError, match=f"objective.{field}"):
        _spec(**{field: value})


def test_misspelt_option_suggests_the_field():
    with pytest.raises(ConfigError, match="did you mean 'objective.virtual_lr'"):
        _spec(virtual_rl=0.1)


# ----------------------------------------------------------------------------------------------- the method


class TinyEncoder(nn.Module):
    """Linear backbone + tanh + linear projector: smooth, so second derivatives are non-trivial."""

    def __init__(self, proj_dim: int = 4, norm: bool = False) -> None:
        super().__init__()
        self.backbone, self.projector, self.proj_dim = nn.Linear(6, 5), nn.Linear(5, proj_dim), proj_dim
        self.norm = nn.BatchNorm1d(5) if norm else nn.Identity()

    def forward(self, x):
        h = torch.tanh(self.norm(self.backbone(x)))
        return h, self.projector(h)


def _method(seed=0, dtype=torch.float64, norm=False, **options) -> MetAug:
    torch.manual_seed(seed)
    kw = dict(temperature=0.2, gamma=4.0, generator_hidden=7, augmented_weight=0.5, margin_weight=0.5,
              generator_lr=0.1, generator_momentum=0.9, generator_weight_decay=1e-3, virtual_lr=0.5)
    return MetAug(TinyEncoder(norm=norm), **{**kw, **options}).to(dtype)


def _batch(n=6, seed=1, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=gen, dtype=dtype), torch.randn(n, 6, generator=gen, dtype=dtype)


def _encoder_optimizer(method):
    return torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.05)


def _train_step(method, v1, v2, groups=None, scale=1.0):
    optimizer = _encoder_optimizer(method)
    out = method(v1, v2, groups=groups)
    optimizer.zero_grad()
    (scale * out["loss"]).backward()  # scale: what a regulariser mix (1 - weight) sends into the method's loss
    grads = {n: p.grad.clone() for n, p in method.encoder.named_parameters()}
    optimizer.step()
    method.after_step()
    return out, grads


def _generator_loss(method, theta, phi, v1, v2, groups):
    """The encoder loss written out by hand for TinyEncoder (no functional_call): weights theta, generator
    weights phi (one list of (w1, b1, w2, b2, w3, b3) per view)."""

    def encode(x):
        h = torch.tanh(x @ theta["backbone.weight"].T + theta["backbone.bias"])
        return h @ theta["projector.weight"].T + theta["projector.bias"]

    def generate(z, w):
        x = torch.relu(z @ w[0].T + w[1])
        x = torch.relu(x @ w[2].T + w[3])
        return nn.functional.normalize(x @ w[4].T + w[5], dim=1)

    z1, z2 = encode(v1), encode(v2)
    terms = metaug_terms(z1, z2, generate(z1, phi[0]), generate(z2, phi[1]), method.gamma, groups)
    return terms["unified"] + method.augmented_weight * terms["augmented"] + method.margin_weight * terms["margin"]


def _literal_generator_gradient(method, v1, v2, groups, scale=1.0, second_order=True):
    """(L(theta', phi), L(theta, phi), grad_theta L(theta, phi), d L(theta', phi) / d phi) with
    theta' = theta - alpha * scale * grad_theta L(theta, phi), differentiated through the gradient
    (create_graph), the way the paper and the released code write it."""
    theta = {n: p.detach().clone().requires_grad_() for n, p in method.encoder.named_parameters()}
    phi = [[p.detach().clone().requires_grad_() for p in g.parameters()] for g in method.generators]
    inner = _generator_loss(method, theta, phi, v1, v2, groups)
    grads = torch.autograd.grad(inner, list(theta.values()), create_graph=second_order, retain_graph=True)
    virtual = {n: t - method.virtual_lr * scale * g for (n, t), g in zip(theta.items(), grads)}
    outer = _generator_loss(method, virtual, phi, v1, v2, groups)
    expected = torch.autograd.grad(outer, [p for view in phi for p in view])
    return outer.detach(), inner.detach(), [g.detach() for g in grads], expected


@pytest.mark.parametrize("groups", [None, torch.tensor([0, 1, 0, 1, 1, 0])])
@pytest.mark.parametrize("scale", [1.0, 0.7])
def test_generator_update_is_the_second_order_virtual_step(groups, scale):
    method = _method()
    v1, v2 = _batch()
    before = [p.detach().clone() for p in method.generators.parameters()]
    outer, inner, encoder_grads, expected = _literal_generator_gradient(method, v1, v2, groups, scale)
    _, first_order = _literal_generator_gradient(method, v1, v2, groups, scale, second_order=False)[2:]

    out, grads = _train_step(method, v1, v2, groups, scale)
    torch.testing.assert_close(out["loss"].detach(), inner, rtol=1e-12, atol=1e-12)
    for name, g in zip(dict(method.encoder.named_parameters()), encoder_grads):
        torch.testing.assert_close(grads[name], scale * g, rtol=1e-10, atol=1e-12)  # the surrogate's gradient
    assert method.last_generator_loss == pytest.approx(outer.item(), rel=1e-12)
    lr, wd = 0.1, 1e-3  # SGD's first step: momentum buffer = gradient + weight decay
    for p, p0, g in zip(method.generators.parameters(), before, expected):
        torch.testing.assert_close(p.detach(), p0 - lr * (g + wd * p0), rtol=1e-9, atol=1e-12)
    # the second-order term matters here: a first-order step would move the generators elsewhere
    assert max((a - b).abs().max().item() for a, b in zip(expected, first_order)) > 1e-6


def test_mixed_with_a_regulariser_the_virtual_step_follows_the_trainers_whole_loss():
    """Objective total = 0.7 * MetAug + 0.3 * DimCL: theta' steps along the gradient of the total (what the
    encoder really follows); the backward hook reads the 0.7 so the derivative through theta' stays exact."""
    from mcl_ray.objectives.regularizers.dimcl import dimcl_loss

    torch.manual_seed(0)
    spec = _spec(gamma=4.0, generator_hidden=7, augmented_weight=0.5, margin_weight=0.5, virtual_lr=0.5,
                 generator_lr=0.1, generator_momentum=0.0, generator_weight_decay=0.0, gather=False,
                 regularizers=[{"name": "dimcl", "weight": 0.3}])
    objective = build_objective(spec, TinyEncoder()).double()
    method = objective.method
    v1, v2 = _batch()
    theta = {n: p.detach().clone().requires_grad_() for n, p in method.encoder.named_parameters()}
    phi = [[p.detach().clone().requires_grad_() for p in g.parameters()] for g in method.generators]

    def total(weights):
        z = [torch.tanh(v @ weights["backbone.weight"].T + weights["backbone.bias"]) @ weights["projector.weight"].T
             + weights["projector.bias"] for v in (v1, v2)]
        return 0.7 * _generator_loss(method, weights, phi, v1, v2, None) + 0.3 * dimcl_loss(*z, 0.1)

    grads = torch.autograd.grad(total(theta), list(theta.values()), create_graph=True)
    virtual = {n: t - method.virtual_lr * g for (n, t), g in zip(theta.items(), grads)}
    expected = torch.autograd.grad(_generator_loss(method, virtual, phi, v1, v2, None), [p for w in phi for p in w])

    before = [p.detach().clone() for p in method.generators.parameters()]
    optimizer = _encoder_optimizer(objective)
    out = objective(v1, v2, groups=None)
    assert {"loss", "method", "reg/dimcl"} <= set(out)
    out["loss"].backward()
    optimizer.step()
    objective.after_step()
    for p, p0, g in zip(method.generators.parameters(), before, expected):
        torch.testing.assert_close(p.detach(), p0 - 0.1 * g, rtol=1e-9, atol=1e-12)


def test_generator_update_with_batchnorm_matches_functional_reference_and_keeps_running_stats():
    """A BN encoder: the virtual step differentiates the train-mode function (batch statistics), and the
    running statistics move only with the trainer's own forward (two views: two updates)."""
    from torch.func import functional_call

    method = _method(norm=True)
    v1, v2 = _batch(8)
    enc = method.encoder
    buffers = {n: b.clone() for n, b in enc.named_buffers()}
    theta = {n: p.detach().clone().requires_grad_() for n, p in enc.named_parameters()}
    phi = [{n: p.detach().clone().requires_grad_() for n, p in g.named_parameters()} for g in method.generators]

    def loss(weights):
        z = [functional_call(enc, {**{n: b.clone() for n, b in buffers.items()}, **weights}, (v,))[1] for v in (v1, v2)]
        return method._losses(*z, None, phi)["loss"]

    grads = torch.autograd.grad(loss(theta), list(theta.values()), create_graph=True)
    outer = loss({n: t - method.virtual_lr * g for (n, t), g in zip(theta.items(), grads)})
    expected = torch.autograd.grad(outer, [p for w in phi for p in w.values()])

    before = [p.detach().clone() for p in method.generators.parameters()]
    method(v1, v2)  # what the trainer's forward alone does to the running statistics
    stats_after_forward = {n: b.clone() for n, b in enc.named_buffers()}
    for n, b in buffers.items():
        enc.get_buffer(n).copy_(b)
    _train_step(method, v1, v2)
    for n, b in enc.named_buffers():
        torch.testing.assert_close(b, stats_after_forward[n], rtol=0, atol=0)
    assert int(enc.norm.num_batches_tracked) == 2
    for p, p0, g in zip(method.generators.parameters(), before, expected):
        torch.testing.assert_close(p.detach(), p0 - 0.1 * (g + 1e-3 * p0), rtol=1e-9, atol=1e-12)


def test_a_training_step_moves_encoder_and_generators_and_reports_terms():
    method = _method(dtype=torch.float32)
    encoder_before = [p.detach().clone() for p in method.encoder.parameters()]
    generators_before = [p.detach().clone() for p in method.generators.parameters()]
    out, _ = _train_step(method, *_batch(dtype=torch.float32))
    assert {"loss", "projections", "unified", "augmented", "margin"} <= set(out)
    assert all(out[k].ndim == 0 and not out[k].requires_grad for k in ("unified", "augmented", "margin"))
    assert all(not torch.equal(a, b) for a, b in zip(encoder_before, method.encoder.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(generators_before, method.generators.parameters()))
    assert all(p.grad is None for p in method.generators.parameters())


def test_generators_are_invisible_to_the_trainers_optimizer_and_clipping():
    from mcl_ray.train.optim import build_optimizer
    from mcl_ray.train.spec import TrainSpec

    objective = build_objective(_spec(generator_hidden=8, gather=False), TinyEncoder())
    generator_ids = {id(p) for p in objective.method.generators.parameters()}
    optimizer = build_optimizer(objective, TrainSpec(epochs=1, batch_size=4, optimizer="sgd", lr=0.1))
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimized and not optimized & generator_ids
    assert all(not p.requires_grad for p in objective.method.generators.parameters())


def test_eval_and_no_backward_leave_the_generators_alone():
    method = _method()
    before = [p.detach().clone() for p in method.generators.parameters()]
    v1, v2 = _batch()
    method.eval()
    method(v1, v2)["loss"]
    method.after_step()
    method.train()
    with torch.no_grad():
        method(v1, v2)
    method.after_step()
    method(v1, v2)  # a forward whose loss never reaches backward
    method.after_step()
    assert all(torch.equal(a, b) for a, b in zip(before, method.generators.parameters()))


def test_zero_weights_skip_the_generator_step():
    method = _method(augmented_weight=0.0, margin_weight=0.0)
    before = [p.detach().clone() for p in method.generators.parameters()]
    out, _ = _train_step(method, *_batch())
    assert out["loss"].item() == pytest.approx(out["unified"].item())
    assert all(torch.equal(a, b) for a, b in zip(before, method.generators.parameters()))


def test_state_dict_round_trip_restores_generators_and_their_momentum():
    v1, v2 = _batch()
    method = _method()
    _train_step(method, v1, v2)
    buf = io.BytesIO()
    torch.save(method.state_dict(), buf)  # as the epoch checkpoint does; loaded back as the resume does
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    restored = _method(seed=5)
    assert not torch.equal(restored.generators[0][0].weight, method.generators[0][0].weight)
    restored.load_state_dict(state)
    for a, b in zip(method.state_dict().values(), restored.state_dict().values()):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b)
    _train_step(method, *_batch(seed=2))  # momentum included: the next step is the same
    _train_step(restored, *_batch(seed=2))
    for a, b in zip(method.generators.parameters(), restored.generators.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_build_objective_and_constructor_checks():
    objective = build_objective(_spec(generator_hidden=8, gather=False), TinyEncoder())
    assert isinstance(objective.method, MetAug) and objective.method.generators[0][0].out_features == 8
    out = objective(*_batch(dtype=torch.float32), groups=torch.tensor([0, 0, 1, 1, 0, 1]))
    assert torch.isfinite(out["loss"])
    with pytest.raises(ConfigError, match="objective.virtual_lr"):
        MetAug(TinyEncoder(), temperature=0.2, virtual_lr=0)
    with pytest.raises(ConfigError, match="proj_dim"):
        MetAug(nn.Linear(3, 3), temperature=0.2)


# ----------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_one_stage_local_run_trains_metaug_and_resumes_with_its_generators(tmp_path, data_root):
    """The trainer runs MetAug (its optimizer, after_step, epoch checkpoints of objective.state_dict()), and a
    stage resumed from an epoch checkpoint restores the generators and their optimizer."""
    from mcl_ray.data.experiment_data import load_experiment_data
    from mcl_ray.plan.from_config import data_spec, stage_specs
    from mcl_ray.plan.local import run_local
    from mcl_ray.train.stage import StageContext, train_stage
    from tiny import tiny_config

    cfg = tiny_config(tmp_path, data_root, "mcl.stages=1", "train.epochs=2", "eval.online_knn_every=0",
                      "objective.name=metaug", "objective.generator_hidden=32")
    result = run_local(cfg, progress=False, tensorboard=False)
    history = result.stages[0].history
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(np.isfinite(h["loss"]) for h in history)

    spec, data = stage_specs(cfg)[0], load_experiment_data(data_spec(cfg))
    saved = []  # each epoch checkpoint serialised as the worker does (state_dict() shares the live storage)

    def save(metrics, state_fn):
        buf = io.BytesIO()
        torch.save(state_fn(), buf)
        saved.append(buf.getvalue())

    train_stage(spec, data.pretrain, ctx=StageContext(progress=False, on_epoch_end=save))
    states = [torch.load(io.BytesIO(b), weights_only=True) for b in saved]  # loaded the way a resume loads it
    first, last = states[0]["method"], states[1]["method"]
    generator_keys = [k for k in first if ".generators." in k]
    assert generator_keys and any(k.endswith("_extra_state") for k in first)
    assert any(not torch.equal(first[k], last[k]) for k in generator_keys)  # epoch 2 moved the generators
    resumed_states = []
    ctx = StageContext(progress=False, on_epoch_end=lambda metrics, state_fn: resumed_states.append(state_fn()))
    train_stage(spec, data.pretrain, ctx=ctx, resume_state=states[0])
    assert len(resumed_states) == 1 and resumed_states[0]["epoch"] == 1


def test_a_vit_encoder_takes_the_generator_step():
    """timm's ViTs use fused attention, which forward-mode AD cannot differentiate; the virtual step must still run."""
    from mcl_ray.models.encoder import build_encoder
    from mcl_ray.plan.from_config import build_config, model_spec

    cfg = build_config({"model": {"backbone": "test_vit", "patch_size": 4, "proj_hidden_dim": 32, "proj_dim": 16},
                        "data": {"image_size": 16}})
    torch.manual_seed(0)
    objective = build_objective(_spec(generator_hidden=16, gather=False), build_encoder(model_spec(cfg)))
    generators_before = [p.detach().clone() for p in objective.method.generators.parameters()]
    optimizer = torch.optim.SGD([p for p in objective.parameters() if p.requires_grad], lr=0.1)
    x1, x2 = torch.rand(6, 3, 16, 16), torch.rand(6, 3, 16, 16)
    loss = objective(x1, x2)["loss"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    objective.after_step()
    assert all(not torch.equal(a, b) for a, b in zip(generators_before, objective.method.generators.parameters()))


def test_the_unused_temperature_is_left_out_of_metaugs_stage_key():
    """MetAug's scale is gamma: trials that differ only in objective.temperature train the same stages."""
    from mcl_ray.plan.from_config import build_config, objective_spec

    def identity(name, temperature):
        return objective_spec(build_config({"objective": {"name": name, "temperature": temperature}}), 0).identity()

    assert identity("metaug", 0.1) == identity("metaug", 0.4)
    assert identity("simclr", 0.1) != identity("simclr", 0.4)
