"""Two real gloo processes: MetAug under DistributedDataParallel equals one process on the full batch.

Each worker builds the same full batch from a seed and takes its rank's slice (unequal slices too). After each
training step (DDP backward, the encoder's SGD step, then MetAug's after_step: the virtual step and the
generators' own SGD step), the encoder and the generators must equal the single-process result on the full
batch, and the generators must be identical on both ranks. Assertion errors in a worker surface through
torch.multiprocessing.spawn.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from mcl_ray.objectives.metaug import MetAug

from ddp_helpers import free_port, rank_slice  # noqa: E402

pytestmark = pytest.mark.slow

WORLD = 2


class _TinyEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone, self.projector, self.proj_dim = nn.Linear(6, 5), nn.Linear(5, 4), 4

    def forward(self, x):
        h = torch.tanh(self.backbone(x))
        return h, self.projector(h)


def _method(gather: bool) -> MetAug:
    torch.manual_seed(0)
    return MetAug(_TinyEncoder(), temperature=0.2, gather=gather, gamma=4.0, generator_hidden=7,
                  augmented_weight=0.5, margin_weight=0.5, generator_lr=0.1, generator_momentum=0.9,
                  generator_weight_decay=1e-3, virtual_lr=0.5).double()


def _step(model: nn.Module, method: MetAug, optimizer, v1, v2, groups) -> torch.Tensor:
    loss = model(v1, v2, groups=groups)["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    method.after_step()  # what the trainer calls, on the unwrapped objective
    return loss.detach()


def _same_on_every_rank(tensors) -> None:
    flat = torch.cat([t.detach().flatten() for t in tensors])
    other = flat.clone()
    dist.broadcast(other, src=0)
    torch.testing.assert_close(flat, other, rtol=0, atol=0)


def _check_ddp_step_equals_full_batch(rank: int, sizes: list[int], grouped: bool) -> None:
    total, rows = sum(sizes), rank_slice(rank, sizes)
    gen = torch.Generator().manual_seed(total)
    batches = [(torch.randn(total, 6, generator=gen, dtype=torch.float64),
                torch.randn(total, 6, generator=gen, dtype=torch.float64)) for _ in range(2)]
    groups = torch.tensor([0, 1, 0, 1, 1, 0, 1, 0][:total]) if grouped else None

    # one process on the full batch (every rank computes it; its collectives see identical values)
    single = _method(gather=False)
    single_opt = torch.optim.SGD(single.encoder.parameters(), lr=0.05)
    for v1, v2 in batches:
        _step(single, single, single_opt, v1, v2, groups)

    distributed = _method(gather=True)
    if rank == 1:  # a different start on rank 1: DDP's broadcast (and MetAug's own) must replace it
        with torch.no_grad():
            for p in distributed.generators.parameters():
                p.add_(1.0)
    model = nn.parallel.DistributedDataParallel(distributed)  # generators are frozen: the reducer skips them
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)  # requires_grad=False: SGD never gets a gradient
    for v1, v2 in batches:
        _step(model, distributed, optimizer, v1[rows], v2[rows], None if groups is None else groups[rows])

    for a, b in zip(single.encoder.parameters(), distributed.encoder.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    for a, b in zip(single.generators.parameters(), distributed.generators.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    local = torch.tensor(distributed.last_generator_loss, dtype=torch.float64)  # this rank's share, like 'loss'
    dist.all_reduce(local)
    assert (local / WORLD).item() == pytest.approx(single.last_generator_loss, rel=1e-10)
    _same_on_every_rank(list(distributed.generators.parameters()))
    buffers = [s["momentum_buffer"] for s in distributed.generator_optimizer.state.values()]
    assert len(buffers) == len(list(distributed.generators.parameters()))
    _same_on_every_rank(buffers)


def _worker(rank: int, port: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60)
    )
    try:
        _check_ddp_step_equals_full_batch(rank, [3, 3], grouped=False)
        _check_ddp_step_equals_full_batch(rank, [4, 3], grouped=True)
        _check_ddp_step_equals_full_batch(rank, [2, 3], grouped=True)
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_metaug_equals_single_process():
    mp.spawn(_worker, args=(free_port(),), nprocs=WORLD, join=True)
