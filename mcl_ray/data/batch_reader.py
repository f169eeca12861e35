"""Batches of uint8 images for training and embedding passes, read ahead where reading is the slow part.

In-memory and memory-mapped sets are read in the training process (a memory copy of the batch's rows: worker
processes would only add a round trip); a mapped set's rows are read with pread (data/mapped_pages.py), so
the file never counts in this process's memory. Sets decoded on read (`FileImages`) are decoded by torch DataLoader
worker processes, a whole batch per task, `prefetch` batches ahead, into pinned memory when the batches go to a
GPU, so JPEG decoding overlaps the step. The order of batches is the caller's, so every rank still reads exactly
its slice of each global batch.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from mcl_ray.data.base import image_rows


class _BatchTasks(torch.utils.data.Dataset):
    """Task i = decode the rows of batch i (a DataLoader with batch_size=None hands each task to a worker)."""

    def __init__(self, images, batches: Sequence[np.ndarray]) -> None:
        self.images = images
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.images[self.batches[i]]))


def read_batches(images, batches: Iterable, *, workers: int = 2, pin_memory: bool = False,
                 prefetch: int = 4) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(indices int64 [B], images uint8 [B, S, S, 3]) for each batch of row indices (or slices), in order."""
    if workers <= 0 or not getattr(images, "decodes_on_read", False):
        for rows in batches:
            index = _as_index(rows)
            yield index, image_rows(images, index)  # a memory-mapped set: read with pread, nothing mapped
        return
    plan = [_as_index(rows).numpy() for rows in batches]
    loader = torch.utils.data.DataLoader(
        _BatchTasks(images, plan), batch_size=None, shuffle=False, num_workers=min(workers, max(len(plan), 1)),
        pin_memory=pin_memory, prefetch_factor=prefetch,
        generator=torch.Generator().manual_seed(0),  # its own: the default one would shift the augmentations' stream
    )
    for rows, batch in zip(plan, loader):
        yield torch.from_numpy(rows), batch


def _as_index(rows) -> torch.Tensor:
    if isinstance(rows, slice):
        return torch.arange(rows.start or 0, rows.stop, dtype=torch.long)
    return torch.as_tensor(rows, dtype=torch.long)
