"""Typed, validated experiment configuration (YAML + dotted overrides)."""

from mcl_ray.config.loader import build_config, dump_config, load_config, parse_overrides
from mcl_ray.config.schema import (
    AugmentConfig,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    MCLConfig,
    ModelConfig,
    ObjectiveConfig,
    TrainConfig,
)

__all__ = [
    "AugmentConfig", "DataConfig", "EvalConfig", "ExperimentConfig", "MCLConfig", "ModelConfig",
    "ObjectiveConfig", "TrainConfig", "build_config", "dump_config", "load_config", "parse_overrides",
]
