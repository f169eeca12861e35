"""Real two-process (gloo) checks of the cross-worker gathers and the gathered NT-Xent / MoCo.

Each worker builds the same full batch from a seed, takes its rank's slice, and compares what the
distributed code computes with the single-process result on the full batch. Assertion errors in a worker
surface through torch.multiprocessing.spawn.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from mcl_ray.objectives import MoCo, gather_no_grad, gather_sizes, gather_with_grad, nt_xent_loss, rank_offset

from ddp_helpers import free_port, rank_slice  # noqa: E402

pytestmark = pytest.mark.slow

WORLD = 2


def _check_gather_with_unequal_sizes(rank: int) -> None:
    sizes = [3, 2]
    rows = rank_slice(rank, sizes)
    full = torch.arange(20, dtype=torch.float64).reshape(5, 4)
    local = full[rows].clone().requires_grad_()
    assert gather_sizes(sizes[rank]) == sizes
    assert rank_offset(sizes[rank]) == rows.start
    gathered = gather_with_grad(local)
    torch.testing.assert_close(gathered, full, rtol=0, atol=0)
    weights = torch.arange(1, 21, dtype=torch.float64).reshape(5, 4)
    (gathered * weights * (rank + 1)).sum().backward()
    # every rank's loss touches every row: this rank's rows receive (1 + 2) * weights
    torch.testing.assert_close(local.grad, 3 * weights[rows], rtol=0, atol=0)
    labels = torch.tensor([7, 8, 9, 10, 11])
    assert gather_no_grad(labels[rows]).tolist() == labels.tolist()


def _check_gathered_nt_xent(rank: int, sizes: list[int], anchors: str = "all") -> None:
    """The workers' losses and gradients averaged (what DDP does) equal the full batch's, unequal sizes too; with
    anchors='with_negatives' the anchor without negatives (sample 6, alone in group 2) is left out everywhere."""
    total = sum(sizes)
    rows = rank_slice(rank, sizes)
    gen = torch.Generator().manual_seed(total)
    z1_full = torch.randn(total, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    z2_full = torch.randn(total, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    groups = torch.tensor([0, 1, 0, 1, 1, 0, 2][:total])
    expected = nt_xent_loss(z1_full, z2_full, 0.1, groups, anchors=anchors)
    expected.backward()

    z1 = z1_full.detach()[rows].clone().requires_grad_()
    z2 = z2_full.detach()[rows].clone().requires_grad_()
    local_loss = nt_xent_loss(z1, z2, 0.1, groups[rows], gather=True, anchors=anchors)
    (local_loss / WORLD).backward()  # DDP averages the workers' gradients
    combined = local_loss.detach().clone()
    dist.all_reduce(combined)
    torch.testing.assert_close(combined / WORLD, expected.detach())
    # the gather routes every rank's gradient to the rows it owns: this rank's rows get the full-batch gradient
    torch.testing.assert_close(z1.grad, z1_full.grad[rows])
    torch.testing.assert_close(z2.grad, z2_full.grad[rows])
    assert local_loss.item() != expected.item()  # the local loss really is over local anchors only


def _check_gathered_dimcl(rank: int, sizes: list[int]) -> None:
    """DimCL's columns span the global batch: every worker's term equals the full batch's, and the gradients
    DDP averages equal the one-process gradient (unequal local batches too)."""
    from mcl_ray.objectives.regularizers.dimcl import dimcl_loss

    rows = rank_slice(rank, sizes)
    gen = torch.Generator().manual_seed(sum(sizes) + 11)
    z1_full = torch.randn(sum(sizes), 6, generator=gen, dtype=torch.float64)
    z2_full = torch.randn(sum(sizes), 6, generator=gen, dtype=torch.float64)
    expected_z1 = z1_full.detach().clone().requires_grad_()
    expected_z2 = z2_full.detach().clone().requires_grad_()
    z1 = z1_full.detach()[rows].clone().requires_grad_()
    z2 = z2_full.detach()[rows].clone().requires_grad_()
    local = dimcl_loss(z1, z2, 0.1)
    (local / WORLD).backward()  # DDP averages the workers' gradients
    reference = _single_process_dimcl(expected_z1, expected_z2)
    torch.testing.assert_close(local.detach(), reference.detach())
    reference.backward()
    torch.testing.assert_close(z1.grad, expected_z1.grad[rows])
    torch.testing.assert_close(z2.grad, expected_z2.grad[rows])


def _single_process_dimcl(z1, z2):
    """dimcl_loss's arithmetic on the full batch, without the gather (what one process computes)."""
    from mcl_ray.objectives.simclr import nt_xent_loss

    c1 = (z1 - z1.mean(dim=0, keepdim=True)).T
    c2 = (z2 - z2.mean(dim=0, keepdim=True)).T
    return nt_xent_loss(c1, c2, 0.1)


class _TinyEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone, self.projector, self.proj_dim = nn.Linear(6, 5), nn.Linear(5, 4), 4

    def forward(self, x):
        h = self.backbone(x)
        return h, self.projector(h)


def _check_moco_ddp_gradient_is_the_full_batch_gradient(rank: int) -> None:
    """Unequal local batches (3 + 2): DDP's averaged gradient equals one process's on all 5 images."""
    sizes = [3, 2]
    rows = rank_slice(rank, sizes)
    gen = torch.Generator().manual_seed(2)
    v1, v2 = torch.randn(5, 6, generator=gen), torch.randn(5, 6, generator=gen)
    groups = torch.tensor([0, 1, 0, 1, 1])
    prior = nn.functional.normalize(torch.randn(6, 4, generator=gen), dim=1)
    prior_groups = torch.tensor([0, 1, 0, 1, 0, 1])
    methods = []
    for gather in (False, True):
        torch.manual_seed(0)
        methods.append(MoCo(_TinyEncoder(), temperature=0.2, gather=gather, queue_size=16))
        methods[-1].enqueue(prior, prior_groups)
    single, distributed = methods
    single(v1, v2, groups)["loss"].backward()
    model = nn.parallel.DistributedDataParallel(distributed)  # kept alive: its reducer averages in backward
    model(v1[rows], v2[rows], groups[rows])["loss"].backward()
    for a, b in zip(single.encoder.parameters(), distributed.encoder.parameters()):
        torch.testing.assert_close(b.grad, a.grad)


def _check_moco_in_ddp_enqueues_the_global_batch(rank: int) -> None:
    sizes = [3, 2]
    rows = rank_slice(rank, sizes)
    torch.manual_seed(0)
    method = MoCo(_TinyEncoder(), temperature=0.2, gather=True, queue_size=16)
    model = nn.parallel.DistributedDataParallel(method)  # momentum encoder is frozen, so DDP skips it
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    v1, v2 = torch.randn(5, 6, generator=gen), torch.randn(5, 6, generator=gen)
    groups = torch.tensor([0, 1, 0, 1, 1])
    for _ in range(2):
        before = method.queue_ptr.item()
        with torch.no_grad():
            k1, k2 = method.momentum_encoder(v1)[1], method.momentum_encoder(v2)[1]
        model(v1[rows], v2[rows], groups[rows])["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
        model.module.after_step()
        # rank order, one key (view 2's) per image: [k2 r0, k2 r1]
        order = [(rank_slice(r, sizes), k2) for r in range(WORLD)]
        expected_keys = torch.cat([keys[s] for s, keys in order])
        expected_groups = torch.cat([groups[s] for s, _ in order])
        slots = [(before + i) % 16 for i in range(5)]
        torch.testing.assert_close(method.queue[slots], nn.functional.normalize(expected_keys, dim=1))
        assert method.queue_groups[slots].tolist() == expected_groups.tolist()
    # both ranks hold the same weights and queue after the steps
    state = torch.cat([p.detach().flatten() for p in method.parameters()] + [method.queue.flatten()])
    other = state.clone()
    dist.broadcast(other, src=0)
    torch.testing.assert_close(state, other)


def _check_gathered_clip(rank: int, sizes: list[int]) -> None:
    """CLIP's image->text and text->image terms over the global batch (group-masked): the averaged workers'
    losses and gradients, the logit scale's too, equal the single-process full-batch ones."""
    from mcl_ray.objectives.clip import clip_loss

    total, rows = sum(sizes), rank_slice(rank, sizes)
    gen = torch.Generator().manual_seed(total + 5)
    image_full = torch.randn(total, 6, generator=gen, dtype=torch.float64)
    text_full = torch.randn(total, 6, generator=gen, dtype=torch.float64)
    groups = torch.tensor([0, 1, 0, 1, 1, 0, 2, 1][:total])
    ref_image, ref_text = image_full.clone().requires_grad_(), text_full.clone().requires_grad_()
    ref_scale = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    expected = clip_loss(ref_image, ref_text, ref_scale, groups)
    expected.backward()
    image, text = image_full[rows].clone().requires_grad_(), text_full[rows].clone().requires_grad_()
    scale = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    local = clip_loss(image, text, scale, groups[rows], gather=True)
    (local / WORLD).backward()
    combined = local.detach().clone()
    dist.all_reduce(combined)
    torch.testing.assert_close(combined / WORLD, expected.detach())
    torch.testing.assert_close(image.grad, ref_image.grad[rows])
    torch.testing.assert_close(text.grad, ref_text.grad[rows])
    scale_grad = scale.grad.clone()
    dist.all_reduce(scale_grad)  # DDP sums (then averages) the shared parameter's gradient
    torch.testing.assert_close(scale_grad, ref_scale.grad)


class _PixelEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)  # the same weights on every rank
        self.h = nn.Linear(4 * 4 * 3, 5)
        self.z = nn.Linear(5, 3)

    def forward(self, x):
        h = self.h(x.flatten(1))
        return h, self.z(h)


def _check_sharded_embedding_pass(rank: int, n: int) -> None:
    """Each worker embeds its share; rank 0 gets the whole set in order, equal to one process's pass."""
    import numpy as np

    from mcl_ray.data.augment_spec import AugmentSpec
    from mcl_ray.train.embed import embed_images, embed_sharded

    images = np.random.default_rng(n).integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    spec, encoder = AugmentSpec(crop_size=4), _PixelEncoder()
    got = embed_sharded(encoder, images, spec)
    if rank != 0:
        assert got is None
        return
    expected = embed_images(encoder, images, spec)
    for name in ("backbone", "projector"):
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-6, atol=1e-6)


def _worker(rank: int, port: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60)
    )
    try:
        _check_gather_with_unequal_sizes(rank)
        _check_gathered_nt_xent(rank, [3, 3])
        _check_gathered_nt_xent(rank, [4, 3])
        _check_gathered_nt_xent(rank, [4, 3], anchors="with_negatives")
        _check_moco_in_ddp_enqueues_the_global_batch(rank)
        _check_moco_ddp_gradient_is_the_full_batch_gradient(rank)
        _check_gathered_dimcl(rank, [4, 4])
        _check_gathered_dimcl(rank, [5, 3])
        _check_gathered_clip(rank, [4, 4])
        _check_gathered_clip(rank, [5, 3])
        _check_sharded_embedding_pass(rank, 13)
        _check_sharded_embedding_pass(rank, 1)  # fewer images than workers: rank 0 embeds them
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_gathers_and_losses():
    mp.spawn(_worker, args=(free_port(),), nprocs=WORLD, join=True)
