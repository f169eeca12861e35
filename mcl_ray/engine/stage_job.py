"""Launch one stage as a Ray Train job (TorchTrainer): the workers train, publish and cluster.

The Train run's name is derived from the stage key and its storage is the artifact store, so running the
same stage again (after a crash, or in another trial) resumes from its latest epoch checkpoint.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import ray
import ray.train
from ray.train.torch import TorchConfig, TorchTrainer

from mcl_ray.engine.runtime import StageResources
from mcl_ray.engine.worker import stage_worker
from mcl_ray.errors import TrainingError
from mcl_ray.plan.sequence import StageJob
from mcl_ray.store.artifacts import ArtifactStore

log = logging.getLogger("mcl_ray")
TRAIN_DIR = "ray_train"
CHECKPOINT_SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train V2's record of registered checkpoints


def train_run_name(stage_key: str) -> str:
    return f"stage-{stage_key}"


def scaling_config(resources: StageResources) -> ray.train.ScalingConfig:
    """The Train worker group: `workers` workers, each with its logical CPUs and (on GPU clusters) GPUs."""
    per_worker = {"CPU": resources.cpus_per_worker}
    if resources.use_gpu:
        per_worker["GPU"] = resources.gpus_per_worker
    return ray.train.ScalingConfig(num_workers=resources.workers, use_gpu=resources.use_gpu, resources_per_worker=per_worker)


def run_stage_job(
    job: StageJob,
    *,
    resources: StageResources,
    actor,
    attributes: dict | None,
    num_samples: int,
    max_failures: int,
    checkpoints_to_keep: int,
    checkpoint_every: int,
    callbacks: list[ray.train.UserCallback] | None = None,
) -> dict[str, Any]:
    """Run the stage's Train job; returns rank 0's output (trained, cluster info, resume point).

    `callbacks` run in Ray Train's controller after every report (e.g. live TensorBoard curves)."""
    spec, stage = job.spec, job.spec.index
    store = ArtifactStore(job.store_root)
    job_id = uuid.uuid4().hex
    fault = job.hooks.fault
    if fault is not None:  # where the controller records checkpoints (the fault hook waits on it)
        local = store.local_path(TRAIN_DIR, train_run_name(job.stage_key), CHECKPOINT_SNAPSHOT)
        fault = {**fault, "snapshot": str(local)}
    if job.cluster_key:
        ray.get(actor.begin.remote(
            job_id, k=spec.clustering.k, num_samples=num_samples,
            world_size=resources.workers, seed=spec.clustering.seed, niter=spec.clustering.iters,
            views=len(spec.clustering.views),
        ))
    loop_config = {
        "spec": spec, "checkpoint_every": checkpoint_every, "store_root": job.store_root,
        "stage_key": job.stage_key, "cluster_key": job.cluster_key, "previous_clusters": job.previous_clusters,
        "init_stage": job.init_stage, "init_state": job.init_state, "actor": actor, "job_id": job_id,
        "attributes": attributes, "threads": resources.worker_threads,
        "progress": job.progress, "fault": fault, "hooks": job.hooks,
    }
    trainer = TorchTrainer(
        stage_worker,
        train_loop_config=loop_config,
        torch_config=TorchConfig(),  # gloo on CPU, NCCL on GPU
        scaling_config=scaling_config(resources),
        run_config=ray.train.RunConfig(
            name=train_run_name(job.stage_key),
            storage_path=store.uri(TRAIN_DIR),
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=checkpoints_to_keep),
            callbacks=list(callbacks or []),
        ),
    )
    try:
        result = trainer.fit()
    except Exception as exc:  # Ray wraps worker errors; keep the root cause in the message
        raise TrainingError(f"stage {stage + 1}: the Ray Train job failed after {max_failures} restarts: {exc}") from exc
    out = result.return_value or {}
    if "error" in out:
        raise TrainingError(out["error"])
    return out


def remove_train_checkpoints(store: ArtifactStore, stage_key: str) -> None:
    """Once a stage is committed its epoch checkpoints (weights + optimizer, twice) are dead weight."""
    entry = store.run(TRAIN_DIR, train_run_name(stage_key))
    try:
        entry.clear()
    except OSError as exc:  # best effort: never fail a finished stage over clean-up
        log.warning("could not remove %s: %s", entry.uri, exc)
