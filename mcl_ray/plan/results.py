"""What a run returns: one record per stage (metrics, clustering, reuse, keys) and the run's summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcl_ray.tracking.tables import fixed_width


@dataclass
class StageRecord:
    stage: int
    history: list[dict[str, Any]]
    stage_eval: dict[str, dict[str, float]]
    integrated_eval: dict[str, dict[str, float]]
    cluster: dict[str, Any] | None
    path: str
    reused: dict[str, bool] | None = None  # {"stage": ..., "clusters": ...} taken from earlier runs
    keys: dict[str, str | None] | None = None  # content keys and locations of the stage and its clustering


@dataclass
class ExperimentResult:
    config: Any  # the ExperimentConfig that ran
    run_dir: Path | str
    stages: list[StageRecord] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "run_dir": str(self.run_dir),
            # None: every probe/test image; else at most this many (a seeded subsample), as eval.max_samples says
            "evaluation_max_samples": getattr(getattr(self.config, "eval", None), "max_samples", None),
            "stages": [
                {
                    "stage": s.stage,
                    "stage_eval": s.stage_eval,
                    "integrated_eval": s.integrated_eval,
                    "cluster": s.cluster,
                    "final_loss": s.history[-1]["loss"] if s.history else None,
                    "path": s.path,
                    "reused": s.reused,
                    "keys": s.keys,
                }
                for s in self.stages
            ],
        }


def results_table(result: ExperimentResult) -> str:
    """Per-stage, per-attribute table: each stage alone and the integrated representation so far."""
    attrs = sorted({a for s in result.stages for a in s.stage_eval})
    metrics = sorted({m for s in result.stages for a in s.stage_eval.values() for m in a})
    header = ["stage", "repr"] + [f"{a}/{m}" for a in attrs for m in metrics]
    rows = []
    for s in result.stages:
        for name, ev in (("stage", s.stage_eval), ("integrated", s.integrated_eval)):
            rows.append([str(s.stage), name] + [f"{ev.get(a, {}).get(m, float('nan')):.3f}" for a in attrs for m in metrics])
    return fixed_width(header, rows)
