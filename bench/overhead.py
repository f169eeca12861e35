"""What Ray costs: one MCL stage as a plain PyTorch loop vs Ray Train with 1 and 2 workers, and the
ClusteringActor round trip vs in-process k-means at N=1M, d=512 (with the actor's peak memory).

Training: the same model, data, epochs and global batch in all three; the plain loop and the 1-worker
job use 2 torch threads, the 2-worker job 1 thread per worker (2 cores either way). Steady-state
throughput is the median images/s of the epochs after the first; the fixed start-up cost is a stage's
wall time minus its epoch times, minus the same quantity for the plain loop (model build, data load).
Target: 1-worker steady-state throughput >= 0.95x the plain loop.

    python -m bench.overhead            # about 5 minutes on 2 cores; run it alone
    python -m bench.overhead --quick
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import ray
import torch

from bench.clustering import sphere_mixture
from bench.common import format_table, write_result
from mcl_ray.config import load_config
from mcl_ray.data.from_config import load_experiment_data
from mcl_ray.engine.clustering_actor import ClusteringActor
from mcl_ray.engine.runtime import plan_resources
from mcl_ray.engine.stage_job import run_stage_job
from mcl_ray.mcl.clustering import assign, kmeans
from mcl_ray.store.artifacts import ArtifactStore
from mcl_ray.store.keys import stage_key
from mcl_ray.train.stage import StageContext, train_stage

TARGET = 0.95


def experiment(tmp: str, images: int, epochs: int, workers: int, cpus_per_worker: float):
    return load_config(overrides=[
        "data.name=trifeature", f"data.train_size={images}", "data.test_size=200", "data.image_size=32",
        f"data.root={tmp}/data", "model.backbone=test_resnet", "model.cifar_stem=false",
        f"train.epochs={epochs}", "train.batch_size=256", f"train.workers={workers}", "train.device=cpu",
        "train.log_every=100000", "eval.online_knn_every=0", f"output_dir={tmp}/out", "ray.use_gpu=false",
        "ray.clustering_gpus=0", f"ray.cpus_per_worker={cpus_per_worker}", "ray.reuse_stages=false",
        f"name=w{workers}",
    ])


def steady(history: list[dict[str, Any]]) -> float:
    rates = [h["images_per_s"] for h in history[1:]] or [history[0]["images_per_s"]]
    return statistics.median(rates)


def plain_loop(cfg) -> dict[str, Any]:
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    data = load_experiment_data(cfg.data)
    result = train_stage(cfg, 0, data.pretrain, None, ctx=StageContext(device=torch.device("cpu"), progress=False))
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "epochs_s": sum(h["epoch_time_s"] for h in result.history), "img_s": steady(result.history)}


def ray_stage(cfg) -> dict[str, Any]:
    store = ArtifactStore(cfg.output_dir)
    resources = plan_resources(cfg, 0.0)
    t0 = time.perf_counter()
    out = run_stage_job(
        cfg, 0, store=store, resources=resources, stage_key=stage_key(cfg, 0, None), cluster_key=None,
        previous_clusters=None, init_stage=None, init_state=None, actor=None, attributes=None, num_samples=0,
        kmeans_seed=0, progress=False,
    )
    wall = time.perf_counter() - t0
    history = out["history"]
    return {"wall_s": wall, "epochs_s": sum(h["epoch_time_s"] for h in history), "img_s": steady(history)}


def clustering(n: int, d: int, k: int, max_points: int, world: int = 2) -> dict[str, Any]:
    x = sphere_mixture(n, d, centres=k, seed=0)
    t0 = time.perf_counter()
    local = kmeans(x, k, seed=0, niter=10, max_train_points=max_points, use_gpu=False, num_threads=2)
    in_process_s = time.perf_counter() - t0

    actor = ray.remote(ClusteringActor).options(num_cpus=2).remote(threads=2)
    ray.get(actor.peak_rss_mb.remote())  # started
    actor_idle_mb = ray.get(actor.peak_rss_mb.remote())
    t0 = time.perf_counter()
    ray.get(actor.begin.remote("bench", k=k, num_samples=n, world_size=world, seed=0, niter=10))
    bounds = np.linspace(0, n, world + 1).astype(int)
    shards = [x[bounds[r]:bounds[r + 1]] for r in range(world)]
    rng = np.random.default_rng(0)
    for r, shard in enumerate(shards):  # what each Train worker sends: a bounded sample of its shard
        take = int(np.ceil(max_points * len(shard) / n))
        ray.get(actor.add_sample.remote("bench", r, shard[np.sort(rng.choice(len(shard), take, replace=False))]))
    ray.get(actor.fit.remote("bench"))
    centroids = ray.get(actor.centroids.remote("bench"))
    for r, shard in enumerate(shards):  # each worker assigns its own shard in chunks
        labels, sq = assign(shard, centroids, use_gpu=False)
        ray.get(actor.add_labels.remote("bench", int(bounds[r]), labels, float(sq.sum(dtype=np.float64))))
    with tempfile.TemporaryDirectory() as store:
        info = ray.get(actor.finish.remote("bench", store_root=store, cluster_key="bench", previous_clusters=None,
                                           attributes=None, meta={}))
    actor_s = time.perf_counter() - t0
    ray.kill(actor)
    return {
        "n": n, "d": d, "k": k, "train_points": max_points, "in_process_s": in_process_s, "actor_round_trip_s": actor_s,
        "actor_vs_in_process": actor_s / in_process_s,
        "actor_peak_rss_mb": info["actor_peak_rss_mb"], "actor_idle_rss_mb": actor_idle_mb,
        "embeddings_mb": x.nbytes / 2**20,
        "inertia_in_process": local.inertia, "inertia_actor": info["inertia"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dashboard", action="store_true",
                        help="start Ray's dashboard too (its agents cost ~14%% of 2 cores; mcl-ray's local instances run without it)")
    args = parser.parse_args()
    images, epochs = (1000, 3) if args.quick else (5000, 5)
    n = 100_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        plain = plain_loop(experiment(tmp, images, epochs, 1, 2))  # before Ray starts: nothing else running
        ray.init(num_cpus=6, include_dashboard=args.dashboard, log_to_driver=False)
        one = ray_stage(experiment(tmp, images, epochs, 1, 2))
        two = ray_stage(experiment(tmp, images, epochs, 2, 1))
        cluster = clustering(n, 512, 100, max_points=100_000)
        ray.shutdown()
    fixed_plain = plain["wall_s"] - plain["epochs_s"]
    rows = [
        {"setup": "plain loop (1 process, 2 threads)", **plain, "vs_plain": 1.0, "startup_overhead_s": 0.0},
        {"setup": "Ray Train, 1 worker (2 threads)", **one, "vs_plain": one["img_s"] / plain["img_s"],
         "startup_overhead_s": one["wall_s"] - one["epochs_s"] - fixed_plain},
        {"setup": "Ray Train, 2 workers (1 thread each)", **two, "vs_plain": two["img_s"] / plain["img_s"],
         "startup_overhead_s": two["wall_s"] - two["epochs_s"] - fixed_plain},
    ]
    print(f"one stage: test_resnet, Trifeature 32 px, {images} images, {epochs} epochs, global batch 256")
    print(format_table(rows, ["setup", "img_s", "vs_plain", "wall_s", "epochs_s", "startup_overhead_s"]))
    print()
    print(format_table([cluster], ["n", "d", "k", "train_points", "in_process_s", "actor_round_trip_s",
                                   "actor_vs_in_process", "actor_idle_rss_mb", "actor_peak_rss_mb", "embeddings_mb"]))
    met = rows[1]["vs_plain"] >= TARGET
    print(f"\n1-worker steady-state throughput {rows[1]['vs_plain']:.3f}x the plain loop (target >= {TARGET}): "
          f"{'met' if met else 'NOT met'}")
    path = write_result("overhead", {
        "settings": {"images": images, "epochs": epochs, "batch_size": 256, "backbone": "test_resnet", "image_size": 32,
                     "ray_dashboard": args.dashboard},
        "training": rows, "clustering": cluster, "target_1_worker_vs_plain": TARGET, "target_met": met,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
