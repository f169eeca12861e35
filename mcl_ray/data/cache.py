"""On-disk cache of decoded image sets, shared by the Trifeature generator and the file readers.

An entry is two files: `<stem>.images.npy`, the uint8 images as a plain .npy that every reader memory-maps
(the Train workers of a node share one copy through the page cache, and a worker reads only the batches it
trains on, so its memory does not grow with the data set), and `<stem>.npz`, the labels plus what the images
file must look like (shape, size and a checksum of its first and last MiB). The .npz is written last: it is
the commit marker. Reads never crash on a damaged entry (it is rebuilt with a warning naming the file); writes
are atomic and never stop a run.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from mcl_ray.data.base import ImageSet
from mcl_ray.errors import DataError

_PROBE = 1 << 20  # bytes checksummed at each end of the images file


def images_path(path: str | Path) -> Path:
    """The images file of the cache entry whose marker is `path` (<stem>.npz)."""
    path = Path(path)
    return path.with_name(path.name[: -len(".npz")] + ".images.npy") if path.name.endswith(".npz") else path.with_suffix(".images.npy")


def _probe_checksum(path: Path) -> int:
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(_PROBE)
        fh.seek(max(0, size - _PROBE))
        tail = fh.read(_PROBE)
    return zlib.crc32(tail, zlib.crc32(head)) & 0xFFFFFFFF


def warm_page_cache(path: Path, share_of_free_memory: float = 0.5) -> bool:
    """Read `path` once, sequentially, in a background thread, when it fits in the page cache. Training reads
    random rows: from a cold cache each one is a disk seek (measured here: 128 random rows of a 3 GB set took 1.3 s
    cold, 1 ms once cached), while one sequential pass takes about a second. Workers of a node share the cached
    pages, so the second worker's pass is a memory copy. Sets larger than the memory should come as shuffled shards
    (data.name: webdataset) instead. Returns whether it started."""
    import threading

    try:
        size = path.stat().st_size
        with open("/proc/meminfo") as fh:
            available = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable"))
    except (OSError, StopIteration, ValueError):
        return False
    if size > share_of_free_memory * available:
        return False

    def read() -> None:
        with contextlib.suppress(OSError), open(path, "rb", buffering=0) as fh:
            buffer = bytearray(8 << 20)
            while fh.readinto(buffer):
                pass

    threading.Thread(target=read, name=f"warm {path.name}", daemon=True).start()
    return True


def read_image_set_npz(path: str | Path, name: str) -> ImageSet | None:
    """The cached ImageSet (images memory-mapped, read-only), or None when the entry is missing or damaged
    (then with a warning: the caller rebuilds it)."""
    path = Path(path)
    if not path.exists():
        return None
    images_file = images_path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            attributes = {k[len("attr_"):]: data[k].astype(np.int64) for k in data.files if k.startswith("attr_")}
            shape = tuple(int(v) for v in data["images_shape"])
            size, checksum = int(data["images_bytes"]), int(data["images_crc"])
            captions = [str(c) for c in data["captions"]] if "captions" in data.files else None
        if not images_file.exists():
            raise DataError(f"its images file {images_file.name} is missing")
        if images_file.stat().st_size != size or _probe_checksum(images_file) != checksum:
            raise DataError(f"its images file {images_file.name} does not match the size or checksum recorded")
        images = np.load(images_file, mmap_mode="r", allow_pickle=False)
        if images.shape != shape or images.dtype != np.uint8:
            raise DataError(f"{images_file.name} holds {images.dtype} {images.shape}, expected uint8 {shape}")
        warm_page_cache(images_file)
        return ImageSet(images=images, attributes=attributes, name=name, captions=captions)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, DataError) as exc:
        warnings.warn(f"cache file {path} is unreadable ({type(exc).__name__}: {exc}); rebuilding it", stacklevel=3)
        return None


def write_image_set_npz(path: str | Path, image_set: ImageSet) -> None:
    """Write an in-memory set as a cache entry (images file, then the marker; each atomically)."""
    write_image_set_chunks(path, image_set.images.shape, lambda start, stop: image_set.images[start:stop],
                           image_set.attributes, captions=image_set.captions)


def write_image_set_chunks(path: str | Path, shape: tuple[int, ...], chunk: Callable[[int, int], np.ndarray],
                           attributes: dict[str, np.ndarray], chunk_rows: int = 65536,
                           captions: list[str] | None = None) -> bool:
    """Write a cache entry of `shape` from `chunk(start, stop)` without holding the whole set in memory (for sets
    larger than RAM). Returns whether it was written; a read-only or full disk only warns."""
    path = Path(path)
    images_file = images_path(path)
    tmps: list[str] = []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{images_file.name}.", suffix=".tmp")
        os.close(fd)
        tmps.append(tmp)
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=tuple(shape))
        for start in range(0, shape[0], chunk_rows):
            stop = min(shape[0], start + chunk_rows)
            out[start:stop] = chunk(start, stop)
        out.flush()
        del out
        os.replace(tmp, images_file)
        tmps.remove(tmp)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        tmps.append(tmp)
        with os.fdopen(fd, "wb") as fh:
            arrays = {f"attr_{k}": np.asarray(v, np.int64) for k, v in attributes.items()}
            if captions is not None:
                arrays["captions"] = np.asarray(captions, dtype=np.str_)
            np.savez(fh, images_shape=np.asarray(shape, np.int64), images_bytes=np.int64(images_file.stat().st_size),
                     images_crc=np.int64(_probe_checksum(images_file)), **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmps.remove(tmp)
        return True
    except OSError as exc:  # a read-only or full cache disk must not stop a run
        warnings.warn(f"could not write cache file {path}: {exc}", stacklevel=3)
        return False
    finally:
        for tmp in tmps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
