"""Build a ready `tune.Tuner` for an MCL study: OptunaSearch (seeded TPE) over a define-by-run space,
optional ASHA at stage boundaries, and a concurrency limit that fits the cluster's CPUs and GPUs.

    from mcl_ray.study import load_study, build_tuner
    results = build_tuner(load_study("studies/configs/vit.yaml", "local")).fit()

For your own searcher or scheduler, use `mcl_trainable` and `study_param_space` with `tune.Tuner` directly.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable

import ray
import yaml
from ray import tune
from ray.tune.experiment import Experiment
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from mcl_ray.config.loader import with_absolute_paths
from mcl_ray.config.schema import ExperimentConfig
from mcl_ray.engine.runtime import plan_resources
from mcl_ray.errors import ConfigError
from mcl_ray.store.artifacts import ArtifactStore
from mcl_ray.study.arms import STUDY_TRIAL_SLOTS, trial_slots
from mcl_ray.study.config import StudyConfig
from mcl_ray.study.console import StudyConsole
from mcl_ray.study.spaces import build_space
from mcl_ray.study.trainable import EXPERIMENT_KEY, STUDY_KEY, mcl_trainable

log = logging.getLogger("mcl_ray")


def concurrency_limit(cfg: ExperimentConfig, trial_cpus: float, resources: dict[str, float] | None = None) -> int:
    """How many trials fit at once: each holds its driver, its Train workers and its clustering actor.

    A limit above this would start trial drivers whose Train workers can never be placed (Ray Train then
    waits forever), which is the classic Tune + Train deadlock on small machines.
    """
    resources = resources if resources is not None else ray.cluster_resources()
    gpus = float(resources.get("GPU", 0.0))
    plan = plan_resources(cfg, gpus)
    limit = math.floor(float(resources.get("CPU", 0.0)) / (trial_cpus + plan.cpus))
    if plan.gpus > 0:
        limit = min(limit, math.floor(gpus / plan.gpus))
    return limit


def trial_dirname(trial) -> str:
    """Short trial directories (Tune's default name embeds the whole constant config)."""
    return f"trial_{trial.trial_id}"


def storage_uri(study: StudyConfig) -> str:
    """Absolute local path (Tune needs one) or the URI as given."""
    return ArtifactStore(study.study.storage).uri()


def resolved_experiment(study: StudyConfig, cluster_gpus: float) -> dict[str, Any]:
    """The base experiment with absolute paths (trials run in their own directories) and its 'auto' GPU
    settings fixed now, so every trial asks for what its placement group reserved."""
    cfg = with_absolute_paths(study.base_experiment())
    plan = plan_resources(cfg, cluster_gpus)
    experiment = cfg.model_dump(mode="json")
    experiment["ray"].update(use_gpu=plan.use_gpu, clustering_gpus=plan.clustering_gpus)
    return experiment


def study_param_space(study: StudyConfig, cluster_gpus: float | None = None, arm: str = "mcl") -> dict[str, Any]:
    """The constant part of every trial's config: the base experiment, the arm, where the study stores things."""
    gpus = float(ray.cluster_resources().get("GPU", 0.0)) if cluster_gpus is None else cluster_gpus
    return {
        EXPERIMENT_KEY: resolved_experiment(study, gpus),
        STUDY_KEY: {"name": study.study.name, "storage": storage_uri(study), "arm": arm,
                    "objectives": {k: v.model_dump(mode="json") for k, v in (study.study.space.objectives or {}).items()}},
    }


def arm_path(study: StudyConfig, arm: str, confirm: bool = False) -> str:
    """Where an arm's trials go: the MCL arm in the study directory itself (as before arms existed), the
    controls under <study>/arms/<arm>, confirmation runs under <study>/confirm/<arm>."""
    if confirm:
        return f"{study.study.name}/confirm/{arm}"
    return study.study.name if arm == "mcl" else f"{study.study.name}/arms/{arm}"


def trainable_with_resources(study: StudyConfig, cluster_gpus: float | None = None) -> Callable:
    """The trainable with its placement group: the trial driver's CPUs plus a bundle for its clustering actor
    (actors a trial starts must fit its placement group; the Train workers get their own from Ray Train), and one
    of the study's trial slots where the cluster declares them (arms running side by side: see study.arms)."""
    gpus = float(ray.cluster_resources().get("GPU", 0.0)) if cluster_gpus is None else cluster_gpus
    plan = plan_resources(study.base_experiment(), gpus)
    bundles = [{"CPU": study.study.trial_cpus, **({STUDY_TRIAL_SLOTS: 1} if trial_slots() else {})}]
    actor = {k: v for k, v in (("CPU", plan.clustering_cpus), ("GPU", plan.clustering_gpus)) if v > 0}
    if actor:
        bundles.append(actor)
    return tune.with_resources(mcl_trainable, tune.PlacementGroupFactory(bundles))


def registered_trainable(study: StudyConfig) -> str:
    """The trainable registered with Tune once, under the name Tune itself gives it (a study started either way
    resumes either way). Tuners fitted in several threads get this name: Tune's registry is not thread-safe, and
    a name is never registered again."""
    trainable = trainable_with_resources(study)
    name = Experiment.get_trainable_name(trainable)
    tune.register_trainable(name, trainable)
    return name


def build_tuner(
    study: StudyConfig,
    *,
    resume: bool = False,
    searcher: Searcher | None = None,
    scheduler: TrialScheduler | None = None,
    max_concurrent: int | None = None,
    arm: str = "mcl",
    verbose: bool = False,
    trainable: str | Callable | None = None,
) -> tune.Tuner:
    """A Tuner for one arm of `study` (each arm gets study.samples trials, or its study.arm_samples, and its own
    seeded searcher, so by default the controls are tuned as hard as MCL) on the connected Ray cluster; `resume=True` continues an interrupted one."""
    s = study.study
    base = study.base_experiment()
    limit = max_concurrent or s.max_concurrent or concurrency_limit(base, s.trial_cpus)
    if limit < 1:
        raise ConfigError(
            f"study: one trial needs {s.trial_cpus} + {plan_resources(base, ray.cluster_resources().get('GPU', 0)).cpus} "
            f"CPUs but the cluster has {ray.cluster_resources().get('CPU', 0)}; lower train.workers or ray.cpus_per_worker, "
            "or set study.max_concurrent on an autoscaling cluster"
        )
    storage = storage_uri(study)
    store = ArtifactStore(storage)
    name = arm_path(study, arm)
    path = store.uri(name)
    trainable = trainable or trainable_with_resources(study)
    param_space = study_param_space(study, arm=arm)
    resuming = start_or_resume(path, resume, s.name)  # refuses a rerun without --resume before writing anything
    store.run(s.name).put_bytes("study.yaml", yaml.safe_dump(study.model_dump(mode="json"), sort_keys=False).encode())
    if resuming:
        log.info("resuming study %s: finished trials are kept, unfinished ones continue", path)
        return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True, param_space=param_space)
    if scheduler is None and s.scheduler == "asha":
        scheduler = ASHAScheduler(
            time_attr="training_iteration", metric=s.metric, mode=s.mode,
            max_t=s.space.stages[1], grace_period=1, reduction_factor=2,
        )
    # metric/mode go to the searcher and scheduler themselves: Tune does not forward TuneConfig's through
    # the ConcurrencyLimiter that max_concurrent_trials wraps around the searcher
    searcher = searcher or OptunaSearch(space=build_space(s.space), metric=s.metric, mode=s.mode, seed=s.seed)
    log.info("study %s, arm %s: %d trials, at most %d at a time, storage %s", s.name, arm, s.samples_for(arm), limit, path)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler,
            num_samples=s.samples_for(arm), max_concurrent_trials=limit,
            trial_name_creator=trial_dirname, trial_dirname_creator=trial_dirname,
        ),
        run_config=_run_config(name, storage, StudyConsole(arm, s.metric, total=s.samples_for(arm)), verbose),
    )


def confirmation_seeds(study: StudyConfig, arm: str = "mcl") -> list[int]:
    """Seeds of the confirmation reruns: experiment seed + 1, + 2, ... The seed an arm was tuned on is left out,
    so the luck of picking the best of several trials does not count twice; an arm tuned with one trial picked
    nothing, so that trial is one of the study.confirm_seeds seeds and one rerun fewer is needed."""
    s = study.study
    reruns = s.confirm_seeds - (1 if s.samples_for(arm) == 1 and s.confirm_seeds else 0)
    return [study.base_experiment().seed + i for i in range(1, reruns + 1)]


def confirm_tuner(study: StudyConfig, arm: str, params: dict[str, Any], *, max_concurrent: int | None = None,
                  resume: bool = False, verbose: bool = False, trainable: str | Callable | None = None) -> tune.Tuner:
    """Rerun one arm's best parameters with the confirmation seeds (see confirmation_seeds)."""
    s = study.study
    base = study.base_experiment()
    limit = max_concurrent or s.max_concurrent or max(1, concurrency_limit(base, s.trial_cpus))
    seeds = confirmation_seeds(study, arm)
    param_space = {**study_param_space(study, arm=arm), **params, "seed": tune.grid_search(seeds)}
    name = arm_path(study, arm, confirm=True)
    trainable = trainable or trainable_with_resources(study)
    if start_or_resume(ArtifactStore(storage_uri(study)).uri(name), resume, s.name):
        return tune.Tuner.restore(ArtifactStore(storage_uri(study)).uri(name), trainable,
                                  resume_unfinished=True, resume_errored=True, param_space=param_space)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(max_concurrent_trials=limit, trial_name_creator=trial_dirname,
                                    trial_dirname_creator=trial_dirname),
        run_config=_run_config(name, storage_uri(study), StudyConsole(f"{arm} confirm", s.metric, total=len(seeds)), verbose),
    )


def start_or_resume(path: str, resume: bool, study_name: str) -> bool:
    """True: restore the Tune experiment at `path`. A study that already ran there is never silently run again
    beside itself (that doubled every trial): without --resume it is an error saying what to do."""
    exists = tune.Tuner.can_restore(path)
    if exists and not resume:
        raise ConfigError(f"study.name: study {study_name!r} already ran at {path}; rerun with --resume to continue it "
                          "(finished trials are kept), or choose another study.name or --storage")
    return exists and resume


def _run_config(name: str, storage: str, console: StudyConsole | None = None, verbose: bool = False) -> tune.RunConfig:
    """Tune's own console output only with `verbose`; otherwise the study's one-line-per-event console."""
    return tune.RunConfig(
        name=name, storage_path=storage, failure_config=tune.FailureConfig(max_failures=1),
        verbose=None if verbose else 0, callbacks=[console] if console is not None else None,
        # each trial's curves/ (written on its node) reaches remote storage at its reports; local storage
        # is the trial directory itself, so nothing is copied there
        sync_config=tune.SyncConfig(sync_artifacts=True, sync_period=60),
    )
