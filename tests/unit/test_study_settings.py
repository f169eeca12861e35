"""Studies without Ray: define-by-run search spaces, trial values, concurrency limits, study config errors."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from mcl_ray.config.loader import build_config, set_path
from mcl_ray.errors import ConfigError
from mcl_ray.study import build_space, concurrency_limit, load_study
from mcl_ray.study.config import SpaceConfig
from mcl_ray.study.spaces import params_to_values

ROOT = Path(__file__).resolve().parents[2]
RESNET = ROOT / "studies" / "configs" / "resnet.yaml"


@pytest.mark.parametrize("per_stage", [False, True])
def test_define_by_run_space_samples_valid_configs(per_stage):
    space = SpaceConfig(stages=[1, 4], clusters=[3, 7], per_stage_clusters=per_stage, temperature=[0.05, 0.5],
                        lr=[1e-4, 1e-2], backbones=["test_resnet", "resnet18"])
    define = build_space(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_stages = set()
    for _ in range(25):
        trial = study.ask()
        fixed = define(trial)
        params = {**trial.params, **fixed}
        values = params_to_values(params)
        data: dict = {}
        for path, value in values.items():
            data = set_path(data, path, value)
        cfg = build_config(data)
        assert all(isinstance(v, (int, float, str, list)) for v in values.values())  # values, never re-parsed strings
        seen_stages.add(cfg.mcl.stages)
        assert 0.05 <= cfg.objective.temperature <= 0.5 and 1e-4 <= cfg.train.lr <= 1e-2
        assert cfg.model.backbone in ("test_resnet", "resnet18")
        ks = [cfg.mcl.clusters_after(s) for s in range(cfg.mcl.stages - 1)]
        assert all(k in (3, 7) for k in ks)
        if per_stage:
            assert sorted(k for k in trial.params if k.startswith("mcl.clusters.")) == [f"mcl.clusters.{i}" for i in range(1, cfg.mcl.stages)]
        study.tell(trial, 0.0)
    assert seen_stages == {1, 2, 3, 4}


def test_cluster_on_is_a_categorical_dimension_of_multistage_trials():
    space = SpaceConfig(stages=[1, 2], clusters=[5], temperature=0.1, lr=1e-3, backbones=["open_clip:mcl-tiny"],
                        cluster_on=["backbone", "text", "joint"])
    define = build_space(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(20):
        trial = study.ask()
        define(trial)
        if trial.params.get("mcl.stages") == 2:
            seen.add(trial.params["mcl.cluster_on"])
        else:
            assert "mcl.cluster_on" not in trial.params  # one stage: nothing is clustered
        study.tell(trial, 0.0)
    assert seen == {"backbone", "text", "joint"}


def test_sampling_and_tiny_group_policies_are_dimensions_applied_to_the_trial_config():
    from mcl_ray.plan.from_config import build_config

    space = SpaceConfig(stages=[2, 2], clusters=[5], temperature=0.1, lr=1e-3, backbones=["test_resnet"],
                        sampling=["group_batches", "random_batches"], min_group_size=[0, 8])
    define = build_space(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    seen = set()
    for _ in range(16):
        trial = study.ask()
        fixed = define(trial)
        values = {**trial.params, **fixed}
        cfg = build_config({"mcl": {"stages": 2, "sampling": values["mcl.sampling"],
                                    "min_group_size": values["mcl.min_group_size"]}})
        seen.add((cfg.mcl.sampling, cfg.mcl.min_group_size))
        study.tell(trial, 0.0)
    assert seen == {(s, m) for s in ("group_batches", "random_batches") for m in (0, 8)}
    fixed = build_space(SpaceConfig(stages=[2, 2], clusters=[5], temperature=0.1, lr=1e-3, sampling=["group_batches"]))(
        optuna.create_study().ask())
    assert fixed["mcl.sampling"] == "group_batches"


def test_fixed_values_are_constants_not_searched():
    define = build_space(SpaceConfig(stages=[2, 2], clusters=[5], temperature=0.2, lr=[1e-3, 1e-3], backbones=["resnet18"]))
    trial = optuna.create_study().ask()
    fixed = define(trial)
    assert trial.params == {}
    assert fixed == {"mcl.stages": 2, "mcl.clusters": 5, "objective.temperature": 0.2, "train.lr": 1e-3, "model.backbone": "resnet18"}


def test_concurrency_limit_counts_driver_workers_and_clustering_actor():
    cfg = build_config({"train": {"workers": 2}, "ray": {"cpus_per_worker": 1, "clustering_cpus": 1}})
    assert concurrency_limit(cfg, trial_cpus=1, resources={"CPU": 2}) == 0  # one trial needs 4: never start it
    assert concurrency_limit(cfg, trial_cpus=1, resources={"CPU": 9}) == 2
    gpu = build_config({"train": {"workers": 2}, "ray": {"use_gpu": True, "clustering_gpus": 1}})
    assert concurrency_limit(gpu, trial_cpus=1, resources={"CPU": 64, "GPU": 6}) == 2  # 3 GPUs per trial


@pytest.mark.parametrize("override, needle", [
    ("study.metric=integrated/textur/linear", "did you mean integrated/texture/linear"),
    ("study.metric=integrated/texture/svm", "is not reported by these trials"),
    ("study.name=../escape", "study.name: '../escape' is not a safe folder name"),
    ("study.name=a/b", "not a safe folder name"),
])
def test_study_metric_and_name_fail_at_load_naming_the_field(override, needle):
    with pytest.raises(ConfigError) as exc:
        load_study(RESNET, "local", [override])
    assert needle in str(exc.value)
    load_study(RESNET, "local", ["study.metric=stage_alone/mean/knn"])  # every reported metric is accepted


def test_study_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="study.space.stages"):
        load_study(RESNET, "local", ["study.space.stages=[3,1]"])
    with pytest.raises(ConfigError, match="study.sampels: unknown key.*did you mean 'study.samples'"):
        load_study(RESNET, "local", ["study.sampels=3"])
    with pytest.raises(ConfigError, match=r"experiment\.train\.lr: Input should be greater than 0"):
        load_study(RESNET, "local", ["experiment.train.lr=-1"])
    with pytest.raises(ConfigError, match="timm has no backbone|backbone"):
        load_study(RESNET, "local", ["study.space.backbones=[resnet_does_not_exist]"])
    with pytest.raises(ConfigError, match="no profile 'laptop'"):
        load_study(RESNET, "laptop")
    with pytest.raises(ConfigError, match="placeholder"):
        load_study(RESNET, "cluster")
    for path in sorted((ROOT / "studies" / "configs").glob("*.yaml")):  # every bundled study, both profiles
        for profile in ("local", "cluster"):
            study = load_study(path, profile, ["study.storage=/tmp/x"])
            assert study.base_experiment().mcl.stages >= 1


def test_a_study_that_already_ran_is_resumed_or_refused_never_doubled(tmp_path):
    from mcl_ray.study.tuner import start_or_resume

    path = tmp_path / "sweep-resnet"
    assert start_or_resume(str(path), False, "sweep-resnet") is False  # nothing there: a fresh start
    assert start_or_resume(str(path), True, "sweep-resnet") is False  # --resume of nothing: a fresh start too
    path.mkdir()
    (path / "tuner.pkl").write_bytes(b"state")  # what Tune leaves in a study it ran
    with pytest.raises(ConfigError, match=r"study.name: study 'sweep-resnet' already ran at .*--resume"):
        start_or_resume(str(path), False, "sweep-resnet")
    assert start_or_resume(str(path), True, "sweep-resnet") is True


def test_mean_scores_leave_out_shortcut_attributes():
    from mcl_ray.data.registry import DATA_SOURCES
    from mcl_ray.study.trainable import with_means

    scalars = {"integrated/shape/knn": 0.6, "integrated/texture/knn": 0.4, "integrated/code/knn": 0.9}
    assert with_means(scalars)["integrated/mean/knn"] == pytest.approx(0.6333, abs=1e-4)
    assert with_means(scalars, DATA_SOURCES.get("randbit")().shortcuts)["integrated/mean/knn"] == pytest.approx(0.5)


OBJECTIVES = {
    "simclr": {"objective": {"name": "simclr"}},
    "moco": {"objective": {"name": "moco"}, "search": {"momentum": [0.9, 0.999], "queue_size": [256, 1024]}},
    "ifm": {"objective": {"name": "simclr", "regularizers": [{"name": "ifm"}]}, "search": {"ifm.epsilon": [0.01, 0.2]}},
    "dimcl": {"objective": {"name": "simclr", "regularizers": [{"name": "dimcl"}]}, "search": {"dimcl.weight": [0.05, 0.1, 0.2]}},
}


def test_the_base_method_is_a_categorical_dimension_with_its_own_conditional_options():
    from mcl_ray.study.spaces import BASE_PARAM, apply_objective_choice

    space = SpaceConfig(stages=[1, 3], clusters=[5], temperature=[0.1, 0.5], lr=1e-3, backbones=["test_resnet"],
                        objectives=OBJECTIVES)
    define = build_space(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    base_experiment = {"objective": {"name": "moco", "temperature": 0.3, "momentum": 0.5, "gather": False}}
    choices = {k: v for k, v in OBJECTIVES.items()}
    for _ in range(30):
        trial = study.ask()
        fixed = define(trial)
        params = {**trial.params, **fixed}
        base = params[BASE_PARAM]
        seen.add(base)
        # options of the other bases are never sampled in this trial (define-by-run)
        assert not [k for k in trial.params if k.startswith("objective.") and k.count(".") == 2
                    and not k.startswith(f"objective.{base}.")]
        experiment, rest = apply_objective_choice(base_experiment, params, choices)
        for path, value in params_to_values(rest).items():
            experiment = set_path(experiment, path, value)
        cfg = build_config(experiment)
        spec = cfg.objective
        assert not spec.gather and 0.1 <= spec.temperature <= 0.5  # shared fields kept, the trial's temperature set
        if base == "moco":
            options = spec.method_options()
            assert 0.9 <= options["momentum"] <= 0.999 and 256 <= options["queue_size"] <= 1024
            assert isinstance(options["queue_size"], int)
        else:
            assert spec.name == "simclr" and "momentum" not in spec.method_options()  # no leak from the base
        if base == "ifm":
            assert 0.01 <= spec.regularizers[0].model_dump()["epsilon"] <= 0.2
        if base == "dimcl":
            assert spec.regularizers[0].weight in (0.05, 0.1, 0.2)
        study.tell(trial, 0.0)
    assert seen == set(OBJECTIVES)


@pytest.mark.parametrize("choice, needle", [
    ({"objective": {"name": "simclar"}}, "study.space.objectives.bad"),
    ({"objective": {"name": "moco"}, "search": {"momentun": [0.9, 0.99]}}, "momentun"),
    ({"objective": {"name": "moco"}, "search": {"momentum": [0.9, 1.5]}}, "momentum"),
    ({"objective": {"name": "simclr"}, "search": {"ifm.epsilon": [0.01, 0.2]}}, "search.ifm.epsilon"),
])
def test_base_method_choices_are_checked_when_the_study_loads(choice, needle):
    import json

    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_study(RESNET, "local", [f"study.space.objectives={json.dumps({'bad': choice})}"])


@pytest.mark.parametrize("samples, confirm, seeds", [
    (2, 3, [8, 9, 10]),  # the tuned seed (7) is left out: picking the best of 2 trials was luck as well
    (1, 3, [8, 9]),  # one trial per arm picked nothing: it is the first of the 3 seeds
    (1, 1, []),
    (2, 0, []),
])
def test_confirmation_seeds_leave_out_the_tuned_seed_only_when_a_best_trial_was_picked(samples, confirm, seeds):
    from mcl_ray.study.tuner import confirmation_seeds

    study = load_study(RESNET, "local", [f"study.samples={samples}", f"study.confirm_seeds={confirm}", "experiment.seed=7"])
    assert confirmation_seeds(study) == seeds


def test_an_arm_can_get_its_own_tuning_budget_and_bad_budgets_name_the_field(tmp_path, monkeypatch):
    import ray

    from mcl_ray.study import tuner as tuner_module
    from mcl_ray.study.tuner import build_tuner, confirmation_seeds

    study = load_study(RESNET, "local", ["study.arms=[mcl,ensemble,long]", "study.samples=3", "study.arm_samples.mcl=6",
                                         "study.arm_samples.long=1", "study.confirm_seeds=3", "experiment.seed=0",
                                         f"study.storage={tmp_path}"])
    assert [study.study.samples_for(a) for a in ("mcl", "ensemble", "long")] == [6, 3, 1]
    # an arm tuned with one trial picked nothing: that trial is one of its seeds, the others rerun all three
    assert confirmation_seeds(study, "long") == [1, 2] and confirmation_seeds(study, "mcl") == [1, 2, 3]
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})  # no Ray started: only the Tuner's settings

    class Tuner:  # records what the study asks Tune for
        can_restore = staticmethod(lambda path: False)

        def __init__(self, trainable, **kwargs):
            self.tune_config = kwargs["tune_config"]

    monkeypatch.setattr(tuner_module.tune, "Tuner", Tuner)
    budgets = {arm: build_tuner(study, arm=arm, max_concurrent=1, trainable=lambda config: None).tune_config.num_samples
               for arm in study.study.arms}
    assert budgets == {"mcl": 6, "ensemble": 3, "long": 1}
    with pytest.raises(ConfigError, match=r"study.arm_samples: ifm is not one of the study's arms"):
        load_study(RESNET, "local", ["study.arm_samples.ifm=4"])  # the local profile's arms: mcl, ensemble, long
    with pytest.raises(ConfigError, match=r"study.arm_samples.mcl: Input should be greater than or equal to 1"):
        load_study(RESNET, "local", ["study.arm_samples.mcl=0"])
    with pytest.raises(ConfigError, match=r"study.arm_samples.mlc"):
        load_study(RESNET, "local", ["study.arm_samples.mlc=4"])


def test_the_study_heading_says_each_arms_budget_when_they_differ():
    from mcl_ray.study.cli import budget_text, seeds_text

    equal = load_study(RESNET, "local", ["study.samples=2", "study.confirm_seeds=3"]).study
    assert budget_text(equal) == "arms mcl, ensemble, long, 2 trials each"
    assert seeds_text(equal) == ", verdict over 3 seeds (each arm's best rerun with 3 fresh seeds)"
    mixed = load_study(RESNET, "local", ["study.samples=1", "study.arm_samples.mcl=4", "study.confirm_seeds=3"]).study
    assert budget_text(mixed) == "arms mcl (4 trials), ensemble (1 trials), long (1 trials)"
    assert seeds_text(mixed).endswith("(each arm's best rerun with 3 fresh seeds; ensemble, long: its trial + 2)")
