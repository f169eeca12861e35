"""On-disk cache of decoded image sets (.npz), shared by the Trifeature generator and the ImageFolder loader.

Reads never crash on a damaged file (it is rebuilt with a warning); writes are atomic and never stop a run.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

from mcl_ray.data.base import ImageSet
from mcl_ray.errors import DataError


def read_image_set_npz(path: str | Path, name: str) -> ImageSet | None:
    """A cached ImageSet, or None when the file is missing or unreadable (then with a warning)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            images = data["images"]
            attributes = {k[len("attr_") :]: data[k].astype(np.int64) for k in data.files if k.startswith("attr_")}
        return ImageSet(images=images, attributes=attributes, name=name)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, DataError) as exc:
        warnings.warn(f"cache file {path} is unreadable ({type(exc).__name__}: {exc}); rebuilding it", stacklevel=3)
        return None


def write_image_set_npz(path: str | Path, image_set: ImageSet) -> None:
    """Write atomically (temporary file + os.replace) so a crash never leaves a half-written cache."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            arrays = {f"attr_{k}": np.asarray(v, np.int64) for k, v in image_set.attributes.items()}
            np.savez(fh, images=image_set.images, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:  # a read-only or full cache disk must not stop a run
        warnings.warn(f"could not write cache file {path}: {exc}", stacklevel=3)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
