"""A study's console: one line per event that matters, instead of Tune's tables.

Tune's default output printed ~1,200 lines for a 17-minute local study (a 78-line config table per trial, a
status table every half minute). This callback prints when a trial starts (its searched settings), each stage
it finishes (the study's metric, trained or reused, minutes), when it ends or fails, and while trials run a
progress line at most once a minute (each running trial's stage, its epoch when the trial's live curves are
on this machine, and minutes in it). Everything else stays in
Tune's files and TensorBoard; `--verbose` brings Tune's own output back.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ray import tune

from mcl_ray.engine.live_curves import PROGRESS_FILE
from mcl_ray.study.trainable import EXPERIMENT_KEY, STUDY_KEY

PROGRESS_EVERY_S = 60.0


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def searched(config: dict[str, Any]) -> str:
    """The trial's own settings, `name value` pairs, without the constant base experiment."""
    params = {k.split(".")[-1].split("/")[-1]: v for k, v in config.items() if k not in (EXPERIMENT_KEY, STUDY_KEY)}
    return ", ".join(f"{k} {_short(v)}" for k, v in sorted(params.items()))


def _epoch(trial, stage: int) -> str:
    """', epoch e/E' from the trial's live-curves progress file, when it is on this machine and current."""
    try:
        progress = json.loads((Path(trial.local_path) / "curves" / PROGRESS_FILE).read_text())
    except (OSError, ValueError, TypeError):
        return ""
    return f", epoch {progress['epoch']}/{progress['epochs']}" if progress.get("stage") == stage else ""


class StudyConsole(tune.Callback):
    def __init__(self, arm: str, metric: str, out: TextIO | None = None, progress_every_s: float = PROGRESS_EVERY_S,
                 total: int | None = None):
        self.arm, self.metric, self._out = arm, metric, out  # None: whatever sys.stdout is when printing
        self.total = total  # the arm's trials: Tune creates them only as concurrency allows
        self.progress_every_s = progress_every_s
        self.started: dict[str, float] = {}
        self.stage_started: dict[str, float] = {}
        self.last_progress = time.monotonic()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_out": None}  # Tune pickles its callbacks with the tuner; streams do not pickle

    def _say(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')}  [{self.arm}] {text}", file=self._out or sys.stdout, flush=True)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        now = time.monotonic()
        self.started[trial.trial_id] = self.stage_started[trial.trial_id] = now
        self._say(f"trial_{trial.trial_id} started: {searched(trial.config)}")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        now = time.monotonic()
        minutes = (now - self.stage_started.get(trial.trial_id, now)) / 60
        self.stage_started[trial.trial_id] = now
        value = result.get(self.metric)
        how = "reused" if result.get("reused_stage") else f"trained in {minutes:.1f} min"
        self._say(f"trial_{trial.trial_id} stage {result.get('stage', '?')}/{result.get('stages_planned', '?')}: "
                  f"{self.metric} {value:.4f} ({how})" if isinstance(value, (int, float)) else
                  f"trial_{trial.trial_id} stage {result.get('stage', '?')} reported ({how})")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        minutes = (time.monotonic() - self.started.get(trial.trial_id, time.monotonic())) / 60
        value = (trial.last_result or {}).get(self.metric)
        final = f"{self.metric} {value:.4f}" if isinstance(value, (int, float)) else "no result"
        self._say(f"trial_{trial.trial_id} done after {minutes:.1f} min: {final}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._say(f"trial_{trial.trial_id} FAILED (details: {trial.local_path or 'the trial directory'}/error.txt)")

    def _planned(self, trial) -> Any:
        """Stages a trial will report, before its first report: 1 for the long-run arms, else its mcl.stages."""
        if self.arm.split()[0] in ("long", "ifm"):
            return 1
        return (trial.config or {}).get("mcl.stages", "?")

    def on_step_end(self, iteration, trials, **info) -> None:
        now = time.monotonic()
        if now - self.last_progress < self.progress_every_s:
            return
        self.last_progress = now
        running = [t for t in trials if t.status == "RUNNING"]
        if not running:
            return
        parts = []
        for t in running:
            done = (t.last_result or {}).get("stage", 0)
            planned = (t.last_result or {}).get("stages_planned") or self._planned(t)
            minutes = (now - self.stage_started.get(t.trial_id, now)) / 60
            epoch = _epoch(t, done + 1)
            parts.append(f"trial_{t.trial_id} in stage {done + 1}/{planned}{epoch} for {minutes:.1f} min")
        finished = sum(t.status == "TERMINATED" for t in trials)
        self._say(f"{finished}/{max(self.total or 0, len(trials))} trials done; " + "; ".join(parts))
