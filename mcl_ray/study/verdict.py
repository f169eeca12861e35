"""The answer a study exists for: per attribute, the best MCL configuration against the best control.

Reads the arms' Tune results (`<study>/` for MCL, `<study>/arms/<arm>/` for the controls) and, when the study
confirmed its winners, the reruns with fresh seeds (`<study>/confirm/<arm>/`). With confirmation runs the
difference is paired by seed and given as mean +- std over the seeds; without them it is one run each, and
the verdict says so. An arm tuned with a single trial had nothing to select from, so that trial is one of its
seeds (the confirmation then reran it with one seed fewer: see tuner.confirmation_seeds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcl_ray.study.report import Trial, load_trials, rank_trials
from mcl_ray.tracking.tables import fixed_width

CLEAR_POINTS = 0.5  # a difference smaller than this (or than its spread) is reported as no clear difference


@dataclass
class ArmResult:
    arm: str
    label: str  # "MCL (3 stages)", "the ensemble of 3", "the long run (3x epochs)"
    runs: list[Trial]  # one per seed: the confirmation reruns (and an untuned arm's one trial), or the best alone
    confirmed: bool
    tuned: int = 1  # trials the arm was tuned with: arms searched unequally (study.arm_samples) are not on equal terms

    def values(self, key: str) -> dict[int, float]:
        """{seed: final value of `key`} over the runs (-1 for a run whose seed is not on record)."""
        return {t.seed if t.seed is not None else -1: t.value(key) for t in self.runs}


def _label(arm: str, trial: Trial) -> str:
    stages = trial.stages[-1].get("arm_stages") if trial.stages else None
    if arm == "ensemble":
        return f"the ensemble of {stages}"
    if arm == "long":
        return f"the long run ({stages}x epochs)"
    if arm == "ifm":
        return f"IFM ({stages}x epochs)"
    return f"MCL ({stages} stages)"


def _arm_dirs(study_dir: Path) -> dict[str, Path]:
    dirs = {"mcl": study_dir}
    arms = study_dir / "arms"
    if arms.is_dir():
        dirs.update({d.name: d for d in sorted(arms.iterdir()) if d.is_dir()})
    return dirs


def arm_results(study_dir: str | Path, metric: str, mode: str) -> list[ArmResult]:
    root = Path(study_dir).expanduser()
    out = []
    for arm, directory in _arm_dirs(root).items():
        trials, _ = load_trials(directory)
        best = rank_trials(trials, metric, mode)[0]
        confirm = root / "confirm" / arm
        confirmed = bool(list(confirm.glob("*/result.json")))
        runs = load_trials(confirm)[0] if confirmed else []
        if not runs or len(trials) == 1:  # one tuned trial was not selected: a fair seed of its own
            runs = [best, *runs]
        out.append(ArmResult(arm, _label(arm, best), runs, confirmed, tuned=len(trials)))
    return out


def attributes(results: list[ArmResult], kind: str) -> list[str]:
    keys = {k for r in results for t in r.runs for row in t.stages[-1:] for k in row}
    return sorted({k.split("/")[1] for k in keys if k.startswith("integrated/") and k.endswith(f"/{kind}")} - {"mean"})


def _shortcut_attributes() -> set[str]:
    """Attributes that measure a shortcut (RandBit's code): a representation that holds less of them is better."""
    from mcl_ray.data.registry import DATA_SOURCES

    return {a for name in DATA_SOURCES.names() for a in DATA_SOURCES.get(name).shortcuts}


def verdict(results: list[ArmResult], kind: str) -> tuple[str, list[str]]:
    """(table of every arm's final integrated accuracy per attribute, one sentence per attribute)."""
    attrs = attributes(results, kind)
    header = ["arm", "trials", "runs", *(f"{a}/{kind}" for a in attrs)]
    rows = []
    for r in results:
        cells = []
        for a in attrs:
            v = np.array(list(r.values(f"integrated/{a}/{kind}").values()), float)
            cells.append(f"{v.mean():.3f}" + (f"±{v.std(ddof=1):.3f}" if len(v) > 1 else ""))
        rows.append([r.label, str(r.tuned), str(len(r.runs)), *cells])
    mcl = next(r for r in results if r.arm == "mcl")
    controls = [r for r in results if r.arm != "mcl"]
    sentences = []
    for a in attrs:
        key = f"integrated/{a}/{kind}"
        if not controls:
            break
        best = max(controls, key=lambda c: np.nanmean(list(c.values(key).values())))
        ours, theirs = mcl.values(key), best.values(key)
        seeds = sorted(set(ours) & set(theirs))
        if mcl.confirmed and best.confirmed and seeds:
            diffs = 100 * np.array([ours[s] - theirs[s] for s in seeds])
        else:  # one tuned run each: no spread to report
            diffs = 100 * np.array([np.nanmean(list(ours.values())) - np.nanmean(list(theirs.values()))])
        mean = float(diffs.mean())
        spread = float(diffs.std(ddof=1)) if len(diffs) > 1 else math.nan
        runs = f"{len(diffs)} seeds" if len(diffs) > 1 else "1 run each, unconfirmed: set study.confirm_seeds >= 2"
        if mcl.tuned != best.tuned:
            runs += f"; MCL tuned with {mcl.tuned} trials, {best.label} with {best.tuned}"
        shown = f"{mean:+.1f}" + (f" ± {spread:.1f}" if not math.isnan(spread) else "")
        name = f"{a} (a shortcut: less is better)" if a in _shortcut_attributes() else a
        if abs(mean) < max(CLEAR_POINTS, 0 if math.isnan(spread) else spread):
            sentences.append(f"{name}: no clear difference (MCL {shown} points vs {best.label}; {runs})")
        else:
            sentences.append(f"{name}: MCL {shown} points {'over' if mean > 0 else 'below'} {best.label} ({runs})")
    return fixed_width(header, rows), sentences


def plot_verdict(results: list[ArmResult], kind: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attrs = attributes(results, kind)
    width = 0.8 / max(len(results), 1)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(attrs), 4))
    for i, r in enumerate(results):
        values = [np.array(list(r.values(f"integrated/{a}/{kind}").values()), float) for a in attrs]
        means = [v.mean() for v in values]
        errors = [v.std(ddof=1) if len(v) > 1 else 0.0 for v in values]
        ax.bar(np.arange(len(attrs)) + i * width, means, width, yerr=errors, capsize=3, label=r.label)
    ax.set_xticks(np.arange(len(attrs)) + width * (len(results) - 1) / 2, attrs)
    ax.set(ylabel=f"integrated {kind} accuracy", title="MCL and its controls (best configuration of each arm)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
