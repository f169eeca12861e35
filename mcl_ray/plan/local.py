"""The local executor: the stage plan in this process, no Ray (what `mcl-ray train --local` runs).

It writes the same artifact layout as the Ray engine, so a local run reuses stages a Ray run built and
the reverse. Stage-level resume comes from the store (a crash in stage 3 keeps stages 1 and 2), epoch-level
resume from `<storage>/checkpoints/<key>/last.pt`; concurrent processes serialise on claim locks in the storage
(plan/claims.py), so one trains a stage and the others reuse it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mcl_ray.config.loader import with_absolute_paths
from mcl_ray.data.experiment_data import ExperimentData, load_experiment_data
from mcl_ray.errors import ArtifactError, ConfigError
from mcl_ray.mcl.clustering import assign, kmeans
from mcl_ray.mcl.groups import pair_views
from mcl_ray.models.encoder import build_encoder
from mcl_ray.plan.artifacts import kmeans_sample, publish_clusters, publish_stage
from mcl_ray.plan.claims import storage_claim
from mcl_ray.plan.from_config import data_spec
from mcl_ray.plan.hooks import RunHooks, step_recorder
from mcl_ray.plan.results import ExperimentResult
from mcl_ray.plan.sequence import StageJob, check_run_name, collect, run_stages, storage_root
from mcl_ray.store.artifacts import ArtifactStore
from mcl_ray.train.embed import clustering_embeddings
from mcl_ray.train.device import resolve_device
from mcl_ray.train.stage import OnlineProbe, StageContext, train_stage

log = logging.getLogger("mcl_ray")


class LocalExecutor:
    def __init__(self, cfg, data: ExperimentData):
        if cfg.train.workers != 1:
            raise ConfigError(f"train.workers: the local executor runs one process, not {cfg.train.workers}; "
                              "run on Ray or set train.workers=1")
        self.device = resolve_device(cfg.train.device)
        self.probe = OnlineProbe.from_sets(data.probe, data.test, cfg.eval.online_knn_samples, cfg.seed)
        self.checkpoint_every = cfg.ray.checkpoint_every
        self.claims_dir = ArtifactStore(storage_root(cfg)).local_path("claims")
        if self.claims_dir is None:
            log.warning("storage %s is not a local folder: concurrent local runs of one experiment are not "
                        "serialised (each may train a stage the other is training)", storage_root(cfg))

    def claim(self, key: str, done: Callable[[], bool], label: str):
        """A claim file in the storage, so two processes never train one stage (see plan/claims.py)."""
        if self.claims_dir is None:
            return contextlib.nullcontext(not done())
        return storage_claim(self.claims_dir, key, done, label=label)

    def build(self, job: StageJob, data: ExperimentData) -> dict[str, Any]:
        spec, store = job.spec, ArtifactStore(job.store_root)
        entry = store.stage(job.stage_key)
        out: dict[str, Any] = {"trained": False, "cluster": None, "resumed_after_epoch": None}
        embeddings = None
        if not entry.is_complete():
            groups = store.clusters(job.previous_clusters).get_array("groups.npy") if job.previous_clusters else None
            init = store.stage(job.init_stage).get_state("encoder.pt") if job.init_stage else job.init_state
            checkpoint = store.run(CHECKPOINTS, job.stage_key)
            resume = _last_checkpoint(checkpoint)
            if resume is not None:
                out["resumed_after_epoch"] = int(resume["epoch"]) + 1
                if job.progress:
                    log.info("stage %d: resuming after epoch %d from %s", spec.index + 1, resume["epoch"] + 1, checkpoint.uri)
            ctx = StageContext(device=self.device, progress=job.progress,
                               on_step=step_recorder(job.hooks.record_steps, spec.index, 0),
                               on_epoch_end=self._checkpointer(checkpoint, spec.train.epochs, job.hooks.fault))
            trained = train_stage(spec, data.pretrain, groups, ctx=ctx, init_state=init, resume_state=resume,
                                  online_probe=self.probe, embed=job.cluster_key is not None)
            encoder, embeddings = trained.encoder, trained.embeddings
            known = {"probe": embeddings} if (embeddings is not None and data.probe is data.pretrain) else None
            publish_stage(entry, encoder, trained.history, data.probe.images, data.test.images, spec.augment,
                          self.device, {"stage": spec.index + 1, "key": job.stage_key}, known=known)
            out.update(trained=True)
            try:
                checkpoint.clear()  # the stage is committed: its epoch checkpoint has done its job
            except OSError as exc:  # best effort: never fail a finished stage over clean-up
                log.warning("could not remove %s: %s", checkpoint.uri, exc)
        if job.cluster_key and not store.clusters(job.cluster_key).is_complete():
            if embeddings is None:
                encoder = build_encoder(spec.model)
                encoder.load_state_dict(entry.get_state("encoder.pt"))
                embeddings = clustering_embeddings(encoder.to(self.device), data.pretrain.images, data.pretrain.captions,
                                                   spec.clustering.views, spec.augment, device=self.device)
            out["cluster"] = cluster_all(job, [embeddings[v] for v in spec.clustering.views], data, store)
        return out


    def _checkpointer(self, checkpoint, epochs: int, fault: dict | None):
        """Save the training state every ray.checkpoint_every epochs (not after the last: the stage commits)."""

        def on_epoch_end(metrics: dict[str, Any], state_fn) -> None:
            epoch = metrics["epoch"]
            if epoch % self.checkpoint_every == 0 and epoch < epochs:
                checkpoint.put_state(LAST, state_fn())
            if fault and epoch == fault["epoch"] and not Path(fault["marker"]).exists():
                Path(fault["marker"]).touch()  # test hook: stop once here, as a Ctrl-C or a killed process would
                raise KeyboardInterrupt(f"fault injected after epoch {epoch}")

        return on_epoch_end


CHECKPOINTS, LAST = "checkpoints", "last.pt"  # <storage>/checkpoints/<stage key>/last.pt


def _last_checkpoint(entry) -> dict | None:
    """The interrupted stage's last epoch state, or None; an unreadable one is reported and ignored."""
    if not entry.exists(LAST):
        return None
    try:
        return entry.get_state(LAST)
    except ArtifactError as exc:
        log.warning("%s; the stage starts from its first epoch", exc)
        return None


def cluster_all(job: StageJob, views: list, data: ExperimentData, store: ArtifactStore) -> dict[str, Any]:
    """k-means of each view's embeddings on the bounded sample (drawn as one Ray worker would), then every row
    assigned; several views (joint) pair their labels."""
    c, t0 = job.spec.clustering, time.perf_counter()
    labels_per_view, centroids, inertia = [], [], 0.0
    for emb in views:
        sample = kmeans_sample(emb, len(emb), c.max_points, c.seed, rank=0)
        km = kmeans(sample, c.k, seed=c.seed, niter=c.iters, use_gpu=c.gpu)
        labels, sq = (km.labels, None) if sample is emb else assign(emb, km.centroids, use_gpu=c.gpu)
        inertia += km.inertia if sq is None else float(sq.sum(dtype="float64"))
        labels_per_view.append(labels)
        centroids.append(km.centroids)
    return publish_clusters(
        store, job.cluster_key, labels=pair_views(labels_per_view, c.k), k=c.groups_per_step,
        centroids=centroids[0] if len(centroids) == 1 else np.stack(centroids), previous_clusters=job.previous_clusters,
        attributes=data.pretrain.attributes or None,
        info={"inertia": inertia, "train_points": len(sample), "seconds": time.perf_counter() - t0},
        meta={"stage": job.spec.index + 1, "key": job.cluster_key, "stage_key": job.stage_key},
        min_group_size=c.min_group_size,
    )


def run_local(cfg, *, data: ExperimentData | None = None, progress: bool = True, tensorboard: bool = True,
              hooks: RunHooks | None = None) -> ExperimentResult:
    """Run every stage in this process; writes the same layout as `run_mcl` under `ray.storage or output_dir`.

    data: the images `cfg.data` names, when the caller has them loaded already (stage keys hash `cfg.data`,
    so passing other images would mislabel the stages they train)."""
    cfg = with_absolute_paths(cfg)
    check_run_name(cfg)  # before the data loads
    data = data or load_experiment_data(data_spec(cfg))
    executor = LocalExecutor(cfg, data)
    return collect(cfg, lambda curves_dir: run_stages(cfg, executor, data, progress=progress, hooks=hooks),
                   tensorboard=tensorboard)
