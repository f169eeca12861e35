"""Connecting to Ray and sizing each stage's resources from the config and the cluster."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import ray

from mcl_ray.config.schema import ExperimentConfig
from mcl_ray.errors import ConfigError

log = logging.getLogger("mcl_ray")


@dataclass(frozen=True)
class StageResources:
    """What one MCL run holds while a stage trains: Train workers plus the clustering actor."""

    workers: int
    use_gpu: bool
    cpus_per_worker: float
    gpus_per_worker: float
    auto_threads: bool
    clustering_cpus: float
    clustering_gpus: float

    @property
    def cpus(self) -> float:
        return self.workers * self.cpus_per_worker + self.clustering_cpus

    @property
    def gpus(self) -> float:
        return (self.workers * self.gpus_per_worker if self.use_gpu else 0.0) + self.clustering_gpus

    @property
    def worker_threads(self) -> int | None:
        """torch threads per worker; None = the worker divides its node's cores among the workers there."""
        return None if self.auto_threads else max(1, int(self.cpus_per_worker))


def logical_cpus_per_worker(cfg: ExperimentConfig) -> float:
    return 1.0 if cfg.ray.cpus_per_worker == "auto" else float(cfg.ray.cpus_per_worker)


def plan_resources(cfg: ExperimentConfig, cluster_gpus: float) -> StageResources:
    """Resolve the 'auto' GPU settings against the cluster's GPU count."""
    r = cfg.ray
    use_gpu = (cluster_gpus > 0 and cfg.train.device != "cpu") if r.use_gpu == "auto" else bool(r.use_gpu)
    if use_gpu and cluster_gpus <= 0:
        raise ConfigError("ray.use_gpu: true, but the Ray cluster has no GPUs (set ray.use_gpu: auto or false)")
    if use_gpu and cfg.train.device == "cpu":
        raise ConfigError("train.device: 'cpu' contradicts ray.use_gpu: true")
    if cfg.mcl.kmeans_gpu is True and cluster_gpus <= 0:
        raise ConfigError("mcl.kmeans_gpu: true, but the Ray cluster has no GPUs (set mcl.kmeans_gpu: auto or false)")
    wants_gpu = cluster_gpus > 0 and cfg.mcl.kmeans_gpu is not False
    clustering_gpus = (1.0 if wants_gpu else 0.0) if r.clustering_gpus == "auto" else float(r.clustering_gpus)
    if clustering_gpus > cluster_gpus:
        raise ConfigError(f"ray.clustering_gpus: {clustering_gpus} requested, the cluster has {cluster_gpus}")
    return StageResources(
        workers=cfg.train.workers,
        use_gpu=use_gpu,
        cpus_per_worker=logical_cpus_per_worker(cfg),
        auto_threads=r.cpus_per_worker == "auto",
        gpus_per_worker=r.gpus_per_worker if use_gpu else 0.0,
        clustering_cpus=r.clustering_cpus,
        clustering_gpus=clustering_gpus,
    )


def local_cpus_needed(cfg: ExperimentConfig, trials: int = 1, trial_cpus: float = 0.0) -> int:
    """Logical CPUs a local Ray instance needs so `trials` concurrent runs never wait on CPU accounting."""
    per_run = cfg.train.workers * logical_cpus_per_worker(cfg) + cfg.ray.clustering_cpus + trial_cpus
    return max(os.cpu_count() or 1, math.ceil(per_run * trials))


def ensure_ray(address: str | None, *, num_cpus: int | None = None, log_to_driver: bool = True,
               resources: dict[str, float] | None = None) -> bool:
    """Join `address`, else a cluster running on this machine, else start a local instance (returns True then).

    Ray resources are logical: on a small machine we declare at least what one run needs, so the Train
    placement group and the clustering actor can all be scheduled (the OS shares the real cores). `resources`:
    custom resources of a local instance (a study declares its trial slots there).
    """
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, log_to_driver=log_to_driver)
        return False
    try:  # a cluster already running on this machine (e.g. the head of `ray up`): join it
        ray.init(address="auto", log_to_driver=log_to_driver)
        return False
    except ConnectionError:
        pass
    # One machine has no spot preemption to watch for; without the watcher a Train run keeps one process fewer
    # beside its workers, and its start no longer logs an error line (ray-project/ray#53727).
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    ray.init(num_cpus=num_cpus, log_to_driver=log_to_driver, resources=resources)
    make_private(Path.home() / ".ray" / "auth_token")
    return True


def make_private(path: Path) -> bool:
    """Ray 2.59+ writes the local instance's auth token readable by every user (0644); anyone holding it can
    submit jobs that run as this user, so it is made owner-only (0600). True when the mode was changed."""
    try:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            path.chmod(0o600)
            return True
    except OSError:  # no token (auth disabled), or not ours to change
        pass
    return False


def cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0.0))
