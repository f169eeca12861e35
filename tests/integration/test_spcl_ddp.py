"""SPCL on two gloo processes: the prototypes are computed once (rank 0) and broadcast, and the gathered loss and
its gradients, averaged over the workers as DDP does, equal one process's on the whole batch."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from mcl_ray.objectives.spcl import SPCL, prototype_labels

from ddp_helpers import free_port, rank_slice  # noqa: E402

pytestmark = pytest.mark.slow

WORLD = 2


class _TinyEncoder(nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.backbone, self.projector = nn.Linear(6, 5), nn.Linear(5, 4)
        self.feature_dim, self.proj_dim = 5, 4

    def forward(self, x):
        h = torch.relu(self.backbone(x))
        return h, self.projector(h)


def _same_on_all_ranks(t: torch.Tensor) -> bool:
    other = t.detach().clone()
    dist.broadcast(other, src=0)
    return torch.equal(other, t.detach())


def _check_prototypes_are_computed_once_and_broadcast(rank: int) -> None:
    features = np.random.default_rng(0).normal(size=(60, 5)).astype(np.float32)
    calls = []

    def embed():
        calls.append(rank)
        assert rank == 0, "only rank 0 embeds the training set"
        return torch.from_numpy(features)

    # every rank builds its module from a different seed (as the trainer does): the epoch's re-initialised
    # classifier must still be identical everywhere, since DDP synchronised the parameters only once
    method = SPCL(_TinyEncoder(seed=rank), temperature=0.5, prototypes=6, pca_dim=4, kmeans_iterations=10)
    params = method.begin_epoch(3, embed, seed=7)
    assert calls == ([0] if rank == 0 else [])
    expected = prototype_labels(features, 6, 4, 10, seed=7 * 1009 + 3)
    assert method.prototype_ids.tolist() == expected.tolist() and method.active_prototypes == 6
    assert _same_on_all_ranks(method.prototype_ids)
    assert all(_same_on_all_ranks(p) for p in params)


def _check_distributed_loss_and_gradient_equal_the_full_batch(rank: int, sizes: list[int], grouped: bool) -> None:
    total, rows = sum(sizes), rank_slice(rank, sizes)
    gen = torch.Generator().manual_seed(total + grouped)
    v1 = torch.randn(total, 6, generator=gen, dtype=torch.float64)
    v2 = torch.randn(total, 6, generator=gen, dtype=torch.float64)
    indices = torch.randperm(20, generator=gen)[:total]
    groups = torch.randint(0, 2, (total,), generator=gen) if grouped else None
    ids = torch.randint(0, 3, (20,), generator=gen)

    def build(gather: bool) -> SPCL:
        method = SPCL(_TinyEncoder(seed=1), temperature=0.3, gather=gather, prototypes=3, instance_weight=0.5,
                      metric_weight=2.0, prototype_weight=0.7).double()
        method.prototype_ids, method.active_prototypes = ids.clone(), 3
        return method

    reference = build(gather=False)
    expected = reference(v1, v2, groups=groups, indices=indices)
    expected["loss"].backward()

    method = build(gather=True)
    local = method(v1[rows], v2[rows], groups=None if groups is None else groups[rows], indices=indices[rows])
    (local["loss"] / WORLD).backward()  # DDP averages the workers' gradients
    for name in ("loss", "instance", "metric", "prototype"):
        combined = local[name].detach().clone()
        dist.all_reduce(combined)
        torch.testing.assert_close(combined / WORLD, expected[name].detach(), msg=name)
    for (name, p), q in zip(method.named_parameters(), reference.parameters()):
        grad = p.grad.clone()
        dist.all_reduce(grad)
        torch.testing.assert_close(grad, q.grad, msg=name)
    assert local["metric"].item() != expected["metric"].item()  # the local term really is over local anchors


def _check_a_ddp_step_with_indices(rank: int) -> None:
    """Through DistributedDataParallel and the Objective wrapper, as the trainer runs it: indices pass as a
    keyword, every parameter gets a gradient, and the ranks stay identical after an optimizer step."""
    from mcl_ray.objectives import build_objective
    from mcl_ray.plan.from_config import load_config, objective_spec

    spec = objective_spec(load_config(overrides=["objective.name=spcl", "objective.prototypes=4",
                                                 "objective.pca_dim=3"]), 0)
    objective = build_objective(spec, _TinyEncoder(seed=rank), gather=True)
    model = nn.parallel.DistributedDataParallel(objective)
    optimizer = torch.optim.SGD(objective.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(rank)
    data = torch.randn(30, 6, generator=torch.Generator().manual_seed(0))
    for epoch in range(2):
        for p in objective.begin_epoch(epoch, lambda: objective.encoder(data)[0], seed=0) or ():
            optimizer.state.pop(p, None)
        for _ in range(2):
            index = torch.randint(0, 30, (5 + rank,), generator=gen)
            out = model(data[index] + 0.1 * torch.randn(len(index), 6, generator=gen), data[index],
                        groups=torch.zeros(len(index), dtype=torch.long), indices=index)
            assert {"loss", "instance", "metric", "prototype"} == set(out)
            optimizer.zero_grad()
            out["loss"].backward()
            optimizer.step()
    assert all(_same_on_all_ranks(p) for p in objective.parameters())


def _worker(rank: int, port: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60)
    )
    try:
        _check_prototypes_are_computed_once_and_broadcast(rank)
        _check_distributed_loss_and_gradient_equal_the_full_batch(rank, [4, 4], grouped=False)
        _check_distributed_loss_and_gradient_equal_the_full_batch(rank, [5, 3], grouped=True)
        _check_distributed_loss_and_gradient_equal_the_full_batch(rank, [6, 5], grouped=False)
        _check_a_ddp_step_with_indices(rank)
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_prototypes_and_loss():
    mp.spawn(_worker, args=(free_port(),), nprocs=WORLD, join=True)
