"""randbit: Trifeature with `data.bits` random bits in every image, kept identical in both views (the RandBit test bed)."""

from __future__ import annotations

from mcl_ray.data.registry import DATA_SOURCES, DataSource
from mcl_ray.data.sources.trifeature import DEFAULT_SIZE, Trifeature


@DATA_SOURCES.register("randbit")
class RandBit(DataSource):
    splits = ("train", "test")
    attributes = ("shape", "texture", "color", "code")
    generated = True
    options = ("bits",)
    shortcuts = ("code",)  # how much of the bits a representation holds: not content, so not in the means

    def count(self, split, *, root, seed, labels=None):
        return DEFAULT_SIZE[split]

    def load(self, split, *, root, image_size, download, size, seed, cache_dir, bits=None):
        from mcl_ray.data import randbit, trifeature

        content = Trifeature().load(split, root=root, image_size=image_size, download=download, size=size, seed=seed,
                                    cache_dir=cache_dir)
        bits = randbit.DEFAULT_BITS if bits is None else bits
        return randbit.draw_bits(content, bits, seed=trifeature.split_seed(seed, split) + 7919)
