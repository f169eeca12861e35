"""Hyperparameter studies of MCL with Ray Tune + Optuna (the public programmatic API).

    from mcl_ray.study import load_study, build_tuner
    results = build_tuner(load_study("studies/configs/vit.yaml", "local")).fit()

Build your own sweep from the parts: `mcl_trainable` (the Tune function trainable, one report per stage),
`study_param_space` (its constant config), `build_space` / `DEFAULT_SPACES` (Optuna define-by-run spaces)
and `concurrency_limit` (trials that fit the cluster).
"""

from mcl_ray.study.config import SpaceConfig, StudyConfig, StudySettings, load_study
from mcl_ray.study.spaces import DEFAULT_SPACES, build_space, resnet_space, vit_space
from mcl_ray.study.trainable import mcl_trainable
from mcl_ray.study.tuner import build_tuner, concurrency_limit, study_param_space, trainable_with_resources

__all__ = [
    "DEFAULT_SPACES", "SpaceConfig", "StudyConfig", "StudySettings", "build_space", "build_tuner",
    "concurrency_limit", "load_study", "mcl_trainable", "resnet_space", "study_param_space",
    "trainable_with_resources", "vit_space",
]
