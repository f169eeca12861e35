"""Embed a whole image set without augmentation (for clustering, kNN and probes)."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from mcl_ray.data.augment import AugmentSpec, normalize_batch
from mcl_ray.data.batch_reader import read_batches
from mcl_ray.data.mapped_pages import RELEASE_EVERY, release_mapped_pages


@torch.no_grad()
def embed_images(
    encoder: torch.nn.Module,
    images: np.ndarray,
    spec: AugmentSpec,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 512,
    keep: tuple[str, ...] = ("backbone", "projector"),
    workers: int = 2,
    rows: slice | None = None,
    spill_dir: str | Path | None = None,
) -> dict[str, np.ndarray]:
    """Return {'backbone': [N, F], 'projector': [N, D]} float32 arrays (eval mode, no grad), only those in `keep`.

    Reads `images` (in memory or memory-mapped) one batch at a time and writes into preallocated outputs, so the
    peak is the outputs themselves: no per-batch list to concatenate, nothing kept that the caller drops. Sets
    decoded on read are decoded by `workers` DataLoader processes ahead of the forward passes. `rows`: embed only
    that contiguous range (a worker's share of a sharded pass); the outputs then have its length. `spill_dir`: the
    outputs are `.npy` files there, memory-mapped, so their pages belong to the file, not the process: the OS
    writes them out and evicts them under pressure, and the process's own memory does not grow with N."""
    was_training = encoder.training
    encoder.eval()
    out: dict[str, np.ndarray] = {}
    first, stop, _ = (rows or slice(None)).indices(len(images))
    ranges = [slice(start, min(start + batch_size, stop)) for start in range(first, stop, batch_size)]
    pin = torch.device(device).type == "cuda"
    for index, batch in read_batches(images, ranges, workers=workers, pin_memory=pin):
        start = int(index[0]) - first
        batch = batch.to(device, non_blocking=True)
        h, z = encoder(normalize_batch(batch, spec))
        for name, value in (("backbone", h), ("projector", z)):
            if name in keep:
                if name not in out:
                    shape = (max(stop - first, 0), value.shape[1])
                    out[name] = (np.empty(shape, np.float32) if spill_dir is None else
                                 np.lib.format.open_memmap(Path(spill_dir) / f"{name}.npy", "w+", np.float32, shape))
                out[name][start:start + len(value)] = value.float().cpu().numpy()
        if spill_dir is not None and (start // batch_size + 1) % RELEASE_EVERY == 0:
            for array in out.values():  # written pages stay in the file (and page cache), not in this process
                release_mapped_pages(array)
    encoder.train(was_training)
    return out


@torch.no_grad()
def embed_texts(towers: torch.nn.Module, texts: list[str], *, device: torch.device | str = "cpu",
                batch_size: int = 512) -> np.ndarray:
    """[N, D] float32 text embeddings (eval mode, no grad) of an image-text model's text tower."""
    was_training = towers.training
    towers.eval()
    out = []
    for start in range(0, len(texts), batch_size):
        tokens = towers.tokenize(texts[start : start + batch_size]).to(device)
        out.append(towers.encode_text(tokens).float().cpu().numpy())
    towers.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


SPILL_ROWS = 100_000  # a clustering shard above this many images keeps its embeddings in a file, not in memory


@contextlib.contextmanager
def spill_dir_for(rows: int, threshold: int = SPILL_ROWS) -> Iterator[Path | None]:
    """A temporary directory for a large shard's embeddings (removed afterwards), or None for a small one."""
    if rows <= threshold:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="mcl-embeddings-") as path:
        yield Path(path)


def clustering_embeddings(encoder: torch.nn.Module, images: np.ndarray, captions: list[str] | None,
                          views: tuple[str, ...], spec: AugmentSpec, *, device: torch.device | str = "cpu",
                          spill_dir: str | Path | None = None) -> dict[str, np.ndarray]:
    """What a clustering step reads: the image embeddings ('backbone', 'projector'), and for the views 'text'
    the captions' embeddings by the model's text tower. spill_dir: see embed_images."""
    image_views = tuple(v for v in views if v != "text")
    out = embed_images(encoder, images, spec, device=device, keep=image_views, spill_dir=spill_dir) if image_views else {}
    if "text" in views:
        out["text"] = embed_texts(encoder.backbone, list(captions), device=device)
    return out


def embed_sharded(encoder: torch.nn.Module, images, spec: AugmentSpec, *, device: torch.device | str = "cpu",
                  keep: tuple[str, ...] = ("backbone", "projector")) -> dict[str, np.ndarray] | None:
    """`embed_images` split across the workers of a running process group: each embeds a contiguous share and
    rank 0 receives the whole set in order (the others None), so a probe or test pass costs 1/W of the time.
    Without a process group (or with fewer images than workers, where rank 0 embeds all) it is embed_images."""
    from mcl_ray.objectives.distributed import _collective_device, gather_no_grad, is_distributed

    if not is_distributed():
        return embed_images(encoder, images, spec, device=device, keep=keep)
    import torch.distributed as dist

    rank, world, n = dist.get_rank(), dist.get_world_size(), len(images)
    if n < world:
        return embed_images(encoder, images, spec, device=device, keep=keep) if rank == 0 else None
    bounds = np.linspace(0, n, world + 1).astype(int)
    sizes = np.diff(bounds).tolist()
    part = embed_images(encoder, images, spec, device=device, keep=keep, rows=slice(bounds[rank], bounds[rank + 1]))
    out = {}
    for name in keep:
        whole = gather_no_grad(torch.from_numpy(part.pop(name)).to(_collective_device()), sizes)
        out[name] = whole.cpu().numpy() if rank == 0 else None
        del whole
    return out if rank == 0 else None
