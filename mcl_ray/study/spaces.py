"""Optuna define-by-run search spaces. Parameter names are the config's dotted paths, so a trial's
parameters are set on its config directly, as values (`{"mcl.stages": 2, "objective.temperature": 0.21}`).

Per-stage K is conditional on the number of stages, which is why the spaces are define-by-run functions
rather than fixed dicts. `DEFAULT_SPACES` holds the two families the bundled studies sweep.
"""

from __future__ import annotations

from typing import Any

import copy

import optuna

from mcl_ray.errors import ConfigError
from mcl_ray.study.config import ObjectiveChoice, SpaceConfig

RESNET_FAMILY = ["resnet18", "resnet34", "resnet50"]
VIT_FAMILY = ["vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224"]


class DefineByRun:
    """A picklable define-by-run function (Tune checkpoints the searcher, so no closures)."""

    def __init__(self, space: SpaceConfig):
        self.space = space

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        """Suggest this trial's values; returns the constants (unsearched values) to merge into its config."""
        space = self.space
        fixed: dict[str, Any] = {}
        lo, hi = space.stages
        stages = trial.suggest_int("mcl.stages", lo, hi) if lo < hi else lo
        if lo == hi:
            fixed["mcl.stages"] = lo
        if stages == 1:
            fixed["mcl.clusters"] = space.clusters[0]  # unused with one stage; keeps the config valid
        else:
            if space.per_stage_clusters:
                for i in range(1, stages):
                    trial.suggest_categorical(f"mcl.clusters.{i}", space.clusters)
            elif len(space.clusters) > 1:
                trial.suggest_categorical("mcl.clusters", space.clusters)
            else:
                fixed["mcl.clusters"] = space.clusters[0]
            for name, choices in (("mcl.cluster_on", space.cluster_on), ("mcl.sampling", space.sampling),
                                  ("mcl.min_group_size", space.min_group_size)):
                if choices is not None and len(choices) > 1:
                    trial.suggest_categorical(name, choices)  # only multi-stage trials: one stage clusters nothing
                elif choices:
                    fixed[name] = choices[0]
        for name, value in (("objective.temperature", space.temperature), ("train.lr", space.lr)):
            if isinstance(value, list) and value[0] != value[1]:
                trial.suggest_float(name, value[0], value[1], log=True)
            else:
                fixed[name] = value[0] if isinstance(value, list) else value
        if space.objectives:
            names = list(space.objectives)
            base = trial.suggest_categorical(BASE_PARAM, names) if len(names) > 1 else names[0]
            if len(names) == 1:
                fixed[BASE_PARAM] = base
            for key, value in space.objectives[base].search.items():
                name = f"objective.{base}.{key}"  # one Optuna parameter per (base, option): distributions never clash
                if isinstance(value, list) and len(value) == 2 and all(is_number(v) for v in value) and value[0] < value[1]:
                    if all(isinstance(v, int) for v in value):
                        trial.suggest_int(name, value[0], value[1])
                    else:
                        trial.suggest_float(name, value[0], value[1], log=value[0] > 0 and value[1] / value[0] >= 10)
                elif isinstance(value, list) and len(value) > 1:
                    trial.suggest_categorical(name, value)
                else:
                    fixed[name] = value[0] if isinstance(value, list) else value
        if len(space.backbones) > 1:
            trial.suggest_categorical("model.backbone", space.backbones)
        else:
            fixed["model.backbone"] = space.backbones[0]
        return fixed


BASE_PARAM = "objective.base"  # the base method a trial picked (a key of study.space.objectives)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def search_values(value: Any) -> list[Any]:
    """The values a search entry can take at its extremes (checked before the study starts)."""
    if isinstance(value, list) and len(value) == 2 and all(is_number(v) for v in value):
        return list(value)
    return list(value) if isinstance(value, list) else [value]


def choice_objective(base: dict[str, Any], choice: ObjectiveChoice, options: dict[str, Any]) -> dict[str, Any]:
    """The objective section of a trial that picked `choice`: the experiment's shared fields (temperature,
    gather), the choice's own section, then its searched `options` (method option, or `<regulariser>.<field>`)."""
    objective = {k: v for k, v in base.items() if k in ("temperature", "gather")}
    objective.update(copy.deepcopy(choice.objective))
    for key, value in options.items():
        if "." in key:
            reg_name, fieldname = key.split(".", 1)
            regs = [r for r in objective.get("regularizers", []) if isinstance(r, dict) and r.get("name") == reg_name]
            if not regs:
                raise ConfigError(f"{key!r} names regulariser {reg_name!r}, which this choice's objective.regularizers "
                                  "does not have")
            regs[0][fieldname] = value
        else:
            objective[key] = value
    return objective


def apply_objective_choice(experiment: dict[str, Any], params: dict[str, Any],
                           choices: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(experiment with the picked base method's objective, the remaining params) for a trial's params."""
    if not choices or BASE_PARAM not in params:
        return experiment, params
    base = params[BASE_PARAM]
    prefix = f"objective.{base}."
    options = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
    rest = {k: v for k, v in params.items() if k != BASE_PARAM and not any(k.startswith(f"objective.{c}.") for c in choices)}
    choice = ObjectiveChoice.model_validate(choices[base])
    if "temperature" in choice.objective or "temperature" in choice.search:
        rest.pop("objective.temperature", None)  # the choice's own temperature wins over the shared dimension
    return {**experiment, "objective": choice_objective(experiment.get("objective", {}), choice, options)}, rest


def build_space(space: SpaceConfig) -> DefineByRun:
    """The define-by-run function OptunaSearch samples `space` with."""
    return DefineByRun(space)


def resnet_space(trial: optuna.Trial) -> dict[str, Any]:
    """1-4 stages, shared K in {5, 10, 20, 50}, temperature 0.05-0.5, lr 1e-4-3e-3, resnet18 -> resnet50."""
    return build_space(SpaceConfig(stages=[1, 4], clusters=[5, 10, 20, 50], temperature=[0.05, 0.5],
                                   lr=[1e-4, 3e-3], backbones=RESNET_FAMILY))(trial)


def vit_space(trial: optuna.Trial) -> dict[str, Any]:
    """As resnet_space over ViT tiny -> small -> base."""
    return build_space(SpaceConfig(stages=[1, 4], clusters=[5, 10, 20, 50], temperature=[0.05, 0.5],
                                   lr=[1e-4, 3e-3], backbones=VIT_FAMILY))(trial)


DEFAULT_SPACES = {"resnet": resnet_space, "vit": vit_space}


def params_to_values(params: dict[str, Any]) -> dict[str, Any]:
    """Flat trial parameters -> {dotted config path: value}; per-stage `mcl.clusters.<i>` become one list."""
    per_stage = sorted((int(k.rsplit(".", 1)[1]), v) for k, v in params.items() if k.startswith("mcl.clusters."))
    out = {k: v for k, v in params.items() if ("." in k or k == "seed") and not k.startswith("mcl.clusters.")}
    if per_stage:
        out["mcl.clusters"] = [v for _, v in per_stage]
    return out
