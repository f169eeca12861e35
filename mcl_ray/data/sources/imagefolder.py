"""imagefolder: your own images, data.root/{train,test or val}/<class name>/<image file>."""

from __future__ import annotations

from mcl_ray.data.registry import DATA_SOURCES, DataSource
from mcl_ray.errors import DataError

# Folders tried, in order, for a split (many data sets ship 'val' instead of 'test').
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
SPLIT_DIRS = {"train": ("train",), "test": ("test", "val"), "val": ("val", "test")}


@DATA_SOURCES.register("imagefolder")
class ImageFolder(DataSource):
    splits = ("train", "test", "val")
    attributes = ("label",)
    options = ("decode",)

    def files(self, split, *, root, seed, labels=None):
        """Image files under the split's class folders (torchvision's extensions), without decoding."""
        import os

        directory = next((d for d in (root / f for f in SPLIT_DIRS[split]) if d.is_dir()), None)
        if directory is None:
            return []
        return [
            os.path.join(folder, f) for classdir in sorted(directory.iterdir()) if classdir.is_dir()
            for folder, _, names in os.walk(classdir, followlinks=True) for f in names if f.lower().endswith(IMAGE_EXTENSIONS)
        ]

    def count(self, split, *, root, seed, labels=None):
        directory = next((d for d in (root / f for f in SPLIT_DIRS[split]) if d.is_dir()), None)
        return None if directory is None else len(self.files(split, root=root, seed=seed))

    def load(self, split, *, root, image_size, download, size, seed, cache_dir, decode=None):
        from mcl_ray.data import readers

        candidates = [root / folder for folder in SPLIT_DIRS[split]]
        directory = next((d for d in candidates if d.is_dir()), None)
        if directory is None:
            tried = " or ".join(str(d) for d in candidates)
            raise DataError(
                f"imagefolder: no {split} split under {root} (looked for {tried}); expected "
                f"{root}/train/<class name>/<image file> and {root}/test/<class name>/<image file> (or val/)"
            )
        train_dir = root / "train"
        # Label ids come from the train split's class folders, so a test split with fewer classes agrees.
        classes = readers.folder_classes(train_dir) if train_dir.is_dir() and directory != train_dir else None
        return readers.load_image_folder(directory, image_size, class_names=classes, cache_dir=cache_dir, size=size, seed=seed,
                                          decode=decode)
