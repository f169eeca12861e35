"""The local executor: the stage plan in this process, no Ray (what `mcl-ray train --local` runs).

It writes the same artifact layout as the Ray engine, so a local run reuses stages a Ray run built and
the reverse. Stage-level resume comes from the store (a crash in stage 3 keeps stages 1 and 2); there is
no claim between concurrent local processes, which is harmless (the stage is rebuilt identically).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

from mcl_ray.config.loader import with_absolute_paths
from mcl_ray.data.experiment_data import ExperimentData, load_experiment_data
from mcl_ray.errors import ConfigError
from mcl_ray.mcl.clustering import assign, kmeans
from mcl_ray.models.encoder import build_encoder
from mcl_ray.plan.artifacts import kmeans_sample, publish_clusters, publish_stage
from mcl_ray.plan.from_config import data_spec
from mcl_ray.plan.hooks import RunHooks, step_recorder
from mcl_ray.plan.results import ExperimentResult
from mcl_ray.plan.sequence import StageJob, collect, run_stages
from mcl_ray.store.artifacts import ArtifactStore
from mcl_ray.train.embed import embed_images
from mcl_ray.train.device import resolve_device
from mcl_ray.train.stage import OnlineProbe, StageContext, train_stage


class LocalExecutor:
    def __init__(self, cfg, data: ExperimentData):
        if cfg.train.workers != 1:
            raise ConfigError(f"train.workers: the local executor runs one process, not {cfg.train.workers}; "
                              "run on Ray or set train.workers=1")
        self.device = resolve_device(cfg.train.device)
        self.probe = OnlineProbe.from_sets(data.probe, data.test, cfg.eval.online_knn_samples, cfg.seed)

    def claim(self, key: str, done: Callable[[], bool], label: str):
        return contextlib.nullcontext(not done())

    def build(self, job: StageJob, data: ExperimentData) -> dict[str, Any]:
        spec, store = job.spec, ArtifactStore(job.store_root)
        entry = store.stage(job.stage_key)
        out: dict[str, Any] = {"trained": False, "cluster": None, "resumed_after_epoch": None}
        embeddings = None
        if not entry.is_complete():
            groups = store.clusters(job.previous_clusters).get_array("groups.npy") if job.previous_clusters else None
            init = store.stage(job.init_stage).get_state("encoder.pt") if job.init_stage else job.init_state
            ctx = StageContext(device=self.device, progress=job.progress,
                               on_step=step_recorder(job.hooks.record_steps, spec.index, 0))
            trained = train_stage(spec, data.pretrain, groups, ctx=ctx, init_state=init, online_probe=self.probe,
                                  embed=job.cluster_key is not None)
            encoder, embeddings = trained.encoder, trained.embeddings
            known = {"probe": embeddings} if (embeddings is not None and data.probe is data.pretrain) else None
            publish_stage(entry, encoder, trained.history, data.probe.images, data.test.images, spec.augment,
                          self.device, {"stage": spec.index + 1, "key": job.stage_key}, known=known)
            out.update(trained=True)
        if job.cluster_key and not store.clusters(job.cluster_key).is_complete():
            if embeddings is None:
                encoder = build_encoder(spec.model)
                encoder.load_state_dict(entry.get_state("encoder.pt"))
                embeddings = embed_images(encoder.to(self.device), data.pretrain.images, spec.augment, device=self.device)
            out["cluster"] = cluster_all(job, embeddings[spec.clustering.on], data, store)
        return out


def cluster_all(job: StageJob, emb, data: ExperimentData, store: ArtifactStore) -> dict[str, Any]:
    """k-means on the bounded sample (drawn as one Ray worker would), then every row assigned."""
    c, t0 = job.spec.clustering, time.perf_counter()
    sample = kmeans_sample(emb, len(emb), c.max_points, c.seed, rank=0)
    km = kmeans(sample, c.k, seed=c.seed, niter=c.iters, use_gpu=c.gpu)
    labels, sq = (km.labels, None) if sample is emb else assign(emb, km.centroids, use_gpu=c.gpu)
    inertia = km.inertia if sq is None else float(sq.sum(dtype="float64"))
    return publish_clusters(
        store, job.cluster_key, labels=labels, centroids=km.centroids, k=c.k, previous_clusters=job.previous_clusters,
        attributes=data.pretrain.attributes or None,
        info={"inertia": inertia, "train_points": len(sample), "seconds": time.perf_counter() - t0},
        meta={"stage": job.spec.index + 1, "key": job.cluster_key, "stage_key": job.stage_key},
    )


def run_local(cfg, *, data: ExperimentData | None = None, progress: bool = True, tensorboard: bool = True,
              hooks: RunHooks | None = None) -> ExperimentResult:
    """Run every stage in this process; writes the same layout as `run_mcl` under `ray.storage or output_dir`.

    data: the images `cfg.data` names, when the caller has them loaded already (stage keys hash `cfg.data`,
    so passing other images would mislabel the stages they train)."""
    cfg = with_absolute_paths(cfg)
    data = data or load_experiment_data(data_spec(cfg))
    executor = LocalExecutor(cfg, data)
    return collect(cfg, lambda curves_dir: run_stages(cfg, executor, data, progress=progress, hooks=hooks),
                   tensorboard=tensorboard)
