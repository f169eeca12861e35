"""Data sets by name: `load_dataset(name, split, ...)` -> ImageSet, through the DATA_SOURCES registry.

Each data set is one file in `data/sources/` declaring its splits and label attributes (known without
importing torch, so configs are checked in a fraction of a second) and how to load a split; the rest of the
code only ever sees names, splits and ImageSets. Adding a data source is adding a file there.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from mcl_ray.errors import ConfigError, DataError
from mcl_ray.registry import Registry

if TYPE_CHECKING:
    from mcl_ray.data.base import ImageSet


class DataSource:
    """One data set: its splits, its label attributes, and how to load a split as uint8 images."""

    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    attributes: ClassVar[tuple[str, ...]] = ("label",)
    labels_file: ClassVar[bool] = False  # True: images and labels come from a table named by data.labels
    generated: ClassVar[bool] = False  # True: data.train_size / test_size is the number of images generated
    options: ClassVar[tuple[str, ...]] = ()  # data.* fields only this source reads (passed to load when set)
    shortcuts: ClassVar[tuple[str, ...]] = ()  # attributes that measure a shortcut, left out of the mean scores
    captions: ClassVar[bool] = False  # every image comes with a caption (image-text methods train on these)
    attributes_from_data: ClassVar[bool] = False  # True: the attributes are only known once the data loads

    def files(self, split: str, *, root: Path, seed: int, labels: str | None = None) -> list[str] | None:
        """The image files a split reads, for data read from the user's files (their manifest goes into stage
        keys); None for generated or downloaded sets, whose content the data settings already fix."""
        return None

    def count(self, split: str, *, root: Path, seed: int, labels: str | None = None) -> int | None:
        """Images the split holds, when known cheaply (no decoding, no download; no torch); None otherwise.
        `mcl-ray validate` reports it, and checks that need the size (clusters vs images) use it."""
        return None

    def load(self, split: str, *, root: Path, image_size: int, download: bool, size: int | None, seed: int,
             cache_dir: str | Path | None) -> "ImageSet":
        raise NotImplementedError


DATA_SOURCES: Registry[type[DataSource]] = Registry("data set", "data.name", "mcl_ray.data.sources")


def dataset_names() -> list[str]:
    return DATA_SOURCES.names()


def data_source(name: str) -> DataSource:
    try:
        return DATA_SOURCES.get(name)()
    except ConfigError as exc:
        raise DataError(str(exc)) from None


def captioned_sources() -> list[str]:
    return [n for n in DATA_SOURCES.names() if DATA_SOURCES.get(n).captions]


def attribute_names(name: str) -> tuple[str, ...]:
    """Label attributes a data set provides (e.g. shape/texture/color for Trifeature)."""
    return data_source(name).attributes


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
    labels: str | Path | None = None,
    **options,
) -> "ImageSet":
    """Load one split as an ImageSet of uint8 images (image_size^2) with integer label attributes.

    size: Trifeature -- the number of images generated (train and test use different seeds, so never
    share images); other data sets -- an optional random subsample fixed by `seed`.
    """
    source = data_source(name)
    if split not in source.splits:
        raise DataError(f"{name}: unknown split {split!r}; choose one of {', '.join(source.splits)}")
    if bool(labels) != source.labels_file:
        raise DataError(f"{name}: data.labels " + ("is required (the table listing the images and their labels)"
                                                   if source.labels_file else "is only used by data.name: labeled or imagetext"))
    unknown = sorted(k for k, v in options.items() if v is not None and k not in source.options)
    if unknown:
        raise DataError(f"{name}: data.{unknown[0]} is not used by this data set")
    extra = {"labels": labels} if labels else {}
    extra.update({k: v for k, v in options.items() if v is not None})
    return source.load(split, root=Path(root).expanduser(), image_size=image_size, download=download, size=size,
                       seed=seed, cache_dir=cache_dir, **extra)
