"""A large clustering shard's embeddings go to a memory-mapped file: same values, file removed afterwards."""

from __future__ import annotations

import numpy as np
import torch

from mcl_ray.data.augment_spec import AugmentSpec
from mcl_ray.mcl.clustering import assign
from mcl_ray.models.encoder import build_encoder
from mcl_ray.models.spec import ModelSpec
from mcl_ray.plan.artifacts import kmeans_sample
from mcl_ray.train.embed import clustering_embeddings, spill_dir_for


def test_spilled_embeddings_equal_in_memory_ones_and_feed_sampling_and_assignment(tmp_path):
    torch.manual_seed(0)
    encoder = build_encoder(ModelSpec(backbone="test_resnet", image_size=16, proj_hidden_dim=16, proj_dim=8))
    images = np.random.default_rng(0).integers(0, 256, (37, 16, 16, 3), dtype=np.uint8)
    spec = AugmentSpec(crop_size=16)
    memory = clustering_embeddings(encoder, images, None, ("backbone", "projector"), spec)
    spilled = clustering_embeddings(encoder, images, None, ("backbone", "projector"), spec, spill_dir=tmp_path)
    for view in ("backbone", "projector"):
        assert isinstance(spilled[view], np.memmap) and not isinstance(memory[view], np.memmap)
        np.testing.assert_array_equal(np.asarray(spilled[view]), memory[view])
        assert (tmp_path / f"{view}.npy").is_file()
    z = spilled["projector"]
    np.testing.assert_array_equal(kmeans_sample(z, 74, 20, 3, 0), kmeans_sample(memory["projector"], 74, 20, 3, 0))
    centroids = np.ascontiguousarray(memory["projector"][:4])
    for got, want in zip(assign(z, centroids, batch_size=8, use_gpu=False), assign(memory["projector"], centroids, use_gpu=False)):
        np.testing.assert_array_equal(got, want)


def test_spill_dir_only_for_large_shards_and_removed_afterwards():
    with spill_dir_for(10, threshold=10) as small:
        assert small is None
    with spill_dir_for(11, threshold=10) as large:
        assert large is not None and large.is_dir()
        (large / "projector.npy").write_bytes(b"x")
    assert not large.exists()
