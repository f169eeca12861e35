"""mcl-ray: distributed hyperparameter studies of Multistage Contrastive Learning (MCL).

    from mcl_ray import load_config, run_mcl
    result = run_mcl(load_config("exp.yaml", ["mcl.stages=3"]))   # on Ray; run_local: one process

Names are imported lazily so `mcl-ray --help` does not pay for torch, timm and faiss.
"""

from mcl_ray._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "load_config": "mcl_ray.plan.from_config",  # the config with every name checked against the registries
    "build_config": "mcl_ray.plan.from_config",
    "ExperimentConfig": "mcl_ray.config.schema",
    "run_local": "mcl_ray.plan.local",
    "run_mcl": "mcl_ray.engine.driver",
    "results_table": "mcl_ray.plan.results",
    "RunHooks": "mcl_ray.plan.hooks",
}

__all__ = [*_EXPORTS, "__version__"]
__getattr__ = lazy_exports(__name__, _EXPORTS)
