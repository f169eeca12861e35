"""stl10: STL-10 through torchvision; pretrain on 'unlabeled' (no attributes), probe on train/test."""

from __future__ import annotations

from mcl_ray.data.registry import DATA_SOURCES, DataSource


@DATA_SOURCES.register("stl10")
class STL10(DataSource):
    splits = ("train", "test", "unlabeled")
    attributes = ("label",)  # none on the 'unlabeled' split

    def count(self, split, *, root, seed, labels=None):
        return {"train": 5_000, "test": 8_000, "unlabeled": 100_000}[split]

    def load(self, split, *, root, image_size, download, size, seed, cache_dir):
        from mcl_ray.data.readers import load_stl10

        return load_stl10(root, split, image_size, download=download, size=size, seed=seed)
