"""Contrastive losses against explicit-loop NumPy references, the MoCo machinery, and building objectives."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from mcl_ray.errors import ConfigError, DataError
from mcl_ray.objectives import (
    MoCo,
    SimCLR,
    build_objective,
    gather_no_grad,
    gather_with_grad,
    moco_infonce_loss,
    nt_xent_loss,
    rank_offset,
)
from mcl_ray.plan.from_config import build_config, objective_spec

BATCHES = [2, 5, 16]
DIMS = [3, 32]
TEMPERATURES = [0.05, 0.2, 1.0]


# ----------------------------------------------------------------------------------------------- references


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_nt_xent(z1: np.ndarray, z2: np.ndarray, temperature: float, groups=None) -> float:
    """SimCLR NT-Xent, one anchor at a time; negatives = other embeddings of the anchor's group."""
    b = len(z1)
    z = _unit(np.concatenate([z1, z2]).astype(np.float64))
    g = np.zeros(2 * b, dtype=np.int64) if groups is None else np.concatenate([groups, groups])
    total = 0.0
    for i in range(2 * b):
        p = (i + b) % (2 * b)
        positive = math.exp(z[i] @ z[p] / temperature)
        denominator = positive
        for j in range(2 * b):
            if j != i and j != p and g[j] == g[i]:
                denominator += math.exp(z[i] @ z[j] / temperature)
        total += -math.log(positive / denominator)
    return total / (2 * b)


def reference_moco(q, k, queue, temperature, groups=None, queue_groups=None) -> float:
    """MoCo InfoNCE, one query at a time; negatives = filled queue slots of the query's group."""
    q, k = _unit(q.astype(np.float64)), _unit(k.astype(np.float64))
    total = 0.0
    for i in range(len(q)):
        positive = math.exp(q[i] @ k[i] / temperature)
        denominator = positive
        for j in range(len(queue)):
            if queue_groups is not None and queue_groups[j] < 0:
                continue
            if groups is not None and queue_groups[j] != groups[i]:
                continue
            denominator += math.exp(q[i] @ queue[j].astype(np.float64) / temperature)
        total += -math.log(positive / denominator)
    return total / len(q)


def mixed_groups(batch: int) -> np.ndarray:
    """Groups 0..2 cycling, plus a singleton group (label 9) in the last row."""
    return np.array([i % 3 for i in range(batch - 1)] + [9], dtype=np.int64)


GROUPINGS = {
    "none": lambda b: None,
    "all_equal": lambda b: np.full(b, 4, dtype=np.int64),
    "mixed_with_singleton": mixed_groups,
}


def _tensor(x):
    return None if x is None else torch.from_numpy(x)


# ----------------------------------------------------------------------------------------------- NT-Xent


@pytest.mark.parametrize("grouping", sorted(GROUPINGS))
@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("batch", BATCHES)
def test_nt_xent_matches_reference(batch, dim, temperature, grouping):
    rng = np.random.default_rng(batch * 1000 + dim)
    z1, z2 = rng.normal(size=(batch, dim)), rng.normal(size=(batch, dim))
    groups = GROUPINGS[grouping](batch)
    expected = reference_nt_xent(z1, z2, temperature, groups)
    got = nt_xent_loss(torch.from_numpy(z1), torch.from_numpy(z2), temperature, _tensor(groups))
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(expected, rel=1e-9, abs=1e-9)
    got32 = nt_xent_loss(torch.from_numpy(z1).float(), torch.from_numpy(z2).float(), temperature, _tensor(groups))
    assert got32.item() == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_nt_xent_all_equal_groups_is_standard_and_differs_from_mixed():
    rng = np.random.default_rng(0)
    z1, z2 = torch.from_numpy(rng.normal(size=(6, 8))), torch.from_numpy(rng.normal(size=(6, 8)))
    plain = nt_xent_loss(z1, z2, 0.2)
    assert nt_xent_loss(z1, z2, 0.2, torch.full((6,), 3)).item() == pytest.approx(plain.item(), abs=1e-12)
    assert nt_xent_loss(z1, z2, 0.2, torch.tensor([0, 0, 0, 1, 1, 1])).item() < plain.item()


def test_nt_xent_mixed_batch_is_the_weighted_sum_of_per_group_losses():
    rng = np.random.default_rng(1)
    z1, z2 = torch.from_numpy(rng.normal(size=(5, 4))), torch.from_numpy(rng.normal(size=(5, 4)))
    groups = torch.tensor([0, 1, 0, 1, 0])
    a, b = groups == 0, groups == 1
    mixed = nt_xent_loss(z1, z2, 0.1, groups)
    separate = (nt_xent_loss(z1[a], z2[a], 0.1) * 6 + nt_xent_loss(z1[b], z2[b], 0.1) * 4) / 10
    assert mixed.item() == pytest.approx(separate.item(), abs=1e-12)


def test_nt_xent_cross_group_embedding_has_no_influence():
    rng = np.random.default_rng(2)
    z1 = torch.from_numpy(rng.normal(size=(4, 6))).requires_grad_()
    z2 = torch.from_numpy(rng.normal(size=(4, 6))).requires_grad_()
    groups = torch.tensor([0, 0, 0, 5])  # sample 3 is alone in its group
    loss = nt_xent_loss(z1, z2, 0.05, groups)
    loss.backward()
    assert torch.all(z1.grad[3] == 0) and torch.all(z2.grad[3] == 0)
    assert z1.grad[:3].abs().sum() > 0
    with torch.no_grad():
        moved1, moved2 = z1.clone(), z2.clone()
        moved1[3], moved2[3] = 100 * moved1[0], -moved2[1]  # now very similar to group-0 embeddings
    assert nt_xent_loss(moved1, moved2, 0.05, groups).item() == loss.item()


def test_nt_xent_anchor_without_negatives_gives_zero_not_nan():
    z1 = torch.randn(3, 5, requires_grad=True)
    z2 = torch.randn(3, 5, requires_grad=True)
    loss = nt_xent_loss(z1, z2, 0.05, torch.tensor([0, 1, 2]))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(z1.grad).all() and torch.all(z1.grad == 0)


def test_nt_xent_with_negatives_averages_only_anchors_that_have_negatives():
    rng = np.random.default_rng(3)
    z1, z2 = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    groups = mixed_groups(7)  # the last sample is alone in its group: its two anchors have no negative
    kept = reference_nt_xent(z1[:-1], z2[:-1], 0.1, groups[:-1])  # the lonely anchors add exactly 0
    got_all = nt_xent_loss(torch.from_numpy(z1), torch.from_numpy(z2), 0.1, torch.from_numpy(groups))
    got = nt_xent_loss(torch.from_numpy(z1), torch.from_numpy(z2), 0.1, torch.from_numpy(groups), anchors="with_negatives")
    assert got_all.item() == pytest.approx(kept * 12 / 14, rel=1e-9)
    assert got.item() == pytest.approx(kept, rel=1e-9)
    # without groups (stage 1) every anchor has negatives: the same loss either way
    plain = nt_xent_loss(torch.from_numpy(z1), torch.from_numpy(z2), 0.1)
    assert nt_xent_loss(torch.from_numpy(z1), torch.from_numpy(z2), 0.1, anchors="with_negatives").item() == plain.item()
    with pytest.raises(ConfigError, match="objective.anchors"):
        nt_xent_loss(torch.from_numpy(z1), torch.from_numpy(z2), 0.1, anchors="some")


def test_simclr_anchors_option_is_in_the_stage_key_only_when_set():
    from mcl_ray.objectives.declarations import ObjectiveSpec
    from mcl_ray.objectives.methods.simclr import SimCLROptions

    default = ObjectiveSpec(name="simclr", temperature=0.2, options=SimCLROptions()).identity()
    assert default["options"] == {}  # keys made before the option existed stay valid
    changed = ObjectiveSpec(name="simclr", temperature=0.2, options=SimCLROptions(anchors="with_negatives")).identity()
    assert changed["options"] == {"anchors": "with_negatives"}


def test_nt_xent_gradients_are_finite_nonzero_and_match_finite_differences():
    rng = np.random.default_rng(3)
    z1 = torch.from_numpy(rng.normal(size=(4, 3))).requires_grad_()
    z2 = torch.from_numpy(rng.normal(size=(4, 3))).requires_grad_()
    groups = torch.tensor([0, 1, 0, 0])
    assert torch.autograd.gradcheck(lambda a, b: nt_xent_loss(a, b, 0.2, groups), (z1, z2))
    big1 = torch.randn(16, 32, requires_grad=True)
    big2 = torch.randn(16, 32, requires_grad=True)
    nt_xent_loss(big1, big2, 0.05, torch.from_numpy(mixed_groups(16))).backward()
    for grad in (big1.grad, big2.grad):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_nt_xent_low_precision_input_is_computed_in_float32():
    rng = np.random.default_rng(4)
    z1, z2 = rng.normal(size=(8, 16)), rng.normal(size=(8, 16))
    got = nt_xent_loss(torch.from_numpy(z1).bfloat16(), torch.from_numpy(z2).bfloat16(), 0.05)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(reference_nt_xent(z1, z2, 0.05), abs=0.1)


def test_nt_xent_rejects_bad_inputs_naming_the_argument():
    z = torch.randn(4, 3)
    with pytest.raises(DataError, match="z1, z2"):
        nt_xent_loss(z, torch.randn(4, 5), 0.2)
    with pytest.raises(DataError, match=r"groups: expected shape \(4,\)"):
        nt_xent_loss(z, z, 0.2, torch.zeros(3, dtype=torch.int64))
    with pytest.raises(DataError, match="groups: expected an integer"):
        nt_xent_loss(z, z, 0.2, torch.zeros(4))
    with pytest.raises(ConfigError, match="temperature"):
        nt_xent_loss(z, z, 0.0)


def test_gathers_are_identity_without_a_process_group():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x
    labels = torch.tensor([1, 2, 3])
    assert torch.equal(gather_no_grad(labels), labels)
    assert rank_offset(3) == 0


# ----------------------------------------------------------------------------------------------- MoCo loss


QUEUE_GROUPINGS = ["none", "unfilled_only", "groups_and_unfilled"]


def _queue_case(rng, batch, queue_len, grouping):
    """(groups, queue_groups): queued keys of groups 0..2 and 9, with two unfilled (-1) slots."""
    queue_groups = np.array([[0, 1, 2, 9][j % 4] for j in range(queue_len)], dtype=np.int64)
    queue_groups[rng.choice(queue_len, size=2, replace=False)] = -1
    if grouping == "none":
        return None, None
    if grouping == "unfilled_only":
        return None, queue_groups
    return mixed_groups(batch), queue_groups


@pytest.mark.parametrize("grouping", QUEUE_GROUPINGS)
@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("batch", BATCHES)
def test_moco_loss_matches_reference(batch, dim, temperature, grouping):
    rng = np.random.default_rng(batch * 1000 + dim + 7)
    q, k = rng.normal(size=(batch, dim)), rng.normal(size=(batch, dim))
    queue = _unit(rng.normal(size=(9, dim)))
    groups, queue_groups = _queue_case(rng, batch, 9, grouping)
    expected = reference_moco(q, k, queue, temperature, groups, queue_groups)
    got = moco_infonce_loss(
        torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(queue), temperature,
        _tensor(groups), _tensor(queue_groups),
    )
    assert got.item() == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_moco_loss_masked_queue_entries_have_no_influence_and_get_no_gradient():
    rng = np.random.default_rng(5)
    q = torch.from_numpy(rng.normal(size=(3, 4))).requires_grad_()
    k = torch.from_numpy(rng.normal(size=(3, 4)))
    queue = torch.from_numpy(_unit(rng.normal(size=(5, 4)))).requires_grad_()
    groups, queue_groups = torch.tensor([0, 0, 1]), torch.tensor([0, 1, -1, 2, 0])
    loss = moco_infonce_loss(q, k, queue, 0.1, groups, queue_groups)
    loss.backward()
    assert torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0
    assert queue.grad is None  # the queue is a constant
    with torch.no_grad():
        moved = queue.clone()
        moved[2], moved[3] = q[0] / q[0].norm(), q[2] / q[2].norm()  # unfilled slot, group nobody has
    assert moco_infonce_loss(q, k, moved, 0.1, groups, queue_groups).item() == loss.item()


def test_moco_loss_with_empty_queue_is_zero():
    q, k, queue = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3), torch.zeros(6, 3)
    loss = moco_infonce_loss(q, k, queue, 0.05, torch.zeros(4, dtype=torch.int64), torch.full((6,), -1))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(q.grad).all()


def test_moco_loss_rejects_groups_without_queue_groups():
    with pytest.raises(DataError, match="queue_groups"):
        moco_infonce_loss(torch.randn(2, 3), torch.randn(2, 3), torch.randn(4, 3), 0.2, torch.tensor([0, 1]))
    with pytest.raises(DataError, match="queue"):
        moco_infonce_loss(torch.randn(2, 3), torch.randn(2, 3), torch.randn(4, 5), 0.2)


# ----------------------------------------------------------------------------------------------- methods


class TinyEncoder(nn.Module):
    """Stand-in for mcl_ray.models.encoder.Encoder: forward(x) -> (h, z)."""

    def __init__(self, in_dim: int = 6, feature_dim: int = 5, proj_dim: int = 4) -> None:
        super().__init__()
        self.backbone = nn.Linear(in_dim, feature_dim)
        self.projector = nn.Linear(feature_dim, proj_dim)
        self.proj_dim = proj_dim

    def forward(self, x):
        h = self.backbone(x)
        return h, self.projector(h)


def test_simclr_method_is_nt_xent_on_encoder_outputs():
    torch.manual_seed(0)
    encoder = TinyEncoder()
    method = SimCLR(encoder, temperature=0.3)
    v1, v2, groups = torch.randn(5, 6), torch.randn(5, 6), torch.tensor([0, 0, 1, 1, 1])
    loss = method(v1, v2, groups)["loss"]
    expected = nt_xent_loss(encoder(v1)[1], encoder(v2)[1], 0.3, groups)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


def test_moco_momentum_encoder_is_a_frozen_copy():
    encoder = TinyEncoder()
    method = MoCo(encoder, temperature=0.2, queue_size=8)
    trainable = {id(p) for p in method.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in encoder.parameters()}
    for online, frozen in zip(encoder.parameters(), method.momentum_encoder.parameters()):
        assert not frozen.requires_grad and frozen is not online and torch.equal(frozen, online)
    assert {"queue", "queue_groups", "queue_ptr"} <= dict(method.named_buffers()).keys()


@pytest.mark.parametrize("momentum", [0.0, 0.9, 0.99])
def test_moco_after_step_is_an_ema(momentum):
    method = MoCo(TinyEncoder(), temperature=0.2, momentum=momentum, queue_size=8)
    old = [p.clone() for p in method.momentum_encoder.parameters()]
    with torch.no_grad():
        for p in method.encoder.parameters():
            p.add_(torch.randn_like(p))
    method.after_step()
    for before, online, after in zip(old, method.encoder.parameters(), method.momentum_encoder.parameters()):
        torch.testing.assert_close(after, momentum * before + (1 - momentum) * online)


def test_moco_enqueue_wraps_around_and_keeps_the_latest_keys():
    method = MoCo(TinyEncoder(proj_dim=2), temperature=0.2, queue_size=5)
    keys = torch.arange(20, dtype=torch.float32).reshape(10, 2)
    method.enqueue(keys[:3], torch.tensor([0, 1, 2]))
    method.enqueue(keys[3:6], torch.tensor([3, 4, 5]))  # slots 3, 4, then wraps to 0
    assert method.queue_ptr.item() == 1
    assert method.queue_groups.tolist() == [5, 1, 2, 3, 4]
    torch.testing.assert_close(method.queue, keys[[5, 1, 2, 3, 4]])
    method.enqueue(keys[:7], torch.arange(7))  # more keys than slots: the last 5 (2..6) from slot 1 on
    assert method.queue_groups.tolist() == [6, 2, 3, 4, 5]
    assert method.queue_ptr.item() == 1


def test_moco_forward_uses_the_queue_then_enqueues_one_key_per_image():
    torch.manual_seed(1)
    method = MoCo(TinyEncoder(), temperature=0.2, momentum=0.9, queue_size=10)
    with torch.no_grad():  # make the key encoder differ from the query encoder
        for p in method.momentum_encoder.parameters():
            p.add_(0.1)
    prior = torch.nn.functional.normalize(torch.randn(3, 4), dim=1)
    method.enqueue(prior, torch.tensor([0, 1, 0]))
    v1, v2, groups = torch.randn(4, 6), torch.randn(4, 6), torch.tensor([0, 1, 1, 0])
    q1, q2 = method.encoder(v1)[1], method.encoder(v2)[1]
    k1, k2 = method.momentum_encoder(v1)[1], method.momentum_encoder(v2)[1]
    queue, queue_groups = method.queue.numpy().copy(), method.queue_groups.numpy().copy()
    expected = 0.5 * (
        reference_moco(q1.detach().numpy(), k2.detach().numpy(), queue, 0.2, groups.numpy(), queue_groups)
        + reference_moco(q2.detach().numpy(), k1.detach().numpy(), queue, 0.2, groups.numpy(), queue_groups)
    )
    loss = method(v1, v2, groups)["loss"]
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.encoder.parameters())
    assert all(p.grad is None for p in method.momentum_encoder.parameters())
    assert method.queue_ptr.item() == 3 + 4  # one key per image: a queue of Q keys covers Q images
    slots = [3 + i for i in range(4)]
    torch.testing.assert_close(method.queue[slots], torch.nn.functional.normalize(k2.detach(), dim=1))
    assert method.queue_groups[slots].tolist() == groups.tolist()


def test_moco_asymmetric_is_mocov2_as_published_one_query_one_key_per_image():
    """symmetric=False: view 1 through the query encoder only, view 2 through the key encoder only, loss the InfoNCE
    of q1 against k2 and the queue; view 2's key is still the one enqueued."""
    torch.manual_seed(1)
    method = MoCo(TinyEncoder(), temperature=0.2, momentum=0.9, queue_size=10, symmetric=False)
    with torch.no_grad():
        for p in method.momentum_encoder.parameters():
            p.add_(0.1)
    method.enqueue(torch.nn.functional.normalize(torch.randn(3, 4), dim=1), torch.tensor([0, 1, 0]))
    v1, v2, groups = torch.randn(4, 6), torch.randn(4, 6), torch.tensor([0, 1, 1, 0])
    q1, k2 = method.encoder(v1)[1].detach().numpy(), method.momentum_encoder(v2)[1].detach()
    queue, queue_groups = method.queue.numpy().copy(), method.queue_groups.numpy().copy()
    seen = {"query": [], "key": []}
    method.encoder.register_forward_hook(lambda m, args, out: seen["query"].append(args[0]))
    method.momentum_encoder.register_forward_hook(lambda m, args, out: seen["key"].append(args[0]))
    out = method(v1, v2, groups)
    expected = reference_moco(q1, k2.numpy(), queue, 0.2, groups.numpy(), queue_groups)
    assert out["loss"].item() == pytest.approx(expected, abs=1e-5)
    assert len(seen["query"]) == 1 and seen["query"][0] is v1 and len(seen["key"]) == 1 and seen["key"][0] is v2
    assert "projections" not in out and len(out["logits"]) == 1
    torch.testing.assert_close(method.queue[3:7], torch.nn.functional.normalize(k2, dim=1))
    out["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.encoder.parameters())


def test_moco_symmetric_option_is_in_the_stage_key_only_when_off():
    from mcl_ray.objectives.declarations import ObjectiveSpec
    from mcl_ray.objectives.methods.moco import MoCoOptions

    default = ObjectiveSpec(name="moco", temperature=0.2, options=MoCoOptions()).identity()["options"]
    assert "symmetric" not in default  # keys made before the option existed stay valid
    assert ObjectiveSpec(name="moco", temperature=0.2, options=MoCoOptions(symmetric=False)).identity()["options"] == {
        **default, "symmetric": False}


def test_moco_eval_forward_does_not_enqueue_and_ungrouped_keys_get_label_zero():
    method = MoCo(TinyEncoder(), temperature=0.2, queue_size=6).eval()
    method(torch.randn(2, 6), torch.randn(2, 6))
    assert method.queue_ptr.item() == 0 and (method.queue_groups == -1).all()
    method.train()(torch.randn(2, 6), torch.randn(2, 6))
    assert method.queue_groups.tolist() == [0, 0, -1, -1, -1, -1]


def test_moco_rejects_bad_options_and_negative_groups():
    with pytest.raises(ConfigError, match="objective.momentum"):
        MoCo(TinyEncoder(), temperature=0.2, momentum=1.0)
    with pytest.raises(ConfigError, match="objective.queue_size"):
        MoCo(TinyEncoder(), temperature=0.2, queue_size=0)
    with pytest.raises(ConfigError, match="objective.proj_dim"):
        MoCo(nn.Linear(3, 3), temperature=0.2)
    with pytest.raises(ConfigError, match="objective.temperature"):
        MoCo(TinyEncoder(), temperature=-1.0)
    method = MoCo(TinyEncoder(), temperature=0.2, queue_size=4)
    with pytest.raises(DataError, match="groups"):
        method(torch.randn(2, 6), torch.randn(2, 6), torch.tensor([0, -1]))


# ------------------------------------------------------------------------------------------ from config


def spec(**objective):
    return objective_spec(build_config({"objective": objective}), 0)


def test_build_objective_gives_each_method_its_own_options():
    shared = dict(temperature=0.3, gather=False, momentum=0.5, queue_size=7)
    simclr = build_objective(spec(name="simclr", **shared), TinyEncoder())
    moco = build_objective(spec(name="MoCo", **shared), TinyEncoder())
    assert type(simclr.method) is SimCLR and simclr.method.temperature == 0.3  # MoCo's options ignored
    assert type(moco.method) is MoCo and moco.method.momentum == 0.5 and moco.method.queue.shape == (7, 4)
    assert spec(name="moco").options.model_dump() == {"momentum": 0.99, "queue_size": 4096, "per_group_queue": True,
                                                    "symmetric": True}


def test_objective_errors_name_the_field_and_suggest():
    with pytest.raises(ConfigError, match=r"objective.name: unknown objective 'simclrr' \(did you mean 'simclr'\?\); known: clip, metaug, moco, simclr, spcl"):
        spec(name="simclrr")
    with pytest.raises(ConfigError, match=r"objective.temprature: unknown option for objective 'simclr'.*did you mean 'objective.temperature'"):
        spec(name="simclr", temprature=0.2)
    with pytest.raises(ConfigError, match=r"objective.momentum: Input should be less than 1"):
        spec(name="moco", momentum=1.5)


def test_without_regularizers_the_objective_returns_the_methods_loss_untouched():
    torch.manual_seed(0)
    encoder = TinyEncoder()
    objective = build_objective(spec(name="simclr", temperature=0.3), encoder)
    v1, v2 = torch.randn(5, 6), torch.randn(5, 6)
    out = objective(v1, v2, groups=None)
    assert set(out) == {"loss"}
    assert torch.equal(out["loss"], nt_xent_loss(encoder(v1)[1], encoder(v2)[1], 0.3))


# ----------------------------------------------------------------------------------------------- MoCo per-group queues


def test_moco_per_group_rings_match_a_deque_per_group():
    """Each group writes only its own ring of queue_size // groups slots, in batch order, keeping its latest keys."""
    from collections import deque

    method = MoCo(TinyEncoder(proj_dim=1), temperature=0.2, queue_size=26)
    method.set_stage_groups(np.array([3, 7, 20]))  # rings of 8 slots; slots 24 and 25 are never used
    assert method.segment_size == 8 and method.queue_ptr.tolist() == [0, 0, 0]
    rings = {g: deque(maxlen=8) for g in (3, 7, 20)}
    rng = np.random.default_rng(0)
    value = 0.0
    for _ in range(30):
        groups = rng.choice([3, 7, 20], size=int(rng.integers(1, 12)))
        keys = torch.arange(value, value + len(groups), dtype=torch.float32)[:, None]
        value += len(groups)
        method.enqueue(keys, torch.from_numpy(groups))
        for g, k in zip(groups.tolist(), keys[:, 0].tolist()):
            rings[g].append(k)
        for segment, g in enumerate((3, 7, 20)):
            ring = slice(8 * segment, 8 * segment + 8)
            stored = method.queue[ring, 0][method.queue_groups[ring] == g]
            assert sorted(stored.tolist()) == sorted(rings[g])
        assert (method.queue_groups[24:] == -1).all()


def test_moco_per_group_queue_rejects_unknown_groups_and_falls_back_when_rings_would_be_tiny(caplog):
    method = MoCo(TinyEncoder(), temperature=0.2, queue_size=16)
    method.set_stage_groups(np.array([0, 5]))
    with pytest.raises(DataError, match="group 4"):
        method.enqueue(torch.randn(2, 4), torch.tensor([0, 4]))
    crowded = MoCo(TinyEncoder(), temperature=0.2, queue_size=4096)
    with caplog.at_level("WARNING", logger="mcl_ray"):
        crowded.set_stage_groups(np.arange(1000))  # rings of 4 keys: worse than sharing
    assert crowded.segment_size == 4096 and "this stage uses one shared queue" in caplog.text
    crowded.enqueue(torch.randn(3, 4), torch.tensor([7, 900, 7]))  # any group goes into the shared queue
    shared = MoCo(TinyEncoder(), temperature=0.2, queue_size=2, per_group_queue=False)
    shared.set_stage_groups(np.arange(3))  # one shared ring: any number of groups
    assert shared.segment_size == 2


@pytest.mark.parametrize("clusters", [10, 100])
def test_moco_per_group_queue_keeps_every_anchor_supplied_with_same_group_negatives(clusters):
    """Group batches (the official sampler) through the default queue (4096): with one shared queue many
    anchors find no key of their group (the queue holds the last few batches' groups); with per-group rings
    every anchor of the second epoch has at least min(ring, its group's size) same-group negatives."""
    from mcl_ray.mcl.sampler import GroupBatchSampler

    rng = np.random.default_rng(clusters)
    n = 20000
    groups = rng.choice(clusters, size=n, p=rng.dirichlet(np.full(clusters, 2.0)))
    sizes = np.bincount(groups, minlength=clusters)
    zero_fraction = {}
    for per_group in (False, True):
        method = MoCo(TinyEncoder(proj_dim=1), temperature=0.2, queue_size=4096, per_group_queue=per_group)
        method.set_stage_groups(np.unique(groups))
        sampler = GroupBatchSampler(groups, num_samples=n, global_batch_size=256, rank=0, world_size=1, seed=0)
        valid_counts = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            for idx in sampler:
                batch_groups = torch.from_numpy(groups[idx])
                if epoch == 1:
                    same = (method.queue_groups[None, :] == batch_groups[:, None]).sum(1)
                    valid_counts.append(same.numpy())
                    if per_group:
                        expected = np.minimum(method.segment_size, sizes[groups[idx]])
                        assert (same.numpy() >= expected).all() and (same.numpy() <= method.segment_size).all()
                method.enqueue(torch.zeros(len(idx), 1), batch_groups)
        zero_fraction[per_group] = float(np.mean(np.concatenate(valid_counts) == 0))
    assert zero_fraction[True] == 0.0
    # the starvation the rings fix (measured here: 17% of anchors with 10 clusters, 79% with 100)
    assert zero_fraction[False] > {10: 0.1, 100: 0.5}[clusters]
