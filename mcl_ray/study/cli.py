"""Command line shared by `studies/sweep_*.py`: pick a profile, start or join Ray, run (or resume) the study."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

from mcl_ray.errors import MCLError


def build_parser(default_config: Path | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Run an MCL hyperparameter study with Ray Tune + Optuna.")
    p.add_argument("--config", default=str(default_config) if default_config else None, required=default_config is None,
                   help=f"study YAML (default: {default_config})")
    p.add_argument("--profile", choices=["local", "cluster"],
                   help="default: cluster when connected to a Ray cluster with GPUs, else local")
    p.add_argument("--samples", type=int, help="trials per arm (overrides study.samples)")
    p.add_argument("--storage", help="local path or s3:// URI for trials, stage cache and TensorBoard")
    p.add_argument("--resume", action="store_true", help="continue an interrupted study; finished trials are kept")
    p.add_argument("--verbose", action="store_true",
                   help="Tune's own tables and every Ray process's log lines (default: one line per trial event)")
    p.add_argument("--address", help="Ray cluster to join ('auto' on a cluster node); default: RAY_ADDRESS or local")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. study.metric=integrated/texture/knn experiment.train.epochs=5")
    return p


def end_process_now(status: int) -> None:
    """Exit at once, skipping interpreter shutdown: the fallback when Ctrl-C could not be relayed to the arms' Tune
    loops (see study.arms.TuneInterrupts), since ray.shutdown() under running loops races with them and Ray's core
    worker then ends the process itself with status 1. Finished trials, stages and epoch checkpoints are already in
    storage and Ray kills this driver's trials with it; on a local instance some of Ray's agent processes may
    outlive it (`ray stop` ends them)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _drop_tune_restore_hint(record: logging.LogRecord) -> bool:
    """On Ctrl-C the study prints its own resume command; Tune's per-arm "Tuner.restore(...)" hint would contradict
    it. A module-level function, so repeated study_main calls in one process add the filter once."""
    return not record.getMessage().startswith("Experiment has been interrupted")


def study_main(argv: list[str] | None = None, default_config: Path | None = None) -> int:
    args = build_parser(default_config).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("mcl_ray").setLevel(logging.INFO)
    if not args.verbose:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        logging.getLogger("ray.tune").setLevel(logging.WARNING)  # "Wrote the latest version of all result files ..." 
        logging.getLogger("ray.tune.tune").addFilter(_drop_tune_restore_hint)
    try:
        import ray

        from mcl_ray.engine.runtime import ensure_ray, local_cpus_needed
        from mcl_ray.study.config import load_study
        from mcl_ray.study.arms import STUDY_TRIAL_SLOTS, run_arms, trial_slots
        from mcl_ray.study.report import report
        from mcl_ray.study.tuner import arm_path, registered_trainable, start_or_resume, storage_uri
        from mcl_ray.store.artifacts import ArtifactStore

        overrides = list(args.overrides)
        if args.samples is not None:
            overrides.append(f"study.samples={args.samples}")
        if args.storage:
            overrides.append(f"study.storage={args.storage}")
        address = args.address or os.environ.get("RAY_ADDRESS")
        profile = args.profile
        if address:
            ensure_ray(address, log_to_driver=args.verbose)
            profile = profile or ("cluster" if ray.cluster_resources().get("GPU", 0) > 0 else "local")
        profile = profile or "local"
        study = load_study(args.config, profile, overrides)  # every field checked before a local Ray starts
        if not ray.is_initialized():
            base = study.base_experiment()
            trials = study.study.max_concurrent or 1
            ensure_ray(None, num_cpus=local_cpus_needed(base, trials=trials, trial_cpus=study.study.trial_cpus),
                       log_to_driver=args.verbose, resources={STUDY_TRIAL_SLOTS: trials})
        s = study.study
        if not args.verbose:  # Tune's heading (its results folder and a TensorBoard hint for its own driver folder,
            os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # not the study's) comes from its new output engine
        parallel = trial_slots()  # arms at a time: as many as trials fit (0: the cluster declares no slots)
        for arm in s.arms:  # a rerun without --resume fails here, before any arm starts
            start_or_resume(ArtifactStore(storage_uri(study)).uri(arm_path(study, arm)), args.resume, s.name)
        side_by_side = (f"; {min(parallel, len(s.arms))} arms side by side, {parallel} trials at a time"
                        if parallel > 1 and len(s.arms) > 1 else "")
        print(f"study {s.name} (profile {profile}): {budget_text(s)}, metric {s.metric}{seeds_text(s)}{side_by_side}")
        try:
            trainable = registered_trainable(study)  # once, here: Tune's registry is not thread-safe
            outcomes = run_arms(s.arms, lambda arm: run_arm(study, arm, trainable, args.resume, args.verbose), parallel)
        except KeyboardInterrupt:
            outcomes = None
        if outcomes is None or any(o.interrupted for o in outcomes.values()):
            print(f"study {s.name} interrupted: finished trials, stages and epochs are kept. Resume with:\n  "
                  + resume_command(argv), file=sys.stderr)
            if outcomes is None:  # Ctrl-C the arms' threads could not be stopped on: end the process and its trials
                end_process_now(130)
            return 130
        errors = [e for o in outcomes.values() for e in o.errors]
        mcl = outcomes.get("mcl")
        study_dir = Path(mcl.experiment_path) if mcl and mcl.experiment_path and "://" not in mcl.experiment_path else None
        if study_dir is not None:
            text, plots = report([str(study_dir)], study.study.metric, study.study.mode)
            print(text)
            print(f"plots: {', '.join(str(p) for p in plots)}")
            print(f"compare trials: tensorboard --logdir {study_dir}")
        if errors:
            print(f"{len(errors)} trial(s) failed; first error: {errors[0].error}", file=sys.stderr)
            return 1
        return 0
    except MCLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run_arm(study, arm: str, trainable: str, resume: bool, verbose: bool):
    """One arm: its seeded search, then its winner rerun with the confirmation seeds."""
    from mcl_ray.study.arms import ArmOutcome
    from mcl_ray.study.trainable import EXPERIMENT_KEY, STUDY_KEY
    from mcl_ray.study.tuner import build_tuner, confirm_tuner, confirmation_seeds

    s = study.study
    results = build_tuner(study, resume=resume, arm=arm, verbose=verbose, trainable=trainable).fit()
    outcome = ArmOutcome(errors=[r for r in results if r.error], experiment_path=results.experiment_path,
                         interrupted=unfinished(results, s.samples_for(arm)))
    seeds = confirmation_seeds(study, arm)
    if seeds and not outcome.interrupted:
        best = results.get_best_result(metric=s.metric, mode=s.mode, scope="last")
        params = {k: v for k, v in best.config.items() if k not in (EXPERIMENT_KEY, STUDY_KEY)}
        confirmed = confirm_tuner(study, arm, params, resume=resume, verbose=verbose, trainable=trainable).fit()
        outcome.errors += [r for r in confirmed if r.error]
        outcome.interrupted = unfinished(confirmed, len(seeds))
    return outcome


def budget_text(s) -> str:
    """'arms mcl, ensemble, 3 trials each', or each arm's own budget when study.arm_samples makes them differ."""
    budgets = {arm: s.samples_for(arm) for arm in s.arms}
    if len(set(budgets.values())) == 1:
        return f"arms {', '.join(s.arms)}, {s.samples} trials each"
    return "arms " + ", ".join(f"{arm} ({n} trials)" for arm, n in budgets.items())


def seeds_text(s) -> str:
    """How the verdict's seeds come about: reruns of each arm's best (an arm tuned with one trial: that trial + one
    rerun fewer, see tuner.confirmation_seeds)."""
    if not s.confirm_seeds:
        return ""
    single = [arm for arm in s.arms if s.samples_for(arm) == 1]
    if len(single) == len(s.arms):
        how = f"each arm's trial + {s.confirm_seeds - 1} rerun(s)"
    elif single:
        how = f"each arm's best rerun with {s.confirm_seeds} fresh seeds; {', '.join(single)}: its trial + {s.confirm_seeds - 1}"
    else:
        how = f"each arm's best rerun with {s.confirm_seeds} fresh seeds"
    return f", verdict over {s.confirm_seeds} seeds ({how})"


def unfinished(results, expected: int) -> bool:
    """True when a Tune run ended with trials neither finished nor failed (Tune caught Ctrl-C and saved them)."""
    return len(results) < expected or results.num_terminated + results.num_errors < len(results)


def resume_command(argv: list[str] | None) -> str:
    """The command line that was run, with --resume."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", sys.argv[0], *args,
                       *([] if "--resume" in args else ["--resume"])])
