"""mcl-ray: distributed hyperparameter studies of Multistage Contrastive Learning (MCL).

    from mcl_ray import load_config, run_mcl
    result = run_mcl(load_config("exp.yaml", ["mcl.stages=3"]))   # on Ray; run_local: one process

Names are imported lazily so `mcl-ray --help` does not pay for torch, timm and faiss.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_config": "mcl_ray.config.loader",
    "ExperimentConfig": "mcl_ray.config.schema",
    "run_local": "mcl_ray.train.pipeline",
    "run_mcl": "mcl_ray.engine.driver",
    "results_table": "mcl_ray.train.pipeline",
    "train_stage": "mcl_ray.train.stage",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mcl_ray' has no attribute {name!r}")
