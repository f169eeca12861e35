"""Batched on-device SimCLR augmentation vs the usual per-sample torchvision PIL pipeline in a DataLoader.

Both sides make two views of every image from the same random uint8 images; throughput counts images (a pair of
views is one image). The batched side includes what a training step pays: shuffled indexing of the uint8 tensor.
A per-op section times kornia's crop/flip and colour jitter against the replacements in mcl_ray.data.augment
(the reason those two ops are our own).

    python -m bench.augment               # 10k images at 32 and 64 px
    python -m bench.augment --quick       # a smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from bench.common import format_table, write_result
from mcl_ray.data.augment import (
    AugmentSpec,
    BatchAugment,
    color_jitter,
    crop_flip_resize,
    sample_crop_boxes,
    to_float_chw,
)

BATCH = 256
NOTE = (
    "load_avg records the machine's load before and after the run: on a busy 2-core machine every 2-thread "
    "elementwise op waits for a core another process holds, so 2-thread rows are only comparable on a quiet machine"
)


def simclr_pil_transform(spec: AugmentSpec) -> transforms.Compose:
    """The standard per-sample pipeline with the same settings as ``spec`` (blur off, as in the spec default)."""
    s = spec.jitter_strength
    return transforms.Compose([
        transforms.RandomResizedCrop(spec.crop_size, scale=spec.crop_scale),
        transforms.RandomHorizontalFlip(spec.hflip),
        transforms.RandomApply([transforms.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=spec.jitter_prob),
        transforms.RandomGrayscale(spec.grayscale),
        transforms.ToTensor(),
        transforms.Normalize(spec.mean, spec.std),
    ])


class TwoViewPIL(Dataset):
    """uint8 HWC images -> (view1, view2) through a PIL transform, one sample at a time."""

    def __init__(self, images: np.ndarray, transform: Callable) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = Image.fromarray(self.images[i])
        return self.transform(img), self.transform(img)


def pil_images_per_s(images: np.ndarray, spec: AugmentSpec, workers: int, repeats: int) -> float:
    loader = DataLoader(
        TwoViewPIL(images, simclr_pil_transform(spec)), batch_size=BATCH, shuffle=True, num_workers=workers,
        persistent_workers=workers > 0,
    )
    for i, _ in enumerate(loader):  # warm-up: start workers, fill caches
        if i >= 1:
            break
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _v1, _v2 in loader:
            pass
        best = max(best, len(images) / (time.perf_counter() - t0))
    return best


def batched_images_per_s(images: np.ndarray, spec: AugmentSpec, repeats: int) -> float:
    augment = BatchAugment(spec)
    source = torch.from_numpy(images)
    augment(source[:BATCH])  # warm-up
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        order = torch.randperm(len(source))
        for start in range(0, len(source), BATCH):
            batch = source[order[start : start + BATCH]]
            _v1, _v2 = augment(batch), augment(batch)
        best = max(best, len(images) / (time.perf_counter() - t0))
    return best


def median_ms(fn: Callable[[], Any], reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def op_breakdown(size: int, reps: int) -> list[dict[str, Any]]:
    """ms per batch of 256 (one view): kornia's op vs ours, and the whole pipeline both ways."""
    import kornia.augmentation as K

    spec = AugmentSpec(crop_size=size)
    s = spec.jitter_strength
    u8 = torch.randint(0, 256, (BATCH, size, size, 3), dtype=torch.uint8)
    x = to_float_chw(u8)
    k_crop_flip = torch.nn.Sequential(
        K.RandomResizedCrop((size, size), scale=spec.crop_scale), K.RandomHorizontalFlip(p=spec.hflip)
    )
    k_jitter = K.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=spec.jitter_prob)
    k_all = torch.nn.Sequential(k_crop_flip, k_jitter, K.RandomGrayscale(p=spec.grayscale))

    def ours_crop_flip() -> torch.Tensor:
        boxes = sample_crop_boxes(BATCH, size, size, spec.crop_scale, x.device)
        return crop_flip_resize(x, boxes, torch.rand(BATCH) < spec.hflip, size)

    ours_all = BatchAugment(spec)
    pairs = [
        ("crop+flip", lambda: k_crop_flip(x), ours_crop_flip),
        ("colour jitter", lambda: k_jitter(x), lambda: color_jitter(x, s, spec.jitter_prob)),
        ("whole view (from uint8)", lambda: k_all(to_float_chw(u8)), lambda: ours_all(u8)),
    ]
    rows = []
    for name, kornia_fn, ours_fn in pairs:
        k_ms, o_ms = median_ms(kornia_fn, reps), median_ms(ours_fn, reps)
        rows.append({"size": size, "op": name, "kornia_ms": k_ms, "ours_ms": o_ms, "kornia_over_ours": k_ms / o_ms})
    return rows


def main(argv: list[str] | None = None) -> None:
    default_threads = torch.get_num_threads()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="images per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64], help="image side = crop side (px)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers for PIL")
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, default_threads}),
                        help="torch threads for the batched side (a busy shared CPU favours 1)")
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs per setting (best is kept)")
    parser.add_argument("--quick", action="store_true", help="1k images at 32 px, one repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.sizes, args.repeats = 1000, [32], 1

    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    ops: list[dict[str, Any]] = []
    rng = np.random.default_rng(0)
    for size in args.sizes:
        images = rng.integers(0, 256, (args.n, size, size, 3), dtype=np.uint8)
        spec = AugmentSpec(crop_size=size)
        batched: dict[int, float] = {}
        for threads in args.threads:
            torch.set_num_threads(threads)
            batched[threads] = batched_images_per_s(images, spec, args.repeats)
        torch.set_num_threads(min(args.threads))
        ops += op_breakdown(size, reps=5 if args.quick else 15)
        torch.set_num_threads(default_threads)
        pil = {w: pil_images_per_s(images, spec, w, args.repeats) for w in args.workers}
        settings = [("batched BatchAugment", f"{t} threads", v) for t, v in batched.items()]
        settings += [("PIL torchvision DataLoader", f"{w} workers", v) for w, v in pil.items()]
        for pipeline, setting, value in settings:
            row: dict[str, Any] = {"size": size, "pipeline": pipeline, "setting": setting, "images_per_s": value}
            row.update({f"batched_{t}t_over_this": b / value for t, b in batched.items()})
            rows.append(row)

    print(f"two views per image, batch {BATCH}, n={args.n}, best of {args.repeats}; default torch threads "
          f"{default_threads}")
    print(format_table(rows))
    print(f"\nper op, ms per batch of {BATCH} (one view), median, torch threads {min(args.threads)}:")
    print(format_table(ops))
    path = write_result("augment", {
        "note": NOTE,
        "load_avg": {"before": load_before, "after": os.getloadavg()},
        "settings": {"n": args.n, "sizes": args.sizes, "batch_size": BATCH, "views": 2, "workers": args.workers,
                     "batched_torch_threads": args.threads, "pil_torch_threads": default_threads,
                     "ops_torch_threads": min(args.threads), "repeats": args.repeats, "quick": args.quick,
                     "spec": "AugmentSpec defaults: crop_scale (0.2, 1), hflip 0.5, jitter s=0.5 p=0.8, "
                             "grayscale 0.2, blur off"},
        "throughput": rows,
        "ops": ops,
    })
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
