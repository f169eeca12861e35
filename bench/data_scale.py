"""Data at scale: memory of the Train workers and the driver as N grows, and the memory-mapped source's speed.

1. Synthetic 32-px sets of 100,000 and 1,000,000 images (random pixels and labels) are written once in the
   memory-mapped `arrays` format (mcl_ray/data/sources/arrays.py; 1M images = 3.1 GB on disk).
2. For each size, a Ray Train run with 2 CPU workers does what a stage's worker does with its data: load the
   split (memory-mapped), build the group batch sampler over all N, train `--steps` steps through the trainer's
   per-batch read (`read_batches`: rows read with pread, nothing mapped), then the sharded
   embedding pass that feeds clustering (each worker embeds only its 1/2 of the set, in chunks; a shard above
   100,000 images into a memory-mapped temporary file), its k-means sample and the chunked nearest-centroid
   assignment of the whole shard. Every worker and the driver report peak memory: VmHWM (peak resident set,
   which also counts the shared, reclaimable file pages a mapping holds) and the peak of RssAnon (memory the
   process owns; sampled every 50 ms); neither may grow with N. Each size starts from a
   cold page cache where the benchmark may drop it (root), as on a fresh node.
3. Training throughput from the memory-mapped set against the same set copied into memory (today's path before
   this change), same model and batches, one process, side by side.

    python -m bench.data_scale                       # both sizes (about 10 minutes on 2 cores)
    python -m bench.data_scale --sizes 20000 --quick # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import format_table, write_result

IMAGE_SIZE = 32


def make_set(root: Path, n: int, test_n: int = 1000) -> Path:
    """Write train/test splits of n random 32-px images (chunked: never all in memory); reuse if present."""
    from mcl_ray.data.cache import read_image_set_npz, write_image_set_chunks

    folder = root / f"n{n}"
    for split, size, seed in (("train", n, 0), ("test", test_n, 1)):
        marker = folder / f"{split}.npz"
        if marker.exists() and read_image_set_npz(marker, split) is not None:
            continue
        rng = np.random.default_rng(seed)
        labels = {"label": rng.integers(0, 10, size)}
        write_image_set_chunks(marker, (size, IMAGE_SIZE, IMAGE_SIZE, 3),
                               lambda a, b: np.random.default_rng([seed, a]).integers(0, 256, (b - a, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8),
                               labels)
    return folder


class PeakMemory:
    """Peaks of RssAnon, RssFile and RssShmem (sampled) and VmHWM of this process, from /proc/self/status."""

    FIELDS = ("RssAnon", "RssFile", "RssShmem")

    def __init__(self, every_s: float = 0.05):
        self.peaks, self._stop = dict.fromkeys(self.FIELDS, 0.0), threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
        self._thread.start()

    @staticmethod
    def status() -> dict[str, float]:
        out = {}
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmHWM", *PeakMemory.FIELDS):
                    out[key] = int(rest.split()[0]) / 1024  # kB -> MB
        return out

    def _sample(self) -> dict[str, float]:
        now = self.status()
        for key in self.FIELDS:
            self.peaks[key] = max(self.peaks[key], now.get(key, 0.0))
        return now

    def _run(self, every_s: float) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(every_s)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        now = self._sample()
        return {"peak_anon_mb": self.peaks["RssAnon"], "peak_file_mb": self.peaks["RssFile"],
                "peak_shmem_mb": self.peaks["RssShmem"], "peak_rss_mb": now["VmHWM"]}


def worker_loop(config: dict[str, Any]) -> None:
    """train_loop_per_worker: the data path of a stage's worker, measured."""
    import ray.train
    import torch

    from mcl_ray.data.augment import BatchAugment
    from mcl_ray.data.batch_reader import read_batches
    from mcl_ray.data.registry import load_dataset
    from mcl_ray.mcl.sampler import GroupBatchSampler
    from mcl_ray.models.encoder import build_encoder
    from mcl_ray.objectives.objective import build_objective
    from mcl_ray.plan.from_config import augment_spec, build_config, model_spec, objective_spec
    from mcl_ray.mcl.clustering import assign
    from mcl_ray.plan.artifacts import kmeans_sample
    from mcl_ray.train.embed import clustering_embeddings, spill_dir_for
    from mcl_ray.train.optim import build_optimizer

    memory = PeakMemory()
    torch.set_num_threads(1)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    cfg = build_config(config["experiment"])
    data = load_dataset("arrays", "train", root=config["root"], image_size=IMAGE_SIZE)
    n = len(data)
    sampler = GroupBatchSampler(None, num_samples=n, global_batch_size=cfg.train.batch_size, rank=rank, world_size=world, seed=0)
    encoder = build_encoder(model_spec(cfg))
    objective = build_objective(objective_spec(cfg, 0), encoder, gather=True)
    model = ray.train.torch.prepare_model(objective, move_to_device=False)
    optimizer = build_optimizer(objective, cfg.train)
    augment = BatchAugment(augment_spec(cfg))
    t0 = time.perf_counter()
    for step, (idx, batch) in enumerate(read_batches(data.images, sampler)):  # the trainer's read path
        if step == config["steps"]:
            break
        loss = model(*objective.prepare(batch, augment))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    train_s = time.perf_counter() - t0
    bounds = np.linspace(0, n, world + 1).astype(int)
    t0 = time.perf_counter()
    with spill_dir_for(bounds[rank + 1] - bounds[rank]) as spill:  # what the worker's clustering step does
        shard = clustering_embeddings(encoder, data.images[bounds[rank]:bounds[rank + 1]], None, ("projector",),
                                      augment_spec(cfg), spill_dir=spill)["projector"]
        embed_s = time.perf_counter() - t0
        sample = kmeans_sample(shard, n, cfg.mcl.kmeans_max_points, 0, rank)  # what it sends to the clustering actor
        centroids = np.ascontiguousarray(sample[:10])  # stand-in for the actor's k-means (memory, not quality)
        labels, _ = assign(shard, centroids, use_gpu=False)  # the chunked assignment of the whole shard
        shard_rows = len(shard)
        del shard
    mem = memory.stop()
    report = {"rank": rank, "n": n, "train_images_per_s": config["steps"] * len(idx) / train_s,
              "embed_images": shard_rows, "embed_images_per_s": shard_rows / embed_s,
              "assigned": int(labels.size), **mem}
    Path(config["out"], f"rank{rank}.json").write_text(json.dumps(report))  # Ray Train keeps rank 0's report only
    ray.train.report(report)


def drop_page_cache() -> bool:
    """Start from a cold page cache, as a fresh node would (needs root; recorded either way)."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return True
    except OSError:
        return False


def ray_run(root: Path, experiment: dict[str, Any], steps: int, workers: int) -> list[dict[str, Any]]:
    """Run worker_loop on `workers` Ray Train workers; each worker's report."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    out = root.parent / "reports" / root.name
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("rank*.json"):
        old.unlink()
    trainer = TorchTrainer(
        worker_loop, train_loop_config={"root": str(root), "experiment": experiment, "steps": steps, "out": str(out)},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=False, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(storage_path=str(root.parent / "ray"), name=f"scale-{root.name}-{int(time.time())}"),
    )
    trainer.fit()
    return [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]


def in_memory_vs_mapped(root: Path, experiment: dict[str, Any], steps: int, repeats: int) -> dict[str, Any]:
    """Training images/s from the mapped set and from the same set copied into memory (alternating, same batches)."""
    import torch

    from mcl_ray.data.augment import BatchAugment
    from mcl_ray.data.batch_reader import read_batches
    from mcl_ray.data.registry import load_dataset
    from mcl_ray.mcl.sampler import GroupBatchSampler
    from mcl_ray.models.encoder import build_encoder
    from mcl_ray.objectives.objective import build_objective
    from mcl_ray.plan.from_config import augment_spec, build_config, model_spec, objective_spec
    from mcl_ray.train.optim import build_optimizer

    cfg = build_config(experiment)
    mapped = load_dataset("arrays", "train", root=root, image_size=IMAGE_SIZE).images
    copied = torch.from_numpy(np.array(mapped))  # the old path: the whole set in this process's memory
    sources = {  # each: sampler -> (indices, batch) per step
        "memory-mapped": lambda sampler: read_batches(mapped, sampler),  # the trainer's path (pread)
        "in memory": lambda sampler: ((torch.as_tensor(idx), copied[torch.as_tensor(idx)]) for idx in sampler),
    }
    rates: dict[str, list[float]] = {k: [] for k in sources}
    for repeat in range(repeats):
        for name, read in sources.items():
            torch.manual_seed(0)
            encoder = build_encoder(model_spec(cfg))
            objective = build_objective(objective_spec(cfg, 0), encoder, gather=False)
            optimizer = build_optimizer(objective, cfg.train)
            augment = BatchAugment(augment_spec(cfg))
            sampler = GroupBatchSampler(None, num_samples=len(mapped), global_batch_size=cfg.train.batch_size, seed=repeat)
            seen, t0 = 0, time.perf_counter()
            for step, (idx, batch) in enumerate(read(sampler)):
                if step == steps:
                    break
                loss = objective(*objective.prepare(batch, augment))["loss"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                seen += len(idx)
            rates[name].append(seen / (time.perf_counter() - t0))
    out = {name: float(np.median(v)) for name, v in rates.items()}
    return {"images_per_s": out, "runs": rates, "ratio_mapped_vs_in_memory": out["memory-mapped"] / out["in memory"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--root", default="/tmp/mcl-data-scale")
    p.add_argument("--steps", type=int, default=20, help="training steps per worker")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats of the mapped / in-memory comparison")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 3, 1
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    repo = str(Path(__file__).resolve().parents[1])  # Ray's workers import worker_loop from this module
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    import ray

    experiment = {"data": {"image_size": IMAGE_SIZE}, "model": {"backbone": "test_resnet", "cifar_stem": False,
                  "proj_hidden_dim": 256, "proj_dim": 64}, "train": {"batch_size": 256, "lr": 1e-3}}
    root = Path(args.root)
    t0 = time.perf_counter()
    folders = {}
    for n in args.sizes:
        t = time.perf_counter()
        folders[n] = make_set(root, n)
        print(f"set of {n} images ready in {time.perf_counter() - t:.0f} s "
              f"({(folders[n] / 'train.images.npy').stat().st_size / 2**30:.2f} GiB)", flush=True)

    driver = PeakMemory()
    ray.init(num_cpus=args.workers + 1, log_to_driver=False, include_dashboard=False)
    rows = []
    per_size: dict[int, list[dict[str, Any]]] = {}
    cold: dict[int, bool] = {}
    try:
        for n, folder in folders.items():
            cold[n] = drop_page_cache()
            per_size[n] = ray_run(folder, experiment, args.steps, args.workers)
            for report in per_size[n]:
                rows.append({"images": n, "rank": report["rank"], "peak_anon_mb": report["peak_anon_mb"],
                             "peak_file_mb": report["peak_file_mb"], "peak_shmem_mb": report["peak_shmem_mb"],
                             "peak_rss_mb": report["peak_rss_mb"], "train_img_s": report["train_images_per_s"],
                             "embed_img_s": report["embed_images_per_s"]})
    finally:
        ray.shutdown()
    driver_mem = driver.stop()
    print(format_table(rows))
    print(f"driver: peak anon {driver_mem['peak_anon_mb']:.0f} MB, peak RSS {driver_mem['peak_rss_mb']:.0f} MB")
    speed = in_memory_vs_mapped(folders[min(folders)], experiment, args.steps, args.repeats)
    print(f"training images/s, same batches: memory-mapped {speed['images_per_s']['memory-mapped']:.0f}, "
          f"in memory {speed['images_per_s']['in memory']:.0f} -> ratio {speed['ratio_mapped_vs_in_memory']:.3f}")
    sizes = sorted(per_size)
    growth = rss_growth = None
    if len(sizes) > 1:
        peak = lambda n, field: max(r[field] for r in per_size[n])  # noqa: E731
        growth = peak(sizes[-1], "peak_anon_mb") / peak(sizes[0], "peak_anon_mb")
        rss_growth = peak(sizes[-1], "peak_rss_mb") / peak(sizes[0], "peak_rss_mb")
        print(f"worker peak memory, {sizes[-1]} vs {sizes[0]} images: anon {growth:.3f}x, RSS {rss_growth:.3f}x "
              f"(largest RSS {peak(sizes[-1], 'peak_rss_mb'):.0f} MB)")
    write_result("data_scale" if not args.quick else "data_scale-quick", {
        "settings": vars(args), "workers": rows, "driver": driver_mem, "speed": speed, "cold_page_cache": cold,
        "worker_anon_growth_largest_vs_smallest": growth, "worker_rss_growth_largest_vs_smallest": rss_growth,
        "worker_peak_rss_mb_max": max(r["peak_rss_mb"] for r in rows), "total_seconds": time.perf_counter() - t0,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
