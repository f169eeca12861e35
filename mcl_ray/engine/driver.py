"""`run_mcl`: the distributed MCL driver. Each stage is a Ray Train job, the clustering a Ray actor.

For every stage it computes the stage's content key, reuses the stage if any earlier run or trial
finished it (waiting if one is training it right now), otherwise launches the Train job, then evaluates
the integrated representation and publishes the run's `stage_k/` directory. `iter_stages` yields after
each stage, which is what a Tune trial reports on.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import ray
import yaml

from mcl_ray.config.loader import with_absolute_paths
from mcl_ray.config.schema import ExperimentConfig
from mcl_ray.data.from_config import ExperimentData, load_experiment_data
from mcl_ray.engine.clustering_actor import ClusteringActor
from mcl_ray.engine.leases import stage_lease
from mcl_ray.engine.live_curves import LiveCurves
from mcl_ray.engine.runtime import cluster_gpus, ensure_ray, local_cpus_needed, plan_resources
from mcl_ray.engine.stage_job import remove_train_checkpoints, run_stage_job
from mcl_ray.mcl.integration import integrate
from mcl_ray.store.artifacts import ArtifactStore
from mcl_ray.store.keys import cluster_key, stage_key
from mcl_ray.tracking.tensorboard import RunWriter
from mcl_ray.train.pipeline import ExperimentResult, StageRecord, evaluate, load_init_checkpoint
from mcl_ray.train.stage import stage_seed

log = logging.getLogger("mcl_ray")


def storage_root(cfg: ExperimentConfig) -> str:
    return cfg.ray.storage or cfg.output_dir


def iter_stages(
    cfg: ExperimentConfig,
    *,
    progress: bool = True,
    data: ExperimentData | None = None,
    fault: dict[str, Any] | None = None,
    record_steps: str | None = None,
    curves_dir: str | Path | None = None,
) -> Iterator[StageRecord]:
    """Run (or reuse) every stage in order on the connected Ray cluster, yielding each finished stage.

    With `curves_dir` (a directory on this node), stages trained here write their per-epoch TensorBoard
    curves there live.
    """
    cfg = with_absolute_paths(cfg)
    store = ArtifactStore(storage_root(cfg))
    resources = plan_resources(cfg, cluster_gpus())
    data = data or load_experiment_data(cfg.data)  # bad paths / corrupt files fail here, before any job
    run = store.run(cfg.name)
    run.put_bytes("config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False).encode())
    init_state = load_init_checkpoint(cfg)
    attributes = {k: np.asarray(v) for k, v in data.pretrain.attributes.items()} or None
    actor = ray.remote(ClusteringActor).options(
        num_cpus=resources.clustering_cpus, num_gpus=resources.clustering_gpus,
    ).remote(threads=max(1, int(resources.clustering_cpus)), use_gpu=resources.clustering_gpus > 0)
    previous_clusters: str | None = None
    previous_stage: str | None = None
    probe_parts: list[np.ndarray] = []
    test_parts: list[np.ndarray] = []
    try:
        for stage in range(cfg.mcl.stages):
            t0 = time.perf_counter()
            skey = stage_key(cfg, stage, previous_clusters, previous_stage)
            last = stage == cfg.mcl.stages - 1
            ckey = None if last else cluster_key(cfg, stage, skey, previous_clusters)
            s_entry = store.stage(skey)
            c_entry = store.clusters(ckey) if ckey else None
            done = lambda: s_entry.is_complete() and (c_entry is None or c_entry.is_complete())  # noqa: E731
            out: dict[str, Any] = {}
            with stage_lease(skey, done, label=cfg.name) as must_build:
                if must_build:
                    if not s_entry.is_complete():
                        s_entry.clear()  # a partial entry from a crash: its files are rewritten
                    if c_entry is not None and not c_entry.is_complete():
                        c_entry.clear()
                    init_stage = previous_stage if (cfg.mcl.init == "previous" and stage > 0) else None
                    out = run_stage_job(
                        cfg, stage, store=store, resources=resources, stage_key=skey, cluster_key=ckey,
                        previous_clusters=previous_clusters, init_stage=init_stage, init_state=init_state,
                        actor=actor, attributes=attributes, num_samples=len(data.pretrain),
                        kmeans_seed=stage_seed(cfg, stage), progress=progress, fault=fault,
                        record_steps=record_steps,
                        callbacks=[LiveCurves(str(curves_dir), stage + 1, cfg.train.epochs)] if curves_dir else None,
                    )
                    remove_train_checkpoints(store, skey)
            reused = {"stage": not out.get("trained", False), "clusters": None if last else not out.get("cluster")}
            record = _evaluate_stage(cfg, stage, store, skey, ckey, data, probe_parts, test_parts, reused)
            record.path = run.path + f"/stage_{stage + 1}"
            seconds = time.perf_counter() - t0
            _publish_run_stage(store, cfg, record, seconds, out.get("resumed_after_epoch"))
            if progress:
                how = "reused " + s_entry.uri if reused["stage"] else "trained"
                log.info("stage %d %s in %.0f s: integrated %s", stage + 1, how, seconds, record.integrated_eval)
            yield record
            previous_clusters, previous_stage = ckey, skey
    finally:
        actor.__ray_terminate__.remote()  # graceful exit (ray.kill aborts the process and logs a fatal error)


def _evaluate_stage(cfg, stage, store, skey, ckey, data, probe_parts, test_parts, reused) -> StageRecord:
    s_entry = store.stage(skey)
    kind = cfg.mcl.integrate
    probe, test = s_entry.get_array(f"probe_{kind}.npy"), s_entry.get_array(f"test_{kind}.npy")
    probe_parts.append(probe)
    test_parts.append(test)
    return StageRecord(
        stage=stage + 1,
        history=s_entry.get_json("history.json"),
        stage_eval=evaluate(cfg, probe, test, data),
        integrated_eval=evaluate(cfg, integrate(probe_parts), integrate(test_parts), data),
        cluster=store.clusters(ckey).get_json("stats.json") if ckey else None,
        path="",
        reused=reused,
        keys={"stage": skey, "clusters": ckey, "stage_uri": s_entry.uri, "clusters_uri": store.clusters(ckey).uri if ckey else None},
    )


def _publish_run_stage(store: ArtifactStore, cfg, record: StageRecord, seconds: float, resumed_after: int | None) -> None:
    """The run's own view of a stage: its metrics and where the (possibly shared) artifacts are."""
    entry = store.run(cfg.name, f"stage_{record.stage}")
    entry.put_json("history.json", record.history)
    entry.put_json("metrics.json", {
        "stage": record.stage, "stage_eval": record.stage_eval, "integrated_eval": record.integrated_eval,
        "cluster": record.cluster, "reused": record.reused, "keys": record.keys, "seconds": seconds,
        "resumed_after_epoch": resumed_after,
    })
    entry.commit({"stage": record.stage})


def run_mcl(
    cfg: ExperimentConfig,
    *,
    address: str | None = None,
    progress: bool = True,
    data: ExperimentData | None = None,
    tensorboard: bool = True,
    fault: dict[str, Any] | None = None,
    record_steps: str | None = None,
) -> ExperimentResult:
    """Run every stage on Ray (starting a local instance unless one is running or `address` is given).

    Returns per-stage metrics, reuse flags and artifact locations; writes `<storage>/<name>/summary.json`
    and, on local storage, TensorBoard curves under `<storage>/<name>/tensorboard`.
    """
    cfg = with_absolute_paths(cfg)
    data = data or load_experiment_data(cfg.data)  # missing or corrupt data fails before Ray starts
    started = ensure_ray(address, num_cpus=local_cpus_needed(cfg))
    store = ArtifactStore(storage_root(cfg))
    local_run = store.local_path(cfg.name)
    result = ExperimentResult(config=cfg, run_dir=local_run or store.uri(cfg.name))
    writer = RunWriter(local_run / "tensorboard") if (tensorboard and local_run is not None) else None
    try:
        curves_dir = local_run / "tensorboard" if writer else None
        for record in iter_stages(cfg, progress=progress, data=data, fault=fault, record_steps=record_steps,
                                  curves_dir=curves_dir):
            result.stages.append(record)
            if writer:
                writer.log_stage(record, cfg.train.epochs)
        store.run(cfg.name).put_json("summary.json", result.summary())
        return result
    finally:
        if writer:
            writer.close()
        if started:
            ray.shutdown()
