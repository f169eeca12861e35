"""Content keys for stage reuse: a stage's key hashes everything that determines its trained weights.

Two runs (or two sweep trials, or a `--local` run and a Ray run) whose first stages agree on data,
augmentation, model, objective, training settings, seed and the clusterings before them get the same
keys, so the later one reuses the earlier one's stages instead of retraining. A key chains the previous
clustering's key, so changing K after stage 1 changes the keys of stage 2 onwards but not stage 1's.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

KEY_VERSION = 2  # bump when the training code changes what a key's outputs are (2: keys hash the stage specs)


def _digest(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def stage_key(identity: dict[str, Any], previous_clusters: str | None, previous_stage: str | None = None,
              *, scope: str | None = None) -> str:
    """Key of a stage with this identity (its specs, see plan.spec.StageSpec.identity) trained on the groups
    of clustering `previous_clusters` (None: stage 1), starting from stage `previous_stage`'s weights (or
    None). scope: a run name to keep the key private to that run (reuse off)."""
    return _digest({
        "version": KEY_VERSION, **identity, "previous_clusters": previous_clusters,
        "previous_stage": previous_stage, "scope": scope,
    })


def cluster_key(clustering: dict[str, Any], trained_stage: str, previous_clusters: str | None,
                *, scope: str | None = None) -> str:
    """Key of a clustering (k, representation, iterations, sample bound, seed) of stage `trained_stage`."""
    settings = {k: v for k, v in clustering.items() if k != "gpu"}  # faiss on GPU or CPU: the same clustering
    return _digest({
        "version": KEY_VERSION, "stage_key": trained_stage, "previous_clusters": previous_clusters,
        "clustering": settings, "scope": scope,
    })
