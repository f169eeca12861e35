"""cifar10: CIFAR through torchvision (downloaded into data.root when data.download is on)."""

from __future__ import annotations

from mcl_ray.data.registry import DATA_SOURCES, DataSource


@DATA_SOURCES.register("cifar10")
class Cifar10(DataSource):
    splits = ("train", "test")
    attributes = ("label",)

    def count(self, split, *, root, seed, labels=None):
        return {"train": 50_000, "test": 10_000}[split]

    def load(self, split, *, root, image_size, download, size, seed, cache_dir):
        from mcl_ray.data.readers import load_cifar

        return load_cifar("cifar10", root, split, image_size, download=download, size=size, seed=seed)
