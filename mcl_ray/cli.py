"""`mcl-ray` command line: run an experiment, or check a config without running it."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import resources
from pathlib import Path

from mcl_ray.errors import MCLError


def builtin_config(name: str) -> Path:
    return Path(str(resources.files("mcl_ray") / "configs" / f"{name}.yaml"))


def resolve_config_path(value: str | None) -> Path | None:
    """A file path, or the name of a bundled config (e.g. `trifeature`)."""
    if value is None:
        return None
    path = Path(value)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    candidate = builtin_config(value)
    return candidate if candidate.exists() else path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcl-ray", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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

            from mcl_ray.plan.from_config import resolved_dump

            print(yaml.safe_dump(resolved_dump(cfg), sort_keys=False), end="")
            return 0
        from mcl_ray.plan.results import results_table

        if args.local:
            from mcl_ray.plan.local import run_local

            result = run_local(cfg, progress=not args.quiet)
        else:
            from mcl_ray.engine import run_mcl

            result = run_mcl(cfg, address=args.address, progress=not args.quiet)
        print(results_table(result))
        print(f"results: {result.run_dir}")
        return 0
    except MCLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
