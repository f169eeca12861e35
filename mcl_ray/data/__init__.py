"""Image sets (Trifeature, CIFAR, STL-10, ImageFolder) and batched on-device augmentation."""

from mcl_ray.data.augment import AugmentSpec, BatchAugment, normalize_batch
from mcl_ray.data.base import ImageSet
from mcl_ray.data.registry import DATASETS, load_dataset
from mcl_ray.data.trifeature import generate_trifeature, load_trifeature

__all__ = [
    "DATASETS", "AugmentSpec", "BatchAugment", "ImageSet", "generate_trifeature", "load_dataset",
    "load_trifeature", "normalize_batch",
]
