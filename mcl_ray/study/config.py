"""Study configuration: what to search, how to score trials, and the base experiment every trial starts from.

A study YAML has `study:` (search settings), `experiment:` (a base ExperimentConfig) and `profiles:`
(`local`, `cluster`: overrides deep-merged onto both). Everything is validated before Ray starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, ValidationError, field_validator, model_validator

from mcl_ray.config.loader import deep_merge, format_validation_error, parse_overrides, read_yaml
from mcl_ray.plan.from_config import build_config
from mcl_ray.config.schema import ExperimentConfig, Strict, safe_name
from mcl_ray.errors import ConfigError

Range = list[float]


SearchValue = Union[float, int, str, bool, list[Any]]


class ObjectiveChoice(Strict):
    """One base method a study can pick: the experiment's `objective` section for it, and its own searched options.

    `search` keys are the method's option names (`momentum`) or `<regulariser>.<field>` (`ifm.epsilon`); a value
    is a [lo, hi] range (log scale when hi / lo >= 10), a list of choices, or a fixed value. They are searched
    only in trials that pick this method (Optuna define-by-run), so each base is tuned on its own terms."""

    objective: dict[str, Any] = Field(default_factory=dict, description="objective section: name, method options, regularizers")
    search: dict[str, SearchValue] = Field(default_factory=dict, description="option -> [lo, hi], [choices] or a value")


class SpaceConfig(Strict):
    """The searched hyperparameters. A [lo, hi] pair is searched (log scale for rates); a number is fixed."""

    stages: list[int] = Field([1, 3], min_length=2, max_length=2, description="[min, max] number of stages")
    clusters: list[int] = Field([4, 10, 20], min_length=1, description="choices of K")
    per_stage_clusters: bool = Field(False, description="one K per clustering step instead of one shared K")
    temperature: Union[float, Range] = Field([0.1, 0.5])
    lr: Union[float, Range] = Field([3e-4, 3e-3])
    backbones: list[str] = Field(["resnet18"], min_length=1, description="backbones of the family to try")
    cluster_on: Union[list[Literal["backbone", "projector", "text", "joint"]], None] = Field(
        None, min_length=1, description="embeddings to cluster between stages, as a choice (null: the experiment's mcl.cluster_on)")
    sampling: Union[list[Literal["group_batches", "random_batches"]], None] = Field(
        None, min_length=1, description="negative-sampling policy of later stages, as a choice (null: the experiment's mcl.sampling)")
    min_group_size: Union[list[int], None] = Field(
        None, min_length=1, description="tiny-group policy choices (0 = off; null: the experiment's mcl.min_group_size)")
    objectives: Union[dict[str, ObjectiveChoice], None] = Field(
        None, min_length=1, description="base methods to choose from (simclr, moco, +dimcl, +ifm, spcl, metaug), each "
        "with its own searched options (null: the experiment's objective)")

    @field_validator("stages")
    @classmethod
    def _stages(cls, v: list[int]) -> list[int]:
        if not 1 <= v[0] <= v[1] <= 32:
            raise ValueError(f"needs 1 <= min <= max <= 32, got {v}")
        return v

    @field_validator("clusters")
    @classmethod
    def _clusters(cls, v: list[int]) -> list[int]:
        if any(k < 2 for k in v):
            raise ValueError(f"every K must be >= 2, got {v}")
        return v

    @field_validator("temperature", "lr")
    @classmethod
    def _positive(cls, v: float | Range) -> float | Range:
        values = v if isinstance(v, list) else [v]
        if isinstance(v, list) and (len(v) != 2 or v[0] > v[1]):
            raise ValueError(f"a range is [lo, hi] with lo <= hi, got {v}")
        if any(x <= 0 for x in values):
            raise ValueError(f"must be > 0, got {v}")
        return v


class StudySettings(Strict):
    name: str = "mcl-study"
    metric: str = Field("integrated/mean/knn", description="reported metric to optimise, e.g. integrated/texture/linear")
    mode: Literal["max", "min"] = "max"
    samples: int = Field(8, ge=1, description="trials per arm")
    scheduler: Literal["asha", "none"] = Field("asha", description="ASHA stops weak trials at stage boundaries")
    seed: int = Field(0, description="seeds Optuna's TPE sampler")
    storage: str = Field("studies/results", description="local path or URI; trials, stage cache and TensorBoard")
    max_concurrent: Union[int, None] = Field(None, ge=1, description="default: what the cluster's CPUs/GPUs allow")
    trial_cpus: float = Field(1.0, gt=0.0, description="CPUs each trial's driver holds (it runs the evaluation)")
    space: SpaceConfig = SpaceConfig()
    arms: list[Literal["mcl", "ensemble", "long", "ifm"]] = Field(
        ["mcl"], min_length=1,
        description="what the study tunes side by side, each with `samples` trials: mcl, and the controls ensemble "
        "(S seeded 1-stage runs integrated like MCL's stages), long (one run with S times the epochs) and ifm (the long "
        "run with implicit feature modification)",
    )
    arm_samples: dict[Literal["mcl", "ensemble", "long", "ifm"], Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict,
        description="an arm's own number of trials instead of `samples` (e.g. {mcl: 12}); the verdict shows each arm's "
        "budget, since an arm searched harder than its rivals has an edge",
    )
    confirm_seeds: int = Field(
        0, ge=0, description="after tuning, rerun each arm's best configuration with this many fresh seeds (mean +- std)"
    )

    def samples_for(self, arm: str) -> int:
        """Trials the arm `arm` is tuned with."""
        return self.arm_samples.get(arm, self.samples)

    @field_validator("arms")
    @classmethod
    def _arms(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v) or "mcl" not in v:
            raise ValueError(f"needs 'mcl' and no arm twice, got {v}")
        return v

    @model_validator(mode="after")
    def _budgets_name_arms(self) -> "StudySettings":
        extra = sorted(set(self.arm_samples) - set(self.arms))
        if extra:
            raise ValueError(f"arm_samples: {', '.join(extra)} is not one of the study's arms {self.arms}")
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return safe_name(v, nested=False)

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if not (v.startswith(("integrated/", "stage_alone/", "train/")) and v.count("/") >= 1):
            raise ValueError(f"{v!r} is not a reported metric; use e.g. integrated/mean/knn or integrated/texture/linear")
        return v


class StudyConfig(Strict):
    study: StudySettings = StudySettings()
    experiment: dict[str, Any] = Field(default_factory=dict)

    def base_experiment(self) -> ExperimentConfig:
        return _experiment(self.experiment)


def _experiment(data: dict[str, Any]) -> ExperimentConfig:
    try:
        return build_config(data)
    except ConfigError as exc:
        text = str(exc)
        named = text.replace("\n  ", "\n  experiment.") if "\n  " in text else f"experiment: {text}"
        raise ConfigError(named) from None


def reported_metrics(cfg: ExperimentConfig) -> list[str] | None:
    """Every metric a trial of `cfg` reports, known before it starts; None when the data set's attributes are
    only known once it loads."""
    from mcl_ray.data.registry import DATA_SOURCES

    source = DATA_SOURCES.get(cfg.data.name)()
    if source.attributes_from_data:
        return None
    attributes = list(source.attributes)
    if source.labels_file:
        try:
            attributes = source.table_attributes(cfg.data.labels)
        except Exception:  # the table's own errors surface when the data loads
            return None
    kinds = ["knn", "linear"] if cfg.eval.linear else ["knn"]
    out = [f"{rep}/{a}/{k}" for rep in ("integrated", "stage_alone") for a in [*attributes, "mean"] for k in kinds]
    from mcl_ray.plan.from_config import is_image_text_model

    if is_image_text_model(cfg.model.backbone):
        out += [f"{rep}/{m}" for rep in ("integrated", "stage_alone") for m in image_text_metrics(cfg, attributes)]
    return out + ["train/final_loss", "clusters/num_groups"]


def image_text_metrics(cfg: ExperimentConfig, attributes: list[str]) -> list[str]:
    """What plan/image_text.py adds for an image-text model: zero-shot per named attribute, retrieval, MMVP."""
    out = [f"{a}/zeroshot" for a in [*attributes, "mean"]] + ["retrieval/i2t_r1", "retrieval/t2i_r1"]
    if cfg.eval.mmvp:
        categories = attributes
        if cfg.eval.mmvp != "trifeature":
            import csv

            from mcl_ray.plan.image_text import category_key

            try:
                with (Path(cfg.eval.mmvp).expanduser() / "Questions.csv").open(newline="") as fh:
                    categories = list(dict.fromkeys(category_key(r[1]) for r in list(csv.reader(fh))[1:] if len(r) > 1))
            except OSError:
                categories = []  # the folder's own errors surface when the run loads it
        out += [f"{c}/mmvp" for c in [*categories, "mean"]] + ["mmvp/pairs"]
    return out


def check_metric(metric: str, cfg: ExperimentConfig) -> None:
    """study.metric must be one a trial reports: a typo fails here, not in Tune after stage 1 has trained."""
    import difflib

    known = reported_metrics(cfg)
    if known is None or metric in known:
        return
    close = difflib.get_close_matches(metric, known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ConfigError(f"study.metric: {metric!r} is not reported by these trials; {hint}"
                      f"they report {', '.join(m for m in known if m.startswith('integrated/'))}, the same under "
                      "stage_alone/, train/final_loss and clusters/num_groups")


def load_study(path: str | Path, profile: str | None = None, overrides: list[str] = ()) -> StudyConfig:
    """Read a study YAML, apply `profiles.<profile>` and dotted overrides (`study.samples=4`)."""
    path = Path(path)
    raw = read_yaml(path, "study config")
    profiles = raw.pop("profiles", {}) or {}
    if not isinstance(profiles, dict):
        raise ConfigError(f"study config {path}: profiles must be a mapping of profile names, got {type(profiles).__name__}")
    if profile is not None:
        if profile not in profiles:
            raise ConfigError(f"--profile: {path} has no profile {profile!r}; it has {', '.join(profiles) or 'none'}")
        raw = deep_merge(raw, profiles[profile])
    raw = deep_merge(raw, parse_overrides(overrides))
    try:
        study = StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: " + format_validation_error(exc, StudyConfig)) from None
    if "CHANGE-ME" in study.study.storage:
        raise ConfigError(
            f"study.storage: {study.study.storage!r} is a placeholder; pass --storage s3://your-bucket/path "
            "(storage every node can reach)"
        )
    check_metric(study.study.metric, study.base_experiment())
    check_objectives(study)
    for backbone in study.study.space.backbones:  # every searched backbone must exist in timm
        _experiment({**study.experiment, "model": {**study.experiment.get("model", {}), "backbone": backbone}})
    return study


def check_objectives(study: StudyConfig) -> None:
    """Every base method a study may pick, with each searched option at both ends of its range, must make a valid
    experiment: a misspelt option fails here, naming the choice, not in a trial after others have trained."""
    from mcl_ray.study.spaces import choice_objective, search_values

    for choice_name, choice in (study.study.space.objectives or {}).items():
        field = f"study.space.objectives.{choice_name}"
        for key, value in choice.search.items():
            for candidate in search_values(value):
                try:
                    objective = choice_objective(study.experiment.get("objective", {}), choice, {key: candidate})
                except ConfigError as exc:
                    raise ConfigError(f"{field}.search.{key}: {exc}") from None
                _checked(field, {**study.experiment, "objective": objective})
        _checked(field, {**study.experiment, "objective": choice_objective(study.experiment.get("objective", {}), choice, {})})


def _checked(field: str, experiment: dict[str, Any]) -> None:
    try:
        build_config(experiment)
    except ConfigError as exc:
        raise ConfigError(f"{field}: {exc}") from None
