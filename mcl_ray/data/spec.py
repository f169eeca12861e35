"""Which images an experiment uses (plain values; no torch, so the config layer builds it for free)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataSpec:
    name: str
    root: str
    image_size: int
    train_size: int | None = None  # trifeature: images generated; others: a seeded subsample
    test_size: int | None = None
    pretrain_split: str = "train"
    seed: int = 0
    download: bool = False
    cache_dir: str | None = None
    labels: str | None = None  # the labels table of file-listed data sets
    bits: int | None = None  # randbit: the competing feature's number of bits
    shards: str | None = None  # webdataset: the shard pattern
    decode: str = "cache"  # file-listed sets: decode everything into the cache once, or each batch when read
    decode_workers: int = 2  # DataLoader processes decoding batches of sets decoded on read
    eval_samples: int | None = None  # probe and test sets: at most this many images (a seeded subsample)

    def identity(self) -> dict:
        """What the images depend on (where they are cached and whether to download do not change them). Data
        read from the user's files is identified by a manifest of those files (data/manifest.py), not by the
        folder's path: replaced images make new stage keys, a moved folder keeps them. How files are decoded
        (cached or on read) does not change the pixels, so it is not part of it."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("download", "cache_dir", "root", "labels", "bits", "shards", "decode", "decode_workers", "eval_samples")}
        if self.eval_samples is not None:  # which probe/test rows a stage's stored embeddings hold
            out["eval_samples"] = self.eval_samples
        if self.bits is not None:
            out["bits"] = self.bits
        from mcl_ray.data.manifest import data_manifest

        splits = tuple(dict.fromkeys((self.pretrain_split, "train", "test")))
        manifest = data_manifest(self.name, self.root, splits, self.seed, self.labels, shards=self.shards)
        if manifest is not None:  # data read from the user's files
            out["files"] = manifest["digest"]
        elif self.shards is not None:  # remote shards: their URLs are all that is known without reading them
            out["shards"] = self.shards
        return out
