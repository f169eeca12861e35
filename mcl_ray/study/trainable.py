"""The Tune function trainable: one MCL run per trial, reporting once per stage.

Each stage is the engine's Ray Train job (see `mcl_ray.engine`); after it the integrated representation's
evaluation is reported to Tune, so `training_iteration` is the stage number and ASHA can stop a weak trial
at a stage boundary. Trials share the study's stage cache: a trial whose first stages match an earlier
trial's reuses them, and a trial restarted after the driver was killed resumes where it stopped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import ray.tune

from mcl_ray.config.loader import build_config, deep_merge, set_path
from mcl_ray.config.schema import ExperimentConfig
from mcl_ray.data.experiment_data import load_experiment_data
from mcl_ray.data.registry import DATA_SOURCES
from mcl_ray.engine.driver import iter_stages
from mcl_ray.plan.arms import arm_records
from mcl_ray.plan.from_config import data_spec
from mcl_ray.study.spaces import apply_objective_choice, params_to_values
from mcl_ray.tracking.tensorboard import RunWriter, stage_scalars

log = logging.getLogger("mcl_ray")

EXPERIMENT_KEY = "experiment"  # the base experiment (a plain dict) inside every trial's config
STUDY_KEY = "study"  # {"name", "storage"}


def trial_experiment(config: dict[str, Any], trial_id: str) -> ExperimentConfig:
    """Base experiment + the trial's searched parameters, stored with the study, named after the trial."""
    params = {k: v for k, v in config.items() if k not in (EXPERIMENT_KEY, STUDY_KEY)}
    study = config[STUDY_KEY]
    prefix = study["name"] if study.get("arm", "mcl") == "mcl" else f"{study['name']}/{study['arm']}"
    merged, params = apply_objective_choice(dict(config[EXPERIMENT_KEY]), params, study.get("objectives"))
    for path, value in params_to_values(params).items():
        merged = set_path(merged, path, value)
    merged = deep_merge(merged, {
        "name": f"{prefix}/trials/{trial_id}",
        "output_dir": study["storage"],
        "ray": {"storage": study["storage"]},
    })
    return build_config(merged)  # names were checked when the study loaded


def with_means(scalars: dict[str, float], exclude: tuple[str, ...] = ()) -> dict[str, float]:
    """Add `<repr>/mean/<metric>`: the attribute-averaged score (what a study without a target optimises),
    leaving out `exclude` (attributes that measure a shortcut, such as RandBit's code)."""
    out = dict(scalars)
    groups: dict[tuple[str, str], list[float]] = {}
    for key, value in scalars.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] in ("integrated", "stage_alone") and parts[1] not in exclude:
            groups.setdefault((parts[0], parts[2]), []).append(value)
    for (rep, metric), values in groups.items():
        out[f"{rep}/mean/{metric}"] = float(np.mean(values))
    return out


def mcl_trainable(config: dict[str, Any]) -> None:
    """Tune function trainable. `config` = {'experiment': base dict, 'study': {...}, **searched params}."""
    context = ray.tune.get_context()
    cfg = trial_experiment(config, context.get_trial_id())
    curves = Path(context.get_trial_dir()) / "curves"
    arm = config[STUDY_KEY].get("arm", "mcl")
    writer = RunWriter(curves)
    live = curves if arm != "ensemble" else None  # ensemble members would all draw on stage 1's epochs
    data = load_experiment_data(data_spec(cfg))
    try:
        for record in arm_records(cfg, arm, lambda c: iter_stages(c, progress=False, curves_dir=live), data):
            writer.log_stage(record, cfg.train.epochs)  # adds what live writing did not (reused stages)
            metrics = with_means(stage_scalars(record), DATA_SOURCES.get(cfg.data.name)().shortcuts)
            metrics.update(
                stage=record.stage,
                stages_planned=cfg.mcl.stages if arm not in ("long", "ifm") else 1,
                arm=arm,
                arm_stages=cfg.mcl.stages,  # MCL's stages, the ensemble's members, the long run's epoch multiple
                reused_stage=bool(record.reused and record.reused["stage"]),
                train_minutes=sum(h.get("epoch_time_s", 0.0) for h in record.history) / 60,
            )
            ray.tune.report(metrics)
    finally:
        writer.close()
