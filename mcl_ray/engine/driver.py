"""`run_mcl`: the stage plan on Ray. Each stage is a Ray Train job, the clustering a Ray actor.

The sequence itself (keys, reuse, evaluation, publishing) is `mcl_ray.plan.sequence.run_stages`; this file
is the Ray executor it drives: claims go through the lease actor (two trials never train one stage twice),
builds through `run_stage_job`. `iter_stages` yields after each stage, which is what a Tune trial reports on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import ray

from mcl_ray.config.loader import with_absolute_paths
from mcl_ray.data.experiment_data import ExperimentData, load_experiment_data
from mcl_ray.engine.clustering_actor import ClusteringActor
from mcl_ray.engine.leases import stage_lease
from mcl_ray.engine.live_curves import LiveCurves
from mcl_ray.engine.runtime import StageResources, cluster_gpus, ensure_ray, local_cpus_needed, plan_resources
from mcl_ray.engine.stage_job import remove_train_checkpoints, run_stage_job
from mcl_ray.plan.from_config import data_spec
from mcl_ray.plan.hooks import RunHooks
from mcl_ray.plan.results import ExperimentResult, StageRecord
from mcl_ray.plan.claims import storage_claim
from mcl_ray.plan.sequence import StageJob, check_run_name, collect, run_stages, storage_root
from mcl_ray.store.artifacts import ArtifactStore

log = logging.getLogger("mcl_ray")


class RayExecutor:
    """Builds a stage as a Ray Train job (plus the clustering actor); claims through the lease actor."""

    def __init__(self, cfg, resources: StageResources, data: ExperimentData, curves_dir: str | Path | None = None):
        self.resources = resources
        self.curves_dir = curves_dir
        self.claims_dir = ArtifactStore(storage_root(cfg)).local_path("claims")
        self.job_settings = {"max_failures": cfg.ray.max_failures, "checkpoints_to_keep": cfg.ray.checkpoints_to_keep,
                             "checkpoint_every": cfg.ray.checkpoint_every}
        self.attributes = {k: np.asarray(v) for k, v in data.pretrain.attributes.items()} or None
        self._actor = None

    @property
    def actor(self):
        """The clustering actor, started when the first stage is built. A run that reuses every stage never starts
        one: an actor created and torn down at once dies inside its own start-up, which is what made Ray print
        "unexpected system state ... the Raylet has most likely crashed" dumps in studies with reused trials."""
        if self._actor is None:
            r = self.resources
            self._actor = ray.remote(ClusteringActor).options(num_cpus=r.clustering_cpus, num_gpus=r.clustering_gpus).remote(
                threads=max(1, int(r.clustering_cpus)), use_gpu=r.clustering_gpus > 0)
            ray.get(self._actor.__ray_ready__.remote())  # started before anything can tear it down
        return self._actor

    def claim(self, key: str, done: Callable[[], bool], label: str):
        """A claim file on local storage (serialises runs even on separate Ray instances), else the lease actor."""
        if self.claims_dir is not None:
            return storage_claim(self.claims_dir, key, done, label=label)
        return stage_lease(key, done, label=label)

    def build(self, job: StageJob, data: ExperimentData) -> dict[str, Any]:
        spec = job.spec
        callbacks = [LiveCurves(str(self.curves_dir), spec.index + 1, spec.train.epochs)] if self.curves_dir else None
        actor = self.actor if job.cluster_key else None  # the last stage and 1-stage runs cluster nothing
        out = run_stage_job(job, resources=self.resources, actor=actor, attributes=self.attributes,
                            num_samples=len(data.pretrain), callbacks=callbacks, **self.job_settings)
        remove_train_checkpoints(ArtifactStore(job.store_root), job.stage_key)
        return out

    def close(self) -> None:
        if self._actor is not None:
            self._actor.__ray_terminate__.remote()  # graceful exit (ray.kill aborts the process and logs a fatal error)
            self._actor = None


def iter_stages(
    cfg,
    *,
    progress: bool = True,
    hooks: RunHooks | None = None,
    curves_dir: str | Path | None = None,
) -> Iterator[StageRecord]:
    """Run (or reuse) every stage in order on the connected Ray cluster, yielding each finished stage.

    With `curves_dir` (a directory on this node), stages trained here write their per-epoch TensorBoard
    curves there live. The data is always the configured data (`cfg.data`): the workers load it from the
    same config, so what is evaluated here is what was trained there.
    """
    cfg = with_absolute_paths(cfg)
    check_run_name(cfg)  # before the data loads
    yield from _stages_on_ray(cfg, load_experiment_data(data_spec(cfg)), progress, hooks, curves_dir)


def _stages_on_ray(cfg, data: ExperimentData, progress: bool, hooks: RunHooks | None, curves_dir) -> Iterator[StageRecord]:
    """`data` must be what cfg.data loads (the workers load it from the config)."""
    resources = plan_resources(cfg, cluster_gpus())
    executor = RayExecutor(cfg, resources, data, curves_dir)
    try:
        yield from run_stages(cfg, executor, data, progress=progress, hooks=hooks)
    finally:
        executor.close()


def run_mcl(
    cfg,
    *,
    address: str | None = None,
    progress: bool = True,
    tensorboard: bool = True,
    hooks: RunHooks | None = None,
) -> ExperimentResult:
    """Run every stage on Ray (starting a local instance unless one is running or `address` is given).

    Returns per-stage metrics, reuse flags and artifact locations; writes `<storage>/<name>/summary.json`
    and, on local storage, TensorBoard curves under `<storage>/<name>/tensorboard`.
    """
    cfg = with_absolute_paths(cfg)
    data = load_experiment_data(data_spec(cfg))  # missing or corrupt data fails before Ray starts
    started = ensure_ray(address, num_cpus=local_cpus_needed(cfg))
    try:
        return collect(cfg, lambda curves_dir: _stages_on_ray(cfg, data, progress, hooks, curves_dir),
                       tensorboard=tensorboard)
    finally:
        if started:
            ray.shutdown()
