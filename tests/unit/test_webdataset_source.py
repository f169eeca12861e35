"""WebDataset tar shards of image-caption pairs, written here in img2dataset's layout."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mcl_ray.data.experiment_data import load_experiment_data
from mcl_ray.errors import ConfigError, DataError
from mcl_ray.plan.from_config import build_config, check_experiment, data_spec

COLOURS = [(255, 0, 0), (0, 0, 255), (0, 255, 0)]


def write_shards(folder, shards=2, per_shard=10, drop_caption=None):
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        with tarfile.open(folder / f"{s:05d}.tar", "w") as tar:
            for i in range(per_shard):
                key, n = f"{s:05d}{i:04d}", s * per_shard + i
                buf = io.BytesIO()
                Image.fromarray(np.full((20, 20, 3), COLOURS[n % 3], np.uint8)).save(buf, format="PNG")
                files = {"png": buf.getvalue(), "txt": f"colour {n % 3} sample {n}".encode(), "cls": str(n % 3).encode()}
                if n == drop_caption:
                    del files["txt"]
                for ext, payload in files.items():
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    return str(folder) + "/{00000..%05d}.tar" % (shards - 1)


def config(pattern, **data):
    root = str(Path(pattern).parent.parent / "root") if pattern else "/nonexistent"  # the decoded cache goes here
    return build_config({"data": {"name": "webdataset", "shards": pattern, "image_size": 8, "train_size": None, "root": root,
                                  "test_size": None, **data},
                         "model": {"backbone": "open_clip:mcl-tiny", "head": "none"}, "objective": {"name": "clip"},
                         "mcl": {"clusters": 2}})


def test_shards_give_captioned_images_split_without_overlap(tmp_path):
    data = load_experiment_data(data_spec(config(write_shards(tmp_path / "shards"))))
    assert len(data.pretrain) == 16 and len(data.test) == 4
    assert data.pretrain.images.shape == (16, 8, 8, 3)
    seen = set(data.pretrain.captions) | set(data.test.captions)
    assert len(seen) == 20  # every sample once, in one split
    for image, caption, label in zip(data.test.images, data.test.captions, data.test.attributes["label"]):
        assert caption.startswith(f"colour {label} ") and tuple(image[0, 0]) == COLOURS[label]


def test_replaced_shards_change_the_data_key(tmp_path):
    pattern = write_shards(tmp_path / "shards")
    before = data_spec(config(pattern)).identity()
    write_shards(tmp_path / "shards", per_shard=11)
    assert data_spec(config(pattern)).identity()["files"] != before["files"]


def test_shard_problems_are_named(tmp_path):
    pattern = write_shards(tmp_path / "shards", drop_caption=3)
    with pytest.raises(DataError, match=r"00000.tar: sample 000000003 has no caption"):
        load_experiment_data(data_spec(config(pattern)))
    with pytest.raises(ConfigError, match="data.shards"):
        check_experiment(config(None))
    with pytest.raises(ConfigError, match="data.shards: only used by data.name: webdataset"):
        check_experiment(build_config({"data": {"shards": pattern}}))


def test_shards_are_decoded_once_in_chunks_into_a_memory_mapped_cache(tmp_path, monkeypatch):
    from mcl_ray.data.sources import webdataset as source

    pattern = write_shards(tmp_path / "shards", shards=3, per_shard=7)
    chunks = []
    original = source.read_shards

    def small_chunks(urls, image_size):
        for part in original(urls, image_size, chunk=4):  # 21 samples: 6 chunks, never the whole set at once
            chunks.append(len(part[0]))
            yield part

    monkeypatch.setattr(source, "read_shards", small_chunks)
    first = load_experiment_data(data_spec(config(pattern)))
    assert chunks == [4, 4, 4, 4, 4, 1]
    assert isinstance(first.pretrain.images.base, np.memmap)  # workers map the cache, they do not load it
    second = load_experiment_data(data_spec(config(pattern)))
    assert len(chunks) == 6  # read from the cache, not decoded again
    np.testing.assert_array_equal(np.asarray(second.pretrain.images), np.asarray(first.pretrain.images))
    assert second.pretrain.captions == first.pretrain.captions
    for image, caption, label in zip(second.pretrain.images, second.pretrain.captions, second.pretrain.attributes["label"]):
        assert caption.startswith(f"colour {label} ") and tuple(image[0, 0]) == COLOURS[label]
