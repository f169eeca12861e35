"""RandBit (Chen et al. 2021, "Intriguing properties of contrastive losses"): a competing feature whose
strength is set by hand, to measure feature suppression mechanistically.

Every image gets `bits` random bits, drawn independently of its content, shown as black/white cells in its
bottom `code_rows(image_size)` rows. The augmentation keeps those rows exactly as they are in every view
(`ImageSet.fixed_rows`), so both views of an image always share the bits: like the original's bits
concatenated as extra channels after augmentation, they solve instance discrimination without any content,
and more bits make that shortcut stronger. How much of the content attributes (shape, texture, colour) a
method still learns as the bits grow is the measure; the attribute `code` (the bits as an integer) shows how
much of the shortcut the representation holds.
"""

from __future__ import annotations

import numpy as np

from mcl_ray.data.base import ImageSet
from mcl_ray.errors import DataError

DEFAULT_BITS = 8


def code_rows(image_size: int) -> int:
    """Rows the code takes: 1/16 of the image, at least 2."""
    return max(2, image_size // 16)


def draw_bits(images: ImageSet, bits: int, seed: int) -> ImageSet:
    """A copy of `images` with `bits` random bits (seeded) drawn into its bottom rows and the attribute `code`."""
    n, height, width, _ = images.images.shape
    if not 1 <= bits <= width:
        raise DataError(f"data.bits: {bits} bits do not fit a {width}-pixel-wide image (1 to {width})")
    values = np.random.default_rng(seed).integers(0, 2, size=(n, bits), dtype=np.uint8)
    cell = np.minimum(np.arange(width) * bits // width, bits - 1)  # which bit each column shows
    rows = code_rows(height)
    out = images.images.copy()
    out[:, height - rows:, :, :] = (values[:, cell] * 255)[:, None, :, None]
    code = (values.astype(np.int64) << np.arange(bits)[::-1]).sum(axis=1)
    return ImageSet(images=out, attributes={**images.attributes, "code": code},
                    name=f"{images.name}-randbit{bits}", fixed_rows=rows)
