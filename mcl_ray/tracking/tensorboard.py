"""TensorBoard scalars for one run: per-epoch training curves and per-stage evaluation.

Curves use a global epoch axis (stage s, epoch e -> (s - 1) * epochs + e) so the stages of a run line up
one after another; evaluation uses the stage number as its step, which is also what Tune reports. On Ray the
curves are written live, epoch by epoch, by `engine.live_curves.LiveCurves`; `RunWriter.log_stage` adds what
is not on disk yet (the curves of reused stages, or epochs a live write missed).
"""

from __future__ import annotations

from pathlib import Path
from torch.utils.tensorboard import SummaryWriter


def flatten_eval(prefix: str, evaluation: dict[str, dict[str, float]]) -> dict[str, float]:
    """{'shape': {'knn': 0.5}} -> {'<prefix>/shape/knn': 0.5}."""
    return {f"{prefix}/{attr}/{metric}": float(v) for attr, ms in evaluation.items() for metric, v in ms.items()}


def stage_scalars(record) -> dict[str, float]:
    """The per-stage numbers every tracker reports: integrated and stage-alone evaluation, last loss."""
    out = {**flatten_eval("integrated", record.integrated_eval), **flatten_eval("stage_alone", record.stage_eval)}
    if record.history:
        out["train/final_loss"] = float(record.history[-1]["loss"])
    if record.cluster:
        out["clusters/num_groups"] = float(record.cluster["groups"]["num_groups"])
    return out


def epoch_scalars(row: dict, stage: int, epochs_per_stage: int) -> tuple[int, dict[str, float]]:
    """One epoch's history row -> (global epoch step, {'epoch/<name>': value}) for its numeric entries."""
    step = (stage - 1) * epochs_per_stage + int(row["epoch"])
    values = {
        f"epoch/{name}": float(value)
        for name, value in row.items()
        if name not in ("stage", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    return step, values


def written_points(logdir: str | Path) -> set[tuple[str, int]]:
    """(tag, step) pairs already in `logdir`: from an earlier or interrupted run of the same name, or written live."""
    if not Path(logdir).is_dir():
        return set()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    events.Reload()
    return {(tag, e.step) for tag in events.Tags().get("scalars", []) for e in events.Scalars(tag)}


class RunWriter:
    """One SummaryWriter per run (or trial) directory."""

    def __init__(self, logdir: str | Path):
        self.logdir = Path(logdir)
        self.writer = SummaryWriter(log_dir=str(logdir))

    def log_epoch(self, row: dict, stage: int, epochs_per_stage: int) -> None:
        step, values = epoch_scalars(row, stage, epochs_per_stage)
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def log_stage(self, record, epochs_per_stage: int) -> None:
        """The stage's evaluation and per-epoch history. Points already on disk (written live by `LiveCurves`,
        or by an earlier run of the same name) are skipped, so no curve is ever drawn twice."""
        present = written_points(self.logdir)
        points = [(name, value, record.stage) for name, value in stage_scalars(record).items()]
        for row in record.history:
            step, values = epoch_scalars(row, record.stage, epochs_per_stage)
            points += [(name, value, step) for name, value in values.items()]
        for name, value, step in points:
            if (name, step) not in present:
                self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

