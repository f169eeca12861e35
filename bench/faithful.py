"""Faithful MCL: what each candidate fix changes, per stage, on both suppression benchmarks, over seeds.

Issue 15 found later MCL stages weaker than stage 1, groups with a single member, and clusters aligned with the
easy attributes. This benchmark measures the candidate fixes one at a time against the default, all from one
shared stage 1 per (benchmark, seed), each a 3-stage MCL run (K=10, so up to 100 groups in stage 3):

  * default           : mcl.sampling=random_batches (ordinary batches, group mask in the loss), cluster the projector;
  * group_batches     : the official sampler (each batch from one group: BatchNorm sees one group at a time);
  * min_group_size=10 : tiny-group policy (groups under 10 samples join the nearest sibling);
  * with_negatives    : the loss averages only over anchors that have a negative (objective.anchors);
  * cluster backbone  : cluster the backbone output instead of the projector;
  * group norm        : model.norm=group, every BatchNorm a GroupNorm (normalisation that does not see the batch;
                        its own stage 1, so compare its stage gains, not only its scores);
  * group norm, group_batches : the same with the official group-pure batches (where BN sees one group at a time).

Reported per variant and stage: the stage alone and integrated (kNN and linear probe per attribute), the groups
(count, singletons, smallest), the fraction of anchors with < 10 negatives, and the groups' NMI with each
attribute; then each variant's integrated result minus the default's, paired by seed.

    python -m bench.faithful              # Trifeature + RandBit (8 bits), 3 seeds (about 25 min, 2-core CPU)
    python -m bench.faithful --quick      # smoke run (not a result)
    python -m bench.faithful --variants "group norm" "group norm, group_batches" --name faithful_norm
                                          # some variants (the default always runs; its stages are reused if cached)
"""

from __future__ import annotations

import argparse
import re
import logging
import time
from typing import Any

import numpy as np

from bench.common import add_run_args, format_table, run_overrides, write_result
from mcl_ray.data.experiment_data import load_experiment_data
from mcl_ray.plan.from_config import data_spec, load_config
from mcl_ray.plan.local import run_local

CONTENT = ("shape", "texture", "color")
VARIANTS = {
    "default": [],
    "group_batches": ["mcl.sampling=group_batches"],
    "min_group_size=10": ["mcl.min_group_size=10"],
    "with_negatives": ["objective.anchors=with_negatives"],
    "cluster backbone": ["mcl.cluster_on=backbone"],
    "group norm": ["model.norm=group"],
    "group norm, group_batches": ["model.norm=group", "mcl.sampling=group_batches"],
}
BENCHMARKS = {"trifeature": ["data.name=trifeature"], "randbit8": ["data.name=randbit", "data.bits=8"]}


def experiment(args: argparse.Namespace, bench: str, seed: int, variant: str):
    return load_config(args.config, [
        *BENCHMARKS[bench], *VARIANTS[variant], f"name={bench}-seed{seed}-{re.sub(r'[^A-Za-z0-9_=.-]+', '_', variant)}",
        f"seed={seed}", *run_overrides(args),
    ])


def scores(evaluation: dict[str, dict[str, float]]) -> dict[str, float]:
    return {f"{a}/{m}": v for a, ms in evaluation.items() if a in CONTENT for m, v in ms.items()}


def group_summary(cluster: dict[str, Any] | None) -> dict[str, Any] | None:
    if not cluster:
        return None
    g = cluster["groups"]
    return {"groups": g["num_groups"], "singletons": g["singletons"], "smallest": g["sizes"]["min"],
            "nmi": {a: round(v["nmi"], 4) for a, v in g.get("attributes", {}).items()}}


def run_combo(args: argparse.Namespace, bench: str, seed: int) -> dict[str, Any]:
    data = load_experiment_data(data_spec(experiment(args, bench, seed, "default")))
    out: dict[str, Any] = {"bench": bench, "seed": seed, "variants": {}}
    for variant in args.variants:
        t0 = time.perf_counter()
        result = run_local(experiment(args, bench, seed, variant), data=data, progress=args.verbose, tensorboard=False)
        out["variants"][variant] = {
            "seconds": time.perf_counter() - t0,
            "stage_alone": [scores(s.stage_eval) for s in result.stages],
            "integrated": [scores(s.integrated_eval) for s in result.stages],
            "few_negatives_fraction": [s.history[-1].get("few_negatives_fraction") for s in result.stages],
            "groups_after": [group_summary(s.cluster) for s in result.stages],
            "reused": [s.reused for s in result.stages],
        }
        print(f"  {bench} seed {seed} {variant}: {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def mean_std(values: list[float]) -> list[float]:
    arr = np.asarray(values, float)
    return [float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0]


def summarise(results: list[dict[str, Any]], stages: int) -> dict[str, Any]:
    """Per variant and stage: mean +- std of each score; the last stage's integrated difference to the default;
    MCL's gain (last stage integrated minus its own stage 1) and that gain minus the default's, paired by seed."""
    table: dict[str, Any] = {}
    for variant in results[0]["variants"]:
        runs = [r["variants"][variant] for r in results]
        table[variant] = {
            kind: [{k: mean_std([run[kind][s][k] for run in runs]) for k in runs[0][kind][s]} for s in range(stages)]
            for kind in ("stage_alone", "integrated")
        }
        table[variant]["few_negatives_fraction"] = [
            mean_std([run["few_negatives_fraction"][s] or 0.0 for run in runs]) for s in range(stages)]
        table[variant]["vs_default_points"] = {
            k: mean_std([100 * (run["integrated"][-1][k] - base["variants"]["default"]["integrated"][-1][k])
                         for run, base in zip(runs, results)])
            for k in runs[0]["integrated"][-1]
        }
        gain = lambda run, k: 100 * (run["integrated"][-1][k] - run["stage_alone"][0][k])  # noqa: E731
        table[variant]["mcl_gain_points"] = {k: mean_std([gain(run, k) for run in runs]) for k in runs[0]["integrated"][-1]}
        table[variant]["gain_vs_default_points"] = {
            k: mean_std([gain(run, k) - gain(base["variants"]["default"], k) for run, base in zip(runs, results)])
            for k in runs[0]["integrated"][-1]
        }
    return table


def print_tables(bench: str, summary: dict[str, Any], stages: int, seeds: int) -> None:
    print(f"\n{bench}: {seeds} seeds, mean ± std; stage s alone / integrated 1..s")
    rows = []
    for variant, t in summary.items():
        for s in range(stages):
            for kind in ("stage_alone", "integrated"):
                if kind == "integrated" and s == 0:
                    continue
                rows.append({"variant": variant, "stage": s + 1, "repr": "alone" if kind == "stage_alone" else "integrated",
                             **{k: f"{v[0]:.3f}±{v[1]:.3f}" for k, v in t[kind][s].items() if k.endswith("linear")},
                             "few_neg": f"{t['few_negatives_fraction'][s][0]:.2f}"})
    print(format_table(rows))
    for title, field in (("integrated (last stage) minus default", "vs_default_points"),
                         ("MCL's gain over its own stage 1, minus the default's", "gain_vs_default_points")):
        print(f"{title}, points (linear / knn):")
        for variant, t in summary.items():
            if variant == "default":
                continue
            d = t[field]
            print(f"  {variant:26s} " + "  ".join(f"{a} {d[f'{a}/linear'][0]:+.1f}±{d[f'{a}/linear'][1]:.1f} / "
                                                  f"{d[f'{a}/knn'][0]:+.1f}" for a in CONTENT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS), choices=list(BENCHMARKS))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                   help="variants to run (the default always runs: every comparison is paired with it)")
    add_run_args(p, seeds=[0, 1, 2], stages=3, epochs=10, train_size=2000, workdir="runs/bench-faithful", name="faithful")
    args = p.parse_args(argv)
    args.variants = ["default", *(v for v in args.variants if v != "default")]
    if args.quick:
        args.seeds, args.epochs, args.train_size, args.test_size, args.name = [0], 1, 400, 200, "faithful-quick"
        args.workdir = f"{args.workdir}-quick"
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("mcl_ray").setLevel(logging.INFO if args.verbose else logging.WARNING)

    t0 = time.perf_counter()
    per_combo = []
    for bench in args.benchmarks:
        for seed in args.seeds:
            print(f"{bench}, seed {seed}: {time.perf_counter() - t0:.0f} s elapsed", flush=True)
            per_combo.append(run_combo(args, bench, seed))
    summaries = {}
    for bench in args.benchmarks:
        results = [r for r in per_combo if r["bench"] == bench]
        summaries[bench] = summarise(results, args.stages)
        print_tables(bench, summaries[bench], args.stages, len(results))
    settings = {k: v for k, v in vars(args).items() if k != "verbose"}
    path = write_result(args.name, {
        "settings": settings, "variants": {k: VARIANTS[k] for k in args.variants}, "summary_mean_std": summaries,
        "per_combo": per_combo, "total_seconds": time.perf_counter() - t0,
    })
    print(f"wrote {path} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
