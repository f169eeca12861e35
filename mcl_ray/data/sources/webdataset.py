"""webdataset: image-caption pairs in WebDataset tar shards (`data.shards: /data/cc/{00000..00099}.tar`).

Each sample is an image (`.jpg`, `.jpeg`, `.png` or `.webp`) and its caption (`.txt`), optionally a class id (`.cls`,
evaluated as the attribute `label`), grouped by key as img2dataset writes them. Shards are read with the
webdataset library (brace expansion, local paths or any URL it opens, e.g. `pipe:aws s3 cp s3://b/{0..9}.tar -`)
as a stream, decoded and resized once into the memory-mapped cache (data/cache.py) a chunk at a time, so neither
the decoding process nor any Train worker holds the decoded set: workers map the cache file and read the rows of
their batches (random access, which the group batch sampler needs and a tar stream cannot give). The cache is
keyed by the shard files' sizes and times (remote shards: by their URLs) and the image size. Without a test split
of its own, a seeded 20% of the samples is the test split.
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

        from mcl_ray.data.readers import subsample_indices

        whole = cached_shards(shard_urls(shards), image_size, cache_dir)
        test = np.zeros(len(whole), bool)
        test[np.random.default_rng(seed).permutation(len(whole))[: round(TEST_FRACTION * len(whole))]] = True
        rows = np.flatnonzero(test if split == "test" else ~test)
        keep = subsample_indices(len(rows), size, seed, f"webdataset-{split}")
        if keep is not None:
            rows = rows[keep]
        return whole.subset(rows, name=f"webdataset-{split}")


CACHE_VERSION = 1


def cached_shards(urls: list[str], image_size: int, cache_dir):
    """The shards' samples as one ImageSet (images memory-mapped from the cache, captions, `label` when every
    sample has a .cls), decoding them into the cache on first use."""
    import hashlib
    import json
    import os
    import tempfile

    import numpy as np

    from mcl_ray.data.base import ImageSet
    from mcl_ray.data.cache import read_image_set_npz, write_image_set_chunks

    identity = [CACHE_VERSION, image_size] + [
        [u, os.stat(u).st_size, os.stat(u).st_mtime_ns] if Path(u).is_file() else [u] for u in urls]
    key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:20]
    directory = Path(cache_dir or tempfile.gettempdir()).expanduser()
    marker = directory / f"webdataset_{key}.npz"
    cached = read_image_set_npz(marker, "webdataset")
    if cached is not None and cached.captions is not None:
        return cached
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=directory, prefix=".webdataset-decode-") as raw:
        count, captions, classes = 0, [], []
        for chunk, chunk_captions, chunk_classes in read_shards(urls, image_size):
            raw.write(chunk.tobytes())  # decoded a chunk at a time: memory stays at one chunk
            count += len(chunk)
            captions += chunk_captions
            classes += chunk_classes
        raw.flush()
        shape = (count, image_size, image_size, 3)
        decoded = np.memmap(raw, dtype=np.uint8, mode="r", shape=shape)
        attributes = {} if any(c is None for c in classes) else {"label": np.asarray(classes, np.int64)}
        if write_image_set_chunks(marker, shape, lambda a, b: decoded[a:b], attributes, captions=captions):
            del decoded
            found = read_image_set_npz(marker, "webdataset")
            if found is not None:
                return found
        return ImageSet(images=np.array(decoded), attributes=attributes, captions=captions, name="webdataset")


def shard_urls(pattern: str | None) -> list[str]:
    if not pattern:
        raise DataError("data.shards: webdataset needs the shard pattern, e.g. /data/cc/{00000..00099}.tar")
    import webdataset as wds

    return list(wds.shardlists.expand_urls(str(Path(pattern).expanduser()) if "://" not in pattern else pattern))


def read_shards(urls: list[str], image_size: int, chunk: int = 4096):
    """Yield (uint8 images [<=chunk, S, S, 3], captions, class ids or None each), in shard order; errors name the
    shard and key."""
    import numpy as np
    import webdataset as wds
    from PIL import Image, ImageOps

    images, captions, classes, seen = [], [], [], 0
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
            if len(images) == chunk:
                seen += len(images)
                yield np.stack(images), captions, classes
                images, captions, classes = [], [], []
    except (OSError, ValueError) as exc:
        raise DataError(f"data.shards: cannot read {urls[0] if len(urls) == 1 else f'{len(urls)} shards'}: {exc}") from None
    if images:
        yield np.stack(images), captions, classes
    elif not seen:
        raise DataError(f"data.shards: no samples in {', '.join(urls[:3])}")
