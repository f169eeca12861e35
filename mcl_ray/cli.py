"""`mcl-ray` command line: run an experiment, or check a config without running it."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import resources
from pathlib import Path

from mcl_ray.errors import ConfigError, MCLError


def builtin_config(name: str) -> Path:
    return Path(str(resources.files("mcl_ray") / "configs" / f"{name}.yaml"))


def bundled_configs() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("mcl_ray").joinpath("configs").iterdir()
                  if p.name.endswith(".yaml"))


def resolve_config_path(value: str | None) -> Path | None:
    """A file path, or the name of a bundled config (e.g. `trifeature`)."""
    if value is None:
        return None
    path = Path(value)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    candidate = builtin_config(value)
    if candidate.exists():
        return candidate
    raise ConfigError(f"--config: {value!r} is neither a file nor a bundled config; bundled: {', '.join(bundled_configs())}")


def build_parser() -> argparse.ArgumentParser:
    from mcl_ray import __version__

    parser = argparse.ArgumentParser(prog="mcl-ray", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mcl-ray {__version__}")
    sub = parser.add_subparsers(dest="command")
    train = sub.add_parser("train", help="run a whole MCL experiment and print a per-stage table")
    train.add_argument("--config", help="YAML file or bundled config name (default: built-in defaults)")
    train.add_argument("--output", help="output directory (overrides output_dir)")
    train.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    train.add_argument(
        "--address", help="Ray cluster to join ('auto', 'ray://host:10001'); default: RAY_ADDRESS or a local instance"
    )
    train.add_argument("--local", action="store_true", help="run in this process without Ray (same layout: reuses and resumes stages of earlier runs)")
    train.add_argument("overrides", nargs="*", help="dotted overrides, e.g. mcl.stages=3 objective.temperature=0.2")
    rep = sub.add_parser("report", help="table and plots of one or more finished (or interrupted) studies")
    rep.add_argument("study_dirs", nargs="+", help="study directories (<storage>/<study name>)")
    rep.add_argument("--metric", help="default: the study's metric")
    rep.add_argument("--mode", choices=["max", "min"])
    rep.add_argument("--out", help="where the PNGs go (default: <first study>/report)")
    check = sub.add_parser("validate", help="validate a config and print it fully resolved")
    check.add_argument("--config")
    check.add_argument("overrides", nargs="*")
    return parser


def interrupted_message(cfg, argv: list[str]) -> str:
    """What Ctrl-C left behind and the exact command that carries on from there."""
    import shlex

    from mcl_ray.config.loader import with_absolute_paths
    from mcl_ray.plan.sequence import storage_root
    from mcl_ray.store import ArtifactStore

    cfg = with_absolute_paths(cfg)
    store = ArtifactStore(storage_root(cfg))
    done = [k for k in range(1, cfg.mcl.stages + 1) if store.run(cfg.name, f"stage_{k}").is_complete()]
    finished = f"stages {', '.join(map(str, done))} of {cfg.mcl.stages} are finished" if done else "no stage had finished"
    return (f"\ninterrupted: {finished} ({store.uri(cfg.name)}); finished stages are reused and a Ray run resumes its "
            f"stage from the last epoch checkpoint. Resume with:\n  mcl-ray {shlex.join(argv)}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `mcl-ray` alone: what it can do
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("mcl_ray").setLevel(logging.INFO)
    from mcl_ray.plan.from_config import load_config

    if args.command == "report":
        from mcl_ray.study.report import report

        try:
            text, plots = report(args.study_dirs, args.metric, args.mode, args.out)
        except MCLError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(text)
        print("plots:\n  " + "\n  ".join(str(p) for p in plots))
        return 0
    try:
        overrides = list(args.overrides)
        if getattr(args, "output", None):
            overrides.append(f"output_dir={args.output}")
        cfg = load_config(resolve_config_path(args.config), overrides)
        if args.command == "validate":
            import yaml

            from mcl_ray.plan.from_config import check_data_sizes, data_sizes, resolved_dump

            print(yaml.safe_dump(resolved_dump(cfg), sort_keys=False), end="")
            sizes = data_sizes(cfg)
            print("# images: " + "; ".join(
                f"{name} ({s['split']}): {s['used'] if s['used'] is not None else '?'} ({s['note']})" for name, s in sizes.items()
            ))
            check_data_sizes(cfg, sizes)
            return 0
        from mcl_ray.plan.results import results_table

        try:
            if args.local:
                from mcl_ray.plan.local import run_local

                result = run_local(cfg, progress=not args.quiet)
            else:
                from mcl_ray.engine import run_mcl

                result = run_mcl(cfg, address=args.address, progress=not args.quiet)
        except KeyboardInterrupt:
            print(interrupted_message(cfg, sys.argv[1:] if argv is None else argv), file=sys.stderr)
            return 130
        print(results_table(result))
        print(f"results: {result.run_dir}")
        return 0
    except MCLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
