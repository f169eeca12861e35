"""The in-memory image set every loader returns.

Images are kept as one uint8 array so training can move whole batches to the device and augment them
there; attributes hold any known labels (one array per attribute, e.g. shape/texture/colour).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mcl_ray.errors import DataError


@dataclass
class ImageSet:
    """N images (uint8, N x H x W x 3) with optional integer attribute labels (name -> int64 [N]) and captions."""

    images: np.ndarray
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = "images"
    fixed_rows: int = 0  # bottom rows every augmented view keeps as they are (a content-free code: RandBit's bits)
    captions: list[str] | None = None  # one caption per image (image-text sources)
    value_names: dict[str, tuple[str, ...]] = field(default_factory=dict)  # attribute -> name of each label value

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise DataError(
                f"{self.name}: images must be uint8 with shape (N, H, W, 3), got "
                f"{self.images.dtype} {tuple(self.images.shape)}"
            )
        if len(self.images) == 0:
            raise DataError(f"{self.name}: the data set is empty")
        for key, values in self.attributes.items():
            if len(values) != len(self.images):
                raise DataError(
                    f"{self.name}: attribute '{key}' has {len(values)} labels for {len(self.images)} images"
                )

        if self.captions is not None and len(self.captions) != len(self.images):
            raise DataError(f"{self.name}: {len(self.captions)} captions for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def num_classes(self, attribute: str) -> int:
        return int(self.attributes[attribute].max()) + 1

    def subset(self, rows: np.ndarray, name: str | None = None) -> "ImageSet":
        """The images `rows` (sorted integer indices) with their labels and captions; the images are a view
        (`RowView`), read from this set's array when indexed, so nothing is copied."""
        rows = np.asarray(rows, dtype=np.int64)
        return ImageSet(
            images=RowView(self.images, rows), attributes={k: v[rows] for k, v in self.attributes.items()},
            name=name or self.name, fixed_rows=self.fixed_rows,
            captions=None if self.captions is None else [self.captions[i] for i in rows], value_names=self.value_names,
        )


class RowView:
    """Rows of an image array (in memory, memory-mapped or decoded on read) as an array-like of its own."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, base, rows: np.ndarray) -> None:
        self.base, self.rows = base, rows
        self.decodes_on_read = getattr(base, "decodes_on_read", False)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.base.shape[1:])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return np.asarray(self.base[int(self.rows[index])])
        return np.asarray(self.base[self.rows[index]])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def image_rows(images: np.ndarray, index) -> "torch.Tensor":
    """The rows `index` (a slice, or sorted or unsorted integer indices) of an in-memory or memory-mapped image
    array as a uint8 tensor of their own: only those rows are read, so a worker never copies the whole set."""
    import torch

    from mcl_ray.data.mapped_pages import read_rows

    if isinstance(index, torch.Tensor):
        index = index.numpy()
    rows = read_rows(images, index) if not isinstance(index, slice) else None  # a mapped set: pread, nothing mapped
    return torch.from_numpy(rows if rows is not None else np.array(images[index], copy=True))
