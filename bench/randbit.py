"""Feature suppression under a competing shortcut (RandBit) and MCL's negative-sampling policy, side by side
with the controls, over seeds.

For each number of random bits n (0 = plain Trifeature) and each seed, all from one shared stage 1:
  * baseline       : 1 stage of E epochs (MCL's stage 1);
  * MCL group      : S stages, each stage's batches drawn from one group at a time (the official sampler);
  * MCL random     : S stages, ordinary random batches with the same group mask in the loss;
  * ensemble       : control, S independently seeded 1-stage runs integrated like MCL's stages;
  * long           : control, one run of S * E epochs;
  * ifm            : control, the long run with implicit feature modification mixed into its loss.
Per attribute it reports kNN and linear-probe accuracy on held-out images (mean +- std over seeds), and per n
the verdict the issue asks for: on the content attribute the baseline suppresses most, does integrated MCL
beat the better control by >= 3 points while losing <= 1 point on the other content attributes?

    python -m bench.randbit                  # bits 0, 4 and 8, 3 seeds (about 30 min on a 2-core CPU)
    python -m bench.randbit --quick          # smoke run (a few minutes; not a result)
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS_DIR, add_run_args, format_table, run_overrides, write_result
from mcl_ray.data.experiment_data import load_experiment_data
from mcl_ray.plan.arms import arm_records
from mcl_ray.plan.from_config import data_spec, load_config
from mcl_ray.plan.local import run_local

CONTENT = ("shape", "texture", "color")
METRICS = ("knn", "linear")
POLICIES = ("group_batches", "random_batches")
CONTROLS = ("ensemble", "long", "ifm")


def experiment(args: argparse.Namespace, bits: int, seed: int, policy: str, name: str):
    data = ["data.name=randbit", f"data.bits={bits}"] if bits else ["data.name=trifeature"]
    return load_config(args.config, [*data, f"name={name}", f"seed={seed}", f"mcl.sampling={policy}", *run_overrides(args)])


def scores(evaluation: dict[str, dict[str, float]]) -> dict[str, float]:
    return {f"{a}/{m}": v for a, ms in evaluation.items() for m, v in ms.items()}


def run_combo(args: argparse.Namespace, bits: int, seed: int) -> dict[str, Any]:
    """Every arm for one (bits, seed); stage 1 is trained once and reused by all of them."""
    base = experiment(args, bits, seed, "group_batches", f"bits{bits}-seed{seed}-mcl-group_batches")
    data = load_experiment_data(data_spec(base))
    run = lambda c: run_local(c, data=data, progress=args.verbose, tensorboard=False).stages  # noqa: E731
    out: dict[str, Any] = {"bits": bits, "seed": seed, "seconds": {}}
    for policy in POLICIES:
        cfg = experiment(args, bits, seed, policy, f"bits{bits}-seed{seed}-mcl-{policy}")
        t0 = time.perf_counter()
        records = list(arm_records(cfg, "mcl", run, data))
        out["seconds"][f"mcl_{policy}"] = time.perf_counter() - t0
        out[f"mcl_{policy}"] = {
            "stage_alone": [scores(r.stage_eval) for r in records],
            "integrated": [scores(r.integrated_eval) for r in records],
            "few_negatives_fraction": [r.history[-1].get("few_negatives_fraction") for r in records],
            "cluster_nmi": [r.cluster["groups"]["attributes"] if r.cluster else None for r in records],
        }
    out["baseline"] = out["mcl_group_batches"]["stage_alone"][0]
    for arm in CONTROLS:
        t0 = time.perf_counter()
        records = list(arm_records(base, arm, run, data))
        out["seconds"][arm] = time.perf_counter() - t0
        out[arm] = scores(records[-1].integrated_eval)
    return out


def mean_std(values: list[float]) -> list[float]:
    arr = np.asarray(values, float)
    return [float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0]


def rows_of(results: list[dict[str, Any]], stages: int) -> dict[str, list[dict[str, float]]]:
    rows = {"baseline (1 stage)": [r["baseline"] for r in results]}
    for policy in POLICIES:
        rows[f"MCL {policy}, stage {stages} alone"] = [r[f"mcl_{policy}"]["stage_alone"][-1] for r in results]
        rows[f"MCL {policy}, integrated 1..{stages}"] = [r[f"mcl_{policy}"]["integrated"][-1] for r in results]
    rows[f"ensemble of {stages} (control)"] = [r["ensemble"] for r in results]
    rows[f"long run, {stages}x epochs (control)"] = [r["long"] for r in results]
    rows[f"IFM long run, {stages}x epochs (control)"] = [r["ifm"] for r in results]
    return rows


def verdict(results: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """Per policy: paired (by seed) difference to the better control on each content attribute."""
    base = {a: np.mean([r["baseline"][f"{a}/{metric}"] for r in results]) for a in CONTENT}
    suppressed = min(CONTENT, key=base.get)
    controls = {c: {a: np.mean([r[c][f"{a}/{metric}"] for r in results]) for a in CONTENT} for c in CONTROLS}
    best = {a: max(controls, key=lambda c: controls[c][a]) for a in CONTENT}
    out: dict[str, Any] = {"metric": metric, "suppressed_attribute": suppressed, "best_control": best, "policies": {}}
    for policy in POLICIES:
        diffs = {a: mean_std([100 * (r[f"mcl_{policy}"]["integrated"][-1][f"{a}/{metric}"] - r[best[a]][f"{a}/{metric}"])
                              for r in results]) for a in CONTENT}
        others = [diffs[a][0] for a in CONTENT if a != suppressed]
        out["policies"][policy] = {
            "points_vs_best_control": diffs,
            "target_met": diffs[suppressed][0] >= 3.0 and min(others) >= -1.0,
        }
    return out


def plot(summary: dict[int, dict[str, dict[str, list[float]]]], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bits_values = sorted(summary)
    fig, axes = plt.subplots(1, len(CONTENT), figsize=(4.2 * len(CONTENT), 3.6), sharey=False)
    for ax, attr in zip(axes, CONTENT):
        names = [n for n in summary[bits_values[0]] if "alone" not in n]
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            means = [summary[b][name][f"{attr}/{metric}"][0] for b in bits_values]
            stds = [summary[b][name][f"{attr}/{metric}"][1] for b in bits_values]
            ax.bar(np.arange(len(bits_values)) + i * width, means, width, yerr=stds, capsize=2, label=name)
        ax.set_xticks(np.arange(len(bits_values)) + 0.4 - width / 2, [f"{b} bits" for b in bits_values])
        ax.set_title(f"{attr} ({metric} probe)")
        ax.set_ylabel("held-out accuracy")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bits", type=int, nargs="+", default=[0, 4, 8], help="random bits per image (0: plain Trifeature)")
    add_run_args(p, seeds=[0, 1, 2], stages=2, epochs=10, train_size=2000, workdir="runs/bench-randbit", name="randbit")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.train_size, args.test_size, args.name = [0], 1, 400, 200, "randbit-quick"
        args.workdir = f"{args.workdir}-quick"
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("mcl_ray").setLevel(logging.INFO if args.verbose else logging.WARNING)

    t0 = time.perf_counter()
    per_combo = []
    for bits in args.bits:
        for seed in args.seeds:
            print(f"bits {bits}, seed {seed}: {time.perf_counter() - t0:.0f} s elapsed", flush=True)
            per_combo.append(run_combo(args, bits, seed))
    summary: dict[int, dict[str, dict[str, list[float]]]] = {}
    verdicts: dict[int, dict[str, Any]] = {}
    for bits in args.bits:
        results = [r for r in per_combo if r["bits"] == bits]
        rows = rows_of(results, args.stages)
        summary[bits] = {name: {k: mean_std([t[k] for t in tables]) for k in tables[0]} for name, tables in rows.items()}
        verdicts[bits] = {m: verdict(results, m) for m in METRICS}
        print(f"\n{bits} random bits ({'plain Trifeature' if not bits else 'RandBit'}), {len(results)} seeds")
        print(format_table([{"representation": name, **{k: f"{v[0]:.3f}±{v[1]:.3f}" for k, v in cols.items()}}
                            for name, cols in summary[bits].items()]))
        for metric, v in verdicts[bits].items():
            parts = [f"{policy}: " + ", ".join(f"{a} {d[0]:+.1f}±{d[1]:.1f}" for a, d in pv["points_vs_best_control"].items())
                     + (" (target met)" if pv["target_met"] else " (target not met)")
                     for policy, pv in v["policies"].items()]
            print(f"[{metric}] suppressed: {v['suppressed_attribute']}; integrated MCL vs the better control, points: "
                  + "; ".join(parts))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    png = RESULTS_DIR / f"{args.name}.png"
    plot(summary, "linear", png)
    settings = {k: v for k, v in vars(args).items() if k != "verbose"}
    path = write_result(args.name, {
        "settings": settings, "summary_mean_std": {str(b): s for b, s in summary.items()},
        "verdict": {str(b): v for b, v in verdicts.items()}, "per_combo": per_combo, "plot": png.name,
        "total_seconds": time.perf_counter() - t0,
    })
    print(f"wrote {path} and {png} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
