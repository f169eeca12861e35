"""On-the-fly decoding (data.decode: on_the_fly): JPEG files decoded per batch by DataLoader workers.

An ImageFolder of N 64-px JPEGs is written once; then, side by side on the same batches:
  * read only   : images/s of `read_batches` over one epoch of shuffled 256-image batches, decoding in the training
                  process (0 workers) and in 2 DataLoader workers;
  * training    : a test_resnet stage (2 epochs) from the files decoded on the fly (2 workers) and from the same
                  images decoded once into memory: images/s and their ratio.

    python -m bench.decode              # 5,000 images (a few minutes on a 2-core CPU)
    python -m bench.decode --quick      # smoke run
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.common import format_table, write_result


def write_jpegs(root: Path, n: int, size: int) -> None:
    from PIL import Image

    from mcl_ray.data.trifeature import generate_trifeature

    done = root / f".complete-{n}-{size}"
    if done.exists():
        return
    images = generate_trifeature(n, size, seed=0)
    for split in ("train", "test"):
        for i in range(n if split == "train" else min(n, 200)):
            cls = int(images.attributes["shape"][i])
            folder = root / split / f"shape{cls}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images.images[i]).save(folder / f"{i:07d}.jpg", quality=90)
    done.touch()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--root", default="/tmp/mcl-decode-bench")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.images = 600
    import torch

    from mcl_ray.data.base import ImageSet
    from mcl_ray.data.batch_reader import read_batches
    from mcl_ray.data.registry import load_dataset
    from mcl_ray.plan.from_config import build_config, stage_specs
    from mcl_ray.train.stage import train_stage

    root = Path(args.root)
    t0 = time.perf_counter()
    write_jpegs(root, args.images, args.size)
    print(f"{args.images} JPEGs of {args.size} px under {root} ({time.perf_counter() - t0:.0f} s)")
    lazy = load_dataset("imagefolder", "train", root=root, image_size=args.size, decode="on_the_fly")
    order = np.random.default_rng(0).permutation(len(lazy))
    plan = [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]

    rows = []
    for workers in (0, args.workers):
        t = time.perf_counter()
        count = sum(len(batch) for _, batch in read_batches(lazy.images, plan, workers=workers))
        rows.append({"pass": "read only", "source": f"files, {workers} workers", "images_per_s": count / (time.perf_counter() - t)})
    memory = ImageSet(images=lazy.images[:], attributes=lazy.attributes, name="memory")
    t = time.perf_counter()
    count = sum(len(batch) for _, batch in read_batches(memory.images, plan))
    rows.append({"pass": "read only", "source": "in memory", "images_per_s": count / (time.perf_counter() - t)})

    torch.set_num_threads(2)
    cfg = build_config({"data": {"name": "imagefolder", "root": str(root), "image_size": args.size, "decode": "on_the_fly",
                                 "decode_workers": args.workers, "train_size": None},
                        "model": {"backbone": "test_resnet"}, "mcl": {"stages": 1},
                        "train": {"epochs": 2, "batch_size": args.batch_size, "device": "cpu", "log_every": 10**6},
                        "eval": {"online_knn_every": 0}})
    spec = stage_specs(cfg)[0]
    speeds = {}
    for source, images in (("files decoded on the fly", lazy), ("in memory", memory)):
        result = train_stage(spec, images)
        speeds[source] = float(np.mean([h["images_per_s"] for h in result.history[1:] or result.history]))
        rows.append({"pass": "training", "source": source, "images_per_s": speeds[source]})
    ratio = speeds["files decoded on the fly"] / speeds["in memory"]
    print(format_table(rows))
    print(f"training from files decoded on the fly / in memory: {ratio:.3f}x")
    if not args.quick:
        path = write_result("decode", {"settings": vars(args), "rows": rows, "train_ratio_on_the_fly_vs_memory": ratio})
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
