"""The related methods as MCL's base, on Trifeature: which bases reduce suppression alone, and does MCL add on top?

For each base (SimCLR, MoCo v2, SimCLR+DimCL, SimCLR+IFM, SPCL, MetAug) and seed: one 3-stage MCL run with that
base as every stage's objective. Its stage 1 is exactly the 1-stage run of the base (same config, seed and data;
the trainer is deterministic), so "1 stage" rows are read from it; "MCL" rows are the integrated 1..3
representation. The control: an ensemble of 3 ordinary 1-stage runs of the same base (MCL's stage 1 and two
more seeds), integrated the same way, so concatenating models is not credited to MCL. Per attribute: kNN and
linear-probe accuracy on held-out images, mean +- std over seeds, MCL's gain over its own base and over the
ensemble, in points (paired per seed).

Step cost: one training step (augment, forward, backward, optimizer step, after_step) of each base on the same
batch and model, relative to SimCLR in the same run (SPCL's per-epoch prototype pass is timed separately: it runs
once per epoch, not per step).

    python -m bench.methods             # full run, 2 seeds (about 20 min on a 2-core CPU)
    python -m bench.methods --quick     # smoke run (not a result)
    python -m bench.methods --step-only --backbone resnet18 --name methods_steps_resnet18
                                        # step costs only, on another backbone (no training runs)
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from typing import Any

import numpy as np
import torch

from bench.common import format_table, write_result
from mcl_ray.data.experiment_data import load_experiment_data
from mcl_ray.plan.from_config import data_spec, load_config
from mcl_ray.plan.local import run_local

ATTRIBUTES = ("shape", "texture", "color")
METRICS = ("knn", "linear")
BASES: dict[str, list[str]] = {
    "simclr": ["objective.name=simclr"],
    "moco": ["objective.name=moco", "objective.queue_size=1024"],  # queue below the 2000 training images
    "simclr+dimcl": ["objective.name=simclr", "objective.regularizers=[{name: dimcl}]"],
    "simclr+ifm": ["objective.name=simclr", "objective.regularizers=[{name: ifm}]"],
    "spcl": ["objective.name=spcl", "objective.prototypes=50"],  # the paper's 512 is for ImageNet; 40 images each here
    "metaug": ["objective.name=metaug"],
}
# step cost only: MetAug's generators (hidden 2048, the paper's) dominate a small encoder's step; MoCo v2 as
# published (asymmetric: one query and one key forward per image) beside the symmetric default
STEP_ONLY: dict[str, list[str]] = {
    "metaug hidden=512": ["objective.name=metaug", "objective.generator_hidden=512"],
    "moco asymmetric": [*BASES["moco"], "objective.symmetric=false"],
}


def make_config(args: argparse.Namespace, base: str, seed: int, stages: int | None = None, name: str | None = None):
    return load_config(None, [
        f"name=methods/{base.replace(' ', '_')}/{name or f'seed{seed}'}", f"seed={seed}", f"output_dir={args.workdir}", f"data.root={args.data_root}",
        "data.name=trifeature", f"data.train_size={args.train_size}", f"data.test_size={args.test_size}",
        f"data.image_size={args.image_size}", f"model.backbone={args.backbone}", "model.cifar_stem=false",
        "model.proj_hidden_dim=256", "model.proj_dim=64",
        f"mcl.stages={stages or args.stages}", f"mcl.clusters={args.clusters}", f"train.epochs={args.epochs}",
        f"train.batch_size={args.batch_size}", f"train.lr={args.lr}", f"objective.temperature={args.temperature}",
        "eval.online_knn_every=0", "train.log_every=100000", *{**BASES, **STEP_ONLY}[base],
    ])


def scores(evals: dict[str, dict[str, float]]) -> dict[str, float]:
    return {f"{a}/{m}": float(evals[a][m]) for a in ATTRIBUTES for m in METRICS if a in evals and m in evals[a]}


def ensemble_scores(args: argparse.Namespace, base: str, seed: int, mcl_cfg, mcl_run, data) -> dict[str, float]:
    """The control: MCL's stage 1 plus S - 1 more 1-stage runs of the same base with other seeds (seed + 1000 m,
    as the study's ensemble arm), integrated exactly like MCL's stages."""
    from bench.suppression import stage_features
    from mcl_ray.mcl.integration import integrate
    from mcl_ray.plan.evaluation import evaluate
    from mcl_ray.plan.from_config import eval_spec

    parts = [stage_features(mcl_run.stages[0], mcl_cfg)]
    for member in range(1, args.stages):
        cfg = make_config(args, base, seed + 1000 * member, stages=1, name=f"seed{seed}-member{member}")
        parts.append(stage_features(run_local(cfg, data=data, progress=args.verbose).stages[0], cfg))
    return scores(evaluate(eval_spec(mcl_cfg), integrate([p for p, _ in parts]), integrate([t for _, t in parts]), data))


def run_base(args: argparse.Namespace, base: str, seed: int, data) -> dict[str, Any]:
    cfg = make_config(args, base, seed)
    t0 = time.perf_counter()
    run = run_local(cfg, data=data, progress=args.verbose)
    mcl_s = time.perf_counter() - t0
    ensemble = ensemble_scores(args, base, seed, cfg, run, data)
    return {
        "base": base, "seed": seed, "seconds": mcl_s, "ensemble_seconds": time.perf_counter() - t0 - mcl_s,
        "one_stage": scores(run.stages[0].integrated_eval),
        "mcl": scores(run.stages[-1].integrated_eval),
        "ensemble": ensemble,
        "stage_alone": [scores(s.stage_eval) for s in run.stages],
        "loss_terms": sorted({k for s in run.stages for h in s.history for k in h if k.startswith("loss/")}),
    }


def step_costs(args: argparse.Namespace, data) -> list[dict[str, Any]]:
    """Median step time of each base on the same batches and model, and its ratio to SimCLR's. The bases take turns
    step by step (interleaved, so a slow spell of the machine does not land on one base alone)."""
    from mcl_ray.data.augment import BatchAugment
    from mcl_ray.data.base import image_rows
    from mcl_ray.models.encoder import build_encoder
    from mcl_ray.objectives.objective import build_objective
    from mcl_ray.plan.from_config import augment_spec, model_spec, objective_spec
    from mcl_ray.train.embed import embed_images
    from mcl_ray.train.optim import build_optimizer

    images = data.pretrain.images
    setups, epoch_s = {}, {}
    for base in [*BASES, *STEP_ONLY]:
        cfg = make_config(args, base, 0, name="step-cost")
        torch.manual_seed(0)
        encoder = build_encoder(model_spec(cfg))
        objective = build_objective(objective_spec(cfg, 0), encoder, gather=False)
        augment = BatchAugment(augment_spec(cfg))
        epoch_s[base] = 0.0
        if getattr(objective, "needs_epoch_features", False):  # SPCL: prototypes of the whole set, once per epoch
            t0 = time.perf_counter()
            objective.begin_epoch(0, lambda: embed_images(encoder, images, augment_spec(cfg), keep=("backbone",))["backbone"])
            epoch_s[base] = time.perf_counter() - t0
        setups[base] = (objective, build_optimizer(objective, cfg.train), augment)
    times: dict[str, list[float]] = {base: [] for base in setups}
    for round_ in range(args.rounds):
        gen = torch.Generator().manual_seed(round_)
        for step in range(args.warmup + args.steps):
            idx = torch.randint(0, len(images), (args.batch_size,), generator=gen)  # the same batch for every base
            # every base takes one step in turn (the order rotating per step), so a slow spell of the machine or
            # the cost of switching models lands on all of them alike, not on whichever base runs first
            order = list(setups.items())
            shift = step % len(order)
            for base, (objective, optimizer, augment) in order[shift:] + order[:shift]:
                t0 = time.perf_counter()
                inputs = objective.prepare(image_rows(images, idx), augment)
                kwargs = {"indices": idx} if getattr(objective, "needs_indices", False) else {}
                loss = objective(*inputs, **kwargs)["loss"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                objective.after_step()
                if step >= args.warmup:
                    times[base].append(time.perf_counter() - t0)
    rows = [{"base": base, "step_ms": 1000 * statistics.median(t), "p90_ms": 1000 * sorted(t)[int(0.9 * (len(t) - 1))],
             "per_epoch_pass_s": epoch_s[base]} for base, t in times.items()]
    for row in rows:
        row["ratio_vs_simclr"] = row["step_ms"] / rows[0]["step_ms"]
    return rows


def mean_std(values: list[float]) -> list[float]:
    arr = np.asarray(values, dtype=float)
    return [float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0]


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per base: 1-stage and MCL scores, and MCL's paired gain over its base in points, mean +- std over seeds."""
    out: dict[str, Any] = {}
    for base in BASES:
        mine = [r for r in runs if r["base"] == base]
        if not mine:
            continue
        keys = list(mine[0]["one_stage"])
        out[base] = {
            "one_stage": {k: mean_std([r["one_stage"][k] for r in mine]) for k in keys},
            "mcl": {k: mean_std([r["mcl"][k] for r in mine]) for k in keys},
            "ensemble": {k: mean_std([r["ensemble"][k] for r in mine]) for k in keys},
            "mcl_gain_points": {k: mean_std([100 * (r["mcl"][k] - r["one_stage"][k]) for r in mine]) for k in keys},
            "mcl_vs_ensemble_points": {k: mean_std([100 * (r["mcl"][k] - r["ensemble"][k]) for r in mine]) for k in keys},
            "seconds": mean_std([r["seconds"] for r in mine]),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--bases", nargs="+", default=list(BASES), choices=list(BASES))
    p.add_argument("--stages", type=int, default=3)
    p.add_argument("--epochs", type=int, default=5, help="epochs per stage")
    p.add_argument("--clusters", type=int, default=10)
    p.add_argument("--backbone", default="test_resnet")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--train-size", type=int, default=2000)
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--steps", type=int, default=10, help="timed steps per base and round for the step cost")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the step cost")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--data-root", default="~/.cache/mcl-ray/data")
    p.add_argument("--workdir", default="runs/bench-methods")
    p.add_argument("--name", default="methods")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (not a result)")
    p.add_argument("--step-only", action="store_true", help="only the step costs (e.g. on a larger --backbone)")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.stages, args.train_size, args.test_size = [0], 1, 2, 400, 200
        args.steps, args.rounds, args.name, args.workdir = 2, 1, "methods-quick", f"{args.workdir}-quick"
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("mcl_ray").setLevel(logging.INFO if args.verbose else logging.WARNING)

    t0 = time.perf_counter()
    data = load_experiment_data(data_spec(make_config(args, "simclr", 0)))
    costs = step_costs(args, data)
    print(format_table(costs))
    if args.step_only:
        path = write_result(args.name, {"settings": {k: v for k, v in vars(args).items() if k != "verbose"},
                                        "step_costs": costs, "total_seconds": time.perf_counter() - t0})
        print(f"wrote {path}")
        return 0
    runs = []
    for seed in args.seeds:
        for base in args.bases:
            print(f"seed {seed}: {base}, {args.stages} stages x {args.epochs} epochs", flush=True)
            runs.append(run_base(args, base, seed, data))
    summary = summarise(runs)
    rows = []
    for base, s in summary.items():
        for metric in METRICS:
            rows.append({"base": base, "metric": metric, **{
                a: f"{s['one_stage'][f'{a}/{metric}'][0]:.3f} -> {s['mcl'][f'{a}/{metric}'][0]:.3f} "
                   f"({s['mcl_gain_points'][f'{a}/{metric}'][0]:+.1f}±{s['mcl_gain_points'][f'{a}/{metric}'][1]:.1f}); "
                   f"vs ensemble {s['mcl_vs_ensemble_points'][f'{a}/{metric}'][0]:+.1f}"
                   f"±{s['mcl_vs_ensemble_points'][f'{a}/{metric}'][1]:.1f}"
                for a in ATTRIBUTES}})
    print("1 stage -> MCL integrated (MCL's gain over its base; then MCL minus the ensemble of S 1-stage runs of the "
          "same base; points, mean±std over seeds, paired)")
    print(format_table(rows))
    path = write_result(args.name, {
        "settings": {k: v for k, v in vars(args).items() if k != "verbose"},
        "step_costs": costs, "summary_mean_std": summary, "runs": runs,
        "total_seconds": time.perf_counter() - t0,
    })
    print(f"wrote {path} in {(time.perf_counter() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
