"""Per-epoch TensorBoard curves written while a stage trains, not after it.

Ray Train calls a `UserCallback` in its controller process after every `ray.train.report`; the controller
runs on the driver's node, so it can write to the run's (or Tune trial's) local TensorBoard directory even
when rank 0 trains on another node. A stage of hours then shows its loss, lr and throughput epoch by epoch.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import ray.train

from mcl_ray.tracking.tensorboard import RunWriter

log = logging.getLogger("mcl_ray")


PROGRESS_FILE = "progress.json"  # {stage, epoch, epochs}: what a study console shows while a trial trains


def write_progress(logdir: str, stage: int, epoch: int, epochs: int) -> None:
    path = Path(logdir) / PROGRESS_FILE
    tmp = path.with_name(f"{PROGRESS_FILE}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"stage": stage, "epoch": epoch, "epochs": epochs}))
    tmp.replace(path)


class LiveCurves(ray.train.UserCallback):
    """Write rank 0's per-epoch metrics to `logdir` on the global epoch axis; never fails the stage."""

    def __init__(self, logdir: str, stage: int, epochs_per_stage: int):
        self.logdir, self.stage, self.epochs_per_stage = logdir, stage, epochs_per_stage
        self._writer: RunWriter | None = None  # opened in the controller process, on the first report

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        if not metrics or "epoch" not in metrics[0]:
            return
        try:
            if self._writer is None:
                self._writer = RunWriter(self.logdir)
            self._writer.log_epoch(metrics[0], self.stage, self.epochs_per_stage)
            write_progress(self.logdir, self.stage, int(metrics[0]["epoch"]), self.epochs_per_stage)
        except (OSError, ValueError, TypeError) as exc:  # a full or read-only disk must not stop training
            log.warning("TensorBoard curves: could not write epoch %s to %s: %s", metrics[0].get("epoch"), self.logdir, exc)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_writer": None}  # a writer holds an open file; never ship one
