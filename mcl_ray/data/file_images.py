"""Image files decoded when they are read: an array-like stand-in for a decoded set that never holds it.

`data.decode: on_the_fly` gives ImageFolder and labels-table sets this instead of a decoded cache, for data too
large to decode up front (ImageNet: 1.28M files). Indexing it (`images[idx]`: an int, a slice, integer indices)
decodes just those files with the same decoder as the cache (readers._decode: shorter side resized, centre
crop), so both paths give identical pixels. Reads that need speed go through `data.batch_reader`, which runs
the decoding in DataLoader worker processes ahead of the step that needs it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mcl_ray.errors import DataError


class FileImages:
    """N image files as a read-only (N, S, S, 3) uint8 array-like; rows are decoded on each read."""

    dtype = np.dtype(np.uint8)
    ndim = 4
    decodes_on_read = True  # data.batch_reader decodes batches of this in worker processes

    def __init__(self, paths: Sequence[str], image_size: int, name: str = "images") -> None:
        if not len(paths):
            raise DataError(f"{name}: no image files to read")
        self.paths = [str(p) for p in paths]
        self.image_size = int(image_size)
        self.name = name

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), self.image_size, self.image_size, 3)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index) -> np.ndarray:
        from mcl_ray.data.readers import _decode

        if isinstance(index, (int, np.integer)):
            return _decode(self.paths[int(index)], self.image_size, self.name)
        rows = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
            raise DataError(f"{self.name}: index files with an int, a slice or 1-D integer indices, got {index!r}")
        out = np.empty((len(rows), self.image_size, self.image_size, 3), np.uint8)
        for i, row in enumerate(rows):
            out[i] = _decode(self.paths[int(row)], self.image_size, self.name)
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """Everything decoded (what np.asarray asks for): for small sets and tests, not for training loops."""
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"FileImages({len(self)} files of {self.name}, {self.image_size} px, decoded on read)"
