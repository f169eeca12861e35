"""Content keys for stage reuse: a stage's key hashes everything that determines its trained weights.

Two runs (or two sweep trials) whose first stages agree on data, augmentation, model, objective, training
settings, seed and the clusterings before them get the same keys, so the later one reuses the earlier
one's stages instead of retraining. A key chains the previous clustering's key, so changing K after stage
1 changes the keys of stage 2 onwards but not stage 1's.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from mcl_ray.config.schema import ExperimentConfig

KEY_VERSION = 1  # bump when the training code changes what a key's outputs are
_DATA_IGNORED = {"download", "cache_dir", "root"}
_TRAIN_IGNORED = {"device", "log_every"}


def _digest(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _init_identity(cfg: ExperimentConfig) -> dict[str, Any]:
    ident: dict[str, Any] = {"init": cfg.mcl.init}
    if cfg.mcl.init_checkpoint:
        st = os.stat(os.path.expanduser(cfg.mcl.init_checkpoint))
        ident["checkpoint"] = [os.path.abspath(os.path.expanduser(cfg.mcl.init_checkpoint)), st.st_size, st.st_mtime_ns]
    return ident


def _scope(cfg: ExperimentConfig) -> str | None:
    """With ray.reuse_stages off, keys are private to the run name: it still resumes, others never share."""
    return None if cfg.ray.reuse_stages else cfg.name


def stage_key(cfg: ExperimentConfig, stage: int, previous_clusters: str | None, previous_stage: str | None = None) -> str:
    """Key of stage `stage` (0-based) trained on the groups of clustering `previous_clusters` (None: stage 1).

    previous_stage: key of the stage before, needed when mcl.init is 'previous' (weights carry over).
    """
    data = {k: v for k, v in cfg.data.model_dump(mode="json").items() if k not in _DATA_IGNORED}
    if cfg.data.name == "imagefolder":
        data["root"] = os.path.abspath(os.path.expanduser(cfg.data.root))
    return _digest({
        "version": KEY_VERSION,
        "stage": stage,
        "seed": cfg.seed,
        "data": data,
        "augment": cfg.augment.model_dump(mode="json"),
        "model": cfg.model.model_dump(mode="json"),
        "objective": {**cfg.objective.model_dump(mode="json"), "temperature": cfg.temperature(stage)},
        "train": {k: v for k, v in cfg.train.model_dump(mode="json").items() if k not in _TRAIN_IGNORED},
        "init": _init_identity(cfg),
        "previous_clusters": previous_clusters,
        "previous_stage": previous_stage if cfg.mcl.init == "previous" else None,
        "scope": _scope(cfg),
    })


def cluster_key(cfg: ExperimentConfig, stage: int, trained_stage: str, previous_clusters: str | None) -> str:
    """Key of the clustering after stage `stage`: its embeddings, K and the k-means settings."""
    return _digest({
        "version": KEY_VERSION,
        "stage_key": trained_stage,
        "previous_clusters": previous_clusters,
        "k": cfg.mcl.clusters_after(stage),
        "on": cfg.mcl.cluster_on,
        "iters": cfg.mcl.kmeans_iters,
        "max_points": cfg.mcl.kmeans_max_points,
        "seed": cfg.seed,
        "scope": _scope(cfg),
    })
