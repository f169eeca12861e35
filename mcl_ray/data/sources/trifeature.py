"""trifeature: generated shape x texture x colour images (Hermann & Lampinen, 2020), the suppression probe.

Every image also has a caption naming its three attributes (data/captions.py), so image-text methods (clip)
train on captioned Trifeature with the same images and labels."""

from __future__ import annotations

from mcl_ray.data.registry import DATA_SOURCES, DataSource

DEFAULT_SIZE = {"train": 10_000, "test": 2_000}  # images generated when data.train_size / test_size is null


@DATA_SOURCES.register("trifeature")
class Trifeature(DataSource):
    splits = ("train", "test")
    attributes = ("shape", "texture", "color")
    generated = True
    captions = True

    def count(self, split, *, root, seed, labels=None):
        return DEFAULT_SIZE[split]  # when the size is null

    def load(self, split, *, root, image_size, download, size, seed, cache_dir):
        from mcl_ray.data import trifeature
        from mcl_ray.data.captions import caption_images

        n = DEFAULT_SIZE[split] if size is None else size
        images = trifeature.load_trifeature(n, image_size, trifeature.split_seed(seed, split), cache_dir)
        images.name = f"trifeature-{split}"
        images.captions = caption_images(images.attributes, images.value_names, trifeature.split_seed(seed, split))
        return images
