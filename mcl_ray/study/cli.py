"""Command line shared by `studies/sweep_*.py`: pick a profile, start or join Ray, run (or resume) the study."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from mcl_ray.errors import MCLError


def build_parser(default_config: Path | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Run an MCL hyperparameter study with Ray Tune + Optuna.")
    p.add_argument("--config", default=str(default_config) if default_config else None, required=default_config is None,
                   help=f"study YAML (default: {default_config})")
    p.add_argument("--profile", choices=["local", "cluster"],
                   help="default: cluster when connected to a Ray cluster with GPUs, else local")
    p.add_argument("--samples", type=int, help="number of trials (overrides study.samples)")
    p.add_argument("--storage", help="local path or s3:// URI for trials, stage cache and TensorBoard")
    p.add_argument("--resume", action="store_true", help="continue an interrupted study; finished trials are kept")
    p.add_argument("--verbose", action="store_true",
                   help="Tune's own tables and every Ray process's log lines (default: one line per trial event)")
    p.add_argument("--address", help="Ray cluster to join ('auto' on a cluster node); default: RAY_ADDRESS or local")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. study.metric=integrated/texture/knn experiment.train.epochs=5")
    return p


def study_main(argv: list[str] | None = None, default_config: Path | None = None) -> int:
    args = build_parser(default_config).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("mcl_ray").setLevel(logging.INFO)
    if not args.verbose:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        logging.getLogger("ray.tune").setLevel(logging.WARNING)  # "Wrote the latest version of all result files ..." 
    try:
        import ray

        from mcl_ray.engine.runtime import ensure_ray, local_cpus_needed
        from mcl_ray.study.config import load_study
        from mcl_ray.study.report import report
        from mcl_ray.study.trainable import EXPERIMENT_KEY, STUDY_KEY
        from mcl_ray.study.tuner import build_tuner, confirm_tuner

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
            ensure_ray(None, num_cpus=local_cpus_needed(base, trials=study.study.max_concurrent or 1, trial_cpus=study.study.trial_cpus),
                       log_to_driver=args.verbose)
        s = study.study
        if not args.verbose:  # Tune's heading (its results folder and a TensorBoard hint for its own driver folder,
            os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # not the study's) comes from its new output engine
        print(f"study {s.name} (profile {profile}): arms {', '.join(s.arms)}, {s.samples} trials each, metric {s.metric}"
              + (f", winners confirmed with {s.confirm_seeds} fresh seeds" if s.confirm_seeds else ""))
        errors, study_dir = [], None
        for arm in s.arms:
            results = build_tuner(study, resume=args.resume, arm=arm, verbose=args.verbose).fit()
            errors += [r for r in results if r.error]
            if arm == "mcl":
                study_dir = Path(results.experiment_path) if "://" not in results.experiment_path else None
            if s.confirm_seeds:
                best = results.get_best_result(metric=s.metric, mode=s.mode, scope="last")
                params = {k: v for k, v in best.config.items() if k not in (EXPERIMENT_KEY, STUDY_KEY)}
                confirmed = confirm_tuner(study, arm, params, resume=args.resume, verbose=args.verbose).fit()
                errors += [r for r in confirmed if r.error]
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
