"""Contrastive objectives: mask-driven losses, methods (encoder + loss) and regularisers, all by name.

Declarations (`declarations`, `methods/`, `regularizers/`) import no torch; everything else is loaded on
first use, so importing this package is free.
"""

from mcl_ray._lazy import lazy_exports

_EXPORTS = {
    "METHODS": "mcl_ray.objectives.declarations",
    "REGULARIZERS": "mcl_ray.objectives.declarations",
    "MethodOptions": "mcl_ray.objectives.declarations",
    "RegularizerOptions": "mcl_ray.objectives.declarations",
    "ObjectiveSpec": "mcl_ray.objectives.declarations",
    "ContrastiveMethod": "mcl_ray.objectives.base",
    "Objective": "mcl_ray.objectives.objective",
    "build_objective": "mcl_ray.objectives.objective",
    "SimCLR": "mcl_ray.objectives.simclr",
    "nt_xent_loss": "mcl_ray.objectives.simclr",
    "MoCo": "mcl_ray.objectives.moco",
    "moco_infonce_loss": "mcl_ray.objectives.moco",
    "gather_no_grad": "mcl_ray.objectives.distributed",
    "gather_sizes": "mcl_ray.objectives.distributed",
    "gather_with_grad": "mcl_ray.objectives.distributed",
    "is_distributed": "mcl_ray.objectives.distributed",
    "rank_offset": "mcl_ray.objectives.distributed",
}

__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
