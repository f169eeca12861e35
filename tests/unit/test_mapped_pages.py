"""Reading a memory-mapped set through read_batches lets go of its pages: the values stay, RSS does not grow."""

from __future__ import annotations

import numpy as np
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
    # without releases the whole 117 MiB file ends up resident (random rows map far more than their 3 KB)
    assert peak - before < 30, (before, peak)


def test_only_shared_mappings_are_released(tmp_path):
    images = _mapped(tmp_path, 100)
    assert release_mapped_pages(images) is True
    assert release_mapped_pages(images[10:20]) is True  # slices keep the mapping
    assert release_mapped_pages(np.array(images)) is False  # in memory
    private = np.load(tmp_path / "images.npy", mmap_mode="c")
    private[0] = 7
    assert release_mapped_pages(private) is False and private[0, 0, 0, 0] == 7  # copy-on-write changes kept
