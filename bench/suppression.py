"""Feature suppression on Trifeature: does MCL recover the attributes a 1-stage contrastive run ignores?

Side by side, for each seed:
  * baseline-E  : 1 stage, E epochs (the same epochs as one MCL stage). This is exactly MCL's stage 1 (same
                  config, seed and data; the trainer is deterministic), so it is read from the MCL run.
  * baseline-SE : 1 stage, S*E epochs (the same total compute as all MCL stages), its own run.
  * MCL         : S stages of E epochs; each stage alone and the integrated (concatenated) representation.
  * ensemble    : control, S independently seeded 1-stage runs of E epochs integrated the same way (no
                  grouping), so MCL's negatives are not credited with what concatenating models gives anyway;
  * IFM         : control, baseline-SE with implicit feature modification mixed into its loss (the paper's
                  epsilon 0.1, alpha 1), the cheap competing fix for feature suppression.
Per attribute (shape, texture, colour) it reports kNN and linear-probe accuracy on held-out images, averaged
over seeds, writes bench/results/suppression.json and a PNG plot, and checks the targets:
  * on the attribute the same-epochs baseline suppresses most, integrated MCL gains >= 5 points;
  * no attribute loses more than 2 points;
  * against the equal-compute baseline: reported (goal: match or beat).

    python -m bench.suppression            # full run, 3 seeds (about 40 min on a 2-core CPU)
    python -m bench.suppression --quick    # smoke run (a minute)
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS_DIR, format_table, write_result
from mcl_ray.config.schema import ExperimentConfig
from mcl_ray.data.experiment_data import load_experiment_data
from mcl_ray.mcl.integration import integrate
from mcl_ray.plan.evaluation import evaluate
from mcl_ray.plan.from_config import data_spec, eval_spec, load_config
from mcl_ray.plan.arms import ifm_config
from mcl_ray.plan.local import run_local

ATTRIBUTES = ("shape", "texture", "color")
METRICS = ("knn", "linear")


def make_config(args: argparse.Namespace, seed: int, stages: int, epochs: int, name: str) -> ExperimentConfig:
    overrides = [
        f"name={name}",
        f"seed={seed}",
        f"output_dir={args.workdir}",
        f"data.root={args.data_root}",
        f"data.train_size={args.train_size}",
        f"data.test_size={args.test_size}",
        f"data.image_size={args.image_size}",
        f"model.backbone={args.backbone}",
        f"model.cifar_stem={args.cifar_stem}",
        f"mcl.stages={stages}",
        f"mcl.clusters={args.clusters}",
        f"train.epochs={epochs}",
        f"train.batch_size={args.batch_size}",
        f"train.lr={args.lr}",
        f"objective.temperature={args.temperature}",
        f"eval.online_knn_every={args.online_every}",
        f"eval.online_knn_samples={args.online_samples}",
        "train.log_every=100000",
    ]
    return load_config(args.config, overrides)


def accuracy_table(evals: dict[str, dict[str, float]]) -> dict[str, float]:
    return {f"{a}/{m}": evals[a][m] for a in ATTRIBUTES for m in METRICS if a in evals and m in evals[a]}


def stage_features(record, cfg: ExperimentConfig) -> tuple[np.ndarray, np.ndarray]:
    """Probe and test features of a finished stage, as the run stored them."""
    stage_dir = Path(record.keys["stage_uri"])
    key = cfg.mcl.integrate
    return np.load(stage_dir / f"probe_{key}.npy"), np.load(stage_dir / f"test_{key}.npy")


def run_ensemble(args: argparse.Namespace, seed: int, mcl_cfg: ExperimentConfig, mcl, data) -> list[dict[str, float]]:
    """Control: S independently seeded 1-stage runs (E epochs each, no grouping), integrated the same way.

    Separates what MCL's feature-aware negatives add from what concatenating several models adds. The
    first member is MCL's own stage 1; the others differ only in the training seed.
    """
    probe_parts, test_parts = [], []
    first = stage_features(mcl.stages[0], mcl_cfg)
    probe_parts.append(first[0])
    test_parts.append(first[1])
    tables = []
    for member in range(1, args.stages):
        cfg = make_config(args, seed + 1000 * member, 1, args.epochs, f"ensemble-seed{seed}-member{member}")
        member_run = run_local(cfg, data=data, progress=args.verbose)
        probe, test = stage_features(member_run.stages[0], cfg)
        probe_parts.append(probe)
        test_parts.append(test)
        tables.append(accuracy_table(evaluate(eval_spec(mcl_cfg), integrate(probe_parts), integrate(test_parts), data)))
    return tables


def run_seed(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    mcl_cfg = make_config(args, seed, args.stages, args.epochs, f"mcl-seed{seed}")
    data = load_experiment_data(data_spec(mcl_cfg))
    t0 = time.perf_counter()
    mcl = run_local(mcl_cfg, data=data, progress=args.verbose)
    mcl_s = time.perf_counter() - t0
    long_cfg = make_config(args, seed, 1, args.stages * args.epochs, f"baseline-long-seed{seed}")
    t0 = time.perf_counter()
    long = run_local(long_cfg, data=data, progress=args.verbose)
    long_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ifm = run_local(ifm_config(mcl_cfg), data=data, progress=args.verbose)  # the long run with IFM in its loss
    ifm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ensemble = run_ensemble(args, seed, mcl_cfg, mcl, data)
    ensemble_s = time.perf_counter() - t0
    out = {
        "seed": seed,
        "baseline_same_epochs": accuracy_table(mcl.stages[0].stage_eval),
        "baseline_equal_compute": accuracy_table(long.stages[0].stage_eval),
        "ifm_equal_compute": accuracy_table(ifm.stages[0].stage_eval),
        "mcl_stage": [accuracy_table(s.stage_eval) for s in mcl.stages],
        "mcl_integrated": [accuracy_table(s.integrated_eval) for s in mcl.stages],
        "ensemble_integrated": ensemble,
        "cluster_nmi": [
            {a: s.cluster["groups"]["attributes"][a]["nmi"] for a in ATTRIBUTES} if s.cluster else None
            for s in mcl.stages
        ],
        "baseline_equal_compute_curve": long.stages[0].history,
        "mcl_curves": [s.history for s in mcl.stages],
        "seconds": {"mcl": mcl_s, "baseline_equal_compute": long_s, "ifm": ifm_s, "ensemble": ensemble_s},
    }
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def aggregate(per_seed: list[dict[str, Any]], stages: int) -> dict[str, dict[str, list[float]]]:
    """{row name: {attr/metric: [mean, std]}} over seeds."""
    rows: dict[str, list[dict[str, float]]] = {
        f"baseline {1}x": [r["baseline_same_epochs"] for r in per_seed],
        f"baseline {stages}x (equal compute)": [r["baseline_equal_compute"] for r in per_seed],
    }
    if all("ifm_equal_compute" in r for r in per_seed):
        rows[f"IFM {stages}x (equal compute, control)"] = [r["ifm_equal_compute"] for r in per_seed]
    for s in range(stages):
        rows[f"MCL stage {s + 1} alone"] = [r["mcl_stage"][s] for r in per_seed]
        rows[f"MCL integrated 1..{s + 1}"] = [r["mcl_integrated"][s] for r in per_seed]
    for s in range(1, stages):
        rows[f"ensemble of {s + 1} 1-stage runs"] = [r["ensemble_integrated"][s - 1] for r in per_seed]
    return {name: {k: list(mean_std([t[k] for t in tables])) for k in tables[0]} for name, tables in rows.items()}


def check_targets(summary: dict, stages: int, metric: str) -> dict[str, Any]:
    base = summary["baseline 1x"]
    equal = summary[f"baseline {stages}x (equal compute)"]
    final = summary[f"MCL integrated 1..{stages}"]
    ensemble = summary.get(f"ensemble of {stages} 1-stage runs")
    ifm = summary.get(f"IFM {stages}x (equal compute, control)")
    suppressed = min(ATTRIBUTES, key=lambda a: base[f"{a}/{metric}"][0])
    gains = {a: 100 * (final[f"{a}/{metric}"][0] - base[f"{a}/{metric}"][0]) for a in ATTRIBUTES}
    vs_equal = {a: 100 * (final[f"{a}/{metric}"][0] - equal[f"{a}/{metric}"][0]) for a in ATTRIBUTES}
    vs_ensemble = (
        {a: 100 * (final[f"{a}/{metric}"][0] - ensemble[f"{a}/{metric}"][0]) for a in ATTRIBUTES} if ensemble else {}
    )
    return {
        "metric": metric,
        "suppressed_attribute": suppressed,
        "gain_points_vs_same_epochs": gains,
        "gain_points_vs_equal_compute": vs_equal,
        "gain_points_vs_ensemble_control": vs_ensemble,
        "gain_points_vs_ifm_control": (
            {a: 100 * (final[f"{a}/{metric}"][0] - ifm[f"{a}/{metric}"][0]) for a in ATTRIBUTES} if ifm else {}),
        "target_suppressed_gain_ge_5": gains[suppressed] >= 5.0,
        "target_no_loss_gt_2": all(g >= -2.0 for g in gains.values()),
        "matches_or_beats_equal_compute_on_suppressed": vs_equal[suppressed] >= 0.0,
        "no_attribute_below_equal_compute_by_gt_2": all(g >= -2.0 for g in vs_equal.values()),
    }


def plot(summary: dict, stages: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(METRICS), len(ATTRIBUTES), figsize=(4 * len(ATTRIBUTES), 3.2 * len(METRICS)))
    xs = np.arange(1, stages + 1)
    for i, metric in enumerate(METRICS):
        for j, attr in enumerate(ATTRIBUTES):
            ax = axes[i, j]
            key = f"{attr}/{metric}"
            for prefix, style in (("MCL integrated 1..", "o-"), ("MCL stage ", "s--")):
                names = [f"{prefix}{s}" + ("" if prefix.startswith("MCL integrated") else " alone") for s in xs]
                mean = np.array([summary[n][key][0] for n in names])
                std = np.array([summary[n][key][1] for n in names])
                label = "MCL integrated" if "integrated" in prefix else "MCL stage alone"
                ax.errorbar(xs, mean, yerr=std, fmt=style, capsize=3, label=label)
            for name, color in (("baseline 1x", "grey"), (f"baseline {stages}x (equal compute)", "black")):
                ax.axhline(summary[name][key][0], color=color, linestyle=":", label=name)
            ens = [summary[f"ensemble of {s} 1-stage runs"][key] for s in xs[1:]]
            ax.errorbar(xs[1:], [e[0] for e in ens], yerr=[e[1] for e in ens], fmt="^-.", color="green", capsize=3,
                        label="ensemble of 1-stage runs (control)")
            ax.set_title(f"{attr} — {metric}")
            ax.set_xlabel("stage")
            ax.set_xticks(xs)
            ax.set_ylabel("accuracy")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="base YAML (default: built-in defaults)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--stages", type=int, default=3)
    p.add_argument("--epochs", type=int, default=20, help="epochs per MCL stage (E)")
    p.add_argument("--clusters", type=int, default=10)
    p.add_argument("--backbone", default="test_resnet", help="timm name; test_resnet is a small timm ResNet that fits a 2-core CPU")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--cifar-stem", default="false", choices=["true", "false", "auto"],
                   help="ResNet CIFAR stem (16x the compute at 32 px; off so the benchmark fits a 2-core CPU)")
    p.add_argument("--train-size", type=int, default=5000)
    p.add_argument("--test-size", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--online-every", type=int, default=4, help="epochs between online kNN checks (plateau curves)")
    p.add_argument("--online-samples", type=int, default=1000)
    p.add_argument("--data-root", default="~/.cache/mcl-ray/data")
    p.add_argument("--workdir", default="runs/bench-suppression")
    p.add_argument("--name", default="suppression", help="result name under bench/results/")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (not a result)")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.train_size, args.test_size = [0], 1, 600, 300
        args.backbone, args.name = "test_resnet", "suppression-quick"
        args.workdir = f"{args.workdir}-quick"  # a run name holds one experiment: keep the smoke runs apart
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("mcl_ray").setLevel(logging.INFO if args.verbose else logging.WARNING)

    t0 = time.perf_counter()
    per_seed = []
    for seed in args.seeds:
        print(f"seed {seed}: MCL {args.stages}x{args.epochs} epochs, then baseline {args.stages * args.epochs} epochs", flush=True)
        per_seed.append(run_seed(args, seed))
    summary = aggregate(per_seed, args.stages)
    targets = {m: check_targets(summary, args.stages, m) for m in METRICS}
    rows = [{"representation": name, **{k: f"{v[0]:.3f}±{v[1]:.3f}" for k, v in cols.items()}} for name, cols in summary.items()]
    print(format_table(rows))
    for metric, t in targets.items():
        print(f"[{metric}] suppressed attribute: {t['suppressed_attribute']}; gain vs same-epochs baseline "
              f"(points): {', '.join(f'{a} {g:+.1f}' for a, g in t['gain_points_vs_same_epochs'].items())}; "
              f"vs equal-compute: {', '.join(f'{a} {g:+.1f}' for a, g in t['gain_points_vs_equal_compute'].items())}; "
              f"vs ensemble control: {', '.join(f'{a} {g:+.1f}' for a, g in t['gain_points_vs_ensemble_control'].items())}; "
              f"vs IFM control: {', '.join(f'{a} {g:+.1f}' for a, g in t['gain_points_vs_ifm_control'].items())}")
    png = RESULTS_DIR / f"{args.name}.png"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    plot(summary, args.stages, png)
    settings = {k: v for k, v in vars(args).items() if k not in ("verbose",)}
    path = write_result(args.name, {
        "settings": settings,
        "summary_mean_std": summary,
        "targets": targets,
        "per_seed": per_seed,
        "plot": png.name,
        "total_seconds": time.perf_counter() - t0,
    })
    print(f"wrote {path} and {png} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
