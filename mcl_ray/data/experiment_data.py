"""Load the three image sets an experiment needs: pretraining, probe-fitting and test."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcl_ray.data.base import ImageSet
from mcl_ray.data.registry import load_dataset
from mcl_ray.data.spec import DataSpec

log = logging.getLogger(__name__)


@dataclass
class ExperimentData:
    pretrain: ImageSet  # contrastive training and clustering
    probe: ImageSet  # fits kNN / linear probes (labelled training images)
    test: ImageSet  # held-out evaluation


def load_experiment_data(data: DataSpec) -> ExperimentData:
    root = Path(data.root).expanduser()
    cache = Path(data.cache_dir).expanduser() if data.cache_dir else root / "cache"
    common = dict(root=root, image_size=data.image_size, download=data.download, seed=data.seed, cache_dir=cache,
                  labels=data.labels, bits=data.bits, shards=data.shards,
                  decode=None if data.decode == "cache" else data.decode)
    probe = load_dataset(data.name, "train", size=data.train_size, **common)
    test = load_dataset(data.name, "test", size=data.test_size, **common)
    if data.pretrain_split == "train":
        pretrain = probe
    else:
        pretrain = load_dataset(data.name, data.pretrain_split, size=data.train_size, **common)
    cap = data.eval_samples
    return ExperimentData(pretrain=pretrain, probe=evaluation_subset(probe, cap, data.seed, "probe"),
                          test=evaluation_subset(test, cap, data.seed + 1, "test"))


LARGE_EVALUATION = 200_000  # uncapped probe/test sets above this many images get a warning


def evaluation_subset(images: ImageSet, cap: int | None, seed: int, role: str) -> ImageSet:
    """A seeded subsample of at most `cap` images for evaluation (eval.max_samples), said in the log. Without a cap
    a huge set is evaluated whole, and rank 0 receives all of its embeddings: say so, with the option that bounds it."""
    if cap is None and len(images) > LARGE_EVALUATION:
        log.warning("evaluation: the %s set has %d images and eval.max_samples is null, so rank 0 will hold the "
                    "embeddings of all of them (kNN, linear probe); set eval.max_samples (e.g. 100000) to evaluate a "
                    "seeded subsample", role, len(images))
    if cap is None or len(images) <= cap:
        return images
    rows = np.sort(np.random.default_rng(seed).choice(len(images), size=cap, replace=False))
    log.warning("evaluation: the %s set is a seeded subsample of %d of its %d images (eval.max_samples)", role, cap, len(images))
    return images.subset(rows, name=f"{images.name} ({cap} of {len(images)})")
