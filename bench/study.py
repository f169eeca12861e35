"""The bundled local-profile studies end to end: wall time, each MCL trial's 1-stage baseline vs MCL, and the
verdict against the control arms (ensemble, long run; each arm's winner rerun with fresh seeds).

    python -m bench.study sweep_resnet          # runs `python studies/sweep_resnet.py` (local profile), ~40 min on 2 cores
    python -m bench.study sweep_vit             # ~7 min
    python -m bench.study sweep_clip            # image-text MCL: tiny CLIP on captioned Trifeature
    python -m bench.study sweep_vit --existing studies/results/sweep-vit --wall-s 628.7
                                                # summarise a study already run (wall time measured outside)

Writes bench/results/study_<script>.json. Stage 1 of every trial is plain contrastive learning with the
trial's settings, so "gain" is what the later MCL stages added on the study's metric.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import format_table, write_result
from mcl_ray.study.config import load_study
from mcl_ray.study.report import load_trials, rank_trials

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("script", choices=["sweep_resnet", "sweep_vit", "sweep_clip"])
    parser.add_argument("--existing", help="study directory already produced by the script")
    parser.add_argument("--wall-s", type=float, help="its measured wall time (with --existing)")
    parser.add_argument("--name", help="result file name (default: study_<script>)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides passed to the study (e.g. experiment.data.bits=8)")
    args = parser.parse_intermixed_args()
    config = ROOT / "studies" / "configs" / f"{args.script.removeprefix('sweep_')}.yaml"
    study = load_study(config, "local", args.overrides)
    command = " ".join([f"python studies/{args.script}.py", *args.overrides])
    if args.existing:
        study_dir, wall = Path(args.existing), args.wall_s
    else:  # fresh storage: an existing stage cache would make every trial a reuse
        storage = Path(tempfile.mkdtemp(prefix="mcl-study-bench-"))
        study_dir = storage / study.study.name
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "studies" / f"{args.script}.py"), "--storage", str(storage),
                        *args.overrides], check=True, cwd=ROOT)
        wall = time.perf_counter() - t0
    metric = study.study.metric
    trials = rank_trials(load_trials(study_dir)[0], metric, study.study.mode)
    rows = [{
        "trial": t.trial_id, **{k.split(".")[-1]: v for k, v in t.params.items()}, "stages_done": len(t.stages),
        "stage1": t.value(metric, 0), "final": t.value(metric), "gain_points": 100 * (t.value(metric) - t.value(metric, 0)),
    } for t in trials]
    print(f"{command}: {wall / 60:.1f} min, metric {metric}")
    print(format_table(rows))
    verdict = None
    if (study_dir / "arms").is_dir():
        from mcl_ray.study.verdict import arm_results
        from mcl_ray.study.verdict import verdict as judge

        kind = metric.rsplit("/", 1)[-1]
        results = arm_results(study_dir, metric, study.study.mode)
        table, sentences = judge(results, kind)
        print(table + "\nverdict:\n  " + "\n  ".join(sentences))
        verdict = {
            "sentences": sentences,
            "arms": {r.label: {key: values for key, values in (
                (k, r.values(k)) for k in sorted({k for t in r.runs for k in t.stages[-1] if k.startswith("integrated/")})
            )} for r in results},
            "confirmed": all(r.confirmed for r in results),
            "trials_per_arm": {r.label: r.tuned for r in results},
        }
    path = write_result(args.name or f"study_{args.script}", {
        "command": command, "profile": "local", "wall_s": wall, "metric": metric, "trials": rows,
        "verdict": verdict,
        "settings": {"samples": study.study.samples,
                     "arm_samples": {arm: study.study.samples_for(arm) for arm in study.study.arms},
                     "scheduler": study.study.scheduler, "arms": study.study.arms,
                     "confirm_seeds": study.study.confirm_seeds,
                     "experiment": study.base_experiment().model_dump(mode="json")},
    })
    print(f"wrote {path}")
    if not args.existing:
        shutil.rmtree(storage, ignore_errors=True)


if __name__ == "__main__":
    main()
