"""Load the three image sets an experiment needs: pretraining, probe-fitting and test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mcl_ray.data.base import ImageSet
from mcl_ray.data.registry import load_dataset
from mcl_ray.data.spec import DataSpec


@dataclass
class ExperimentData:
    pretrain: ImageSet  # contrastive training and clustering
    probe: ImageSet  # fits kNN / linear probes (labelled training images)
    test: ImageSet  # held-out evaluation


def load_experiment_data(data: DataSpec) -> ExperimentData:
    root = Path(data.root).expanduser()
    cache = Path(data.cache_dir).expanduser() if data.cache_dir else root / "cache"
    common = dict(root=root, image_size=data.image_size, download=data.download, seed=data.seed, cache_dir=cache,
                  labels=data.labels, bits=data.bits, shards=data.shards)
    probe = load_dataset(data.name, "train", size=data.train_size, **common)
    test = load_dataset(data.name, "test", size=data.test_size, **common)
    if data.pretrain_split == "train":
        pretrain = probe
    else:
        pretrain = load_dataset(data.name, data.pretrain_split, size=data.train_size, **common)
    return ExperimentData(pretrain=pretrain, probe=probe, test=test)
