"""One entry point for every data set: `load_dataset(name, split, ...)` -> ImageSet.

Keeps the per-source quirks (split names, folder layouts, which labels exist) in one table so the
rest of the code only ever sees names, splits and ImageSets.
"""

from __future__ import annotations

from pathlib import Path

from mcl_ray.data import sources, trifeature
from mcl_ray.data.base import ImageSet
from mcl_ray.errors import DataError

DATASETS = ("trifeature", "cifar10", "cifar100", "stl10", "imagefolder")

SPLITS: dict[str, tuple[str, ...]] = {
    "trifeature": ("train", "test"),
    "cifar10": ("train", "test"),
    "cifar100": ("train", "test"),
    "stl10": sources.STL10_SPLITS,
    "imagefolder": ("train", "test", "val"),
}

_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "trifeature": trifeature.ATTRIBUTES,
    "cifar10": ("label",),
    "cifar100": ("label", "coarse_label"),
    "stl10": ("label",),  # none on the 'unlabeled' split
    "imagefolder": ("label",),
}

# Trifeature images generated when no size is given.
TRIFEATURE_DEFAULT_SIZE = {"train": 10_000, "test": 2_000}

# Folders tried, in order, for an ImageFolder split (many data sets ship 'val' instead of 'test').
_IMAGEFOLDER_SPLIT_DIRS = {"train": ("train",), "test": ("test", "val"), "val": ("val", "test")}


def attribute_names(name: str) -> tuple[str, ...]:
    """Label attributes a data set provides (e.g. shape/texture/color for Trifeature)."""
    _check_name(name)
    return _ATTRIBUTES[name]


def load_dataset(
    name: str,
    split: str,
    *,
    root: str | Path,
    image_size: int,
    download: bool = False,
    size: int | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> ImageSet:
    """Load one split as an ImageSet of uint8 images (image_size^2) with integer label attributes.

    size: Trifeature -- the number of images generated (train and test use different seeds, so never
    share images); other data sets -- an optional random subsample fixed by `seed`.
    imagefolder: root holds train/ and test/ (or val/), each with one sub-folder per class.
    """
    _check_name(name)
    if split not in SPLITS[name]:
        raise DataError(f"{name}: unknown split {split!r}; choose one of {', '.join(SPLITS[name])}")
    root = Path(root).expanduser()
    if name == "trifeature":
        n = TRIFEATURE_DEFAULT_SIZE[split] if size is None else size
        images = trifeature.load_trifeature(n, image_size, trifeature.split_seed(seed, split), cache_dir)
        images.name = f"trifeature-{split}"
        return images
    if name in ("cifar10", "cifar100"):
        return sources.load_cifar(name, root, split, image_size, download=download, size=size, seed=seed)
    if name == "stl10":
        return sources.load_stl10(root, split, image_size, download=download, size=size, seed=seed)
    return _load_image_folder_split(root, split, image_size, size=size, seed=seed, cache_dir=cache_dir)


def _load_image_folder_split(
    root: Path, split: str, image_size: int, *, size: int | None, seed: int, cache_dir: str | Path | None
) -> ImageSet:
    candidates = [root / folder for folder in _IMAGEFOLDER_SPLIT_DIRS[split]]
    directory = next((d for d in candidates if d.is_dir()), None)
    if directory is None:
        tried = " or ".join(str(d) for d in candidates)
        raise DataError(
            f"imagefolder: no {split} split under {root} (looked for {tried}); expected "
            f"{root}/train/<class name>/<image file> and {root}/test/<class name>/<image file> (or val/)"
        )
    train_dir = root / "train"
    # Label ids come from the train split's class folders, so a test split with fewer classes agrees.
    classes = sources.folder_classes(train_dir) if train_dir.is_dir() and directory != train_dir else None
    return sources.load_image_folder(
        directory, image_size, class_names=classes, cache_dir=cache_dir, size=size, seed=seed
    )


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; known data sets: {', '.join(DATASETS)}")
