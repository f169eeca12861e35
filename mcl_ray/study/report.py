"""`mcl-ray report STUDY_DIR...`: a table of trials (best first) and PNG plots from Tune's per-trial results.

Reads only files Tune wrote (`<trial>/params.json`, `<trial>/result.json`, one JSON line per stage), so it
works on finished, interrupted and several studies at once, without Ray.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402

from mcl_ray.errors import ConfigError  # noqa: E402
from mcl_ray.tracking.tables import fixed_width  # noqa: E402

HIDDEN = ("experiment", "study")


@dataclass
class Trial:
    study: str
    trial_id: str
    params: dict[str, Any]
    stages: list[dict[str, Any]] = field(default_factory=list)  # one reported row per finished stage
    seed: int | None = None  # the experiment seed the trial ran with

    @property
    def label(self) -> str:
        return f"{self.study}/{self.trial_id}"

    def value(self, metric: str, stage: int = -1) -> float:
        return float(self.stages[stage].get(metric, math.nan)) if self.stages else math.nan


def _read_lines(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:  # a line cut by a killed driver
                continue
    return rows


def load_trials(study_dir: str | Path) -> tuple[list[Trial], dict[str, Any]]:
    """Trials of one study directory and its saved settings (metric, mode) when present."""
    root = Path(study_dir).expanduser()
    if not root.is_dir():
        raise ConfigError(f"report: study directory {root} does not exist")
    settings = {}
    if (root / "study.yaml").is_file():
        import yaml

        settings = (yaml.safe_load((root / "study.yaml").read_text()) or {}).get("study", {})
    trials = []
    for result in sorted(root.glob("*/result.json")):
        rows = [r for r in _read_lines(result) if "stage" in r]
        params_file = result.parent / "params.json"
        raw = json.loads(params_file.read_text()) if params_file.is_file() else {}
        params = {k: v for k, v in raw.items() if k not in HIDDEN}
        seed = raw.get("seed", (raw.get("experiment") or {}).get("seed"))
        trial_id = rows[0]["trial_id"] if rows else result.parent.name
        trials.append(Trial(study=root.name, trial_id=trial_id, params=params, stages=rows,
                            seed=int(seed) if isinstance(seed, (int, float)) else None))
    if not trials:
        raise ConfigError(f"report: no trials (*/result.json) under {root}")
    return trials, settings


def rank_trials(trials: list[Trial], metric: str, mode: str) -> list[Trial]:
    """Best first by the metric at each trial's last finished stage; trials without results go last."""
    sign = -1.0 if mode == "max" else 1.0
    return sorted(trials, key=lambda t: (math.isnan(t.value(metric)), sign * t.value(metric) if not math.isnan(t.value(metric)) else 0))


def _short(name: str) -> str:
    return {"mcl.stages": "stages", "mcl.clusters": "K", "objective.temperature": "temp", "train.lr": "lr", "model.backbone": "backbone"}.get(name, name)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def trial_table(trials: list[Trial], metric: str) -> str:
    """Best first: parameters, stages done, the stage-1 value (= the 1-stage baseline) and the final value."""
    names = sorted({k for t in trials for k in t.params})
    header = ["study/trial", *map(_short, names), "stages done", f"stage1 {metric}", "final", "gain"]
    rows = []
    for t in trials:
        first, last = t.value(metric, 0), t.value(metric)
        rows.append([t.label, *(_fmt(t.params.get(n, "")) for n in names), str(len(t.stages)),
                     f"{first:.3f}", f"{last:.3f}", f"{last - first:+.3f}"])
    return fixed_width(header, rows)


MIN_TRIALS_FOR_IMPORTANCES = 10  # fANOVA's forest on fewer finished trials ranks noise


def param_importances(trials: list[Trial], metric: str, mode: str) -> dict[str, float]:
    """Optuna's fANOVA importances of the searched parameters for `metric` (empty below
    MIN_TRIALS_FOR_IMPORTANCES finished trials: then the report says so instead)."""
    done = [t for t in trials if not math.isnan(t.value(metric))]
    names = [n for n in sorted({k for t in done for k in t.params}) if all(n in t.params for t in done)]
    if len(done) < MIN_TRIALS_FOR_IMPORTANCES or not names:
        return {}
    dists: dict[str, optuna.distributions.BaseDistribution] = {}
    for n in names:
        values = [t.params[n] for t in done]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values) and n == "mcl.stages":
            dists[n] = optuna.distributions.IntDistribution(min(values), max(values))
        elif all(isinstance(v, float) for v in values):
            dists[n] = optuna.distributions.FloatDistribution(min(values), max(values))
        else:
            dists[n] = optuna.distributions.CategoricalDistribution(sorted(set(values), key=str))
    names = [n for n in names if _varies(dists[n])]
    if not names:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for t in done:
        study.add_trial(optuna.trial.create_trial(
            params={n: t.params[n] for n in names}, distributions={n: dists[n] for n in names}, value=t.value(metric),
        ))
    return dict(optuna.importance.get_param_importances(study))


def _varies(d) -> bool:
    if isinstance(d, optuna.distributions.CategoricalDistribution):
        return len(d.choices) > 1
    return d.low < d.high


def settings_label(trial: Trial) -> str:
    """A legend entry that says what the trial tried: its searched settings, shortly."""
    parts = [f"{_short(k)}={_fmt(v)}" for k, v in sorted(trial.params.items()) if k != "seed"]
    return f"{trial.trial_id[-6:]}: " + " ".join(parts)


def _stage_axis(ax, trials: list[Trial]) -> None:
    last = max((r["stage"] for t in trials for r in t.stages), default=1)
    ax.set_xticks(range(1, int(last) + 1))  # stages are whole numbers


def plot_report(trials: list[Trial], metric: str, mode: str, out_dir: Path) -> list[Path]:
    """Metric vs stage per trial, metric vs each searched number (log axes for rates), the best trial's
    attributes per stage, and importances when there are enough trials for them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, ax = plt.subplots(figsize=(7, 4))
    for t in trials:
        ax.plot([r["stage"] for r in t.stages], [r.get(metric, math.nan) for r in t.stages], marker="o",
                label=settings_label(t))
    ax.set(xlabel="stage", ylabel=metric, title="metric vs stage (stage 1 = plain contrastive baseline)")
    _stage_axis(ax, trials)
    ax.legend(fontsize=6)
    paths.append(_save(fig, out_dir / "metric_vs_stage.png"))

    numeric = [n for n in sorted({k for t in trials for k in t.params}) if n != "seed" and all(
        isinstance(t.params.get(n), (int, float)) and not isinstance(t.params.get(n), bool) for t in trials if n in t.params)]
    if numeric:
        fig, axes = plt.subplots(1, len(numeric), figsize=(4.2 * len(numeric), 3.8), squeeze=False)
        for ax, name in zip(axes[0], numeric):
            pts = [(t.params[name], t.value(metric)) for t in trials if name in t.params and not math.isnan(t.value(metric))]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts])
            ax.set(xlabel=_short(name), ylabel=f"final {metric}", title=f"vs {_short(name)}")
            if name.endswith(("temperature", "lr", "weight_decay")):
                ax.set_xscale("log")  # searched on a log scale
            elif all(isinstance(p[0], int) for p in pts):
                ax.set_xticks(sorted({p[0] for p in pts}))
        paths.append(_save(fig, out_dir / "metric_vs_params.png"))

    best = trials[0]
    rep, _, measure = metric.partition("/")
    kind = measure.split("/")[-1]
    attrs = sorted({k.split("/")[1] for r in best.stages for k in r if k.startswith(f"{rep}/") and k.endswith(f"/{kind}")} - {"mean"})
    fig, ax = plt.subplots(figsize=(6, 4))
    for a in attrs:
        ax.plot([r["stage"] for r in best.stages], [r.get(f"{rep}/{a}/{kind}", math.nan) for r in best.stages], marker="o", label=a)
    ax.set(xlabel="stage", ylabel=f"{rep} {kind}", title=f"best trial {best.label}: per attribute")
    _stage_axis(ax, [best])
    ax.legend()
    paths.append(_save(fig, out_dir / "best_trial_attributes.png"))

    importances = param_importances(trials, metric, mode)
    if importances:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.barh([_short(k) for k in importances], list(importances.values()))
        ax.set(xlabel="importance (fANOVA)", title=f"parameter importances for {metric}")
        paths.append(_save(fig, out_dir / "param_importances.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(study_dirs: list[str], metric: str | None = None, mode: str | None = None, out_dir: str | None = None) -> tuple[str, list[Path]]:
    """Table text and written plot paths for one or more study directories."""
    trials: list[Trial] = []
    settings: dict[str, Any] = {}
    for d in study_dirs:
        found, s = load_trials(d)
        trials += found
        settings = settings or s
    metric = metric or settings.get("metric", "integrated/mean/knn")
    mode = mode or settings.get("mode", "max")
    ranked = rank_trials(trials, metric, mode)
    out = Path(out_dir) if out_dir else Path(study_dirs[0]).expanduser() / "report"
    plots = plot_report(ranked, metric, mode, out)
    text = trial_table(ranked, metric)
    importances = param_importances(ranked, metric, mode)
    if importances:
        text += "\n\nparameter importances: " + ", ".join(f"{_short(k)} {v:.2f}" for k, v in importances.items())
    else:
        finished = sum(not math.isnan(t.value(metric)) for t in ranked)
        why = (f"{finished} finished trials; fANOVA needs at least {MIN_TRIALS_FOR_IMPORTANCES} to rank more than noise"
               if finished < MIN_TRIALS_FOR_IMPORTANCES else "no searched parameter that varies across every trial")
        text += f"\n\nparameter importances: not shown ({why})"
    if len(study_dirs) == 1 and any((Path(study_dirs[0]).expanduser() / d).is_dir() for d in ("arms", "confirm")):
        from mcl_ray.study.verdict import arm_results, plot_verdict, verdict

        kind = metric.rsplit("/", 1)[-1]
        results = arm_results(study_dirs[0], metric, mode)
        table, sentences = verdict(results, kind)
        text += "\n\nMCL against its controls (integrated " + kind + ", best configuration of each arm):\n" + table
        text += "\n\nverdict:\n  " + "\n  ".join(sentences)
        plots.append(plot_verdict(results, kind, out / "verdict.png"))
    (out / "trials.txt").write_text(text + "\n")
    return text, plots
