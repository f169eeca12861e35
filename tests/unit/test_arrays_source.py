"""The memory-mapped arrays source and image cache: written in chunks, mapped (not copied) when read, checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mcl_ray.data.base import image_rows
from mcl_ray.data.cache import write_image_set_chunks
from mcl_ray.data.registry import data_source, load_dataset
from mcl_ray.errors import DataError


def write_split(root, split, n, size=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = {"label": rng.integers(0, 3, n), "tint": rng.integers(0, 5, n)}
    assert write_image_set_chunks(root / f"{split}.npz", images.shape, lambda a, b: images[a:b], labels, chunk_rows=7)
    return images, labels


def test_arrays_are_memory_mapped_with_every_attribute(tmp_path):
    images, labels = write_split(tmp_path, "train", 50)
    loaded = load_dataset("arrays", "train", root=tmp_path, image_size=8)
    assert isinstance(loaded.images, np.memmap) and not loaded.images.flags.writeable
    np.testing.assert_array_equal(np.asarray(loaded.images), images)  # chunked writing kept every row in order
    assert set(loaded.attributes) == {"label", "tint"}
    np.testing.assert_array_equal(loaded.attributes["tint"], labels["tint"])
    assert data_source("arrays").count("train", root=tmp_path, seed=0) == 50
    sub = load_dataset("arrays", "train", root=tmp_path, image_size=8, size=20, seed=3)
    assert len(sub) == 20 and len(sub.attributes["label"]) == 20


def test_image_rows_reads_only_the_asked_rows_into_a_writable_tensor(tmp_path):
    images, _ = write_split(tmp_path, "train", 40)
    mapped = load_dataset("arrays", "train", root=tmp_path, image_size=8).images
    idx = torch.tensor([31, 2, 17, 2])
    rows = image_rows(mapped, idx)
    assert rows.dtype == torch.uint8 and rows.shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(rows.numpy(), images[[31, 2, 17, 2]])
    rows.add_(1)  # its own memory: the mapped file is untouched
    np.testing.assert_array_equal(np.asarray(mapped[2]), images[2])
    np.testing.assert_array_equal(image_rows(mapped, slice(5, 9)).numpy(), images[5:9])


def test_bad_arrays_name_the_file(tmp_path):
    with pytest.raises(DataError, match="train.npz is missing"):
        load_dataset("arrays", "train", root=tmp_path, image_size=8)
    write_split(tmp_path, "train", 10)
    with pytest.raises(DataError, match="8-px images but data.image_size is 16"):
        load_dataset("arrays", "train", root=tmp_path, image_size=16)
    path = tmp_path / "train.images.npy"
    path.write_bytes(path.read_bytes()[:-10])  # truncated
    with pytest.raises(DataError, match="train.images.npy does not match"):
        load_dataset("arrays", "train", root=tmp_path, image_size=8)


def test_arrays_keys_follow_the_files(tmp_path):
    from mcl_ray.config.loader import build_config
    from mcl_ray.plan.from_config import data_spec

    write_split(tmp_path, "train", 10)
    write_split(tmp_path, "test", 5, seed=1)
    cfg = build_config({"data": {"name": "arrays", "root": str(tmp_path), "image_size": 8, "train_size": None,
                                 "test_size": None}, "mcl": {"clusters": 2}})
    files = data_source("arrays").files("train", root=tmp_path, seed=0)
    assert files == [str(tmp_path / "train.images.npy"), str(tmp_path / "train.npz")]
    before = data_spec(cfg).identity()
    assert "files" in before  # keyed by a manifest of the files, not by the folder path
    write_split(tmp_path, "train", 10, seed=9)  # new content under the same names
    assert data_spec(cfg).identity() != before
