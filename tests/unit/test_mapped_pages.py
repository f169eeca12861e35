"""Reading a memory-mapped set through read_batches lets go of its pages: the values stay, RSS does not grow."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mcl_ray.data.batch_reader import read_batches
from mcl_ray.data.mapped_pages import release_mapped_pages


def _resident_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no RssFile in /proc/self/status")


def _mapped(tmp_path, rows: int) -> np.memmap:
    path = tmp_path / "images.npy"
    out = np.lib.format.open_memmap(path, "w+", np.uint8, (rows, 32, 32, 3))
    for start in range(0, rows, 4096):
        stop = min(start + 4096, rows)
        out[start:stop] = (np.arange(start, stop) % 251).astype(np.uint8)[:, None, None, None]
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


def test_reading_every_row_keeps_the_mapping_out_of_rss_and_the_values_intact(tmp_path):
    images = _mapped(tmp_path, 40_000)  # 117 MiB
    before = _resident_mb()
    order = np.random.default_rng(0).permutation(len(images))  # random rows, as training reads them
    batches = [order[s:s + 256] for s in range(0, len(images), 256)]
    peak, total = before, 0
    for count, (index, batch) in enumerate(read_batches(images, batches), 1):
        assert torch.equal(batch[:, 0, 0, 0], (index % 251).to(torch.uint8))
        total += len(index)
        peak = max(peak, _resident_mb())
    assert total == len(images)
    # read through the mapping, the whole 117 MiB file would end up resident (random rows map far more than 3 KB)
    assert peak - before < 30, (before, peak)


def test_only_shared_mappings_are_released(tmp_path):
    images = _mapped(tmp_path, 100)
    assert release_mapped_pages(images) is True
    assert release_mapped_pages(images[10:20]) is True  # slices keep the mapping
    assert release_mapped_pages(np.array(images)) is False  # in memory
    private = np.load(tmp_path / "images.npy", mmap_mode="c")
    private[0] = 7
    assert release_mapped_pages(private) is False and private[0, 0, 0, 0] == 7  # copy-on-write changes kept


def test_read_rows_equals_indexing_for_random_runs_slices_and_negative_rows(tmp_path):
    from mcl_ray.data.mapped_pages import read_rows

    images = _mapped(tmp_path, 5000)
    rng = np.random.default_rng(1)
    for view in (images, images[1234:4321]):  # a slice keeps its parent's offset attribute: the file offset must not
        n = len(view)
        cases = [rng.choice(n, 300, replace=False), np.arange(17, 529), np.array([n - 1, 0, -1, -n]), np.array([], int)]
        for index in cases:
            got = read_rows(view, index)
            np.testing.assert_array_equal(got, np.asarray(view)[index])
            assert got.flags.owndata and not isinstance(got, np.memmap)
    with pytest.raises(IndexError, match="images.npy"):
        read_rows(images, np.array([5000]))
    assert read_rows(np.array(images), np.arange(3)) is None  # in memory: the caller indexes it
    assert read_rows(images, np.ones(len(images), bool)) is None and read_rows(images, np.int64(3)) is None
    assert read_rows(np.load(tmp_path / "images.npy", mmap_mode="c"), np.arange(3)) is None  # copy-on-write


def test_image_rows_of_a_mapped_set_maps_nothing(tmp_path):
    from mcl_ray.data.base import image_rows

    images = _mapped(tmp_path, 40_000)
    before = _resident_mb()
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(images)))
    for start in range(0, len(images), 256):
        idx = order[start:start + 256]
        assert torch.equal(image_rows(images, idx)[:, 0, 0, 0], (idx % 251).to(torch.uint8))
    assert _resident_mb() - before < 10
