"""webdataset: image-caption pairs in WebDataset tar shards (`data.shards: /data/cc/{00000..00099}.tar`).

Each sample is an image (`.jpg`, `.jpeg`, `.png` or `.webp`) and its caption (`.txt`), optionally a class id (`.cls`,
evaluated as the attribute `label`), grouped by key as img2dataset writes them. Shards are read with the
webdataset library (brace expansion, local paths or any URL it opens, e.g. `pipe:aws s3 cp s3://b/{0..9}.tar -`),
decoded and resized once per load. Without a test split of its own, a seeded 20% of the samples is the test split.
"""

from __future__ import annotations

from pathlib import Path

from mcl_ray.data.registry import DATA_SOURCES, DataSource
from mcl_ray.errors import DataError

TEST_FRACTION = 0.2
IMAGE_KEYS = "jpg;jpeg;png;webp"


@DATA_SOURCES.register("webdataset")
class WebDatasetShards(DataSource):
    splits = ("train", "test")
    attributes = ()  # `label` when the shards carry .cls files
    captions = True
    options = ("shards",)

    def files(self, split, *, root, seed, labels=None, shards=None):
        """The local shard files (their sizes and times key the stages); None for remote URLs."""
        urls = shard_urls(shards)
        return urls if urls and all(Path(u).is_file() for u in urls) else None

    def load(self, split, *, root, image_size, download, size, seed, cache_dir, shards=None):
        import numpy as np

        from mcl_ray.data.base import ImageSet
        from mcl_ray.data.readers import subsample_indices

        images, captions, classes = read_shards(shard_urls(shards), image_size)
        test = np.zeros(len(images), bool)
        test[np.random.default_rng(seed).permutation(len(images))[: round(TEST_FRACTION * len(images))]] = True
        rows = np.flatnonzero(test if split == "test" else ~test)
        keep = subsample_indices(len(rows), size, seed, f"webdataset-{split}")
        if keep is not None:
            rows = rows[keep]
        attributes = {"label": np.asarray(classes, np.int64)[rows]} if classes is not None else {}
        return ImageSet(images=images[rows], attributes=attributes, captions=[captions[i] for i in rows],
                        name=f"webdataset-{split}")


def shard_urls(pattern: str | None) -> list[str]:
    if not pattern:
        raise DataError("data.shards: webdataset needs the shard pattern, e.g. /data/cc/{00000..00099}.tar")
    import webdataset as wds

    return list(wds.shardlists.expand_urls(str(Path(pattern).expanduser()) if "://" not in pattern else pattern))


def read_shards(urls: list[str], image_size: int):
    """(uint8 images [N, S, S, 3], captions, class ids or None), in shard order; errors name the shard and key."""
    import numpy as np
    import webdataset as wds
    from PIL import ImageOps

    from PIL import Image

    images, captions, classes = [], [], []
    dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("pil")
    try:
        for sample in dataset:
            where = f"{sample.get('__url__', '?')}: sample {sample.get('__key__', '?')}"
            image = next((sample[k] for k in IMAGE_KEYS.split(";") if k in sample), None)
            if image is None or "txt" not in sample:
                raise DataError(f"data.shards: {where} has no {'image' if image is None else 'caption (.txt)'}")
            fitted = ImageOps.fit(image.convert("RGB"), (image_size, image_size), Image.Resampling.BICUBIC)
            images.append(np.asarray(fitted, np.uint8))
            captions.append(str(sample["txt"]).strip())
            classes.append(int(sample["cls"]) if "cls" in sample else None)
    except (OSError, ValueError) as exc:
        raise DataError(f"data.shards: cannot read {urls[0] if len(urls) == 1 else f'{len(urls)} shards'}: {exc}") from None
    if not images:
        raise DataError(f"data.shards: no samples in {', '.join(urls[:3])}")
    labels = None if any(c is None for c in classes) else classes
    return np.stack(images), captions, labels
