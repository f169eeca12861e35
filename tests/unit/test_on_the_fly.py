"""data.decode: on_the_fly -- image files decoded when read, by DataLoader workers, identical to the cached set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mcl_ray.data.batch_reader import read_batches
from mcl_ray.data.file_images import FileImages
from mcl_ray.data.registry import load_dataset
from mcl_ray.errors import ConfigError, DataError
from mcl_ray.plan.from_config import build_config, check_experiment, stage_specs


def write_folder(root, n_per_class=5, size=40):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n_per_class):
                pixels = rng.integers(0, 256, (size, size + 7 * i, 3), dtype=np.uint8)  # various aspect ratios
                ext = "jpg" if i % 2 else "png"
                Image.fromarray(pixels).save(folder / f"{i}.{ext}")
    return root


def test_on_the_fly_reads_the_same_pixels_as_the_cache(tmp_path):
    root = write_folder(tmp_path / "data")
    cached = load_dataset("imagefolder", "train", root=root, image_size=16, cache_dir=tmp_path / "cache")
    lazy = load_dataset("imagefolder", "train", root=root, image_size=16, cache_dir=tmp_path / "cache", decode="on_the_fly")
    assert isinstance(lazy.images, FileImages) and lazy.images.shape == cached.images.shape
    np.testing.assert_array_equal(lazy.attributes["label"], cached.attributes["label"])
    np.testing.assert_array_equal(lazy.images[:], cached.images)
    np.testing.assert_array_equal(lazy.images[[7, 2, 2]], cached.images[[7, 2, 2]])
    np.testing.assert_array_equal(lazy.images[3], cached.images[3])
    assert not list((tmp_path / "cache").glob("*on_the_fly*"))


@pytest.mark.parametrize("workers", [0, 2])
def test_read_batches_keeps_the_callers_order_and_rows(tmp_path, workers):
    root = write_folder(tmp_path / "data")
    lazy = load_dataset("imagefolder", "train", root=root, image_size=16, decode="on_the_fly").images
    full = lazy[:]
    plan = [np.array([9, 0, 4]), np.array([1, 2]), np.array([8, 7, 6, 5, 3])]
    got = list(read_batches(lazy, plan, workers=workers))
    assert [i.tolist() for i, _ in got] == [p.tolist() for p in plan]
    for (index, batch), rows in zip(got, plan):
        assert batch.dtype == torch.uint8
        np.testing.assert_array_equal(batch.numpy(), full[rows])
    in_memory = list(read_batches(full, [slice(0, 4), slice(4, 10)], workers=workers))  # arrays: read in-process
    assert [i.tolist() for i, _ in in_memory] == [[0, 1, 2, 3], [4, 5, 6, 7, 8, 9]]
    np.testing.assert_array_equal(in_memory[1][1].numpy(), full[4:10])


def test_a_file_that_turns_unreadable_names_the_file(tmp_path):
    root = write_folder(tmp_path / "data")
    lazy = load_dataset("imagefolder", "train", root=root, image_size=16, decode="on_the_fly").images
    broken = lazy.paths[4]
    with open(broken, "wb") as f:
        f.write(b"not an image")
    with pytest.raises(DataError, match="cannot decode image file .*" + broken.split("/")[-1]):
        lazy[[3, 4]]


def test_the_mode_is_checked_at_load_and_does_not_change_stage_keys(tmp_path):
    root = write_folder(tmp_path / "data")
    with pytest.raises(ConfigError, match="data.decode: trifeature"):
        check_experiment(build_config({"data": {"decode": "on_the_fly"}}))
    base = {"data": {"name": "imagefolder", "root": str(root)}, "model": {"backbone": "test_resnet"}, "mcl": {"stages": 1}}
    cached = build_config(base)
    lazy = build_config({**base, "data": {**base["data"], "decode": "on_the_fly", "decode_workers": 3}})
    check_experiment(lazy)
    assert stage_specs(cached)[0].identity() == stage_specs(lazy)[0].identity()  # same pixels, same stage


def test_a_stage_trains_from_files_decoded_on_the_fly_like_from_the_cache(tmp_path):
    """The trainer reads every batch through the DataLoader workers and gets the same numbers as from memory."""
    from mcl_ray.data.base import ImageSet
    from mcl_ray.train.stage import train_stage

    root = write_folder(tmp_path / "data", n_per_class=8)
    lazy = load_dataset("imagefolder", "train", root=root, image_size=16, decode="on_the_fly")
    memory = ImageSet(images=lazy.images[:], attributes=lazy.attributes, name="memory")
    cfg = build_config({"data": {"name": "imagefolder", "root": str(root), "image_size": 16, "decode": "on_the_fly"},
                        "model": {"backbone": "test_resnet"}, "mcl": {"stages": 1},
                        "train": {"epochs": 2, "batch_size": 8, "device": "cpu"}, "eval": {"online_knn_every": 0}})
    spec = stage_specs(cfg)[0]
    a = train_stage(spec, lazy, embed=True)
    b = train_stage(spec, memory, embed=True)
    assert [h["loss"] for h in a.history] == pytest.approx([h["loss"] for h in b.history], rel=1e-6)
    np.testing.assert_allclose(a.embeddings["backbone"], b.embeddings["backbone"], rtol=1e-5, atol=1e-6)
