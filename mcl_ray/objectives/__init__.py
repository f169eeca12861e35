"""Contrastive objectives: pure, mask-driven losses and the methods (encoder + loss) the trainer runs."""

from mcl_ray.objectives.base import ContrastiveMethod
from mcl_ray.objectives.distributed import gather_no_grad, gather_sizes, gather_with_grad, is_distributed, rank_offset
from mcl_ray.objectives.registry import OBJECTIVES, build_objective, check_objective_name, register_objective
from mcl_ray.objectives.simclr import SimCLR, nt_xent_loss
from mcl_ray.objectives.moco import MoCo, moco_infonce_loss

__all__ = [
    "OBJECTIVES",
    "ContrastiveMethod",
    "MoCo",
    "SimCLR",
    "build_objective",
    "check_objective_name",
    "gather_no_grad",
    "gather_sizes",
    "gather_with_grad",
    "is_distributed",
    "moco_infonce_loss",
    "nt_xent_loss",
    "rank_offset",
    "register_objective",
]
