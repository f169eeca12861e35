"""What Ray costs: one MCL stage as a plain PyTorch loop vs Ray Train with 1 and 2 workers, and the
ClusteringActor round trip vs in-process k-means at N=1M, d=512 (with the actor's peak memory).

Training: the same model, data, epochs and global batch everywhere, side by side in one run:
- all cores busy: the plain loop and the 1-worker job with 2 torch threads, the 2-worker job with 1 thread per
  worker (2 cores either way);
- one core spare: the plain loop and the 1-worker job with 1 torch thread each, leaving a core for Ray's own
  processes (the usual situation on a GPU node, where the GPU does the compute);
- a control: the 2-thread plain loop in this process while Ray runs with as many idle actors as a Train run
  keeps alive beside its worker (controller, placement-group cleaner, autoscaling coordinator, synchronization
  actor, dataset manager, preemption handler). Each Ray worker process wakes ~100 times a second (the core
  worker's signal check), which costs a loop that keeps every core busy far more than its CPU share.
Steady-state throughput is the median images/s of the epochs after the first; the fixed start-up cost is a
stage's wall time minus its epoch times, minus the same quantity for the plain loop (model build, data load).
Target: 1-worker steady-state throughput >= 0.95x the plain loop.

    python -m bench.overhead            # about 7 minutes on 2 cores; run it alone
    python -m bench.overhead --quick
    python -m bench.overhead --dashboard  # with Ray's dashboard, as `mcl-ray train` starts it locally
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
from mcl_ray.data.experiment_data import load_experiment_data
from mcl_ray.plan.from_config import data_spec, load_config, stage_specs
from mcl_ray.engine.clustering_actor import ClusteringActor
from mcl_ray.engine.runtime import plan_resources
from mcl_ray.engine.stage_job import run_stage_job
from mcl_ray.mcl.clustering import assign, kmeans
from mcl_ray.plan.hooks import RunHooks
from mcl_ray.plan.sequence import StageJob
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
        f"name=w{workers}-c{cpus_per_worker}",
    ])


def steady(history: list[dict[str, Any]]) -> float:
    rates = [h["images_per_s"] for h in history[1:]] or [history[0]["images_per_s"]]
    return statistics.median(rates)


def plain_loop(cfg, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    data = load_experiment_data(data_spec(cfg))
    result = train_stage(stage_specs(cfg)[0], data.pretrain, None, ctx=StageContext(device=torch.device("cpu"), progress=False))
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "epochs_s": sum(h["epoch_time_s"] for h in result.history), "img_s": steady(result.history)}


def ray_stage(cfg) -> dict[str, Any]:
    store = ArtifactStore(cfg.output_dir)
    resources = plan_resources(cfg, 0.0)
    t0 = time.perf_counter()
    spec = stage_specs(cfg)[0]
    job = StageJob(spec=spec, store_root=store.root_uri, stage_key=stage_key(spec.identity(), None, scope=cfg.name),
                   cluster_key=None, previous_clusters=None, init_stage=None, init_state=None, progress=False,
                   hooks=RunHooks())
    out = run_stage_job(job, resources=resources, actor=None, attributes=None, num_samples=0,
                        max_failures=cfg.ray.max_failures, checkpoints_to_keep=cfg.ray.checkpoints_to_keep,
                        checkpoint_every=cfg.ray.checkpoint_every)
    wall = time.perf_counter() - t0
    history = out["history"]
    return {"wall_s": wall, "epochs_s": sum(h["epoch_time_s"] for h in history), "img_s": steady(history)}


@ray.remote(num_cpus=0)
class _Idle:
    def ready(self) -> bool:
        return True


def plain_loop_beside_idle_actors(cfg, threads: int, actors: int) -> dict[str, Any]:
    """The control: Ray's background processes alone, without any Train code in the loop."""
    idle = [_Idle.remote() for _ in range(actors)]
    ray.get([a.ready.remote() for a in idle])
    time.sleep(3)  # let them finish starting up
    try:
        return plain_loop(cfg, threads)
    finally:
        for a in idle:
            ray.kill(a)


TRAIN_HELPER_ACTORS = 6  # what a Ray Train 2.60 run keeps alive beside its workers (see the docstring)


def training_rows(tmp: str, images: int, epochs: int, dashboard: bool) -> list[dict[str, Any]]:
    """All training setups; `vs_plain` compares each with the plain loop that uses the same torch threads."""
    cfg = lambda workers, cpus: experiment(tmp, images, epochs, workers, cpus)  # noqa: E731
    plain2 = plain_loop(cfg(1, 2), 2)  # before Ray starts: nothing else running
    plain1 = plain_loop(cfg(1, 1), 1)
    ray.init(num_cpus=6, include_dashboard=dashboard, log_to_driver=False)
    control = plain_loop_beside_idle_actors(cfg(1, 2), 2, TRAIN_HELPER_ACTORS)
    one2 = ray_stage(cfg(1, 2))
    two = ray_stage(cfg(2, 1))
    one1 = ray_stage(cfg(1, 1))
    setups = [
        ("all cores busy", "plain loop (1 process, 2 threads)", plain2, plain2),
        ("all cores busy", f"plain loop, Ray up + {TRAIN_HELPER_ACTORS} idle actors (control)", control, plain2),
        ("all cores busy", "Ray Train, 1 worker (2 threads)", one2, plain2),
        ("all cores busy", "Ray Train, 2 workers (1 thread each)", two, plain2),
        ("one core spare", "plain loop (1 process, 1 thread)", plain1, plain1),
        ("one core spare", "Ray Train, 1 worker (1 thread)", one1, plain1),
    ]
    rows = []
    for case, name, r, base in setups:
        fixed_base = base["wall_s"] - base["epochs_s"]
        is_ray = name.startswith("Ray")
        rows.append({"case": case, "setup": name, **r, "vs_plain": r["img_s"] / base["img_s"],
                     "startup_overhead_s": r["wall_s"] - r["epochs_s"] - fixed_base if is_ray else 0.0})
    return rows


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
                        help="start Ray's dashboard too, as mcl-ray's local instances do (writes overhead_dashboard.json)")
    args = parser.parse_args()
    images, epochs = (1000, 3) if args.quick else (5000, 8)
    n = 100_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        rows = training_rows(tmp, images, epochs, args.dashboard)
        cluster = clustering(n, 512, 100, max_points=100_000)
        ray.shutdown()
    print(f"one stage: test_resnet, Trifeature 32 px, {images} images, {epochs} epochs, global batch 256")
    print(format_table(rows, ["case", "setup", "img_s", "vs_plain", "wall_s", "epochs_s", "startup_overhead_s"]))
    print()
    print(format_table([cluster], ["n", "d", "k", "train_points", "in_process_s", "actor_round_trip_s",
                                   "actor_vs_in_process", "actor_idle_rss_mb", "actor_peak_rss_mb", "embeddings_mb"]))
    busy = next(r for r in rows if r["setup"] == "Ray Train, 1 worker (2 threads)")["vs_plain"]
    spare = next(r for r in rows if r["setup"] == "Ray Train, 1 worker (1 thread)")["vs_plain"]
    met, met_spare = busy >= TARGET, spare >= TARGET
    print(f"\n1-worker steady-state throughput vs the plain loop (target >= {TARGET}): "
          f"all cores busy {busy:.3f}x ({'met' if met else 'NOT met'}), "
          f"one core spare {spare:.3f}x ({'met' if met_spare else 'NOT met'})")
    path = write_result("overhead_dashboard" if args.dashboard else "overhead", {
        "settings": {"images": images, "epochs": epochs, "batch_size": 256, "backbone": "test_resnet", "image_size": 32,
                     "ray_dashboard": args.dashboard},
        "training": rows, "clustering": cluster, "target_1_worker_vs_plain": TARGET,
        "target_met": met, "target_met_one_core_spare": met_spare,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
