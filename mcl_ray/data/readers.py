"""Real image data sets, read through torchvision and returned as uint8 ImageSets.

CIFAR-10/100 and STL-10 are parsed by torchvision (which downloads them when asked); any folder of
class sub-folders is discovered with torchvision's ImageFolder rules and decoded once with PIL, then
cached as .npz so later runs skip decoding. torchvision's bare RuntimeError / FileNotFoundError are
turned into DataErrors that name the data set, the path and what to do about it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from mcl_ray.data.base import ImageSet
from mcl_ray.data.cache import read_image_set_npz, write_image_set_npz
from mcl_ray.errors import DataError

CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
STL10_FOLDER = "stl10_binary"
STL10_SPLITS = ("train", "test", "unlabeled")
IMAGEFOLDER_CACHE_VERSION = 1  # bump when decoding/resizing changes
_PROGRESS_MIN_FILES = 500
_RESIZE_CHUNK = 1024

_T = TypeVar("_T")
log = logging.getLogger("mcl_ray")


# --- torchvision data sets -------------------------------------------------------------------------


def load_cifar(
    name: str,
    root: str | Path,
    split: str,
    image_size: int,
    *,
    download: bool = False,
    size: int | None = None,
    seed: int = 0,
) -> ImageSet:
    """CIFAR-10 ('cifar10') or CIFAR-100 ('cifar100'): attribute `label` (CIFAR-100 adds `coarse_label`)."""
    from torchvision import datasets

    if name not in CIFAR_FOLDERS:
        raise DataError(f"unknown CIFAR variant {name!r}; choose one of {', '.join(CIFAR_FOLDERS)}")
    _check_split(name, split, ("train", "test"))
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    root = Path(root).expanduser()
    dataset = _open_torchvision(
        name, root, CIFAR_FOLDERS[name], download, lambda: cls(str(root), train=split == "train", download=download)
    )
    attributes = {"label": np.asarray(dataset.targets, dtype=np.int64)}
    if name == "cifar100":
        attributes["coarse_label"] = _cifar100_coarse_labels(dataset)
    return _finish(dataset.data, attributes, f"{name}-{split}", image_size, size, seed)


def load_stl10(
    root: str | Path,
    split: str,
    image_size: int,
    *,
    download: bool = False,
    size: int | None = None,
    seed: int = 0,
) -> ImageSet:
    """STL-10 (96 px native): attribute `label` for train/test; the unlabeled split has no attributes."""
    from torchvision import datasets

    _check_split("stl10", split, STL10_SPLITS)
    root = Path(root).expanduser()
    dataset = _open_torchvision(
        "stl10", root, STL10_FOLDER, download, lambda: datasets.STL10(str(root), split=split, download=download)
    )
    images = dataset.data.transpose(0, 2, 3, 1)  # torchvision keeps N x C x H x W
    attributes = {} if split == "unlabeled" else {"label": np.asarray(dataset.labels, dtype=np.int64)}
    return _finish(images, attributes, f"stl10-{split}", image_size, size, seed)


def _open_torchvision(name: str, root: Path, folder: str, download: bool, build: Callable[[], _T]) -> _T:
    """Build a torchvision data set, turning its missing-file and download failures into DataErrors."""
    try:
        return build()
    except RuntimeError as exc:
        if "not found or corrupted" not in str(exc):
            raise
        hint = (
            "the download finished but the files do not check out; delete them and retry"
            if download
            else f"set `download: true` to fetch it, or point `root` at the directory that contains {folder}/"
        )
        raise DataError(
            f"{name}: data set not found or corrupted under {root} (expected {root / folder}); {hint}"
        ) from exc
    except OSError as exc:
        if not download:
            raise DataError(f"{name}: cannot read the data set under {root}: {exc}") from exc
        raise DataError(
            f"{name}: downloading into {root} failed ({exc}); check the connection, or download the archive "
            f"by hand and unpack it so that {root / folder} exists"
        ) from exc


def _cifar100_coarse_labels(dataset) -> np.ndarray:
    """The 20 superclass labels, which torchvision parses but drops (one more read of the same pickles)."""
    import pickle

    files = dataset.train_list if dataset.train else dataset.test_list
    labels: list[int] = []
    for file_name, _ in files:
        with open(os.path.join(dataset.root, dataset.base_folder, file_name), "rb") as fh:
            labels.extend(pickle.load(fh, encoding="latin1")["coarse_labels"])
    return np.asarray(labels, dtype=np.int64)


# --- ImageFolder -----------------------------------------------------------------------------------


def load_image_folder(
    directory: str | Path,
    image_size: int,
    *,
    class_names: list[str] | None = None,
    cache_dir: str | Path | None = None,
    size: int | None = None,
    seed: int = 0,
    name: str = "imagefolder",
    decode: str | None = None,
) -> ImageSet:
    """Images under directory/<class>/..., resized (shorter side) and centre-cropped; attribute `label`.

    class_names fixes the label order (pass the train split's classes so test labels agree); by default
    it is the sorted sub-folder names, as in torchvision's ImageFolder.
    """
    from torchvision import datasets

    image_size = _positive_int(image_size, "image_size", name)
    directory = Path(directory).expanduser()
    extensions = ", ".join(datasets.folder.IMG_EXTENSIONS)
    expected = f"expected {directory}/<class name>/<image file> (extensions: {extensions})"
    if not directory.is_dir():
        raise DataError(f"{name}: folder {directory} does not exist; {expected}")
    found = folder_classes(directory, name)
    classes = list(found) if class_names is None else list(class_names)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{name}: {directory} has class folders {unknown} that are not among {classes}")
    samples = datasets.ImageFolder.make_dataset(
        str(directory),
        {c: i for i, c in enumerate(classes)},
        extensions=datasets.folder.IMG_EXTENSIONS,
        allow_empty=True,
    )
    if not samples:
        raise DataError(f"{name}: no image files found in {directory}; {expected}")
    keep = subsample_indices(len(samples), size, seed, name)
    if keep is not None:
        samples = [samples[i] for i in keep]
    paths = [path for path, _ in samples]
    labels = np.asarray([label for _, label in samples], dtype=np.int64)
    return decode_listed(paths, {"label": labels}, image_size, base=directory, cache_dir=cache_dir,
                         set_name=f"{name}:{directory.name}", name=name, decode=decode)


def decode_listed(paths: list[str], attributes: dict[str, np.ndarray], image_size: int, *, base: Path,
                  cache_dir: str | Path | None, set_name: str, name: str, decode: str | None = None) -> ImageSet:
    """Decode image files (resized, centre-cropped) into an ImageSet, through an .npz cache keyed by the files'
    paths, sizes and modification times, the attributes and the image size (a changed file is re-decoded).
    decode='on_the_fly': nothing is decoded now; the set's images are `FileImages`, decoded when rows are read."""
    if decode not in (None, "cache", "on_the_fly"):
        raise DataError(f"{name}: data.decode must be cache or on_the_fly, got {decode!r}")
    if decode == "on_the_fly":
        from mcl_ray.data.file_images import FileImages

        unreadable = [p for p in paths if not os.access(p, os.R_OK)]
        if unreadable:
            raise DataError(f"{name}: {len(unreadable)} image files cannot be read, e.g. {unreadable[0]}")
        return ImageSet(images=FileImages(paths, image_size, name), attributes=attributes, name=set_name)
    cache_path = None
    if cache_dir is not None:
        key = _files_key(base, paths, attributes, image_size)
        cache_path = Path(cache_dir).expanduser() / f"{name}_{base.name}_{key}.npz"
        cached = read_image_set_npz(cache_path, set_name)
        if cached is not None and len(cached) == len(paths) and all(
            np.array_equal(cached.attributes.get(k), v) for k, v in attributes.items()
        ):
            return cached
    image_set = ImageSet(images=_decode_all(paths, image_size, name, base), attributes=attributes, name=set_name)
    if cache_path is not None:
        write_image_set_npz(cache_path, image_set)
    return image_set


def folder_classes(directory: str | Path, name: str = "imagefolder") -> list[str]:
    """Sorted class sub-folder names (torchvision's rule); DataError when there are none."""
    from torchvision import datasets

    try:
        classes, _ = datasets.folder.find_classes(str(directory))
    except FileNotFoundError as exc:
        raise DataError(
            f"{name}: no class sub-folders in {directory}; expected {directory}/<class name>/<image file>"
        ) from exc
    return classes


def _files_key(base: Path, paths: list[str], attributes: dict[str, np.ndarray], image_size: int) -> str:
    """Hash of everything the decoded set depends on: files (in order, with size and mtime), attributes, size."""
    files = []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError as exc:
            raise DataError(f"cannot read image file {path}: {exc}") from None
        files.append([os.path.relpath(path, base), stat.st_size, stat.st_mtime_ns])
    labels = {k: np.asarray(v).tolist() for k, v in sorted(attributes.items())}
    payload = [str(Path(base).resolve()), image_size, IMAGEFOLDER_CACHE_VERSION, files, labels]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:20]


def _decode_all(paths: list[str], image_size: int, name: str, directory: Path) -> np.ndarray:
    from tqdm.auto import tqdm

    images = np.empty((len(paths), image_size, image_size, 3), np.uint8)
    workers = min(8, os.cpu_count() or 1)  # PIL decodes with the GIL released
    with ThreadPoolExecutor(workers) as pool:
        decoded = pool.map(lambda p: _decode(p, image_size, name), paths)
        quiet = len(paths) < _PROGRESS_MIN_FILES
        progress = tqdm(decoded, total=len(paths), desc=f"decoding {directory}", unit="img", disable=quiet)
        for i, image in enumerate(progress):
            images[i] = image
    return images


def _decode(path: str, image_size: int, name: str) -> np.ndarray:
    """RGB, shorter side resized to image_size (antialiased), centre crop."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            image.draft("RGB", (image_size, image_size))  # JPEG: decode at a reduced scale when it is big
            fitted = ImageOps.fit(image.convert("RGB"), (image_size, image_size), Image.Resampling.BICUBIC)
            return np.asarray(fitted, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{name}: cannot decode image file {path}: {exc}") from exc


# --- shared: resizing, subsampling, .npz cache -----------------------------------------------------


def resize_images(images: np.ndarray, image_size: int) -> np.ndarray:
    """N x H x W x 3 uint8 -> N x S x S x 3, bilinear with antialiasing, in chunks to bound memory."""
    import torch
    import torch.nn.functional as F

    if images.shape[1:3] == (image_size, image_size):
        return np.ascontiguousarray(images)
    out = np.empty((len(images), image_size, image_size, 3), np.uint8)
    for start in range(0, len(images), _RESIZE_CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + _RESIZE_CHUNK]))
        x = chunk.permute(0, 3, 1, 2).float()
        y = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + len(chunk)] = y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def subsample_indices(total: int, size: int | None, seed: int, name: str) -> np.ndarray | None:
    """Sorted random subset of range(total) of the given size, fixed by seed; None means keep all."""
    if size is None:
        return None
    size = _positive_int(size, "size", name)
    if size > total:
        raise DataError(f"{name}: size={size} asks for more images than the {total} available "
                        "(data.train_size / data.test_size; null uses all)")
    if size == total:
        return None
    log.warning("%s: using a seeded subsample of %d of its %d images (data.train_size / data.test_size; "
                "null uses all)", name, size, total)
    return np.sort(np.random.default_rng(seed).choice(total, size, replace=False))


# --- helpers ---------------------------------------------------------------------------------------


def _finish(
    images: np.ndarray, attributes: dict[str, np.ndarray], name: str, image_size: int, size: int | None, seed: int
) -> ImageSet:
    """Subsample (before resizing, which is the costly part), resize, wrap."""
    image_size = _positive_int(image_size, "image_size", name)
    keep = subsample_indices(len(images), size, seed, name)
    if keep is not None:
        images = images[keep]
        attributes = {k: v[keep] for k, v in attributes.items()}
    return ImageSet(images=resize_images(images, image_size), attributes=attributes, name=name)


def _check_split(name: str, split: str, splits: tuple[str, ...]) -> None:
    if split not in splits:
        raise DataError(f"{name}: unknown split {split!r}; choose one of {', '.join(splits)}")


def _positive_int(value: int, field: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DataError(f"{name}: {field} must be a positive integer, got {value!r}")
    return int(value)
