"""arrays: pre-decoded uint8 images in data.root, memory-mapped (for sets larger than every worker's memory).

Each split is two files, the format of mcl-ray's own image cache: `<split>.images.npy` (N x H x W x 3 uint8, a
plain .npy) and `<split>.npz` (`attr_<name>` integer label arrays, plus the images file's shape, size and a
checksum of its ends; written by `mcl_ray.data.cache.write_image_set_chunks`). The images are memory-mapped,
so the Train workers of a node share one copy through the page cache and each reads only the batches it trains
on. Images must already have data.image_size pixels (resizing would copy the set into memory).
"""

from __future__ import annotations

from pathlib import Path

from mcl_ray.data.registry import DATA_SOURCES, DataSource
from mcl_ray.errors import DataError


@DATA_SOURCES.register("arrays")
class MemoryMappedArrays(DataSource):
    splits = ("train", "test")
    attributes = ()  # whatever attr_<name> arrays the split's .npz holds
    attributes_from_data = True

    def files(self, split, *, root, seed, labels=None):
        base = Path(root).expanduser()
        return [str(base / f"{split}.images.npy"), str(base / f"{split}.npz")]

    def count(self, split, *, root, seed, labels=None):
        import numpy as np

        try:
            with np.load(Path(root).expanduser() / f"{split}.npz", allow_pickle=False) as data:
                return int(data["images_shape"][0])
        except Exception:  # a damaged or hand-written file is reported, naming it, when the data loads
            return None

    def load(self, split, *, root, image_size, download, size, seed, cache_dir):
        import warnings

        from mcl_ray.data.base import ImageSet
        from mcl_ray.data.cache import read_image_set_npz
        from mcl_ray.data.readers import subsample_indices

        marker = Path(root).expanduser() / f"{split}.npz"
        if not marker.exists():
            raise DataError(f"arrays: {marker} is missing (data.root must hold {split}.images.npy and {split}.npz)")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            found = read_image_set_npz(marker, f"arrays-{split}")
        if found is None:  # a user's data is not rebuilt: say what is wrong with it
            reason = str(caught[-1].message) if caught else "unreadable"
            raise DataError(f"arrays: {reason.replace('; rebuilding it', '')} (write the split with "
                            "mcl_ray.data.cache.write_image_set_chunks)")
        if found.image_size != image_size:
            raise DataError(f"arrays: {marker.parent / (split + '.images.npy')} holds {found.image_size}-px images but "
                            f"data.image_size is {image_size} (resize them once beforehand)")
        keep = subsample_indices(len(found), size, seed, f"arrays-{split}")
        if keep is None:
            return found
        return ImageSet(images=found.images[keep], attributes={k: v[keep] for k, v in found.attributes.items()},
                        name=found.name)
